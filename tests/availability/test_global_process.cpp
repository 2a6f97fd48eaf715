// Global names across nodes: OS processes (kith_avail_node children, real
// CURVE on loopback) and in-process nodes for the trust boundary:
//   - a name registered on A is seen on B and C within a deadline; send by
//     name reaches it; its holder's exit and its node's kill -9 free it
//     everywhere;
//   - a partition (SIGSTOP long enough for nodedown) in which the name is
//     held on both sides: after the heal exactly one holder survives on
//     every node, by the documented rule, and the loser got the exit signal
//     ["global_name_conflict", Name];
//   - two nodes that registered one name apart, then meet: the rule picks
//     the same winner on both;
//   - a grantee can neither register nor resolve through a service, and
//     forged name-server messages are refused.
// Every wait has a deadline; children are killed and reaped at scope exit.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "avail_proc.hpp"
#include "kith/global.hpp"
#include "kith/grants.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace std::chrono_literals;
using namespace avail;

namespace {

// whereis(name) as node `node_name` answers it: the pid, or null if it says noproc.
std::optional<pid> remote_whereis(node& n, const std::string& node_name, const std::string& name) {
    auto r = n.call(node_name, "glctl", "whereis", arr(name), 2s);
    if (!r.ok()) {
        REQUIRE(r.code() == errc::noproc);
        return std::nullopt;
    }
    REQUIRE(r->as_pid());
    return *r->as_pid();
}

bool local_is(const global_names& g, const std::string& name, const std::optional<pid>& want) {
    auto r = g.whereis(name);
    if (!want) return r.code() == errc::noproc;
    return r.ok() && *r == *want;
}

pid remote_register(node& n, const std::string& node_name, const std::string& name, const pid& report) {
    auto r = n.call(node_name, "glctl", "register", arr(name, report), 3s);
    INFO((r.ok() ? std::string() : r.err().message()));
    REQUIRE(r.ok());
    return *r->as_pid();
}

// Test node + children A and B, all connected to each other.
struct trio {
    temp_dir tmp;
    node me{opts("hub@localhost", tmp.path / "me")};
    global_names g{me};
    std::unique_ptr<child_node> a = start_child("a@localhost", tmp.path / "a");
    std::unique_ptr<child_node> b = start_child("b@localhost", tmp.path / "b");
    trio() {
        REQUIRE(me.connect(a->endpoint, a->key, 5s).ok());
        REQUIRE(me.connect(b->endpoint, b->key, 5s).ok());
        auto r = me.call("a@localhost", "glctl", "connect", arr(b->endpoint, b->key.z85()), 8s);
        INFO((r.ok() ? std::string() : r.err().message()));
        REQUIRE(r.ok());
    }
};

}  // namespace

