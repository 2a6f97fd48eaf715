// dist.cpp — the distribution layer. See dist.hpp.
#include "dist/dist.hpp"
#include "grants/grants_io.hpp"

#include <algorithm>
#include <cstdio>
#include <future>

namespace kith::detail {

namespace {


std::filesystem::path grant_table_file(const net_options& o) {
    return (o.key_dir.empty() ? default_key_dir() : o.key_dir) / "grants";
}

}  // namespace

dist::dist(node_impl& rt, const net_options& opts, std::shared_ptr<service_table> services)
    : rt_(rt), opts_(opts), services_(std::move(services)),
      grants_(std::make_shared<grant_table>(grant_table_file(opts), opts.log, rt.name())),
      waiters_(std::make_shared<connect_waiters>(opts.log, rt.name())), calls_(opts.log, rt.name()) {
    transport_options to;
    to.node_name = rt.name();
    to.bind_endpoint = opts.listen;
    to.advertised_endpoint = opts.advertise;
    to.member_bind_endpoint = opts.member_listen;
    to.key_dir = opts.key_dir;
    to.cookie = opts.cookie;
    to.heartbeat_interval = opts.heartbeat_interval;
    to.heartbeat_timeout = opts.heartbeat_timeout;
    to.max_queue_bytes = opts.max_queue_bytes;
    to.network_cpu = opts.network_cpu;
    to.guest_bytes_per_s = opts.guest_bytes_per_s;
    to.guest_burst_bytes = opts.guest_burst_bytes;
    to.guests_bytes_per_s = 8 * opts.guest_bytes_per_s;
    to.guests_burst_bytes = 8 * opts.guest_burst_bytes;
    to.conns_per_address_per_s = opts.conns_per_address_per_s;
    to.conns_per_address_burst = opts.conns_per_address_burst;
    to.ration_loopback = opts.ration_loopback;
    to.hidden = opts.hidden;
    to.log = opts.log;  // the transport's records (a throwing callback, a failed libzmq call) go to the node's sink
    to.services = services_->names();
    to.live_services = [t = services_] { return t->names(); };

    transport_callbacks cb;
    // The callbacks hold a raw pointer: the transport is stopped (its I/O
    // thread joined) before this object goes away.
    cb.on_peer_up = [this](const std::string& p, const peer_info& i) { on_up(p, i); };
    cb.on_peer_down = [this](const std::string& p, const std::string& r) { on_down(p, r); };
    cb.on_peer_refused = [this](const refusal& r) { on_refused(r); };
    // b dials a while a's link to b is up: the session exists already, so
    // the connect is answered here (it used to time out).
    cb.on_outbound_joined = [this](const std::string& p, const std::string& ep) {
        {
            std::lock_guard lk(mu_);
            if (auto it = peers_.find(p); it != peers_.end()) it->second.dialled.insert(ep);
        }
        waiters_->settle(ep, p);
    };
    cb.on_name_claim = [this](auth::name_claim& c) { return on_name_claim(c); };
    cb.on_envelopes = [this](const std::string& p, const peer_auth& a, std::vector<envelope>&& es) {
        on_envelopes(p, a, std::move(es));
    };
    // Counted by the transport; said once per peer and reason kind here.
    cb.on_decode_error = [this](const std::string& peer, const error& e) {
        diag("dropped a malformed frame from " + peer + ": " + e.detail);
    };
    cb.run_elsewhere = [this](std::function<void()> job) { run_on_worker(std::move(job)); };
    tr_ = std::make_unique<transport>(std::move(to), std::move(cb));
    // Keys other than the cluster key: a live grant; a revoked or expired
    // one (admitted only to be told "revoked" at its handshake, see
    // zap.hpp); or, while a service is public, any key as a stranger. The
    // lambda holds the table, so it outlives the transport's use of it.
    // `address` is empty when the transport asks again at a handshake: only
    // ZAP's own asks count against the key's budgets.
    tr_->set_authorizer([tbl = grants_](const public_key& k, std::string_view address) {
        tbl->refresh();  // another process may have changed the file
        const bool at_zap = !address.empty();
        // A key that keeps reconnecting is backed off (members never get here).
        if (at_zap && !tbl->take_connect_token(k))
            return authz_decision::refuse("key " + k.fingerprint() + " connects too often: backed off");
        if (auto g = tbl->find_key(k)) {
            // A dead grant's key is admitted only to be told so, a few times.
            if (g->dead() && at_zap && g->told_revoked.fetch_add(1) >= 3)
                return authz_decision::refuse("grant \"" + g->label + "\" is revoked or expired (told 3 times)");
            if (g->revoked.load())
                return authz_decision::revoked(g->label, "grant \"" + g->label + "\" was revoked by the node's owner");
            if (g->dead())
                return authz_decision::revoked(g->label, "grant \"" + g->label + "\" expired at " +
                                                             (g->expires ? format_utc(*g->expires) : std::string("?")));
            return authz_decision::grant(g->label);
        }
        if (tbl->any_public()) return authz_decision::stranger();
        return authz_decision::refuse("unknown key (wrong cookie, or no grant for this key)");
    });
}

dist::~dist() { stop(); }

void dist::start() {
    tr_->start();
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
    waiters_->close();
    tr_->stop();  // reports every peer down ("shutdown") through on_down
    // Whatever is still pending fails with errc::shutdown (on the deadline
    // thread; this returns once they ran).
    calls_.shutdown();
}

// ---------------------------------------------------------------------------
// connections and node events

std::optional<std::string> dist::up_at(const std::string& endpoint) const {
    std::lock_guard lk(mu_);
    for (auto& [name, ps] : peers_)
        // Only an endpoint we dialled: an inbound peer's port is its claim.
        if (ps.dialled.count(endpoint)) return name;
    return std::nullopt;
}

// Registering the waiter before looking at peers_ closes the race with
// on_up, which updates peers_ before it settles the waiters: either it
// settles ours, or we see the peer up.
result<std::string> dist::connect(const std::string& endpoint, const public_key& server_key, duration timeout,
                                  link_credentials creds) {
    auto w = waiters_->add(endpoint);
    if (!w) return error{errc::shutdown, "node stopping"};
    if (auto name = up_at(endpoint))
        waiters_->settle_one(w, std::move(*name));
    else
        tr_->connect(endpoint, server_key, std::move(creds));
    return waiters_->wait(w, timeout);
}

void dist::connect_async(const std::string& endpoint, const public_key& server_key, duration timeout,
                         std::function<void(result<std::string>)> done) {
    auto w = waiters_->add(endpoint, std::move(done));
    if (!w) return done(error{errc::shutdown, "node stopping"});  // not moved from: add refused it
    if (auto name = up_at(endpoint)) return waiters_->settle_one(w, std::move(*name));
    // The node's timer thread times it out (a no-op once it is settled).
    // Weak: a connect that has long been settled keeps nothing alive.
    std::weak_ptr<connect_waiters> wl = waiters_;
    std::weak_ptr<connect_waiters::waiter> ww = w;
    rt_.run_after(timeout, [wl, ww, endpoint] {
        auto l = wl.lock();
        auto w = ww.lock();
        if (l && w) l->settle_one(w, error{errc::timeout, "no answer from " + endpoint});
    });
    tr_->connect(endpoint, server_key);
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

template <class Set>
void dist::remember(Set& set, std::deque<std::string>& order, const std::string& name) {
    if (auto it = std::find(order.begin(), order.end(), name); it != order.end()) order.erase(it);
    order.push_back(name);
    if (order.size() > 4096) {
        set.erase(order.front());
        order.pop_front();
    }
}

auth::claim_verdict dist::on_name_claim(auth::name_claim& c) {
    {
        std::lock_guard lk(mu_);
        c.reserved = member_names_.count(c.name) != 0;
        if (auto it = server_names_.find(c.name); it != server_names_.end()) c.dialled_key = it->second;
    }
    auto v = auth::claim_name(c);
    if (v.what != auth::claim_verdict::accept && first_claim_refusal(c.name + "|" + v.why)) {
        const bool evict = v.what == auth::claim_verdict::evict && c.holder;
        const peer_auth& who = evict ? *c.holder : *c.claimant;
        const public_key& key = who.kind == trust_kind::cluster && c.claimant_key && !evict ? *c.claimant_key : who.key;
        diag("node name " + c.name + ": " + (evict ? "taken back from " : "refused to ") +
             std::string(trust_word(who.kind)) + " key " + key.fingerprint() + ": " + v.why);
    }
    return v;
}

std::shared_ptr<const authority> dist::member_authority(const std::string& node) const {
    std::shared_lock lk(restricted_mu_);
    auto it = members_.find(node);
    return it == members_.end() ? nullptr : it->second;
}

std::shared_ptr<dist::restricted_peer> dist::find_restricted(const std::string& node) const {
    if (restricted_count_.load(std::memory_order_acquire) == 0) return nullptr;
    std::shared_lock lk(restricted_mu_);
    auto it = restricted_.find(node);
    return it == restricted_.end() ? nullptr : it->second;
}

auth::verdict dist::check_invoke(const authority& who, const std::string& svc, const std::string& fn) const {
    struct invoke_state final : auth::gate_state {
        const dist& d;
        explicit invoke_state(const dist& x) : d(x) {}
        bool is_local(const pid& p) const override { return d.rt_.is_local(p); }
        bool is_public(const std::string& s) const override { return d.grants_->is_public(s); }
        bool any_public() const override { return d.grants_->any_public(); }
        bool asked(const ref&) const override { return false; }
        bool watching(const ref&) const override { return false; }
        bool watched_by(const pid&, const pid&, const ref&) const override { return false; }
    } st(*this);
    if (who.grant && who.grant->dead()) return {errc::revoked, "grant \"" + who.who.label + "\" is revoked or expired"};
    return auth::may_invoke(who, svc, fn, st);
}

void dist::public_changed() {
    if (grants_->any_public()) return;
    tr_->end_sessions("stranger:*", "refused: this node has no public service any more");
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
    ev.info.trust = pi.auth.kind;  // one enum (auth/identity.hpp)
    ev.info.services = pi.services;
    ev.info.hidden = pi.hidden;
    {
        std::lock_guard lk(mu_);
        revoked_by_.erase(peer);
        auto& ps = peers_[peer];
        ps = peer_state{};
        ps.info = ev.info;
        if (pi.outbound) ps.dialled.insert(pi.endpoint);
        if (pi.auth.kind == trust_kind::cluster) {
            auto who = std::make_shared<authority>();
            who->who.what = principal::kind::member;
            who->who.node = peer;
            who->who.key = pi.outbound || !pi.node_key ? pi.auth.key : *pi.node_key;
            {
                std::unique_lock rl(restricted_mu_);
                members_[peer] = std::move(who);
            }
            // Reserved for members (hidden CLI clients are not: they come and go).
            if (!pi.hidden) {
                member_names_.insert(peer);
                remember(member_names_, member_order_, peer);
            }
        } else {
            if (pi.auth.kind == trust_kind::server) {
                server_names_[peer] = pi.auth.key;
                remember(server_names_, server_order_, peer);
            }
            auto rp = std::make_shared<restricted_peer>();
            auto who = std::make_shared<authority>();
            who->who.node = peer;
            who->who.key = pi.auth.key;
            switch (pi.auth.kind) {
                case trust_kind::granted:
                    who->who.what = principal::kind::grant;
                    who->who.label = pi.auth.user_id.substr(6);
                    who->grant = grants_->find(who->who.label);
                    break;
                case trust_kind::stranger: who->who.what = principal::kind::stranger; break;
                default: who->who.what = principal::kind::server; break;
            }
            if (who->grant) who->grant->connected.fetch_add(1);
            // Its key's counters, shared with the key's other sessions and
            // with what its earlier sessions left behind (auth::max_pending…).
            auto& kl = key_loads_[pi.auth.key];
            rp->key_load = kl.lock();
            if (!rp->key_load) {
                if (key_loads_.size() > 256)
                    std::erase_if(key_loads_, [](const auto& e) { return e.second.expired(); });
                rp->key_load = std::make_shared<load_counters>();
                key_loads_[pi.auth.key] = rp->key_load;
            }
            if (who->who.what == principal::kind::stranger) rp->strangers_load = strangers_load_;
            // Handed pids: a grant's set, else its key's (shared by the key's
            // sessions; strangers' keys draw on one pool).
            if (who->grant) {
                who->caps = who->grant->caps;
            } else {
                if (!rp->key_load->caps)
                    rp->key_load->caps = std::make_shared<capability_set>(
                        capability_set::default_capacity,
                        who->who.what == principal::kind::stranger ? strangers_caps_ : nullptr);
                who->caps = rp->key_load->caps;
            }
            rp->who = std::move(who);
            ps.restricted = rp;
            std::unique_lock rl(restricted_mu_);
            restricted_[peer] = std::move(rp);
            restricted_count_.store(restricted_.size());
        }
    }
    // After peers_ knows it (see connect).
    if (pi.outbound) waiters_->settle(pi.endpoint, peer);
    emit(ev);
}

void dist::on_down(const std::string& peer, const std::string& reason) {
    peer_state ps;
    {
        std::lock_guard lk(mu_);
        auto it = peers_.find(peer);
        if (it != peers_.end()) {
            ps = std::move(it->second);
            peers_.erase(it);
        }
        if ((reason == "revoked" || reason == "refused") && (revoked_by_.size() < 256 || revoked_by_.count(peer)))
            revoked_by_[peer] = reason == "revoked";
        {
            std::unique_lock rl(restricted_mu_);
            members_.erase(peer);
        }
        if (ps.restricted) {
            ps.restricted->who->ended.store(true, std::memory_order_release);
            // Its links and monitors end with it ("noconnection").
            ps.restricted->add_relations(-ps.restricted->relations.load());
            if (ps.restricted->who->grant) ps.restricted->who->grant->connected.fetch_sub(1);
            std::unique_lock rl(restricted_mu_);
            restricted_.erase(peer);
            restricted_count_.store(restricted_.size());
        }
    }
    auto failed = calls_.take_node(peer);
    // Everything that depended on the connection learns it, after every
    // envelope that came from the peer (same thread, later).
    // A revoked grant fails what was pending under it as revoked.
    // A server that refused us (goodbye "refused: ...") fails it as unauthorized.
    const error down{reason == "revoked"   ? errc::revoked
                     : reason == "refused" ? errc::unauthorized
                                           : errc::nodedown,
                     peer + ": " + reason};
    for (auto& p : failed) p.fail(down);
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

bool dist::first_claim_refusal(const std::string& what) {
    std::lock_guard lk(diag_mu_);
    if (claim_logged_.size() >= 1024) claim_logged_.clear();
    return claim_logged_.insert(what).second;
}

void dist::diag(const std::string& line, log_level level) {
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
    log_record r;
    r.level = level;
    r.source = "dist";
    r.text = line;
    r.node = rt_.name();
    log_to(opts_.log, r);
}

void dist::on_refused(const refusal& r) {
    diag(std::string(r.inbound ? "connection from " : "connection to ") + r.endpoint + " refused: " + r.reason);
    if (r.inbound) return;
    waiters_->settle(r.endpoint, error{r.code, r.reason});
}

void dist::emit(const node_event& ev) {
    std::vector<std::function<void(const node_event&)>> cbs;
    std::vector<pid> pids;
    {
        std::lock_guard lk(mu_);
        for (auto& [id, cb] : callbacks_) cbs.push_back(cb);
        pids = node_monitors_;
    }
    if (ev.info.hidden) return;
    // A subscriber that throws is a bug in its program, not a reason to keep
    // the event from the others or to take the I/O thread down: logged (at
    // the rate limit: events follow peers, which may come and go often).
    for (auto& cb : cbs) {
        try {
            cb(ev);
        } catch (const std::exception& e) {
            diag("a node-event subscriber threw on " + ev.node + (ev.what == node_event::kind::up ? " up" : " down") +
                     ": " + e.what() + "; the other subscribers still got the event",
                 log_level::error);
        } catch (...) {
            diag("a node-event subscriber threw a non-exception on " + ev.node +
                     (ev.what == node_event::kind::up ? " up" : " down") +
                     "; the other subscribers still got the event",
                 log_level::error);
        }
    }
    if (!pids.empty()) {
        term t = ev.to_term();
        std::vector<pid> dead;
        for (auto& p : pids) {
            // A subscriber that ended without unsubscribing is forgotten
            // here, so the list never grows with dead pids.
            auto proc = rt_.lookup(p.serial);
            if (!proc || proc->is_dead()) dead.push_back(p);
            else rt_.send(p, message(t));
        }
        if (!dead.empty()) {
            std::lock_guard lk(mu_);
            for (auto& p : dead) std::erase(node_monitors_, p);
        }
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
    c.refused = refused_.load() + rt_.refused_acting();
    c.refused_unauthorized = refused_unauthorized_.load() + rt_.refused_acting();
    c.refused_revoked = refused_revoked_.load();
    c.refused_rate_limited = refused_rate_limited_.load();
    c.refused_unanswered = unanswered_.load();
    c.refused_overloaded = refused_overloaded_.load();
    c.overload_drops = overload_drops_.load() + s.overload_drops;
    c.refused_connections = s.refused_inbound + s.refused_outbound;
    c.rate_drops = s.rate_drops;
    c.paced_waits = s.paced_waits;
    c.address_blocks = s.address_blocks;
    c.member_moves = s.member_moves;
    c.member_moves_failed = s.member_moves_failed;
    return c;
}

}  // namespace kith::detail
