// relay_world.hpp — what the relay tests share: node options, a raw SOCKS5
// client, addresses, and the world of a relay with Alice and Bob (see
// test_relay.cpp and test_relay_splice.cpp).
#pragma once

#include "kith/relay.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <algorithm>

#include "../transport/tmpdir.hpp"
#include "kith/builtin.hpp"
#include "kith/node.hpp"
#include "kith/service.hpp"
#include "kith_catch.hpp"
#include "free_ports.hpp"
#include "relay_loop.hpp"  // services/src: the relay client's splice loop
#include "relay_test_util.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

using relay_test::eventually;
using relay_test::opts;

// The relay's data plane on loopback, at any free port.
inline relay_options on_loopback(relay_options o = {}) {
    o.listen = "127.0.0.1:0";
    return o;
}

// A grant of node `n` for service `svc` (all of it), 100/s, no expiry.
inline grant_file grant_of(node& n, const std::string& label, const std::string& svc) {
    auto g = n.grant({.label = label, .allow = {{svc, {}}}, .rate = {100, 200}, .expires = std::nullopt});
    INFO(label << ": " << (g.ok() ? std::string("granted") : g.err().message()));
    REQUIRE(g.ok());
    return *g;
}

// A raw SOCKS5 exchange with the relay's data plane: returns the reply code
// (0 granted), or -1 when the relay closed without one.
// "HOST:PORT" (IPv4) as a socket address.
sockaddr_in addr_of(const std::string& ep) {
    auto c = ep.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(ep.substr(c + 1))));
    ::inet_pton(AF_INET, ep.substr(0, c).c_str(), &sa.sin_addr);
    return sa;
}

