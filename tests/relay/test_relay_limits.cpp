// Limits the relay holds per registrant and the lifetime of session port
// pairs: what a registrant with several names, or a dialler that asks for
// ports and never uses them, can hold at the relay.
#include <poll.h>

#include "relay_world.hpp"

namespace {
// A relay that lets one relayed session at a time reach each registered node.
relay_options one_session_per_node(bool session_ports = true) {
    relay_options o;
    o.max_sessions_per_node = 1;
    o.session_ports = session_ports;
    return o;
}
}  // namespace

// A registrant's session limit is its key's (members, strangers) or its
// relay grant's, whatever names it registers: it counted per name, so a
// grant of 1 session that registered 2 names took 2 sessions (4 names: 4).
TEST_CASE("relay limits: a key's session limit as a registrant counts every name it registers", "[relay]") {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay rel(r, on_loopback(one_session_per_node()));
    { node first(opts("k0@test", dir.path / "k")); }  // one key directory: one key, two names
    node k1(opts("k1@test", dir.path / "k")), k2(opts("k2@test", dir.path / "k"));
    for (node* k : {&k1, &k2}) {
        k->add_service(services::make_kvs());
        REQUIRE(k->connect(r.endpoint(), r.key()).ok());
    }
    REQUIRE(k1.key().z85() == k2.key().z85());
    relay_client c1(k1, "r@test", false), c2(k2, "r@test", false);
    node b(opts("b@test", dir.path / "b")), c(opts("c@test", dir.path / "c"));
    REQUIRE(b.connect(r.endpoint(), r.key()).ok());
    REQUIRE(c.connect(r.endpoint(), r.key()).ok());
    relay_client bob(b, "r@test", nullptr), carol(c, "r@test", nullptr);
    REQUIRE(bob.connect("k1@test", k1.key()).ok());
    auto up = carol.connect("k2@test", k2.key(), 1500ms);
    REQUIRE_FALSE(up.ok());
    INFO(up.err().message());
    CHECK(up.err().code == errc::overloaded);
    CHECK(rel.counters().sessions == 1);
    CHECK(b.call("k1@test", "kvs", "keys", arr()).ok());
}

TEST_CASE("relay limits: a dialler told 'overloaded' through a forwarder stops asking the full relay", "[relay]") {
    // Carol's node would otherwise keep dialling her forwarder, and the
    // forwarder (which holds each connection while the relay refuses) ask
    // the relay again every second, for nothing she still waits for.
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay rel(r, on_loopback(one_session_per_node(/*session_ports=*/false)));  // the forwarders
    node a(opts("a@test", dir.path / "a")), b(opts("b@test", dir.path / "b")), c(opts("c@test", dir.path / "c"));
    a.add_service(services::make_kvs());
    for (node* x : {&a, &b, &c}) REQUIRE(x->connect(r.endpoint(), r.key()).ok());
    relay_client alice(a, "r@test", false), bob(b, "r@test", nullptr), carol(c, "r@test", nullptr);
    REQUIRE(bob.connect("a@test", a.key()).ok());
    // connect answers at its timeout, `overloaded` once the forwarder saw
    // the relay's refusal (4 s: time for the dial and that refusal on a
    // loaded machine; 1.5 s was not, once, in a full parallel run).
    auto up = carol.connect("a@test", a.key(), 4000ms);
    REQUIRE_FALSE(up.ok());
    INFO(up.err().message());
    CHECK(up.err().code == errc::overloaded);
    // Nothing more from Carol: the relay's refusals stop growing (a
    // forwarder connection in progress may still be refused once).
    std::this_thread::sleep_for(1500ms);
    const auto refused = rel.counters().refused;
    std::this_thread::sleep_for(3s);
    CHECK(rel.counters().refused == refused);
    CHECK(rel.counters().sessions == 1);
    CHECK(b.call("a@test", "kvs", "keys", arr()).ok());
}

