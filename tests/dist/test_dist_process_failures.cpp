// Peers in separate OS processes that fail (real fork/exec, real CURVE):
//   - kill -9 of a child: DOWN noconnection, pending call -> nodedown,
//     nodedown with a documented reason, all within the heartbeat bound; the
//     child restarts and the link comes back by itself;
//   - SIGSTOP of a child (silent, connection open): nodedown "timeout" within
//     the heartbeat bound, and back after SIGCONT.

#include "process_support.hpp"
#include "../support/free_ports.hpp"

TEST_CASE("process: kill -9 of a peer - noconnection, nodedown, then restart and reconnect", "[dist][process]") {
    temp_dir tmp;
    event_log events;
    node me(opts("tester@localhost", tmp.path / "me"));
    me.subscribe_nodes(std::ref(events));
    mailbox watcher(me);
    me.monitor_nodes(watcher.self());
    const auto child_dir = tmp.path / "child";

    std::string endpoint;
    public_key key;
    {
        // Restarted on this endpoint below while `me` redials it: a port
        // below the ephemeral range, which no connection takes meanwhile.
        const std::string listen = "tcp://127.0.0.1:" + std::to_string(kith_test::free_ports_below_ephemeral());
        child_node child("child@localhost", child_dir, kCookie, listen);
        require_ready(child);
        endpoint = child.endpoint;
        key = child.key;
        REQUIRE(me.connect(child.endpoint, child.key, 5s).ok());
        REQUIRE(events.wait(0, "child@localhost", node_event::kind::up, 5s));
        REQUIRE(me.call("child@localhost", "kvs", "store", arr("before", 1), 5s).ok());

        // A monitor on a pid in the child.
        mailbox mb(me);
        auto echo = me.spawn("child@localhost", "echo", "server", arr(), 5s);
        REQUIRE(echo.ok());
        ref mref = mb.monitor(*echo);
        mb.send(*echo, arr(mb.self(), "ping"));  // after the monitor, on the same stream
        CHECK(expect(mb, [](const message& m) { return m.is_user(); }).body == term("ping"));

        // A call that the child parks and never answers.
        std::optional<result<term>> got;
        clock_type::time_point got_at;
        std::thread caller([&] {
            auto r = me.call("child@localhost", "slow", "wait", arr(), 30s);
            got_at = clock_type::now();
            got.emplace(std::move(r));
        });
        joiner j{caller, [&] { child.kill_now(); }};  // on failure: unblock the call at once
        // Wait (with a deadline) until the child really holds the call.
        auto park_deadline = clock_type::now() + 5s;
        std::int64_t parked = 0;
        while (parked < 1 && clock_type::now() < park_deadline) {
            auto p = me.call("child@localhost", "slow", "parked", arr(), 2s);
            REQUIRE(p.ok());
            parked = *p->as_int();
        }
        REQUIRE(parked == 1);

        std::size_t before_kill = events.size();
        auto t0 = clock_type::now();
        child.kill_now();

        // The monitor fires noconnection.
        auto down = expect(mb, [&](const message& m) { return m.is_down() && m.tag == mref; }, 10s);
        auto down_ms = ms_since(t0);
        CHECK(down.body == term("noconnection"));
        CHECK(down.from == *echo);
        CHECK(down_ms < 3500);

        // The pending call fails with nodedown (not timeout), within the bound.
        caller.join();
        REQUIRE(got.has_value());
        CHECK(got->code() == errc::nodedown);
        auto call_ms = ms_since(t0, got_at);
        CHECK(call_ms < 4000);

        // The subscriber gets nodedown with a documented reason, within the bound.
        auto nd = events.wait(before_kill, "child@localhost", node_event::kind::down, 10s);
        REQUIRE(nd);
        auto nd_ms = ms_since(t0, nd->at);
        INFO("nodedown reason: " << nd->ev.reason);
        CHECK((nd->ev.reason == "timeout" || nd->ev.reason == "connection_closed"));
        CHECK(nd_ms < 3500);
        // The same event as a message to monitor_nodes subscribers.
        auto ndm = expect(watcher, [](const message& m) {
            return m.body.at(0) && *m.body.at(0) == term("nodedown");
        });
        CHECK(*ndm.body.at(1) == term("child@localhost"));
        CHECK(*ndm.body.at(2) == term(nd->ev.reason));
        std::fprintf(stderr,
                     "[process] kill -9 -> nodedown(%s): %.1f ms, DOWN noconnection: %.1f ms, "
                     "pending call nodedown: %.1f ms\n",
                     nd->ev.reason.c_str(), nd_ms, down_ms, call_ms);

        int st = child.reap(5s);
        CHECK(WIFSIGNALED(st));
        CHECK(WTERMSIG(st) == SIGKILL);
        CHECK(me.nodes().empty());
        CHECK(me.call("child@localhost", "kvs", "keys", arr(), 5s).code() == errc::nodedown);
        CHECK_FALSE(me.ping("child@localhost", 200ms));
    }

    // Restart with the same key dir, name and endpoint. The test node does not
    // call connect again: its outbound link reconnects by itself.
    std::size_t before_restart = events.size();
    auto t1 = clock_type::now();
    child_node again("child@localhost", child_dir, kCookie, endpoint);
    require_ready(again);
    CHECK(again.endpoint == endpoint);
    CHECK(again.key == key);  // same key dir, same identity
    auto up = events.wait(before_restart, "child@localhost", node_event::kind::up, 10s);
    INFO("child stderr:\n" << again.stderr_text());
    REQUIRE(up);  // automatic reconnect
    std::fprintf(stderr, "[process] restart -> nodeup (automatic reconnect): %.1f ms after exec\n",
                 ms_since(t1, up->at));
    auto upm = expect(watcher, [](const message& m) { return m.body.at(0) && *m.body.at(0) == term("nodeup"); });
    CHECK(*upm.body.at(1) == term("child@localhost"));
    // connect() now just reports the live connection.
    auto again_name = me.connect(endpoint, key, 5s);
    REQUIRE(again_name.ok());
    CHECK(*again_name == "child@localhost");
    // Calls work again, against the new incarnation (fresh kvs, nothing parked).
    CHECK(me.call("child@localhost", "kvs", "lookup", arr("before"), 5s).value() == term("undefined"));
    CHECK(me.call("child@localhost", "kvs", "store", arr("after", 2), 5s).value() == term(true));
    CHECK(me.call("child@localhost", "kvs", "lookup", arr("after"), 5s).value() == arr("ok", 2));
    CHECK(me.call("child@localhost", "slow", "parked", arr(), 5s).value() == term(0));
    CHECK(me.ping("child@localhost"));
}

