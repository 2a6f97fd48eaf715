// Helpers shared by the runtime tests: deadlines, never fixed sleeps.
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"

namespace kith::test {

using namespace std::chrono_literals;

// Generous deadline for events that must happen (tests fail, never hang).
inline constexpr auto deadline = std::chrono::seconds(10);

inline node_options opts(unsigned workers = 2, std::string name = "test@local") {
    node_options o;
    o.name = std::move(name);
    o.workers = workers;
    return o;
}

inline bool is_str(const term& t, std::string_view s) {
    const std::string* p = t.as_string();
    return p && *p == s;
}

// Receives the next message or fails the test.
inline message next(mailbox& mb, std::chrono::nanoseconds timeout = deadline) {
    auto r = mb.receive(timeout);
    REQUIRE(r.ok());
    return std::move(r).value();
}

// Receives the first message of `kind` (others stay queued) or fails.
inline message next_of(mailbox& mb, message_kind kind, std::chrono::nanoseconds timeout = deadline) {
    auto r = mb.receive([kind](const message& m) { return m.kind == kind; }, timeout);
    REQUIRE(r.ok());
    return std::move(r).value();
}

// Waits until `pred()` holds, polling with a deadline.
template <class P>
bool eventually(P pred, std::chrono::nanoseconds timeout = deadline) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end) return false;
        std::this_thread::yield();
    }
    return true;
}

}  // namespace kith::test
