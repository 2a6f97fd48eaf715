// term_object.cpp — conversion between msgpack::object and term, pid/ref ext
// payloads, and bad_type messages (the msgpack path of the term codec).
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

// ---- conversion between msgpack::object and term ----------------------------

namespace detail {

bool parse_node_ext(const char* payload, std::size_t size, std::string& node, std::uint64_t& n,
                    std::string* why) noexcept {
    auto fail = [&](const char* msg) {
        if (why) *why = msg;
        return false;
    };
    if (size < 8) return fail("ext payload shorter than 8 bytes");
    std::uint64_t v = load_be64(payload);
    std::string_view name(payload + 8, size - 8);
    if (v == 0) {
        if (!name.empty()) return fail("null id with a non-empty node name");
        node.clear();
        n = 0;
        return true;
    }
    if (name.empty()) return fail("empty node name");
    // A frame names the same few nodes over and over (every pid and ref in
    // it): remember the last name this thread found valid and skip the
    // character-by-character check when it repeats.
    struct last_valid {
        std::size_t len = 0;  // 0: none yet (a valid name is never empty)
        char bytes[256];
    };
    thread_local last_valid last;
    if (name.size() != last.len || std::memcmp(name.data(), last.bytes, name.size()) != 0) {
        if (!valid_node_name(name)) return fail("invalid node name");
        if (name.size() <= sizeof last.bytes) {
            std::memcpy(last.bytes, name.data(), name.size());
            last.len = name.size();
        }
    }
    try {
        node.assign(name);
    } catch (...) {
        return fail("out of memory");
    }
    n = v;
    return true;
}

term term_from_object(const msgpack::object& o) {
    switch (o.type) {
        case msgpack::type::NIL: return term();
        case msgpack::type::BOOLEAN: return term(o.via.boolean);
        case msgpack::type::POSITIVE_INTEGER: return term(static_cast<unsigned long long>(o.via.u64));
        case msgpack::type::NEGATIVE_INTEGER: return term(static_cast<long long>(o.via.i64));
        case msgpack::type::FLOAT32:
        case msgpack::type::FLOAT64: return term(o.via.f64);
        case msgpack::type::STR: return term(std::string(o.via.str.ptr, o.via.str.size));
        case msgpack::type::BIN: return term(binary(o.via.bin.ptr, o.via.bin.size));
        case msgpack::type::ARRAY: {
            term_array a;
            a.reserve(o.via.array.size);
            for (std::uint32_t i = 0; i < o.via.array.size; ++i) a.push_back(term_from_object(o.via.array.ptr[i]));
            return term(std::move(a));
        }
        case msgpack::type::MAP: {
            term_map m;
            m.reserve(o.via.map.size);
            for (std::uint32_t i = 0; i < o.via.map.size; ++i)
                m.emplace_back(term_from_object(o.via.map.ptr[i].key), term_from_object(o.via.map.ptr[i].val));
            return term(std::move(m));
        }
        case msgpack::type::EXT: {
            const std::int8_t type = o.via.ext.type();
            std::string why;
            if (type == pid_ext_type) {
                pid p;
                if (!parse_node_ext(o.via.ext.data(), o.via.ext.size, p.node, p.serial, &why))
                    throw conversion_error("bad pid ext: " + why);
                return term(std::move(p));
            }
            if (type == ref_ext_type) {
                ref r;
                if (!parse_node_ext(o.via.ext.data(), o.via.ext.size, r.node, r.id, &why))
                    throw conversion_error("bad ref ext: " + why);
                return term(std::move(r));
            }
            throw conversion_error("unknown ext type " + std::to_string(type));
        }
    }
    throw conversion_error("unknown msgpack object type");
}

void term_to_object(msgpack::object::with_zone& o, const term& t) {
    struct visitor {
        msgpack::object::with_zone& o;
        void operator()(nil_t) const { o.type = msgpack::type::NIL; }
        void operator()(bool b) const {
            o.type = msgpack::type::BOOLEAN;
            o.via.boolean = b;
        }
        void operator()(std::int64_t i) const {
            if (i < 0) {
                o.type = msgpack::type::NEGATIVE_INTEGER;
                o.via.i64 = i;
            } else {
                o.type = msgpack::type::POSITIVE_INTEGER;
                o.via.u64 = static_cast<std::uint64_t>(i);
            }
        }
        void operator()(std::uint64_t u) const {
            o.type = msgpack::type::POSITIVE_INTEGER;
            o.via.u64 = u;
        }
        void operator()(double d) const {
            o.type = msgpack::type::FLOAT64;
            o.via.f64 = d;
        }
        char* copy(const void* p, std::size_t n) const {
            if (n == 0) return nullptr;
            char* q = static_cast<char*>(o.zone.allocate_align(n, MSGPACK_ZONE_ALIGNOF(char)));
            std::memcpy(q, p, n);
            return q;
        }
        void operator()(const std::string& s) const {
            o.type = msgpack::type::STR;
            o.via.str.size = static_cast<std::uint32_t>(s.size());
            o.via.str.ptr = copy(s.data(), s.size());
        }
        void operator()(const binary& b) const {
            o.type = msgpack::type::BIN;
            o.via.bin.size = static_cast<std::uint32_t>(b.size());
            o.via.bin.ptr = copy(b.bytes.data(), b.size());
        }
        void operator()(const term_array& a) const {
            o.type = msgpack::type::ARRAY;
            o.via.array.size = static_cast<std::uint32_t>(a.size());
            o.via.array.ptr = nullptr;
            if (a.empty()) return;
            auto* p = static_cast<msgpack::object*>(
                o.zone.allocate_align(sizeof(msgpack::object) * a.size(), MSGPACK_ZONE_ALIGNOF(msgpack::object)));
            o.via.array.ptr = p;
            for (std::size_t i = 0; i < a.size(); ++i) {
                msgpack::object::with_zone e(o.zone);
                term_to_object(e, a[i]);
                p[i] = e;
            }
        }
        void operator()(const term_map& m) const {
            o.type = msgpack::type::MAP;
            o.via.map.size = static_cast<std::uint32_t>(m.size());
            o.via.map.ptr = nullptr;
            if (m.empty()) return;
            auto* p = static_cast<msgpack::object_kv*>(
                o.zone.allocate_align(sizeof(msgpack::object_kv) * m.size(), MSGPACK_ZONE_ALIGNOF(msgpack::object_kv)));
            o.via.map.ptr = p;
            for (std::size_t i = 0; i < m.size(); ++i) {
                msgpack::object::with_zone k(o.zone), v(o.zone);
                term_to_object(k, m[i].first);
                term_to_object(v, m[i].second);
                p[i].key = k;
                p[i].val = v;
            }
        }
        void node_ext(std::int8_t type, const std::string& node, std::uint64_t n) const {
            const std::size_t name_len = n == 0 ? 0 : node.size();
            char* p = static_cast<char*>(o.zone.allocate_align(1 + 8 + name_len, MSGPACK_ZONE_ALIGNOF(char)));
            p[0] = static_cast<char>(type);
            store_be64(p + 1, n);
            if (name_len) std::memcpy(p + 9, node.data(), name_len);
            o.type = msgpack::type::EXT;
            o.via.ext.ptr = p;
            o.via.ext.size = static_cast<std::uint32_t>(8 + name_len);
        }
        void operator()(const pid& x) const { node_ext(pid_ext_type, x.node, x.serial); }
        void operator()(const ref& x) const { node_ext(ref_ext_type, x.node, x.id); }
    };
    std::visit(visitor{o}, t.value());
}

std::string bad_type_message(const term& t, std::string_view type, const char* why) {
    std::string r = t.to_string();
    if (r.size() > 80) r = r.substr(0, 77) + "...";
    std::string m = "cannot convert " + r + " to " + std::string(type);
    std::string_view w = why ? why : "";
    if (!w.empty() && w != "std::bad_cast") m += " (" + std::string(w) + ")";
    return m;
}

}  // namespace detail
}  // namespace kith
