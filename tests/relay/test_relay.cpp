// The relay (kith/relay.hpp) with real kith nodes: Alice registered through
// a relay_client, Bob dialling her through his, CURVE, the membership proof
// and every envelope end to end through the relay's data plane; a relay
// that tampers with the bytes it forwards; and the data plane's refusals,
// spoken to by a raw SOCKS5 client.
#include "relay_world.hpp"


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
    ro.session_ports = false;  // the SOCKS data plane and the forwarders
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
    ro.session_ports = false;  // the SOCKS data plane and the forwarders
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

TEST_CASE("relay: a grantee connects through the relay with its grant, and the link comes back after the relay is away 4 s and restarts, its service after its node",
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
    // Forwarders redial the relay after it restarts; a link through a
    // session port is moved to the new relay's ports.
    ro.session_ports = GENERATE(false, true);
    INFO("session ports " << ro.session_ports);
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
    CHECK_FALSE(alice.registration_error().has_value());
    rel.reset();
    r.reset();
    CHECK(eventually([&] { return downs->load() >= 1; }, 5s));
    CHECK(eventually([&] { auto e = alice.registration_error(); return e && e->code == errc::nodedown; }, 5s));
    // The relay is away for a while: meanwhile Bob's node dials the
    // forwarder again and again (100 ms backing off to 1 s), which cannot
    // reach the relay. A forwarder that closed those connections at once
    // ended Bob's link for good after three (as a wrong server key).
    std::this_thread::sleep_for(4s);
    // The relay's node is back before its relay service is (a relay that
    // takes its time to start, e.g. loading kernel forwarding): Alice's
    // first registration is refused, and she asks again until it is taken.
    r = std::make_unique<node>(relay_opts());
    REQUIRE(r->set_public("relay").ok());
    REQUIRE(eventually([&] { auto e = alice.registration_error(); return e && e->code == errc::no_such_service; }, 10s));
    rel = std::make_unique<relay>(*r, ro);
    CHECK(eventually([&] { return rel->counters().registrations == 1; }, 10s));
    CHECK(eventually([&] { return !alice.registration_error().has_value(); }, 5s));
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
    if (!up.ok()) FAIL(up.err().message());
    CHECK(*up == "a@test");
    REQUIRE(b.call("a@test", "kvs", "store", arr("weather", "fine")).ok());
    CHECK(b.call("a@test", "kvs", "lookup", arr("weather")).value() == arr("ok", "fine"));
    // Authorization on Alice's node is the grant's, as on a direct link.
    auto echo = b.call("a@test", "echo", "echo", arr(1));
    REQUIRE_FALSE(echo.ok());
    CHECK(echo.err().code == errc::unauthorized);
    CHECK(rel.counters().sessions == 1);
    // The directory: Alice is listed. She registered with a relay grant: the
    // relay knows only that grant's key, which it does not show as hers.
    auto d = bob.directory();
    REQUIRE(d.ok());
    REQUIRE(d->size() == 1);
    REQUIRE(d->at(0)->size() == 5);
    CHECK(*d->at(0)->at(0) == term("a@test"));
    CHECK(*d->at(0)->at(1) == term(""));
    CHECK(*d->at(0)->at(2) == term(""));
    CHECK(*d->at(0)->at(4) == term("grant"));
    // So does dial.
    auto dl = b.call("r@test", "relay", "dial", arr("a@test"));
    REQUIRE(dl.ok());
    CHECK(*dl->at(2) == term(""));
}