TEST_CASE("process: a global name is seen on every node, and its holder's exit and its node's kill -9 free it",
          "[availability][global][process]") {
    trio t;
    mailbox rep(t.me);

    auto t0 = clock_type::now();
    pid pa = remote_register(t.me, "a@localhost", "kvs", rep.self());
    CHECK(eventually([&] { return local_is(t.g, "kvs", pa) && remote_whereis(t.me, "b@localhost", "kvs") == pa; }));
    std::printf("global: name registered on A visible on the two other nodes after %.0f ms\n", ms_since(t0));

    // Send by name, from here and from B.
    REQUIRE(t.g.send("kvs", "ping").ok());
    auto m = rep.receive([](const message& x) { return x.is_user(); }, 3s);
    REQUIRE(m.ok());
    CHECK(*m->body.at(1)->as_pid() == pa);
    REQUIRE(t.me.call("b@localhost", "glctl", "send", arr("kvs", "ping2"), 3s).ok());
    m = rep.receive([](const message& x) { return x.is_user(); }, 3s);
    REQUIRE(m.ok());
    CHECK(m->body.at(2)->to_string() == term("ping2").to_string());

    // Taken: neither B nor this node can take it.
    auto again = t.me.call("b@localhost", "glctl", "register", arr("kvs", rep.self()), 3s);
    CHECK(again.code() == errc::badarg);
    mailbox other(t.me);
    CHECK(t.g.register_name("kvs", other.self()).code() == errc::badarg);

    // The holder ends: freed everywhere.
    auto t_quit = clock_type::now();
    rep.send(pa, "quit");
    CHECK(eventually([&] {
        return local_is(t.g, "kvs", std::nullopt) && !remote_whereis(t.me, "b@localhost", "kvs") &&
               !remote_whereis(t.me, "a@localhost", "kvs");
    }));
    std::printf("global: name freed everywhere %.0f ms after its holder ended\n", ms_since(t_quit));

    // The holder's node is killed: freed on the survivors, free to take.
    pid pa2 = remote_register(t.me, "a@localhost", "kvs", rep.self());
    REQUIRE(eventually([&] { return local_is(t.g, "kvs", pa2) && remote_whereis(t.me, "b@localhost", "kvs") == pa2; }));
    auto t_kill = clock_type::now();
    t.a->kill_now();
    t.a->reap();
    CHECK(eventually([&] { return local_is(t.g, "kvs", std::nullopt) && !remote_whereis(t.me, "b@localhost", "kvs"); }));
    std::printf("global: name of a kill -9'd node freed after %.0f ms\n", ms_since(t_kill));
    pid pb = remote_register(t.me, "b@localhost", "kvs", rep.self());
    CHECK(eventually([&] { return local_is(t.g, "kvs", pb); }));
}

TEST_CASE("process: one name held on both sides of a partition: after the heal exactly one survives everywhere",
          "[availability][global][process]") {
    trio t;
    mailbox rep(t.me), watch(t.me);
    pid pa = remote_register(t.me, "a@localhost", "svc", rep.self());  // the earlier registration
    REQUIRE(eventually([&] { return local_is(t.g, "svc", pa) && remote_whereis(t.me, "b@localhost", "svc") == pa; }));

    t.a->signal(SIGSTOP);  // A goes silent: a partition {A} | {hub, B}
    CHECK(eventually([&] { return local_is(t.g, "svc", std::nullopt) && !remote_whereis(t.me, "b@localhost", "svc"); }));
    // The majority side takes the name, as it must be able to.
    pid pm = t.me.spawn([](actor&, message&) {});
    ref mon = watch.monitor(pm);
    REQUIRE(t.g.register_name("svc", pm).ok());
    CHECK(eventually([&] { return remote_whereis(t.me, "b@localhost", "svc") == pm; }));

    auto t_heal = clock_type::now();
    t.a->signal(SIGCONT);  // heal: reconnect, nodeup, tables exchanged
    // The rule: the earlier registration (A's) wins, on every node.
    bool agreed = eventually(
        [&] {
            return local_is(t.g, "svc", pa) && remote_whereis(t.me, "b@localhost", "svc") == pa &&
                   remote_whereis(t.me, "a@localhost", "svc") == pa;
        },
        10000ms);
    CHECK(agreed);
    std::printf("global: conflict resolved on all three nodes %.0f ms after the heal\n", ms_since(t_heal));
    auto down = watch.receive([&](const message& m) { return m.is_down() && m.tag == mon; }, 5s);
    REQUIRE(down.ok());
    CHECK(down->body.to_string() == arr("global_name_conflict", "svc").to_string());
    REQUIRE(t.g.send("svc", "after").ok());
    auto m = rep.receive([](const message& x) { return x.is_user(); }, 3s);
    REQUIRE(m.ok());
    CHECK(*m->body.at(1)->as_pid() == pa);
    CHECK(!rep.receive([](const message& x) { return x.is_user(); }, 200ms).ok());
}

