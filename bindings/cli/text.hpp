// text.hpp — text the kith CLI prints: peer-supplied text made safe, times in UTC.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace kith::cli {

// Peer-supplied text (names, endpoints, services, reasons) made safe for a
// terminal and for line-based logs: control characters (C0, DEL, C1, also
// UTF-8-encoded), line separators and bidi overrides, invalid UTF-8 and
// backslashes are written as \n, \xNN, \\ ...; other UTF-8 passes.
std::string printable(std::string_view text);

// `t` in UTC with strftime's `format`; the default reads
// "2026-12-06 07:30:00 UTC", kISO8601 "2026-12-06T07:30:00Z".
inline constexpr const char* kUtcText = "%Y-%m-%d %H:%M:%S UTC";
inline constexpr const char* kISO8601 = "%Y-%m-%dT%H:%M:%SZ";
std::string format_utc(std::chrono::system_clock::time_point t, const char* format = kUtcText);

}  // namespace kith::cli
