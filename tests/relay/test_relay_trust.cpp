// The relay's own trust (issue 16): what its directory tells, the name
// bindings it keeps across restarts, the limits of each relay grant, and
// what a revoked relay grant leaves behind (nothing).
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "kith/builtin.hpp"
#include "kith/node.hpp"
#include "kith/relay.hpp"
#include "kith_catch.hpp"
#include "relay_world.hpp"

namespace {

std::vector<std::string> strings_of(const term& list) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < list.size(); ++i)
        if (list.at(i)->is_string()) out.push_back(*list.at(i)->as_string());
    return out;
}

}  // namespace

TEST_CASE("relay directory: each listed node's services and fingerprint, never an unlisted one", "[relay]") {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay rel(r, on_loopback());
    node a(opts("a@test", dir.path / "a")), c(opts("c@test", dir.path / "c")), b(opts("b@test", dir.path / "b"));
    a.add_service(services::make_kvs());
    a.add_service(services::make_echo());
    a.add_service(services::make_grant_admin(a));  // an admin service: never listed
    c.add_service(services::make_kvs());
    for (node* n : {&a, &b, &c}) REQUIRE(n->connect(r.endpoint(), r.key()).ok());
    relay_client alice(a, "r@test", true);
    relay_client carol(c, "r@test", false);  // registered, unlisted
    relay_client bob(b, "r@test", nullptr);
    auto d = bob.directory();
    REQUIRE(d.ok());
    REQUIRE(d->size() == 1);
    const term& row = *d->at(0);
    REQUIRE(row.size() == 5);
    CHECK(*row.at(0) == term("a@test"));
    CHECK(*row.at(1) == term(a.key().z85()));  // a member: its node key, which its handshake proved
    CHECK(*row.at(2) == term(a.key().fingerprint()));
    CHECK(strings_of(*row.at(3)) == std::vector<std::string>{"echo", "kvs"});
    CHECK(*row.at(4) == term("member"));
}

