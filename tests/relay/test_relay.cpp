// The relay (kith/relay.hpp) with real kith nodes: Alice registered through
// a relay_client, Bob dialling her through his, CURVE, the membership proof
// and every envelope end to end through the relay's data plane; a relay
// that tampers with the bytes it forwards; and the data plane's refusals,
// spoken to by a raw SOCKS5 client.
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
#include "relay_loop.hpp"  // services/src: the relay client's splice loop

using namespace kith;
using namespace std::chrono_literals;

namespace {

node_options opts(const std::string& name, const std::filesystem::path& dir,
                  const std::string& cookie = "relay-test-cookie") {
    std::filesystem::create_directories(dir);
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
    node_options o;
    o.name = name;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = dir;
    o.net.cookie = cookie;
    o.net.log = [](const log_record&) {};
    return o;
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

int socks_request(const std::string& relay_ep, const std::string& name) {
    sockaddr_in sa = addr_of(relay_ep);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{3, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
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
    ::close(fd);
    return got >= 4 ? buf[3] : -1;  // choice (2 bytes) then reply: VER, REP
}

// "127.0.0.1:PORT" with a port that was free a moment ago.
std::string free_endpoint() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &sl);
    ::close(fd);
    return "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
}

// Waits until `f()` holds, at most `t`.
template <class F>
bool eventually(F f, std::chrono::milliseconds t = 10s) {
    auto deadline = std::chrono::steady_clock::now() + t;
    while (!f()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(20ms);
    }
    return true;
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
    explicit world(relay_options ro = {}) : rel(r, with_loopback(ro)) {
        a.add_service(services::make_kvs());
        REQUIRE(a.connect(r.endpoint(), r.key()).ok());
        REQUIRE(b.connect(r.endpoint(), r.key()).ok());
        alice = std::make_unique<relay_client>(a, "r@test", true);
        bob = std::make_unique<relay_client>(b, "r@test", nullptr);
    }
    static relay_options with_loopback(relay_options o) {
        o.listen = "127.0.0.1:0";
        return o;
    }
    // Bob's dial: [token, endpoint, key].
    std::string dial_token() {
        auto d = b.call("r@test", "relay", "dial", arr("a@test"));
        REQUIRE(d.ok());
        REQUIRE(d->size() == 3);
        return *d->at(0)->as_string();
    }
};

}  // namespace

TEST_CASE("relay: Bob calls Alice's kvs through the relay, end to end", "[relay]") {
    world w;
    auto up = w.bob->connect("a@test", w.a.key());
    REQUIRE(up.ok());
    CHECK(*up == "a@test");
    REQUIRE(w.b.call("a@test", "kvs", "store", arr("weather", "fine")).ok());
    auto v = w.b.call("a@test", "kvs", "lookup", arr("weather"));
    REQUIRE(v.ok());
    CHECK(*v == arr("ok", "fine"));
    auto c = w.rel.counters();
    CHECK(c.sessions == 1);
    CHECK(c.registrations == 1);
    CHECK(c.bytes_forwarded > 100);
}

TEST_CASE("relay: a node that cannot prove the expected key is never connected", "[relay]") {
    world w;
    // Bob expects another key for a@test (say the relay lied in its directory):
    // CURVE fails end to end, the connect fails, nothing is called.
    auto wrong = keypair::generate().pub;
    auto up = w.bob->connect("a@test", wrong, 2s);
    REQUIRE_FALSE(up.ok());
    CHECK_FALSE(w.b.call("a@test", "kvs", "keys", arr(), 500ms).ok());
}

