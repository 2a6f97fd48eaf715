// relay_client_impl.cpp — relay_client::impl (relay_client_impl.hpp): what
// the node side of a relay does on its agent, its forwarders and its
// repair threads. Every byte the relay sends before a splice is parsed
// here with bounds and deadlines; after it, bytes go through untouched to
// libzmq, whose CURVE is end to end.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

#include "kith/service.hpp"
#include "relay_client_impl.hpp"
#include "relay_dial.hpp"

namespace kith {

namespace {

using clock = std::chrono::steady_clock;
using detail::relay_connect;
using detail::tcp_connect;

// Connection setups (a relay session being opened) at once per relay client.
constexpr int kMaxSetups = 64;
// How long at most a forwarder holds a node's connection while the relay
// cannot take its session (forward): the node closes it first, at its
// handshake interval (its heartbeat timeout), whatever that is set to.
constexpr std::chrono::minutes kHoldFor{5};

}  // namespace

void relay_client::impl::on_open(const std::string& session, const std::string& relay_ep) {
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

void relay_client::impl::start_agent() {
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

result<std::pair<std::string, std::string>> relay_client::impl::dial(const std::string& target, std::chrono::milliseconds timeout) {
    auto d = n.call(relay_node, "relay", "dial", arr(target), timeout);
    if (!d.ok()) return d.err();
    if (d->size() != 3 || !d->at(0)->is_string() || !d->at(1)->is_string() ||
        d->at(0)->as_string()->size() != 32)
        return error{errc::decode, "relay: " + relay_node + " answered dial with something else than "
                                   "[Token, Endpoint, Key]; is it a kith relay?"};
    return std::make_pair(*d->at(0)->as_string(), data_endpoint(*d->at(1)->as_string()));
}

std::string relay_client::impl::data_endpoint(const std::string& ep) {
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

namespace {
// Waits up to `d` for the node to close its side of `c`, in slices so that
// `stop` is seen; false when it closed (or `stop`).
bool still_open(int c, std::chrono::milliseconds d, const std::atomic<bool>& stop) {
    const auto until = clock::now() + d;
    while (!stop.load()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now());
        if (left.count() <= 0) return true;
        pollfd p{c, POLLRDHUP, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 100)));
        if (r < 0 && errno != EINTR) return false;
        if (r > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) return false;
    }
    return false;
}
}  // namespace

void relay_client::impl::forward(int c, const std::string& target) {
    // Until the relay takes the session, the node's connection is held, not
    // closed: libzmq reports a connection closed early in its handshake as
    // a silent handshake failure, and a few of those in a row end the link
    // (the transport takes them for a wrong server key). A relay that is
    // restarting, or whose target has not registered again yet, is asked
    // again here, backing off from 100 ms to 1 s, for as long as the node
    // keeps the connection (its handshake interval; at most kHoldFor);
    // then it is closed and libzmq dials again. A session the relay spliced
    // and the target then closed (a wrong key, say) still ends at once.
    const auto give_up_at = clock::now() + kHoldFor;
    std::chrono::milliseconds backoff{100};
    for (;;) {
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
            // The relay does not know the token (it restarted, or the token
            // expired): a fresh one, used at once.
            if (auto d = dial(target, std::chrono::seconds(3)); d.ok()) {
                {
                    std::lock_guard lk(mu);
                    auto& f = forwarders[target];
                    f.token = d->first;
                    f.relay_ep = d->second;
                }
                refusal = -1;
                r = relay_connect(d->second, "d-" + d->first + ".kith", clock::now() + std::chrono::seconds(10),
                                  &refusal);
            }
        }
        {
            std::lock_guard lk(mu);
            forwarders[target].refusal = r < 0 ? refusal : -1;
        }
        if (r >= 0) {
            loop.add(c, r);
            return;
        }
        if (stop.load() || clock::now() + backoff > give_up_at || !still_open(c, backoff, stop)) break;
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    }
    ::close(c);  // libzmq sees a closed TCP connection and dials again later
}

result<std::string> relay_client::impl::route(const std::string& target, std::chrono::milliseconds timeout) {
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
            if (setups >= kMaxSetups) {
                ::close(c);
                return;
            }
            ++setups;
        }
        spawn_thread(
            [this, c, target] {
                forward(c, target);
                std::lock_guard lk(mu);
                --setups;
            },
            c);
    });
    if (!ok) return error{errc::shutdown, "relay: the relay client is stopping"};
    return ep;
}

void relay_client::impl::drop_listeners() {
    std::set<std::string> l;
    {
        std::lock_guard lk(mu);
        l.swap(listeners);
    }
    for (auto& ep : l) n.disconnect_listener(ep);
}

