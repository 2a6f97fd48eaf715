// kith grant show FILE: what a grant file says (never its secret key), for
// the friend who received it: which node, where, what it allows, at what
// rate, until when, and what its key may hold there at once. And the
// options of a relay grant's own limits (kith grant create and limits).

#include <charconv>
#include <cstdio>

#include "cli.hpp"
#include "json_term.hpp"
#include "kith/grants.hpp"
#include "kith/platform.hpp"

namespace kith::cli {

std::string describe_limits(const grant_limits& l) {
    auto one = [](const char* name, std::uint64_t set, std::uint64_t in_force, const char* unit) {
        return std::string(name) + " " + std::to_string(in_force) + unit + (set ? "" : " (default)");
    };
    return one("pending", l.pending, l.max_pending(), "") + ", " + one("spawned", l.spawned, l.max_spawned(), "") +
           ", " + one("queued", l.queued_bytes, l.max_queued_bytes(), " bytes") + ", " +
           one("relations", l.relations, l.max_relations(), "");
}

std::optional<relay_grant_limits> relay_limits_of(const args& a, const std::string& what) {
    if (!a.has("--relay-names") && !a.has("--relay-sessions") && !a.has("--relay-rate")) return std::nullopt;
    relay_grant_limits limits;
    limits.names = a.list("--relay-names");
    if (a.has("--relay-sessions")) {
        const std::string v = a.get("--relay-sessions");
        std::size_t n = 0;
        auto [e, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || e != v.data() + v.size() || n < 1 || n > 100000)
            throw cli_error{what + ": --relay-sessions wants a whole number from 1 to 100000 (got '" + v + "')", kUsage};
        limits.max_sessions = n;
    }
    if (a.has("--relay-rate")) {
        const std::string v = a.get("--relay-rate");
        std::uint64_t n = 0;
        auto [e, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || e != v.data() + v.size() || n < 4096)
            throw cli_error{what + ": --relay-rate wants bytes per second, a whole number of at least 4096 (got '" +
                                v + "')",
                            kUsage};
        limits.max_bytes_per_s = n;
    }
    if (auto ok = limits.check(); !ok.ok()) throw cli_error{what + ": --relay-names: " + ok.err().detail, kUsage};
    return limits;
}

int grant_show(const std::string& file, bool json) {
    // Refused before it is parsed, as kith call --grant refuses it.
    if (auto ok = platform::check_private_file(file, "grant file"); !ok)
        throw cli_error{"grant show: " + ok.err().detail, kFailed};
    auto g = grant_file::load(file);
    if (!g) throw cli_error{"grant show: " + g.err().detail, kFailed};
    if (json) {
        term_array eps(g->endpoints.begin(), g->endpoints.end());
        term_array relays;
        for (auto& r : g->relays) relays.push_back(map_of({{"node", r.node}, {"endpoint", r.endpoint}}));
        term t = map_of({{"file", file},
                         {"version", static_cast<long long>(g->version)},
                         {"node", g->node},
                         {"endpoints", term(std::move(eps))},
                         {"relays", term(std::move(relays))},
                         {"label", g->label},
                         {"scope", format_grant_scope(g->allow)},
                         {"rate", g->rate.to_string()},
                         {"expires", g->expires ? term(format_utc(*g->expires, kISO8601)) : term()},
                         {"limits", g->limits.to_string()},
                         {"pending", g->limits.max_pending()},
                         {"spawned", g->limits.max_spawned()},
                         {"queued", g->limits.max_queued_bytes()},
                         {"relations", g->limits.max_relations()},
                         {"fingerprint", g->client.pub.fingerprint()}});
        std::printf("%s\n", to_json(t).c_str());
        return 0;
    }
    std::printf("grant file %s (version %d): the grant '%s' to node %s\n", file.c_str(), g->version,
                g->label.c_str(), g->node.c_str());
    for (auto& e : g->endpoints) std::printf("  endpoint     %s\n", e.c_str());
    for (auto& r : g->relays) std::printf("  relay        %s at %s\n", r.node.c_str(), r.endpoint.c_str());
    std::printf("  allows       %s\n", format_grant_scope(g->allow).c_str());
    std::printf("  rate         %s\n", g->rate.to_string().c_str());
    std::printf("  expires      %s\n", g->expires ? format_utc(*g->expires, kISO8601).c_str() : "never");
    std::printf("  limits       %s\n", describe_limits(g->limits).c_str());
    std::printf("  fingerprint  %s\n", g->client.pub.fingerprint().c_str());
    std::printf("as issued: the owner of %s may have changed the rate or limits since; a refusal names the one in "
                "force. Use it: kith call --grant %s %s SERVICE FUNCTION [ARG...]\n",
                g->node.c_str(), file.c_str(), g->node.c_str());
    return 0;
}

}  // namespace kith::cli
