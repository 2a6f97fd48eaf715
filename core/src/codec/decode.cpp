// decode.cpp — decoding untrusted bytes: the bounded pre-scan that checks
// every limit of docs/protocol.md §6 before msgpack-c allocates, and the
// direct fast reader for scanned bytes.
#include "kith/term.hpp"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <new>

#include "codec/codec_internal.hpp"
#include "kith/convert.hpp"

namespace kith {

namespace detail {

// ---- bounded decoding -------------------------------------------------------

msgpack::unpack_limit unpack_limits(const decode_limits& l) noexcept {
    // msgpack-c counts an ext's type byte in its ext size.
    return msgpack::unpack_limit(l.max_array, l.max_map, l.max_str, l.max_bin, l.max_ext + 1, l.max_depth);
}

bool reference_all(msgpack::type::object_type, std::size_t, void*) { return true; }

namespace {

inline std::uint32_t from_be(std::uint32_t v) noexcept {
    if constexpr (std::endian::native == std::endian::little) return __builtin_bswap32(v);
    else return v;
}
inline std::uint64_t from_be(std::uint64_t v) noexcept {
    if constexpr (std::endian::native == std::endian::little) return __builtin_bswap64(v);
    else return v;
}

// A big-endian unsigned integer of n (1, 2, 4 or 8) bytes.
std::uint64_t load_be(const unsigned char* p, int n) noexcept {
    switch (n) {
        case 1: return p[0];
        case 2: return static_cast<std::uint64_t>(p[0]) << 8 | p[1];
        case 4: {
            std::uint32_t v;
            std::memcpy(&v, p, 4);
            return from_be(v);
        }
        case 8: {
            std::uint64_t v;
            std::memcpy(&v, p, 8);
            return from_be(v);
        }
        default: {
            std::uint64_t v = 0;
            for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
            return v;
        }
    }
}

}  // namespace

bool scan_value(const unsigned char* data, std::size_t len, const decode_limits& lim, std::size_t& end,
                std::string& why) {
    // Remaining element count of each open container; level 0 is the root,
    // which holds the one value being scanned.
    constexpr std::size_t inline_levels = 80;
    std::uint64_t inline_stack[inline_levels];
    std::vector<std::uint64_t> big;
    std::uint64_t* stack = inline_stack;
    if (lim.max_depth + 1 > inline_levels) {
        big.resize(lim.max_depth + 1);
        stack = big.data();
    }
    std::size_t sp = 0;
    stack[0] = 1;
    std::uint64_t pending = 1;  // elements still expected, across all open containers
    std::size_t pos = 0;

    auto fail = [&](std::string msg) {
        why = std::move(msg);
        return false;
    };
    auto truncated = [&](std::size_t at) { return fail("truncated at byte " + std::to_string(at)); };

    for (;;) {
        while (stack[sp] == 0) {
            if (sp == 0) {
                end = pos;
                return true;
            }
            --sp;
        }
        --stack[sp];
        --pending;
        if (pos >= len) return truncated(pos);
        const std::size_t at = pos;
        const unsigned b = data[pos++];
        std::uint64_t skip = 0;       // payload bytes after the header
        std::uint64_t children = 0;   // elements of a container
        int len_bytes = 0;            // size of the length field
        enum { scalar, str, bin, ext, array, map } kind = scalar;

        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            // fixint, nil, false, true
        } else if (b <= 0x8f) {
            kind = map;
            children = b & 0x0f;
        } else if (b <= 0x9f) {
            kind = array;
            children = b & 0x0f;
        } else if (b <= 0xbf) {
            kind = str;
            skip = b & 0x1f;
        } else {
            switch (b) {
                case 0xc1: return fail("reserved byte 0xc1 at byte " + std::to_string(at));
                case 0xc4: kind = bin; len_bytes = 1; break;
                case 0xc5: kind = bin; len_bytes = 2; break;
                case 0xc6: kind = bin; len_bytes = 4; break;
                case 0xc7: kind = ext; len_bytes = 1; break;
                case 0xc8: kind = ext; len_bytes = 2; break;
                case 0xc9: kind = ext; len_bytes = 4; break;
                case 0xca: skip = 4; break;
                case 0xcb: skip = 8; break;
                case 0xcc: case 0xd0: skip = 1; break;
                case 0xcd: case 0xd1: skip = 2; break;
                case 0xce: case 0xd2: skip = 4; break;
                case 0xcf: case 0xd3: skip = 8; break;
                case 0xd4: kind = ext; skip = 1; break;
                case 0xd5: kind = ext; skip = 2; break;
                case 0xd6: kind = ext; skip = 4; break;
                case 0xd7: kind = ext; skip = 8; break;
                case 0xd8: kind = ext; skip = 16; break;
                case 0xd9: kind = str; len_bytes = 1; break;
                case 0xda: kind = str; len_bytes = 2; break;
                case 0xdb: kind = str; len_bytes = 4; break;
                case 0xdc: kind = array; len_bytes = 2; break;
                case 0xdd: kind = array; len_bytes = 4; break;
                case 0xde: kind = map; len_bytes = 2; break;
                case 0xdf: kind = map; len_bytes = 4; break;
                default: return fail("invalid byte at " + std::to_string(at));
            }
        }
        if (len_bytes) {
            if (len - pos < static_cast<std::size_t>(len_bytes)) return truncated(pos);
            std::uint64_t n = load_be(data + pos, len_bytes);
            pos += len_bytes;
            if (kind == array || kind == map) children = n;
            else skip = n;
        }
        switch (kind) {
            case scalar: break;
            case str:
                if (skip > lim.max_str)
                    return fail("string of " + std::to_string(skip) + " bytes exceeds limit " + std::to_string(lim.max_str));
                break;
            case bin:
                if (skip > lim.max_bin)
                    return fail("binary of " + std::to_string(skip) + " bytes exceeds limit " + std::to_string(lim.max_bin));
                break;
            case ext:
                if (skip > lim.max_ext)
                    return fail("ext of " + std::to_string(skip) + " bytes exceeds limit " + std::to_string(lim.max_ext));
                skip += 1;  // the ext type byte
                break;
            case array:
            case map: {
                const bool is_map = kind == map;
                if (children > (is_map ? lim.max_map : lim.max_array))
                    return fail((is_map ? "map of " : "array of ") + std::to_string(children) +
                                (is_map ? " pairs exceeds limit " : " elements exceeds limit ") +
                                std::to_string(is_map ? lim.max_map : lim.max_array));
                if (sp + 1 > lim.max_depth) return fail("nesting deeper than " + std::to_string(lim.max_depth));
                const std::uint64_t items = is_map ? 2 * children : children;
                if (pending + items > len - pos)
                    return fail(std::string("truncated: ") + (is_map ? "map of " : "array of ") +
                                std::to_string(children) + (is_map ? " pairs" : " elements") + " at byte " +
                                std::to_string(at) + " but only " + std::to_string(len - pos) + " bytes left");
                stack[++sp] = items;
                pending += items;
                break;
            }
        }
        if (skip) {
            if (len - pos < skip) return truncated(len);
            pos += static_cast<std::size_t>(skip);
        }
    }
}

// ---- direct decoding of scanned bytes (fast path) ---------------------------

namespace {

// One step of the fast path: the value at `r.p`, into `out`. Declines
// (false) on anything it does not handle exactly as term_from_object would;
// the caller then takes the msgpack::unpack path, which gives the error.
bool direct_value(fast_reader& r, term& out, std::size_t depth);

bool direct_array(fast_reader& r, std::uint64_t n, term& out, std::size_t depth) {
    if (depth == 0 || n > r.lim->max_array || !r.open(n)) return false;
    term_array a;
    a.resize(static_cast<std::size_t>(n));
    for (auto& x : a)
        if (!direct_value(r, x, depth - 1)) return false;
    out = term(std::move(a));
    return true;
}

bool direct_map(fast_reader& r, std::uint64_t n, term& out, std::size_t depth) {
    if (depth == 0 || n > r.lim->max_map || !r.open(2 * n)) return false;
    term_map m;
    m.resize(static_cast<std::size_t>(n));
    for (auto& [k, v] : m)
        if (!direct_value(r, k, depth - 1) || !direct_value(r, v, depth - 1)) return false;
    out = term(std::move(m));
    return true;
}

bool direct_ext(fast_reader& r, std::uint64_t size, term& out) {
    if (size > r.lim->max_ext || size + 1 > r.left()) return false;
    const auto type = static_cast<std::int8_t>(*r.p++);
    const char* payload = reinterpret_cast<const char*>(r.p);
    r.p += size;
    if (type == pid_ext_type) {
        pid x;
        if (!parse_node_ext(payload, static_cast<std::size_t>(size), x.node, x.serial, nullptr)) return false;
        out = term(std::move(x));
        return true;
    }
    if (type == ref_ext_type) {
        ref x;
        if (!parse_node_ext(payload, static_cast<std::size_t>(size), x.node, x.id, nullptr)) return false;
        out = term(std::move(x));
        return true;
    }
    return false;
}

bool direct_value(fast_reader& r, term& out, std::size_t depth) {
    if (r.left() == 0 || !r.take()) return false;
    const unsigned char b = *r.p++;
    std::uint64_t n = 0;
    if (b <= 0x7f) {
        out = term(std::int64_t{b});
        return true;
    }
    if (b >= 0xe0) {
        out = term(std::int64_t{static_cast<std::int8_t>(b)});
        return true;
    }
    if (b >= 0xa0 && b <= 0xbf) return r.str(b & 0x1f, out);
    if (b >= 0x90 && b <= 0x9f) return direct_array(r, b & 0x0f, out, depth);
    if (b >= 0x80 && b <= 0x8f) return direct_map(r, b & 0x0f, out, depth);
    switch (b) {
        case 0xc0: out = term(); return true;
        case 0xc2: out = term(false); return true;
        case 0xc3: out = term(true); return true;
        case 0xcc: case 0xcd: case 0xce: case 0xcf:
            if (!r.uint(1 << (b - 0xcc), n)) return false;
            out = term(static_cast<unsigned long long>(n));
            return true;
        case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
            const int w = 1 << (b - 0xd0);
            if (!r.uint(w, n)) return false;
            // sign-extend the w-byte value
            const int shift = 64 - 8 * w;
            out = term(static_cast<std::int64_t>(n << shift) >> shift);
            return true;
        }
        case 0xca: {
            if (!r.uint(4, n)) return false;
            float f;
            auto u = static_cast<std::uint32_t>(n);
            std::memcpy(&f, &u, sizeof f);
            out = term(double{f});
            return true;
        }
        case 0xcb: {
            if (!r.uint(8, n)) return false;
            double d;
            std::memcpy(&d, &n, sizeof d);
            out = term(d);
            return true;
        }
        case 0xd9: case 0xda: case 0xdb:
            return r.uint(1 << (b - 0xd9), n) && r.str(n, out);
        case 0xc4: case 0xc5: case 0xc6:
            return r.uint(1 << (b - 0xc4), n) && r.bin(n, out);
        case 0xdc: case 0xdd:
            return r.uint(2 << (b - 0xdc), n) && direct_array(r, n, out, depth);
        case 0xde: case 0xdf:
            return r.uint(2 << (b - 0xde), n) && direct_map(r, n, out, depth);
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
            return direct_ext(r, std::uint64_t{1} << (b - 0xd4), out);
        case 0xc7: case 0xc8: case 0xc9:
            return r.uint(1 << (b - 0xc7), n) && direct_ext(r, n, out);
        default:
            return false;  // 0xc1
    }
}

}  // namespace

