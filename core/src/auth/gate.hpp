// auth/gate.hpp (private) — the gate: what a non-member principal (grantee,
// stranger, a server we dialled) may make this node do, envelope by
// envelope, and what code acting for it may do inside the node
// (invoke_local, an acting actor's sends). Pure functions of (principal,
// request, node state); dist asks them and carries out the verdict.
//
// The rules (docs/security.md says them in plain words):
//   * Admin services ("grants", "node") are never reachable by a non-member,
//     whatever a grant table or the public list says.
//   * call / cast / spawn: the grant's scope, or a public service (not for a
//     server we dialled: it may only answer).
//   * Pids are capabilities: every pid anywhere in the envelope (target,
//     sender, pids inside bodies and arguments) is null, of the principal's
//     own node, or a local pid handed to it. A target must be a handed local
//     pid. send_named and explicit exit signals: never.
//   * Answers count only from the node they belong to: a response only for
//     a request this node sent there, a down only for a monitor this node
//     holds there, a demonitor only for a monitor that node created.
//   * A stranger with no public service left may do nothing at all.
//   * Work is capped per key (all its sessions; a grant may set its own
//     figures, grant_limits) and for all strangers together: calls/casts/
//     spawns in flight, actors it spawned alive, bytes queued in local
//     mailboxes, monitors and links it holds (refused `overloaded`, the
//     detail starting "limit NAME:").
// Tokens are taken by the caller before it asks (every envelope costs one,
// refusals included); the verdict names no side effect.
#pragma once

#include <string>
#include <string_view>

#include "auth/authority.hpp"
#include "kith/envelope.hpp"
#include "kith/error.hpp"
#include "kith/grants.hpp"

namespace kith::detail::auth {

// What the gate reads of the node. Implemented by dist for one peer.
class gate_state {
public:
    virtual ~gate_state() = default;
    virtual bool is_local(const pid& p) const = 0;
    virtual bool is_public(const std::string& svc) const = 0;
    virtual bool any_public() const = 0;
    // This node sent a request (actor request) with `tag` to the peer.
    virtual bool asked(const ref& tag) const = 0;
    // This node monitors a pid of the peer under `mref`.
    virtual bool watching(const ref& mref) const = 0;
    // The peer's `watcher` monitors the local `target` under `mref`.
    virtual bool watched_by(const pid& target, const pid& watcher, const ref& mref) const = 0;
    // What the peer's key holds here now, all its sessions together (a
    // grant has one key, so for a grantee this is the grant's):
    // The monitors and links it holds on local processes.
    virtual std::size_t relations() const { return 0; }
    // Its calls, casts and spawns in flight here (queued or running, not yet
    // answered), and the actors it spawned that are still alive.
    virtual std::size_t pending() const { return 0; }
    virtual std::size_t spawned() const { return 0; }
    // The bytes of its messages queued in local actors' mailboxes now.
    virtual std::size_t queued_bytes() const { return 0; }
    // For a stranger, the same four for all strangers together (fresh keys
    // cost nothing); zero for anyone else.
    struct load {
        std::size_t relations = 0, pending = 0, spawned = 0, queued_bytes = 0;
    };
    virtual load strangers() const { return {}; }
};

struct verdict {
    errc code = errc::ok;
    std::string detail;  // for the refusal answer and the log; never secret
    bool ok() const noexcept { return code == errc::ok; }
};

// The caps on what a non-member may hold on this node, per principal: per
// key, all its sessions together (a key may open up to
// transport_options::max_links_per_key sessions, and reconnect; a grant has
// one key, so these are also per grant); and, for strangers, whose keys cost
// nothing to make, for all strangers together as well. Cluster members are
// never counted. A request over a cap is refused `overloaded` with a detail
// naming the limit.
// The defaults below are kith::grant_limits' (kith/grants.hpp); a grant may
// set its own (grant_spec::limits, the table's limits= field), strangers and
// servers always have the defaults.
// The monitors and links one key may hold on this node's processes.
inline constexpr std::size_t max_relations = grant_limits::default_relations;
// The calls, casts and spawns one key may have in flight on this node (a
// job each on the node's workers: without a cap a slow service lets one
// grantee queue work, and the memory of its arguments, at its whole token
// rate for as long as the service is slow).
inline constexpr std::size_t max_pending = grant_limits::default_pending;
// The actors one key may keep alive here by spawning them (each holds a
// stack of memory and a slot in every table of the node; they end with the
// session that spawned them).
inline constexpr std::size_t max_spawned = grant_limits::default_spawned;
// The bytes (of decoded terms, about 48 a value plus the text) one key may
// have queued in local actors' mailboxes, unhandled: a grantee flooding a
// slow actor fills this, not the node's memory. Beyond it, sends are
// dropped and requests answered `overloaded` until the actor catches up.
inline constexpr std::size_t max_queued_bytes = grant_limits::default_queued_bytes;
// What `who` may hold: its grant's limits, or the defaults.
grant_limits limits_of(const authority& who) noexcept;
// The same, for all strangers together (four keys' worth).
inline constexpr std::size_t strangers_max_relations = 4 * max_relations;
inline constexpr std::size_t strangers_max_pending = 4 * max_pending;
inline constexpr std::size_t strangers_max_spawned = 4 * max_spawned;
inline constexpr std::size_t strangers_max_queued_bytes = 4 * max_queued_bytes;

// "grants" and "node": the owner's control; never granted, never public.
bool is_admin_service(std::string_view svc) noexcept;

// May `who` invoke `name` (a function, or an actor type when `spawn`) of
// `svc`? Members and local code may invoke anything.
verdict may_invoke(const authority& who, const std::string& svc, const std::string& name, const gate_state& s);
// May code acting for `who` (an actor spawned for it, a service function
// invoked for it) send to `to`, a pid of node `node`? This node never carries
// a non-member's traffic to a third node: remote targets only on the
// principal's own node, while its session lasts. Local targets are the service's own business: every
// pid the principal itself supplied passed the gate (its own or handed).
// Members and local code may reach anything.
bool may_reach(const authority& who, const std::string& node, bool local) noexcept;
// May `who` name pid `p` (send to it, or pass it on)? `target`: as the
// addressee, which must be a local pid handed to it.
verdict may_name(const authority& who, const pid& p, bool target, const gate_state& s);
// The verdict for one inbound envelope from `who` (a restricted principal).
verdict admit(const authority& who, const envelope& e, const gate_state& s);

}  // namespace kith::detail::auth
