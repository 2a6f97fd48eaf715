// dist_calls.cpp — the distribution layer, caller side: rpc, remote spawn
// (their pending entries live in pending_calls), and the remote_port
// operations the runtime aims at remote pids. See dist.hpp.
#include "dist/dist.hpp"

#include <algorithm>
#include <utility>

namespace kith::detail {

namespace {

// Calls add(p) for every pid inside `t` (bounded depth; terms we send were
// built locally and are bounded by the encoder's limits anyway).
template <class F>
void for_each_pid(const term& t, F& add, int depth = 0) {
    if (depth > 64) return;
    if (auto* p = t.as_pid()) {
        add(*p);
    } else if (auto* a = t.as_array()) {
        for (auto& x : *a) for_each_pid(x, add, depth + 1);
    } else if (auto* m = t.as_map()) {
        for (auto& [k, v] : *m) {
            for_each_pid(k, add, depth + 1);
            for_each_pid(v, add, depth + 1);
        }
    }
}

// Every pid an envelope carries, other than its addressee.
template <class F>
void for_each_handed_pid(const envelope& e, F add) {
    std::visit(
        [&](const auto& env) {
            if constexpr (requires { env.from; }) add(env.from);
            if constexpr (requires { env.spawned; }) add(env.spawned);
            if constexpr (requires { env.who; }) add(env.who);
            if constexpr (requires { env.msg; }) for_each_pid(env.msg, add);
            if constexpr (requires { env.args; }) for_each_pid(env.args, add);
            if constexpr (requires { env.value; }) for_each_pid(env.value, add);
            if constexpr (requires { env.reason; } && !std::is_same_v<std::decay_t<decltype(env)>, env_goodbye>)
                for_each_pid(env.reason, add);
        },
        e);
}

}  // namespace

// ---------------------------------------------------------------------------
// services, rpc, remote spawn (caller side)

void dist::count_relation(const std::string& node, int delta) {
    if (auto rp = find_restricted(node)) rp->add_relations(delta);
}

void dist::restricted_peer::note_asked(std::uint64_t id) {
    std::lock_guard lk(mu);
    if (!asked.insert(id).second) return;
    asked_order.push_back(id);
    if (asked_order.size() > max_asked) {
        asked.erase(asked_order.front());
        asked_order.pop_front();
    }
}

bool dist::restricted_peer::take_asked(std::uint64_t id) {
    std::lock_guard lk(mu);
    return asked.erase(id) != 0;  // its asked_order entry ages out by itself
}

void dist::note_handed(const std::string& node, const envelope& e) {
    auto rp = find_restricted(node);  // null for cluster members: nothing to note
    if (!rp) return;
    const auto& caps = rp->who->caps;
    for_each_handed_pid(e, [&](const pid& p) {
        if (!p.is_null() && is_local(p)) caps->add(p.serial);
    });
    // A response counts only for a request of ours sent to that node.
    if (auto* r = std::get_if<env_request>(&e); r && r->tag.node == rt_.name()) rp->note_asked(r->tag.id);
}

std::optional<error> dist::not_a_server(const std::string& node) const {
    if (const authority* a = acting(); a && a->restricted())
        return error{errc::unauthorized, "code acting for " + a->who.describe() +
                                             " may not make requests to other nodes (no deputies)"};
    auto rp = find_restricted(node);
    if (!rp || rp->who->who.what == principal::kind::server) return std::nullopt;
    return error{errc::unauthorized,
                 node + " is connected as " + rp->who->who.describe() +
                     ", not as a cluster member or a node we dialled: it gives this node no right to call it"};
}

result<void> dist::send_env(const std::string& node, const envelope& e) {
    note_handed(node, e);
    return tr_->post(node, e);
}

error dist::not_connected(const std::string& node) {
    std::lock_guard lk(mu_);
    if (auto it = revoked_by_.find(node); it != revoked_by_.end())
        return it->second ? error{errc::revoked, node + " revoked our grant"}
                          : error{errc::unauthorized, node + " refused us (no public service any more, or our key is "
                                                             "not welcome): ask its owner for a grant"};
    return error{errc::nodedown, node + " is not connected"};
}

bool dist::post(const std::string& node, const envelope& e) {
    auto r = send_env(node, e);
    if (r.ok()) return true;
    if (r.code() == errc::overloaded) overload_drops_.fetch_add(1, std::memory_order_relaxed);
    if (r.code() == errc::badarg) not_sent_too_large(node, e, r.err());
    return false;
}

// An envelope over the peer's limit was refused by the transport (nothing
// of it went out). A caller waiting for it learns why; anything else is
// counted by the runtime as dropped (dropped_remote) and said in the log.
void dist::not_sent_too_large(const std::string& node, const envelope& e, const error& why) {
    if (auto* r = std::get_if<env_reply>(&e); r && r->code == errc::ok) {
        post(node, env_reply{r->req_id, errc::badarg, term("the reply was not sent: " + why.detail)});
        return;
    }
    if (auto* r = std::get_if<env_response>(&e); r && r->code == errc::ok) {
        post(node, env_response{r->to, r->tag, errc::badarg, term("the reply was not sent: " + why.detail)});
        return;
    }
    diag("a message to " + node + " was not sent: " + why.detail);
}

void dist::call(const std::string& node, const std::string& svc, const std::string& fn, term args,
                duration timeout, call_done done) {
    // No separate is_up() check: post() answers nodedown itself (one peer
    // lookup per call instead of two). An error known here still completes
    // on the deadline thread: `done` never runs inside call().
    pending_calls::entry p{node, clock::now() + timeout, std::move(done), {}, spawn_plain, {}, {}};
    if (auto e = not_a_server(node)) return calls_.fail_later(std::move(p), std::move(*e));
    auto id = calls_.add(std::move(p));
    env_call c;
    c.req_id = id;
    c.service = svc;
    c.function = fn;
    c.args = std::move(args);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
    c.timeout_ms = static_cast<std::uint32_t>(std::clamp<long long>(ms, 1, UINT32_MAX));
    auto r = send_env(node, envelope{std::move(c)});
    if (!r.ok()) {
        if (r.code() == errc::overloaded) overload_drops_.fetch_add(1, std::memory_order_relaxed);
        // As before the is_up() check was folded into post(): a peer that
        // is not up (also after stop) is nodedown "not connected".
        if (r.code() == errc::nodedown || (r.code() == errc::shutdown && !tr_->is_up(node)))
            calls_.fail_soon(id, not_connected(node));
        else
            calls_.fail_soon(id, r.err());
    }
}

result<void> dist::cast(const std::string& node, const std::string& svc, const std::string& fn, term args) {
    if (auto e = not_a_server(node)) return std::move(*e);
    env_cast c;
    c.service = svc;
    c.function = fn;
    c.args = std::move(args);
    auto r = send_env(node, envelope{std::move(c)});
    if (!r.ok() && r.code() == errc::overloaded) overload_drops_.fetch_add(1, std::memory_order_relaxed);
    if (r.code() == errc::nodedown) return not_connected(node);
    return r;
}

void dist::spawn(const std::string& node, const std::string& svc, const std::string& type, term args,
                 duration timeout, spawn_done done, std::uint8_t flags, pid from, ref mref) {
    pending_calls::entry p{node, clock::now() + timeout, {}, std::move(done), flags, from, mref};
    // No separate is_up() check, as in call(): post() answers nodedown.
    if (auto e = not_a_server(node)) return calls_.fail_later(std::move(p), std::move(*e));
    auto id = calls_.add(std::move(p));
    env_spawn_request s;
    s.req_id = id;
    s.service = svc;
    s.actor_type = type;
    s.args = std::move(args);
    s.flags = flags;
    s.from = std::move(from);
    s.monitor_ref = std::move(mref);
    auto r = send_env(node, envelope{std::move(s)});
    if (!r.ok()) {
        if (r.code() == errc::nodedown || (r.code() == errc::shutdown && !tr_->is_up(node)))
            calls_.fail_soon(id, not_connected(node));
        else
            calls_.fail_soon(id, r.err());
    }
}

// Runs a service function where it cannot stall the network: on this I/O
// thread right after its turn while the other I/O thread stands by to take
// the sockets over (no thread is woken between request and reply), or, when
// that is not possible now, on a worker in a transient actor.
void dist::run_job(std::function<void()> job) {
    if (!tr_->run_after_turn(job)) run_on_worker(std::move(job));
}

// The first turn of an actor spawned for a peer, as a run_after_turn job:
// run once on the I/O thread, or queued (not started when the other I/O
// thread took the sockets, or dropped unrun). It holds the caller's
// reference to the actor itself, not through a shared block: a
// std::function needs a copyable target, but a job is only ever moved, so a
// "copy" takes the actor over and leaves the source disarmed (one
// allocation per first turn instead of two, on both sides of a spawn and
// for each actor a reply resumes).
struct dist::first_turn {
    node_impl* rt;
    mutable actor_proc* a;
    first_turn(node_impl* r, actor_proc* p) noexcept : rt(r), a(p) {}
    first_turn(const first_turn& o) noexcept : rt(o.rt), a(std::exchange(o.a, nullptr)) {}
    first_turn& operator=(const first_turn&) = delete;
    ~first_turn() { queue(); }
    void operator()() {
        if (auto* p = std::exchange(a, nullptr)) rt->run_first_turn(p);
    }
    void queue() {
        if (auto* p = std::exchange(a, nullptr)) rt->schedule_first_turn(p);
    }
};

void dist::run_job(std::function<void()> job, const authority* acting) {
    if (acting && acting->restricted()) {
        // A grantee's or a stranger's: on a worker, within the non-members'
        // share (the transient actor, spawned in its name, is marked so).
        acting_scope scope(acting);
        return run_on_worker(std::move(job));
    }
    run_job(std::move(job));
}

void dist::start_spawned(actor_init init, const authority* acting) {
    pid self;
    actor_proc* a = nullptr;
    if (acting && acting->restricted()) {
        // A grantee's or a stranger's: marked as acting for it from its first
        // turn, which runs on a worker within the non-members' share.
        acting_scope scope(acting);
        a = rt_.spawn_deferred(std::move(init), self);
        if (a) rt_.schedule_first_turn(a);
        return;
    }
    a = rt_.spawn_deferred(std::move(init), self);
    if (!a) return;  // stopping
    std::function<void()> job = first_turn{&rt_, a};
    // Not taken: `job` is left as it was, and its destructor queues the actor.
    (void)tr_->run_after_turn(job);
}

bool dist::resume_here::take(actor_proc* a) noexcept {
    if (a->guest_) return false;  // a non-member's turns run within its share, on the workers
    first_turn ft{&d->rt_, a};
    try {
        std::function<void()> job = ft;  // takes the actor over from `ft`
        if (d->tr_->run_after_turn(job)) return true;
        // Not taken (not the I/O thread, no follower standing by, the turn's
        // jobs full): disarmed, so that the caller queues the actor itself.
        job.target<first_turn>()->a = nullptr;
    } catch (...) {
        ft.a = nullptr;  // no job was made: likewise
    }
    return false;
}

void dist::run_on_worker(std::function<void()> job) {
    if (auto* ft = job.target<first_turn>()) return ft->queue();
    rt_.spawn(
        [job = std::move(job)](actor& me) -> behavior {
            job();
            me.quit();
            return [](actor&, message&) {};
        },
        {}, nullptr, false, nullptr);
}

void dist::finish(std::uint64_t req_id, const std::string& from_node, result<term> r) {
    // Only the node the request went to may complete it.
    pending_calls::call_done done;
    if (!calls_.take_call(req_id, from_node, done)) return;
    deferral_scope here(rt_, resume_);
    done(std::move(r));
}

void dist::finish_spawn(std::uint64_t req_id, const std::string& from_node, result<pid> r) {
    auto p = calls_.take(req_id, from_node, pending_calls::kind::spawn);
    if (!p) return;
    // Record the relation before anything else from that node is handled
    // (this runs on the I/O thread, in stream order), so a later nodedown
    // fires noconnection for it. If the node went down since the entry was
    // taken, nothing would ever fire: the spawn fails as it would have, had
    // the nodedown come first.
    if (r.ok() && !p->from.is_null()) {
        std::lock_guard lk(mu_);
        auto ps = peers_.find(from_node);
        if (ps == peers_.end()) {
            r = error{errc::nodedown, from_node + ": connection lost while the spawn was answered"};
        } else {
            if (p->flags & spawn_link_flag) ps->second.links.emplace(p->from, *r);
            if (p->flags & spawn_monitor_flag) ps->second.monitors.emplace(p->mref, std::make_pair(p->from, *r));
        }
    }
    // The local side of a link: the linker now knows the child. If the
    // linker is gone already, the child is told (exit "noproc").
    if (r.ok() && (p->flags & spawn_link_flag) && !p->from.is_null() && !rt_.remote_link(*r, p->from))
        post(from_node, env_exit{p->from, *r, term("noproc"), true});
    deferral_scope here(rt_, resume_);
    p->on_spawn(std::move(r));
}

// ---------------------------------------------------------------------------
// remote_port: runtime operations aimed at remote pids

bool dist::send(const pid& to, message&& m) {
    switch (m.kind) {
        case message_kind::user:
            return post(to.node, env_send{to, std::move(m.body)});
        case message_kind::request:
            return post(to.node, env_request{to, std::move(m.from), std::move(m.tag), std::move(m.body)});
        case message_kind::reply:
            return post(to.node, env_response{to, std::move(m.tag), errc::ok, std::move(m.body)});
        case message_kind::reply_error: {
            errc code = errc::exception;
            if (auto c = m.body.at(0) ? m.body.at(0)->as_int() : std::nullopt) code = static_cast<errc>(*c);
            term detail = m.body.at(1) ? *m.body.at(1) : term();
            return post(to.node, env_response{to, std::move(m.tag), code, std::move(detail)});
        }
        case message_kind::down:
            count_relation(to.node, -1);  // a non-member's monitor here has fired
            return post(to.node, env_down{std::move(m.tag), std::move(m.from), to, std::move(m.body)});
        default:
            return false;
    }
}

bool dist::send_named(const std::string& node, const std::string& name, message&& m) {
    if (m.kind != message_kind::user || not_a_server(node)) return false;
    return post(node, env_send_named{name, std::move(m.body)});
}

bool dist::link(const pid& from, const pid& to) {
    if (!with_peer(to.node, [&](peer_state& ps) { ps.links.emplace(from, to); })) return false;
    return post(to.node, env_link{from, to});
}

bool dist::unlink(const pid& from, const pid& to) {
    with_peer(to.node, [&](peer_state& ps) { ps.links.erase({from, to}); });
    return post(to.node, env_unlink{from, to});
}

bool dist::monitor(const pid& watcher, const pid& target, const ref& tag) {
    if (!with_peer(target.node, [&](peer_state& ps) { ps.monitors.emplace(tag, std::make_pair(watcher, target)); }))
        return false;
    return post(target.node, env_monitor{watcher, target, tag});
}

bool dist::demonitor(const pid& watcher, const pid& target, const ref& tag) {
    with_peer(target.node, [&](peer_state& ps) { ps.monitors.erase(tag); });
    return post(target.node, env_demonitor{watcher, target, tag});
}

bool dist::exit(const pid& from, const pid& to, const term& reason, bool linked) {
    if (linked) {
        with_peer(to.node, [&](peer_state& ps) { ps.links.erase({from, to}); });
        count_relation(to.node, -1);  // a non-member's link here has fired
    }
    if (to.serial == UINT64_MAX) return true;  // a connection_pid: nothing to tell
    return post(to.node, env_exit{from, to, reason, linked});
}

}  // namespace kith::detail
