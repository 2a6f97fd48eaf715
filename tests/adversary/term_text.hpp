// The text form of terms that the adversary reads on stdin (tests only): the
// inverse of kith::term::to_string for what the tests write. Strings "..",
// integers, floats with a dot, nil, true, false, [..], {K => V, ..}, pids
// <node.serial> / <null>, refs #Ref<node.id> / #Ref<null>.
#pragma once

#include <cctype>
#include <optional>
#include <string>
#include <string_view>

#include "kith/term.hpp"

namespace adv_text {

using kith::pid;
using kith::ref;
using kith::term;
using kith::term_array;
using kith::term_map;

struct parser {
    std::string_view s;
    std::size_t i = 0;
    void ws() {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    }
    bool eat(std::string_view t) {
        ws();
        if (s.substr(i, t.size()) == t) {
            i += t.size();
            return true;
        }
        return false;
    }
    std::optional<term> value() {
        ws();
        if (i >= s.size()) return std::nullopt;
        char c = s[i];
        if (c == '[') {
            ++i;
            term_array a;
            if (eat("]")) return term(std::move(a));
            for (;;) {
                auto v = value();
                if (!v) return std::nullopt;
                a.push_back(std::move(*v));
                if (eat("]")) return term(std::move(a));
                if (!eat(",")) return std::nullopt;
            }
        }
        if (c == '{') {
            ++i;
            term_map m;
            if (eat("}")) return term(std::move(m));
            for (;;) {
                auto k = value();
                if (!k || !eat("=>")) return std::nullopt;
                auto v = value();
                if (!v) return std::nullopt;
                m.emplace_back(std::move(*k), std::move(*v));
                if (eat("}")) return term(std::move(m));
                if (!eat(",")) return std::nullopt;
            }
        }
        if (c == '"') {
            std::string str;
            for (++i; i < s.size() && s[i] != '"'; ++i) {
                if (s[i] == '\\' && i + 1 < s.size()) ++i;
                str.push_back(s[i]);
            }
            if (i >= s.size()) return std::nullopt;
            ++i;
            return term(std::move(str));
        }
        if (c == '<' || c == '#') {
            auto end = s.find('>', i);
            if (end == std::string_view::npos) return std::nullopt;
            auto text = s.substr(i, end + 1 - i);
            i = end + 1;
            if (c == '<') {
                auto p = pid::parse(text);
                if (!p) return std::nullopt;
                return term(*p);
            }
            auto r = ref::parse(text);
            if (!r) return std::nullopt;
            return term(*r);
        }
        if (eat("nil")) return term();
        if (eat("true")) return term(true);
        if (eat("false")) return term(false);
        std::size_t b = i;
        if (i < s.size() && s[i] == '-') ++i;
        bool dot = false;
        while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) dot |= s[i++] == '.';
        if (i == b) return std::nullopt;
        std::string num(s.substr(b, i - b));
        if (dot) return term(std::stod(num));
        if (num[0] == '-') return term(std::stoll(num));
        return term(static_cast<unsigned long long>(std::stoull(num)));
    }
};

inline std::optional<term> parse_term(std::string_view text) {
    parser p{text};
    auto v = p.value();
    p.ws();
    if (!v || p.i != text.size()) return std::nullopt;
    return v;
}

}  // namespace adv_text
