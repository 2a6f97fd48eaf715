// spin_window.hpp — how long the transport's I/O loop polls without
// blocking after a turn with activity (io_loop, loop.cpp). Private to the
// transport.
//
// Long enough to catch what usually comes next, learnt from the gaps
// between turns with activity: a chain of hand-offs (an rpc, a remote
// spawn: the answer in 60-150 us) is caught awake instead of waking a
// sleeping thread, which on an idle or virtual CPU costs 20-40 us each
// time; a stream, or traffic sparser than io_spin_max, spins io_spin_min.
// While other processes keep the machine's CPUs busy (others_busy) every
// window is io_spin_min: there a long spin takes CPU from the threads the
// loop waits for (a relay's, a kernel worker, another process's), and a
// woken thread waits for a CPU anyway (docs/performance.md, "The I/O
// loop's spin window").
#pragma once

#include <algorithm>
#include <chrono>
#include <thread>

namespace kith::detail {

constexpr auto io_spin_min = std::chrono::microseconds(50);
constexpr auto io_spin_max = std::chrono::microseconds(250);
constexpr auto io_yield_busy = std::chrono::microseconds(20);

// Whether processes other than this one used more than half a CPU, on
// average, over the last second that sample_others_busy measured (false
// until it measured twice, and where /proc cannot be read). Any thread.
bool others_busy() noexcept;
// Measures at most once a second (process-wide: whichever caller comes
// first after the second is up; the others return at once). Any thread;
// reads /proc/stat and /proc/self/stat.
void sample_others_busy(std::chrono::steady_clock::time_point now);

// The window itself: a plain value, used by the loop's leader thread only.
class spin_window {
public:
    // A turn with activity ended at `now`: until when to poll without blocking.
    std::chrono::steady_clock::time_point active(std::chrono::steady_clock::time_point now) noexcept {
        using us = std::chrono::duration<double, std::micro>;
        const double max = us(io_spin_max).count(), min = us(io_spin_min).count();
        if (last_ != std::chrono::steady_clock::time_point{}) {
            const double gap = std::min(us(now - last_).count(), 4 * max);
            gap_us_ += (gap - gap_us_) / 8;  // moving average of the last ~8 gaps
        }
        last_ = now;
        const double spin =
            gap_us_ <= max && !others_busy() ? std::clamp(1.5 * gap_us_ + 20, min, max) : min;
        return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(us(spin));
    }

    // Gives the CPU to any other thread that wants it (sched_yield); true
    // when one took it (the yield lasted over io_yield_busy): then the loop
    // stops spinning for this gap, since this CPU is not idle (waking the
    // loop later costs no idle exit) and its spin would take time from
    // that thread.
    static bool yield_found_others() noexcept {
        const auto t0 = std::chrono::steady_clock::now();
        std::this_thread::yield();
        return std::chrono::steady_clock::now() - t0 > io_yield_busy;
    }

private:
    double gap_us_ = 0;
    std::chrono::steady_clock::time_point last_{};
};

}  // namespace kith::detail
