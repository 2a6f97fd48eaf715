// relay_client.cpp — the node side of a relay (kith/relay.hpp): register and
// answer "relay_open" by splicing the relay to this node's own listening
// endpoint; dial a registered node through a loopback forwarder that the
// node's own connect() dials. Every byte the relay sends before a splice is
// parsed here with bounds and deadlines; after it, bytes go through
// untouched to libzmq, whose CURVE is end to end.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "kith/relay.hpp"
#include "kith/service.hpp"
#include "relay_dial.hpp"
#include "relay_loop.hpp"

namespace kith {

namespace {

using clock = std::chrono::steady_clock;
using detail::relay_connect;
using detail::tcp_connect;

// Connection setups (a relay session being opened) at once per relay client.
constexpr int kMaxSetups = 64;

}  // namespace

struct relay_client::impl : std::enable_shared_from_this<relay_client::impl> {
    node& n;
    std::string relay_node;
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::condition_variable cv;
    int threads = 0;      // connection-setup and registration threads still running
    // Every spliced pair and forwarder listener: one epoll thread.
    detail::splice_loop loop;
    pid agent;
    struct forwarder {
        int listen_fd = -1;
        std::string endpoint;  // tcp://127.0.0.1:PORT
        std::string token, relay_ep;  // the current dial token and data plane (renewed by redial)
        int refusal = -1;  // the relay's SOCKS refusal of the last session asked for (-1: none)
    };
    std::uint64_t sub = 0;  // subscribe_nodes id (registrants: re-register when the relay is back)
    bool listed = false;
    std::map<std::string, forwarder> forwarders;  // by target name
    // Session ports our listener connects out to (registered side).
    std::set<std::string> listeners;
    // Links we dialled through a session port, by target: moved to the new
    // relay's ports when the relay comes back (its ports are gone).
    struct port_link {
        std::string pd;  // tcp://HOST:Pd
        public_key key;
        std::optional<grant_file> grant;
    };
    std::map<std::string, port_link> port_links;
    // Port links being moved (repair): the reason the relay gave last, still
    // to act on ("" when none), by target; a target is in `repairing` while
    // its thread runs.
    std::map<std::string, std::string> repair_pending;
    std::set<std::string> repairing;
    bool registered = false;

    impl(node& n_, std::string r) : n(n_), relay_node(std::move(r)) {}

    // Runs `f` on its own thread, counted so that the destructor waits for it.
    // Nothing is started once the destructor began (stop): a node-event
    // callback may still run after unsubscribe_nodes returned.
    // `owned`: an fd the thread would close, closed here when it does not start.
    template <class F>
    void spawn_thread(F f, int owned = -1) {
        std::lock_guard lk(mu);
        if (stop.load()) {
            if (owned >= 0) ::close(owned);
            return;
        }
        ++threads;
        std::thread([self = shared_from_this(), f = std::move(f)]() mutable {
            f();
            std::lock_guard lk2(self->mu);
            --self->threads;
            self->cv.notify_all();
        }).detach();
    }

    // "relay_open" from the relay: connect back and splice to our own endpoint.
    void on_open(const std::string& session, const std::string& relay_ep) {
        spawn_thread([this, session, relay_ep] {
            auto deadline = clock::now() + std::chrono::seconds(5);
            int r = relay_connect(relay_ep, "a-" + session + ".kith", deadline);
            if (r < 0) return;
            // The node's own listener as this machine reaches it: its bound
            // endpoint, not the one it advertises (a port forward's outside
            // port, or an address this machine cannot dial itself).
            int l = tcp_connect(n.bound_endpoint(), deadline);
            if (l < 0) {
                ::close(r);
                return;
            }
            loop.add(r, l);
        });
    }

