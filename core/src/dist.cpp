// dist.cpp — the distribution layer. See dist.hpp.
#include "dist.hpp"

#include <algorithm>
#include <cstdio>
#include <future>

namespace kith::detail {

namespace {

std::string_view kind_name(const envelope& e) {
    static constexpr std::string_view names[] = {"?",         "handshake", "send",      "send_named", "spawn_request",
                                                 "spawn_reply", "call",    "cast",      "reply",      "monitor",
                                                 "demonitor", "down",      "link",      "unlink",     "exit",
                                                 "heartbeat", "goodbye",   "request",   "response"};
    auto t = static_cast<std::size_t>(type_of(e));
    return t < std::size(names) ? names[t] : "?";
}

// The pseudo-pid that stands for a non-cluster peer's connection: actors
// spawned by such a peer are linked to it, so they get an exit
// "noconnection" when the peer goes away (lib_chan's "told when the client
// goes away"). Never a real actor; exits sent to it are not posted.
pid connection_pid(const std::string& peer) { return pid{peer, UINT64_MAX}; }

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

std::filesystem::path grant_table_file(const net_options& o) {
    return (o.key_dir.empty() ? default_key_dir() : o.key_dir) / "grants";
}

trust_level to_level(trust_kind k) {
    switch (k) {
        case trust_kind::cluster: return trust_level::cluster;
        case trust_kind::grant: return trust_level::granted;
        case trust_kind::stranger: return trust_level::stranger;
        case trust_kind::server: return trust_level::server;
    }
    return trust_level::stranger;
}

}  // namespace

dist::dist(node_impl& rt, const net_options& opts, std::shared_ptr<service_table> services)
    : rt_(rt), opts_(opts), services_(std::move(services)),
      grants_(std::make_shared<grant_table>(grant_table_file(opts))) {
    transport_options to;
    to.node_name = rt.name();
    to.bind_endpoint = opts.listen;
    to.advertised_endpoint = opts.advertise;
    to.key_dir = opts.key_dir;
    to.cookie = opts.cookie;
    to.heartbeat_interval = opts.heartbeat_interval;
    to.heartbeat_timeout = opts.heartbeat_timeout;
    to.max_queue_bytes = opts.max_queue_bytes;
    to.hidden = opts.hidden;
    to.services = services_->names();
    to.live_services = [t = services_] { return t->names(); };

    transport_callbacks cb;
    // The callbacks hold a raw pointer: the transport is stopped (its I/O
    // thread joined) before this object goes away.
    cb.on_peer_up = [this](const std::string& p, const peer_info& i) { on_up(p, i); };
    cb.on_peer_down = [this](const std::string& p, const std::string& r) { on_down(p, r); };
    cb.on_peer_refused = [this](const refusal& r) { on_refused(r); };
    cb.on_envelopes = [this](const std::string& p, const peer_auth& a, std::vector<envelope>&& es) {
        on_envelopes(p, a, std::move(es));
    };
    // Counted by the transport; said once per peer and reason kind here.
    cb.on_decode_error = [this](const std::string& peer, const error& e) {
        diag("dropped a malformed frame from " + peer + ": " + e.detail);
    };
    tr_ = std::make_unique<transport>(std::move(to), std::move(cb));
    // Keys other than the cluster key: a live grant; a revoked or expired
    // one (admitted only to be told "revoked" at its handshake, see
    // zap.hpp); or, while a service is public, any key as a stranger. The
    // lambda holds the table, so it outlives the transport's use of it.
    tr_->set_authorizer([tbl = grants_](const public_key& k, std::string_view) {
        tbl->refresh();  // another process may have changed the file
        if (auto g = tbl->find_key(k)) {
            if (g->revoked.load()) return authz_decision::revoked(g->label, "grant \"" + g->label + "\" is revoked");
            if (g->dead()) return authz_decision::revoked(g->label, "grant \"" + g->label + "\" has expired");
            return authz_decision::grant(g->label);
        }
        if (tbl->any_public()) return authz_decision::stranger();
        return authz_decision::refuse("unknown key (wrong cookie, or no grant for this key)");
    });
}

dist::~dist() { stop(); }

void dist::start() {
    tr_->start();
    deadline_thread_ = std::thread([this] { deadline_loop(); });
    rt_.set_remote_port(shared_from_this());
}

void dist::stop() {
    {
        std::lock_guard lk(mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    rt_.set_remote_port(nullptr);
    // Blocking connects end first: one may be waiting inside a service
    // function that runs on an I/O thread, which tr_->stop() joins.
    {
        settled st;
        {
            std::lock_guard lk(mu_);
            st = settle_waiters(nullptr, error{errc::shutdown, "node stopping"});
        }
        waiter_cv_.notify_all();
        run_settled(st);
    }
    tr_->stop();  // reports every peer down ("shutdown") through on_down
    deadline_cv_.notify_all();
    if (deadline_thread_.joinable()) deadline_thread_.join();
    // Fail whatever is still pending.
    std::unordered_map<std::uint64_t, pending> left;
    settled st;
    {
        std::lock_guard lk(mu_);
        left.swap(pending_);
        st = settle_waiters(nullptr, error{errc::shutdown, "node stopping"});
    }
    waiter_cv_.notify_all();
    run_settled(st);
    for (auto& [id, p] : left) {
        if (p.on_call) p.on_call(error{errc::shutdown, "node stopping"});
        if (p.on_spawn) p.on_spawn(error{errc::shutdown, "node stopping"});
    }
}

// ---------------------------------------------------------------------------
// connections and node events

result<std::string> dist::connect(const std::string& endpoint, const public_key& server_key, duration timeout,
                                  link_credentials creds) {
    auto w = std::make_shared<waiter>();
    w->endpoint = endpoint;
    {
        std::lock_guard lk(mu_);
        if (stopping_) return error{errc::shutdown, "node stopping"};
        for (auto& [name, ps] : peers_)
            if (ps.info.endpoint == endpoint) return name;
        waiters_.push_back(w);
    }
    tr_->connect(endpoint, server_key, std::move(creds));
    std::unique_lock lk(mu_);
    bool done = waiter_cv_.wait_for(lk, timeout, [&] { return w->outcome.has_value(); });
    std::erase(waiters_, w);
    if (!done) return error{errc::timeout, "no answer from " + endpoint};
    return std::move(*w->outcome);
}

void dist::connect_async(const std::string& endpoint, const public_key& server_key, duration timeout,
                         std::function<void(result<std::string>)> done) {
    auto w = std::make_shared<waiter>();
    w->endpoint = endpoint;
    w->done = std::move(done);
    {
        std::unique_lock lk(mu_);
        if (stopping_) {
            lk.unlock();
            w->done(error{errc::shutdown, "node stopping"});
            return;
        }
        for (auto& [name, ps] : peers_)
            if (ps.info.endpoint == endpoint) {
                auto n = name;
                lk.unlock();
                w->done(std::move(n));
                return;
            }
        waiters_.push_back(w);
    }
    // The deadline thread times it out: a pending entry whose completion
    // settles this waiter (a no-op if it was settled by then).
    std::weak_ptr<waiter> ww = w;
    pending p;
    p.node = endpoint;
    p.deadline = clock::now() + timeout;
    p.on_call = [this, ww, endpoint](result<term>) {
        settled st;
        {
            std::lock_guard lk(mu_);
            if (auto w = ww.lock(); w && !w->outcome) {
                w->outcome.emplace(error{errc::timeout, "no answer from " + endpoint});
                st.emplace_back(std::move(w->done), *w->outcome);
                std::erase(waiters_, w);
            }
        }
        run_settled(st);
    };
    add_pending(std::move(p));
    tr_->connect(endpoint, server_key);
}

dist::settled dist::settle_waiters(const std::string* endpoint, const result<std::string>& r) {
    settled out;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        auto& w = **it;
        if (!w.outcome && (!endpoint || w.endpoint == *endpoint)) {
            w.outcome.emplace(r);
            if (w.done) {
                out.emplace_back(std::move(w.done), r);
                it = waiters_.erase(it);
                continue;
            }
        }
        ++it;
    }
    return out;
}

void dist::run_settled(settled& s) {
    for (auto& [f, r] : s) f(std::move(r));
}

result<std::string> dist::connect(const grant_file& g, duration timeout) {
    if (g.endpoints.empty()) return error{errc::badarg, "the grant file names no endpoint"};
    auto deadline = clock::now() + timeout;
    error last{errc::timeout, "no answer from " + g.node};
    for (std::size_t i = 0; i < g.endpoints.size(); ++i) {
        auto left = deadline - clock::now();
        if (left <= duration::zero()) break;
        auto r = connect(g.endpoints[i], g.server_key, left / static_cast<long>(g.endpoints.size() - i),
                         link_credentials{g.client});
        if (r.ok() || r.code() != errc::timeout) return r;
        tr_->disconnect(g.endpoints[i]);  // no dialling in the background
        last = r.err();
    }
    return last;
}

result<void> dist::revoke_grant(const std::string& label) {
    auto r = grants_->revoke(label);
    // Revoked in memory even if saving failed: end its sessions either way.
    if (grants_->find(label)) tr_->end_sessions("grant:" + label, "revoked");
    return r;
}

void dist::on_up(const std::string& peer, const peer_info& pi) {
    node_event ev;
    ev.what = node_event::kind::up;
    ev.node = peer;
    ev.info.name = peer;
    ev.info.endpoint = pi.endpoint;
    // The server of an outbound link proved its key (CURVE); an inbound
    // cluster member shares the cluster key, so show the key it states.
    ev.info.fingerprint = (pi.auth.kind == trust_kind::cluster && !pi.outbound && pi.node_key)
                              ? pi.node_key->fingerprint()
                              : pi.auth.key.fingerprint();
    ev.info.trust = to_level(pi.auth.kind);
    ev.info.services = pi.services;
    ev.info.hidden = pi.hidden;
    settled st;
    {
        std::lock_guard lk(mu_);
        revoked_by_.erase(peer);
        auto& ps = peers_[peer];
        ps = peer_state{};
        ps.info = ev.info;
        if (pi.outbound) st = settle_waiters(&pi.endpoint, peer);
        if (pi.auth.kind != trust_kind::cluster) {
            if (pi.auth.kind == trust_kind::grant) ps.grant = grants_->find(std::string_view(pi.auth.user_id).substr(6));
            ps.caps = ps.grant ? ps.grant->caps : std::make_shared<capability_set>();
            if (ps.grant) ps.grant->connected.fetch_add(1);
            std::unique_lock rl(restricted_mu_);
            restricted_[peer] = ps.caps;
            restricted_count_.store(restricted_.size());
        }
    }
    waiter_cv_.notify_all();
    run_settled(st);
    emit(ev);
}

void dist::on_down(const std::string& peer, const std::string& reason) {
    peer_state ps;
    std::vector<std::pair<std::uint64_t, pending>> failed;
    {
        std::lock_guard lk(mu_);
        auto it = peers_.find(peer);
        if (it != peers_.end()) {
            ps = std::move(it->second);
            peers_.erase(it);
        }
        if (reason == "revoked" && (revoked_by_.size() < 256 || revoked_by_.count(peer))) revoked_by_[peer] = true;
        if (ps.caps) {
            if (ps.grant) ps.grant->connected.fetch_sub(1);
            std::unique_lock rl(restricted_mu_);
            restricted_.erase(peer);
            restricted_count_.store(restricted_.size());
        }
        for (auto i = pending_.begin(); i != pending_.end();) {
            if (i->second.node == peer) {
                failed.emplace_back(i->first, std::move(i->second));
                i = pending_.erase(i);
            } else {
                ++i;
            }
        }
    }
    // Everything that depended on the connection learns it, after every
    // envelope that came from the peer (same thread, later).
    for (auto& [id, p] : failed) {
        // A revoked grant fails what was pending under it as revoked.
        error e{reason == "revoked" ? errc::revoked : errc::nodedown, peer + ": " + reason};
        if (p.on_call) p.on_call(e);
        if (p.on_spawn) p.on_spawn(e);
    }
    for (auto& [tag, wt] : ps.monitors)
        rt_.deliver(wt.first, message(message_kind::down, term("noconnection"), wt.second, tag));
    for (auto& [local, remote] : ps.links)
        rt_.deliver(local, message(message_kind::link_exit, term("noconnection"), remote));
    for (auto& w : ps.node_watchers) rt_.send(w, message(arr("nodedown", peer, reason)));
    node_event ev;
    ev.what = node_event::kind::down;
    ev.node = peer;
    ev.reason = reason;
    ev.info = ps.info;
    emit(ev);
}

void dist::diag(const std::string& line) {
    {
        // A token bucket: 20 lines a second at most, so a hostile peer
        // cannot flood the log.
        std::lock_guard lk(diag_mu_);
        auto now = clock::now();
        diag_tokens_ = std::min(20.0, diag_tokens_ + std::chrono::duration<double>(now - diag_last_).count() * 20.0);
        diag_last_ = now;
        if (diag_tokens_ < 1.0) return;
        diag_tokens_ -= 1.0;
    }
    if (opts_.log) opts_.log(line);
    else std::fprintf(stderr, "kith: %s\n", line.c_str());
}

void dist::on_refused(const refusal& r) {
    diag(std::string(r.inbound ? "connection from " : "connection to ") + r.endpoint + " refused: " + r.reason);
    if (r.inbound) return;
    settled st;
    {
        std::lock_guard lk(mu_);
        st = settle_waiters(&r.endpoint, error{r.code, r.reason});
    }
    waiter_cv_.notify_all();
    run_settled(st);
}

void dist::emit(const node_event& ev) {
    std::vector<std::function<void(const node_event&)>> cbs;
    std::vector<pid> pids;
    {
        std::lock_guard lk(mu_);
        if (ev.info.hidden && ev.what == node_event::kind::up) {
            // hidden nodes are not announced to subscribers
        }
        for (auto& [id, cb] : callbacks_) cbs.push_back(cb);
        pids = node_monitors_;
    }
    if (ev.info.hidden) return;
    for (auto& cb : cbs) {
        try {
            cb(ev);
        } catch (...) {
        }
    }
    if (!pids.empty()) {
        term t = ev.to_term();
        for (auto& p : pids) rt_.send(p, message(t));
    }
}

std::uint64_t dist::subscribe(std::function<void(const node_event&)> cb) {
    std::lock_guard lk(mu_);
    auto id = next_sub_++;
    callbacks_.emplace(id, std::move(cb));
    return id;
}

void dist::unsubscribe(std::uint64_t id) {
    std::lock_guard lk(mu_);
    callbacks_.erase(id);
}

void dist::monitor_nodes(const pid& who, bool on) {
    std::lock_guard lk(mu_);
    std::erase(node_monitors_, who);
    if (on) node_monitors_.push_back(who);
}

void dist::monitor_node(const std::string& node, const pid& who) {
    {
        std::lock_guard lk(mu_);
        auto it = peers_.find(node);
        if (it != peers_.end()) {
            it->second.node_watchers.push_back(who);
            return;
        }
    }
    rt_.send(who, message(arr("nodedown", node, "noconnection")));
}

std::vector<std::string> dist::nodes(bool include_hidden) const {
    std::lock_guard lk(mu_);
    std::vector<std::string> v;
    for (auto& [name, ps] : peers_)
        if (include_hidden || !ps.info.hidden) v.push_back(name);
    return v;
}

std::optional<node_info> dist::info(const std::string& node) const {
    std::lock_guard lk(mu_);
    auto it = peers_.find(node);
    if (it == peers_.end()) return std::nullopt;
    return it->second.info;
}

net_counters dist::counters() const {
    auto s = tr_->stats();
    net_counters c;
    c.envelopes_in = s.envelopes_in;
    c.envelopes_out = s.envelopes_out;
    c.frames_in = s.frames_in;
    c.frames_out = s.frames_out;
    c.decode_errors = s.decode_errors;
    c.protocol_errors = protocol_errors_.load() + s.protocol_errors;
    c.refused = refused_.load();
    c.refused_unauthorized = refused_unauthorized_.load();
    c.refused_revoked = refused_revoked_.load();
    c.refused_rate_limited = refused_rate_limited_.load();
    c.overload_drops = overload_drops_.load() + s.overload_drops;
    c.refused_connections = s.refused_inbound + s.refused_outbound;
    return c;
}

// ---------------------------------------------------------------------------
// services, rpc, remote spawn (caller side)

void dist::note_handed(const std::string& node, const envelope& e) {
    if (restricted_count_.load(std::memory_order_acquire) == 0) return;  // cluster peers only
    std::shared_ptr<capability_set> caps;
    {
        std::shared_lock lk(restricted_mu_);
        auto it = restricted_.find(node);
        if (it == restricted_.end()) return;
        caps = it->second;
    }
    for_each_handed_pid(e, [&](const pid& p) {
        if (!p.is_null() && is_local(p)) caps->add(p.serial);
    });
}

result<void> dist::send_env(const std::string& node, const envelope& e) {
    note_handed(node, e);
    return tr_->post(node, e);
}

error dist::not_connected(const std::string& node) {
    std::lock_guard lk(mu_);
    if (revoked_by_.count(node)) return error{errc::revoked, node + " revoked our grant"};
    return error{errc::nodedown, node + " is not connected"};
}

bool dist::post(const std::string& node, const envelope& e) {
    auto r = send_env(node, e);
    if (!r.ok() && r.code() == errc::overloaded) overload_drops_.fetch_add(1, std::memory_order_relaxed);
    return r.ok();
}

std::uint64_t dist::add_pending(pending p) {
    std::lock_guard lk(mu_);
    auto id = next_req_++;
    // Wake the deadline thread only if it would otherwise sleep past this
    // deadline (no O(n) scan, no wake-up per call).
    bool earlier = p.deadline < deadline_wake_at_;
    if (earlier) deadline_wake_at_ = clock::time_point::min();  // it is being woken
    pending_.emplace(id, std::move(p));
    if (earlier) deadline_cv_.notify_one();
    return id;
}

void dist::call(const std::string& node, const std::string& svc, const std::string& fn, term args,
                duration timeout, call_done done) {
    // No separate is_up() check: post() answers nodedown itself (one peer
    // lookup per call instead of two).
    auto deadline = clock::now() + timeout;
    auto id = add_pending(pending{node, deadline, std::move(done), {}, spawn_plain, {}, {}});
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
            finish(id, node, not_connected(node));
        else
            finish(id, node, r.err());
    }
}

result<void> dist::cast(const std::string& node, const std::string& svc, const std::string& fn, term args) {
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
    if (!tr_->is_up(node)) {
        done(not_connected(node));
        return;
    }
    auto id = add_pending(pending{node, clock::now() + timeout, {}, std::move(done), flags, from, mref});
    env_spawn_request s;
    s.req_id = id;
    s.service = svc;
    s.actor_type = type;
    s.args = std::move(args);
    s.flags = flags;
    s.from = std::move(from);
    s.monitor_ref = std::move(mref);
    auto r = send_env(node, envelope{std::move(s)});
    if (!r.ok()) finish_spawn(id, node, r.err());
}

// Runs a service function where it cannot stall the network: on this I/O
// thread right after its turn while the other I/O thread stands by to take
// the sockets over (no thread is woken between request and reply), or, when
// that is not possible now, on a worker in a transient actor.
void dist::run_job(std::function<void()> job) {
    if (tr_->run_after_turn(job)) return;
    rt_.spawn(
        [job = std::move(job)](actor& me) -> behavior {
            job();
            me.quit();
            return [](actor&, message&) {};
        },
        {}, nullptr, false, nullptr);
}

void dist::finish(std::uint64_t req_id, const std::string& from_node, result<term> r) {
    pending p;
    {
        std::lock_guard lk(mu_);
        auto it = pending_.find(req_id);
        // Only the node the request went to may complete it.
        if (it == pending_.end() || it->second.node != from_node || !it->second.on_call) return;
        p = std::move(it->second);
        pending_.erase(it);
    }
    p.on_call(std::move(r));
}

void dist::finish_spawn(std::uint64_t req_id, const std::string& from_node, result<pid> r) {
    pending p;
    {
        std::lock_guard lk(mu_);
        auto it = pending_.find(req_id);
        if (it == pending_.end() || it->second.node != from_node || !it->second.on_spawn) return;
        p = std::move(it->second);
        pending_.erase(it);
        // Record the relation before anything else from that node is
        // handled (this runs on the I/O thread, in stream order), so a later
        // nodedown fires noconnection for it.
        if (r.ok() && !p.from.is_null()) {
            auto ps = peers_.find(from_node);
            if (ps != peers_.end()) {
                if (p.flags & spawn_link_flag) ps->second.links.emplace(p.from, *r);
                if (p.flags & spawn_monitor_flag) ps->second.monitors.emplace(p.mref, std::make_pair(p.from, *r));
            }
        }
    }
    // The local side of a link: the linker now knows the child. If the
    // linker is gone already, the child is told (exit "noproc").
    if (r.ok() && (p.flags & spawn_link_flag) && !p.from.is_null() && !rt_.remote_link(*r, p.from))
        post(from_node, env_exit{p.from, *r, term("noproc"), true});
    p.on_spawn(std::move(r));
}

void dist::deadline_loop() {
    std::unique_lock lk(mu_);
    while (!stopping_) {
        auto now = clock::now();
        auto next = clock::time_point::max();
        std::vector<pending> expired;
        for (auto it = pending_.begin(); it != pending_.end();) {
            if (it->second.deadline <= now) {
                expired.push_back(std::move(it->second));
                it = pending_.erase(it);
            } else {
                next = std::min(next, it->second.deadline);
                ++it;
            }
        }
        if (!expired.empty()) {
            lk.unlock();
            for (auto& p : expired) {
                if (p.on_call) p.on_call(error{errc::timeout, "no reply from " + p.node});
                if (p.on_spawn) p.on_spawn(error{errc::timeout, "no reply from " + p.node});
            }
            lk.lock();
            continue;
        }
        deadline_wake_at_ = next;
        if (next == clock::time_point::max())
            deadline_cv_.wait(lk);
        else
            deadline_cv_.wait_until(lk, next);
        deadline_wake_at_ = clock::time_point::min();  // awake: rescans before sleeping again
    }
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
            return post(to.node, env_down{std::move(m.tag), std::move(m.from), to, std::move(m.body)});
        default:
            return false;
    }
}

