// Registered names: register, unregister, whereis, send by name.
#include "runtime_test_util.hpp"

using namespace kith;
using namespace kith::test;

TEST_CASE("register, whereis, send by name, unregister", "[runtime][registry]") {
    node n(opts());
    mailbox mb(n);
    pid echo = n.spawn([me = mb.self()](actor& self, message& m) { self.send(me, m.body); });
    REQUIRE(n.register_name("echo", echo).ok());
    CHECK(n.whereis("echo") == echo);
    n.send("echo", "by name");
    CHECK(is_str(next(mb).body, "by name"));
    n.send("echo", n.name(), "by name and node");
    CHECK(is_str(next(mb).body, "by name and node"));
    // Errors are values.
    CHECK(n.register_name("echo", mb.self()).code() == errc::badarg);   // name taken
    CHECK(n.register_name("other", echo).code() == errc::badarg);       // already named
    CHECK(n.register_name("ghost", pid{n.name(), 555555}).code() == errc::badarg);
    CHECK(n.register_name("remote", pid{"x@y", 1}).code() == errc::badarg);
    CHECK(n.register_name("", echo).code() == errc::badarg);
    REQUIRE(n.unregister_name("echo").ok());
    CHECK(n.unregister_name("echo").code() == errc::badarg);
    CHECK_FALSE(n.whereis("echo").has_value());
    auto before = n.counters().dropped_unknown;
    n.send("echo", "lost");
    CHECK(n.counters().dropped_unknown == before + 1);
    REQUIRE(n.register_name("echo2", echo).ok());  // may be named again
}

TEST_CASE("a name is released when its actor ends", "[runtime][registry]") {
    node n(opts());
    mailbox mb(n);
    auto [a, r] = mb.spawn_monitor([](actor& self) -> behavior {
        if (!self.register_name("worker").ok()) throw std::runtime_error("register failed");
        return [](actor& self, message&) { self.quit(); };
    });
    CHECK(eventually([&] { return n.whereis("worker").has_value(); }));
    CHECK(n.whereis("worker") == a);
    n.send("worker", 0);
    CHECK(next(mb).is_down());
    CHECK(eventually([&] { return !n.whereis("worker").has_value(); }));
    // The name can be taken by someone else now.
    pid b = n.spawn([](actor&, message&) {});
    CHECK(n.register_name("worker", b).ok());
}

TEST_CASE("actors send to and look up names", "[runtime][registry]") {
    node n(opts());
    mailbox mb(n);
    REQUIRE(mb.register_name("main").ok());
    CHECK(mb.register_name("main2").code() == errc::badarg);
    pid a = n.spawn([](actor& self, message& m) {
        auto w = self.whereis("main");
        self.send("main", arr("whereis", w ? term(*w) : term(nil)));
        self.send("main", self.node_name(), m.body);
        auto taken = self.register_name("main");
        self.send(*w, static_cast<int>(taken.code()));
        self.send("nobody", "lost");
    });
    n.send(a, "x");
    CHECK(next(mb).body == arr("whereis", mb.self()));
    CHECK(is_str(next(mb).body, "x"));
    CHECK(next(mb).body == term(static_cast<int>(errc::badarg)));
}
