// line_records.hpp (private) — the frame shared by the relay's small text
// files (relay-names, relay-grants): a magic first line, comment and empty
// lines, record lines, and a closing "end N" that counts the records, so a
// file cut short is told from a complete one. Everything in such a file is
// treated as untrusted: every line is checked, and the first fault is
// reported as errc::decode "line N: why".
#pragma once

#include <charconv>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "kith/error.hpp"

namespace kith::line_records {

// Calls `record(line)` for each record line (neither comment nor empty nor
// the end line); it returns the fault, or nothing when the line is good.
// `count()` is the number of records accepted so far (for the end line).
inline result<void> parse(std::string_view text, std::string_view magic, const std::string& what,
                          const std::function<std::optional<std::string>(std::string_view)>& record,
                          const std::function<std::size_t()>& count) {
    std::size_t lineno = 0, pos = 0;
    bool seen_magic = false, ended = false;
    auto bad = [&](const std::string& why) { return error{errc::decode, "line " + std::to_string(lineno) + ": " + why}; };
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        ++lineno;
        if (nl == std::string_view::npos) return bad("cut short (the last line has no end)");
        std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        if (ended) {
            if (!line.empty()) return bad("text after the end line");
            continue;
        }
        if (!seen_magic) {
            if (line != magic) return bad("expected \"" + std::string(magic) + "\"");
            seen_magic = true;
            continue;
        }
        if (line.empty() || line.starts_with("#")) continue;
        if (line.starts_with("end ")) {
            std::size_t n = 0;
            auto v = line.substr(4);
            auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec != std::errc() || p != v.data() + v.size() || n != count())
                return bad("the end line does not count the " + std::to_string(count()) + " " + what + " above it");
            ended = true;
            continue;
        }
        if (auto why = record(line)) return bad(*why);
    }
    if (!seen_magic) return error{errc::decode, "empty"};
    if (!ended) return error{errc::decode, "cut short: no end line"};
    return {};
}

}  // namespace kith::line_records
