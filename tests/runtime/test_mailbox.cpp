// The blocking mailbox: receive with timeout, selective receive.
#include <thread>

#include "runtime_test_util.hpp"

using namespace kith;
using namespace kith::test;
using clk = std::chrono::steady_clock;

TEST_CASE("receive times out with errc::timeout, never throws", "[runtime][mailbox]") {
    node n(opts());
    mailbox mb(n);
    auto t0 = clk::now();
    auto r = mb.receive(20ms);
    CHECK(r.code() == errc::timeout);
    CHECK(clk::now() - t0 >= 20ms);
    CHECK(mb.receive(0ms).code() == errc::timeout);
    CHECK(mb.receive([](const message&) { return true; }, 1ms).code() == errc::timeout);
}

TEST_CASE("selective receive takes the first match - the rest stay in order", "[runtime][mailbox][selective]") {
    node n(opts());
    mailbox mb(n);
    for (int i = 1; i <= 6; ++i) n.send(mb.self(), i);
    CHECK(eventually([&] { return mb.size() == 6; }));
    auto even = [](const message& m) { return m.body.as_int().value_or(1) % 2 == 0; };
    CHECK(mb.receive(even, 0ms)->body == term(2));
    CHECK(mb.receive(even, 0ms)->body == term(4));
    CHECK(mb.receive([](const message& m) { return m.body == term(5); }, 0ms)->body == term(5));
    CHECK(mb.receive(0ms)->body == term(1));
    CHECK(mb.receive(0ms)->body == term(3));
    CHECK(mb.receive(0ms)->body == term(6));
    CHECK(mb.receive(even, 10ms).code() == errc::timeout);
}

TEST_CASE("selective receive waits for a later matching message", "[runtime][mailbox][selective]") {
    node n(opts());
    mailbox mb(n);
    pid a = n.spawn([me = mb.self()](actor& self, message&) {
        self.send(me, "noise1");
        self.send(me, "noise2");
        self.send_after(20ms, me, "wanted");
    });
    n.send(a, 0);
    auto r = mb.receive([](const message& m) { return is_str(m.body, "wanted"); }, deadline);
    REQUIRE(r.ok());
    CHECK(is_str(r->body, "wanted"));
    CHECK(is_str(next(mb).body, "noise1"));
    CHECK(is_str(next(mb).body, "noise2"));
}

TEST_CASE("a blocked receive wakes up for a message from another thread", "[runtime][mailbox]") {
    node n(opts());
    mailbox mb(n);
    mailbox other(n);
    std::thread t([&] { other.send(mb.self(), "wake"); });
    auto r = mb.receive(deadline);
    t.join();
    REQUIRE(r.ok());
    CHECK(is_str(r->body, "wake"));
}

TEST_CASE("mailbox is movable - the moved-from one is empty", "[runtime][mailbox]") {
    node n(opts());
    mailbox a(n);
    pid p = a.self();
    mailbox b(std::move(a));
    CHECK(b.self() == p);
    CHECK(a.self().is_null());
    CHECK(a.receive(1ms).code() == errc::shutdown);
    n.send(p, "x");
    CHECK(is_str(next(b).body, "x"));
    mailbox c(n);
    c = std::move(b);
    CHECK(c.self() == p);
    CHECK(eventually([&] { return n.counters().live == 1; }));
}

TEST_CASE("sends to unknown local pids are dropped and counted", "[runtime][mailbox][counters]") {
    node n(opts());
    mailbox mb(n);
    auto before = n.counters();
    mb.send(pid{n.name(), 123456}, "lost");
    n.send(pid{}, "lost");
    auto after = n.counters();
    CHECK(after.dropped_unknown == before.dropped_unknown + 2);
    CHECK(after.dropped_remote == before.dropped_remote);
}
