// relay_splice.cpp — the relay's data plane: a SOCKS5 subset (RFC 1928: no
// authentication, CONNECT to a domain name "d-<token>.kith" or
// "a-<session>.kith") and the splicing of a dialler's TCP stream with the
// registered node's. Everything a connection sends is untrusted: every read
// is bounded, every state has a deadline, and the connection table is
// capped (relay_options). See kith/relay.hpp.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "relay_splice.hpp"

namespace kith {

namespace {

using splice::kBuf;

bool parse_hostport(const std::string& s, sockaddr_in& sa) {
    auto c = s.rfind(':');
    if (c == std::string::npos) return false;
    std::memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    int port = std::atoi(s.c_str() + c + 1);
    if (port < 0 || port > 65535) return false;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    return ::inet_pton(AF_INET, s.substr(0, c).c_str(), &sa.sin_addr) == 1;
}

bool is_hex32(std::string_view h) {
    return h.size() == 32 && std::all_of(h.begin(), h.end(), [](char ch) {
               return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
           });
}

// SOCKS5 reply codes we use (RFC 1928 §6).
constexpr std::uint8_t kOk = 0x00, kNotAllowed = 0x02, kHostUnreachable = 0x04, kCmdNotSupported = 0x07,
                       kAtypNotSupported = 0x08;

void send_reply(int fd, std::uint8_t code) {
    const std::uint8_t r[10] = {5, code, 0, 1, 0, 0, 0, 0, 0, 0};
    // Ten bytes into a fresh socket's empty send buffer: a short write means
    // the peer is gone, which the next read reports.
    (void)!::send(fd, r, sizeof r, MSG_NOSIGNAL);
}

}  // namespace

std::string relay_random_hex() {
    std::uint8_t b[16];
    std::size_t got = 0;
    while (got < sizeof b) {
        ssize_t r = ::getrandom(b + got, sizeof b - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
        got += static_cast<std::size_t>(r);
    }
    static const char* hx = "0123456789abcdef";
    std::string out;
    for (auto v : b) {
        out += hx[v >> 4];
        out += hx[v & 15];
    }
    return out;
}

void relay::impl::bind_listener() {
    sockaddr_in sa{};
    if (!parse_hostport(o_.listen, sa))
        throw setup_error("relay: listen address '" + o_.listen + "' is not IPV4:PORT (e.g. 0.0.0.0:4380)");
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (listen_fd_ < 0 || ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(listen_fd_, 256) != 0)
        throw setup_error("relay: cannot listen on " + o_.listen + ": " + std::strerror(errno) +
                          " (is another relay running there? choose another port)");
    socklen_t sl = sizeof sa;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &sl);
    char ip[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    endpoint_ = advertised_endpoint(ip, ntohs(sa.sin_port));
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || wake_fd_ < 0) throw setup_error(std::string("relay: epoll/eventfd: ") + std::strerror(errno));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd_;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    ev.data.fd = wake_fd_;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
}

void relay::impl::wake() {
    std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
}

void relay::impl::set_events(splice::loop& sp, splice::conn& c) {
    std::uint32_t want = 0;
    bool throttled = c.rate > 0 && c.allowance < 1;
    if (c.s != splice::state::spliced) want = EPOLLIN;  // SOCKS bytes, or the close of a waiting dialler
    else if (c.off + c.len < splice::kBuf && !throttled && !c.eof && !c.stuck) want = EPOLLIN;  // room to read into
    // (in the kernel: its end, and bytes the kernel held for the relay)
    if (c.peer >= 0) {
        auto it = sp.conns.find(c.peer);
        // A kernel-forwarded side's held bytes wait until the kernel's went.
        if (it != sp.conns.end() && it->second.len > 0 && (!it->second.kernel || it->second.may_write))
            want |= EPOLLOUT;
    }
    if (want == c.events) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = c.fd;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
    c.events = want;
}

// Closes `fd` and its peer; releases what they held.
void relay::impl::close_conn(splice::loop& sp, int fd) {
    std::vector<int> fds{fd};
    bool was_spliced = false, was_kernel = false;
    if (auto it = sp.conns.find(fd); it != sp.conns.end()) {
        was_spliced = it->second.s == splice::state::spliced;
        was_kernel = it->second.kernel;
        if (it->second.peer >= 0) fds.push_back(it->second.peer);
    }
    for (int f : fds) {
        auto it = sp.conns.find(f);
        if (it == sp.conns.end()) continue;
        splice::conn& x = it->second;
        if (x.s == splice::state::spliced && x.rate > 0) --sp.rated;
        if (x.kernel) {  // its last bytes counted, then out of the maps before the fd number is reused
            kernel_count(sp, x);
            kf_->remove(f);
            if (x.eof) --sp.draining;
        }
        if (x.dialler_side && (x.s == splice::state::waiting || x.s == splice::state::spliced)) {
            std::lock_guard lk(mu);
            release_session_locked(x.account, x.registrant);
            if (auto t = tokens.find(x.token); t != tokens.end()) t->second.in_use = false;
            if (!x.session.empty()) pairings.erase(x.session);
        }
        if (!x.port_session.empty())
            if (auto h = sp.port_conns.find(x.port_session); h != sp.port_conns.end()) {
                if (h->second.d == f) h->second.d = -1;
                if (h->second.a == f) h->second.a = -1;
            }
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, f, nullptr);
        ::close(f);
        sp.conns.erase(it);
    }
    if (was_spliced) {
        std::lock_guard lk(mu);
        --c.sessions;
        if (was_kernel) --c.kernel_sessions;
    }
}

