// cpu_placer.cpp — see cpu_placer.hpp.
#include "transport/cpu_placer.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <charconv>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kith::detail {

namespace {

std::mutex instance_mu;
std::weak_ptr<cpu_placer> instance;
pid_t instance_pid = 0;

// The CPU the network threads are pinned to, -1 when they are not. A
// child forked from one of them (a service function or an actor's turn
// runs there) gets the parent's main thread's CPUs instead of that one CPU
// for good; a child of any other thread, or one whose mask the application
// set otherwise, is left as it is. (After fork: system calls only.)
std::atomic<int> pinned_cpu{-1};
void restore_in_child() {
    const int c = pinned_cpu.load(std::memory_order_relaxed);
    if (c < 0) return;
    cpu_set_t mine;
    CPU_ZERO(&mine);
    if (::sched_getaffinity(0, sizeof mine, &mine) != 0 || CPU_COUNT(&mine) != 1 || !CPU_ISSET(c, &mine)) return;
    cpu_set_t parent;
    CPU_ZERO(&parent);
    if (::sched_getaffinity(::getppid(), sizeof parent, &parent) == 0) ::sched_setaffinity(0, sizeof parent, &parent);
}

// The process's CPUs now: its main thread's mask (`taskset -a -p` and a
// cgroup's cpuset set it; the placer's own thread set its mask itself,
// which the kernel may keep when a cpuset grows). Any thread's if the main
// thread's cannot be read.
std::vector<int> allowed_now() {
    std::vector<int> out;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(::getpid(), sizeof set, &set) == 0 || ::sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) out.push_back(c);
    return out;
}
std::once_flag atfork_once;

pid_t this_tid() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

bool task_ticks(pid_t tid, std::uint64_t& out) {
    return stat_ticks("/proc/self/task/" + std::to_string(tid) + "/stat", out);
}

// /proc/self/task/<tid>/schedstat: time spent on a CPU and runnable but
// waiting for one (ns), and how many times it was given a CPU.
struct task_sched {
    std::uint64_t wait_ns = 0;
    std::uint64_t slices = 0;
};
bool task_schedstat(pid_t tid, task_sched& out) {
    std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/schedstat");
    std::uint64_t run = 0;
    return static_cast<bool>(f >> run >> out.wait_ns >> out.slices);
}

}  // namespace

std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

bool stat_ticks(const std::string& path, std::uint64_t& out) {
    const std::string s = read_file(path);
    auto close = s.rfind(')');
    if (close == std::string::npos) return false;
    std::istringstream in(s.substr(close + 2));
    std::string field;
    std::uint64_t utime = 0, stime = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {
        if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
        if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
    }
    if (!in) return false;
    out = utime + stime;
    return true;
}

std::vector<cpu_ticks> parse_proc_stat(std::string_view text) {
    std::vector<cpu_ticks> out;
    while (!text.empty()) {
        auto eol = text.find('\n');
        std::string_view line = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
        if (line.size() < 4 || line.substr(0, 3) != "cpu" || line[3] < '0' || line[3] > '9') continue;
        int cpu = 0;
        auto [p, ec] = std::from_chars(line.data() + 3, line.data() + line.size(), cpu);
        if (ec != std::errc{} || cpu < 0 || cpu >= 4096) continue;
        // user nice system idle iowait irq softirq steal (guest time is in user already)
        std::uint64_t v[8] = {};
        const char* q = p;
        const char* end = line.data() + line.size();
        for (auto& x : v) {
            while (q < end && *q == ' ') ++q;
            auto r = std::from_chars(q, end, x);
            if (r.ec != std::errc{}) break;
            q = r.ptr;
        }
        if (static_cast<std::size_t>(cpu) >= out.size()) out.resize(cpu + 1);
        out[cpu].busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        out[cpu].total = out[cpu].busy + v[3] + v[4];
    }
    return out;
}

int choose_network_cpu(const std::vector<int>& allowed, const std::vector<double>& others, int current,
                       double margin) {
    if (allowed.size() < 2) return -1;
    auto load = [&](int c) { return static_cast<std::size_t>(c) < others.size() ? others[c] : 0.0; };
    int best = allowed.front();
    for (int c : allowed)
        if (load(c) < load(best)) best = c;
    const bool current_ok = std::find(allowed.begin(), allowed.end(), current) != allowed.end();
    if (!current_ok) return best;
    return load(current) - load(best) > margin ? best : current;
}