// As socks_request, leaving the socket open (its receive and send timeouts
// `secs`): {fd, reply code or -1}. After a 0 the session's bytes follow.
inline std::pair<int, int> socks_open(const std::string& relay_ep, const std::string& name, int secs = 3) {
    sockaddr_in sa = addr_of(relay_ep);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{secs, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    std::string req = std::string("\x05\x01\x00", 3) + std::string("\x05\x01\x00\x03", 4) +
                      static_cast<char>(name.size()) + name + std::string("\x00\x01", 2);
    REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
    std::uint8_t buf[12];
    ssize_t got = 0;
    while (got < 12) {
        ssize_t r = ::recv(fd, buf + got, sizeof buf - static_cast<std::size_t>(got), 0);
        if (r <= 0) break;
        got += r;
    }
    return {fd, got >= 4 ? buf[3] : -1};  // choice (2 bytes) then reply: VER, REP
}

inline int socks_request(const std::string& relay_ep, const std::string& name) {
    auto [fd, code] = socks_open(relay_ep, name);
    ::close(fd);
    return code;
}

// "127.0.0.1:PORT" with a port that was free a moment ago, below the
// ephemeral range: the relay tests stop a relay and bind its ports again.
inline std::string free_endpoint() {
    return "127.0.0.1:" + std::to_string(kith_test::free_ports_below_ephemeral());
}

// A man in the middle in front of the relay (its advertised endpoint):
// forwards both ways and, from offset `at` of each stream on (past the
// handshake), misbehaves once per stream — a relay that tampers:
//   flip     XORs one byte;
//   replay   sends a chunk it forwarded (a whole frame, as TCP delivered it)
//            a second time, right after the first;
//   reorder  holds a chunk back and sends it after the next one.
enum class tamper { flip, replay, reorder };
struct tamperer {
    int listen_fd = -1;
    std::string endpoint, upstream;
    tamper mode;
    std::size_t at;
    std::atomic<bool> stop{false};
    std::atomic<int> tampered{0};
    std::vector<std::thread> threads;
    tamperer(std::string up, tamper m, std::size_t offset) : upstream(std::move(up)), mode(m), at(offset) {
        listen_fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t sl = sizeof sa;
        REQUIRE(::bind(listen_fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        REQUIRE(::listen(listen_fd, 16) == 0);
        ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&sa), &sl);
        endpoint = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
        threads.emplace_back([this] { accept_loop(); });
    }
    ~tamperer() {
        stop = true;
        ::shutdown(listen_fd, SHUT_RDWR);
        ::close(listen_fd);
        for (auto& t : threads) t.join();
    }
    static bool send_all(int fd, const std::string& b) {
        return ::send(fd, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size());
    }
    void pump(int from, int to) {
        char buf[4096];
        std::size_t seen = 0;
        bool done = false;
        std::string held;  // reorder: the chunk held back
        for (;;) {
            ssize_t r = ::recv(from, buf, sizeof buf, 0);
            if (r <= 0 || stop) break;
            std::string chunk(buf, static_cast<std::size_t>(r));
            const bool now = !done && seen + chunk.size() > at;
            seen += chunk.size();
            bool ok = true;
            if (!held.empty()) {  // reorder: the next chunk first, then the held one
                ok = send_all(to, chunk) && send_all(to, held);
                held.clear();
            } else if (now && mode == tamper::flip) {
                chunk[at > seen - chunk.size() ? at - (seen - chunk.size()) : 0] ^= 0x20;
                ok = send_all(to, chunk);
            } else if (now && mode == tamper::replay) {
                ok = send_all(to, chunk) && send_all(to, chunk);
            } else if (now && mode == tamper::reorder) {
                held = chunk;
            } else {
                ok = send_all(to, chunk);
            }
            if (now) {
                done = true;
                ++tampered;
            }
            if (!ok) break;
        }
        ::shutdown(to, SHUT_RDWR);
        ::shutdown(from, SHUT_RDWR);
    }
    void accept_loop() {
        std::vector<std::thread> pumps;
        for (;;) {
            int c = ::accept(listen_fd, nullptr, nullptr);
            if (c < 0) break;
            sockaddr_in sa = addr_of(upstream);
            int u = ::socket(AF_INET, SOCK_STREAM, 0);
            if (::connect(u, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
                ::close(c);
                ::close(u);
                continue;
            }
            pumps.emplace_back([this, c, u] { pump(c, u); });
            pumps.emplace_back([this, c, u] {
                pump(u, c);
            });
        }
        for (auto& t : pumps) t.join();
    }
};

// One relay node R, Alice registered through her relay_client (her node's
// own listening endpoint answers relayed sessions), Bob able to dial.
struct world {
    temp_dir dir;
    node r{opts("r@test", dir.path / "r")};
    relay rel;
    node a{opts("a@test", dir.path / "a")};
    node b{opts("b@test", dir.path / "b")};
    std::unique_ptr<relay_client> alice, bob;
    explicit world(relay_options ro = {}) : rel(r, on_loopback(ro)) {
        a.add_service(services::make_kvs());
        REQUIRE(a.connect(r.endpoint(), r.key()).ok());
        REQUIRE(b.connect(r.endpoint(), r.key()).ok());
        alice = std::make_unique<relay_client>(a, "r@test", true);
        bob = std::make_unique<relay_client>(b, "r@test", nullptr);
    }
    // Bob's dial: [token, endpoint, key].
    std::string dial_token() {
        auto d = b.call("r@test", "relay", "dial", arr("a@test"));
        REQUIRE(d.ok());
        REQUIRE(d->size() == 3);
        return *d->at(0)->as_string();
    }
};

// A relay R on loopback, and R's relay grant "alice" (for tests that set
// its limits and make the nodes themselves).
struct relay_and_grant {
    temp_dir dir;
    node r{opts("r@test", dir.path / "r")};
    relay rel;
    grant_file ag;
    relay_and_grant() : rel(r, on_loopback()), ag(grant_of(r, "alice", "relay")) {}
};

// A relay R whose users are outside its cluster: Alice and Bob, each in a
// cluster of their own, connected to R with R's relay grants "alice" and
// "bob"; Alice registered (kvs), Bob able to dial; `kvs`: Alice's grant to
// Bob for her kvs (Bob connects with it: bob->connect(kvs)).
struct granted_world {
    temp_dir dir;
    node r{opts("r@test", dir.path / "r")};
    relay rel;
    grant_file ag, bg;
    node a{opts("a@test", dir.path / "a", "alice-own-cookie")};
    node b{opts("b@test", dir.path / "b", "bob-own-cookie")};
    std::unique_ptr<relay_client> alice, bob;
    grant_file kvs;
    explicit granted_world(relay_options ro = {})
        : rel(r, on_loopback(ro)), ag(grant_of(r, "alice", "relay")), bg(grant_of(r, "bob", "relay")) {
        a.add_service(services::make_kvs());
        REQUIRE(a.connect(ag).ok());
        REQUIRE(b.connect(bg).ok());
        alice = std::make_unique<relay_client>(a, "r@test", true);
        bob = std::make_unique<relay_client>(b, "r@test", nullptr);
        kvs = grant_of(a, "bob", "kvs");
    }
};

}  // namespace
