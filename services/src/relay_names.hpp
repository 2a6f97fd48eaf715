// relay_names.hpp (private) — the relay's name bindings on disk: which key
// registered each node name first, kept in <key dir>/relay-names so that a
// relay restart does not free Alice's name for anyone (docs/protocol.md,
// the relay service). Format (text, mode 0600, written atomically through
// kith/platform.hpp):
//   kith-relay-names 1
//   # comment lines
//   name <node name> <key, Z85> <last registered, Unix seconds>
//   end <number of name lines>
// A file that does not parse, or that has no end line (cut short), is
// refused: the relay does not start with bindings it cannot read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "kith/error.hpp"

namespace kith::relay_names {

struct binding {
    std::string key_z85;
    std::int64_t seen = 0;  // Unix seconds of its last registration
};
using table = std::map<std::string, binding>;

// Larger files are refused (4096 names take about 0.4 MB).
constexpr std::size_t max_file_bytes = 8u << 20;

std::string to_text(const table& t);
// errc::decode with the line and what is wrong.
result<table> parse(std::string_view text);
// The table in `file` (empty when it does not exist). Throws setup_error
// naming the file, what is wrong and what to do.
table load(const std::filesystem::path& file);
// Atomic, mode 0600. errc::badarg with the OS error.
result<void> save(const std::filesystem::path& file, const table& t);

}  // namespace kith::relay_names
