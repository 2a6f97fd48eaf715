// text.cpp — escaping peer-supplied text for the terminal, UTC times (text.hpp).
#include "text.hpp"

#include <ctime>
#include <limits>

#include "kith/log.hpp"

namespace kith::cli {

std::string printable(std::string_view t) { return kith::escape_peer_text(t, std::numeric_limits<std::size_t>::max()); }

std::string format_utc(std::chrono::system_clock::time_point t, const char* format) {
    std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, format, &tm);
    return buf;
}

}  // namespace kith::cli