    void start_agent() {
        std::weak_ptr<impl> w = shared_from_this();
        agent = n.spawn([w](actor&, message& m) {
            auto self = w.lock();
            if (!self || m.body.size() < 3 || m.body.size() > 4) return;
            const term* tag = m.body.at(0);
            const term* s = m.body.at(1);
            const term* ep = m.body.at(2);
            // Only the relay's own node reaches this pid (it was handed to it),
            // but check the shape anyway: bounded strings, hex session.
            if (!tag->is_string() || !s->is_string() || !ep->is_string() || s->as_string()->size() != 32 ||
                ep->as_string()->size() > 300)
                return;
            if (m.body.size() == 4) {
                // As a dialler: ["relay_port_closed", Session, "HOST:Pd", Reason].
                const term* why = m.body.at(3);
                if (*tag->as_string() == "relay_port_closed" && why->is_string() && why->as_string()->size() <= 16)
                    self->on_pd_closed("tcp://" + self->data_endpoint(*ep->as_string()), *why->as_string());
                return;
            }
            if (*tag->as_string() == "relay_port") {
                // Our listener connects out to the session's port at the relay.
                std::string to = "tcp://" + self->data_endpoint(*ep->as_string());
                bool again = false;
                {
                    std::lock_guard lk(self->mu);
                    if (self->stop.load()) return;
                    again = self->listeners.count(to) > 0;
                    if (!again && self->listeners.size() >= 256) return;
                    self->listeners.insert(to);
                }
                // Asked again: the relay saw no connection of ours there
                // (libzmq gives up on a connection after a protocol error).
                if (again) self->n.disconnect_listener(to);
                self->n.connect_listener(to);
                return;
            }
            if (*tag->as_string() == "relay_port_closed") {
                // The relay closed that pair (unused, or we never reached
                // Pa: a firewall): our listener stops dialling it.
                std::string to = "tcp://" + self->data_endpoint(*ep->as_string());
                {
                    std::lock_guard lk(self->mu);
                    if (self->listeners.erase(to) == 0) return;
                }
                self->n.disconnect_listener(to);
                return;
            }
            if (*tag->as_string() != "relay_open") return;
            self->on_open(*s->as_string(), self->data_endpoint(*ep->as_string()));
        });
    }

    // Asks the relay for a dial token for `target`: {token, data-plane endpoint}.
    result<std::pair<std::string, std::string>> dial(const std::string& target, std::chrono::milliseconds timeout) {
        auto d = n.call(relay_node, "relay", "dial", arr(target), timeout);
        if (!d.ok()) return d.err();
        if (d->size() != 3 || !d->at(0)->is_string() || !d->at(1)->is_string() ||
            d->at(0)->as_string()->size() != 32)
            return error{errc::decode, "relay: " + relay_node + " answered dial with something else than "
                                       "[Token, Endpoint, Key]; is it a kith relay?"};
        return std::make_pair(*d->at(0)->as_string(), data_endpoint(*d->at(1)->as_string()));
    }

    // The relay's data-plane endpoint as this node can dial it: a relay
    // bound to 0.0.0.0 without an advertised address is reached at the host
    // of its control link (the address this node dialled).
    std::string data_endpoint(const std::string& ep) {
        auto c = ep.rfind(':');
        if (c == std::string::npos) return ep;
        std::string host = ep.substr(0, c);
        if (host != "0.0.0.0" && host != "*") return ep;
        auto i = n.info(relay_node);
        if (!i) return ep;
        std::string link = i->endpoint;
        if (link.rfind("tcp://", 0) == 0) link = link.substr(6);
        auto lc = link.rfind(':');
        std::string lhost = lc == std::string::npos ? link : link.substr(0, lc);
        return lhost.empty() ? ep : lhost + ep.substr(c);
    }

