// Private to the codec (term.cpp, envelope.cpp): the bounded pre-scan of
// untrusted msgpack bytes and the msgpack::unpack_limit derived from
// decode_limits.
#pragma once

#include <cstddef>
#include <cstdint>
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

// A direct decoder from msgpack bytes to terms, without msgpack::object, for
// bytes that scan_value has already accepted (so every bound holds). It
// only ever succeeds with exactly what the msgpack::unpack path would give,
// or declines (false, position unspecified) — never an error of its own:
// the caller then decodes the same bytes the msgpack way, which produces the
// error description. Bounds are still checked as it goes.
struct fast_reader {
    const unsigned char* p;
    const unsigned char* end;

    std::size_t left() const noexcept { return static_cast<std::size_t>(end - p); }
    // A big-endian unsigned integer of `width` bytes.
    bool uint(int width, std::uint64_t& v) noexcept;
    // n bytes as a string / binary term.
    bool str(std::uint64_t n, term& out);
    bool bin(std::uint64_t n, term& out);
    // One term, nesting at most max_depth containers deep.
    bool value(term& out, std::size_t max_depth) noexcept;
};

// Decodes one term from the exact byte range [data, data+len) (which the
// caller has already scanned) into `out`; false with `why` on failure.
bool unpack_term(const char* data, std::size_t len, const decode_limits& limits, msgpack::zone& zone, term& out,
                 std::string& why) noexcept;

}  // namespace kith::detail
