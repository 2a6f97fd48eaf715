// relay_ports.cpp — a port per side of a relay session (docs/relay.md,
// "relay port per session"): the dialler's own DEALER connects straight to
// the relay's port Pd and the registered node's listening ROUTER connects
// out to Pa (node::connect_listener); the data plane splices the two with
// no SOCKS preamble and no loopback forwarder on either node. CURVE, ZAP,
// the cluster proof and grants stay end to end exactly as with the
// forwarders (which remain the fallback: relay_client uses them with a
// relay that has no dial_port).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "kith/principal.hpp"
#include "relay_splice.hpp"

namespace kith {

std::pair<int, std::string> relay::impl::open_session_port() {
    sockaddr_in sa{};
    socklen_t sl = sizeof sa;
    if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &sl) != 0) return {-1, {}};
    const unsigned lo = o_.session_port_min, hi = o_.session_port_max;
    const unsigned span = lo && hi >= lo ? hi - lo + 1 : 1;
    int fd = -1;
    for (unsigned i = 0; i < span && fd < 0; ++i) {
        sa.sin_port = span > 1 || lo ? htons(static_cast<std::uint16_t>(lo + (next_port_++ % span))) : 0;
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return {-1, {}};
        int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 4) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &sl) != 0) {
            ::close(fd);
            fd = -1;
        }
    }
    if (fd < 0) return {-1, {}};
    auto c = endpoint_.rfind(':');
    return {fd, endpoint_.substr(0, c) + ":" + std::to_string(ntohs(sa.sin_port))};
}

namespace {
// The IPv4 address of `who`'s link with `n` ("tcp://IP" inbound,
// "tcp://IP:PORT" outbound), or "" when it is not an IPv4 literal.
std::string link_ip(node& n, const std::string& who) {
    auto i = n.info(who);
    if (!i) return {};
    std::string e = i->endpoint;
    if (e.rfind("tcp://", 0) == 0) e = e.substr(6);
    if (auto c = e.rfind(':'); c != std::string::npos) e.resize(c);
    in_addr a{};
    return ::inet_pton(AF_INET, e.c_str(), &a) == 1 ? e : std::string();
}
}  // namespace

result<term> relay::impl::do_dial_port(const std::string& name, const pid& agent) {
    if (!o_.session_ports)
        return error{errc::bad_args, "dial_port: this relay has no session ports; use dial (the forwarders)"};
    const principal& p = current_principal();
    // The relay messages only a pid of the caller's own node: a caller may
    // not make it send to anyone else.
    if (!agent.is_null() && agent.node != p.node)
        return error{errc::bad_args, "dial_port_agent: the agent must be a pid of the dialling node (" + p.node +
                                         "); pass one of your own node's processes"};
    auto d = do_dial(name);  // the token: the dialler's limits, bound to its key
    if (!d.ok()) return d;
    const std::string token = *d->at(0)->as_string();
    const term key = *d->at(2);
    const std::string dialler_ip = link_ip(n_, p.node), target_ip = link_ip(n_, name);
    port_session ps;
    {
        std::lock_guard lk(mu);
        if (auto it = token_ports.find(token); it != token_ports.end()) {
            if (!agent.is_null()) it->second.dialler_agent = agent;  // the token's holder: the latest agent
            return arr(token, it->second.pd, key);                   // a redial: the same port
        }
        auto r = regs.find(name);
        if (r == regs.end()) return error{errc::noproc, "dial: no node named " + name + " is registered at this relay"};
        // The limits, said now (a probe: admitted and released at once): a
        // refused port connection is only a closed TCP connection to libzmq.
        auto t = tokens.find(token);
        if (t == tokens.end()) return error{errc::noproc, "dial: the token went away; dial again"};
        const dial_token tok = t->second;
        std::string registrant;
        const bool room = admit_session_locked(tok, registrant);
        if (room) release_session_locked(tok.account(), registrant);
        if (!room) {
            ++c.refused;
            return error{errc::overloaded, "dial: " + name + " or you have the most relayed sessions at once that "
                                                              "this relay allows; try later"};
        }
        // Ports held: at most a dialler's and a registrant's session limits
        // of port pairs, counted as their sessions are (per relay grant or
        // key; each pair is two listening sockets here).
        std::size_t by_dialler = 0, to_target = 0;
        for (auto& [t, q] : token_ports) {
            by_dialler += q.dialler_account == tok.account();
            to_target += q.registrant == registrant;
        }
        // Beyond them (or with no port free): bad_args, and the client dials
        // through the forwarders instead (dial), as with a relay without ports.
        if (by_dialler >= dialler_limit_locked(tok) || to_target >= r->second.max_sessions)
            return error{errc::bad_args, "dial_port: " + name + " or you hold the most session ports this relay "
                                                                 "allows; use dial"};
        auto [dfd, dep] = open_session_port();
        auto [afd, aep] = open_session_port();
        if (dfd < 0 || afd < 0) {
            if (dfd >= 0) ::close(dfd);
            if (afd >= 0) ::close(afd);
            return error{errc::bad_args, std::string("dial_port: this relay cannot open a session port (") +
                                             std::strerror(errno) + "); use dial"};
        }
        ps = port_session{dep, aep, p.node, name, relay_random_hex(), tok.account(), registrant, agent};
        token_ports[token] = ps;
        new_ports.push_back({dfd, ps.session, true, p.node, name, ps.pa, dialler_ip, tok});
        new_ports.push_back({afd, ps.session, false, p.node, name, {}, target_ip, tok});
        port_notices.emplace_back(r->second.agent, arr("relay_port", ps.session, ps.pa));
    }
    wake();
    return arr(token, ps.pd, key);
}