    // One connection of the node to the forwarder for `target`: a relay
    // session, spliced. A token the relay no longer knows (it restarted, or
    // the token expired) is renewed once with a fresh dial; any other
    // failure closes the connection, and libzmq dials again later.
    void forward(int c, const std::string& target) {
        std::string tok, ep;
        {
            std::lock_guard lk(mu);
            auto& f = forwarders[target];
            tok = f.token;
            ep = f.relay_ep;
        }
        int refusal = -1;
        int r = relay_connect(ep, "d-" + tok + ".kith", clock::now() + std::chrono::seconds(10), &refusal);
        if (r < 0 && refusal == 0x02 && !stop.load()) {
            if (auto d = dial(target, std::chrono::seconds(3)); d.ok()) {
                {
                    std::lock_guard lk(mu);
                    auto& f = forwarders[target];
                    f.token = d->first;
                    f.relay_ep = d->second;
                }
                r = relay_connect(d->second, "d-" + d->first + ".kith", clock::now() + std::chrono::seconds(10));
            }
        }
        {
            std::lock_guard lk(mu);
            forwarders[target].refusal = r < 0 ? refusal : -1;
        }
        if (r < 0) {
            ::close(c);  // libzmq sees a closed TCP connection and dials again later
            return;
        }
        loop.add(c, r);
    }

