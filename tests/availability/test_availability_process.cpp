// Supervisors and process groups across OS processes (kith_avail_node
// children, real CURVE on loopback), and the pg trust boundary:
//   - a supervisor's remote child whose node is kill -9'd is reported
//     "waiting" and started again on that node when it comes back;
//   - a join on one node is seen on the others within a deadline; send_all
//     reaches every member once; a member's exit and its node's loss remove
//     it everywhere, with membership events;
//   - a frozen node (SIGSTOP): its pg members leave and come back after
//     SIGCONT; its supervised child is replaced once, never duplicated;
//   - a grantee can neither join nor list nor message a group, and its own
//     scope server never exchanges memberships with the cluster.
// Every wait has a deadline; children are killed and reaped at scope exit.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "avail_proc.hpp"
#include "kith/convert.hpp"
#include "kith/grants.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith/pg.hpp"
#include "kith/supervisor.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace std::chrono_literals;
using namespace avail;

namespace {

std::set<pid> as_set(const result<std::vector<pid>>& r) {
    REQUIRE(r.ok());
    return std::set<pid>(r->begin(), r->end());
}

std::set<pid> remote_members(node& n, const std::string& node_name, const std::string& group) {
    auto r = n.call(node_name, "pgctl", "members", arr(group), 2s);
    REQUIRE(r.ok());
    auto v = r->as<std::vector<pid>>();
    REQUIRE(v.ok());
    return std::set<pid>(v->begin(), v->end());
}

// An echo:server answers [Client, M] by sending M to Client.
bool echo_works(node& n, const pid& server) {
    mailbox mb(n);
    mb.send(server, arr(mb.self(), "ping"));
    auto got = mb.receive([](const message& m) { return m.is_user(); }, 3s);
    return got.ok() && got->body == term("ping");
}

// One remote child, the "echo" server on far@localhost: at most 3 restarts,
// a retry every 500 ms while its node is away.
supervisor_spec far_echo_spec() {
    supervisor_spec sp;
    sp.intensity = 3;
    sp.retry_interval = 500ms;
    sp.log = [](const log_record&) {};
    child_spec c;
    c.id = "echo";
    c.remote = remote_child{"far@localhost", "echo", "server", arr()};
    c.start_timeout = 2000ms;
    sp.children.push_back(c);
    return sp;
}

// This process's node "sup" connected to the child "far", supervising
// far_echo_spec() (both tests of a remote child start so).
struct far_supervision {
    temp_dir tmp;
    node me{opts("sup@localhost", tmp.path / "me")};
    std::unique_ptr<child_node> b = start_child("far@localhost", tmp.path / "far");
    std::optional<pid> sup;
    far_supervision() {
        REQUIRE(me.connect(b->endpoint, b->key, 5s).ok());
        auto s = start_supervisor(me, far_echo_spec());
        REQUIRE(s.ok());
        sup = *s;
    }
};

}  // namespace

TEST_CASE("process: a supervisor restarts a remote child on its node when the node returns",
          "[availability][supervisor][process]") {
    far_supervision f;
    auto& [tmp, me, b, sup] = f;
    auto kids = which_children(me, *sup);
    REQUIRE(kids.ok());
    REQUIRE(kids->size() == 1);
    pid first = (*kids)[0].who;
    CHECK(first.node == "far@localhost");
    CHECK((*kids)[0].state == "running");
    CHECK(echo_works(me, first));

    auto t_kill = clock_type::now();
    b->kill_now();
    b->reap();
    CHECK(eventually([&] {
        auto k = which_children(me, *sup);
        return k.ok() && (*k)[0].state == "waiting";
    }));
    std::printf("supervisor: remote child seen lost after %.0f ms\n", ms_since(t_kill));

    auto b2 = start_child("far@localhost", tmp.path / "far");  // same key, new port
    auto t_back = clock_type::now();
    REQUIRE(me.connect(b2->endpoint, b2->key, 5s).ok());
    pid second;
    int restarts = 0;
    CHECK(eventually([&] {
        auto k = which_children(me, *sup);
        if (!k.ok() || (*k)[0].state != "running") return false;
        second = (*k)[0].who;
        restarts = (*k)[0].restarts;
        return true;
    }));
    std::printf("supervisor: remote child running again %.0f ms after its node returned\n", ms_since(t_back));
    CHECK(second.node == "far@localhost");
    // (A restarted node numbers its pids from 1 again, so `second` may equal
    // `first` as a value: the restart count tells them apart.)
    CHECK(restarts == 1);
    CHECK(echo_works(me, second));
    CHECK(me.alive(*sup));
    REQUIRE(stop_supervisor(me, *sup).ok());
}

