// Timers: send_after and cancel_timer.
#include "runtime_test_util.hpp"

using namespace kith;
using namespace kith::test;
using clk = std::chrono::steady_clock;

TEST_CASE("send_after delivers after the delay", "[runtime][timers]") {
    node n(opts());
    mailbox mb(n);
    auto t0 = clk::now();
    ref r = n.send_after(30ms, mb.self(), "tick");
    CHECK_FALSE(r.is_null());
    CHECK(r.node == n.name());
    message m = next(mb);
    CHECK(clk::now() - t0 >= 30ms);
    CHECK(m.is_user());
    CHECK(is_str(m.body, "tick"));
    CHECK_FALSE(n.cancel_timer(r));  // already fired
}

TEST_CASE("timers fire in deadline order", "[runtime][timers]") {
    node n(opts());
    mailbox mb(n);
    // Deadlines 300 ms apart: a thread stalled between two calls (a loaded
    // 2-core machine, sanitizers) must not reorder them.
    n.send_after(900ms, mb.self(), 3);
    n.send_after(300ms, mb.self(), 1);
    n.send_after(600ms, mb.self(), 2);
    n.send_after(0ms, mb.self(), 0);
    for (int i = 0; i < 4; ++i) CHECK(next(mb).body == term(i));
}

TEST_CASE("a cancelled timer never fires", "[runtime][timers][cancel]") {
    node n(opts());
    mailbox mb(n);
    // Cancelled long before it is due, even if this thread stalls.
    ref first = n.send_after(500ms, mb.self(), "cancelled");
    n.send_after(1000ms, mb.self(), "later");
    CHECK(n.cancel_timer(first));
    CHECK_FALSE(n.cancel_timer(first));
    CHECK(is_str(next(mb).body, "later"));  // "cancelled" would have come first
    CHECK(mb.size() == 0);
    CHECK_FALSE(n.cancel_timer(ref{"other@node", first.id}));
    CHECK_FALSE(n.cancel_timer(ref{}));
}

TEST_CASE("an actor ticks with send_after and cancels its timer", "[runtime][timers]") {
    node n(opts());
    mailbox mb(n);
    pid a = n.spawn([me = mb.self()](actor& self) -> behavior {
        auto ticks = std::make_shared<int>(0);
        self.send_after(1ms, self.self(), "tick");
        return [me, ticks](actor& self, message& m) {
            if (!is_str(m.body, "tick")) return;
            if (++*ticks < 5) {
                self.send_after(1ms, self.self(), "tick");
                return;
            }
            // Set one more timer and cancel it: it must not arrive.
            // Due before the report: if the cancel did not hold, it would
            // be the first message.
            ref r = self.send_after(300ms, me, "never");
            bool cancelled = self.cancel_timer(r);
            self.send_after(600ms, me, arr(*ticks, cancelled));
        };
    });
    message m = next(mb);
    CHECK(m.body == arr(5, true));
    CHECK(n.alive(a));
}

TEST_CASE("a timer to a dead actor is dropped - stop discards pending timers", "[runtime][timers]") {
    node n(opts());
    mailbox mb(n);
    auto [a, r] = mb.spawn_monitor([](actor& self, message&) { self.quit(); });
    n.send(a, 0);
    CHECK(next(mb).is_down());
    // The DOWN is sent before the actor leaves the process table: wait
    // until a probe to it is counted as dropped (one to the actor still
    // ending is queued into it).
    const auto until = clk::now() + 10s;
    for (;;) {
        const auto b = n.counters().dropped_unknown;
        n.send(a, "probe");
        if (n.counters().dropped_unknown == b + 1) break;
        REQUIRE(clk::now() < until);
        std::this_thread::sleep_for(1ms);
    }
    auto before = n.counters().dropped_unknown;
    n.send_after(1ms, a, "late");
    n.send_after(5ms, mb.self(), "sync");
    CHECK(is_str(next(mb).body, "sync"));
    CHECK(n.counters().dropped_unknown == before + 1);
    n.send_after(std::chrono::hours(1), mb.self(), "never");
    n.stop();
}