// Both sides of a port session are connected: splice them, within the
// dialler's and the node's session limits.
void relay::impl::pair_ports(splice::loop& sp, splice::held& h, int newest) {
    splice::conn& D = sp.conns[h.d];
    splice::conn& A = sp.conns[h.a];
    double srate = 0;
    bool admitted = false;
    {
        std::lock_guard lk(mu);
        auto r = regs.find(D.target);
        admitted = r != regs.end() && admit_session_locked(D.tok, D.registrant);
        if (!admitted) {
            ++c.refused;
        } else {
            srate = static_cast<double>(session_rate_locked(D.tok.grant, r->second));
            ++c.sessions;
            ++c.sessions_total;
        }
    }
    if (!admitted) {
        close_conn(sp, newest);
        return;
    }
    D.dialler_side = true;  // close_conn releases the session
    D.account = D.tok.account();
    for (splice::conn* x : {&D, &A}) {
        x->s = splice::state::spliced;
        x->buf.resize(splice::kBuf);
        x->rate = srate;
        if (x->rate > 0) ++sp.rated;
        x->allowance = x->rate > 0 ? x->rate / 10 : 0;
        x->refilled = clock::now();
    }
    D.peer = A.fd;
    A.peer = D.fd;
    set_events(sp, D);
    set_events(sp, A);
    if (try_kernel(sp, D, A)) kernel_start(D, A);  // the relay writes nothing of its own here
}

// A connection to a session port: held (not read: the node's greeting
// waits in the socket) until the other side comes, then spliced. One
// connection per side at a time; a new one replaces one still waiting.
void relay::impl::accept_port(splice::loop& sp, const port_listener& L) {
    for (;;) {
        int cfd = ::accept4(L.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) break;
        if (!L.allow_ip.empty()) {
            // Only from its node's address: a stranger elsewhere cannot
            // take the session's place (one on the same address, behind
            // the same NAT, can only deny service).
            sockaddr_in from{};
            socklen_t fl = sizeof from;
            char ip[INET_ADDRSTRLEN] = "";
            if (::getpeername(cfd, reinterpret_cast<sockaddr*>(&from), &fl) != 0 ||
                !::inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip) || L.allow_ip != ip) {
                {  // counted before the close, which the peer sees
                    std::lock_guard lk(mu);
                    ++c.refused;
                }
                ::close(cfd);
                continue;
            }
        }
        splice::held& h = sp.port_conns[L.session];
        int mine = L.dialler_side ? h.d : h.a;
        auto m = sp.conns.find(mine);
        if (sp.conns.size() >= o_.max_connections || (m != sp.conns.end() && m->second.s == splice::state::spliced)) {
            {  // counted before the close, which the peer sees
                std::lock_guard lk(mu);
                ++c.refused;
            }
            ::close(cfd);
            continue;
        }
        if (m != sp.conns.end()) close_conn(sp, mine);
        int one = 1;
        ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        // A node whose path went away without a FIN (its network dropped):
        // what we forward to it goes unacknowledged and the connection
        // errors out after dead_peer_timeout, long past the nodes' own
        // heartbeat timeout (2.5 s), instead of holding its side of the pair
        // "in use" for TCP's 15 minutes of retransmissions (session_port_idle).
        unsigned dead_ms = static_cast<unsigned>(o_.dead_peer_timeout.count());
        ::setsockopt(cfd, IPPROTO_TCP, TCP_USER_TIMEOUT, &dead_ms, sizeof dead_ms);
        splice::conn& cn = sp.conns[cfd];
        cn.fd = cfd;
        cn.s = splice::state::waiting;
        cn.port_session = L.session;
        cn.dialler = L.dialler;
        cn.target = L.target;
        cn.deadline = clock::now() + (L.dialler_side ? std::chrono::duration_cast<std::chrono::milliseconds>(
                                                          o_.pair_timeout)
                                                    : std::chrono::duration_cast<std::chrono::milliseconds>(
                                                          o_.token_lifetime));
        epoll_event ev{};
        ev.events = 0;  // hangups and errors only, until spliced
        ev.data.fd = cfd;
        cn.events = 0;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, cfd, &ev);
        (L.dialler_side ? h.d : h.a) = cfd;
        cn.tok = L.tok;
        if (L.dialler_side) {
            cn.pa = L.pa;
            cn.since = clock::now();
        }
        if (h.d >= 0 && h.a >= 0) pair_ports(sp, h, cfd);
    }
}

