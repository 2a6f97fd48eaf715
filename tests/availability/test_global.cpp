// Global names on one node (kith/global.hpp): register/whereis/send/
// unregister, exact error codes for bad input, a holder that ends frees its
// name, one name server per node. Across nodes and processes:
// test_global_process.cpp.
#include "../runtime/runtime_test_util.hpp"
#include "kith/global.hpp"

using namespace kith;
using namespace kith::test;
using namespace std::chrono_literals;

TEST_CASE("global: register, whereis, send, unregister and errors on one node", "[availability][global]") {
    node n(opts());
    global_names g(n);
    CHECK(n.whereis("kith.global") == g.server());
    mailbox a(n), b(n);
    REQUIRE(g.register_name("kvs", a.self()).ok());
    CHECK(*g.whereis("kvs") == a.self());
    REQUIRE(g.send("kvs", "hi").ok());
    CHECK(is_str(next(a).body, "hi"));

    // A name belongs to one pid; a pid may hold several names.
    auto taken = g.register_name("kvs", b.self());
    CHECK(taken.code() == errc::badarg);
    CHECK(taken.err().detail.find("is held by " + a.self().to_string()) != std::string::npos);
    REQUIRE(g.register_name("kvs2", a.self()).ok());
    auto all = g.registered();
    REQUIRE(all.ok());
    REQUIRE(all->size() == 2);
    CHECK((*all)[0].name == "kvs");
    CHECK((*all)[0].who == a.self());
    CHECK((*all)[0].stamp_ms > 0);

    CHECK(g.register_name("", a.self()).code() == errc::badarg);
    CHECK(g.register_name(std::string(256, 'x'), a.self()).code() == errc::badarg);
    CHECK(g.register_name("x", pid{}).code() == errc::badarg);
    CHECK(g.register_name("x", pid{"other@host", 5}).code() == errc::badarg);
    CHECK(g.unregister_name("nope").code() == errc::badarg);
    CHECK(g.whereis("nope").code() == errc::noproc);
    CHECK(g.send("nope", "x").code() == errc::noproc);

    REQUIRE(g.unregister_name("kvs").ok());
    CHECK(g.whereis("kvs").code() == errc::noproc);
    REQUIRE(g.register_name("kvs", b.self()).ok());
    CHECK(*g.whereis("kvs") == b.self());

    // One name server per node.
    CHECK_THROWS_AS(global_names(n), setup_error);
}

TEST_CASE("global: a holder that ends frees its names, and a dead pid cannot register", "[availability][global]") {
    node n(opts());
    global_names g(n);
    pid p = n.spawn([](actor& self, message& m) {
        if (m.is_user()) self.quit("normal");
    });
    REQUIRE(g.register_name("svc", p).ok());
    REQUIRE(g.register_name("svc.alias", p).ok());
    n.send(p, "stop");
    auto end = std::chrono::steady_clock::now() + 5s;
    while (g.whereis("svc").ok() || g.whereis("svc.alias").ok()) {
        REQUIRE(std::chrono::steady_clock::now() < end);
        std::this_thread::sleep_for(5ms);  // polling interval
    }
    CHECK(g.register_name("svc", p).code() == errc::noproc);
    CHECK(g.registered()->empty());
}
