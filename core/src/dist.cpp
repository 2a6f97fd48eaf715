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
    : rt_(rt), opts_(opts), services_(std::move(services)) {
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
    cb.on_decode_error = [](const std::string& peer, const error& e) {
        std::fprintf(stderr, "kith: dropped a malformed frame from %s: %s\n", peer.c_str(), e.detail.c_str());
    };
    tr_ = std::make_unique<transport>(std::move(to), std::move(cb));
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
    tr_->stop();  // reports every peer down ("shutdown") through on_down
    deadline_cv_.notify_all();
    if (deadline_thread_.joinable()) deadline_thread_.join();
    // Fail whatever is still pending.
    std::unordered_map<std::uint64_t, pending> left;
    {
        std::lock_guard lk(mu_);
        left.swap(pending_);
        for (auto& w : waiters_)
            if (!w->outcome) w->outcome.emplace(error{errc::shutdown, "node stopping"});
    }
    waiter_cv_.notify_all();
    for (auto& [id, p] : left) {
        if (p.on_call) p.on_call(error{errc::shutdown, "node stopping"});
        if (p.on_spawn) p.on_spawn(error{errc::shutdown, "node stopping"});
    }
}

// ---------------------------------------------------------------------------
// connections and node events

result<std::string> dist::connect(const std::string& endpoint, const public_key& server_key, duration timeout) {
    auto w = std::make_shared<waiter>();
    w->endpoint = endpoint;
    {
        std::lock_guard lk(mu_);
        if (stopping_) return error{errc::shutdown, "node stopping"};
        for (auto& [name, ps] : peers_)
            if (ps.info.endpoint == endpoint) return name;
        waiters_.push_back(w);
    }
    tr_->connect(endpoint, server_key);
    std::unique_lock lk(mu_);
    bool done = waiter_cv_.wait_for(lk, timeout, [&] { return w->outcome.has_value(); });
    std::erase(waiters_, w);
    if (!done) return error{errc::timeout, "no answer from " + endpoint};
    return std::move(*w->outcome);
}