    // The loopback endpoint whose connections become relay sessions to
    // `target`; opened (with a dial token) on first use.
    result<std::string> route(const std::string& target, std::chrono::milliseconds timeout) {
        {
            std::lock_guard lk(mu);
            if (auto it = forwarders.find(target); it != forwarders.end()) return it->second.endpoint;
        }
        auto d = dial(target, timeout);
        if (!d.ok()) return d.err();
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof sa;
        if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 16) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &sl) != 0) {
            if (fd >= 0) ::close(fd);
            return error{errc::overloaded, std::string("relay: cannot open a loopback forwarder: ") + std::strerror(errno)};
        }
        std::string ep = "tcp://127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
        {
            std::lock_guard lk(mu);
            if (auto it = forwarders.find(target); it != forwarders.end()) {  // another thread was first
                ::close(fd);
                return it->second.endpoint;
            }
            forwarders[target] = forwarder{fd, ep, d->first, d->second};
        }
        // Each connection of the node to the forwarder becomes a relay
        // session, set up on its own short-lived thread (it blocks on the
        // relay, with deadlines); at most kMaxSetups at once: beyond that a
        // connection is closed and libzmq dials again later.
        bool ok = loop.listen(fd, [this, target](int c) {
            {
                std::lock_guard lk(mu);
                if (threads >= kMaxSetups) {
                    ::close(c);
                    return;
                }
            }
            spawn_thread([this, c, target] { forward(c, target); }, c);
        });
        if (!ok) return error{errc::shutdown, "relay: the relay client is stopping"};
        return ep;
    }

    // Drops every session port our listener dials (the relay went down: its
    // ports are gone; a dialler gets new ones when it dials again).
    void drop_listeners() {
        std::set<std::string> l;
        {
            std::lock_guard lk(mu);
            l.swap(listeners);
        }
        for (auto& ep : l) n.disconnect_listener(ep);
    }

    // A session port for `target`: "tcp://HOST:Pd", or the error to report;
    // nullopt: the relay has no session ports (use a forwarder).
    std::optional<result<std::string>> port_for(const std::string& target, std::chrono::milliseconds timeout) {
        // With our agent: the relay tells it when the pair closes (repair).
        auto d = n.call(relay_node, "relay", "dial_port_agent", arr(target, agent), timeout);
        if (!d.ok() && d.err().code == errc::no_such_function)  // an older relay: no notice
            d = n.call(relay_node, "relay", "dial_port", arr(target), timeout);
        if (!d.ok()) {
            auto c = d.err().code;
            // A relay without session ports (older: no such function; or
            // none free now): the forwarders.
            if (c == errc::no_such_function || c == errc::bad_args || c == errc::decode) return std::nullopt;
            return result<std::string>(d.err());
        }
        if (d->size() != 3 || !d->at(1)->is_string()) return std::nullopt;
        return result<std::string>("tcp://" + data_endpoint(*d->at(1)->as_string()));
    }

    // A session port that did not answer: no more dialling it.
    void forget_port(const std::string& target, const std::string& pd) {
        n.disconnect(pd);
        std::lock_guard lk(mu);
        if (auto it = port_links.find(target); it != port_links.end() && it->second.pd == pd) port_links.erase(it);
    }

    // The relay is back: each port link's pair is gone with it; move the
    // links to new ones (repair).
    void move_port_links() {
        std::vector<std::string> targets;
        {
            std::lock_guard lk(mu);
            for (auto& [t, l] : port_links) targets.push_back(t);
        }
        for (auto& t : targets) want_repair(t, "restart");
    }

    // The relay closed the pair of our link at `pd` (relay_port_closed):
    // "idle" (we were away from Pd for session_port_idle), "unreached" (the
    // node never reached Pa: a firewall) or "gone" (the node left the relay).
    void on_pd_closed(const std::string& pd, const std::string& why) {
        std::string target;
        {
            std::lock_guard lk(mu);
            for (auto& [t, l] : port_links)
                if (l.pd == pd) target = t;
        }
        if (!target.empty()) want_repair(target, why);  // else: a link we no longer dial there
    }

    void want_repair(const std::string& target, const std::string& why) {
        {
            std::lock_guard lk(mu);
            if (stop.load()) return;
            repair_pending[target] = why;
            if (!repairing.insert(target).second) return;  // its thread looks again when done
        }
        spawn_thread([this, target] { repair(target); });
    }

    // Sleeps `d` unless the client stops; false when it stops.
    bool pause(std::chrono::milliseconds d) {
        std::unique_lock lk(mu);
        return !cv.wait_for(lk, d, [&] { return stop.load(); });
    }

    // Connects the node to `target` at `ep` as the port link was made (its
    // grant, else its key); blocking, the result is not needed: libzmq keeps
    // dialling, and the relay tells us if this pair closes too.
    void link_to(const port_link& l, const std::string& ep) {
        if (l.grant) {
            grant_file via = *l.grant;
            via.endpoints = {ep};
            via.relays.clear();
            (void)n.connect(via, std::chrono::seconds(5));
        } else {
            (void)n.connect(ep, l.key, std::chrono::seconds(5));
        }
    }

    // Moves the link to `target` off a pair the relay closed, to a new pair
    // or (the node never reached its port: a firewall; or no ports for us)
    // to a forwarder, without the application doing anything: the new link
    // is made before the dead one is dropped, and a link that is up is never
    // dropped (no nodedown that the link itself did not cause). While the
    // relay cannot give a pair (the node has not registered again, the link
    // to the relay is down, a limit) it asks again, backing off to 5 s,
    // while this client lives.
    void repair(const std::string& target) {
        auto backoff = std::chrono::milliseconds(250);
        auto up_since = clock::time_point{};
        for (;;) {
            std::string why;
            port_link l;
            {
                std::lock_guard lk(mu);
                auto pl = port_links.find(target);
                auto pe = repair_pending.find(target);
                if (stop.load() || pl == port_links.end() || pe == repair_pending.end()) {
                    repair_pending.erase(target);
                    repairing.erase(target);
                    return;
                }
                why = pe->second;
                l = pl->second;
            }
            // The link is up through that port (a notice about a pair that
            // is not ours, or the node's goodbye not seen yet): it is not
            // touched; given up once it stayed up 10 s.
            if (auto i = n.info(target); i && i->endpoint == l.pd) {
                if (up_since == clock::time_point{}) up_since = clock::now();
                if (clock::now() - up_since > std::chrono::seconds(10)) {
                    std::lock_guard lk(mu);
                    repair_pending.erase(target);
                    continue;
                }
                pause(std::chrono::milliseconds(250));
                continue;
            }
            std::optional<result<std::string>> port;
            if (why != "unreached") port = port_for(target, std::chrono::seconds(3));
            bool done = false;
            if (port && port->ok()) {
                bool still = false;  // not left (disconnect) or moved meanwhile
                if (**port != l.pd) {
                    std::lock_guard lk(mu);
                    if (auto pl = port_links.find(target); pl != port_links.end() && pl->second.pd == l.pd) {
                        pl->second.pd = **port;
                        still = true;
                    }
                }
                if (still) {
                    link_to(l, **port);
                    n.disconnect(l.pd);
                }
                done = true;  // the same port: its pair is still open
            } else if (port && port->err().code == errc::unauthorized) {
                forget_port(target, l.pd);  // not ours to dial any more
                done = true;
            } else if (!port) {
                // The forwarders: the node cannot reach a session port, or
                // the relay has none for us.
                if (auto ep = route(target, std::chrono::seconds(3)); ep.ok()) {
                    bool still = false;
                    {
                        std::lock_guard lk(mu);
                        if (auto pl = port_links.find(target); pl != port_links.end() && pl->second.pd == l.pd) {
                            port_links.erase(pl);
                            still = true;
                        }
                    }
                    if (still) {
                        link_to(l, *ep);
                        n.disconnect(l.pd);
                    }
                    done = true;
                }
            }
            if (done) {
                up_since = {};
                backoff = std::chrono::milliseconds(250);
                std::lock_guard lk(mu);
                if (auto pe = repair_pending.find(target); pe != repair_pending.end() && pe->second == why)
                    repair_pending.erase(pe);  // else a newer notice: look again
                continue;
            }
            // Not now (not registered again yet, no link to the relay, a
            // limit): again later.
            pause(backoff);
            backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
        }
    }

    // Registers (again: the relay forgets registrations when it restarts or
    // the link to it drops). Blocking.
    result<term> register_now() { return n.call(relay_node, "relay", "register", arr(agent, listed)); }
};