TEST_CASE("process: a frozen peer (SIGSTOP) is declared down by heartbeat timeout, and comes back", "[dist][process]") {
    tester_and_child cast;
    auto& [tmp, events, me, child] = cast;
    REQUIRE(me.connect(child.endpoint, child.key, 5s).ok());
    REQUIRE(events.wait(0, "child@localhost", node_event::kind::up, 5s));

    mailbox mb(me);
    auto echo = me.spawn("child@localhost", "echo", "server", arr(), 5s);
    REQUIRE(echo.ok());
    ref mref = mb.monitor(*echo);
    mb.send(*echo, arr(mb.self(), "ping"));
    CHECK(expect(mb, [](const message& m) { return m.is_user(); }).body == term("ping"));

    std::size_t before = events.size();
    auto t0 = clock_type::now();
    child.signal(SIGSTOP);  // the connection stays open; only heartbeats stop
    auto nd = events.wait(before, "child@localhost", node_event::kind::down, 10s);
    child.signal(SIGCONT);
    REQUIRE(nd);
    auto nd_ms = ms_since(t0, nd->at);
    CHECK(nd->ev.reason == "timeout");
    CHECK(nd_ms >= 2000);  // not before the 2.5 s heartbeat timeout (minus one interval)
    CHECK(nd_ms < 3500);
    CHECK(expect(mb, [&](const message& m) { return m.is_down() && m.tag == mref; }).body == term("noconnection"));
    std::fprintf(stderr, "[process] SIGSTOP -> nodedown(%s): %.1f ms\n", nd->ev.reason.c_str(), nd_ms);

    // Thawed, the child is reached again by the automatic reconnect.
    auto up = events.wait(before, "child@localhost", node_event::kind::up, 10s);
    REQUIRE(up);
    CHECK(me.call("child@localhost", "echo", "echo", arr(5), 5s).value() == term(5));
}
