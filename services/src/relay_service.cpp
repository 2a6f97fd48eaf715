// relay_service.cpp — the relay's control plane: the "relay" service
// (register, dial, directory, unregister), registrations bound to keys, dial
// tokens bound to diallers, and the end of both when a node disconnects.
// See kith/relay.hpp.
#include <arpa/inet.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "kith/principal.hpp"
#include "kith/service.hpp"
#include "relay_impl.hpp"

namespace kith {

namespace {

// Who is calling, as the relay sees it: a node name bound to a key. The
// relay's own node (local calls) has no link to splice, so it cannot use
// the relay.
result<const principal*> caller() {
    const principal& p = current_principal();
    if (p.what == principal::kind::local || p.node.empty())
        return error{errc::bad_args, "the relay service is for other nodes: this node is the relay itself"};
    return &p;
}

// What the directory shows of one node: at most this many service names,
// and at most kDirectoryBytes in all (well under a reply's 1 MiB limit).
constexpr std::size_t kDirectoryServices = 16;
constexpr std::size_t kDirectoryBytes = 512 * 1024;

// The services a registering node offers, as its handshake with this relay
// named them: the admin services ("grants", "node") are never granted to
// anyone outside its cluster, so they are left out.
std::vector<std::string> offered_services(node& n, const std::string& who) {
    std::vector<std::string> out;
    auto info = n.info(who);
    if (!info) return out;
    for (auto& s : info->services) {
        if (s == "grants" || s == "node") continue;
        if (out.size() == kDirectoryServices) break;
        out.push_back(s);
    }
    return out;
}

// The key the directory and dial show for a registration: its node's own
// key, or "" when it registered with a relay grant (that key is the grant's,
// which the relay's owner issued and no dialler checks: kith/relay.hpp).
std::string shown_key(const relay::impl::registration& r) { return r.how == "grant" ? std::string() : r.key_z85; }

}  // namespace

std::string relay::impl::advertised_endpoint(const std::string& bound_ip, unsigned port) const {
    if (o_.advertise.empty()) return bound_ip + ":" + std::to_string(port);
    std::string a = o_.advertise;
    if (a.rfind("tcp://", 0) == 0) a = a.substr(6);
    auto c = a.rfind(':');
    std::string host = c == std::string::npos ? a : a.substr(0, c);
    in_addr ip{};
    int p = c == std::string::npos ? static_cast<int>(port) : std::atoi(a.c_str() + c + 1);
    bool port_ok = c == std::string::npos ||
                   (a.size() > c + 1 && a.find_first_not_of("0123456789", c + 1) == std::string::npos && p > 0 &&
                    p <= 65535);
    if (::inet_pton(AF_INET, host.c_str(), &ip) != 1 || host == "0.0.0.0" || !port_ok)
        throw setup_error("relay: advertise '" + o_.advertise +
                          "' is not IPV4 or IPV4:PORT (an address nodes can dial, e.g. 203.0.113.5:4380; a host name "
                          "is not resolved)");
    return host + ":" + std::to_string(p);
}

relay::impl::impl(node& n, relay_options o) : n_(n), o_(std::move(o)) {
    if (auto ok = o_.check(); !ok.ok()) throw setup_error("relay: " + ok.err().detail);
    if (n_.key_dir().empty()) throw setup_error("relay: the node has no network (net.listen); a relay needs one");
    names_file_ = n_.key_dir() / "relay-names";
    owners = relay_names::load(names_file_);  // throws setup_error, saying what to do
    refresh_grant_limits_locked(true);
    open_kernel_forward();  // first: a setup_error leaves nothing open
    bind_listener();
    add_service();
    guard_->live = this;
    // Through the guard: a node may still be running this callback (on its
    // I/O thread) after unsubscribe_nodes returned, i.e. after the relay is gone.
    sub_id_ = n_.subscribe_nodes([g = guard_](const node_event& ev) {
        std::shared_lock lk(g->mu);
        if (g->live) g->live->on_node_event(ev);
    });
    thread_ = std::thread([this] {
        // Named, so that ps/top (and the benchmark's CPU figure) can tell it apart.
        ::pthread_setname_np(::pthread_self(), "kith-relay");
        run();
    });
}

relay::impl::~impl() {
    {
        std::unique_lock lk(guard_->mu);
        guard_->live = nullptr;
    }
    n_.unsubscribe_nodes(sub_id_);
    stop_.store(true);
    wake();
    if (thread_.joinable()) thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

void relay::impl::refresh_grant_limits_locked(bool fatal) {
    const auto file = n_.key_dir() / "relay-grants";
    std::error_code ec;
    auto mtime = std::filesystem::last_write_time(file, ec);
    auto size = ec ? static_cast<std::uintmax_t>(-1) : std::filesystem::file_size(file, ec);
    if (ec) mtime = {}, size = static_cast<std::uintmax_t>(-1);
    struct ::stat st {};
    const std::uint64_t ino = ::stat(file.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
    if (!fatal && mtime == grant_limits_mtime_ && size == grant_limits_size_ && ino == grant_limits_ino_) return;
    auto t = load_relay_grant_limits(n_.key_dir());
    if (!t) {
        if (fatal)
            throw setup_error("relay: " + t.err().detail +
                              "; the relay does not start without the limits of its relay grants: fix the file, or "
                              "move it aside (every relay grant then has the relay's defaults)");
        return;  // the last good limits stay in force
    }
    grant_limits_ = std::move(*t);
    grant_limits_mtime_ = mtime;
    grant_limits_size_ = size;
    grant_limits_ino_ = ino;
}

const relay_grant_limits* relay::impl::limits_of_locked(const principal& p) {
    if (p.what != principal::kind::grant) return nullptr;
    refresh_grant_limits_locked(false);
    auto it = grant_limits_.find(p.label);
    return it == grant_limits_.end() ? nullptr : &it->second;
}

std::size_t relay::impl::dialler_limit_locked(const dial_token& t) {
    std::size_t max = o_.max_sessions_per_dialler;
    if (!t.grant.empty()) {
        refresh_grant_limits_locked(false);
        if (auto l = grant_limits_.find(t.grant); l != grant_limits_.end() && l->second.max_sessions)
            max = l->second.max_sessions;
    }
    return max;
}

bool relay::impl::admit_session_locked(const dial_token& t, std::string& registrant) {
    auto r = regs.find(t.target);
    if (r == regs.end()) return false;
    // A registrant's sessions count together over every name its key (or
    // relay grant) registered; a dialler's over every name it dials under
    // with its relay grant (its limit as the file says now).
    auto rs = registrant_sessions.find(r->second.account);
    if (rs != registrant_sessions.end() && rs->second >= r->second.max_sessions) return false;
    auto d = dialler_sessions.find(t.account());
    if (d != dialler_sessions.end() && d->second >= dialler_limit_locked(t)) return false;
    if (r->second.max_sessions == 0 || dialler_limit_locked(t) == 0) return false;
    ++dialler_sessions[t.account()];
    ++registrant_sessions[r->second.account];
    registrant = r->second.account;
    return true;
}

std::uint64_t relay::impl::session_rate_locked(const std::string& dialler_grant, const registration& r) {
    refresh_grant_limits_locked(false);
    std::uint64_t rate = o_.max_bytes_per_s_per_session;
    auto lower = [&](const std::string& label) {
        auto l = label.empty() ? grant_limits_.end() : grant_limits_.find(label);
        if (l == grant_limits_.end()) return;
        const std::uint64_t v = l->second.max_bytes_per_s;
        if (v != 0 && (rate == 0 || v < rate)) rate = v;
    };
    lower(r.grant);
    lower(dialler_grant);
    return rate;
}

void relay::impl::release_session_locked(const std::string& dialler, const std::string& registrant) {
    if (auto d = dialler_sessions.find(dialler); d != dialler_sessions.end() && d->second > 0)
        if (--d->second == 0) dialler_sessions.erase(d);
    if (auto r = registrant_sessions.find(registrant); r != registrant_sessions.end() && r->second > 0)
        if (--r->second == 0) registrant_sessions.erase(r);
}

void relay::impl::on_node_event(const node_event& ev) {
    if (ev.what != node_event::kind::down) return;
    {
        std::lock_guard lk(mu);
        // Its registration, the tokens it holds and every session it takes
        // part in end with its link to the relay: a revoked or departed node
        // keeps nothing here.
        regs.erase(ev.info.name);
        for (auto it = tokens.begin(); it != tokens.end();)
            it = it->second.dialler == ev.info.name ? tokens.erase(it) : std::next(it);
        // Its session ports (the data plane closes their sockets: doomed).
        // A dialler of a node that left is told (when it gave an agent), so
        // that it asks for a new pair when the node registers again.
        for (auto it = token_ports.begin(); it != token_ports.end();) {
            const port_session& ps = it->second;
            if (ps.dialler != ev.info.name && ps.target != ev.info.name) {
                ++it;
                continue;
            }
            if (ps.dialler != ev.info.name && !ps.dialler_agent.is_null())
                port_notices.emplace_back(ps.dialler_agent, arr("relay_port_closed", ps.session, ps.pd, "gone"));
            it = token_ports.erase(it);
        }
        doomed.insert(ev.info.name);
        c.registrations = regs.size();
    }
    wake();
}

result<term> relay::impl::do_register(const pid& agent, bool listed) {
    auto who = caller();
    if (!who.ok()) return who.err();
    const principal& p = **who;
    if (p.what == principal::kind::stranger && !o_.strangers_may_register)
        return error{errc::unauthorized, "register: this relay lets strangers dial but not register; ask its owner "
                                         "for a relay grant (kith grant create LABEL --services relay)"};
    if (agent.node != p.node)
        return error{errc::bad_args, "register: the agent must be a pid of the registering node (" + p.node + ")"};
    std::vector<std::string> services = offered_services(n_, p.node);
    const std::string key = p.key.z85();
    const std::int64_t now_s =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::uint64_t version = 0;
    bool bound_now = false;
    {
        std::lock_guard lk(mu);
        const relay_grant_limits* lim = limits_of_locked(p);
        if (lim && !lim->may_register(p.node)) {
            std::string names;
            for (auto& n : lim->names) names += (names.empty() ? "" : ", ") + n;
            return error{errc::unauthorized, "register: your relay grant (" + p.label + ") lets you register only " +
                                                 names + ", not " + p.node + "; run your node under one of those "
                                                 "names (kith node --name), or ask the relay's owner"};
        }
        auto it = regs.find(p.node);
        auto o = owners.find(p.node);
        if (o != owners.end() && o->second.key_z85 != key)
            return error{errc::unauthorized, "register: " + p.node +
                                                 " was registered at this relay by another key; choose another node name"};
        if (it == regs.end() && regs.size() >= o_.max_registrations)
            return error{errc::overloaded, "register: this relay holds its maximum of " +
                                               std::to_string(o_.max_registrations) + " registrations; try later"};
        if (o == owners.end()) {
            // Names per key: a key may not bind names without bound.
            const std::size_t cap = std::max(o_.max_names_per_key, lim ? lim->names.size() : 0);
            std::string held;
            std::size_t n_held = 0;
            for (auto& [name, b] : owners)
                if (b.key_z85 == key) {
                    ++n_held;
                    if (n_held <= 8) held += (held.empty() ? "" : ", ") + name;
                }
            if (n_held >= cap)
                return error{errc::unauthorized,
                             "register: your key already holds " + std::to_string(n_held) +
                                 " node names at this relay (" + held + (n_held > 8 ? ", ..." : "") +
                                 "), the most one key may bind here; run your node under one of those names (kith "
                                 "node --name), or ask the relay's owner for a relay grant that lists the names you "
                                 "need (kith grant create ... --relay-names)"};
            if (owners.size() >= o_.max_registrations) {
                // Full: release the binding unused longest, if no node holds
                // it now and it is older than name_lifetime; never a recent one.
                auto oldest = owners.end();
                for (auto i = owners.begin(); i != owners.end(); ++i)
                    if (!regs.count(i->first) && (oldest == owners.end() || i->second.seen < oldest->second.seen))
                        oldest = i;
                const auto lifetime = std::chrono::duration_cast<std::chrono::seconds>(o_.name_lifetime).count();
                if (oldest == owners.end() || now_s - oldest->second.seen < lifetime)
                    return error{errc::overloaded, "register: this relay keeps its maximum of " +
                                                       std::to_string(o_.max_registrations) +
                                                       " name bindings, all in recent use; try later, or ask its "
                                                       "owner to raise --max-registrations"};
                owners.erase(oldest);
            }
            owners.emplace(p.node, relay_names::binding{key, now_s});
            bound_now = true;
            version = ++names_version_;
        } else if (now_s - o->second.seen > 86400) {  // last seen, to the day
            o->second.seen = now_s;
            version = ++names_version_;
        }
        auto& r = regs[p.node];
        r.key_z85 = key;
        r.how = p.what == principal::kind::grant ? "grant" : p.what == principal::kind::stranger ? "stranger" : "member";
        r.agent = agent;
        r.listed = listed;
        r.services = std::move(services);
        r.max_sessions = lim && lim->max_sessions ? lim->max_sessions : o_.max_sessions_per_node;
        r.grant = p.what == principal::kind::grant ? p.label : std::string();
        r.account = r.grant.empty() ? "key " + key : "grant " + r.grant;
        c.registrations = regs.size();
    }
    // The binding is on disk before the registration is answered: a relay
    // that restarts keeps it.
    if (version != 0)
        if (auto saved = save_names(version); !saved.ok()) {
            if (bound_now) {
                std::lock_guard lk(mu);
                if (auto o = owners.find(p.node); o != owners.end() && o->second.key_z85 == key) owners.erase(o);
                if (auto r = regs.find(p.node); r != regs.end() && r->second.agent == agent) regs.erase(r);
                c.registrations = regs.size();
            }
            return error{errc::overloaded, "register: this relay cannot save its name bindings (" +
                                               saved.err().detail + "); try later (its owner must fix this)"};
        }
    return term(endpoint_);
}

result<void> relay::impl::save_names(std::uint64_t version) {
    std::lock_guard sl(save_mu_);
    if (saved_version_ >= version) return {};
    relay_names::table snapshot;
    std::uint64_t v = 0;
    {
        std::lock_guard lk(mu);
        snapshot = owners;
        v = names_version_;
    }
    auto r = relay_names::save(names_file_, snapshot);
    if (r.ok()) saved_version_ = v;
    return r;
}

result<term> relay::impl::do_unregister() {
    auto who = caller();
    if (!who.ok()) return who.err();
    const principal& p = **who;
    {
        std::lock_guard lk(mu);
        auto it = regs.find(p.node);
        if (it == regs.end() || it->second.key_z85 != p.key.z85()) return term(true);  // not the caller's
        const pid agent = it->second.agent;
        regs.erase(it);
        c.registrations = regs.size();
        // The port pairs to it close (the data plane: closing_pairs): its
        // node stops dialling Pa, and each dialler that gave an agent is
        // told "gone" (its client asks again and learns it is not here).
        for (auto t = token_ports.begin(); t != token_ports.end();) {
            const port_session& ps = t->second;
            if (ps.target != p.node) {
                ++t;
                continue;
            }
            if (!agent.is_null()) port_notices.emplace_back(agent, arr("relay_port_closed", ps.session, ps.pa));
            if (!ps.dialler_agent.is_null())
                port_notices.emplace_back(ps.dialler_agent, arr("relay_port_closed", ps.session, ps.pd, "gone"));
            closing_pairs.push_back(ps.session);
            t = token_ports.erase(t);
        }
    }
    wake();
    return term(true);
}

result<term> relay::impl::do_dial(const std::string& name) {
    auto who = caller();
    if (!who.ok()) return who.err();
    const principal& p = **who;
    std::lock_guard lk(mu);
    auto r = regs.find(name);
    if (r == regs.end()) return error{errc::noproc, "dial: no node named " + name + " is registered at this relay"};
    auto now = clock::now();
    std::size_t held = 0;
    for (auto it = tokens.begin(); it != tokens.end();) {
        if (it->second.expires < now && !it->second.in_use) {
            it = tokens.erase(it);
            continue;
        }
        held += it->second.dialler == p.node;
        ++it;
    }
    // The same dialler (name and key) redialling the same target: its token again.
    for (auto& [hex, t] : tokens)
        if (t.dialler == p.node && t.dialler_key == p.key.z85() && t.target == name && t.expires >= now) {
            t.expires = now + o_.token_lifetime;
            return arr(hex, endpoint_, shown_key(r->second));
        }
    if (held >= o_.max_tokens_per_dialler)
        return error{errc::overloaded, "dial: you hold " + std::to_string(held) +
                                           " live dial tokens at this relay (the maximum); reuse one"};
    std::string tok = relay_random_hex();
    tokens[tok] = dial_token{p.node, p.key.z85(), name, now + o_.token_lifetime, false,
                             p.what == principal::kind::grant ? p.label : std::string()};
    return arr(tok, endpoint_, shown_key(r->second));
}

result<term> relay::impl::do_directory() {
    if (auto who = caller(); !who.ok()) return who.err();
    std::lock_guard lk(mu);
    term_array out;
    std::size_t bytes = 0;
    for (auto& [name, r] : regs) {
        if (!r.listed) continue;
        const std::string shown = shown_key(r);
        auto key = public_key::from_z85(shown);
        term_array svcs;
        std::size_t row = name.size() + 100;
        for (auto& s : r.services) {
            svcs.push_back(term(s));
            row += s.size() + 2;
        }
        // Bounded: the first nodes by name that fit (docs/relay.md).
        if (bytes + row > kDirectoryBytes) break;
        bytes += row;
        out.push_back(arr(name, shown, key ? key->fingerprint() : std::string(), term(std::move(svcs)), r.how));
    }
    return term(std::move(out));
}

namespace {

// Runs `f(impl&)` while the relay lives; "shutdown" after.
template <class F>
result<term> with_relay(const std::shared_ptr<relay::impl::guard>& g, F&& f) {
    std::shared_lock lk(g->mu);
    if (!g->live) return error{errc::shutdown, "this relay has stopped; its node no longer relays"};
    return f(*g->live);
}

}  // namespace

void relay::impl::add_service() {
    for (auto& existing : n_.services())
        if (existing == "relay") throw setup_error("relay: the node already hosts a service named relay");
    auto g = guard_;
    service s("relay");
    s.function("register", [g](pid agent, bool listed) {
         return with_relay(g, [&](impl& r) { return r.do_register(agent, listed); });
     })
        .function("unregister", [g]() { return with_relay(g, [](impl& r) { return r.do_unregister(); }); })
        .function("dial", [g](std::string name) { return with_relay(g, [&](impl& r) { return r.do_dial(name); }); })
        .function("dial_port",
                  [g](std::string name) { return with_relay(g, [&](impl& r) { return r.do_dial_port(name); }); })
        .function("dial_port_agent",
                  [g](std::string name, pid agent) {
                      return with_relay(g, [&](impl& r) { return r.do_dial_port(name, agent); });
                  })
        .function("directory", [g]() { return with_relay(g, [](impl& r) { return r.do_directory(); }); });
    n_.add_service(std::move(s));
}

relay::relay(node& n, relay_options o) : p_(std::make_unique<impl>(n, std::move(o))) {}
relay::~relay() = default;

std::string relay::endpoint() const { return p_->endpoint_; }

result<void> relay::set_grant_limits(const std::string& label, const relay_grant_limits& limits) {
    return set_relay_grant_limits(p_->n_.key_dir(), label, limits);
}

std::string relay::forwarding() const {
    return p_->kf_ ? "kernel (BPF sockmap)" : "user space: " + p_->kf_why_;
}

relay_counters relay::counters() const {
    std::unique_lock lk(p_->mu);
    if (p_->c.kernel_sessions > 0) {  // their bytes as of now, not as of the last tick
        auto want = ++p_->counts_asked_;
        p_->wake();
        p_->counts_cv_.wait_for(lk, std::chrono::milliseconds(200), [&] { return p_->counts_done_ >= want; });
    }
    return p_->c;
}

}  // namespace kith