relay_client::relay_client(node& n, std::string relay_node, std::nullptr_t)
    : p_(std::make_shared<impl>(n, std::move(relay_node))) {
    // Our agent: told when a session port pair of ours closes (repair), and
    // when registered, of sessions to open.
    p_->start_agent();
    // When the link to the relay comes back (the relay restarted, or the
    // network came back): register again (the relay has forgotten us) and
    // move links dialled through session ports to new ones. When it goes
    // down: stop our listener dialling its session ports.
    std::weak_ptr<impl> w = p_;
    p_->sub = n.subscribe_nodes([w](const node_event& ev) {
        auto self = w.lock();
        if (!self || ev.node != self->relay_node) return;
        if (ev.what == node_event::kind::down) self->drop_listeners();
        if (ev.what != node_event::kind::up || self->stop.load()) return;
        // Not on the kith thread that reports the event: these block.
        self->spawn_thread([self] {
            bool reg = false;
            {
                std::lock_guard lk(self->mu);
                reg = self->registered;
            }
            if (reg) (void)self->register_now();
            self->move_port_links();
        });
    });
}

relay_client::relay_client(node& n, std::string relay_node, bool listed)
    : relay_client(n, std::move(relay_node), nullptr) {
    p_->listed = listed;
    auto r = p_->register_now();
    if (!r.ok()) {
        n.send_exit(p_->agent, term("kill"));
        throw relay_refused("relay: " + p_->relay_node + " refused the registration: " + r.err().detail, r.err());
    }
    std::lock_guard lk(p_->mu);
    p_->registered = true;  // registered again each time the relay comes back
}