void dist::on_up(const std::string& peer, const peer_info& pi) {
    node_event ev;
    ev.what = node_event::kind::up;
    ev.node = peer;
    ev.info.name = peer;
    ev.info.endpoint = pi.endpoint;
    ev.info.fingerprint = pi.auth.key.fingerprint();
    ev.info.trust = to_level(pi.auth.kind);
    ev.info.services = pi.services;
    ev.info.hidden = pi.hidden;
    {
        std::lock_guard lk(mu_);
        auto& ps = peers_[peer];
        ps = peer_state{};
        ps.info = ev.info;
        for (auto& w : waiters_)
            if (!w->outcome && pi.outbound && w->endpoint == pi.endpoint) w->outcome.emplace(peer);
    }
    waiter_cv_.notify_all();
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
        error e{errc::nodedown, peer + ": " + reason};
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

void dist::on_refused(const refusal& r) {
    std::fprintf(stderr, "kith: %s %s refused: %s\n", r.inbound ? "connection from" : "connection to",
                 r.endpoint.c_str(), r.reason.c_str());
    if (r.inbound) return;
    {
        std::lock_guard lk(mu_);
        for (auto& w : waiters_)
            if (!w->outcome && w->endpoint == r.endpoint) w->outcome.emplace(error{errc::unauthorized, r.reason});
    }
    waiter_cv_.notify_all();
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
    c.overload_drops = overload_drops_.load() + s.overload_drops;
    c.refused_connections = s.refused_inbound + s.refused_outbound;
    return c;
}

// ---------------------------------------------------------------------------
// services, rpc, remote spawn (caller side)

bool dist::post(const std::string& node, const envelope& e) {
    auto r = tr_->post(node, e);
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
    auto r = tr_->post(node, envelope{std::move(c)});
    if (!r.ok()) {
        if (r.code() == errc::overloaded) overload_drops_.fetch_add(1, std::memory_order_relaxed);
        // As before the is_up() check was folded into post(): a peer that
        // is not up (also after stop) is nodedown "not connected".
        if (r.code() == errc::nodedown || (r.code() == errc::shutdown && !tr_->is_up(node)))
            finish(id, node, error{errc::nodedown, node + " is not connected"});
        else
            finish(id, node, r.err());
    }
}

result<void> dist::cast(const std::string& node, const std::string& svc, const std::string& fn, term args) {
    env_cast c;
    c.service = svc;
    c.function = fn;
    c.args = std::move(args);
    auto r = tr_->post(node, envelope{std::move(c)});
    if (!r.ok() && r.code() == errc::overloaded) overload_drops_.fetch_add(1, std::memory_order_relaxed);
    return r;
}

void dist::spawn(const std::string& node, const std::string& svc, const std::string& type, term args,
                 duration timeout, spawn_done done, std::uint8_t flags, pid from, ref mref) {
    if (!tr_->is_up(node)) {
        done(error{errc::nodedown, node + " is not connected"});
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
    auto r = tr_->post(node, envelope{std::move(s)});
    if (!r.ok()) finish_spawn(id, node, r.err());
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
    return post(to.node, env_exit{from, to, reason, linked});
}

// ---------------------------------------------------------------------------
// inbound envelopes (I/O thread)

void dist::on_envelopes(const std::string& peer, const peer_auth& auth, std::vector<envelope>&& envs) {
    proc_ref target;
    for (auto& e : envs) handle(peer, auth, e, target);
}

errc dist::authorize(const peer_auth& auth, const char* op, const std::string& svc, const std::string& what) const {
    (void)op;
    (void)svc;
    (void)what;
    // Cluster members are fully trusted, as in distributed Erlang. Every
    // other kind of peer is refused until grants and public services define
    // what it may do (fail closed).
    if (auth.kind == trust_kind::cluster) return errc::ok;
    return errc::unauthorized;
}

void dist::handle(const std::string& peer, const peer_auth& auth, envelope& e, proc_ref& target) {
    auto bad = [&](const char* why) {
        protocol_errors_.fetch_add(1, std::memory_order_relaxed);
        std::fprintf(stderr, "kith: refused %s envelope from %s: %s\n", std::string(kind_name(e)).c_str(),
                     peer.c_str(), why);
    };
    const bool cluster = auth.kind == trust_kind::cluster;
    // Answers to our own requests come back from nodes we called, whatever
    // their trust; requests and messages into this node need authorization.
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
                if (auto a = authorize(auth, "call", env.service, env.function); a != errc::ok)
                    return reply_err(a, env.service + ":" + env.function);
                auto s = services_->find(env.service);
                if (!s) return reply_err(errc::no_such_service, env.service);
                if (!s->find(env.function)) return reply_err(errc::no_such_function, env.service + ":" + env.function);
                // Run the function on a worker, in a transient actor, so a
                // slow function never stalls the network thread. The actor's
                // init holds the job by value (one allocation) and makes the
                // reply sink when it runs.
                rt_.spawn(
                    [s = std::move(s), fn = std::move(env.function), args = std::move(env.args), d = weak_from_this(),
                     peer, req = env.req_id](actor& me) -> behavior {
                        s->invoke(fn, args, reply_to([d, peer, req](result<term> r) {
                                      auto self = d.lock();
                                      if (!self) return;
                                      if (r.ok())
                                          self->post(peer, env_reply{req, errc::ok, std::move(*r)});
                                      else
                                          self->post(peer, env_reply{req, r.code(), term(r.err().detail)});
                                  }));
                        me.quit();
                        return [](actor&, message&) {};
                    },
                    {}, nullptr, false, nullptr);
            } else if constexpr (std::is_same_v<T, env_cast>) {
                if (authorize(auth, "cast", env.service, env.function) != errc::ok) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    return;
                }
                auto s = services_->find(env.service);
                if (!s) return bad("cast to an unknown service");
                auto job = std::make_shared<std::pair<std::string, term>>(std::move(env.function), std::move(env.args));
                rt_.spawn(
                    [s, job](actor& me) -> behavior {
                        s->invoke(job->first, job->second, reply_to([](result<term>) {}));
                        me.quit();
                        return [](actor&, message&) {};
                    },
                    {}, nullptr, false, nullptr);
            } else if constexpr (std::is_same_v<T, env_spawn_request>) {
                auto reply_err = [&](errc c, std::string d) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    post(peer, env_spawn_reply{env.req_id, c, pid{}, std::move(d)});
                };
                if (!from_peer(peer, env.from)) return bad("forged requester pid");
                if (auto a = authorize(auth, "spawn", env.service, env.actor_type); a != errc::ok)
                    return reply_err(a, env.service + ":" + env.actor_type);
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
                                      inner_init = std::move(inner_init),
                                      inner_b = std::move(inner_b)](actor& me) mutable -> behavior {
                    if (auto d = self.lock()) {
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
                if (!cluster && authorize(auth, "send", {}, {}) != errc::ok && auth.kind != trust_kind::server) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    return;
                }
                rt_.deliver_user(env.to, std::move(env.msg), target);
            } else if constexpr (std::is_same_v<T, env_send_named>) {
                if (!cluster) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    return;
                }
                rt_.deliver_named(env.name, message(std::move(env.msg)));
            } else if constexpr (std::is_same_v<T, env_request>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                if (!cluster && auth.kind != trust_kind::server) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    post(peer, env_response{env.from, env.tag, errc::unauthorized, term("unauthorized")});
                    return;
                }
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
                if (!cluster) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    post(peer, env_down{env.mref, env.target, env.from, term("unauthorized")});
                    return;
                }
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
                if (!cluster) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    post(peer, env_exit{env.to, env.from, term("unauthorized"), true});
                    return;
                }
                with_peer(peer, [&](peer_state& ps) { ps.links.emplace(env.to, env.from); });
                if (!rt_.remote_link(env.from, env.to)) post(peer, env_exit{env.to, env.from, term("noproc"), true});
            } else if constexpr (std::is_same_v<T, env_unlink>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                with_peer(peer, [&](peer_state& ps) { ps.links.erase({env.to, env.from}); });
                rt_.remote_unlink(env.from, env.to);
            } else if constexpr (std::is_same_v<T, env_exit>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                if (!cluster && auth.kind != trust_kind::server) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    return;
                }
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