std::optional<result<std::string>> relay_client::impl::port_for(const std::string& target, std::chrono::milliseconds timeout) {
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

void relay_client::impl::forget_port(const std::string& target, const std::string& pd) {
    n.disconnect(pd);
    std::lock_guard lk(mu);
    if (auto it = port_links.find(target); it != port_links.end() && it->second.pd == pd) port_links.erase(it);
}

void relay_client::impl::move_port_links() {
    std::vector<std::string> targets;
    {
        std::lock_guard lk(mu);
        for (auto& [t, l] : port_links) targets.push_back(t);
    }
    for (auto& t : targets) want_repair(t, "restart");
}

void relay_client::impl::on_pd_closed(const std::string& pd, const std::string& why) {
    std::string target;
    {
        std::lock_guard lk(mu);
        for (auto& [t, l] : port_links)
            if (l.pd == pd) target = t;
    }
    if (!target.empty()) want_repair(target, why);  // else: a link we no longer dial there
}

void relay_client::impl::want_repair(const std::string& target, const std::string& why) {
    {
        std::lock_guard lk(mu);
        if (stop.load()) return;
        repair_pending[target] = why;
        if (!repairing.insert(target).second) return;  // its thread looks again when done
    }
    spawn_thread([this, target] { repair(target); });
}

std::optional<std::uint64_t> relay_client::impl::relay_link_changed(bool up) {
    std::uint64_t gen;
    {
        std::lock_guard lk(mu);
        // A late event of the state we know: the first link's nodeup, which
        // may be reported after this client looked (and registered).
        if (up == link_up) return std::nullopt;
        link_up = up;
        if (registered) registration_error = not_registered_yet(up);
        gen = ++link_gen;
    }
    cv.notify_all();  // a register_again of the last generation stops
    return gen;
}

error relay_client::impl::not_registered_yet(bool up) const {
    return error{errc::nodedown,
                 up ? "registering again at " + relay_node + ", whose node came back"
                    : "the link to " + relay_node +
                          " is down, and with it this node's registration there; it registers again when the "
                          "link comes back (the node redials by itself)"};
}

void relay_client::impl::register_again(std::uint64_t gen) {
    std::chrono::milliseconds backoff{50};
    for (;;) {
        {
            std::lock_guard lk(mu);
            if (!registered || gen != link_gen || stop.load()) return;
            ++registering;  // the destructor unregisters only after this answer
        }
        auto r = register_now();
        {
            std::lock_guard lk(mu);
            --registering;
            cv.notify_all();
            if (gen != link_gen || !registered) return;  // the link changed meanwhile: its own thread registers
            if (r.ok()) {
                registration_error.reset();
                return;
            }
            registration_error = error{r.err().code, relay_node + " did not register this node again (" +
                                                         std::string(to_string(r.err().code)) + ": " +
                                                         r.err().detail +
                                                         "); it asks again, backing off to every 5 s, while the "
                                                         "link to that node is up"};
        }
        if (!pause(backoff, gen)) return;
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
}

bool relay_client::impl::pause(std::chrono::milliseconds d, std::optional<std::uint64_t> gen) {
    std::unique_lock lk(mu);
    return !cv.wait_for(lk, d, [&] { return stop.load() || (gen && *gen != link_gen); });
}

void relay_client::impl::link_to(const port_link& l, const std::string& ep) {
    if (l.grant) {
        grant_file via = *l.grant;
        via.endpoints = {ep};
        via.relays.clear();
        (void)n.connect(via, std::chrono::seconds(5));
    } else {
        (void)n.connect(ep, l.key, std::chrono::seconds(5));
    }
}

void relay_client::impl::repair(const std::string& target) {
    auto backoff = std::chrono::milliseconds(250);
    auto up_since = clock::time_point{};
    auto asking_since = clock::time_point{};  // the first "not now" since the last move
    std::string last;                          // what the relay answered then
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
        // The destructor waits for this thread a bounded time: each blocking
        // step ends by its deadline, and none starts once it began.
        if (stop.load()) continue;
        if (port && !port->ok()) last = port->err().message();
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
            auto ep = route(target, std::chrono::seconds(3));
            if (stop.load()) continue;
            if (!ep.ok()) last = ep.err().message();
            if (ep.ok()) {
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
            up_since = asking_since = {};
            backoff = std::chrono::milliseconds(250);
            std::lock_guard lk(mu);
            if (auto pe = repair_pending.find(target); pe != repair_pending.end() && pe->second == why)
                repair_pending.erase(pe);  // else a newer notice: look again
            continue;
        }
        // Not now (not registered again yet, no link to the relay, a
        // limit): again later, within repair_timeout.
        if (asking_since == clock::time_point{}) asking_since = clock::now();
        const auto asked = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - asking_since);
        if (asked >= opts.repair_timeout) {
            give_up(target, l.pd, last);
            continue;  // its entries are gone: the loop ends
        }
        pause(std::min(backoff, opts.repair_timeout - asked));  // the last look at repair_timeout, not past it
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
}

void relay_client::impl::give_up(const std::string& target, const std::string& pd, const std::string& last) {
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(opts.repair_timeout).count();
    error e{errc::timeout, "relay: gave up moving the link to " + target + " through " + relay_node + " after " +
                               std::to_string(secs) + " s (repair_timeout): " +
                               (last.empty() ? std::string("the relay gave no session") : last) +
                               "; connect again when it is back"};
    {
        std::lock_guard lk(mu);
        repair_pending.erase(target);
        auto it = port_links.find(target);
        if (it == port_links.end() || it->second.pd != pd) return;  // left or connected anew meanwhile
        port_links.erase(it);
        given_up.insert_or_assign(target, std::move(e));
    }
    n.disconnect(pd);  // the closed port: no more dialling it
}

}  // namespace kith