relay_client::~relay_client() {
    if (p_->sub) p_->n.unsubscribe_nodes(p_->sub);
    bool reg = false;
    {
        std::lock_guard lk(p_->mu);
        reg = p_->registered;
    }
    if (reg) (void)p_->n.call(p_->relay_node, "relay", "unregister", arr(), std::chrono::seconds(1));
    if (!p_->agent.is_null()) p_->n.send_exit(p_->agent, term("kill"));
    {
        std::lock_guard lk(p_->mu);
        p_->stop.store(true);  // no new thread from here on
    }
    p_->cv.notify_all();  // a thread waiting to move a port link gives up
    p_->drop_listeners();
    // Closes every splice and forwarder (not under mu: an accept callback takes it).
    p_->loop.stop();
    std::unique_lock lk(p_->mu);
    p_->cv.wait_for(lk, std::chrono::seconds(10), [&] { return p_->threads == 0; });
}

namespace {
// A failed connect through the relay, said as the relay said it: a session
// refused for its limits is overloaded (libzmq only saw closed connections).
result<std::string> as_relay_said(result<std::string> r, int refusal, const std::string& relay,
                                  const std::string& target) {
    if (r.ok() || refusal != 0x04) return r;
    return error{errc::overloaded, "relay: " + relay + " refused the session to " + target +
                                       ": it or you have the most relayed sessions at once that the relay allows; "
                                       "try later"};
}
}  // namespace

result<std::string> relay_client::connect(const std::string& target, const public_key& key,
                                          std::chrono::milliseconds timeout) {
    if (auto port = p_->port_for(target, timeout)) {
        if (!port->ok()) return port->err();
        {
            std::lock_guard lk(p_->mu);
            p_->port_links[target] = impl::port_link{**port, key, std::nullopt};
        }
        // Half the time: a session port the network does not let through
        // (a firewall) leaves the other half for the forwarders.
        auto r = p_->n.connect(**port, key, timeout / 2);
        if (r.ok() || r.err().code != errc::timeout) return r;
        p_->forget_port(target, **port);
        timeout -= timeout / 2;
    }
    auto ep = p_->route(target, timeout);
    if (!ep.ok()) return ep.err();
    auto r = p_->n.connect(*ep, key, timeout);
    std::lock_guard lk(p_->mu);
    return as_relay_said(std::move(r), p_->forwarders[target].refusal, p_->relay_node, target);
}

result<std::string> relay_client::connect(const grant_file& grant, std::chrono::milliseconds timeout) {
    if (auto port = p_->port_for(grant.node, timeout)) {
        if (!port->ok()) return port->err();
        grant_file direct = grant;
        direct.endpoints = {**port};
        direct.relays.clear();
        {
            std::lock_guard lk(p_->mu);
            p_->port_links[grant.node] = impl::port_link{**port, grant.server_key, grant};
        }
        auto r = p_->n.connect(direct, timeout / 2);  // as above
        if (r.ok() || r.err().code != errc::timeout) return r;
        p_->forget_port(grant.node, **port);
        timeout -= timeout / 2;
    }
    auto ep = p_->route(grant.node, timeout);
    if (!ep.ok()) return ep.err();
    grant_file via = grant;
    via.endpoints = {*ep};
    via.relays.clear();
    auto r = p_->n.connect(via, timeout);
    std::lock_guard lk(p_->mu);
    return as_relay_said(std::move(r), p_->forwarders[grant.node].refusal, p_->relay_node, grant.node);
}

void relay_client::disconnect(const std::string& target) {
    std::vector<std::string> eps;
    {
        std::lock_guard lk(p_->mu);
        if (auto pl = p_->port_links.find(target); pl != p_->port_links.end()) {
            eps.push_back(pl->second.pd);
            p_->port_links.erase(pl);
        }
        p_->repair_pending.erase(target);  // a repair running stops at its next look
        if (auto f = p_->forwarders.find(target); f != p_->forwarders.end()) eps.push_back(f->second.endpoint);
    }
    for (auto& ep : eps) p_->n.disconnect(ep);
}

result<term> relay_client::directory(std::chrono::milliseconds timeout) {
    return p_->n.call(p_->relay_node, "relay", "directory", arr(), timeout);
}

}  // namespace kith