bool dist::send_named(const std::string& node, const std::string& name, message&& m) {
    if (m.kind != message_kind::user) return false;
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
    if (linked) with_peer(to.node, [&](peer_state& ps) { ps.links.erase({from, to}); });
    if (to.serial == UINT64_MAX) return true;  // a connection_pid: nothing to tell
    return post(to.node, env_exit{from, to, reason, linked});
}

// ---------------------------------------------------------------------------
// inbound envelopes (I/O thread)

void dist::on_envelopes(const std::string& peer, const peer_auth& auth, std::vector<envelope>&& envs) {
    proc_ref target;
    if (auth.kind == trust_kind::cluster) {
        // Cluster members are fully trusted, as in distributed Erlang.
        for (auto& e : envs) handle(peer, auth, e, target);
        return;
    }
    principal who;
    {
        std::lock_guard lk(mu_);
        auto it = peers_.find(peer);
        if (it != peers_.end()) {
            who.grant = it->second.grant;
            who.caps = it->second.caps;
        }
    }
    for (auto& e : envs)
        if (admit(peer, auth, who, e)) handle(peer, auth, e, target);
}

void dist::refuse(const std::string& peer, const envelope& e, errc code, const std::string& detail) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    if (code == errc::unauthorized) refused_unauthorized_.fetch_add(1, std::memory_order_relaxed);
    if (code == errc::revoked) refused_revoked_.fetch_add(1, std::memory_order_relaxed);
    if (code == errc::rate_limited) refused_rate_limited_.fetch_add(1, std::memory_order_relaxed);
    std::string reason(to_string(code));
    // Straight to the transport: a refusal names the refused target (a DOWN's
    // `who`, an exit's `from`) and must not hand it over as a capability.
    auto answer = [&](envelope&& a) {
        if (tr_->post(peer, a).code() == errc::overloaded) overload_drops_.fetch_add(1, std::memory_order_relaxed);
    };
    std::visit(
        [&](const auto& env) {
            using T = std::decay_t<decltype(env)>;
            if constexpr (std::is_same_v<T, env_call>)
                answer(env_reply{env.req_id, code, term(detail)});
            else if constexpr (std::is_same_v<T, env_spawn_request>)
                answer(env_spawn_reply{env.req_id, code, pid{}, detail});
            else if constexpr (std::is_same_v<T, env_request>)
                answer(env_response{env.from, env.tag, code, term(detail)});
            else if constexpr (std::is_same_v<T, env_monitor>)
                answer(env_down{env.mref, env.target, env.from, term(reason)});
            else if constexpr (std::is_same_v<T, env_link>)
                answer(env_exit{env.to, env.from, term(reason), true});
            // cast, send, exit, ...: no answer exists; counted.
        },
        e);
}

