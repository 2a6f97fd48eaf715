// text.hpp — peer-supplied text made safe to print (the kith CLI).
#pragma once

#include <string>
#include <string_view>

namespace kith::cli {

// Peer-supplied text (names, endpoints, services, reasons) made safe for a
// terminal and for line-based logs: control characters (C0, DEL, C1, also
// UTF-8-encoded), line separators and bidi overrides, invalid UTF-8 and
// backslashes are written as \n, \xNN, \\ ...; other UTF-8 passes.
std::string printable(std::string_view text);

}  // namespace kith::cli