namespace {

// Bob stores value-0, value-1, ... at Alice through a relay that tampers
// (tamperer) with each stream from offset 3000 on (the handshake, about
// 1.2 kB, goes through). The link must fail, and what Alice executed is
// exactly what Bob sent, once each, in order: nothing forged, replayed or
// reordered is ever delivered.
void check_tampering_fails(tamper mode) {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay_options ro;
    // A free port for the relay, so the tamperer can point at it first; both
    // nodes reach the relay's data plane through the tamperer.
    std::string relay_ep = free_endpoint();
    auto mitm = std::make_unique<tamperer>(relay_ep, mode, 3000);
    ro.listen = relay_ep;
    ro.advertise = mitm->endpoint;
    relay rel(r, ro);
    node a(opts("a@test", dir.path / "a"));
    node b(opts("b@test", dir.path / "b"));
    auto kvs = std::make_shared<std::vector<std::string>>();
    auto kvs_mu = std::make_shared<std::mutex>();
    service s("store");
    s.function("put", [kvs, kvs_mu](std::string v) {
        std::lock_guard lk(*kvs_mu);
        kvs->push_back(v);
        return true;
    });
    a.add_service(std::move(s));
    REQUIRE(a.connect(r.endpoint(), r.key()).ok());
    REQUIRE(b.connect(r.endpoint(), r.key()).ok());
    relay_client alice(a, "r@test", true);
    relay_client bob(b, "r@test", nullptr);
    auto up = bob.connect("a@test", a.key(), 3s);
    int ok_calls = 0, failed = 0;
    if (up.ok()) {
        for (int i = 0; i < 200 && failed == 0; ++i) {
            auto r2 = b.call("a@test", "store", "put", arr("value-" + std::to_string(i)), 1s);
            r2.ok() ? ++ok_calls : ++failed;
        }
    }
    CHECK(mitm->tampered.load() >= 1);
    CHECK((!up.ok() || failed >= 1));  // the link failed
    std::lock_guard lk(*kvs_mu);
    INFO("executed " << kvs->size() << ", answered " << ok_calls);
    for (std::size_t i = 0; i < kvs->size(); ++i) CHECK((*kvs)[i] == "value-" + std::to_string(i));
    CHECK(kvs->size() <= static_cast<std::size_t>(ok_calls) + 1);
}

}  // namespace

TEST_CASE("relay: a relay that flips a byte causes a failed link, never a forged message", "[relay]") {
    check_tampering_fails(tamper::flip);
}

TEST_CASE("relay: a relay that replays a frame causes a failed link, nothing is delivered twice", "[relay]") {
    check_tampering_fails(tamper::replay);
}

TEST_CASE("relay: a relay that reorders frames causes a failed link, nothing is delivered out of order", "[relay]") {
    check_tampering_fails(tamper::reorder);
}

TEST_CASE("relay: the directory lists registered nodes with their keys", "[relay]") {
    world w;
    auto dir = w.bob->directory();
    REQUIRE(dir.ok());
    REQUIRE(dir->size() == 1);
    CHECK(*dir->at(0)->at(0)->as_string() == "a@test");
    CHECK(*dir->at(0)->at(1)->as_string() == w.a.key().z85());
}

TEST_CASE("relay: dial errors are exact", "[relay]") {
    world w;
    auto d = w.bob->connect("nobody@test", w.a.key());
    REQUIRE_FALSE(d.ok());
    CHECK(d.err().code == errc::noproc);
    // The relay's own node has no link to splice.
    auto self = w.r.call("r@test", "relay", "dial", arr("a@test"));
    REQUIRE_FALSE(self.ok());
    CHECK(self.err().code == errc::bad_args);
}