TEST_CASE("relay name bindings: after the relay restarts, another key still cannot take Alice's name", "[relay]") {
    temp_dir dir;
    auto r = std::make_unique<node>(opts("r@test", dir.path / "r"));
    auto rel = std::make_unique<relay>(*r, on_loopback());
    {
        node a(opts("a@test", dir.path / "a"));
        REQUIRE(a.connect(r->endpoint(), r->key()).ok());
        relay_client alice(a, "r@test", true);
    }
    // The relay goes away and comes back (same key directory).
    rel.reset();
    r.reset();
    auto file = dir.path / "r" / "relay-names";
    REQUIRE(std::filesystem::exists(file));
    CHECK((std::filesystem::status(file).permissions() & std::filesystem::perms::mask) ==
          (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
    r = std::make_unique<node>(opts("r@test", dir.path / "r"));
    rel = std::make_unique<relay>(*r, on_loopback());
    node mallory(opts("a@test", dir.path / "mallory"));  // Alice's name, another key
    REQUIRE(mallory.connect(r->endpoint(), r->key()).ok());
    pid agent = mallory.spawn([](actor&, message&) {});
    auto reg = mallory.call("r@test", "relay", "register", arr(agent, true));
    REQUIRE_FALSE(reg.ok());
    CHECK(reg.err().code == errc::unauthorized);
    try {
        relay_client no(mallory, "r@test", true);
        FAIL("mallory registered alice's name");
    } catch (const relay_refused& e) {
        CHECK(e.err().code == errc::unauthorized);
    }
    mallory.stop();
    // Alice herself (her key directory, her key) registers again.
    node a(opts("a@test", dir.path / "a"));
    REQUIRE(a.connect(r->endpoint(), r->key()).ok());
    relay_client alice(a, "r@test", true);
    CHECK(rel->counters().registrations == 1);
}

TEST_CASE("relay name bindings: a damaged file is refused with what to do, never ignored", "[relay]") {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    auto file = dir.path / "r" / "relay-names";
    auto write = [&](const std::string& text, std::filesystem::perms mode) {
        std::filesystem::remove(file);
        { std::ofstream(file) << text; }
        std::filesystem::permissions(file, mode);
    };
    const auto private_mode = std::filesystem::perms::owner_read | std::filesystem::perms::owner_write;
    auto refused = [&](const std::string& why) {
        try {
            relay rel(r, on_loopback());
            FAIL("the relay started");
        } catch (const setup_error& e) {
            std::string m = e.what();
            INFO(m);
            CHECK(m.find(why) != std::string::npos);
            CHECK(m.find("move it aside (mv ") != std::string::npos);
        }
    };
    const std::string key = keypair::generate().pub.z85();
    write("kith-relay-names 1\nname a@test " + key + " 5\n", private_mode);  // cut short
    refused("cut short");
    write("kith-relay-names 1\nname a@test nokey 5\nend 1\n", private_mode);
    refused("not a key");
    write("kith-relay-names 1\nname a@test " + key + " 5\nend 1\n", private_mode | std::filesystem::perms::others_read);
    refused("relay-names");
    write("kith-relay-names 1\nname a@test " + key + " 5\nend 1\n", private_mode);
    relay ok(r, on_loopback());  // a sound file
}

TEST_CASE("relay grants: revoking one ends the grantee's registration, tokens and sessions at once", "[relay]") {
    // Three clusters. Alice registers with her relay grant, Bob dials with
    // his; the relay's owner revokes them (no one disconnects by itself).
    relay_options ro;
    ro.strangers_may_register = false;
    granted_world w(ro);
    auto &r = w.r, &a = w.a, &b = w.b;
    auto& rel = w.rel;
    REQUIRE(w.bob->connect(w.kvs).ok());
    REQUIRE(b.call("a@test", "kvs", "store", arr("k", "v")).ok());
    auto token = b.call("r@test", "relay", "dial", arr("a@test"));
    REQUIRE(token.ok());
    REQUIRE(rel.counters().sessions == 1);

    // Bob's relay grant revoked: his session through the relay ends, and
    // with it his link to Alice; his dial tokens are gone.
    REQUIRE(r.revoke_grant("bob").ok());
    CHECK(eventually([&] { return rel.counters().sessions == 0; }, 5s));
    CHECK(eventually([&] { return !b.info("a@test").has_value(); }, 5s));
    auto again = b.call("r@test", "relay", "dial", arr("a@test"), 2s);
    REQUIRE_FALSE(again.ok());
    CHECK((again.err().code == errc::revoked || again.err().code == errc::nodedown));
    CHECK(rel.counters().registrations == 1);  // Alice is still there

    // Alice's relay grant revoked: her registration ends, nobody can dial her.
    REQUIRE(r.revoke_grant("alice").ok());
    CHECK(eventually([&] { return rel.counters().registrations == 0; }, 5s));
    node c(opts("c@test", w.dir.path / "c", "relay-test-cookie"));  // a member of the relay's cluster
    REQUIRE(c.connect(r.endpoint(), r.key()).ok());
    auto d = c.call("r@test", "relay", "dial", arr("a@test"));
    REQUIRE_FALSE(d.ok());
    CHECK(d.err().code == errc::noproc);
    // And she cannot come back with the revoked grant.
    auto back = a.connect(w.ag, 2s);
    REQUIRE_FALSE(back.ok());
    CHECK(back.err().code == errc::revoked);
}

TEST_CASE("relay grants: which names a grant may register and how many sessions, set while the relay runs",
          "[relay]") {
    relay_and_grant w;
    auto& dir = w.dir;
    auto& r = w.r;
    auto& rel = w.rel;
    auto& ag = w.ag;
    // Set after the relay started: it reads the file again when it changes.
    REQUIRE(set_relay_grant_limits(dir.path / "r", "alice", {.names = {"a@*"}, .max_sessions = 1}).ok());
    CHECK(set_relay_grant_limits(dir.path / "r", "alice", {.names = {"not a name"}}).err().code == errc::badarg);

    // Someone holding Alice's relay grant under another node name: refused.
    node x(opts("x@test", dir.path / "x", "x-cookie"));
    REQUIRE(x.connect(ag).ok());
    try {
        relay_client no(x, "r@test", true);
        FAIL("x@test registered with a grant for a@*");
    } catch (const relay_refused& e) {
        CHECK(e.err().code == errc::unauthorized);
        CHECK(std::string(e.what()).find("lets you register only a@*, not x@test") != std::string::npos);
    }
    x.stop();

    node a(opts("a@test", dir.path / "a", "alice-cookie"));
    a.add_service(services::make_kvs());
    REQUIRE(a.connect(ag).ok());
    relay_client alice(a, "r@test", true);
    // One session at a time to Alice: Bob's; Carol's is refused by the relay.
    node b(opts("b@test", dir.path / "b")), c(opts("c@test", dir.path / "c"));
    REQUIRE(b.connect(r.endpoint(), r.key()).ok());
    REQUIRE(c.connect(r.endpoint(), r.key()).ok());
    relay_client bob(b, "r@test", nullptr), carol(c, "r@test", nullptr);
    auto kb = a.grant({.label = "bob", .allow = {{"kvs", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    auto kc = a.grant({.label = "carol", .allow = {{"kvs", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(bob.connect(*kb).ok());
    const auto refused_before = rel.counters().refused;
    auto up = carol.connect(*kc, 1500ms);
    REQUIRE_FALSE(up.ok());
    INFO(up.err().message());
    CHECK(up.err().code == errc::overloaded);  // said as the relay said it, not as a failed handshake
    CHECK(rel.counters().refused > refused_before);
    CHECK(rel.counters().sessions == 1);
    CHECK(b.call("a@test", "kvs", "keys", arr()).ok());
}

TEST_CASE("relay grants: the file keeps a grant's bytes per second, and reads a line without one as before", "[relay]") {
    std::map<std::string, relay_grant_limits> t;
    t["alice"] = {.names = {"a@*"}, .max_sessions = 2, .max_bytes_per_s = 65536};
    t["bob"] = {.names = {}, .max_sessions = 0};
    auto text = relay_grant_limits_to_text(t);
    CHECK(text.find("grant alice names=a@* sessions=2 bytes_per_s=65536\n") != std::string::npos);
    CHECK(text.find("grant bob names=* sessions=0\n") != std::string::npos);  // as an older kith wrote it
    auto back = parse_relay_grant_limits(text);
    REQUIRE(back.ok());
    CHECK(back->at("alice").max_bytes_per_s == 65536);
    CHECK(back->at("bob").max_bytes_per_s == 0);
    for (const char* bad : {"bytes_per_s=0", "bytes_per_s=12x", "bytes_per_s=100", "rate=65536"}) {
        INFO(bad);
        auto r = parse_relay_grant_limits("kith-relay-grants 1\ngrant a names=* sessions=0 " + std::string(bad) +
                                          "\nend 1\n");
        CHECK_FALSE(r.ok());
    }
    auto low = relay_grant_limits{.names = {}, .max_sessions = 0, .max_bytes_per_s = 1000}.check();
    REQUIRE_FALSE(low.ok());
    CHECK(low.err().code == errc::badarg);
    CHECK(low.err().detail.find("at least 4096") != std::string::npos);
}

// Bob (node b) stores 4 x 150 KiB in a@test's kvs through the relay (a
// grantee's message is at most 256 KiB) over a session limited to `rate`
// bytes/s: all of it goes through, and the relay never forwards more bytes
// than the rate allows since the start. Each direction's allowance starts at
// rate/10 and holds at most rate/10 + 64 KiB; two directions. (A generous
// bound on bytes; a slow machine only loosens it.)
static void stream_within_rate(relay& rel, node& b, std::uint64_t rate) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto base = rel.counters().bytes_forwarded;
    std::atomic<bool> done{false};
    std::thread caller([&] {
        for (int i = 0; i < 4; ++i) {
            auto res = b.call("a@test", "kvs", "store", arr("big" + std::to_string(i), std::string(150 * 1024, 'x')), 30s);
            if (!res.ok()) FAIL_CHECK(res.err().detail);
        }
        done = true;
    });
    auto bound = [&] {
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return 2 * (static_cast<double>(rate) * (s + 0.1) + 64 * 1024 + static_cast<double>(rate) / 10);
    };
    bool within = true;
    while (!done && std::chrono::steady_clock::now() - t0 < 30s) {
        std::this_thread::sleep_for(50ms);
        within &= static_cast<double>(rel.counters().bytes_forwarded - base) <= bound();
    }
    caller.join();
    const auto moved = rel.counters().bytes_forwarded - base;
    CHECK(done);
    CHECK(within);
    CHECK(static_cast<double>(moved) <= bound());
    CHECK(moved > 600 * 1024);  // it all went through, within the rate
}

TEST_CASE("relay grants: a grant's bytes per second bound its holder's relayed sessions, registered or dialling",
          "[relay]") {
    // No rate for the relay as a whole: only the grant's applies.
    const std::uint64_t rate = 256 * 1024;
    const bool registrant_limited = GENERATE(true, false);
    INFO((registrant_limited ? "Alice's relay grant has the rate" : "Bob's relay grant has the rate"));
    granted_world w;
    REQUIRE(w.rel.set_grant_limits(registrant_limited ? "alice" : "bob",
                                   {.names = {}, .max_sessions = 0, .max_bytes_per_s = rate})
                .ok());
    REQUIRE(w.bob->connect(w.kvs).ok());
    auto& rel = w.rel;
    auto& b = w.b;

    stream_within_rate(rel, b, rate);
    REQUIRE(b.call("a@test", "kvs", "lookup", arr("big3"), 30s).ok());
}

TEST_CASE("relay name bindings: one key binds at most max_names_per_key names, unless its relay grant lists more",
          "[relay]") {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay rel(r, on_loopback());  // max_names_per_key 4
    // One key (one key directory) under ever new node names: a member.
    auto as = [&](const std::string& name, const std::filesystem::path& kd,
                  const grant_file* g) -> std::optional<relay_refused> {
        node n(opts(name, kd, g ? "own-cookie" : "relay-test-cookie"));
        REQUIRE((g ? n.connect(*g) : n.connect(r.endpoint(), r.key())).ok());
        try {
            relay_client c(n, "r@test", false);
        } catch (const relay_refused& e) {
            return e;
        }
        return std::nullopt;
    };
    for (int i = 1; i <= 4; ++i) CHECK_FALSE(as("m" + std::to_string(i) + "@test", dir.path / "m", nullptr));
    auto fifth = as("m5@test", dir.path / "m", nullptr);
    REQUIRE(fifth);
    CHECK(fifth->err().code == errc::unauthorized);
    CHECK(std::string(fifth->what()).find("your key already holds 4 node names at this relay (m1@test, m2@test, "
                                          "m3@test, m4@test)") != std::string::npos);
    CHECK(std::string(fifth->what()).find("--relay-names") != std::string::npos);
    CHECK_FALSE(as("m2@test", dir.path / "m", nullptr));  // a name it holds: still its own
    // Another key is not affected.
    CHECK_FALSE(as("m5@test", dir.path / "other", nullptr));

    // A relay grant that lists six names may bind all six (its key is the grant's).
    auto g = r.grant({.label = "six", .allow = {{"relay", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(g.ok());
    relay_grant_limits six;
    for (int i = 1; i <= 6; ++i) six.names.push_back("g" + std::to_string(i) + "@test");
    REQUIRE(rel.set_grant_limits("six", six).ok());
    for (int i = 1; i <= 6; ++i) {
        INFO(i);
        CHECK_FALSE(as("g" + std::to_string(i) + "@test", dir.path / ("g" + std::to_string(i)), &*g));
    }
    // A grant for "w@*" counts as one name: the relay's 4.
    auto w = r.grant({.label = "wild", .allow = {{"relay", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(w.ok());
    REQUIRE(rel.set_grant_limits("wild", {.names = {"w@*"}, .max_sessions = 0, .max_bytes_per_s = 0}).ok());
    for (int i = 1; i <= 4; ++i) CHECK_FALSE(as("w@h" + std::to_string(i), dir.path / ("w" + std::to_string(i)), &*w));
    auto w5 = as("w@h5", dir.path / "w5", &*w);
    REQUIRE(w5);
    CHECK(w5->err().code == errc::unauthorized);
}

// A rate set on a relay grant applies to every session opened after it is
// set, also to a node that registered (or dialled, its token reused for a
// reconnect) before: the relay looks the grant's limits up when a session
// opens, not when its node registered.
TEST_CASE("relay grants: a bytes per second set after its holder registered bounds the sessions opened after it",
          "[relay]") {
    const std::uint64_t rate = 256 * 1024;
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay rel(r, on_loopback());
    auto ag = r.grant({.label = "alice", .allow = {{"relay", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(ag.ok());
    node a(opts("a@test", dir.path / "a", "alice-cookie")), b(opts("b@test", dir.path / "b"));
    a.add_service(services::make_kvs());
    REQUIRE(a.connect(*ag).ok());
    REQUIRE(b.connect(r.endpoint(), r.key()).ok());  // Bob: a member of the relay's cluster, no rate
    relay_client alice(a, "r@test", true);            // registered without a rate
    REQUIRE(rel.set_grant_limits("alice", {.names = {}, .max_sessions = 0, .max_bytes_per_s = rate}).ok());
    relay_client bob(b, "r@test", nullptr);
    auto kb = a.grant({.label = "bob", .allow = {{"kvs", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(kb.ok());
    REQUIRE(bob.connect(*kb).ok());  // the session opens now, after the rate was set

    stream_within_rate(rel, b, rate);
}

// Registrations racing: one key registering eight new names at once binds
// exactly max_names_per_key of them; unregistering (or leaving) frees none.
TEST_CASE("relay name bindings: one key registering many names at once binds only max_names_per_key", "[relay]") {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay rel(r, on_loopback());  // max_names_per_key 4
    { node first(opts("k0@test", dir.path / "k")); }  // the key directory's keys, made once
    constexpr int kNodes = 8;
    std::vector<std::unique_ptr<node>> nodes;
    for (int i = 1; i <= kNodes; ++i) {
        nodes.push_back(std::make_unique<node>(opts("k" + std::to_string(i) + "@test", dir.path / "k")));
        REQUIRE(nodes.back()->connect(r.endpoint(), r.key()).ok());
    }
    std::atomic<int> bound{0}, refused{0}, other{0};
    std::vector<std::unique_ptr<relay_client>> clients(kNodes);
    std::vector<std::thread> ts;
    for (int i = 0; i < kNodes; ++i)
        ts.emplace_back([&, i] {
            try {
                clients[i] = std::make_unique<relay_client>(*nodes[i], "r@test", false);
                ++bound;
            } catch (const relay_refused& e) {
                ++(e.err().code == errc::unauthorized ? refused : other);
            }
        });
    for (auto& t : ts) t.join();
    CHECK(bound == 4);
    CHECK(refused == kNodes - 4);
    CHECK(other == 0);
    // They unregister and leave: the four names stay bound to the key, and a
    // fifth is still refused.
    clients.clear();
    nodes.clear();
    node again(opts("k9@test", dir.path / "k"));
    REQUIRE(again.connect(r.endpoint(), r.key()).ok());
    try {
        relay_client c(again, "r@test", false);
        FAIL("a fifth name was bound");
    } catch (const relay_refused& e) {
        CHECK(e.err().code == errc::unauthorized);
    }
}

// A relay grant's session limit as a dialler is its holder's, whatever node
// names it dials under (it counted per node name: one grant of 1 session
// held 3 under 3 names, up to max_links_per_key).
TEST_CASE("relay grants: a dialler's session limit counts every node name using the grant", "[relay]") {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay rel(r, on_loopback());
    auto dg = r.grant({.label = "dialler", .allow = {{"relay", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(dg.ok());
    REQUIRE(rel.set_grant_limits("dialler", {.names = {}, .max_sessions = 1, .max_bytes_per_s = 0}).ok());
    node a(opts("a@test", dir.path / "a"));
    a.add_service(services::make_kvs());
    REQUIRE(a.connect(r.endpoint(), r.key()).ok());
    relay_client alice(a, "r@test", true);
    auto kb = a.grant({.label = "bob", .allow = {{"kvs", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(kb.ok());
    std::vector<std::unique_ptr<node>> ds;
    std::vector<std::unique_ptr<relay_client>> cs;
    for (int i = 1; i <= 3; ++i) {
        const std::string n = std::to_string(i);
        ds.push_back(std::make_unique<node>(opts("d" + n + "@test", dir.path / ("d" + n), "dc" + n)));
        REQUIRE(ds.back()->connect(*dg).ok());
        cs.push_back(std::make_unique<relay_client>(*ds.back(), "r@test", nullptr));
        auto up = cs.back()->connect(*kb, 3000ms);
        INFO(i << (up.ok() ? std::string(" up") : " " + up.err().message()));
        if (i == 1) {
            CHECK(up.ok());
        } else {
            REQUIRE_FALSE(up.ok());
            CHECK(up.err().code == errc::overloaded);
        }
    }
    CHECK(rel.counters().sessions == 1);
    // The first one's session ends: another name of the grant may open one.
    cs[0].reset();
    ds[0].reset();
    REQUIRE(eventually([&] { return rel.counters().sessions == 0; }, 10s));
    CHECK(cs[1]->connect(*kb, 5000ms).ok());
}

// A change of the relay grants file is seen even when it keeps the file's
// size and its time stamp (two writes within one tick of a coarse file
// clock, as on many kernels: the time is set back here to make it so).
TEST_CASE("relay grants: a change that keeps the file's size and time is still read", "[relay]") {
    temp_dir dir;
    node r(opts("r@test", dir.path / "r"));
    relay rel(r, on_loopback());
    auto g = r.grant({.label = "g", .allow = {{"relay", {}}}, .rate = {100, 200}, .expires = std::nullopt});
    REQUIRE(g.ok());
    const auto file = dir.path / "r" / "relay-grants";
    REQUIRE(rel.set_grant_limits("g", {.names = {"a@test"}, .max_sessions = 0, .max_bytes_per_s = 0}).ok());
    node b(opts("b@test", dir.path / "b", "b-cookie"));
    REQUIRE(b.connect(*g).ok());
    auto try_register = [&]() -> errc {
        try {
            relay_client c(b, "r@test", false);
            return errc::ok;
        } catch (const relay_refused& e) {
            return e.err().code;
        }
    };
    CHECK(try_register() == errc::unauthorized);  // the relay read the file: a@test only
    const auto size = std::filesystem::file_size(file);
    const auto stamp = std::filesystem::last_write_time(file);
    REQUIRE(rel.set_grant_limits("g", {.names = {"b@test"}, .max_sessions = 0, .max_bytes_per_s = 0}).ok());
    std::filesystem::last_write_time(file, stamp);
    REQUIRE(std::filesystem::file_size(file) == size);
    CHECK(try_register() == errc::ok);
}
