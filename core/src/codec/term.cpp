// The term codec: pid/ref text forms, term accessors, rendering, encoding. The
// msgpack path is term_object.cpp, bounded decoding decode.cpp. Wire layout: docs/protocol.md ("Terms", "Ext types", "Limits").
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

}  // namespace kith