int escape_waiting_cpu(const std::vector<int>& allowed, const std::vector<double>& tried, int current,
                       double waited, double too_long) {
    if (allowed.size() < 2 || current < 0 || waited <= too_long) return -1;
    auto known = [&](int c) { return static_cast<std::size_t>(c) < tried.size() ? tried[c] : -1.0; };
    int best = -1;
    double best_wait = waited / 2;  // worth a move: half the wait or less
    for (int c : allowed) {
        if (c == current) continue;
        const double w = std::max(known(c), 0.0);  // not tried: worth a try
        if (w < best_wait) best = c, best_wait = w;
    }
    return best;
}

bool hold_then_move(move_hold& hold, int wanted, int current, unsigned draw) {
    if (wanted < 0 || wanted == current) {
        hold = {};
        return false;
    }
    // Wanting to leave counts, whichever CPU each look names (with a CPU-
    // bound thread on theirs and several CPUs alike, the least busy one
    // changes from look to look): the move goes to this look's choice.
    if (hold.streak == 0) hold.needed = 2 + static_cast<int>(draw % 3);
    hold.want = wanted;
    if (++hold.streak < hold.needed) return false;
    hold = {};
    return true;
}

bool waiting_for_each_other(double waited, double others_here, double too_long, double margin) {
    return waited > too_long && others_here < margin;
}

std::shared_ptr<cpu_placer> cpu_placer::acquire() {
    std::lock_guard lk(instance_mu);
    if (instance_pid == ::getpid())
        if (auto p = instance.lock()) return p;
    std::shared_ptr<cpu_placer> p(new cpu_placer());
    instance = p;
    instance_pid = ::getpid();
    std::call_once(atfork_once, [] { ::pthread_atfork(nullptr, nullptr, restore_in_child); });
    return p;
}

cpu_placer::cpu_placer()
    : draw_(static_cast<unsigned>(::getpid()) * 2654435761u ^
            static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count())) {
    allowed_ = allowed_now();  // the process's, whichever thread makes the placer
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : allowed_) CPU_SET(c, &set);
    // Nothing to choose between: no thread, nothing ever pinned.
    if (allowed_.size() < 2) return;
    thread_ = std::thread([this, set] {
        // Not pinned itself, whichever thread made it.
        ::sched_setaffinity(0, sizeof set, &set);
        run();
    });
}

cpu_placer::~cpu_placer() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    // The last auto node stopped: ZeroMQ's threads (shared with any node
    // still running, with network_cpu_off) go back to every CPU.
    std::lock_guard lk(mu_);
    if (cpu_ >= 0) unpin_all();
}

void cpu_placer::add_self() {
    std::lock_guard lk(mu_);
    if (allowed_.size() < 2) return;
    const pid_t tid = this_tid();
    ++kith_threads_[tid];
    if (cpu_ >= 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu_, &one);
        ::sched_setaffinity(0, sizeof one, &one);
    }
}

void cpu_placer::remove_self() {
    std::lock_guard lk(mu_);
    auto it = kith_threads_.find(this_tid());
    if (it == kith_threads_.end()) return;
    if (--it->second == 0) {
        ticks_.erase(it->first);
        kith_threads_.erase(it);
    }
}

void cpu_placer::add_zmq_io(const std::vector<pid_t>& tids) {
    std::lock_guard lk(mu_);
    if (allowed_.size() < 2) return;
    for (pid_t t : tids)
        if (std::find(zmq_threads_.begin(), zmq_threads_.end(), t) == zmq_threads_.end()) zmq_threads_.push_back(t);
    if (cpu_ >= 0) pin_all(cpu_);
}

void cpu_placer::on_move(const void* owner, std::function<void(const std::string&, bool)> f) {
    std::lock_guard lk(mu_);
    if (f) on_move_[owner] = std::move(f);
    else on_move_.erase(owner);
}

int cpu_placer::cpu() const {
    std::lock_guard lk(mu_);
    return cpu_;
}