// Adds the session ports the control plane opened (np) to the loop, and
// closes those of nodes that went down (gone).
void relay::impl::ports_tick(splice::loop& sp, const std::set<std::string>& gone, std::vector<port_listener>& np) {
    const auto now = clock::now();
    for (auto& L : np) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = L.fd;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, L.fd, &ev);
        splice::held& h = sp.port_conns[L.session];
        if (L.dialler_side) {
            h.d_seen = h.a_seen = now;
            h.target = L.target;
            h.pa = L.pa;
        }
        sp.lports[L.fd] = std::move(L);
    }
    // Pairs nobody uses: the dialler away for session_port_idle, or the
    // node never there within pair_timeout (it cannot reach Pa: a firewall;
    // the dialler falls back to the forwarders).
    std::vector<std::pair<std::string, const char*>> idle;
    for (auto& [session, h] : sp.port_conns) {
        if (h.d >= 0) h.d_seen = now;
        if (h.a >= 0) h.a_seen = now, h.a_came = true;
        if (!h.a_came && now - h.a_seen > o_.pair_timeout)
            idle.emplace_back(session, "unreached");
        else if (now - h.d_seen > o_.session_port_idle)
            idle.emplace_back(session, "idle");
    }
    for (auto& [s, why] : idle) close_port_pair(sp, s, why);
    if (!gone.empty())
        for (auto lp = sp.lports.begin(); lp != sp.lports.end();) {
            if (!gone.count(lp->second.dialler) && !gone.count(lp->second.target)) {
                ++lp;
                continue;
            }
            sp.port_conns.erase(lp->second.session);
            ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, lp->first, nullptr);
            ::close(lp->first);
            lp = sp.lports.erase(lp);
        }
    std::lock_guard lk(mu);
    c.port_pairs = sp.port_conns.size();
}

void relay::impl::close_port_pair(splice::loop& sp, const std::string& session, const char* reason) {
    auto h = sp.port_conns.find(session);
    if (h == sp.port_conns.end()) return;
    for (int fd : {h->second.d, h->second.a})
        if (fd >= 0 && sp.conns.count(fd)) close_conn(sp, fd);
    const std::string target = h->second.target, pa = h->second.pa;
    sp.port_conns.erase(session);
    for (auto lp = sp.lports.begin(); lp != sp.lports.end();) {
        if (lp->second.session != session) {
            ++lp;
            continue;
        }
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, lp->first, nullptr);
        ::close(lp->first);
        lp = sp.lports.erase(lp);
    }
    pid agent, dialler_agent;
    std::string pd;
    {
        std::lock_guard lk(mu);
        for (auto it = token_ports.begin(); it != token_ports.end();) {
            if (it->second.session != session) {
                ++it;
                continue;
            }
            dialler_agent = it->second.dialler_agent;
            pd = it->second.pd;
            it = token_ports.erase(it);
        }
        if (auto r = regs.find(target); r != regs.end()) agent = r->second.agent;
    }
    // From the data plane, to the registered node's own agent and to the
    // pid the dialler gave for it (one of its own node's) only.
    if (!agent.is_null() && !pa.empty()) n_.send(agent, arr("relay_port_closed", session, pa));
    if (!dialler_agent.is_null() && !pd.empty()) n_.send(dialler_agent, arr("relay_port_closed", session, pd, reason));
}

// A dialler waits on a session port and the node's side is not there (its
// listener gave up on the port, e.g. after junk from a stranger: libzmq does
// not redial after a protocol error): ask the node once to connect to it
// again.
void relay::impl::ask_port_again(splice::conn& cn, clock::time_point now) {
    if (cn.s != splice::state::waiting || cn.pa.empty() || cn.asked || now - cn.since <= std::chrono::seconds(1))
        return;
    cn.asked = true;
    pid agent;
    {
        std::lock_guard lk(mu);
        if (auto r = regs.find(cn.target); r != regs.end()) agent = r->second.agent;
    }
    if (!agent.is_null()) n_.send(agent, arr("relay_port", cn.port_session, cn.pa));
}

}  // namespace kith
