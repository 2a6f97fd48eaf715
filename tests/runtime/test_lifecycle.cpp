// Actor lifecycle: spawn, init, handle, become, quit, exceptions, stop.
#include <atomic>
#include <stdexcept>

#include "runtime_test_util.hpp"

using namespace kith;
using namespace kith::test;

TEST_CASE("an actor handles messages one at a time and quits", "[runtime][lifecycle]") {
    node n(opts());
    mailbox mb(n);
    const pid me = mb.self();
    pid a = n.spawn([me](actor& self, message& m) {
        if (is_str(m.body, "stop")) {
            self.quit();
            return;
        }
        self.send(me, arr(self.self(), m.body));
    });
    CHECK(a.node == "test@local");
    CHECK(a.serial > 0);
    CHECK(n.alive(a));
    ref mon = mb.monitor(a);
    n.send(a, "hello");
    message m = next(mb);
    CHECK(m.kind == message_kind::user);
    REQUIRE(m.body.at(0));
    CHECK(*m.body.at(0) == term(a));
    CHECK(is_str(*m.body.at(1), "hello"));
    n.send(a, "stop");
    message down = next(mb);
    CHECK(down.kind == message_kind::down);
    CHECK(down.tag == mon);
    CHECK(down.from == a);
    CHECK(is_str(down.body, "normal"));
    CHECK(eventually([&] { return !n.alive(a); }));
    CHECK(eventually([&] { return n.counters().exited == 1; }));
    CHECK(n.counters().spawned == 1);
}

TEST_CASE("an init function runs first and returns the behaviour", "[runtime][lifecycle]") {
    node n(opts());
    mailbox mb(n);
    const pid me = mb.self();
    pid a = n.spawn([me](actor& self) -> behavior {
        self.send(me, "init");
        auto count = std::make_shared<int>(0);
        return [me, count](actor& self, message&) { self.send(me, ++*count); };
    });
    CHECK(is_str(next(mb).body, "init"));
    n.send(a, 1);
    n.send(a, 2);
    CHECK(next(mb).body == term(1));
    CHECK(next(mb).body == term(2));
}

TEST_CASE("an init returning no behaviour ends the actor normally", "[runtime][lifecycle]") {
    node n(opts());
    mailbox mb(n);
    auto [a, mon] = mb.spawn_monitor([](actor&) -> behavior { return {}; });
    message down = next(mb);
    CHECK(down.is_down());
    CHECK(down.tag == mon);
    CHECK(down.from == a);
    CHECK(is_str(down.body, "normal"));
}

TEST_CASE("become swaps the behaviour for the next message", "[runtime][lifecycle]") {
    node n(opts());
    mailbox mb(n);
    const pid me = mb.self();
    pid a = n.spawn([me](actor& self, message&) {
        self.send(me, "first");
        self.become([me](actor& self, message&) { self.send(me, "second"); });
    });
    n.send(a, 0);
    n.send(a, 0);
    n.send(a, 0);
    CHECK(is_str(next(mb).body, "first"));
    CHECK(is_str(next(mb).body, "second"));
    CHECK(is_str(next(mb).body, "second"));
}

TEST_CASE("an exception in a handler ends the actor with its text - the node carries on",
          "[runtime][lifecycle][exceptions]") {
    node n(opts());
    mailbox mb(n);
    const pid me = mb.self();
    auto [a, mon] = mb.spawn_monitor([](actor&, message& m) {
        if (is_str(m.body, "boom")) throw std::runtime_error("division by zero");
    });
    n.send(a, "boom");
    message down = next(mb);
    CHECK(down.is_down());
    CHECK(is_str(down.body, "division by zero"));
    // The node still runs other actors.
    pid b = n.spawn([me](actor& self, message& m) { self.send(me, m.body); });
    n.send(b, "still here");
    CHECK(is_str(next(mb).body, "still here"));
    // A non-std exception has a fixed reason.
    auto [c, mon2] = mb.spawn_monitor([](actor&, message&) { throw 42; });
    n.send(c, 0);
    message down2 = next(mb);
    CHECK(down2.tag == mon2);
    CHECK(is_str(down2.body, "unknown exception"));
}

TEST_CASE("an exception in init ends the actor", "[runtime][lifecycle][exceptions]") {
    node n(opts());
    mailbox mb(n);
    auto [a, mon] = mb.spawn_monitor([](actor&) -> behavior { throw std::runtime_error("bad init"); });
    message down = next(mb);
    CHECK(down.from == a);
    CHECK(is_str(down.body, "bad init"));
}

TEST_CASE("a node with one worker runs many actors", "[runtime][lifecycle][one_worker]") {
    node n(opts(1));
    CHECK(n.workers() == 1);
    mailbox mb(n);
    const pid me = mb.self();
    // A ring of 100 actors passing a token around 10 times.
    constexpr int N = 100;
    auto next_pid = std::make_shared<std::vector<pid>>(N);
    for (int i = 0; i < N; ++i) {
        (*next_pid)[i] = n.spawn([i, next_pid, me](actor& self, message& m) {
            auto hops = m.body.as_int().value_or(0);
            if (hops == 0) {
                self.send(me, "done");
                return;
            }
            self.send((*next_pid)[(i + 1) % N], hops - 1);
        });
    }
    n.send((*next_pid)[0], N * 10);
    CHECK(is_str(next(mb).body, "done"));
    CHECK(n.counters().spawned == N);
    next_pid->clear();  // break the cycle actor -> closure -> vector
}

TEST_CASE("stopping a node drops remaining actors and joins its threads", "[runtime][lifecycle]") {
    auto n = std::make_unique<node>(opts());
    auto mb = std::make_unique<mailbox>(*n);
    const pid me = mb->self();
    std::vector<pid> ps;
    for (int i = 0; i < 1000; ++i)
        ps.push_back(n->spawn([me](actor& self, message& m) { self.send(me, m.body); }));
    // A busy actor that keeps sending itself messages.
    pid busy = n->spawn([](actor& self, message&) { self.send(self.self(), 0); });
    n->send(busy, 0);
    // An actor holding a mailbox handle in its closure (would be a cycle).
    auto inner = std::make_shared<mailbox>(*n);
    n->spawn([inner](actor&, message&) {});
    inner.reset();
    n->send(ps[0], "ping");
    CHECK(is_str(next(*mb).body, "ping"));
    n->stop();
    n->stop();  // idempotent
    CHECK(mb->receive(10ms).code() == errc::shutdown);
    n.reset();
    // The mailbox outlives the node; its operations fail cleanly.
    CHECK(mb->receive(1ms).code() == errc::shutdown);
    mb->send(busy, 1);
    mb.reset();
}

TEST_CASE("the node name must not be empty", "[runtime][lifecycle]") {
    node_options o;
    o.name = "";
    CHECK_THROWS_AS(node(o), setup_error);
}

TEST_CASE("an idle worker takes over actors queued behind a long handler", "[runtime][scheduler]") {
    node n(opts(2));
    mailbox mb(n);
    auto flag = std::make_shared<std::atomic<bool>>(false);
    pid y = n.spawn([flag](actor&, message&) { flag->store(true); });
    // x's handler spins until y has run; y was scheduled on x's worker, so
    // only the other worker can run it.
    pid x = n.spawn([flag, y, me = mb.self()](actor& self, message&) {
        self.send(y, "wake");
        auto end = std::chrono::steady_clock::now() + deadline;
        while (!flag->load() && std::chrono::steady_clock::now() < end) {
        }
        self.send(me, flag->load());
    });
    n.send(x, 0);
    CHECK(next(mb).body == term(true));
}
