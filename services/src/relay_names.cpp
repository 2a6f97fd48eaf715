// relay_names.cpp — the relay's name bindings on disk. See relay_names.hpp.
#include "relay_names.hpp"

#include <charconv>
#include <optional>

#include "kith/keys.hpp"
#include "kith/platform.hpp"
#include "kith/term.hpp"
#include "line_records.hpp"

namespace kith::relay_names {

namespace {
constexpr std::string_view kMagic = "kith-relay-names 1";
}

std::string to_text(const table& t) {
    std::string out = std::string(kMagic) +
                      "\n# node names bound to the key that registered them first at this relay (docs/relay.md)\n";
    for (auto& [name, b] : t) out += "name " + name + " " + b.key_z85 + " " + std::to_string(b.seen) + "\n";
    out += "end " + std::to_string(t.size()) + "\n";
    return out;
}

result<table> parse(std::string_view text) {
    table t;
    auto record = [&](std::string_view line) -> std::optional<std::string> {
        if (!line.starts_with("name ")) return "unknown line";
        std::string_view rest = line.substr(5);
        auto s1 = rest.find(' ');
        auto s2 = s1 == std::string_view::npos ? s1 : rest.find(' ', s1 + 1);
        if (s2 == std::string_view::npos) return "expected: name NODE KEY SECONDS";
        std::string name(rest.substr(0, s1));
        std::string key(rest.substr(s1 + 1, s2 - s1 - 1));
        auto secs = rest.substr(s2 + 1);
        std::int64_t seen = 0;
        auto [p, ec] = std::from_chars(secs.data(), secs.data() + secs.size(), seen);
        if (!valid_node_name(name)) return "not a node name: " + name;
        if (!public_key::from_z85(key)) return "not a key (40 characters of Z85): " + key;
        if (ec != std::errc() || p != secs.data() + secs.size() || seen < 0) return "bad time: " + std::string(secs);
        if (!t.emplace(name, binding{key, seen}).second) return "the name " + name + " appears twice";
        return std::nullopt;
    };
    auto ok = line_records::parse(text, kMagic, "names", record, [&] { return t.size(); });
    if (!ok.ok()) return ok.err();
    return t;
}

table load(const std::filesystem::path& file) {
    auto text = platform::read_private_file(file, max_file_bytes, "relay name bindings");
    auto refuse = [&](const std::string& why) {
        return setup_error("relay: " + file.string() + ": " + why +
                           ". The relay does not start without the name bindings it promised (anyone could take "
                           "a name). Restore the file from a backup, or move it aside (mv " + file.string() + " " +
                           file.string() + ".bad) to start with none: every node name is then free for the first "
                           "key that registers it");
    };
    if (!text) throw refuse(text.err().detail);
    if (!*text) return {};
    auto t = parse(**text);
    if (!t) throw refuse(t.err().detail);
    return std::move(*t);
}

result<void> save(const std::filesystem::path& file, const table& t) {
    return platform::write_file_atomic(file, to_text(t), 0600);
}

}  // namespace kith::relay_names