bool fast_reader::uint(int width, std::uint64_t& v) noexcept {
    if (left() < static_cast<std::size_t>(width)) return false;
    v = load_be(p, width);
    p += width;
    return true;
}

bool fast_reader::str(std::uint64_t n, term& out) {
    if (n > lim->max_str || n > left()) return false;
    out = term(std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n)));
    p += n;
    return true;
}

bool fast_reader::bin(std::uint64_t n, term& out) {
    if (n > lim->max_bin || n > left()) return false;
    out = term(binary(p, static_cast<std::size_t>(n)));
    p += n;
    return true;
}

bool fast_reader::value(term& out, std::size_t max_depth) noexcept {
    try {
        return direct_value(*this, out, max_depth);
    } catch (...) {
        return false;  // the msgpack path reports it
    }
}

bool unpack_term(const char* data, std::size_t len, const decode_limits& limits, msgpack::zone& zone, term& out,
                 std::string& why) noexcept {
    {
        fast_reader r{reinterpret_cast<const unsigned char*>(data), reinterpret_cast<const unsigned char*>(data) + len,
                      &limits};
        if (r.value(out, limits.max_depth) && r.left() == 0) return true;
    }
    try {
        std::size_t off = 0;
        msgpack::object o = msgpack::unpack(zone, data, len, off, reference_all, nullptr, unpack_limits(limits));
        if (off != len) {
            why = "trailing bytes";
            return false;
        }
        out = term_from_object(o);
        return true;
    } catch (const msgpack::depth_size_overflow&) {
        why = "nesting deeper than " + std::to_string(limits.max_depth);
    } catch (const msgpack::insufficient_bytes&) {
        why = "truncated";
    } catch (const std::bad_alloc&) {
        why = "out of memory";
    } catch (const std::exception& e) {
        why = e.what();
    } catch (...) {
        why = "malformed msgpack";
    }
    return false;
}

}  // namespace detail

result<term> decode(std::string_view bytes, const decode_limits& limits) {
    try {
        if (bytes.size() > limits.max_bytes)
            return error{errc::decode, "input of " + std::to_string(bytes.size()) + " bytes exceeds limit " +
                                           std::to_string(limits.max_bytes)};
        if (bytes.empty()) return error{errc::decode, "empty input"};
        std::size_t end = 0;
        std::string why;
        if (!detail::scan_value(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), limits, end, why))
            return error{errc::decode, std::move(why)};
        if (end != bytes.size())
            return error{errc::decode, std::to_string(bytes.size() - end) + " trailing bytes"};
        msgpack::zone zone;
        term t;
        if (!detail::unpack_term(bytes.data(), bytes.size(), limits, zone, t, why))
            return error{errc::decode, std::move(why)};
        return t;
    } catch (const std::bad_alloc&) {
        return error{errc::decode, "out of memory"};
    } catch (const std::exception& e) {
        return error{errc::decode, e.what()};
    }
}

}  // namespace kith
