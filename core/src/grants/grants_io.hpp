// grants_io.hpp (private) — small helpers shared by the grant file
// (grants.cpp) and the grant table (grants_table.cpp): names, times, the
// checksum line. (Their file I/O is kith/platform.hpp.)
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "kith/error.hpp"
#include "kith/platform.hpp"

namespace kith::detail {

// 1-64 characters of [A-Za-z0-9._-]: grant labels and the service, function
// and actor type names inside a grant scope.
bool valid_grant_name(std::string_view s) noexcept;

// "2026-11-21T05:00:00Z" (UTC, whole seconds) and back; nullopt if malformed.
std::string format_utc(std::chrono::system_clock::time_point t);
std::optional<std::chrono::system_clock::time_point> parse_utc(std::string_view s);

// The first 16 bytes of BLAKE2b-256(text) in hex (32 characters).
std::string checksum_hex(std::string_view text);

}  // namespace kith::detail
