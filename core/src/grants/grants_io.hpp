// grants_io.hpp (private) — small helpers shared by the grant file
// (grants.cpp) and the grant table (grants_table.cpp): names, times, the
// checksum line and atomic file writes.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "kith/error.hpp"

namespace kith::detail {

// 1-64 characters of [A-Za-z0-9._-]: grant labels and the service, function
// and actor type names inside a grant scope.
bool valid_grant_name(std::string_view s) noexcept;

// "2026-11-21T05:00:00Z" (UTC, whole seconds) and back; nullopt if malformed.
std::string format_utc(std::chrono::system_clock::time_point t);
std::optional<std::chrono::system_clock::time_point> parse_utc(std::string_view s);

// The first 16 bytes of BLAKE2b-256(text) in hex (32 characters).
std::string checksum_hex(std::string_view text);

// Writes `content` to `file` atomically: a temporary file in the same
// directory (created with `mode`), fsync, rename over `file`, fsync of the
// directory. A crash at any point leaves either the old or the new file.
// errc::badarg with the OS error.
result<void> write_file_atomic(const std::filesystem::path& file, std::string_view content, unsigned mode);

// Reads a whole file of at most `max_bytes`; errc::badarg with the OS error,
// errc::decode if it is larger.
result<std::string> read_small_file(const std::filesystem::path& file, std::size_t max_bytes);

}  // namespace kith::detail
