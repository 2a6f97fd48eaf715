// relay_grants.cpp — the limits of each relay grant, on disk in
// <key dir>/relay-grants (kith/relay.hpp, relay_grant_limits). Format (text,
// mode 0600, written atomically through kith/platform.hpp):
//   kith-relay-grants 1
//   grant <label> names=<name,...|*> sessions=<n, 0: the relay's> [bytes_per_s=<n>]
// (bytes_per_s= only when not 0, so that a file without rates reads as
// before.)
//   end <number of grant lines>
#include <cctype>
#include <charconv>
#include <optional>

#include "kith/platform.hpp"
#include "kith/relay.hpp"
#include "kith/term.hpp"
#include "line_records.hpp"

namespace kith {

namespace {
constexpr std::string_view kMagic = "kith-relay-grants 1";
constexpr std::size_t kMaxFile = 4u << 20;
// Below this a session cannot carry the nodes' heartbeats and a message of a
// few KiB within their timeout: the link would only fail.
constexpr std::uint64_t kMinBytesPerS = 4096;

bool valid_label(std::string_view l) {
    if (l.empty() || l.size() > 64) return false;
    for (char ch : l)
        if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-')) return false;
    return true;
}
}  // namespace

bool relay_grant_limits::may_register(std::string_view node) const {
    if (names.empty()) return true;
    for (auto& n : names) {
        if (n == node) return true;
        // "alice@*": the name alice on any host.
        if (n.size() > 2 && n.ends_with("@*") && node.starts_with(std::string_view(n).substr(0, n.size() - 1)))
            return true;
    }
    return false;
}

result<void> relay_grant_limits::check() const {
    if (names.size() > 64) return error{errc::badarg, "a relay grant names at most 64 node names"};
    if (max_bytes_per_s != 0 && max_bytes_per_s < kMinBytesPerS)
        return error{errc::badarg, "a relay grant's bytes per second must be at least " +
                                       std::to_string(kMinBytesPerS) + " (0: no limit of its own), got " +
                                       std::to_string(max_bytes_per_s)};
    for (auto& n : names) {
        bool wild = n.size() > 2 && n.ends_with("@*");
        std::string probe = wild ? n.substr(0, n.size() - 1) + "h" : n;
        if (!valid_node_name(probe))
            return error{errc::badarg, "not a node name (name@host, or name@* for any host): " + n};
    }
    return {};
}

std::string relay_grant_limits_to_text(const std::map<std::string, relay_grant_limits>& t) {
    std::string out = std::string(kMagic) + "\n# what each relay grant allows at this relay besides its scope, rate "
                                            "and expiry (docs/relay.md)\n";
    for (auto& [label, l] : t) {
        std::string names;
        for (auto& n : l.names) names += (names.empty() ? "" : ",") + n;
        out += "grant " + label + " names=" + (names.empty() ? "*" : names) + " sessions=" +
               std::to_string(l.max_sessions) +
               (l.max_bytes_per_s ? " bytes_per_s=" + std::to_string(l.max_bytes_per_s) : "") + "\n";
    }
    return out + "end " + std::to_string(t.size()) + "\n";
}

result<std::map<std::string, relay_grant_limits>> parse_relay_grant_limits(std::string_view text) {
    std::map<std::string, relay_grant_limits> t;
    auto record = [&](std::string_view line) -> std::optional<std::string> {
        if (!line.starts_with("grant ")) return "unknown line";
        std::vector<std::string_view> w;
        for (std::size_t p = 6; p < line.size();) {
            auto sp = line.find(' ', p);
            if (sp == std::string_view::npos) sp = line.size();
            if (sp > p) w.push_back(line.substr(p, sp - p));
            p = sp + 1;
        }
        if (w.size() < 3 || w.size() > 4 || !w[1].starts_with("names=") || !w[2].starts_with("sessions=") ||
            (w.size() == 4 && !w[3].starts_with("bytes_per_s=")))
            return "expected: grant LABEL names=... sessions=N [bytes_per_s=N]";
        std::string label(w[0]);
        if (!valid_label(label)) return "not a grant label: " + label;
        relay_grant_limits l;
        std::string_view names = w[1].substr(6);
        if (names != "*")
            for (std::size_t p = 0; p <= names.size();) {
                auto c = names.find(',', p);
                if (c == std::string_view::npos) c = names.size();
                l.names.emplace_back(names.substr(p, c - p));
                p = c + 1;
            }
        auto s = w[2].substr(9);
        auto [e, ec] = std::from_chars(s.data(), s.data() + s.size(), l.max_sessions);
        if (ec != std::errc() || e != s.data() + s.size()) return "bad sessions=";
        if (w.size() == 4) {
            auto b = w[3].substr(12);
            auto [be, bec] = std::from_chars(b.data(), b.data() + b.size(), l.max_bytes_per_s);
            if (bec != std::errc() || be != b.data() + b.size() || l.max_bytes_per_s == 0) return "bad bytes_per_s=";
        }
        if (auto ok = l.check(); !ok.ok()) return ok.err().detail;
        if (!t.emplace(label, std::move(l)).second) return "the grant " + label + " appears twice";
        return std::nullopt;
    };
    auto ok = line_records::parse(text, kMagic, "grants", record, [&] { return t.size(); });
    if (!ok.ok()) return ok.err();
    return t;
}

result<std::map<std::string, relay_grant_limits>> load_relay_grant_limits(const std::filesystem::path& key_dir) {
    auto file = key_dir / "relay-grants";
    auto text = platform::read_private_file(file, kMaxFile, "relay grant limits");
    if (!text) return text.err();
    if (!*text) return std::map<std::string, relay_grant_limits>{};
    auto t = parse_relay_grant_limits(**text);
    if (!t) return error{errc::decode, file.string() + ": " + t.err().detail};
    return t;
}

result<void> set_relay_grant_limits(const std::filesystem::path& key_dir, const std::string& label,
                                    const relay_grant_limits& limits) {
    if (!valid_label(label)) return error{errc::badarg, "not a grant label: " + label};
    if (auto ok = limits.check(); !ok.ok()) return ok;
    platform::file_lock lock(key_dir / "relay-grants.lock");
    auto t = load_relay_grant_limits(key_dir);
    if (!t) return error{errc::badarg, t.err().detail + " (fix or remove it first)"};
    (*t)[label] = limits;
    return platform::write_file_atomic(key_dir / "relay-grants", relay_grant_limits_to_text(*t), 0600);
}

}  // namespace kith
