// The "node" and "grants" built-in services (kith/builtin.hpp).
#include <chrono>

#include "kith/builtin.hpp"

namespace kith::services {

namespace {

// Seconds from now -> a point in time; nil -> never.
result<std::optional<std::chrono::system_clock::time_point>> expiry(const term& t) {
    if (t.is_nil()) return std::optional<std::chrono::system_clock::time_point>{};
    auto s = t.as_float();
    // Checked before any time arithmetic: a huge number must not overflow.
    constexpr double max_s = 100.0 * 366 * 24 * 3600;
    if (!s || !(*s > 0) || !(*s <= max_s))
        return error(errc::badarg, "expiry must be a number of seconds from 1 to 100 years (3162240000), or nil");
    return std::optional(std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(*s)));
}

result<term> create_grant(node& n, const std::string& label, const std::string& scope, const term& rate,
                          const term& expires, const term& limits) {
    grant_spec spec;
    spec.label = label;
    auto sc = parse_grant_scope(scope);
    if (!sc) return sc.err();
    spec.allow = std::move(*sc);
    if (!rate.is_nil()) {
        if (!rate.is_string()) return error(errc::badarg, "rate must be a string like \"10/s\"");
        auto r = rate_limit::parse(*rate.as_string());
        if (!r) return r.err();
        spec.rate = *r;
    }
    auto e = expiry(expires);
    if (!e) return e.err();
    spec.expires = *e;
    if (!limits.is_nil()) {
        if (!limits.is_string())
            return error(errc::badarg, "limits must be a string like \"pending=8,spawned=4\" (or nil: the defaults)");
        auto l = grant_limits::parse(*limits.as_string());
        if (!l) return l.err();
        spec.limits = *l;
    }
    auto g = n.grant(spec);
    if (!g) return g.err();
    return term(g->to_text());
}

}  // namespace

service make_node_info(node& n) {
    service s("node");
    node* np = &n;
    auto started = std::chrono::steady_clock::now();
    // The pid registered as Name, or nil (so that `kith send NAME@NODE` can
    // say when nobody is there instead of dropping the message silently).
    s.function("whereis", [np](std::string name) -> term {
        auto p = np->whereis(name);
        return p ? term(*p) : term();
    });
    s.function("info", [np, started] {
        auto c = np->net_stats();
        auto uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        term_array peers;
        for (auto& p : np->nodes()) {
            auto i = np->info(p);
            peers.push_back(i ? i->to_term() : term(p));
        }
        term_array svcs, pub;
        for (auto& x : np->services()) svcs.push_back(x);
        for (auto& x : np->public_services()) pub.push_back(x);
        term_map refused{{"unauthorized", term(c.refused_unauthorized)},
                         {"revoked", term(c.refused_revoked)},
                         {"rate_limited", term(c.refused_rate_limited)},
                         {"other", term(c.refused - c.refused_unauthorized - c.refused_revoked - c.refused_rate_limited)},
                         {"connections", term(c.refused_connections)},
                         {"malformed", term(c.decode_errors)},
                         {"invalid", term(c.protocol_errors)},
                         {"overloaded", term(c.overload_drops)}};
        term_map counters{{"envelopes_in", term(c.envelopes_in)},   {"envelopes_out", term(c.envelopes_out)},
                          {"frames_in", term(c.frames_in)},         {"frames_out", term(c.frames_out)},
                          {"decode_errors", term(c.decode_errors)}, {"protocol_errors", term(c.protocol_errors)},
                          {"refused", term(c.refused)},             {"overload_drops", term(c.overload_drops)},
                          {"refused_connections", term(c.refused_connections)}};
        return term(term_map{{"name", np->name()},
                             {"uptime_s", uptime},
                             {"services", term(std::move(svcs))},
                             {"public", term(std::move(pub))},
                             {"peers", term(std::move(peers))},
                             {"messages_in", term(c.envelopes_in)},
                             {"messages_out", term(c.envelopes_out)},
                             {"refused", term(std::move(refused))},
                             {"counters", term(std::move(counters))}});
    });
    return s;
}

service make_grant_admin(node& n) {
    service s("grants");
    node* np = &n;
    // create(Label, Scope, Rate|nil, Expires|nil[, Limits|nil]): the fifth
    // argument is optional, so a caller of an earlier release still works.
    s.raw("create", [np](const term& args, reply_to reply) {
        const term_array* a = args.as_array();
        if (!a || a->size() < 4 || a->size() > 5)
            return reply.fail(errc::bad_args, "grants:create expects [Label, Scope, Rate|nil, ExpiresInSeconds|nil] "
                                              "or [..., Limits|nil], got " + args.to_string());
        auto text = [&](std::size_t i) { return (*a)[i].as_string(); };
        if (!text(0) || !text(1))
            return reply.fail(errc::bad_args, std::string("argument ") + (text(0) ? "2 (Scope)" : "1 (Label)") +
                                                  ": expected string, got " + (*a)[text(0) ? 1 : 0].to_string());
        const term none;
        reply(create_grant(*np, *text(0), *text(1), (*a)[2], (*a)[3], a->size() == 5 ? (*a)[4] : none));
    });
    s.function("list", [np] {
        term_array out;
        for (auto& g : np->grants()) out.push_back(g.to_term());
        return term(std::move(out));
    });
    s.function("revoke", [np](std::string label) -> result<term> {
        auto r = np->revoke_grant(label);
        if (!r.ok()) return r.err();
        return term(true);
    });
    s.function("set_rate", [np](std::string label, std::string rate) -> result<term> {
        auto r = rate_limit::parse(rate);
        if (!r) return r.err();
        auto ok = np->set_grant_rate(label, *r);
        if (!ok.ok()) return ok.err();
        return term(true);
    });
    // set_limits(Label, Limits): replaces the grant's limits ("pending=8,..."
    // or "default"); in force for the holder's next request. Like every
    // function of this service, only cluster members may call it.
    s.function("set_limits", [np](std::string label, std::string limits) -> result<term> {
        auto l = grant_limits::parse(limits);
        if (!l) return l.err();
        auto ok = np->set_grant_limits(label, *l);
        if (!ok.ok()) return ok.err();
        return term(l->to_string());
    });
    return s;
}

}  // namespace kith::services
