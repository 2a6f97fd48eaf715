// spin_window.cpp — see spin_window.hpp: whether other processes keep the
// machine's CPUs busy.
#include "transport/spin_window.hpp"

#include <atomic>
#include <cstdint>
#include <mutex>

#include "transport/cpu_placer.hpp"

namespace kith::detail {

namespace {

std::atomic<bool> busy{false};
std::atomic<std::int64_t> next_sample{0};  // steady_clock ns
std::mutex sample_mu;                      // guards the last sample
struct sample {
    std::uint64_t busy = 0, total = 0, ours = 0;  // clock ticks (all CPUs)
    std::size_t cpus = 0;
};
sample last;
bool have_last = false;

}  // namespace

bool others_busy() noexcept { return busy.load(std::memory_order_relaxed); }

void sample_others_busy(std::chrono::steady_clock::time_point now) {
    const std::int64_t t = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
    std::int64_t due = next_sample.load(std::memory_order_relaxed);
    if (t < due || !next_sample.compare_exchange_strong(due, t + 1'000'000'000, std::memory_order_relaxed)) return;
    std::unique_lock lk(sample_mu, std::try_to_lock);
    if (!lk) return;
    sample s;
    for (const cpu_ticks& c : parse_proc_stat(read_file("/proc/stat")))
        if (c.total > 0) s.busy += c.busy, s.total += c.total, s.cpus++;
    if (s.cpus == 0 || !stat_ticks("/proc/self/stat", s.ours)) {
        have_last = false;
        busy.store(false, std::memory_order_relaxed);
        return;
    }
    if (have_last && s.cpus == last.cpus && s.total > last.total && s.busy >= last.busy) {
        // CPUs' worth of time others used: busy ticks not ours, over one
        // CPU's ticks in the interval.
        const double per_cpu = double(s.total - last.total) / double(s.cpus);
        const double ours = s.ours >= last.ours ? double(s.ours - last.ours) : 0.0;
        const double others = (double(s.busy - last.busy) - ours) / per_cpu;
        busy.store(others > 0.5, std::memory_order_relaxed);
    }
    last = s;
    have_last = true;
}

}  // namespace kith::detail
