// envelope_fast.cpp — the fast path of the envelope decoder: scanned bytes
// straight into an envelope, without msgpack objects (see envelope.cpp for
// the msgpack path, which gives the errors).
#include <array>
#include <utility>
#include <variant>

#include "codec/codec_internal.hpp"
#include "codec/envelope_fields.hpp"
#include "kith/convert.hpp"
#include "kith/keys.hpp"

namespace kith::detail::envelope_fields {

namespace {

// ---- fast path: scanned bytes straight into the envelope ------------------
// The same field lists, read from the bytes with detail::fast_reader. It
// accepts only what the msgpack path below would decode to the same value,
// and declines anything else (that path then gives the error).

struct fast_fields {
    detail::fast_reader r;
    std::size_t max_depth;

    bool any_uint(std::uint64_t& v) noexcept {
        if (r.left() == 0 || !r.take()) return false;
        const unsigned char b = *r.p;
        if (b <= 0x7f) {
            ++r.p;
            v = b;
            return true;
        }
        if (b < 0xcc || b > 0xcf) return false;
        ++r.p;
        return r.uint(1 << (b - 0xcc), v);
    }
    template <class U>
    bool bounded(U& out, std::uint64_t max) noexcept {
        std::uint64_t v;
        if (!any_uint(v) || v > max) return false;
        out = static_cast<U>(v);
        return true;
    }
    bool get(std::uint64_t& v) noexcept { return any_uint(v); }
    bool get(std::uint32_t& v) noexcept { return bounded(v, UINT32_MAX); }
    bool get(std::uint8_t& v) noexcept { return bounded(v, UINT8_MAX); }
    bool get(errc& v) noexcept {
        std::uint8_t c;
        if (!bounded(c, UINT8_MAX)) return false;
        v = static_cast<errc>(c);
        return true;
    }
    bool get(bool& v) noexcept {
        if (r.left() == 0 || (*r.p != 0xc2 && *r.p != 0xc3) || !r.take()) return false;
        v = *r.p++ == 0xc3;
        return true;
    }
    // The length of a str header at r.p (consumed), or false.
    bool str_len(std::uint64_t& n) noexcept {
        if (r.left() == 0 || !r.take()) return false;
        const unsigned char b = *r.p;
        if (b >= 0xa0 && b <= 0xbf) {
            ++r.p;
            n = b & 0x1f;
        } else if (b >= 0xd9 && b <= 0xdb) {
            ++r.p;
            if (!r.uint(1 << (b - 0xd9), n)) return false;
        } else {
            return false;
        }
        return n <= r.lim->max_str && n <= r.left();
    }
    bool get(std::string& v) {
        std::uint64_t n;
        if (!str_len(n)) return false;
        v.assign(reinterpret_cast<const char*>(r.p), static_cast<std::size_t>(n));
        r.p += n;
        return true;
    }
    bool get(bin_ref& v) {
        if (r.left() == 0 || !r.take()) return false;
        const unsigned char b = *r.p;
        if (b < 0xc4 || b > 0xc6) return false;
        ++r.p;
        std::uint64_t n;
        if (!r.uint(1 << (b - 0xc4), n) || n > r.lim->max_bin || n > r.left()) return false;
        v.s.assign(reinterpret_cast<const char*>(r.p), static_cast<std::size_t>(n));
        r.p += n;
        return true;
    }
    bool get(std::vector<std::string>& v) {
        if (r.left() == 0 || !r.take()) return false;
        const unsigned char b = *r.p;
        std::uint64_t n;
        if (b >= 0x90 && b <= 0x9f) {
            ++r.p;
            n = b & 0x0f;
        } else if (b == 0xdc || b == 0xdd) {
            ++r.p;
            if (!r.uint(b == 0xdc ? 2 : 4, n)) return false;
        } else {
            return false;
        }
        if (n > r.lim->max_array || !r.open(n)) return false;
        v.resize(static_cast<std::size_t>(n));
        for (auto& x : v)
            if (!get(x)) return false;
        return true;
    }
    bool node_ext(std::int8_t type, std::string& node, std::uint64_t& id) {
        if (r.left() == 0 || !r.take()) return false;
        const unsigned char b = *r.p;
        std::uint64_t size;
        if (b >= 0xd4 && b <= 0xd8) {
            ++r.p;
            size = std::uint64_t{1} << (b - 0xd4);
        } else if (b >= 0xc7 && b <= 0xc9) {
            ++r.p;
            if (!r.uint(1 << (b - 0xc7), size)) return false;
        } else {
            return false;
        }
        if (size > r.lim->max_ext || size + 1 > r.left() || static_cast<std::int8_t>(*r.p) != type) return false;
        const char* payload = reinterpret_cast<const char*>(r.p + 1);
        r.p += size + 1;
        return detail::parse_node_ext(payload, static_cast<std::size_t>(size), node, id, nullptr);
    }
    bool get(pid& v) { return node_ext(detail::pid_ext_type, v.node, v.serial); }
    bool get(ref& v) { return node_ext(detail::ref_ext_type, v.node, v.id); }
    bool get(term& v) noexcept { return r.value(v, max_depth); }
};

// Decodes the fields of an E into a new element of `out`; on declining,
// removes it again and returns false.
template <class E>
bool fast_decode(fast_fields& f, std::size_t count, std::vector<envelope>& out) {
    // The handshake carries extra checks (node name, key, nonce sizes): the
    // msgpack path, once per link.
    if constexpr (std::is_same_v<E, env_handshake>) {
        return false;
    } else {
        E& e = std::get<E>(out.emplace_back(std::in_place_type<E>));
        auto fs = fields(e);
        bool ok = count == std::tuple_size_v<decltype(fs)> &&
                  std::apply([&](auto&... x) { return (f.get(x) && ...); }, fs) && f.r.pending == 0;
        // A spawn request's flag bits as the msgpack path checks them
        // (unknown bits: declined, and that path gives the error).
        if constexpr (std::is_same_v<E, env_spawn_request>)
            ok = ok && (e.flags & ~(spawn_link_flag | spawn_monitor_flag)) == 0;
        if (!ok) out.pop_back();
        return ok;
    }
}

using fast_fn = bool (*)(fast_fields&, std::size_t, std::vector<envelope>&);

template <std::size_t... I>
constexpr std::array<fast_fn, sizeof...(I) + 1> make_fast_decoders(std::index_sequence<I...>) {
    return {nullptr, &fast_decode<std::variant_alternative_t<I, envelope>>...};
}
constexpr auto fast_decoders = make_fast_decoders(std::make_index_sequence<std::variant_size_v<envelope>>{});

// The fast path for the envelope at the start of [data, data+len) (not
// necessarily scanned: the reader applies the same bounds); false if it
// declined (`out` unchanged), else true with its length in `used`.
}  // namespace

bool fast_envelope(const char* data, std::size_t len, const decode_limits& limits, std::vector<envelope>& out,
                   std::size_t& used) {
    try {
        const auto* p = reinterpret_cast<const unsigned char*>(data);
        if (len == 0 || limits.max_depth == 0) return false;
        fast_fields f{{p, p + len, &limits}, limits.max_depth - 1};
        if (p[0] < 0x91 || p[0] > 0x9f) return false;
        const std::uint64_t count = p[0] & 0x0f;
        ++f.r.p;
        if (!f.r.take() || count > limits.max_array || !f.r.open(count)) return false;
        std::uint64_t tag;
        if (!f.any_uint(tag) || tag == 0 || tag >= fast_decoders.size()) return false;
        if (!fast_decoders[tag](f, static_cast<std::size_t>(count - 1), out)) return false;
        used = static_cast<std::size_t>(f.r.p - p);
        if (used > limits.max_bytes) {
            out.pop_back();
            return false;
        }
        return true;
    } catch (...) {
        return false;  // the msgpack path reports it
    }
}

}  // namespace kith::detail::envelope_fields
