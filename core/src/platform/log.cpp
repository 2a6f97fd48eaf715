// log.cpp — the one logging sink (kith/log.hpp) and peer text escaping.
#include "kith/log.hpp"

#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>

namespace kith {

std::string_view to_string(log_level l) noexcept {
    switch (l) {
        case log_level::debug: return "debug";
        case log_level::info: return "info";
        case log_level::warning: return "warning";
        case log_level::error: return "error";
    }
    return "?";
}

namespace {

void write_stderr(const log_record& r, std::string_view note = {}) noexcept {
    // One fprintf per record, so lines from several threads do not interleave.
    std::string node = r.node.empty() ? std::string() : " [" + std::string(r.node) + "]";
    std::fprintf(stderr, "kith %.*s%s: %.*s: %.*s%.*s\n", static_cast<int>(r.source.size()), r.source.data(),
                 node.c_str(), static_cast<int>(to_string(r.level).size()), to_string(r.level).data(),
                 static_cast<int>(r.text.size()), r.text.data(), static_cast<int>(note.size()), note.data());
}

struct default_sink {
    std::mutex mu;
    std::shared_ptr<const log_sink> sink;  // null: stderr
    log_level min = log_level::info;
};

default_sink& defaults() {
    static default_sink d;  // never destroyed before static-lifetime nodes log
    return d;
}

void deliver(const log_sink& sink, const log_record& r) noexcept {
    try {
        sink(r);
    } catch (const std::exception& e) {
        write_stderr(r, std::string(" (the log sink threw: ") + e.what() + ")");
    } catch (...) {
        write_stderr(r, " (the log sink threw)");
    }
}

}  // namespace

void set_default_log_sink(log_sink sink, log_level min) {
    auto& d = defaults();
    std::lock_guard lk(d.mu);
    d.sink = sink ? std::make_shared<const log_sink>(std::move(sink)) : nullptr;
    d.min = min;
}

void log_to(const log_sink& sink, const log_record& r) noexcept {
    if (sink) return deliver(sink, r);
    std::shared_ptr<const log_sink> s;
    log_level min;
    {
        auto& d = defaults();
        std::lock_guard lk(d.mu);
        s = d.sink;
        min = d.min;
    }
    if (r.level < min) return;
    if (s) deliver(*s, r);
    else write_stderr(r);
}

void log(log_level level, std::string_view source, std::string_view text) noexcept {
    log_record r;
    r.level = level;
    r.source = source;
    r.text = text;
    log_to(log_sink{}, r);
}

std::string escape_peer_text(std::string_view t, std::size_t max) {
    static const char* hexd = "0123456789abcdef";
    std::string out;
    auto esc = [&](unsigned char c) {
        out += "\\x";
        out += hexd[c >> 4];
        out += hexd[c & 15];
    };
    for (std::size_t i = 0; i < t.size();) {
        if (out.size() >= max) {
            out += "...";
            break;
        }
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

}  // namespace kith
