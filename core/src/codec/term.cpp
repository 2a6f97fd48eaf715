// The term codec: term <-> msgpack, pid/ref text forms, term rendering.
// Wire layout: docs/protocol.md ("Terms", "Ext types", "Limits").
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

// ---- node names, pids and refs ---------------------------------------------

namespace {

bool name_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// "<node>.<serial>" (the part between the angle brackets); serial > 0.
template <class Id>
std::optional<std::pair<std::string, Id>> parse_node_dot_number(std::string_view s) {
    auto dot = s.rfind('.');
    if (dot == std::string_view::npos) return std::nullopt;
    std::string_view node = s.substr(0, dot), num = s.substr(dot + 1);
    if (!valid_node_name(node)) return std::nullopt;
    if (num.empty() || num.size() > 20 || num[0] == '0') return std::nullopt;  // no leading zeros, > 0
    Id v = 0;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
    if (ec != std::errc() || p != num.data() + num.size() || v == 0) return std::nullopt;
    return std::make_pair(std::string(node), v);
}

}  // namespace

bool valid_node_name(std::string_view name) noexcept {
    if (name.size() < 3 || name.size() > 255) return false;
    auto at = name.find('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == name.size()) return false;
    for (std::size_t i = 0; i < at; ++i)
        if (!name_char(name[i])) return false;
    for (std::size_t i = at + 1; i < name.size(); ++i)
        if (!name_char(name[i]) && name[i] != '.') return false;
    return true;
}

std::string pid::to_string() const {
    if (is_null()) return "<null>";
    return "<" + node + "." + std::to_string(serial) + ">";
}

std::optional<pid> pid::parse(std::string_view text) {
    if (text.size() < 2 || text.front() != '<' || text.back() != '>') return std::nullopt;
    std::string_view in = text.substr(1, text.size() - 2);
    if (in == "null") return pid{};
    auto r = parse_node_dot_number<std::uint64_t>(in);
    if (!r) return std::nullopt;
    return pid{std::move(r->first), r->second};
}

std::string ref::to_string() const {
    if (is_null()) return "#Ref<null>";
    return "#Ref<" + node + "." + std::to_string(id) + ">";
}

std::optional<ref> ref::parse(std::string_view text) {
    constexpr std::string_view prefix = "#Ref<";
    if (text.size() < prefix.size() + 1 || text.substr(0, prefix.size()) != prefix || text.back() != '>')
        return std::nullopt;
    std::string_view in = text.substr(prefix.size(), text.size() - prefix.size() - 1);
    if (in == "null") return ref{};
    auto r = parse_node_dot_number<std::uint64_t>(in);
    if (!r) return std::nullopt;
    return ref{std::move(r->first), r->second};
}

// ---- term accessors ---------------------------------------------------------

std::optional<std::int64_t> term::as_int() const noexcept {
    if (auto* i = get_if<std::int64_t>()) return *i;
    return std::nullopt;  // uint64 values are > INT64_MAX by normalisation
}

std::optional<double> term::as_float() const noexcept {
    if (auto* d = get_if<double>()) return *d;
    if (auto* i = get_if<std::int64_t>()) return static_cast<double>(*i);
    if (auto* u = get_if<std::uint64_t>()) return static_cast<double>(*u);
    return std::nullopt;
}

const term* term::at(std::size_t i) const noexcept {
    auto* a = as_array();
    return a && i < a->size() ? &(*a)[i] : nullptr;
}

std::size_t term::size() const noexcept {
    if (auto* a = as_array()) return a->size();
    if (auto* m = as_map()) return m->size();
    return 0;
}

const term* term::lookup(const term& key) const noexcept {
    if (auto* m = as_map())
        for (const auto& kv : *m)
            if (kv.first == key) return &kv.second;
    return nullptr;
}

// ---- rendering --------------------------------------------------------------

namespace {

void render_string(const std::string& s, std::string& out) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\x%02x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    out += '"';
}

void render_double(double d, std::string& out) {
    if (std::isnan(d)) { out += "nan"; return; }
    if (std::isinf(d)) { out += d < 0 ? "-inf" : "inf"; return; }
    char buf[32];
    auto [p, ec] = std::to_chars(buf, buf + sizeof buf, d);
    std::string_view s(buf, ec == std::errc() ? static_cast<std::size_t>(p - buf) : 0);
    out += s;
    if (s.find_first_of(".e") == std::string_view::npos) out += ".0";
}

void render(const term& t, std::string& out) {
    struct visitor {
        std::string& out;
        void operator()(nil_t) const { out += "nil"; }
        void operator()(bool b) const { out += b ? "true" : "false"; }
        void operator()(std::int64_t i) const { out += std::to_string(i); }
        void operator()(std::uint64_t u) const { out += std::to_string(u); }
        void operator()(double d) const { render_double(d, out); }
        void operator()(const std::string& s) const { render_string(s, out); }
        void operator()(const binary& b) const {
            if (b.size() > 16) {
                out += "#bin[" + std::to_string(b.size()) + "]";
                return;
            }
            out += "<<";
            for (std::size_t i = 0; i < b.size(); ++i) {
                if (i) out += ',';
                out += std::to_string(b.bytes[i]);
            }
            out += ">>";
        }
        void operator()(const term_array& a) const {
            out += '[';
            for (std::size_t i = 0; i < a.size(); ++i) {
                if (i) out += ", ";
                render(a[i], out);
            }
            out += ']';
        }
        void operator()(const term_map& m) const {
            out += '{';
            for (std::size_t i = 0; i < m.size(); ++i) {
                if (i) out += ", ";
                render(m[i].first, out);
                out += " => ";
                render(m[i].second, out);
            }
            out += '}';
        }
        void operator()(const pid& p) const { out += p.to_string(); }
        void operator()(const ref& r) const { out += r.to_string(); }
    };
    std::visit(visitor{out}, t.value());
}

}  // namespace

std::string term::to_string() const {
    std::string out;
    render(*this, out);
    return out;
}

// ---- encoding ---------------------------------------------------------------

void encode(const term& t, std::string& out) {
    detail::string_sink sink{&out};
    msgpack::packer<detail::string_sink> pk(sink);
    detail::pack_term(pk, t);
}

std::string encode(const term& t) {
    std::string out;
    encode(t, out);
    return out;
}

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
