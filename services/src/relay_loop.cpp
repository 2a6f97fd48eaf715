// relay_loop.cpp — see relay_loop.hpp.
#include "relay_loop.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <unordered_map>

#include "kith/error.hpp"

namespace kith::detail {

namespace {

constexpr std::size_t kBuf = 64 * 1024;  // per direction of a pair

void nonblocking(int fd) {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

struct side {
    int fd = -1, peer = -1;
    std::vector<std::uint8_t> buf;  // read from fd, to be written to peer
    std::size_t off = 0, len = 0;
    std::uint32_t events = 0;
    bool eof = false;  // fd closed its side: what it sent is still delivered, then the pair ends
};

}  // namespace

splice_loop::splice_loop() {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || wake_fd_ < 0) {
        std::string why = std::strerror(errno);
        if (epoll_fd_ >= 0) ::close(epoll_fd_);
        if (wake_fd_ >= 0) ::close(wake_fd_);
        throw setup_error("relay client: cannot create its epoll/eventfd: " + why +
                          " (out of file descriptors? raise the open-file limit)");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    thread_ = std::thread([this] {
        ::pthread_setname_np(::pthread_self(), "kith-relay-fwd");
        run();
    });
}

splice_loop::~splice_loop() {
    stop();
    ::close(epoll_fd_);
    ::close(wake_fd_);
}

void splice_loop::wake() {
    std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
}

bool splice_loop::add(int a, int b) {
    {
        std::lock_guard lk(mu_);
        if (!stopped_) {
            new_pairs_.emplace_back(a, b);
            wake();
            return true;
        }
    }
    ::close(a);
    ::close(b);
    return false;
}

bool splice_loop::listen(int fd, std::function<void(int)> on_accept) {
    {
        std::lock_guard lk(mu_);
        if (!stopped_) {
            new_listeners_.emplace_back(fd, std::move(on_accept));
            wake();
            return true;
        }
    }
    ::close(fd);
    return false;
}

void splice_loop::stop() {
    {
        std::lock_guard lk(mu_);
        stopped_ = true;
    }
    stop_.store(true);
    wake();
    if (thread_.joinable()) thread_.join();
    // What was queued after the loop's last look.
    std::lock_guard lk(mu_);
    for (auto [a, b] : new_pairs_) ::close(a), ::close(b);
    for (auto& l : new_listeners_) ::close(l.first);
    new_pairs_.clear();
    new_listeners_.clear();
}

void splice_loop::run() {
    std::unordered_map<int, side> sides;
    std::unordered_map<int, std::function<void(int)>> listeners;

    auto set_events = [&](side& s) {
        std::uint32_t want = !s.eof && s.off + s.len < kBuf ? std::uint32_t{EPOLLIN} : 0u;
        if (auto p = sides.find(s.peer); p != sides.end() && p->second.len > 0) want |= EPOLLOUT;
        if (want == s.events) return;
        epoll_event ev{};
        ev.events = want;
        ev.data.fd = s.fd;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, s.fd, &ev);
        s.events = want;
    };
    auto close_pair = [&](int fd) {
        auto it = sides.find(fd);
        if (it == sides.end()) return;
        int peer = it->second.peer;
        for (int f : {fd, peer}) {
            if (sides.erase(f) == 0) continue;
            ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, f, nullptr);
            ::close(f);
        }
    };
    // Writes what `from` read to its peer; false when the peer failed.
    auto flush = [&](side& from) -> bool {
        auto p = sides.find(from.peer);
        if (p == sides.end()) return false;
        while (from.len > 0) {
            ssize_t w = ::send(p->second.fd, from.buf.data() + from.off, from.len, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (w <= 0) return false;
            from.off += static_cast<std::size_t>(w);
            from.len -= static_cast<std::size_t>(w);
        }
        if (from.len == 0) from.off = 0;
        if (from.eof && from.len == 0) return false;  // all delivered: the pair ends
        set_events(from);
        set_events(p->second);
        return true;
    };
    auto take_queued = [&] {
        std::vector<std::pair<int, int>> pairs;
        std::vector<std::pair<int, std::function<void(int)>>> ls;
        {
            std::lock_guard lk(mu_);
            pairs.swap(new_pairs_);
            ls.swap(new_listeners_);
        }
        for (auto& [fd, cb] : ls) {
            nonblocking(fd);
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.fd = fd;
            if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
                ::close(fd);
                continue;
            }
            listeners[fd] = std::move(cb);
        }
        for (auto [a, b] : pairs) {
            bool ok = true;
            for (auto [f, peer] : {std::pair{a, b}, std::pair{b, a}}) {
                nonblocking(f);
                side& s = sides[f];
                s.fd = f;
                s.peer = peer;
                s.buf.resize(kBuf);
                s.events = EPOLLIN;
                epoll_event ev{};
                ev.events = EPOLLIN;
                ev.data.fd = f;
                ok = ok && ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, f, &ev) == 0;
            }
            if (!ok) close_pair(a);
        }
    };

    std::vector<epoll_event> evs(64);
    while (!stop_.load()) {
        int n = ::epoll_wait(epoll_fd_, evs.data(), static_cast<int>(evs.size()), -1);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < std::max(n, 0); ++i) {
            const int fd = evs[i].data.fd;
            const std::uint32_t e = evs[i].events;
            if (fd == wake_fd_) {
                std::uint64_t v;
                (void)!::read(wake_fd_, &v, sizeof v);
                take_queued();
                continue;
            }
            if (auto l = listeners.find(fd); l != listeners.end()) {
                for (;;) {
                    int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break;  // EAGAIN, or out of descriptors: libzmq dials again later
                    int one = 1;  // replies go back at once (no Nagle wait for an ACK)
                    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    l->second(c);
                }
                continue;
            }
            auto it = sides.find(fd);
            if (it == sides.end()) continue;  // closed with its peer earlier in this batch
            side& s = it->second;
            if (e & EPOLLOUT) {
                auto p = sides.find(s.peer);
                if (p == sides.end() || !flush(p->second)) {
                    close_pair(fd);
                    continue;
                }
            }
            if (!(e & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            if (s.eof) {  // a hangup or error after its end: nothing more to wait for
                close_pair(fd);
                continue;
            }
            std::size_t room = kBuf - s.off - s.len;
            if (room == 0) {
                // Full and the peer is not draining: a hangup or error ends the pair.
                if (e & (EPOLLHUP | EPOLLERR)) close_pair(fd);
                continue;
            }
            ssize_t r = ::recv(fd, s.buf.data() + s.off + s.len, room, 0);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
            if (r == 0 && s.len > 0) {
                // Its last bytes (a goodbye, say) still wait for the peer to drain.
                s.eof = true;
                set_events(s);
                continue;
            }
            if (r <= 0) {
                close_pair(fd);
                continue;
            }
            s.len += static_cast<std::size_t>(r);
            if (!flush(s)) close_pair(fd);
        }
    }
    for (auto& [fd, s] : sides) ::close(fd);
    for (auto& [fd, cb] : listeners) ::close(fd);
}

}  // namespace kith::detail