TEST_CASE("relay: a name stays bound to the key that registered it", "[relay]") {
    world w;
    // Alice leaves; an impostor with another key takes her node name and
    // connects to the relay: it cannot register the name.
    w.alice.reset();
    w.a.stop();
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (w.rel.counters().registrations != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    REQUIRE(w.rel.counters().registrations == 0);
    node eve(opts("a@test", w.dir.path / "eve"));
    REQUIRE(eve.connect(w.r.endpoint(), w.r.key()).ok());
    pid agent = eve.spawn([](actor&, message&) {});
    auto reg = eve.call("r@test", "relay", "register", arr(agent, true));
    REQUIRE_FALSE(reg.ok());
    CHECK(reg.err().code == errc::unauthorized);
    CHECK_THROWS_AS(relay_client(eve, "r@test", true), setup_error);
    // And registering someone else's pid as one's agent is refused.
    auto other = w.b.call("r@test", "relay", "register", arr(agent, true));
    REQUIRE_FALSE(other.ok());
    CHECK(other.err().code == errc::bad_args);
}

TEST_CASE("relay: the data plane refuses unknown tokens, junk and sessions beyond a node's limit", "[relay]") {
    relay_options ro;
    ro.max_sessions_per_node = 1;
    world w(ro);
    const std::string ep = w.rel.endpoint();
    CHECK(socks_request(ep, "d-" + std::string(32, 'f') + ".kith") == 0x02);  // a token nobody was given
    CHECK(socks_request(ep, "a-" + std::string(32, 'f') + ".kith") == 0x02);  // a session nobody opened
    CHECK(socks_request(ep, "example.com") == 0x02);                          // not a relay name
    CHECK(w.rel.counters().refused >= 2);
    // One session is allowed: Bob's link. Bob dialling again gets his token
    // again, which is in use (one session per token); a third node's token
    // is refused by the node's session limit.
    REQUIRE(w.bob->connect("a@test", w.a.key()).ok());
    CHECK(socks_request(ep, "d-" + w.dial_token() + ".kith") == 0x02);
    node c(opts("c@test", w.dir.path / "c"));
    REQUIRE(c.connect(w.r.endpoint(), w.r.key()).ok());
    auto d = c.call("r@test", "relay", "dial", arr("a@test"));
    REQUIRE(d.ok());
    CHECK(*d->at(0)->as_string() != w.dial_token());  // tokens are bound to their dialler
    CHECK(socks_request(ep, "d-" + *d->at(0)->as_string() + ".kith") == 0x04);
    CHECK(w.rel.counters().sessions == 1);
}

TEST_CASE("relay: a dialler that disconnects from the relay loses its sessions", "[relay]") {
    world w;
    REQUIRE(w.bob->connect("a@test", w.a.key()).ok());
    REQUIRE(w.rel.counters().sessions == 1);
    w.bob.reset();
    w.b.stop();  // Bob's control link ends: his session is closed
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (w.rel.counters().sessions != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    CHECK(w.rel.counters().sessions == 0);
}

TEST_CASE("relay: a grantee connects through the relay with its grant, and the link comes back after the relay restarts",
          "[relay]") {
    temp_dir dir;
    const std::string node_ep = "tcp://" + free_endpoint(), data_ep = free_endpoint();
    auto relay_opts = [&] {
        auto o = opts("r@test", dir.path / "r");
        o.net.listen = node_ep;
        return o;
    };
    relay_options ro;
    ro.listen = data_ep;
    auto r = std::make_unique<node>(relay_opts());
    auto rel = std::make_unique<relay>(*r, ro);
    const public_key rkey = r->key();
    node a(opts("a@test", dir.path / "a"));
    node b(opts("b@test", dir.path / "b", "bobs-own-cookie"));  // not in Alice's cluster
    a.add_service(services::make_kvs());
    REQUIRE(a.connect(node_ep, rkey).ok());
    REQUIRE(r->connect(b.endpoint(), b.key()).ok() == false);  // another cookie: Bob is no member of r's cluster
    REQUIRE(r->set_public("relay").ok());
    REQUIRE(b.connect_visitor(node_ep, rkey).ok());
    relay_client alice(a, "r@test", true);
    relay_client bob(b, "r@test", nullptr);
    grant_spec gs;
    gs.label = "bob";
    gs.allow = {{"kvs", {"store", "lookup"}}};
    auto g = a.grant(gs);
    REQUIRE(g.ok());
    auto up = bob.connect(*g);
    REQUIRE(up.ok());
    REQUIRE(b.call("a@test", "kvs", "store", arr("k", "v")).ok());
    auto no = b.call("a@test", "kvs", "keys", arr());  // outside the grant: as on a direct link
    REQUIRE_FALSE(no.ok());
    CHECK(no.err().code == errc::unauthorized);

    // The relay's node goes away and comes back (same key, same addresses):
    // Alice registers again by herself, Bob's link comes back by itself.
    auto downs = std::make_shared<std::atomic<int>>(0), ups = std::make_shared<std::atomic<int>>(0);
    b.subscribe_nodes([downs, ups](const node_event& ev) {
        if (ev.node != "a@test") return;
        (ev.what == node_event::kind::down ? *downs : *ups) += 1;
    });
    rel.reset();
    r.reset();
    CHECK(eventually([&] { return downs->load() >= 1; }, 5s));
    r = std::make_unique<node>(relay_opts());
    REQUIRE(r->set_public("relay").ok());
    rel = std::make_unique<relay>(*r, ro);
    CHECK(eventually([&] { return rel->counters().registrations == 1; }, 10s));
    CHECK(eventually([&] { return ups->load() >= 1; }, 15s));
    auto v = b.call("a@test", "kvs", "lookup", arr("k"));
    REQUIRE(v.ok());
    CHECK(*v == arr("ok", "v"));
    CHECK(rel->counters().sessions == 1);
}

TEST_CASE("relay: grantees on both sides: Alice registers with a relay grant, Bob dials a public relay with her grant",
          "[relay]") {
    // Three clusters: the relay's owner, Alice, Bob. The relay is public
    // (anyone may dial) but only relay-grant holders register; it is bound
    // to 0.0.0.0 without an advertised address, so the nodes reach its data
    // plane at the host of their control link.
    temp_dir dir;
    node r{opts("r@test", dir.path / "r")};
    relay_options ro;
    ro.listen = "0.0.0.0:0";
    ro.strangers_may_register = false;
    relay rel(r, ro);
    REQUIRE(rel.endpoint().rfind("0.0.0.0:", 0) == 0);
    REQUIRE(r.set_public("relay").ok());
    auto ao = opts("a@test", dir.path / "a");
    ao.net.cookie = "alice-own-cookie";
    auto bo = opts("b@test", dir.path / "b");
    bo.net.cookie = "bob-own-cookie";
    node a(ao), b(bo);
    a.add_service(services::make_kvs());

    auto relay_grant = r.grant({.label = "alice", .allow = {{"relay", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(relay_grant.ok());
    REQUIRE(a.connect(*relay_grant).ok());
    relay_client alice(a, "r@test", true);

    REQUIRE(b.connect_visitor(r.endpoint(), r.key()).ok());
    // A stranger may dial but not register here.
    try {
        relay_client no(b, "r@test", true);
        FAIL("a stranger registered");
    } catch (const setup_error& e) {
        CHECK(std::string(e.what()).find("strangers dial but not register") != std::string::npos);
    }
    relay_client bob(b, "r@test", nullptr);
    auto kvs_grant = a.grant({.label = "bob", .allow = {{"kvs", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(kvs_grant.ok());
    auto up = bob.connect(*kvs_grant);
    REQUIRE(up.ok());
    CHECK(*up == "a@test");
    REQUIRE(b.call("a@test", "kvs", "store", arr("weather", "fine")).ok());
    CHECK(b.call("a@test", "kvs", "lookup", arr("weather")).value() == arr("ok", "fine"));
    // Authorization on Alice's node is the grant's, as on a direct link.
    auto echo = b.call("a@test", "echo", "echo", arr(1));
    REQUIRE_FALSE(echo.ok());
    CHECK(echo.err().code == errc::unauthorized);
    CHECK(rel.counters().sessions == 1);
    // The directory: Alice is listed (the key she registered with is her relay grant's).
    auto d = bob.directory();
    REQUIRE(d.ok());
    REQUIRE(d->size() == 1);
    CHECK(*d->at(0)->at(0) == term("a@test"));
}

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