TEST_CASE("relay limits: a relay grant's session limit as a registrant counts every name registered with it",
          "[relay]") {
    relay_and_grant w;
    REQUIRE(w.rel.set_grant_limits("alice", {.names = {"a1@test", "a2@test"}, .max_sessions = 1}).ok());
    // Two nodes of Alice's (their own keys and cookies), both with her relay grant.
    node a1(opts("a1@test", w.dir.path / "a1", "alice-1")), a2(opts("a2@test", w.dir.path / "a2", "alice-2"));
    for (node* a : {&a1, &a2}) {
        a->add_service(services::make_kvs());
        REQUIRE(a->connect(w.ag).ok());
    }
    relay_client r1(a1, "r@test", false), r2(a2, "r@test", false);
    auto b = std::make_unique<node>(opts("b@test", w.dir.path / "b"));
    node c(opts("c@test", w.dir.path / "c"));
    REQUIRE(b->connect(w.r.endpoint(), w.r.key()).ok());
    REQUIRE(c.connect(w.r.endpoint(), w.r.key()).ok());
    auto bob = std::make_unique<relay_client>(*b, "r@test", nullptr);
    relay_client carol(c, "r@test", nullptr);
    auto kb = a1.grant({.label = "bob", .allow = {{"kvs", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    auto kc = a2.grant({.label = "carol", .allow = {{"kvs", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(bob->connect(*kb).ok());
    auto up = carol.connect(*kc, 1500ms);
    REQUIRE_FALSE(up.ok());
    INFO(up.err().message());
    CHECK(up.err().code == errc::overloaded);
    CHECK(w.rel.counters().sessions == 1);
    // Bob's session ends: Carol's may start.
    bob.reset();
    b.reset();
    REQUIRE(eventually([&] { return w.rel.counters().sessions == 0; }, 10s));
    CHECK(carol.connect(*kc, 5000ms).ok());
}

namespace {

// Two adjacent ports free a moment ago (a session port range of two: Pd and
// Pa of one pair), below the ephemeral range (free_ports.hpp): there
// dialled_within could not bind one taken meanwhile as a local port.
int two_free_ports() { return kith_test::free_ports_below_ephemeral(2); }

// Whether anyone connects to 127.0.0.1:`ports` within `t` (it listens there).
bool dialled_within(std::vector<int> ports, std::chrono::milliseconds t) {
    std::vector<pollfd> fds;
    for (int port : ports) {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in sa = addr_of("127.0.0.1:" + std::to_string(port));
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        REQUIRE(::listen(fd, 4) == 0);
        fds.push_back({fd, POLLIN, 0});
    }
    const int n = ::poll(fds.data(), fds.size(), static_cast<int>(t.count()));
    for (auto& p : fds) ::close(p.fd);
    return n > 0;
}

}  // namespace

// A port pair lived until its dialler or node left: a dialler asking for
// pairs it never used held them (two listening ports each, and the node's
// connection to Pa) for as long as it stayed.
TEST_CASE("relay limits: a session port pair its dialler never uses is closed, and its node stops dialling it",
          "[relay]") {
    relay_options ro;
    ro.session_port_idle = 1000ms;
    const int base = two_free_ports();
    ro.session_port_min = static_cast<std::uint16_t>(base);
    ro.session_port_max = static_cast<std::uint16_t>(base + 1);
    world w(ro);
    auto d = w.b.call("r@test", "relay", "dial_port", arr("a@test"));
    REQUIRE(d.ok());
    const std::string pd = *d->at(1)->as_string();
    const int pa = std::stoi(pd.substr(pd.rfind(':') + 1)) == base ? base + 1 : base;
    // Counted once the data plane took the pair (its next tick: it read 0
    // before that, and Pa was still open, 1 run in 48 under load), then gone.
    REQUIRE(eventually([&] { return w.rel.counters().port_pairs == 1; }, 5s));
    REQUIRE(eventually([&] { return w.rel.counters().port_pairs == 0; }, 10s));
    // Pa is closed and Alice's listener no longer dials it (libzmq redials
    // within a second while it is asked to): a window of 2.5 s without a
    // dial comes once she has read the relay's notice, which may lag the
    // count under load.
    CHECK(eventually([&] { return !dialled_within({pa}, 2500ms); }, 15s));
    // Bob may dial again: a new pair, and his link through it works.
    REQUIRE(w.bob->connect("a@test", w.a.key()).ok());
    CHECK(w.rel.counters().port_pairs == 1);
    REQUIRE(w.b.call("a@test", "kvs", "store", arr("k", "v")).ok());
}

TEST_CASE("relay limits: a finished session's port pair is closed, a link in use keeps its pair", "[relay]") {
    relay_options ro;
    ro.session_port_idle = 1000ms;
    world w(ro);
    REQUIRE(w.bob->connect("a@test", w.a.key()).ok());
    auto info = w.b.info("a@test");
    REQUIRE(info);
    // In use (idle longer than session_port_idle between calls): kept.
    REQUIRE(eventually([&] { return w.rel.counters().port_pairs == 1; }, 5s));
    std::this_thread::sleep_for(1500ms);  // longer than session_port_idle
    REQUIRE(w.b.call("a@test", "kvs", "store", arr("k", "v")).ok());
    CHECK(w.rel.counters().port_pairs == 1);
    CHECK(w.rel.counters().sessions == 1);
    // Bob leaves that link: the session ends and, a second later, the pair
    // (his client does not move a link he left to a new pair).
    w.bob->disconnect("a@test");
    REQUIRE(eventually([&] { return w.rel.counters().sessions == 0; }, 10s));
    REQUIRE(eventually([&] { return w.rel.counters().port_pairs == 0; }, 10s));
}

// A node's listener redialled a session port it could not reach (a
// firewall between it and the relay's port) until its link to the relay
// dropped. Here Alice's control link comes from 127.0.0.2 (the relay dialled
// her there) and her listener from 127.0.0.1: the port refuses each of its
// connections, as if they never arrived.
TEST_CASE("relay limits: a node that cannot reach its session port stops dialling it and the dialler uses a forwarder",
          "[relay]") {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay_options ro;
    ro.listen = "127.0.0.1:0";
    ro.pair_timeout = 1500ms;
    const int base = two_free_ports();
    ro.session_port_min = static_cast<std::uint16_t>(base);
    ro.session_port_max = static_cast<std::uint16_t>(base + 1);
    relay rel(r, ro);
    auto ao = opts("a@test", dir.path / "a");
    ao.net.listen = "tcp://127.0.0.2:0";
    node a(ao);
    a.add_service(services::make_kvs());
    REQUIRE(r.connect(a.endpoint(), a.key()).ok());
    REQUIRE(eventually([&] { return a.info("r@test").has_value(); }, 5s));
    relay_client alice(a, "r@test", false);
    node b(opts("b@test", dir.path / "b"));
    REQUIRE(b.connect(r.endpoint(), r.key()).ok());
    relay_client bob(b, "r@test", nullptr);
    // Half the time on the session port, then a forwarder.
    REQUIRE(bob.connect("a@test", a.key(), 6000ms).ok());
    REQUIRE(b.call("a@test", "kvs", "store", arr("k", "v")).ok());
    CHECK(rel.counters().refused > 0);  // Alice's listener at Pa
    REQUIRE(eventually([&] { return rel.counters().port_pairs == 0; }, 10s));
    // Closed, and she was told: her listener no longer dials Pa (base + 1:
    // Pd is opened first; libzmq redials within a second while asked to).
    CHECK(eventually([&] { return !dialled_within({base + 1}, 2500ms); }, 15s));
    CHECK(b.call("a@test", "kvs", "lookup", arr("k")).ok());
}

// dial_port_agent: the relay messages the agent when the pair closes, so a
// caller must not name anyone else's pid (the relay would send for it), and
// asking again for a pair never holds more than the limits allow.
TEST_CASE("relay limits: a dialler's agent for port notices must be a pid of its own node", "[relay]") {
    world w;
    const pid alices = w.a.spawn([](actor&, message&) {});
    auto d = w.b.call("r@test", "relay", "dial_port_agent", arr("a@test", alices));
    REQUIRE_FALSE(d.ok());
    INFO(d.err().message());
    CHECK(d.err().code == errc::bad_args);
    CHECK(w.rel.counters().port_pairs == 0);
    // A node outside the relay's cluster with a grant, but not for the
    // relay: the service is not its to call.
    w.r.add_service(services::make_kvs());
    auto kg = w.r.grant({.label = "x", .allow = {{"kvs", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(kg.ok());
    node x(opts("x@test", w.dir.path / "x", "another-cookie"));
    REQUIRE(x.connect(*kg).ok());
    const pid xs = x.spawn([](actor&, message&) {});
    auto s = x.call("r@test", "relay", "dial_port_agent", arr("a@test", xs));
    REQUIRE_FALSE(s.ok());
    CHECK(s.err().code == errc::unauthorized);
    CHECK(w.rel.counters().port_pairs == 0);
    w.a.send_exit(alices, term("kill"));
    x.send_exit(xs, term("kill"));
}

TEST_CASE("relay limits: new pairs for a link the relay closed stay within the dialler's port pairs", "[relay]") {
    relay_options ro;
    ro.max_sessions_per_dialler = 1;
    world w(ro);
    node c(opts("c@test", w.dir.path / "c"));
    c.add_service(services::make_kvs());
    REQUIRE(c.connect(w.r.endpoint(), w.r.key()).ok());
    relay_client carol(c, "r@test", true);
    REQUIRE(w.bob->connect("a@test", w.a.key()).ok());
    REQUIRE(eventually([&] { return w.rel.counters().port_pairs == 1; }, 5s));
    // Asking again for the same node: the same pair, never a second.
    auto again = w.b.call("r@test", "relay", "dial_port", arr("a@test"));
    REQUIRE(again.ok());
    CHECK(w.rel.counters().port_pairs == 1);
    // Another node while his one pair is held: no second pair (bad_args:
    // relay_client then uses a forwarder, which the session limit bounds).
    const pid bs = w.b.spawn([](actor&, message&) {});
    auto other = w.b.call("r@test", "relay", "dial_port_agent", arr("c@test", bs));
    REQUIRE_FALSE(other.ok());
    CHECK(other.err().code == errc::overloaded);
    CHECK(w.rel.counters().port_pairs == 1);
    // Alice's link to the relay drops (her pair goes with her registration)
    // and comes back (her client registers again): Bob's client moves his
    // link to a new pair by itself; the old one is gone, never two held.
    const std::string to_relay = w.a.info("r@test")->endpoint;
    w.a.disconnect(to_relay);
    REQUIRE(eventually([&] { return w.rel.counters().port_pairs == 0; }, 5s));
    REQUIRE(w.a.connect(w.r.endpoint(), w.r.key()).ok());
    std::size_t most = 0;
    REQUIRE(eventually(
        [&] {
            most = std::max<std::size_t>(most, w.rel.counters().port_pairs);
            return w.b.call("a@test", "kvs", "store", arr("k", "v"), 500ms).ok() && w.rel.counters().sessions == 1;
        },
        20s));
    CHECK(most <= 1);
    CHECK(w.rel.counters().port_pairs == 1);
    w.b.send_exit(bs, term("kill"));
}

// An option out of bounds is named by its kith relay flag and by the
// keyword Python's serve_relay takes, which is not always the C++ field's
// name: told "Python max_tokens_per_dialler=", a user got "no option
// max_tokens_per_dialler" (review, session 25).
TEST_CASE("relay limits: an option out of bounds names the flag and the keyword Python's serve_relay takes",
          "[relay]") {
    struct one {
        void (*set)(relay_options&);
        const char* says;
    };
    const one cases[] = {
        {[](relay_options& o) { o.max_sessions_per_node = 0; }, "(kith relay --max-sessions N, Python max_sessions=)"},
        {[](relay_options& o) { o.max_sessions_per_dialler = 0; },
         "(kith relay --max-dialler-sessions N, Python max_dialler_sessions=)"},
        {[](relay_options& o) { o.max_tokens_per_dialler = 0; }, "(kith relay --max-tokens N, Python max_tokens=)"},
        {[](relay_options& o) { o.max_names_per_key = 0; }, "(kith relay --max-names N, Python max_names=)"},
        {[](relay_options& o) { o.max_connections = 0; }, "(kith relay --max-connections N, Python max_connections=)"},
        {[](relay_options& o) { o.session_port_min = 5000, o.session_port_max = 4000; },
         "(kith relay --session-ports MIN-MAX, Python session_ports=)"},
        {[](relay_options& o) { o.pair_timeout = std::chrono::milliseconds(0); },
         "(kith relay --pair-timeout SECONDS, Python pair_timeout=)"},
        {[](relay_options& o) { o.dead_peer_timeout = std::chrono::milliseconds(500); },
         "(kith relay --dead-peer-timeout SECONDS, Python dead_peer_timeout=) is 500 ms: it must be from 1 s to 900 s"},
        {[](relay_options& o) { o.dead_peer_timeout = std::chrono::milliseconds(901000); },
         "(kith relay --dead-peer-timeout SECONDS, Python dead_peer_timeout=) is 901 s"},
    };
    for (auto& c : cases) {
        relay_options o;
        c.set(o);
        auto r = o.check();
        REQUIRE_FALSE(r.ok());
        CHECK(r.code() == errc::badarg);
        CHECK_THAT(r.err().detail, Catch::Contains(c.says));
    }
}

// unregister ended the registration but left the port pairs to that node
// open: its diallers' links went on through a node that had left, and
// nobody was told. Someone else's unregister must not touch them (it acts
// for its caller only).
TEST_CASE("relay limits: a node that unregisters closes the port pairs to it, and its diallers are told 'gone'",
          "[relay]") {
    std::mutex mu;
    std::vector<std::string> told;  // the reasons Bob's agent was given (declared first: outlives his node)
    world w;
    const pid bs = w.b.spawn([&](actor&, message& m) {
        std::lock_guard lk(mu);
        if (m.body.size() == 4 && m.body.at(3)->is_string()) told.push_back(*m.body.at(3)->as_string());
    });
    auto d = w.b.call("r@test", "relay", "dial_port_agent", arr("a@test", bs));
    REQUIRE(d.ok());
    const std::string pd = *d->at(1)->as_string();
    REQUIRE(eventually([&] { return w.rel.counters().port_pairs == 1; }, 5s));
    // Eve, a member under another name, unregisters: only hers (none).
    node e(opts("e@test", w.dir.path / "e"));
    REQUIRE(e.connect(w.r.endpoint(), w.r.key()).ok());
    REQUIRE(e.call("r@test", "relay", "unregister", arr()).ok());
    auto same = w.b.call("r@test", "relay", "dial_port_agent", arr("a@test", bs));
    REQUIRE(same.ok());
    CHECK(*same->at(1)->as_string() == pd);  // the same pair: still open
    // Alice unregisters: her pair closes and Bob's agent is told why.
    REQUIRE(w.a.call("r@test", "relay", "unregister", arr()).ok());
    REQUIRE(eventually(
        [&] {
            std::lock_guard lk(mu);
            return !told.empty();
        },
        10s));
    {
        std::lock_guard lk(mu);
        CHECK(told == std::vector<std::string>{"gone"});
    }
    REQUIRE(eventually([&] { return w.rel.counters().port_pairs == 0; }, 10s));
    // Asking again: she is not registered (no new pair).
    auto again = w.b.call("r@test", "relay", "dial_port_agent", arr("a@test", bs));
    REQUIRE_FALSE(again.ok());
    INFO(again.err().message());
    CHECK(again.err().code == errc::noproc);
    CHECK(w.rel.counters().port_pairs == 0);
    w.b.send_exit(bs, term("kill"));
}
