// Session ports (relay_options::session_ports, EXPERIMENTAL): the dialler's
// DEALER connects to the relay's port Pd, the registered node's listening
// ROUTER connects out to Pa, and the relay splices the two. What a stranger
// on a session port and a tampering path can do (nothing but deny service).
#include "relay_world.hpp"

namespace {

// Bob's dial_port: the session's "HOST:Pd".
std::string dial_port(world& w) {
    auto d = w.b.call("r@test", "relay", "dial_port", arr("a@test"));
    REQUIRE(d.ok());
    REQUIRE(d->size() == 3);
    return *d->at(1)->as_string();
}

}  // namespace

TEST_CASE("relay session ports: Bob's link goes through a session port, not a forwarder", "[relay]") {
    world w;
    REQUIRE(w.bob->connect("a@test", w.a.key()).ok());
    auto info = w.b.info("a@test");
    REQUIRE(info);
    // Straight to the relay's data-plane address, another port than its SOCKS one.
    const std::string socks = w.rel.endpoint();
    CHECK(info->endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
    CHECK(info->endpoint != "tcp://" + socks);
    REQUIRE(w.b.call("a@test", "kvs", "store", arr("k", "v")).ok());
    CHECK(w.rel.counters().sessions == 1);
}

TEST_CASE("relay session ports: a stranger on a session port first gets a failed handshake, then Bob's session works",
          "[relay]") {
    world w;
    const std::string pd = dial_port(w);
    // A stranger connects to Bob's session port before him: the relay
    // splices it to Alice's listener, whose greeting it gets (as anyone who
    // could reach her listener would); it cannot complete CURVE as anyone
    // Alice trusts, and junk ends the session.
    sockaddr_in sa = addr_of(pd);
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(::connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    CHECK(eventually([&] { return w.rel.counters().sessions == 1; }, 5s));
    timeval tv{5, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::uint8_t greeting[10] = {};
    CHECK(::recv(s, greeting, sizeof greeting, MSG_WAITALL) == 10);
    CHECK(greeting[0] == 0xff);  // ZMTP 3 signature: all a stranger learns
    const std::string junk(512, 'x');
    (void)!::send(s, junk.data(), junk.size(), MSG_NOSIGNAL);
    CHECK(eventually([&] { return w.rel.counters().sessions == 0; }, 10s));
    ::close(s);
    // Alice's node never saw a peer; Bob's own session works afterwards.
    CHECK_FALSE(w.a.info("b@test").has_value());
    auto up = w.b.connect("tcp://" + pd, w.a.key(), 10s);
    INFO((up.ok() ? std::string("up") : up.err().message()) << "; sessions " << w.rel.counters().sessions
                                                               << ", refused " << w.rel.counters().refused);
    REQUIRE(up.ok());
    REQUIRE(w.b.call("a@test", "kvs", "store", arr("k", "v")).ok());
}

TEST_CASE("relay session ports: bytes flipped on the way to a session port cause a failed link, never a forged message",
          "[relay]") {
    world w;
    const std::string pd = dial_port(w);
    tamperer mitm(pd, tamper::flip, 3000);
    int ok_calls = 0, failed = 0;
    auto up = w.b.connect("tcp://" + mitm.endpoint, w.a.key(), 3s);
    if (up.ok())
        for (int i = 0; i < 200 && failed == 0; ++i) {
            auto r = w.b.call("a@test", "kvs", "store", arr("k" + std::to_string(i), std::string(100, 'v')), 1s);
            r.ok() ? ++ok_calls : ++failed;
        }
    CHECK(mitm.tampered.load() >= 1);
    CHECK((!up.ok() || failed >= 1));
    // Whatever Alice stored, she answered (nothing forged reached her kvs).
    auto keys = w.a.call("a@test", "kvs", "keys", arr());
    REQUIRE(keys.ok());
    INFO("answered " << ok_calls << ", stored " << keys->size());
    CHECK(keys->size() <= static_cast<std::size_t>(ok_calls) + 1);
}

TEST_CASE("relay session ports: a connection from another address than its node's control link is refused",
          "[relay]") {
    world w;  // every node on 127.0.0.1
    const std::string pd = dial_port(w);
    const auto refused0 = w.rel.counters().refused;
    // From 127.0.0.2 (loopback too, another address): closed at once.
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in me{};
    me.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.2", &me.sin_addr);
    REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&me), sizeof me) == 0);
    sockaddr_in sa = addr_of(pd);
    REQUIRE(::connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    timeval tv{5, 0};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c;
    CHECK(::recv(s, &c, 1, 0) == 0);  // closed, nothing sent
    ::close(s);
    CHECK(w.rel.counters().refused == refused0 + 1);
    CHECK(w.rel.counters().sessions == 0);
    // Bob, from his control link's address, is served.
    REQUIRE(w.b.connect("tcp://" + pd, w.a.key(), 10s).ok());
    REQUIRE(w.b.call("a@test", "kvs", "store", arr("k", "v")).ok());
}

TEST_CASE("relay session ports: taken from the configured range", "[relay]") {
    relay_options ro;
    const int base = 20000 + static_cast<int>(::getpid() % 20000);
    ro.session_port_min = static_cast<std::uint16_t>(base);
    ro.session_port_max = static_cast<std::uint16_t>(base + 7);
    world w(ro);
    REQUIRE(w.bob->connect("a@test", w.a.key()).ok());
    auto info = w.b.info("a@test");
    REQUIRE(info);
    const int port = std::stoi(info->endpoint.substr(info->endpoint.rfind(':') + 1));
    CHECK(port >= base);
    CHECK(port <= base + 7);
    REQUIRE(w.b.call("a@test", "kvs", "store", arr("k", "v")).ok());
}

// A link whose pair closed was moved "while this client lives": a target
// that left for good (it unregistered) kept the dialler's client asking the
// relay every 5 s forever, and nobody learnt why the link did not come back.
TEST_CASE("relay session ports: a link the client cannot move within repair_timeout is given up, saying why",
          "[relay]") {
    world w;
    node c(opts("c@test", w.dir.path / "c"));
    REQUIRE(c.connect(w.r.endpoint(), w.r.key()).ok());
    relay_client carol(c, "r@test", nullptr, relay_client_options{.repair_timeout = 2s});
    REQUIRE(carol.connect("a@test", w.a.key()).ok());
    REQUIRE(c.call("a@test", "kvs", "store", arr("k", "v")).ok());
    CHECK_FALSE(carol.gave_up("a@test"));
    // Alice leaves the relay (her node stays up): her pair closes, Carol's
    // client asks for a new one, the relay says she is not here.
    REQUIRE(w.a.call("r@test", "relay", "unregister", arr()).ok());
    std::optional<error> why;
    REQUIRE(eventually([&] { return (why = carol.gave_up("a@test")).has_value(); }, 20s));
    INFO(why->message());
    CHECK(why->code == errc::timeout);
    CHECK_THAT(why->detail, Catch::Contains("no node named a@test is registered at this relay"));
    // connect again: asked anew (she is still away: the relay's answer).
    auto again = carol.connect("a@test", w.a.key(), 2000ms);
    REQUIRE_FALSE(again.ok());
    CHECK(again.err().code == errc::noproc);
    CHECK_FALSE(carol.gave_up("a@test"));
}

TEST_CASE("relay session ports: a relay client's options out of bounds name the option", "[relay]") {
    for (auto t : {std::chrono::milliseconds(999), std::chrono::milliseconds(7LL * 86400000 + 1000)}) {
        relay_client_options o{.repair_timeout = t};
        auto r = o.check();
        REQUIRE_FALSE(r.ok());
        CHECK(r.code() == errc::badarg);
        CHECK_THAT(r.err().detail, Catch::Contains("relay client option repair_timeout (Python repair_timeout=)"));
    }
    world w;
    CHECK_THROWS_AS(relay_client(w.b, "r@test", nullptr, relay_client_options{.repair_timeout = 0ms}), setup_error);
}
