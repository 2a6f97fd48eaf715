#include "json_term.hpp"

#include <sodium.h>

#include <nlohmann/json.hpp>

namespace kith::cli {
namespace {

using json = nlohmann::json;
constexpr int kMaxDepth = 64;

std::string base64(const binary& b) {
    std::string out(sodium_base64_encoded_len(b.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
    sodium_bin2base64(out.data(), out.size(), b.bytes.data(), b.size(), sodium_base64_VARIANT_ORIGINAL);
    out.resize(out.size() - 1);  // the terminating NUL
    return out;
}

result<binary> unbase64(const std::string& s) {
    std::vector<std::uint8_t> out(s.size() / 4 * 3 + 3);
    std::size_t n = 0;
    if (sodium_base642bin(out.data(), out.size(), s.data(), s.size(), nullptr, &n, nullptr,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return error(errc::badarg, "\"$bin\" is not valid base64");
    out.resize(n);
    return binary(std::move(out));
}

result<term> from_json(const json& j, int depth) {
    if (depth > kMaxDepth) return error(errc::badarg, "nesting deeper than " + std::to_string(kMaxDepth));
    switch (j.type()) {
    case json::value_t::null: return term(nil);
    case json::value_t::boolean: return term(j.get<bool>());
    case json::value_t::number_integer: return term(static_cast<long long>(j.get<std::int64_t>()));
    case json::value_t::number_unsigned: return term(static_cast<unsigned long long>(j.get<std::uint64_t>()));
    case json::value_t::number_float: return term(j.get<double>());
    case json::value_t::string: return term(j.get<std::string>());
    case json::value_t::array: {
        term_array a;
        a.reserve(j.size());
        for (auto& e : j) {
            auto t = from_json(e, depth + 1);
            if (!t) return t;
            a.push_back(std::move(*t));
        }
        return term(std::move(a));
    }
    case json::value_t::object: {
        if (j.size() == 1) {
            // The key and value of the object's one member; both refer into
            // `j` (a structured binding of *j.items().begin() would refer
            // into the iterator, a temporary gone after that line).
            const auto it = j.begin();
            const std::string& k = it.key();
            const json& v = it.value();
            if (k == "$pid" || k == "$ref" || k == "$bin") {
                if (!v.is_string()) return error(errc::badarg, "\"" + k + "\" needs a string");
                auto s = v.get<std::string>();
                if (k == "$bin") {
                    auto b = unbase64(s);
                    if (!b) return b.err();
                    return term(std::move(*b));
                }
                if (k == "$pid") {
                    if (auto p = pid::parse(s)) return term(*p);
                    return error(errc::badarg, "\"" + s + "\" is not a pid (expected <name@host.42>)");
                }
                if (auto r = ref::parse(s)) return term(*r);
                return error(errc::badarg, "\"" + s + "\" is not a ref (expected #Ref<name@host.7>)");
            }
            if (k == "$map") {
                if (!v.is_array()) return error(errc::badarg, "\"$map\" needs an array of [key, value] pairs");
                term_map m;
                for (auto& kv : v) {
                    if (!kv.is_array() || kv.size() != 2)
                        return error(errc::badarg, "\"$map\" needs an array of [key, value] pairs");
                    auto key = from_json(kv[0], depth + 2);
                    if (!key) return key;
                    auto val = from_json(kv[1], depth + 2);
                    if (!val) return val;
                    m.emplace_back(std::move(*key), std::move(*val));
                }
                return term(std::move(m));
            }
        }
        term_map m;
        for (auto& [k, v] : j.items()) {
            auto val = from_json(v, depth + 1);
            if (!val) return val;
            m.emplace_back(term(k), std::move(*val));
        }
        return term(std::move(m));
    }
    default: return error(errc::badarg, "unsupported JSON value");
    }
}

json to_json_value(const term& t) {
    struct visitor {
        json operator()(nil_t) const { return nullptr; }
        json operator()(bool b) const { return b; }
        json operator()(std::int64_t i) const { return i; }
        json operator()(std::uint64_t u) const { return u; }
        json operator()(double d) const { return d; }
        json operator()(const std::string& s) const { return s; }
        json operator()(const binary& b) const { return json{{"$bin", base64(b)}}; }
        json operator()(const term_array& a) const {
            json out = json::array();
            for (auto& e : a) out.push_back(to_json_value(e));
            return out;
        }
        json operator()(const term_map& m) const {
            bool string_keys = true;
            for (auto& [k, v] : m) string_keys = string_keys && k.is_string();
            if (string_keys) {
                json out = json::object();
                for (auto& [k, v] : m)
                    if (!out.contains(*k.as_string())) out[*k.as_string()] = to_json_value(v);  // first wins
                return out;
            }
            json pairs = json::array();
            for (auto& [k, v] : m) pairs.push_back(json::array({to_json_value(k), to_json_value(v)}));
            return json{{"$map", pairs}};
        }
        json operator()(const pid& p) const { return json{{"$pid", p.to_string()}}; }
        json operator()(const ref& r) const { return json{{"$ref", r.to_string()}}; }
    };
    return std::visit(visitor{}, t.value());
}

}  // namespace

result<term> parse_json(std::string_view text) {
    // Bound the nesting before parsing (the parser's own depth is unbounded).
    int depth = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > kMaxDepth) return error(errc::badarg, "bad JSON: nesting deeper than " + std::to_string(kMaxDepth));
        } else if (c == ']' || c == '}') --depth;
    }
    json j;
    try {
        j = json::parse(text.begin(), text.end());
    } catch (const json::parse_error& e) {
        std::string what = e.what();
        if (auto p = what.find("parse error"); p != std::string::npos) what = what.substr(p);
        return error(errc::badarg, "bad JSON '" + std::string(text.substr(0, 60)) + "': " + what);
    }
    return from_json(j, 0);
}

std::string to_json(const term& t) {
    return to_json_value(t).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace kith::cli