void cpu_placer::run() {
    std::unique_lock lk(mu_);
    last_ = parse_proc_stat(read_file("/proc/stat"));
    (void)threads_ticks();
    (void)threads_wait_per_slice();
    auto wait = std::chrono::milliseconds(200);
    while (!cv_.wait_for(lk, wait, [this] { return stop_; })) {
        evaluate();
        // 0.75-1.25 intervals: two processes' placers do not look in step.
        const double f = 0.75 + 0.5 * double(draw_() % 1000) / 1000.0;
        wait = std::chrono::milliseconds(static_cast<int>(interval_s * 1000 * f));
    }
}

std::uint64_t cpu_placer::threads_ticks() {
    std::uint64_t sum = 0;
    std::map<pid_t, std::uint64_t> now;
    auto one = [&](pid_t tid) {
        std::uint64_t t = 0;
        if (!task_ticks(tid, t)) return;  // gone
        now[tid] = t;
        if (auto it = ticks_.find(tid); it != ticks_.end() && t >= it->second) sum += t - it->second;
    };
    for (auto& [tid, n] : kith_threads_) one(tid);
    for (pid_t tid : zmq_threads_) one(tid);
    // A ZeroMQ thread that is gone is forgotten (its id could be reused).
    std::erase_if(zmq_threads_, [&](pid_t t) { return !now.count(t); });
    ticks_ = std::move(now);
    return sum;
}

double cpu_placer::threads_wait_per_slice() {
    std::uint64_t wait = 0, slices = 0;
    std::map<pid_t, std::pair<std::uint64_t, std::uint64_t>> now;
    auto one = [&](pid_t tid) {
        task_sched t;
        if (!task_schedstat(tid, t)) return;
        now[tid] = {t.wait_ns, t.slices};
        if (auto it = waits_.find(tid); it != waits_.end() && t.wait_ns >= it->second.first &&
                                        t.slices >= it->second.second) {
            wait += t.wait_ns - it->second.first;
            slices += t.slices - it->second.second;
        }
    };
    for (auto& [tid, n] : kith_threads_) one(tid);
    for (pid_t tid : zmq_threads_) one(tid);
    waits_ = std::move(now);
    return slices ? double(wait) / double(slices) / 1000.0 : 0.0;
}

