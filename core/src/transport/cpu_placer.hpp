// cpu_placer.hpp — net_options::network_cpu = network_cpu_auto: the network
// threads of the process (the I/O threads of its "auto" nodes and ZeroMQ's
// I/O threads) kept together on one CPU, the one least busy with other
// work, and moved when that changes.
//
// Why together: a frame passes between these threads one after the other
// (docs/performance.md, "The slow mode"); spread over CPUs, every hand-off
// is a cross-CPU wake-up. Why not a fixed CPU: a CPU busy with other work
// gives them only its share. So about once a second the placer reads how
// busy each allowed CPU was (/proc/stat), less what the network threads
// themselves used (/proc/self/task/<tid>/stat), and moves them to another
// CPU when theirs is busier with other work by more than a margin, or
// unpins them for a while when they wait for each other (a stream). With
// fewer than two allowed CPUs, or without /proc, it pins nothing.
//
// Thread-safety: all members may be called from any thread. The placer's
// own thread runs while any holder of acquire() lives.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace kith::detail {

// One CPU's counters from /proc/stat, in clock ticks.
struct cpu_ticks {
    std::uint64_t busy = 0;   // user nice system irq softirq steal
    std::uint64_t total = 0;  // busy + idle + iowait
};

// The per-CPU lines of /proc/stat's text ("cpuN ..."), indexed by N (CPUs
// without a line are zero).
std::vector<cpu_ticks> parse_proc_stat(std::string_view text);
// A whole file's text ("" when it cannot be read).
std::string read_file(const std::string& path);
// utime + stime (fields 14 and 15, clock ticks) of a /proc/.../stat file
// (/proc/self/stat, /proc/self/task/<tid>/stat); the second field (the
// name, in parentheses) may hold spaces. false when unreadable.
bool stat_ticks(const std::string& path, std::uint64_t& out);

// The placement rule, on what was measured over the last interval:
// `others[c]` is how busy CPU c was with work other than the network
// threads (0..1 of that CPU), for c in `allowed`; `current` is the CPU the
// network threads are on (-1: not pinned yet). Returns the CPU for them, or
// -1 to leave them unpinned (fewer than two allowed CPUs). They move only
// when their CPU was busier with other work than the least busy one by more
// than `margin`, so that they do not flap between two CPUs alike.
int choose_network_cpu(const std::vector<int>& allowed, const std::vector<double>& others, int current,
                       double margin);

// The second rule, on the network threads' own experience: `waited` is how
// long they waited for `current`, on average, each time they were given it
// over the last interval (their run-queue delay per run,
// /proc/self/task/<tid>/schedstat, in us). Busy figures do not show a
// CPU-bound thread pinned to their CPU when every CPU is busy (each reads
// 100 %); their waiting does (measured on a 2-CPU VM under a load of 10:
// about 450 us a run beside such a thread, 20 us on the other CPU). Past
// `too_long` they move to the allowed CPU where they waited least when last
// there, if under half as long; one not tried (or not lately) counts as 0. `tried[c]`: that
// figure on CPU c, negative if unknown. -1: stay.
int escape_waiting_cpu(const std::vector<int>& allowed, const std::vector<double>& tried, int current,
                       double waited, double too_long);

// Before a move (not the first placement, nor leaving a CPU the process may
// no longer use): one look's figures may straddle another process's move.
// Two kith processes on one machine each count the other's network threads
// as other work; looking in step, both saw their shared CPU busy, both
// moved, and again a second later, for good (measured: every second, in
// step, for the whole run). So a move waits until the rules have wanted to
// leave `current` `needed` looks in a row (to whichever CPU: the move goes
// to the last look's choice), with `needed` drawn from 2..4 (`draw`, any
// number) each time they start to, and the looks are 0.75-1.25 s apart
// (drawn each time): the process that moves first has moved before the
// other's count is up, and the other's next figures show its CPU free. A
// look that wants to stay starts the count again. `hold` keeps the count
// between looks; `wanted` is what the rules chose this look (`current` or
// -1: stay). True: move to `wanted` now.
struct move_hold {
    int want = -1;
    int streak = 0;
    int needed = 0;
};
bool hold_then_move(move_hold& hold, int wanted, int current, unsigned draw);

