// text.cpp — escaping peer-supplied text for the terminal (text.hpp).
#include "text.hpp"

#include <limits>

#include "kith/log.hpp"

namespace kith::cli {

std::string printable(std::string_view t) { return kith::escape_peer_text(t, std::numeric_limits<std::size_t>::max()); }

}  // namespace kith::cli
