// relay_kernel_world.hpp — what the in-kernel forwarding tests share
// (test_relay_kernel.cpp, test_relay_kernel_piles.cpp): a raw session moved
// to the kernel, pattern bytes sent and checked, a sender held back.
#pragma once

#include <fcntl.h>

#include <atomic>
#include <cstdlib>
#include <tuple>

#include "relay_splice.hpp"  // services/src: splice::kPauseAbove
#include "relay_world.hpp"

namespace {

inline bool kernel_available(relay& rel) {
    if (rel.forwarding().rfind("kernel", 0) == 0) return true;
    WARN("in-kernel forwarding is unavailable here (" << rel.forwarding() << "): the kernel checks are skipped");
    return false;
}

// A session's socket after the relay granted `name`; -1 when refused.
inline int socks_connect(const std::string& relay_ep, const std::string& name) {
    auto [fd, code] = socks_open(relay_ep, name, 10);
    if (code == 0) return fd;
    ::close(fd);
    return -1;
}

inline relay_options kernel() {
    relay_options o;
    o.kernel_forward = relay_options::kernel_mode::automatic;
    return o;
}

// A registered node "k@test" whose agent is the test itself: each dial
// gives the test both raw ends of a session.
struct raw_world : world {
    node k{opts("k@test", dir.path / "k")};
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::string> opened;  // session hex from ["relay_open", S, Endpoint]
    explicit raw_world(relay_options ro = kernel()) : world(ro) {
        REQUIRE(k.connect(r.endpoint(), r.key()).ok());
        pid agent = k.spawn([this](actor&, message& m) {
            const term* tag = m.body.at(0);
            const term* s = m.body.at(1);
            if (!tag || !s || !tag->as_string() || *tag->as_string() != "relay_open" || !s->as_string()) return;
            std::lock_guard lk(mu);
            opened.push_back(*s->as_string());
            cv.notify_all();
        });
        REQUIRE(k.call("r@test", "relay", "register", arr(agent, false)).ok());
    }
    // {dialler's socket, registered side's socket}, spliced; `first`, when
    // given, is sent by the registered side the moment its reply came
    // (while the relay may still be answering the dialler).
    std::pair<int, int> session(const std::string& first = {}) {
        auto d = b.call("r@test", "relay", "dial", arr("k@test"));
        REQUIRE(d.ok());
        const std::string ep = rel.endpoint(), token = *d->at(0)->as_string();
        int dfd = -1;
        std::thread dialler([&] { dfd = socks_connect(ep, "d-" + token + ".kith"); });
        std::string s;
        {
            std::unique_lock lk(mu);
            REQUIRE(cv.wait_for(lk, 10s, [&] { return !opened.empty(); }));
            s = opened.front();
            opened.pop_front();
        }
        int afd = socks_connect(ep, "a-" + s + ".kith");
        if (afd >= 0 && !first.empty()) CHECK(::send(afd, first.data(), first.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(first.size()));
        dialler.join();
        REQUIRE(dfd >= 0);
        REQUIRE(afd >= 0);
        return {dfd, afd};
    }
};

// A raw session moved to the kernel; ok false (the test then checks
// nothing) where in-kernel forwarding is unavailable.
struct kernel_session {
    raw_world w;
    int d = -1, a = -1;  // the dialler's and the registered side's sockets
    bool ok = false;
    kernel_session() {
        if (!kernel_available(w.rel)) return;
        std::tie(d, a) = w.session();
        // The relay replies to both sides, then moves the session to the kernel.
        REQUIRE(eventually([&] { return w.rel.counters().kernel_sessions == 1; }));
        ok = true;
    }
};

// Runs `body(w, d, a)` on a kernel_session (nothing where in-kernel
// forwarding is unavailable); the body closes both ends. The relay must then
// end the session, having forwarded every byte in the kernel: none read in
// user space (unless a side was held: its reader read too slowly).
template <class Body>
inline void in_kernel_session(Body body) {
    kernel_session s;
    if (!s.ok) return;
    body(s.w, s.d, s.a);
    CHECK(eventually([&] { return s.w.rel.counters().sessions == 0; }));
    CHECK(s.w.rel.counters().kernel_sessions == 0);
    if (s.w.rel.counters().kernel_holds == 0) CHECK(s.w.rel.counters().user_reads == 0);
}

inline unsigned char pattern(std::size_t i, unsigned seed) { return static_cast<unsigned char>((i * 131 + seed) % 251); }

// Sends pattern bytes [from, from + n) on fd in chunks of `chunk`.
inline void send_pattern_from(int fd, std::size_t from, std::size_t n, unsigned seed, std::size_t chunk = 65536) {
    std::vector<unsigned char> b(chunk);
    for (std::size_t sent = 0; sent < n;) {
        std::size_t m = std::min(chunk, n - sent);
        for (std::size_t i = 0; i < m; ++i) b[i] = pattern(from + sent + i, seed);
        for (std::size_t o = 0; o < m;) {
            ssize_t w = ::send(fd, b.data() + o, m - o, MSG_NOSIGNAL);
            if (w <= 0) return;
            o += static_cast<std::size_t>(w);
        }
        sent += m;
    }
}

// Sends n pattern bytes on fd.
inline void send_pattern(int fd, std::size_t n, unsigned seed) { send_pattern_from(fd, 0, n, seed); }

// Reads until EOF (or `n` bytes when stop_at_n); counts bytes and the first
// one out of order.
struct received {
    std::size_t bytes = 0;
    std::size_t first_bad = SIZE_MAX;
    // The next r bytes read, of pattern `seed`.
    void take(const unsigned char* b, std::size_t r, unsigned seed) {
        for (std::size_t i = 0; i < r; ++i)
            if (first_bad == SIZE_MAX && b[i] != pattern(bytes + i, seed)) first_bad = bytes + i;
        bytes += r;
    }
};
inline received read_pattern(int fd, std::size_t n, unsigned seed, bool stop_at_n) {
    received got;
    std::vector<unsigned char> b(65536);
    while (!stop_at_n || got.bytes < n) {
        ssize_t r = ::recv(fd, b.data(), b.size(), 0);
        if (r <= 0) break;
        got.take(b.data(), static_cast<std::size_t>(r), seed);
    }
    return got;
}

// Every one of the n bytes arrived, in order.
inline void check_arrived(const received& got, std::size_t n) {
    CHECK(got.bytes == n);
    CHECK(got.first_bad == SIZE_MAX);
}


// Sends pattern bytes (`seed`) on `d`, made non-blocking, until it has made
// no progress for a second, the relay ended the session (`ended`), or `cap`
// (far above any bound, so that a failure cannot take the machine with
// it): what the relay and the reader's socket took before the sender was
// held back.
inline std::size_t send_until_held(int d, std::size_t cap, unsigned seed, bool* ended = nullptr) {
    REQUIRE(::fcntl(d, F_SETFL, O_NONBLOCK) == 0);
    std::size_t sent = 0;
    std::vector<unsigned char> b(65536);
    auto last_progress = std::chrono::steady_clock::now();
    while (sent < cap && std::chrono::steady_clock::now() - last_progress < 1s) {
        for (std::size_t i = 0; i < b.size(); ++i) b[i] = pattern(sent + i, seed);
        ssize_t n = ::send(d, b.data(), b.size(), MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            last_progress = std::chrono::steady_clock::now();
        } else if (ended && (errno == ECONNRESET || errno == EPIPE)) {
            *ended = true;
            break;
        } else {
            REQUIRE(errno == EAGAIN);
            std::this_thread::sleep_for(5ms);
        }
    }
    return sent;
}

// Both ends read, blocking, what the other got out (patterns `seed_d` from
// the dialler, `seed_a` from the other side): every byte, in order; then
// both close and the relay ends the session.
inline void read_both_and_close(kernel_session& s, std::size_t from_d, unsigned seed_d, std::size_t from_a, unsigned seed_a) {
    ::fcntl(s.a, F_SETFL, 0);
    ::fcntl(s.d, F_SETFL, 0);
    received at_a, at_d;
    std::thread r1([&] { at_a = read_pattern(s.a, from_d, seed_d, true); });
    at_d = read_pattern(s.d, from_a, seed_a, true);
    r1.join();
    check_arrived(at_a, from_d);
    check_arrived(at_d, from_a);
    ::close(s.d);
    ::close(s.a);
    CHECK(eventually([&] { return s.w.rel.counters().sessions == 0; }));
}

}  // namespace
