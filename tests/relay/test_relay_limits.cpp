// Limits the relay holds per registrant and the lifetime of session port
// pairs: what a registrant with several names, or a dialler that asks for
// ports and never uses them, can hold at the relay.
#include "relay_world.hpp"

namespace {

relay_options on_loopback(relay_options o = {}) {
    o.listen = "127.0.0.1:0";
    return o;
}

}  // namespace

// A registrant's session limit is its key's (members, strangers) or its
// relay grant's, whatever names it registers: it counted per name, so a
// grant of 1 session that registered 2 names took 2 sessions (4 names: 4).
TEST_CASE("relay limits: a key's session limit as a registrant counts every name it registers", "[relay]") {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay rel(r, on_loopback([] {
                  relay_options o;
                  o.max_sessions_per_node = 1;
                  return o;
              }()));
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

TEST_CASE("relay limits: a relay grant's session limit as a registrant counts every name registered with it",
          "[relay]") {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay rel(r, on_loopback());
    auto ag = r.grant({.label = "alice", .allow = {{"relay", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(ag.ok());
    REQUIRE(rel.set_grant_limits("alice", {.names = {"a1@test", "a2@test"}, .max_sessions = 1}).ok());
    // Two nodes of Alice's (their own keys and cookies), both with her relay grant.
    node a1(opts("a1@test", dir.path / "a1", "alice-1")), a2(opts("a2@test", dir.path / "a2", "alice-2"));
    for (node* a : {&a1, &a2}) {
        a->add_service(services::make_kvs());
        REQUIRE(a->connect(*ag).ok());
    }
    relay_client r1(a1, "r@test", false), r2(a2, "r@test", false);
    auto b = std::make_unique<node>(opts("b@test", dir.path / "b"));
    node c(opts("c@test", dir.path / "c"));
    REQUIRE(b->connect(r.endpoint(), r.key()).ok());
    REQUIRE(c.connect(r.endpoint(), r.key()).ok());
    auto bob = std::make_unique<relay_client>(*b, "r@test", nullptr);
    relay_client carol(c, "r@test", nullptr);
    auto kb = a1.grant({.label = "bob", .allow = {{"kvs", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    auto kc = a2.grant({.label = "carol", .allow = {{"kvs", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(bob->connect(*kb).ok());
    auto up = carol.connect(*kc, 1500ms);
    REQUIRE_FALSE(up.ok());
    INFO(up.err().message());
    CHECK(up.err().code == errc::overloaded);
    CHECK(rel.counters().sessions == 1);
    // Bob's session ends: Carol's may start.
    bob.reset();
    b.reset();
    REQUIRE(eventually([&] { return rel.counters().sessions == 0; }, 10s));
    CHECK(carol.connect(*kc, 5000ms).ok());
}