bool dist::admit(const std::string& peer, const peer_auth& auth, const principal& who, const envelope& e) {
    // Answers to our own requests: finish()/finish_spawn() accept them only
    // from the node the request went to.
    if (std::holds_alternative<env_reply>(e) || std::holds_alternative<env_spawn_reply>(e)) return true;
    grant_entry* g = who.grant.get();
    if (g) grants_->refresh();  // at most a stat() per 100 ms: revocations by another process
    if (auth.kind == trust_kind::grant && (!g || g->dead())) {
        // Revoked or expired (or gone): refused, and the session is ended
        // once (goodbye "revoked"), whatever the envelope.
        if (g) g->refused.fetch_add(1, std::memory_order_relaxed);
        if (g && !g->kicked.exchange(true)) tr_->end_sessions(auth.user_id, "revoked");
        refuse(peer, e, errc::revoked, "grant revoked");
        return false;
    }
    // What is asked: a service operation (svc, name) or a pid (its target).
    const std::string* svc = nullptr;
    const std::string* name = nullptr;
    const pid* target = nullptr;
    bool costs = true;      // takes a token
    bool never = false;     // never allowed to a non-cluster peer
    std::visit(
        [&](const auto& env) {
            using T = std::decay_t<decltype(env)>;
            if constexpr (std::is_same_v<T, env_call> || std::is_same_v<T, env_cast>) {
                svc = &env.service;
                name = &env.function;
            } else if constexpr (std::is_same_v<T, env_spawn_request>) {
                svc = &env.service;
                name = &env.actor_type;
            } else if constexpr (std::is_same_v<T, env_send> || std::is_same_v<T, env_request> ||
                                 std::is_same_v<T, env_link> || std::is_same_v<T, env_response> ||
                                 std::is_same_v<T, env_down> || std::is_same_v<T, env_unlink>) {
                target = &env.to;
                costs = !(std::is_same_v<T, env_response> || std::is_same_v<T, env_down> ||
                          std::is_same_v<T, env_unlink>);
            } else if constexpr (std::is_same_v<T, env_monitor> || std::is_same_v<T, env_demonitor>) {
                target = &env.target;
                costs = std::is_same_v<T, env_monitor>;
            } else if constexpr (std::is_same_v<T, env_exit>) {
                target = &env.to;
                never = !env.linked;  // explicit exit signals: cluster only
            } else {
                never = true;  // send_named and anything else
            }
        },
        e);
    auto count_refused = [&] {
        if (g) g->refused.fetch_add(1, std::memory_order_relaxed);
    };
    bool allowed = false;
    if (never) {
        allowed = false;
    } else if (svc) {
        allowed = (g && g->allows(*svc, *name)) ||
                  (auth.kind != trust_kind::server && grants_->is_public(*svc));
    } else if (target) {
        allowed = who.caps && is_local(*target) && who.caps->contains(target->serial);
    }
    if (!allowed) {
        count_refused();
        refuse(peer, e, errc::unauthorized,
               svc ? *svc + ":" + *name + " is not allowed" : std::string("not allowed"));
        return false;
    }
    if (costs) {
        bool ok = true;
        if (g && !(svc && !g->allows(*svc, *name)))
            ok = g->take_token();
        else if (auth.kind == trust_kind::stranger || (g && svc))
            ok = grants_->take_public_token(auth.key, svc ? *svc : std::string());
        if (!ok) {
            if (g) g->rate_limited.fetch_add(1, std::memory_order_relaxed);
            refuse(peer, e, errc::rate_limited, "over the rate");
            return false;
        }
    }
    if (g) g->accepted.fetch_add(1, std::memory_order_relaxed);
    return true;
}

