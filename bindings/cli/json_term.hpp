// JSON <-> term for the `kith` command line (values on the command line and
// in output are JSON).
//
// Mapping (documented in docs/cli.md):
//   null, true/false, integers, floats, strings, arrays  <-> the same terms
//   {"k": v, ...}            <-> a map with string keys
//   {"$pid": "<n@h.42>"}     <-> a pid        {"$ref": "#Ref<n@h.7>"} <-> a ref
//   {"$bin": "<base64>"}     <-> a binary     {"$map": [[k, v], ...]} <-> a map
//                                              whose keys are not all strings
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "kith/error.hpp"
#include "kith/term.hpp"

namespace kith::cli {

// Parses one JSON text into a term. errc::badarg with a one-line reason
// ("bad JSON at byte 3: ...", "nesting deeper than 64").
result<term> parse_json(std::string_view text);
// One-line JSON for a term. Invalid UTF-8 in strings is replaced (U+FFFD).
std::string to_json(const term& t);

}  // namespace kith::cli
