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

// A direct decoder from msgpack bytes to terms, without msgpack::object. It
// applies every bound scan_value applies (sizes, counts, nesting, and that
// the elements announced by open containers fit in the bytes left), so it
// may also run on bytes not scanned yet. It only ever succeeds with exactly
// what scan_value + the msgpack::unpack path would give, or declines (false,
// position unspecified) — never an error of its own: the caller then takes
// that path on the same bytes, which produces the error description.
struct fast_reader {
    const unsigned char* p;
    const unsigned char* end;
    const decode_limits* lim;
    std::uint64_t pending = 1;  // values still expected across open containers (1: the root)

    std::size_t left() const noexcept { return static_cast<std::size_t>(end - p); }
    // A value begins: one fewer expected.
    bool take() noexcept {
        if (pending == 0) return false;
        --pending;
        return true;
    }
    // A container header was read: its `items` values must fit in what is
    // left (each takes at least one byte), as scan_value requires.
    bool open(std::uint64_t items) noexcept {
        if (items > left() || pending + items > left()) return false;
        pending += items;
        return true;
    }
    // A big-endian unsigned integer of `width` bytes.
    bool uint(int width, std::uint64_t& v) noexcept;
    // n bytes as a string / binary term (checked against the limits).
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