TEST_CASE("process: pg membership converges, send_all reaches each member once, exits and node loss remove members",
          "[availability][pg][process]") {
    temp_dir tmp;
    node me(opts("hub@localhost", tmp.path / "me"));
    pg_scope pg(me);
    mailbox rep(me), watch(me);
    REQUIRE(pg.monitor(watch.self()).ok());
    auto a = start_child("a@localhost", tmp.path / "a");
    auto c = start_child("c@localhost", tmp.path / "c");
    REQUIRE(me.connect(a->endpoint, a->key, 5s).ok());
    REQUIRE(me.connect(c->endpoint, c->key, 5s).ok());

    // A local member that reports like the children's members do.
    pid rp = rep.self();
    pid pm = me.spawn([rp](actor& self, message& m) {
        if (m.is_user()) self.send(rp, arr("got", self.self(), m.body));
    });
    REQUIRE(pg.join("room", pm).ok());

    auto t0 = clock_type::now();
    auto ja = me.call("a@localhost", "pgctl", "join", arr("room", rp), 3s);
    REQUIRE(ja.ok());
    pid pa = *ja->as_pid();
    auto jc = me.call("c@localhost", "pgctl", "join", arr("room", rp), 3s);
    REQUIRE(jc.ok());
    pid pc = *jc->as_pid();
    CHECK(eventually([&] { return as_set(pg.members("room")) == std::set<pid>{pa, pc, pm}; }, 3000ms));
    std::printf("pg: joins on two other nodes seen here after %.0f ms\n", ms_since(t0));
    // And this node's member is seen on A (A is not connected to C: it sees pa, pm).
    CHECK(eventually([&] { return remote_members(me, "a@localhost", "room") == std::set<pid>{pa, pm}; }, 3000ms));

    auto sent = pg.send_all("room", "hello");
    REQUIRE(sent.ok());
    CHECK(*sent == 3);
    std::multiset<pid> got;
    for (int i = 0; i < 3; ++i) {
        auto m = rep.receive([](const message& x) { return x.is_user(); }, 3s);
        REQUIRE(m.ok());
        CHECK(m->body.at(2)->to_string() == term("hello").to_string());
        got.insert(*m->body.at(1)->as_pid());
    }
    CHECK(got == std::multiset<pid>{pa, pc, pm});
    CHECK(!rep.receive([](const message& x) { return x.is_user(); }, 300ms).ok());  // once each

    // A member that ends leaves everywhere.
    rep.send(pc, "quit");
    CHECK(eventually([&] { return as_set(pg.members("room")) == std::set<pid>{pa, pm}; }, 3000ms));

    // A node that dies takes its members with it.
    auto t_kill = clock_type::now();
    a->kill_now();
    a->reap();
    CHECK(eventually([&] { return as_set(pg.members("room")) == std::set<pid>{pm}; }, 5000ms));
    std::printf("pg: members of a killed node removed after %.0f ms\n", ms_since(t_kill));

    // The watcher saw every change, in order, for each pid.
    std::vector<std::string> seen;
    while (true) {
        auto m = watch.receive(200ms);
        if (!m.ok()) break;
        for (auto& p : *m->body.at(4)->as_array())
            seen.push_back(*m->body.at(2)->as_string() + ":" + (p == term(pa) ? "a" : p == term(pc) ? "c" : "m"));
    }
    auto pos = [&](const std::string& s) { return std::find(seen.begin(), seen.end(), s) - seen.begin(); };
    for (auto s : {"join:m", "join:a", "join:c", "leave:c", "leave:a"}) {
        INFO(s);
        CHECK(pos(s) < static_cast<long>(seen.size()));
    }
    CHECK(pos("join:c") < pos("leave:c"));
    CHECK(pos("join:a") < pos("leave:a"));
}