// The third rule: the network threads waited for their CPU (`waited` us a
// run, as above) while other work took under `margin` of it (`others_here`,
// 0..1): they waited for each other. That is a stream (a one-way flow where
// the sending, the ZeroMQ and the receiving threads all have work at once),
// which two CPUs carry faster than one; a chain of hand-offs (rpc, remote
// spawn) has one of them runnable at a time and waits about 20-35 us a run.
// Measured on a 2-CPU VM (docs/performance.md): remote_send 300-580 us a run
// with 3-11 % of the CPU for others; rpc_32_actor_callers and remote_spawn
// 25-35 us. Moving all of them to another CPU cannot help; the placer unpins
// them instead, for spread_s, then places them again to look: a stream
// still flowing is unpinned again for twice as long (up to remember_s), a
// chain stays placed.
bool waiting_for_each_other(double waited, double others_here, double too_long, double margin);

class cpu_placer {
public:
    // The process's placer (made on first use; a forked child gets its own).
    static std::shared_ptr<cpu_placer> acquire();
    ~cpu_placer();
    cpu_placer(const cpu_placer&) = delete;
    cpu_placer& operator=(const cpu_placer&) = delete;

    // Threads to keep together (Linux thread ids). add_self/remove_self are
    // called by the thread itself: after remove_self returns the placer
    // never touches that thread again. add_zmq_io: ZeroMQ's I/O threads of
    // the process's kith context (found by the context, not pinned by it).
    void add_self();
    void remove_self();
    void add_zmq_io(const std::vector<pid_t>& tids);

    // `owner` is told of each move (a log line, e.g. "network threads moved
    // from CPU 0 (93 % busy with other work) to CPU 1 (7 %)"; `warning`
    // when placing failed and the threads are left to the scheduler for
    // good), on the placer's thread, until it calls on_move(owner, {}); when
    // that returns `f` is not running and never will again.
    void on_move(const void* owner, std::function<void(const std::string& line, bool warning)> f);
    // The CPU the network threads are on now, -1 when not pinned (also
    // while they are left to the scheduler: waiting_for_each_other).
    int cpu() const;

    // Seconds between evaluations after the first (which comes 200 ms after
    // the placer starts), each drawn within +-25 % (hold_then_move); the
    // margin of choose_network_cpu.
    static constexpr double interval_s = 1.0;
    static constexpr double margin = 0.25;
    // escape_waiting_cpu's bound, and how long a CPU's figure is kept (s).
    static constexpr double too_long = 100.0;  // us
    static constexpr double remember_s = 30.0;
    // How long the threads of a stream stay unpinned the first time
    // (waiting_for_each_other); doubled while it goes on, up to remember_s.
    static constexpr double spread_s = 2.0;

private:
    cpu_placer();
    void run();
    void evaluate();  // under mu_
    bool pin_all(int cpu);  // under mu_; false: failed, unpinned, warned, placing off
    void unpin_all();       // under mu_: every allowed CPU again
    std::uint64_t threads_ticks();  // under mu_: the threads' utime + stime since the last call

    mutable std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::vector<int> allowed_;               // the process's CPUs when the placer started
    std::map<pid_t, int> kith_threads_;      // tid -> how many adds (a thread adds once)
    std::vector<pid_t> zmq_threads_;
    std::vector<cpu_ticks> last_;            // /proc/stat at the last evaluation
    std::map<pid_t, std::uint64_t> ticks_;   // each thread's utime + stime at the last evaluation
    // Each thread's run-queue delay (ns) and times run at the last evaluation.
    std::map<pid_t, std::pair<std::uint64_t, std::uint64_t>> waits_;
    double threads_wait_per_slice();  // under mu_: their mean run-queue delay (us) since the last call
    std::vector<double> tried_;              // per CPU: escape_waiting_cpu's `tried`
    std::vector<double> tried_at_;           // per CPU: when (seconds since the placer started)
    double now_s_ = 0;
    int cpu_ = -1;
    double spread_until_ = -1;  // unpinned (waiting_for_each_other) until then (now_s_)
    double spread_for_ = 0;     // how long the last time (0: the last placed interval was no stream)
    std::map<const void*, std::function<void(const std::string&, bool)>> on_move_;
    bool failed_ = false;  // under mu_: pinning failed once; nothing placed since
    move_hold hold_;
    std::minstd_rand draw_;  // the looks' spacing, the holds' lengths
    std::thread thread_;
};

}  // namespace kith::detail
