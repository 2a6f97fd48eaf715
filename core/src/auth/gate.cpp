// auth/gate.cpp — see gate.hpp.
#include "auth/gate.hpp"

#include <type_traits>
#include <variant>

namespace kith::detail::auth {

namespace {

verdict refused(std::string detail) { return {errc::unauthorized, std::move(detail)}; }

// The first pid inside `t` that `who` may not name, if any (depth bounded
// by the decoder's limits; 64 more here for terms built locally).
const pid* first_foreign(const authority& who, const term& t, const gate_state& s, int depth = 0) {
    if (depth > 64) return nullptr;
    if (auto* p = t.as_pid()) return may_name(who, *p, false, s).ok() ? nullptr : p;
    if (auto* a = t.as_array()) {
        for (auto& x : *a)
            if (auto* f = first_foreign(who, x, s, depth + 1)) return f;
    } else if (auto* m = t.as_map()) {
        for (auto& [k, v] : *m) {
            if (auto* f = first_foreign(who, k, s, depth + 1)) return f;
            if (auto* f = first_foreign(who, v, s, depth + 1)) return f;
        }
    }
    return nullptr;
}

verdict check_body(const authority& who, const term& t, const gate_state& s, const char* what) {
    if (auto* p = first_foreign(who, t, s))
        return refused(std::string(what) + " names pid " + p->to_string() + ", which was not handed to you");
    return {};
}

// The caps on work in flight and actors alive (gate.hpp), checked after
// authorization: an unauthorized request is refused as such, whatever the load.
// The caps are per key, all its sessions together; and for strangers also
// for all of them together.
const char* const per_key = " (the most one key may, all its sessions together)";
const char* const all_strangers = " (the most all strangers together may: retry later, or ask for a grant)";

// A key's use at its limit, or over it once its owner lowered the limit
// (node::set_grant_limits keeps what it holds): a refusal states the use,
// and the limit in force when they differ.
std::string use(std::uint64_t used, std::uint64_t cap, const char* what) {
    return std::to_string(used) + what +
           (used > cap ? ", more than the limit of " + std::to_string(cap) + " now in force" : std::string());
}

verdict check_load(const authority& who, const gate_state& s, bool spawn) {
    const auto all = s.strangers();
    const auto lim = limits_of(who);
    if (s.pending() >= lim.max_pending())
        return {errc::overloaded, "limit pending: you have " +
                                      use(s.pending(), lim.max_pending(),
                                          " calls, casts and spawns in flight here already") +
                                      per_key + ": wait for their replies"};
    if (all.pending >= strangers_max_pending)
        return {errc::overloaded, "limit pending: strangers have " + std::to_string(strangers_max_pending) +
                                      " calls, casts and spawns in flight here already" + all_strangers};
    if (spawn && s.spawned() >= lim.max_spawned())
        return {errc::overloaded, "limit spawned: " +
                                      use(s.spawned(), lim.max_spawned(), " actors you spawned are alive here already") +
                                      per_key + ": end some first"};
    if (spawn && all.spawned >= strangers_max_spawned)
        return {errc::overloaded, "limit spawned: " + std::to_string(strangers_max_spawned) +
                                      " actors spawned by strangers are alive here already" + all_strangers};
    return {};
}

verdict check_queue(const authority& who, const gate_state& s) {
    const auto cap = limits_of(who).max_queued_bytes();
    if (s.queued_bytes() >= cap)
        return {errc::overloaded, "limit queued: " +
                                      use(s.queued_bytes(), cap,
                                          " bytes of your messages wait unhandled in mailboxes here already") +
                                      per_key + ": slow down until they are handled"};
    if (s.strangers().queued_bytes >= strangers_max_queued_bytes)
        return {errc::overloaded, "limit queued: " + std::to_string(strangers_max_queued_bytes >> 20) +
                                      " MiB of strangers' messages wait unhandled in mailboxes here already" +
                                      all_strangers};
    return {};
}

verdict check_sender(const authority& who, const pid& from) {
    if (from.is_null() || from.node == who.who.node) return {};
    return refused("sender pid " + from.to_string() + " is not one of your node's");
}

}  // namespace

grant_limits limits_of(const authority& who) noexcept {
    return who.grant && who.who.what == principal::kind::grant ? who.grant->limits() : grant_limits{};
}

bool is_admin_service(std::string_view svc) noexcept { return svc == "grants" || svc == "node"; }

verdict may_invoke(const authority& who, const std::string& svc, const std::string& name, const gate_state& s) {
    if (!who.restricted()) return {};
    const std::string what = svc + ":" + name;
    if (is_admin_service(svc)) return refused(what + " is an admin service: cluster members only");
    switch (who.who.what) {
        case principal::kind::server:
            return refused(what + " is not allowed: a node this node dialled may only answer it");
        case principal::kind::grant:
            if (!who.grant) return {errc::revoked, "grant unknown or revoked"};
            if (who.grant->allows(svc, name)) return {};
            break;
        default: break;
    }
    if (s.is_public(svc)) return {};
    return refused(what + " is not allowed");
}

bool may_reach(const authority& who, const std::string& node, bool local) noexcept {
    return !who.restricted() || local || (node == who.who.node && !who.ended.load(std::memory_order_acquire));
}

verdict may_name(const authority& who, const pid& p, bool target, const gate_state& s) {
    if (!who.restricted()) return {};
    if (p.is_null()) return target ? refused("no addressee") : verdict{};
    if (!target && p.node == who.who.node) return {};
    if (s.is_local(p) && who.caps && who.caps->contains(p.serial)) return {};
    std::string why = "pid " + p.to_string() + " was not handed to you";
    if (who.caps && who.caps->evicted())
        why += " (or was forgotten: this node keeps the latest " + std::to_string(who.caps->capacity()) +
               " pids handed to one key, and strangers' keys " +
               std::to_string(4 * capability_set::default_capacity) + " together)";
    return refused(why);
}

verdict admit(const authority& who, const envelope& e, const gate_state& s) {
    if (!who.restricted()) return {};
    if (who.who.what == principal::kind::stranger && !s.any_public())
        return refused("this node has no public service any more");
    return std::visit(
        [&](const auto& env) -> verdict {
            using T = std::decay_t<decltype(env)>;
            verdict v;
            auto all = [&](std::initializer_list<verdict> vs) {
                for (auto& x : vs)
                    if (!x.ok()) return x;
                return verdict{};
            };
            if constexpr (std::is_same_v<T, env_reply>) {
                return check_body(who, env.value, s, "the reply");
            } else if constexpr (std::is_same_v<T, env_spawn_reply>) {
                return check_sender(who, env.spawned);
            } else if constexpr (std::is_same_v<T, env_call> || std::is_same_v<T, env_cast>) {
                if constexpr (std::is_same_v<T, env_call>)
                    if (v = check_sender(who, env.from); !v.ok()) return v;
                if (v = may_invoke(who, env.service, env.function, s); !v.ok()) return v;
                if (v = check_body(who, env.args, s, "the arguments"); !v.ok()) return v;
                return check_load(who, s, false);
            } else if constexpr (std::is_same_v<T, env_spawn_request>) {
                return all({check_sender(who, env.from), may_invoke(who, env.service, env.actor_type, s),
                            check_body(who, env.args, s, "the arguments"), check_load(who, s, true)});
            } else if constexpr (std::is_same_v<T, env_send>) {
                return all({may_name(who, env.to, true, s), check_body(who, env.msg, s, "the message"),
                            check_queue(who, s)});
            } else if constexpr (std::is_same_v<T, env_request>) {
                return all({may_name(who, env.to, true, s), check_sender(who, env.from),
                            check_body(who, env.msg, s, "the request"), check_queue(who, s)});
            } else if constexpr (std::is_same_v<T, env_response>) {
                if (v = may_name(who, env.to, true, s); !v.ok()) return v;
                if (!s.asked(env.tag)) return refused("a response to no request of ours sent to you");
                return check_body(who, env.value, s, "the response");
            } else if constexpr (std::is_same_v<T, env_monitor> || std::is_same_v<T, env_link> ||
                                 std::is_same_v<T, env_unlink>) {
                const pid& target = [&]() -> const pid& {
                    if constexpr (std::is_same_v<T, env_monitor>) return env.target;
                    else return env.to;
                }();
                if (v = all({check_sender(who, env.from), may_name(who, target, true, s)}); !v.ok()) return v;
                if constexpr (!std::is_same_v<T, env_unlink>)
                {
                    if (const auto cap = limits_of(who).max_relations(); s.relations() >= cap)
                        return {errc::overloaded, "limit relations: you hold " +
                                                      use(s.relations(), cap, " monitors and links here already") +
                                                      per_key + ": remove some first"};
                    if (s.strangers().relations >= strangers_max_relations)
                        return {errc::overloaded, "limit relations: strangers hold " +
                                                      std::to_string(strangers_max_relations) +
                                                      " monitors and links here already" + all_strangers};
                }
                return {};
            } else if constexpr (std::is_same_v<T, env_demonitor>) {
                if (v = all({check_sender(who, env.from), may_name(who, env.target, true, s)}); !v.ok()) return v;
                if (!s.watched_by(env.target, env.from, env.mref)) return refused("not your monitor");
                return {};
            } else if constexpr (std::is_same_v<T, env_down>) {
                if (v = all({check_sender(who, env.who), may_name(who, env.to, true, s)}); !v.ok()) return v;
                if (!s.watching(env.mref)) return refused("a DOWN for no monitor of ours on your node");
                return check_body(who, env.reason, s, "the reason");
            } else if constexpr (std::is_same_v<T, env_exit>) {
                if (!env.linked) return refused("explicit exit signals are for cluster members only");
                return all({check_sender(who, env.from), may_name(who, env.to, true, s),
                            check_body(who, env.reason, s, "the reason")});
            } else {
                // send_named, and handshake / heartbeat / goodbye (consumed by
                // the transport; never data).
                return refused("not allowed to a non-member");
            }
        },
        e);
}

}  // namespace kith::detail::auth
