// Nodes in separate OS processes on loopback: the test's own kith::node talks
// to kith_test_node children (real fork/exec, real CURVE).
//   - the seeds' walkthroughs (kvs over rpc, echo server, dist_demo) and a
//     clean stop (SIGTERM: goodbye, nodedown "shutdown");
//   - a wrong cookie and a wrong server key are refused quickly.
// Failures (kill -9, SIGSTOP) are in test_dist_process_failures.cpp, a
// misbehaving authenticated peer in test_dist_process_forged.cpp.

#include "process_support.hpp"

TEST_CASE("process: the seeds' walkthroughs across OS processes, then a clean stop", "[dist][process]") {
    tester_and_child cast;
    auto& [tmp, events, me, child] = cast;

    auto name = me.connect(child.endpoint, child.key, 5s);
    REQUIRE(name.ok());
    CHECK(*name == "child@localhost");
    auto up = events.wait(0, "child@localhost", node_event::kind::up, 5s);
    REQUIRE(up);
    CHECK(up->ev.info.trust == trust_level::cluster);
    CHECK(me.nodes() == std::vector<std::string>{"child@localhost"});

    // kvs through call: store, then lookup.
    CHECK(me.call("child@localhost", "kvs", "store", arr("weather", "fine"), 5s).value() == term(true));
    CHECK(me.call("child@localhost", "kvs", "lookup", arr("weather"), 5s).value() == arr("ok", "fine"));
    CHECK(me.call("child@localhost", "kvs", "lookup", arr("rain"), 5s).value() == term("undefined"));

    // The echo server spawned on the child: [self, "abc"] comes back as "abc".
    mailbox mb(me);
    auto echo = me.spawn("child@localhost", "echo", "server", arr(), 5s);
    REQUIRE(echo.ok());
    CHECK(echo->node == "child@localhost");
    mb.send(*echo, arr(mb.self(), "abc"));
    CHECK(expect(mb, [](const message& m) { return m.is_user(); }).body == term("abc"));

    // dist_demo: spawn demo:rpc_server on the child, then rpc through it.
    auto server = me.spawn("child@localhost", "demo", "rpc_server", arr(), 5s);
    REQUIRE(server.ok());
    auto r = mb.call(*server, arr("demo", "node", arr()), 5s);
    REQUIRE(r.ok());
    CHECK(*r == term("child@localhost"));
    CHECK(mb.call(*server, arr("kvs", "lookup", arr("weather")), 5s).value() == arr("ok", "fine"));

    // SIGTERM: the child stops cleanly, says goodbye, and we see "shutdown"
    // at once (well before any heartbeat timeout).
    ref mref = mb.monitor(*echo);
    auto t0 = clock_type::now();
    child.signal(SIGTERM);
    auto down = events.wait(0, "child@localhost", node_event::kind::down, 5s);
    REQUIRE(down);
    CHECK(down->ev.reason == "shutdown");
    CHECK(ms_since(t0, down->at) < 2000);
    CHECK(expect(mb, [&](const message& m) { return m.is_down() && m.tag == mref; }).body == term("noconnection"));
    int st = child.reap(5s);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    CHECK(me.nodes().empty());
    std::fprintf(stderr, "[process] SIGTERM -> nodedown(shutdown): %.1f ms\n", ms_since(t0, down->at));
}

TEST_CASE("process: a wrong cookie and a wrong server key are refused quickly", "[dist][process]") {
    temp_dir tmp;
    node me(opts("tester@localhost", tmp.path / "me"));
    child_node child("child@localhost", tmp.path / "child", "another-cookie");
    require_ready(child);

    auto t0 = clock_type::now();
    auto r = me.connect(child.endpoint, child.key, 5s);
    auto refused_ms = ms_since(t0);
    CHECK(r.code() == errc::unauthorized);
    INFO("refusal: " << (r.ok() ? std::string("none") : r.err().detail));
    CHECK(refused_ms < 4000);
    CHECK(me.nodes().empty());
    CHECK(me.call("child@localhost", "kvs", "keys", arr(), 500ms).code() == errc::nodedown);
    // The child says so too.
    CHECK(child.wait_stderr("refused", 5s));
    std::fprintf(stderr, "[process] wrong cookie refused in %.1f ms\n", refused_ms);

    // A wrong server key (an impostor at that endpoint, from our point of view).
    auto t1 = clock_type::now();
    auto r2 = me.connect(child.endpoint, keypair::generate().pub, 5s);
    auto wrong_key_ms = ms_since(t1);
    CHECK(r2.code() == errc::unauthorized);
    CHECK(wrong_key_ms < 4000);
    std::fprintf(stderr, "[process] wrong server key refused in %.1f ms\n", wrong_key_ms);

    // The child is unharmed and serves a node with the right cookie.
    CHECK(child.running());
    temp_dir tmp2;
    node friend_node(opts("friend@localhost", tmp2.path, "another-cookie"));
    auto ok = friend_node.connect(child.endpoint, child.key, 5s);
    REQUIRE(ok.ok());
    CHECK(friend_node.call("child@localhost", "kvs", "keys", arr(), 5s).value() == arr());
}