TEST_CASE("pg: a grantee cannot join, list or message a group, and its scope never syncs with the cluster",
          "[availability][pg][security]") {
    alice_carol_bob cast;
    auto& [tmp, alice, carol, bob] = cast;
    pg_scope pa(alice), pc(carol), pb(bob);
    // A service on alice that puts pg in a grantee's reach: pg refuses it.
    alice.add_service(service("pgsvc")
                          .function("join", [&](std::string g, pid who) { return pa.join(g, who); })
                          .function("members", [&](std::string g) { return pa.members(g); })
                          .function("send_all", [&](std::string g, term m) -> result<std::int64_t> {
                              auto r = pa.send_all(g, m);
                              if (!r.ok()) return r.err();
                              return static_cast<std::int64_t>(*r);
                          }));
    REQUIRE(carol.connect(alice.endpoint(), alice.key(), 5s).ok());
    grant_spec gs;
    gs.label = "bob";
    gs.allow = grant_scope{{"pgsvc", {}}};
    auto gf = alice.grant(gs);
    REQUIRE(gf.ok());
    REQUIRE(bob.connect(*gf, 5s).ok());

    mailbox am(alice), cm(carol), bm(bob);
    REQUIRE(pa.join("room", am.self()).ok());
    REQUIRE(pc.join("room", cm.self()).ok());
    REQUIRE(pb.join("room", bm.self()).ok());

    // Control: the two members converge.
    CHECK(eventually([&] { return as_set(pa.members("room")) == std::set<pid>{am.self(), cm.self()}; }));
    CHECK(eventually([&] { return as_set(pc.members("room")) == std::set<pid>{am.self(), cm.self()}; }));

    // The grantee, through the granted service: refused, not "bad_args".
    auto j = bob.call("alice@localhost", "pgsvc", "join", arr("room", bm.self()), 3s);
    CHECK(j.code() == errc::unauthorized);
    CHECK(j.err().detail.find("grant bob") != std::string::npos);
    CHECK(bob.call("alice@localhost", "pgsvc", "members", arr("room"), 3s).code() == errc::unauthorized);
    CHECK(bob.call("alice@localhost", "pgsvc", "send_all", arr("room", "spam"), 3s).code() == errc::unauthorized);

    // A forged discover to alice's scope server by name: kith refuses it.
    auto before = alice.net_stats().refused_unauthorized;
    bm.send("kith.pg.default", "alice@localhost", arr("kith.pg.discover", bm.self()));
    bm.send("kith.pg.default", "alice@localhost", arr("kith.pg.sync", bm.self(), map_of({{"room", arr(bm.self())}})));
    CHECK(eventually([&] { return alice.net_stats().refused_unauthorized >= before + 2; }));

    // Nothing crossed, in either direction, while the members kept in sync.
    REQUIRE(pc.join("room2", cm.self()).ok());
    CHECK(eventually([&] { return as_set(pa.members("room2")) == std::set<pid>{cm.self()}; }));
    CHECK(as_set(pa.members("room")) == std::set<pid>{am.self(), cm.self()});
    CHECK(as_set(pb.members("room")) == std::set<pid>{bm.self()});
    CHECK(as_set(pb.members("room2")).empty());
    CHECK(!am.receive([](const message& m) { return m.is_user(); }, 200ms).ok());  // no spam reached a member
}

TEST_CASE("process: pg members of a frozen node leave, and come back when it thaws", "[availability][pg][process]") {
    temp_dir tmp;
    node me(opts("hub@localhost", tmp.path / "me"));
    pg_scope pg(me);
    mailbox rep(me);
    auto a = start_child("a@localhost", tmp.path / "a");
    REQUIRE(me.connect(a->endpoint, a->key, 5s).ok());
    auto ja = me.call("a@localhost", "pgctl", "join", arr("room", rep.self()), 3s);
    REQUIRE(ja.ok());
    pid pa = *ja->as_pid();
    REQUIRE(eventually([&] { return as_set(pg.members("room")) == std::set<pid>{pa}; }, 3000ms));

    auto t_stop = clock_type::now();
    a->signal(SIGSTOP);  // silent, connection open: a partition as seen from here
    CHECK(eventually([&] { return as_set(pg.members("room")).empty(); }, 5000ms));
    std::printf("pg: members of a silent node removed after %.0f ms\n", ms_since(t_stop));
    auto t_cont = clock_type::now();
    a->signal(SIGCONT);  // heal: the automatic reconnect, nodeup, then a sync each way
    CHECK(eventually([&] { return as_set(pg.members("room")) == std::set<pid>{pa}; }, 10000ms));
    std::printf("pg: membership back %.0f ms after the heal\n", ms_since(t_cont));
    auto sent = pg.send_all("room", "again");
    REQUIRE(sent.ok());
    CHECK(*sent == 1);
    auto m = rep.receive([](const message& x) { return x.is_user(); }, 3s);
    REQUIRE(m.ok());
    CHECK(*m->body.at(1)->as_pid() == pa);
}

TEST_CASE("process: a supervisor's remote child on a frozen node is replaced once, never duplicated",
          "[availability][supervisor][process]") {
    far_supervision f;
    auto& [tmp, me, b, sup] = f;
    pid first = (*which_children(me, *sup))[0].who;

    b->signal(SIGSTOP);
    CHECK(eventually([&] { return (*which_children(me, *sup))[0].state == "waiting"; }, 5000ms));
    b->signal(SIGCONT);
    pid second;
    CHECK(eventually([&] {
        auto k = which_children(me, *sup);
        if ((*k)[0].state != "running") return false;
        second = (*k)[0].who;
        return true;
    }, 10000ms));
    CHECK(second != first);
    CHECK(echo_works(me, second));
    // The first one ended on its own node when its link to us was cut
    // (noconnection on both sides): monitoring it now says it is gone.
    mailbox mb(me);
    ref r = mb.monitor(first);
    auto down = mb.receive([&](const message& m) { return m.is_down() && m.tag == r; }, 3s);
    REQUIRE(down.ok());
    CHECK(down->body == term("noproc"));
    REQUIRE(stop_supervisor(me, *sup).ok());
}
