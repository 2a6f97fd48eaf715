// The I/O loop's spin window (core/src/transport/spin_window.hpp): how long
// it polls without blocking after a turn with activity, learnt from the
// gaps between such turns, and the least while other processes keep the
// CPUs busy.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "kith_catch.hpp"
#include "transport/cpu_placer.hpp"
#include "transport/spin_window.hpp"

using kith::detail::io_spin_max;
using kith::detail::io_spin_min;
using kith::detail::spin_window;
using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {
// The window after `n` turns `gap` apart.
clk::duration window_after(spin_window& w, clk::time_point& t, clk::duration gap, int n) {
    clk::time_point until{};
    for (int i = 0; i < n; ++i) {
        t += gap;
        until = w.active(t);
    }
    return until - t;
}
}  // namespace

TEST_CASE("spin window: a stream spins the least, a chain of hand-offs long enough to catch its answer, sparse traffic the least") {
    if (kith::detail::others_busy()) {  // set by the case below when run in the same process
        WARN("another process keeps the CPUs busy: every window is the least; nothing to check here");
        return;
    }
    spin_window w;
    clk::time_point t = clk::now();
    CHECK(w.active(t) - t == clk::duration(io_spin_min));  // nothing learnt yet
    // Back to back (a stream): the loop is busy anyway.
    CHECK(window_after(w, t, 2us, 64) == clk::duration(io_spin_min));
    // Answers 100 us after each turn (an rpc chain): spin past them.
    auto chain = window_after(w, t, 100us, 64);
    CHECK(chain > 100us);
    CHECK(chain <= clk::duration(io_spin_max));
    // Turns 2 ms apart: spinning would not catch the next; back to the least.
    CHECK(window_after(w, t, 2ms, 64) == clk::duration(io_spin_min));
    // Never more than the most, whatever the gaps.
    for (auto gap : {150us, 200us, 240us, 300us}) CHECK(window_after(w, t, gap, 64) <= clk::duration(io_spin_max));
    // One long pause in a chain does not end its long window at once.
    window_after(w, t, 100us, 64);
    CHECK(window_after(w, t, 5ms, 1) > clk::duration(io_spin_min));
}

TEST_CASE("spin window: another process keeping a CPU busy is seen within two samples, and every window is then the least") {
    using kith::detail::others_busy;
    using kith::detail::sample_others_busy;
    std::uint64_t ticks = 0;
    if (!kith::detail::stat_ticks("/proc/self/stat", ticks)) {
        WARN("no /proc here: others_busy() stays false; nothing to check");
        return;
    }
    const pid_t parent = ::getpid();
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the test
        if (::getppid() != parent) ::_exit(0);
        volatile unsigned long i = 0;
        for (;;) {
            i = i + 1;  // a CPU-bound process, killed below
        }
    }
    // sample_others_busy measures at most once a second: ask every 50 ms.
    const auto until = clk::now() + 10s;
    while (!others_busy() && clk::now() < until) {
        sample_others_busy(clk::now());
        std::this_thread::sleep_for(50ms);  // polling the sampler, with a deadline
    }
    const bool seen = others_busy();
    spin_window w;
    clk::time_point t = clk::now();
    auto chain = window_after(w, t, 100us, 64);
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    CHECK(seen);
    CHECK(chain == clk::duration(io_spin_min));
}
