// Process groups on one node (kith/pg.hpp): join/leave/members, exact error
// codes for bad input, a member that ends is removed, membership events in
// order, send_all once per distinct pid, one server per scope name.
// The cross-node behaviour is in test_availability_process.cpp.
#include <set>

#include "../runtime/runtime_test_util.hpp"
#include "kith/pg.hpp"

using namespace kith;
using namespace kith::test;
using namespace std::chrono_literals;

namespace {
std::vector<pid> members_of(const pg_scope& pg, const std::string& g) {
    auto r = pg.members(g);
    REQUIRE(r.ok());
    return *r;
}
}  // namespace

TEST_CASE("pg: join, leave, members and groups on one node", "[availability][pg]") {
    node n(opts());
    pg_scope pg(n, "chat");
    CHECK(pg.scope() == "chat");
    CHECK(n.whereis("kith.pg.chat") == pg.server());
    mailbox a(n), b(n);
    REQUIRE(pg.join("room", a.self()).ok());
    REQUIRE(pg.join("room", b.self()).ok());
    REQUIRE(pg.join("room", a.self()).ok());  // twice: listed twice, sent once
    CHECK(members_of(pg, "room").size() == 3);
    CHECK(*pg.groups() == std::vector<std::string>{"room"});
    auto sent = pg.send_all("room", "hi");
    REQUIRE(sent.ok());
    CHECK(*sent == 2);
    CHECK(is_str(next(a).body, "hi"));
    CHECK(is_str(next(b).body, "hi"));
    CHECK(!a.receive(200ms).ok());
    REQUIRE(pg.leave("room", a.self()).ok());
    REQUIRE(pg.leave("room", a.self()).ok());
    auto again = pg.leave("room", a.self());
    CHECK(again.code() == errc::badarg);
    CHECK(again.err().detail.find("not a local member") != std::string::npos);
    CHECK(members_of(pg, "room") == std::vector<pid>{b.self()});
    CHECK(members_of(pg, "nobody").empty());
}

TEST_CASE("pg: bad input gets badarg naming the problem, a scope name is taken once", "[availability][pg]") {
    node n(opts());
    pg_scope pg(n);
    mailbox a(n);
    CHECK(pg.join("", a.self()).code() == errc::badarg);
    CHECK(pg.join("g", pid{}).code() == errc::badarg);
    auto far = pg.join("g", pid{"other@host", 7});
    CHECK(far.code() == errc::badarg);
    CHECK(far.err().detail.find("only pids of this node") != std::string::npos);
    CHECK(pg.monitor(pid{"other@host", 7}).code() == errc::badarg);
    CHECK_THROWS_AS(pg_scope(n), setup_error);               // "default" is running
    CHECK_THROWS_AS(pg_scope(n, "bad name!"), setup_error);  // not [A-Za-z0-9._-]
}

TEST_CASE("pg: a member that ends leaves, watchers get events in order", "[availability][pg]") {
    node n(opts());
    pg_scope pg(n);
    mailbox watch(n);
    mailbox a(n);
    REQUIRE(pg.join("g", a.self()).ok());
    auto snap = pg.monitor(watch.self());
    REQUIRE(snap.ok());
    CHECK(snap->lookup(term("g")) != nullptr);
    pid p = n.spawn([](actor& self, message& m) {
        if (m.is_user()) self.quit("normal");
    });
    REQUIRE(pg.join("g", p).ok());
    n.send(p, "stop");
    CHECK(eventually([&] { return members_of(pg, "g") == std::vector<pid>{a.self()}; }));
    auto e1 = next(watch);
    CHECK(e1.body == arr("pg", "default", "join", "g", arr(p)));
    auto e2 = next(watch);
    CHECK(e2.body == arr("pg", "default", "leave", "g", arr(p)));
    // A pid that is dead before its join is removed as soon as the server sees it.
    REQUIRE(pg.join("g", p).ok());
    CHECK(eventually([&] { return members_of(pg, "g") == std::vector<pid>{a.self()}; }));
    REQUIRE(pg.monitor(watch.self(), false).ok());
}