void cpu_placer::evaluate() {
    if (failed_) return;
    // The CPUs may have changed (taskset -a -p, a cgroup's cpuset): never
    // one the process may no longer use.
    if (auto a = allowed_now(); !a.empty() && a != allowed_) {
        allowed_ = std::move(a);
        if (allowed_.size() < 2 && cpu_ >= 0) unpin_all();
        if (allowed_.size() < 2) return;
    }
    auto now = parse_proc_stat(read_file("/proc/stat"));
    const std::uint64_t ours = threads_ticks();
    const double waited = threads_wait_per_slice();
    if (now.empty()) return;  // no /proc: leave everything as it is
    std::vector<double> others(now.size(), 0.0);
    if (!allowed_.empty() && others.size() <= static_cast<std::size_t>(allowed_.back()))
        others.resize(static_cast<std::size_t>(allowed_.back()) + 1, 0.0);  // a CPU missing from /proc/stat
    for (int c : allowed_) {
        if (static_cast<std::size_t>(c) >= now.size() || static_cast<std::size_t>(c) >= last_.size()) continue;
        if (now[c].total < last_[c].total || now[c].busy < last_[c].busy) continue;  // a CPU that went and came back
        const double total = double(now[c].total - last_[c].total);
        if (total <= 0) continue;
        double busy = double(now[c].busy - last_[c].busy);
        // The network threads ran on their CPU (when pinned); unpinned,
        // their time is spread and counts as anyone's.
        if (c == cpu_) busy -= double(ours);
        others[c] = std::clamp(busy / total, 0.0, 1.0);
    }
    // The interval in seconds, from the CPUs' own clock ticks.
    double interval = 0;
    for (int c : allowed_)
        if (static_cast<std::size_t>(c) < now.size() && static_cast<std::size_t>(c) < last_.size())
            if (now[c].total >= last_[c].total)
                interval = std::max(interval, double(now[c].total - last_[c].total) / double(::sysconf(_SC_CLK_TCK)));
    last_ = std::move(now);
    if (interval <= 0) return;
    now_s_ += interval;
    if (kith_threads_.empty()) return;  // nothing to place (yet)
    if (now_s_ < spread_until_) return;  // left to the scheduler for now
    if (cpu_ >= 0 && static_cast<std::size_t>(cpu_) >= others.size()) {
        unpin_all();  // its CPU is gone from /proc/stat (offline): placed again below
    }
    if (cpu_ >= 0 && waiting_for_each_other(waited, others[cpu_], too_long, margin)) {
        // A stream: another CPU would not help, two do (before the escape
        // rule, which would only move them all).
        const int from = cpu_;
        unpin_all();
        spread_for_ = spread_for_ > 0 ? std::min(spread_for_ * 2, remember_s) : spread_s;
        spread_until_ = now_s_ + spread_for_;
        char buf[200];
        std::snprintf(buf, sizeof buf,
                      "network threads unpinned from CPU %d: they waited %.0f us for each other each time they ran "
                      "(a stream, faster on two CPUs); placed again in %.0f s",
                      from, waited, spread_for_);
        for (auto& [owner, f] : on_move_) f(buf, false);
        return;
    }
    if (cpu_ >= 0) {
        spread_for_ = 0;  // a placed interval that was no stream
        if (tried_.size() <= static_cast<std::size_t>(cpu_)) tried_.resize(cpu_ + 1, -1), tried_at_.resize(cpu_ + 1);
        tried_[cpu_] = waited;
        tried_at_[cpu_] = now_s_;
    }
    for (std::size_t c = 0; c < tried_.size(); ++c)
        if (tried_[c] >= 0 && now_s_ - tried_at_[c] > remember_s) tried_[c] = -1;
    int to = choose_network_cpu(allowed_, others, cpu_, margin);
    bool waiting = false;
    if (to == cpu_) {
        if (int e = escape_waiting_cpu(allowed_, tried_, cpu_, waited, too_long); e >= 0) to = e, waiting = true;
    }
    // A first placement at once, and leaving a CPU no longer allowed; a
    // move once the rules held to it (hold_then_move).
    const bool allowed_here = std::find(allowed_.begin(), allowed_.end(), cpu_) != allowed_.end();
    if (cpu_ >= 0 && allowed_here && !hold_then_move(hold_, to, cpu_, static_cast<unsigned>(draw_()))) return;
    if (to < 0 || to == cpu_) return;
    const int from = cpu_;
    if (!pin_all(to)) return;
    if (!on_move_.empty()) {
        char buf[160];
        if (from < 0)
            std::snprintf(buf, sizeof buf, "network threads placed on CPU %d (%.0f %% busy with other work)", to,
                          others[to] * 100);
        else if (waiting)
            std::snprintf(buf, sizeof buf,
                          "network threads moved from CPU %d (they waited %.0f us for it each time they ran) to CPU %d",
                          from, waited, to);
        else
            std::snprintf(buf, sizeof buf,
                          "network threads moved from CPU %d (%.0f %% busy with other work) to CPU %d (%.0f %%)", from,
                          others[from] * 100, to, others[to] * 100);
        for (auto& [owner, f] : on_move_) f(buf, false);
    }
}

void cpu_placer::unpin_all() {
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c : allowed_) CPU_SET(c, &all);
    for (auto& [tid, n] : kith_threads_) ::sched_setaffinity(tid, sizeof all, &all);
    for (pid_t tid : zmq_threads_) ::sched_setaffinity(tid, sizeof all, &all);
    cpu_ = -1;
    hold_ = {};
    pinned_cpu.store(-1, std::memory_order_relaxed);
}

bool cpu_placer::pin_all(int cpu) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    int err = 0;
    for (auto& [tid, n] : kith_threads_)
        if (::sched_setaffinity(tid, sizeof one, &one) != 0 && errno != ESRCH) err = errno;
    for (pid_t tid : zmq_threads_)
        if (::sched_setaffinity(tid, sizeof one, &one) != 0 && errno != ESRCH) err = errno;
    cpu_ = cpu;
    pinned_cpu.store(cpu, std::memory_order_relaxed);
    if (err == 0) return true;
    // Not allowed here (a seccomp filter, a CPU gone offline): left to the
    // scheduler for good, and said once, as a warning.
    unpin_all();
    failed_ = true;
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "network_cpu auto: pinning the network threads to CPU %d failed (%s); they are left to the "
                  "scheduler (set network_cpu off to silence this)",
                  cpu, std::strerror(err));
    for (auto& [owner, f] : on_move_) f(buf, true);
    return false;
}

}  // namespace kith::detail
