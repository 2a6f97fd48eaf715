// kith/convert.hpp — typed C++ <-> term conversion, and msgpack adaptors for
// kith's value types.
//
// Include this header to use term::from(v) and t.as<T>(), or to put kith::pid,
// kith::ref, kith::binary or kith::term inside your own structs:
//
//     struct job {
//         std::string name;
//         kith::pid owner;
//         kith::term payload;
//         MSGPACK_DEFINE(name, owner, payload);
//     };
//     kith::term t = kith::term::from(job{...});
//     kith::result<job> j = t.as<job>();   // errc::bad_type on a mismatch
//
// Any type that msgpack-c can convert works: integers, floats, bool,
// std::string, std::vector, std::map, std::tuple, std::optional, and
// MSGPACK_DEFINE structs (encoded as arrays). Following msgpack-c, a
// MSGPACK_DEFINE struct converted from a shorter array keeps the defaults of
// its missing trailing members (useful when a newer peer adds a field); a
// member of the wrong type, an integer out of range or a non-array is
// errc::bad_type.
//
// Errors: as<T>() never throws; it returns errc::bad_type with a description.
// term::from(v) throws msgpack::type_error (kith::detail::conversion_error) only
// when `v` packs to something a term cannot hold (a foreign msgpack ext type).
// Thread-safety: stateless; reentrant.
#pragma once

#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <type_traits>

#include <msgpack.hpp>

#include "kith/term.hpp"

namespace kith {

namespace detail {

// msgpack ext type codes of pid and ref. Used on the wire; never change.
inline constexpr std::int8_t pid_ext_type = 1;
inline constexpr std::int8_t ref_ext_type = 2;

// A conversion failure with a description (what() says what was wrong).
class conversion_error : public msgpack::type_error {
public:
    explicit conversion_error(std::string msg) : msg_(std::move(msg)) {}
    const char* what() const noexcept override { return msg_.c_str(); }

private:
    std::string msg_;
};

// A msgpack stream that appends to a std::string (msgpack::packer<string_sink>).
struct string_sink {
    std::string* out;
    void write(const char* p, std::size_t n) { out->append(p, n); }
};

inline void store_be64(char* out, std::uint64_t v) noexcept {
    for (int i = 7; i >= 0; --i) {
        out[i] = static_cast<char>(v & 0xff);
        v >>= 8;
    }
}

inline std::uint64_t load_be64(const char* in) noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
    return v;
}

// Packs a pid/ref ext: 8-byte big-endian serial/id, then the node name (empty
// for the null pid/ref). See docs/protocol.md, "Ext types".
template <class Stream>
void pack_node_ext(msgpack::packer<Stream>& pk, std::int8_t type, const std::string& node, std::uint64_t n) {
    char be[8];
    store_be64(be, n);
    const std::size_t name_len = n == 0 ? 0 : node.size();
    pk.pack_ext(8 + name_len, type);
    pk.pack_ext_body(be, 8);
    if (name_len) pk.pack_ext_body(node.data(), static_cast<std::uint32_t>(name_len));
}

// Packs a double as msgpack float64 (0xcb + 8 bytes big-endian), always.
// msgpack-c 4.1.3's packer::pack_double writes integral doubles as integers
// (2.0 becomes 2), which would change a term's type on the wire, so kith does
// not use it. pack_bin_body appends raw bytes.
template <class Stream>
void pack_float64(msgpack::packer<Stream>& pk, double d) {
    std::uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    char buf[9];
    buf[0] = static_cast<char>(0xcb);
    store_be64(buf + 1, bits);
    pk.pack_bin_body(buf, 9);
}

// Validates and reads a pid/ref ext payload. On failure returns false and,
// when `why` is non-null, stores a description.
bool parse_node_ext(const char* payload, std::size_t size, std::string& node, std::uint64_t& n,
                    std::string* why) noexcept;

// Packs a term (canonical msgpack, see kith::encode).
template <class Stream>
void pack_term(msgpack::packer<Stream>& pk, const term& t);

// msgpack::object -> term. Throws conversion_error on an unknown ext type or a
// bad pid/ref payload. Recursion depth equals the object's nesting.
term term_from_object(const msgpack::object& o);
// term -> msgpack::object whose storage lives in o.zone.
void term_to_object(msgpack::object::with_zone& o, const term& t);

// "cannot convert <rendering> to <type>"
std::string bad_type_message(const term& t, std::string_view type, const char* why);

template <class T>
constexpr std::string_view type_name() noexcept {
    std::string_view f = __PRETTY_FUNCTION__;
    auto b = f.find("T = ");
    if (b == std::string_view::npos) return "the requested type";
    b += 4;
    auto e = f.find_first_of(";]", b);
    return f.substr(b, e == std::string_view::npos ? f.size() - b : e - b);
}

template <class Stream>
void pack_term(msgpack::packer<Stream>& pk, const term& t) {
    struct visitor {
        msgpack::packer<Stream>& pk;
        void operator()(nil_t) const { pk.pack_nil(); }
        void operator()(bool b) const { b ? pk.pack_true() : pk.pack_false(); }
        void operator()(std::int64_t i) const { pk.pack_int64(i); }
        void operator()(std::uint64_t u) const { pk.pack_uint64(u); }
        void operator()(double d) const { pack_float64(pk, d); }
        void operator()(const std::string& s) const {
            pk.pack_str(static_cast<std::uint32_t>(s.size()));
            pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
        }
        void operator()(const binary& b) const {
            pk.pack_bin(static_cast<std::uint32_t>(b.size()));
            pk.pack_bin_body(reinterpret_cast<const char*>(b.bytes.data()), static_cast<std::uint32_t>(b.size()));
        }
        void operator()(const term_array& a) const {
            pk.pack_array(static_cast<std::uint32_t>(a.size()));
            for (const term& x : a) pack_term(pk, x);
        }
        void operator()(const term_map& m) const {
            pk.pack_map(static_cast<std::uint32_t>(m.size()));
            for (const auto& [k, v] : m) {
                pack_term(pk, k);
                pack_term(pk, v);
            }
        }
        void operator()(const pid& p) const { pack_node_ext(pk, pid_ext_type, p.node, p.serial); }
        void operator()(const ref& r) const { pack_node_ext(pk, ref_ext_type, r.node, r.id); }
    };
    std::visit(visitor{pk}, t.value());
}

}  // namespace detail
}  // namespace kith

