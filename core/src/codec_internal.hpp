// Private to the codec (term.cpp, envelope.cpp): the bounded pre-scan of
// untrusted msgpack bytes and the msgpack::unpack_limit derived from
// decode_limits.
#pragma once

#include <cstddef>
#include <string>

#include <msgpack.hpp>

#include "kith/term.hpp"

namespace kith::detail {

// Walks the one msgpack value that starts at data[0] without allocating and
// checks it against `limits`: truncation, the reserved byte 0xc1, lengths of
// strings/binaries/exts, element counts of arrays/maps, nesting depth, and
// that the elements announced by every open container fit in the remaining
// bytes (each needs at least one), which bounds what msgpack::unpack may
// allocate to a small multiple of the input size. On success stores in `end`
// the offset just past the value and returns true; otherwise stores a
// description in `why` and returns false. max_bytes is not checked here.
bool scan_value(const unsigned char* data, std::size_t len, const decode_limits& limits, std::size_t& end,
                std::string& why);

// The msgpack-c limits matching `limits` (defence in depth behind scan_value).
msgpack::unpack_limit unpack_limits(const decode_limits& limits) noexcept;

// An unpack_reference_func that makes msgpack reference str/bin/ext bytes in
// the input buffer instead of copying them into the zone: safe whenever the
// object is converted before the input goes away.
bool reference_all(msgpack::type::object_type, std::size_t, void*);

// Decodes one term from the exact byte range [data, data+len) (which the
// caller has already scanned) into `out`; false with `why` on failure.
bool unpack_term(const char* data, std::size_t len, const decode_limits& limits, msgpack::zone& zone, term& out,
                 std::string& why) noexcept;

}  // namespace kith::detail