TEST_CASE("global: two nodes that registered one name apart pick the same winner when they meet",
          "[availability][global]") {
    temp_dir tmp;
    node x(opts("x@localhost", tmp.path / "x")), y(opts("y@localhost", tmp.path / "y"));
    global_names gx(x), gy(y);
    mailbox watch(x);
    pid px = x.spawn([](actor&, message&) {});
    pid py = y.spawn([](actor&, message&) {});
    ref mx = watch.monitor(px);
    REQUIRE(gx.register_name("dup", px).ok());
    REQUIRE(gy.register_name("dup", py).ok());
    auto ex = (*gx.registered())[0], ey = (*gy.registered())[0];
    // The rule, computed from the stamps: smaller stamp, then smaller node name.
    bool x_wins = ex.stamp_ms < ey.stamp_ms || (ex.stamp_ms == ey.stamp_ms && x.name() < y.name());
    pid winner = x_wins ? px : py, loser = x_wins ? py : px;

    REQUIRE(x.connect(y.endpoint(), y.key(), 5s).ok());
    CHECK(eventually([&] { return local_is(gx, "dup", winner) && local_is(gy, "dup", winner); }));
    CHECK(eventually([&] { return !x.alive(loser) && !y.alive(loser); }));
    if (loser == px) {
        auto d = watch.receive([&](const message& m) { return m.is_down() && m.tag == mx; }, 3s);
        REQUIRE(d.ok());
        CHECK(d->body.to_string() == arr("global_name_conflict", "dup").to_string());
    }
    CHECK(gx.registered()->size() == 1);
    CHECK(gy.registered()->size() == 1);
}

TEST_CASE("global: a grantee cannot register or resolve through a service, and forged name-server messages are refused",
          "[availability][global][security]") {
    alice_carol_bob cast;
    auto& [tmp, alice, carol, bob] = cast;
    global_names ga(alice), gc(carol), gb(bob);
    alice.add_service(service("glsvc")
                          .function("register", [&](std::string nm, pid who) { return ga.register_name(nm, who); })
                          .function("whereis", [&](std::string nm) { return ga.whereis(nm); })
                          .function("send", [&](std::string nm, term m) -> result<term> {
                              auto r = ga.send(nm, m);
                              if (!r.ok()) return r.err();
                              return term();
                          }));
    REQUIRE(carol.connect(alice.endpoint(), alice.key(), 5s).ok());
    grant_spec gs;
    gs.label = "bob";
    gs.allow = grant_scope{{"glsvc", {}}};
    auto gf = alice.grant(gs);
    REQUIRE(gf.ok());
    REQUIRE(bob.connect(*gf, 5s).ok());

    mailbox am(alice), cm(carol), bm(bob);
    REQUIRE(gc.register_name("kvs", cm.self()).ok());
    REQUIRE(gb.register_name("bobs", bm.self()).ok());
    CHECK(eventually([&] { return local_is(ga, "kvs", cm.self()); }));  // control: members converge

    auto r = bob.call("alice@localhost", "glsvc", "register", arr("evil", bm.self()), 3s);
    CHECK(r.code() == errc::unauthorized);
    CHECK(r.err().detail.find("grant bob") != std::string::npos);
    CHECK(bob.call("alice@localhost", "glsvc", "whereis", arr("kvs"), 3s).code() == errc::unauthorized);
    CHECK(bob.call("alice@localhost", "glsvc", "send", arr("kvs", "spam"), 3s).code() == errc::unauthorized);

    // Forged name-server traffic by name: kith refuses it before it arrives.
    auto before = alice.net_stats().refused_unauthorized;
    bm.send("kith.global", "alice@localhost", arr("kith.global.hello", bm.self(), arr(arr("kvs", bm.self(), 1))));
    bm.send("kith.global", "alice@localhost", arr("kith.global.reg", bm.self(), arr("kvs", bm.self(), 1)));
    CHECK(eventually([&] { return alice.net_stats().refused_unauthorized >= before + 2; }));

    // Nothing crossed either way, while the members kept in sync.
    REQUIRE(gc.register_name("kvs2", cm.self()).ok());
    CHECK(eventually([&] { return local_is(ga, "kvs2", cm.self()); }));
    CHECK(local_is(ga, "kvs", cm.self()));
    CHECK(local_is(ga, "bobs", std::nullopt));
    CHECK(local_is(gb, "kvs", std::nullopt));
    CHECK(gb.registered()->size() == 1);
    CHECK(!cm.receive([](const message& m) { return m.is_user(); }, 200ms).ok());
}