// ---- msgpack adaptors -------------------------------------------------------
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {

template <>
struct convert<kith::pid> {
    const msgpack::object& operator()(const msgpack::object& o, kith::pid& v) const {
        if (o.type != msgpack::type::EXT || o.via.ext.type() != kith::detail::pid_ext_type) throw msgpack::type_error();
        std::string why;
        if (!kith::detail::parse_node_ext(o.via.ext.data(), o.via.ext.size, v.node, v.serial, &why))
            throw kith::detail::conversion_error("pid: " + why);
        return o;
    }
};
template <>
struct pack<kith::pid> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& pk, const kith::pid& v) const {
        kith::detail::pack_node_ext(pk, kith::detail::pid_ext_type, v.node, v.serial);
        return pk;
    }
};
template <>
struct object_with_zone<kith::pid> {
    void operator()(msgpack::object::with_zone& o, const kith::pid& v) const {
        kith::detail::term_to_object(o, kith::term(v));
    }
};

template <>
struct convert<kith::ref> {
    const msgpack::object& operator()(const msgpack::object& o, kith::ref& v) const {
        if (o.type != msgpack::type::EXT || o.via.ext.type() != kith::detail::ref_ext_type) throw msgpack::type_error();
        std::string why;
        if (!kith::detail::parse_node_ext(o.via.ext.data(), o.via.ext.size, v.node, v.id, &why))
            throw kith::detail::conversion_error("ref: " + why);
        return o;
    }
};
template <>
struct pack<kith::ref> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& pk, const kith::ref& v) const {
        kith::detail::pack_node_ext(pk, kith::detail::ref_ext_type, v.node, v.id);
        return pk;
    }
};
template <>
struct object_with_zone<kith::ref> {
    void operator()(msgpack::object::with_zone& o, const kith::ref& v) const {
        kith::detail::term_to_object(o, kith::term(v));
    }
};

template <>
struct convert<kith::binary> {
    const msgpack::object& operator()(const msgpack::object& o, kith::binary& v) const {
        if (o.type != msgpack::type::BIN) throw msgpack::type_error();
        const auto* p = reinterpret_cast<const std::uint8_t*>(o.via.bin.ptr);
        v.bytes.assign(p, p + o.via.bin.size);
        return o;
    }
};
template <>
struct pack<kith::binary> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& pk, const kith::binary& v) const {
        pk.pack_bin(static_cast<std::uint32_t>(v.size()));
        pk.pack_bin_body(reinterpret_cast<const char*>(v.bytes.data()), static_cast<std::uint32_t>(v.size()));
        return pk;
    }
};
template <>
struct object_with_zone<kith::binary> {
    void operator()(msgpack::object::with_zone& o, const kith::binary& v) const {
        o.type = msgpack::type::BIN;
        o.via.bin.size = static_cast<std::uint32_t>(v.size());
        if (v.size() == 0) {
            o.via.bin.ptr = nullptr;
            return;
        }
        char* p = static_cast<char*>(o.zone.allocate_align(v.size(), MSGPACK_ZONE_ALIGNOF(char)));
        std::memcpy(p, v.bytes.data(), v.size());
        o.via.bin.ptr = p;
    }
};

template <>
struct convert<kith::term> {
    const msgpack::object& operator()(const msgpack::object& o, kith::term& v) const {
        v = kith::detail::term_from_object(o);
        return o;
    }
};
template <>
struct pack<kith::term> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& pk, const kith::term& v) const {
        kith::detail::pack_term(pk, v);
        return pk;
    }
};
template <>
struct object_with_zone<kith::term> {
    void operator()(msgpack::object::with_zone& o, const kith::term& v) const { kith::detail::term_to_object(o, v); }
};

}  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack

// ---- typed conversion (after the adaptors, which it instantiates) ----------
namespace kith {

template <class T>
term term::from(const T& value) {
    if constexpr (std::is_same_v<T, term>) {
        return value;
    } else {
        msgpack::zone z;
        msgpack::object::with_zone o(z);
        o.type = msgpack::type::NIL;
        o.via.u64 = 0;
        msgpack::adaptor::object_with_zone<T>()(o, value);
        return detail::term_from_object(o);
    }
}

template <class T>
result<T> term::as() const {
    if constexpr (std::is_same_v<T, term>) {
        return result<T>(*this);
    } else {
        try {
            msgpack::zone z;
            msgpack::object o(*this, z);
            if constexpr (std::is_default_constructible_v<T>) {
                T v{};
                o.convert(v);
                return result<T>(std::move(v));
            } else {
                return result<T>(o.as<T>());
            }
        } catch (const std::exception& e) {
            return result<T>(error{errc::bad_type, detail::bad_type_message(*this, detail::type_name<T>(), e.what())});
        }
    }
}

}  // namespace kith