// Writes what `from` read to its peer; true while both live.
bool relay::impl::flush_to_peer(splice::loop& sp, splice::conn& from) {
    auto it = sp.conns.find(from.peer);
    if (it == sp.conns.end()) return false;
    while (from.len > 0) {
        ssize_t w = ::send(it->second.fd, from.buf.data() + from.off, from.len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (w <= 0) return false;
        from.off += static_cast<std::size_t>(w);
        from.len -= static_cast<std::size_t>(w);
        sp.forwarded += static_cast<std::uint64_t>(w);
    }
    if (from.len == 0) from.off = 0;
    if (from.eof && from.len == 0) return false;  // all delivered: the session ends
    set_events(sp, from);
    set_events(sp, it->second);
    return true;
}

// The SOCKS request of `cn` is complete: name is "d-<token>.kith" or "a-<session>.kith".
bool relay::impl::on_request(splice::loop& sp, splice::conn& cn, const std::string& name) {
    const bool dial = name.rfind("d-", 0) == 0, accept = name.rfind("a-", 0) == 0;
    std::string hex = name.size() >= 2 ? name.substr(2) : "";
    if (auto dot = hex.find('.'); dot != std::string::npos) hex.resize(dot);
    if ((!dial && !accept) || !is_hex32(hex)) {
        send_reply(cn.fd, kNotAllowed);
        return false;
    }
    if (dial) {
        pid agent;
        std::string session = relay_random_hex();
        {
            std::lock_guard lk(mu);
            auto t = tokens.find(hex);
            if (t == tokens.end() || t->second.expires < clock::now() || t->second.in_use) {
                ++c.refused;
                send_reply(cn.fd, kNotAllowed);
                return false;
            }
            auto r = regs.find(t->second.target);
            if (r == regs.end() || !admit_session_locked(t->second, cn.registrant)) {
                ++c.refused;
                send_reply(cn.fd, kHostUnreachable);
                return false;
            }
            t->second.in_use = true;
            cn.dialler_side = true;
            cn.dialler = t->second.dialler;
            cn.account = t->second.account();
            cn.target = t->second.target;
            cn.token = hex;
            cn.session = session;
            cn.s = splice::state::waiting;
            cn.rate = static_cast<double>(session_rate_locked(t->second.grant, r->second));
            cn.deadline = clock::now() + o_.pair_timeout;
            pairings[session] = pairing{cn.fd, hex, cn.deadline};
            agent = r->second.agent;
        }
        // Outside the lock: the node's send may take its own locks.
        n_.send(agent, arr("relay_open", session, endpoint_));
        return true;
    }
    int dfd = -1;
    {
        std::lock_guard lk(mu);
        auto p = pairings.find(hex);
        if (p == pairings.end()) {
            ++c.refused;
            send_reply(cn.fd, kNotAllowed);
            return false;
        }
        dfd = p->second.dialler_fd;
        pairings.erase(p);
    }
    auto d = sp.conns.find(dfd);
    if (d == sp.conns.end() || d->second.s != splice::state::waiting) {
        send_reply(cn.fd, kHostUnreachable);
        return false;
    }
    cn.rate = d->second.rate;  // the session's, fixed when it was dialled
    for (splice::conn* x : {&cn, &d->second}) {
        x->s = splice::state::spliced;
        x->buf.resize(splice::kBuf);
        if (x->rate > 0) ++sp.rated;
        x->allowance = x->rate > 0 ? x->rate / 10 : 0;
        x->refilled = clock::now();
    }
    cn.peer = dfd;
    d->second.peer = cn.fd;
    cn.session = d->second.session;
    d->second.session.clear();  // paired: no longer in `pairings`
    {
        std::lock_guard lk(mu);
        ++c.sessions;
        ++c.sessions_total;
    }
    send_reply(cn.fd, kOk);
    send_reply(dfd, kOk);
    // Bytes that came in with a request go through now.
    flush_to_peer(sp, cn);
    flush_to_peer(sp, d->second);
    set_events(sp, cn);
    set_events(sp, d->second);
    // Into the kernel when it may (no rate, no bytes that came with the
    // request). Bytes a side sent the moment its reply came wait in its
    // socket and are handed to the program at the start, first.
    if (try_kernel(sp, cn, d->second)) kernel_start(cn, d->second);
    return true;
}

// Parses the SOCKS bytes of `cn` as far as they go; false: close it.
bool relay::impl::on_socks(splice::loop& sp, splice::conn& cn) {
    auto& s = cn.socks;
    auto u = [&](std::size_t i) { return static_cast<std::uint8_t>(s[i]); };
    if (cn.s == splice::state::greeting) {
        if (s.size() < 2) return true;
        if (u(0) != 5) return false;
        std::size_t n = u(1);
        if (s.size() < 2 + n) return true;
        bool no_auth = false;
        for (std::size_t i = 0; i < n; ++i) no_auth |= u(2 + i) == 0;
        const std::uint8_t choice[2] = {5, static_cast<std::uint8_t>(no_auth ? 0 : 0xff)};
        (void)!::send(cn.fd, choice, 2, MSG_NOSIGNAL);
        if (!no_auth) return false;
        s.erase(0, 2 + n);
        cn.s = splice::state::request;
    }
    if (cn.s != splice::state::request || s.size() < 5) return true;
    if (u(0) != 5 || u(1) != 1 || u(2) != 0) {
        send_reply(cn.fd, kCmdNotSupported);
        return false;
    }
    if (u(3) != 3) {
        send_reply(cn.fd, kAtypNotSupported);
        return false;
    }
    std::size_t L = u(4);
    if (s.size() < 5 + L + 2) return true;
    std::string name = s.substr(5, L);
    std::string rest = s.substr(5 + L + 2);
    s.clear();
    if (rest.size() > splice::kBuf) return false;
    cn.buf.resize(splice::kBuf);
    std::memcpy(cn.buf.data(), rest.data(), rest.size());
    cn.len = rest.size();
    return on_request(sp, cn, name);
}

void relay::impl::run() {
    splice::loop sp;
    // Deadlines, rate refills and doomed nodes are looked at every `tick`
    // (and at once when the control plane wakes us), not after every
    // forwarded read: a busy session costs epoll_wait, recv and send only.
    auto tick = std::chrono::milliseconds(100);
    auto next_scan = clock::now() + tick;
    std::vector<epoll_event> evs(256);
    while (!stop_.load()) {
        tick = std::chrono::milliseconds(sp.kernel_busy ? 10 : sp.rated > 0 ? 20 : 100);
        if (sp.draining > 0) tick = std::min(tick, sp.drain_tick);
        // A shorter tick (a session moved to the kernel, one ending, a rated
        // one) holds from now, not after the longer one set before it.
        next_scan = std::min(next_scan, clock::now() + tick);
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_scan - clock::now()).count();
        int n = ::epoll_wait(epoll_fd_, evs.data(), static_cast<int>(evs.size()),
                             static_cast<int>(std::clamp<long long>(wait + 1, 0, tick.count())));
        if (n < 0 && errno != EINTR) break;
        bool woken = false;
        for (int i = 0; i < std::max(n, 0); ++i) {
            int fd = evs[i].data.fd;
            if (fd == wake_fd_) {
                std::uint64_t v;
                (void)!::read(wake_fd_, &v, sizeof v);
                woken = true;
                continue;
            }
            if (fd == listen_fd_) {
                for (;;) {
                    int cfd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) break;
                    if (sp.conns.size() >= o_.max_connections) {
                        {  // counted before the close, which the peer sees
                            std::lock_guard lk(mu);
                            ++c.refused;
                        }
                        ::close(cfd);
                        continue;
                    }
                    int one = 1;
                    ::setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    splice::conn& cn = sp.conns[cfd];
                    cn.fd = cfd;
                    cn.deadline = clock::now() + o_.handshake_timeout;
                    epoll_event ev{};
                    ev.events = EPOLLIN;
                    ev.data.fd = cfd;
                    cn.events = EPOLLIN;
                    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, cfd, &ev);
                }
                continue;
            }
            if (auto lp = sp.lports.find(fd); lp != sp.lports.end()) {
                accept_port(sp, lp->second);
                continue;
            }
            auto it = sp.conns.find(fd);
            if (it == sp.conns.end()) continue;
            splice::conn& cn = it->second;
            if (cn.kernel) {
                kernel_event(sp, cn, evs[i].events);
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                // The peer's bytes can go out on this fd now.
                auto p = sp.conns.find(cn.peer);
                if (p == sp.conns.end() || !flush_to_peer(sp, p->second)) {
                    close_conn(sp, fd);
                    continue;
                }
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            if (cn.s == splice::state::greeting || cn.s == splice::state::request) {
                char tmp[splice::kMaxSocksBytes];
                ssize_t r = ::recv(fd, tmp, sizeof tmp, 0);
                if (r <= 0 || cn.socks.size() + static_cast<std::size_t>(r) > splice::kMaxSocksBytes) {
                    if (r != 0 || cn.s != splice::state::greeting) {
                        std::lock_guard lk(mu);
                        ++c.refused;
                    }
                    close_conn(sp, fd);
                    continue;
                }
                cn.socks.append(tmp, static_cast<std::size_t>(r));
                if (!on_socks(sp, cn)) close_conn(sp, fd);
                continue;
            }
            if (cn.s == splice::state::waiting) {
                // The dialler may not send before our reply; data or EOF: close.
                close_conn(sp, fd);
                continue;
            }
            // Spliced: read what fits (and what the rate allows), forward it.
            if (cn.eof) {  // a hangup or error after its end
                close_conn(sp, fd);
                continue;
            }
            std::size_t room = splice::kBuf - cn.off - cn.len;
            if (cn.rate > 0) room = std::min(room, static_cast<std::size_t>(cn.allowance));
            if (room == 0) {
                // Full (or out of allowance): a hangup or error ends the session,
                // anything else waits until the buffer drains.
                if (evs[i].events & (EPOLLHUP | EPOLLERR)) close_conn(sp, fd);
                else set_events(sp, cn);
                continue;
            }
            ssize_t r = ::recv(fd, cn.buf.data() + cn.off + cn.len, room, 0);
            if (r == 0 && cn.len > 0) {
                // Its last bytes (a goodbye, say) still wait for the peer to drain.
                cn.eof = true;
                set_events(sp, cn);
                continue;
            }
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                close_conn(sp, fd);
                continue;
            }
            cn.len += static_cast<std::size_t>(r);
            ++sp.user_reads;
            if (cn.rate > 0) cn.allowance -= static_cast<double>(r);
            if (!flush_to_peer(sp, cn)) close_conn(sp, fd);
        }

        if (sp.forwarded > 0 || sp.user_reads > 0) {
            std::lock_guard lk(mu);
            c.bytes_forwarded += sp.forwarded;
            c.user_reads += sp.user_reads;
            sp.forwarded = sp.user_reads = 0;
        }
        // Deadlines, rate refills and sessions of nodes that went down.
        auto now = clock::now();
        if (!woken && now < next_scan) continue;
        next_scan = now + tick;
        if (kf_) {
            kernel_tick(sp);
            std::lock_guard lk(mu);
            c.bytes_forwarded += sp.forwarded;
            sp.forwarded = 0;
            counts_done_ = counts_asked_;
            counts_cv_.notify_all();
        }
        std::set<std::string> gone;
        std::vector<port_listener> np;
        std::vector<std::pair<pid, term>> notices;
        std::vector<std::string> closing;
        {
            std::lock_guard lk(mu);
            gone.swap(doomed);
            np.swap(new_ports);
            notices.swap(port_notices);
            closing.swap(closing_pairs);
        }
        for (auto& [to, msg] : notices) n_.send(to, msg);
        ports_tick(sp, gone, np);
        for (auto& s : closing) close_port_pair(sp, s, "gone");  // forgotten in token_ports: no second notice
        std::vector<int> expired;
        for (auto& [fd, cn] : sp.conns) {
            ask_port_again(cn, now);
            if (cn.s != splice::state::spliced && now > cn.deadline) expired.push_back(fd);
            else if (!gone.empty() && (gone.count(cn.dialler) || gone.count(cn.target))) expired.push_back(fd);
            if (cn.rate > 0 && cn.s == splice::state::spliced) {
                double add = cn.rate * std::chrono::duration<double>(now - cn.refilled).count();
                cn.allowance = std::min(cn.rate / 10 + splice::kBuf, cn.allowance + add);
                cn.refilled = now;
                set_events(sp, cn);
            }
        }
        for (int fd : expired) {
            auto it = sp.conns.find(fd);
            if (it == sp.conns.end()) continue;
            if (it->second.s != splice::state::spliced) {
                std::lock_guard lk(mu);
                ++c.timed_out;
            }
            close_conn(sp, fd);
        }
    }
    while (!sp.conns.empty()) close_conn(sp, sp.conns.begin()->first);
    for (auto& [fd, L] : sp.lports) ::close(fd);
    std::lock_guard lk(mu);
    for (auto& L : new_ports) ::close(L.fd);
    new_ports.clear();
}

}  // namespace kith
