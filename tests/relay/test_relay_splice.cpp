// The relay client's splice loop and the relay's per-session rate, with real
// kith nodes through a relay: a local flood of a dialler's forwarder, bytes
// sent just before a close, and the bytes-per-second cap.
#include "relay_world.hpp"

namespace {
std::size_t thread_count() {
    std::size_t n = 0;
    for ([[maybe_unused]] auto& t : std::filesystem::directory_iterator("/proc/self/task")) ++n;
    return n;
}
}  // namespace

TEST_CASE("relay: a local process flooding a dialler's forwarder starts no threads without bound and the link stays up",
          "[relay]") {
    world w;
    REQUIRE(w.bob->connect("a@test", w.a.key()).ok());
    auto info = w.b.info("a@test");
    REQUIRE(info);
    std::string fwd = info->endpoint;  // tcp://127.0.0.1:PORT, the forwarder
    REQUIRE(fwd.rfind("tcp://127.0.0.1:", 0) == 0);
    const std::size_t before = thread_count();
    const auto refused0 = w.rel.counters().refused;
    // 200 connections at once, each one a session set-up the relay refuses
    // (Bob's token is in use by his link): at most 64 set-ups run at once.
    std::vector<int> fds;
    sockaddr_in sa = addr_of(fwd.substr(6));
    std::size_t most = 0;
    for (int i = 0; i < 200; ++i) {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        fds.push_back(fd);
        most = std::max(most, thread_count());
    }
    CHECK(eventually([&] { return w.rel.counters().refused >= refused0 + 64; }));
    most = std::max(most, thread_count());
    CHECK(most <= before + 64 + 4);
    for (int fd : fds) ::close(fd);
    // Bob's relayed link was never disturbed.
    REQUIRE(w.b.call("a@test", "kvs", "store", arr("k", "v")).ok());
    CHECK(w.rel.counters().sessions == 1);
    CHECK(eventually([&] { return thread_count() <= before + 2; }));
}

namespace {
// A connected TCP pair on loopback: p[0] connected to p[1]; `rcvbuf` (if
// not 0) fixes p[0]'s receive buffer before it connects.
void tcp_pair(int p[2], int rcvbuf) {
    int l = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(l, 1) == 0);
    ::getsockname(l, reinterpret_cast<sockaddr*>(&sa), &sl);
    p[0] = ::socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) ::setsockopt(p[0], SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    REQUIRE(::connect(p[0], reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    p[1] = ::accept(l, nullptr, nullptr);
    REQUIRE(p[1] >= 0);
    ::close(l);
}
}  // namespace

TEST_CASE("relay: a client splice delivers everything a side sent before it closed, also when the other side was slow",
          "[relay]") {
    // Two TCP connections on loopback. x[0]: a sender; x[1] and y[1]: the
    // loop's pair; y[0]: a reader that starts late and holds little (the
    // loop's own buffer fills).
    int x[2], y[2];
    tcp_pair(x, 0);
    tcp_pair(y, 4096);
    int small = 4096;
    ::setsockopt(y[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    timeval stv{10, 0};
    ::setsockopt(x[0], SOL_SOCKET, SO_SNDTIMEO, &stv, sizeof stv);
    kith::detail::splice_loop loop;
    REQUIRE(loop.add(x[1], y[1]));
    // 160 KiB: more than the loop's 64 KiB and the reader's buffer, less than
    // all buffers together, so the sender finishes and closes before anyone reads.
    const std::size_t total = 160 * 1024;
    std::vector<char> data(total);
    for (std::size_t i = 0; i < total; ++i) data[i] = static_cast<char>(i % 251);
    for (std::size_t sent = 0; sent < total;) {
        ssize_t w = ::send(x[0], data.data() + sent, std::min<std::size_t>(4096, total - sent), MSG_NOSIGNAL);
        REQUIRE(w > 0);
        sent += static_cast<std::size_t>(w);
    }
    ::close(x[0]);
    timeval tv{10, 0};
    ::setsockopt(y[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::vector<char> got;
    char buf[8192];
    for (;;) {
        ssize_t r = ::recv(y[0], buf, sizeof buf, 0);
        if (r <= 0) break;
        got.insert(got.end(), buf, buf + r);
    }
    CHECK(got.size() == total);
    CHECK(got == data);
    ::close(y[0]);
}

TEST_CASE("relay: a session's bytes per second are capped and a large call still completes", "[relay]") {
    relay_options ro;
    ro.max_bytes_per_s_per_session = 256 * 1024;
    world w(ro);
    REQUIRE(w.bob->connect("a@test", w.a.key()).ok());
    const auto t0 = std::chrono::steady_clock::now();
    const auto base = w.rel.counters().bytes_forwarded;
    std::atomic<bool> done{false};
    std::thread caller([&] {
        // 400 KiB through a 256 KiB/s session: about 1.3 s (within the
        // heartbeat timeout: a message that takes longer than it ends the link).
        auto r = w.b.call("a@test", "kvs", "store", arr("big", std::string(400 * 1024, 'x')), 30s);
        if (!r.ok()) FAIL_CHECK(r.err().detail);
        done = true;
    });
    // Never more than the rate allows: each direction's allowance starts at
    // rate/10 and holds at most rate/10 + 64 KiB.
    bool within = true;
    while (!done && std::chrono::steady_clock::now() - t0 < 30s) {
        std::this_thread::sleep_for(50ms);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double cap = 2 * (256 * 1024 * (s + 0.1) + 64 * 1024 + 26215);
        within &= static_cast<double>(w.rel.counters().bytes_forwarded - base) <= cap;
    }
    caller.join();
    CHECK(done);
    CHECK(within);
    CHECK(w.rel.counters().bytes_forwarded - base > 400 * 1024);
    auto v = w.b.call("a@test", "kvs", "lookup", arr("big"), 30s);
    REQUIRE(v.ok());
}
