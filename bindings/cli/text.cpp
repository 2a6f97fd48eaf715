// text.cpp — escaping peer-supplied text for the terminal (text.hpp).
#include "text.hpp"

#include <cstdint>

namespace kith::cli {

std::string printable(std::string_view t) {
    static const char* hexd = "0123456789abcdef";
    std::string out;
    auto esc = [&](unsigned char c) {
        out += "\\x";
        out += hexd[c >> 4];
        out += hexd[c & 15];
    };
    for (std::size_t i = 0; i < t.size();) {
        auto c = static_cast<unsigned char>(t[i]);
        if (c == '\\') {
            out += "\\\\";
            ++i;
        } else if (c == '\n') {
            out += "\\n";
            ++i;
        } else if (c == '\r') {
            out += "\\r";
            ++i;
        } else if (c == '\t') {
            out += "\\t";
            ++i;
        } else if (c < 0x20 || c == 0x7f) {
            esc(c);
            ++i;
        } else if (c < 0x80) {
            out += static_cast<char>(c);
            ++i;
        } else {
            // A well-formed UTF-8 sequence passes, except C1 controls
            // (U+0080..U+009F: terminal escapes such as CSI).
            std::size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
            bool ok = n > 0 && i + n <= t.size();
            for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(t[i + k]) & 0xc0) == 0x80;
            if (ok) {
                std::uint32_t cp = n == 2 ? (c & 0x1fu) : n == 3 ? (c & 0x0fu) : (c & 0x07u);
                for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(t[i + k]) & 0x3fu);
                const bool overlong = (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
                const bool bad = overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0 ||
                                 (cp >= 0x2028 && cp <= 0x2029) || (cp >= 0x202a && cp <= 0x202e) ||
                                 (cp >= 0x2066 && cp <= 0x2069);  // line separators, bidi overrides
                if (!bad) {
                    out.append(t.substr(i, n));
                    i += n;
                    continue;
                }
            }
            esc(c);
            ++i;
        }
    }
    return out;
}

}  // namespace kith::cli