void dist::handle(const std::string& peer, const peer_auth& auth, envelope& e, proc_ref& target) {
    auto bad = [&](const char* why) {
        protocol_errors_.fetch_add(1, std::memory_order_relaxed);
        diag("refused " + std::string(kind_name(e)) + " envelope from " + peer + ": " + why);
    };
    const bool cluster = auth.kind == trust_kind::cluster;
    // Envelopes from non-cluster peers were admitted by admit() (scope,
    // capabilities, revocation, rate) before they get here.
    std::visit(
        [&](auto& env) {
            using T = std::decay_t<decltype(env)>;
            if constexpr (std::is_same_v<T, env_reply>) {
                if (env.code == errc::ok)
                    finish(env.req_id, peer, std::move(env.value));
                else
                    finish(env.req_id, peer,
                           error{env.code, env.value.as_string() ? *env.value.as_string() : env.value.to_string()});
            } else if constexpr (std::is_same_v<T, env_spawn_reply>) {
                if (env.code == errc::ok) {
                    if (env.spawned.node != peer) return bad("spawned pid of another node");
                    finish_spawn(env.req_id, peer, std::move(env.spawned));
                } else {
                    finish_spawn(env.req_id, peer, error{env.code, env.detail});
                }
            } else if constexpr (std::is_same_v<T, env_call>) {
                auto reply_err = [&](errc c, std::string d) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    post(peer, env_reply{env.req_id, c, term(std::move(d))});
                };
                // The caller, when named, must be one of the peer's own pids
                // (as for spawn_request); kith's own calls leave it null.
                if (!from_peer(peer, env.from)) return bad("forged caller pid");
                auto s = services_->find(env.service);
                if (!s) return reply_err(errc::no_such_service, env.service);
                if (!s->find(env.function)) return reply_err(errc::no_such_function, env.service + ":" + env.function);
                run_job([s = std::move(s), fn = std::move(env.function), args = std::move(env.args),
                         d = weak_from_this(), peer, req = env.req_id] {
                    s->invoke(fn, args, reply_to([d, peer, req](result<term> r) {
                                  auto self = d.lock();
                                  if (!self) return;
                                  if (r.ok())
                                      self->post(peer, env_reply{req, errc::ok, std::move(*r)});
                                  else
                                      self->post(peer, env_reply{req, r.code(), term(r.err().detail)});
                              }));
                });
            } else if constexpr (std::is_same_v<T, env_cast>) {
                auto s = services_->find(env.service);
                if (!s) return bad("cast to an unknown service");
                run_job([s = std::move(s), fn = std::move(env.function), args = std::move(env.args)] {
                    s->invoke(fn, args, reply_to([](result<term>) {}));
                });
            } else if constexpr (std::is_same_v<T, env_spawn_request>) {
                auto reply_err = [&](errc c, std::string d) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    post(peer, env_spawn_reply{env.req_id, c, pid{}, std::move(d)});
                };
                if (!from_peer(peer, env.from)) return bad("forged requester pid");
                auto s = services_->find(env.service);
                if (!s) return reply_err(errc::no_such_service, env.service);
                auto* f = s->find_type(env.actor_type);
                if (!f) return reply_err(errc::no_such_function, env.service + ":" + env.actor_type);
                result<std::pair<actor_init, behavior>> made = error{errc::exception};
                try {
                    made = (*f)(env.args);
                } catch (const std::exception& ex) {
                    made = error{errc::exception, ex.what()};
                }
                if (!made) return reply_err(made.code(), made.err().detail);
                // The child's own init sets up the requested link/monitor and
                // posts the reply before any user code runs: the relation
                // exists before the child can end, and the reply reaches the
                // requester before any exit or DOWN from the child.
                auto self = weak_from_this();
                auto inner_init = std::move(made->first);
                auto inner_b = std::move(made->second);
                std::uint8_t flags = env.from.is_null() ? std::uint8_t{spawn_plain} : env.flags;
                actor_init wrapped = [self, peer, req = env.req_id, flags, from = env.from, mref = env.monitor_ref,
                                      tie = !cluster, inner_init = std::move(inner_init),
                                      inner_b = std::move(inner_b)](actor& me) mutable -> behavior {
                    if (auto d = self.lock()) {
                        if (tie) {
                            // Spawned by a grantee or a stranger: linked to its
                            // connection, so it ends ("noconnection", or an
                            // exit message if it traps exits) when the peer
                            // goes away or its grant is revoked.
                            const pid conn = connection_pid(peer);
                            bool up = d->with_peer(peer, [&](peer_state& ps) { ps.links.emplace(me.self(), conn); });
                            d->rt_.remote_link(conn, me.self());
                            if (!up) d->rt_.deliver(me.self(), message(message_kind::link_exit, term("noconnection"), conn));
                        }
                        if (flags & spawn_link_flag) {
                            d->with_peer(peer, [&](peer_state& ps) { ps.links.emplace(me.self(), from); });
                            d->rt_.remote_link(from, me.self());
                        }
                        if (flags & spawn_monitor_flag) d->rt_.remote_monitor(from, me.self(), mref);
                        d->post(peer, env_spawn_reply{req, errc::ok, me.self(), {}});
                    }
                    if (inner_init) return inner_init(me);
                    return std::move(inner_b);
                };
                rt_.spawn(std::move(wrapped), {}, nullptr, false, nullptr);
            } else if constexpr (std::is_same_v<T, env_send>) {
                if (!is_local(env.to)) return bad("pid of another node");
                rt_.deliver_user(env.to, std::move(env.msg), target);
            } else if constexpr (std::is_same_v<T, env_send_named>) {
                rt_.deliver_named(env.name, message(std::move(env.msg)));
            } else if constexpr (std::is_same_v<T, env_request>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                rt_.deliver(env.to, message(message_kind::request, std::move(env.msg), std::move(env.from),
                                            std::move(env.tag)));
            } else if constexpr (std::is_same_v<T, env_response>) {
                if (!is_local(env.to)) return bad("pid of another node");
                if (env.code == errc::ok)
                    rt_.deliver(env.to, message(message_kind::reply, std::move(env.value), pid{}, std::move(env.tag)));
                else
                    rt_.deliver(env.to, message(message_kind::reply_error,
                                                arr(static_cast<int>(env.code), std::move(env.value)), pid{},
                                                std::move(env.tag)));
            } else if constexpr (std::is_same_v<T, env_monitor>) {
                if (!is_local(env.target) || !from_peer(peer, env.from)) return bad("forged pid");
                if (!rt_.remote_monitor(env.from, env.target, env.mref))
                    post(peer, env_down{env.mref, env.target, env.from, term("noproc")});
            } else if constexpr (std::is_same_v<T, env_demonitor>) {
                if (!is_local(env.target) || !from_peer(peer, env.from)) return bad("forged pid");
                rt_.remote_demonitor(env.target, env.mref);
            } else if constexpr (std::is_same_v<T, env_down>) {
                if (!is_local(env.to) || !from_peer(peer, env.who)) return bad("forged pid");
                with_peer(peer, [&](peer_state& ps) { ps.monitors.erase(env.mref); });
                rt_.deliver(env.to, message(message_kind::down, std::move(env.reason), std::move(env.who),
                                            std::move(env.mref)));
            } else if constexpr (std::is_same_v<T, env_link>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                with_peer(peer, [&](peer_state& ps) { ps.links.emplace(env.to, env.from); });
                if (!rt_.remote_link(env.from, env.to)) post(peer, env_exit{env.to, env.from, term("noproc"), true});
            } else if constexpr (std::is_same_v<T, env_unlink>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                with_peer(peer, [&](peer_state& ps) { ps.links.erase({env.to, env.from}); });
                rt_.remote_unlink(env.from, env.to);
            } else if constexpr (std::is_same_v<T, env_exit>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                if (env.linked) with_peer(peer, [&](peer_state& ps) { ps.links.erase({env.to, env.from}); });
                rt_.deliver(env.to, message(env.linked ? message_kind::link_exit : message_kind::exit_signal,
                                            std::move(env.reason), std::move(env.from)));
            } else {
                // handshake / heartbeat / goodbye are consumed by the transport
                bad("unexpected envelope");
            }
        },
        e);
}

}  // namespace kith::detail
