// Relayed figures (group "relay"): the measurements of group "remote"
// (bench_remote.hpp, the same code) over a link through a kith::relay, all
// three nodes in one process on loopback, CURVE end to end through the
// relay's data plane (one splice with session ports; KITH_BENCH_RELAY_PORTS=0:
// a relay without them, the forwarders' three):
//   relay_rpc_p50_us, relay_rpc_p99_us   sequential blocking node::call
//   relay_send_msgs_per_s                actor -> actor, 32-byte payloads
//   relay_cpu_pct_per_10k_msgs_per_s     the relay's data-plane thread
//                                        ("kith-relay") CPU during the send
//                                        run, in % of one core per 10 000
//                                        msgs/s forwarded
//   relay_tcp_rtt_us, relay_tcp_rtt_1_hop_us, relay_tcp_rtt_3_hops_us
//                                        a bare TCP ping-pong on loopback,
//                                        direct and through 1 and 3 splices
//                                        (bench_relay_hop.cpp): what the
//                                        hops alone cost
// and, when group "remote" ran first (`kith_bench remote relay`), the
// ratios to its direct figures (targets: rpc <= 1.5x, send >= 0.5x).
// On a shared machine the load changes between groups, so the rpc ratio is
// also measured interleaved: a fourth node c calls b directly, in blocks
// that alternate with a's relayed blocks (20 x 1000 calls each):
//   relay_interleaved_direct_rpc_p50_us, relay_interleaved_rpc_p50_us and
//   relay_rpc_p50_vs_interleaved_direct_ratio (target <= 1.5).
// With in-kernel forwarding available (root: relay_options::kernel_forward),
// the relay figures are measured twice in one run: first as the relay runs
// by default (kernel forwarding), then with it off, named relay_user_* (e.g.
// relay_user_rpc_p50_vs_interleaved_direct_ratio). relay_forwarding_kernel
// says which the first were (1: in the kernel). In the kernel the bytes are
// moved by kernel worker threads, not the relay's: relay_kworker_cpu_pct is
// the CPU of every kworker thread on the machine during the send run (an
// upper bound: other work of the machine's kworkers is in it).
// KITH_BENCH_RELAY_CPU=N: the relay's data-plane thread runs on CPU N only
// and every other thread of the process (the nodes') on the other CPUs, as
// a relay on a machine of its own would (relay_pinned_cpu says which; kernel
// workers are not pinned: they run where the bytes arrive).

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "bench.hpp"
#include "bench_nodes.hpp"
#include "bench_peer.hpp"
#include "bench_remote.hpp"
#include "kith/relay.hpp"
#include "kith/service.hpp"

namespace kith::bench {
double splice_hop_rtt_us(int hops);  // bench_relay_hop.cpp
}

namespace {

// CPU seconds of this process's threads named `name` (schedstat: time on a
// CPU in nanoseconds, finer than stat's clock ticks).
double thread_cpu_s(const std::string& name) {
    double total = 0;
    for (auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
        std::string comm;
        std::getline(std::ifstream(t.path() / "comm"), comm);
        if (comm != name) continue;
        double ns = 0;
        std::ifstream(t.path() / "schedstat") >> ns;
        total += ns / 1e9;
    }
    return total;
}

// CPU seconds of every kernel worker thread ("kworker/...") on the machine.
double kworker_cpu_s() {
    double total = 0;
    std::error_code ec;
    for (auto& p : std::filesystem::directory_iterator("/proc", ec)) {
        std::string comm;
        std::getline(std::ifstream(p.path() / "comm"), comm);
        if (comm.rfind("kworker/", 0) != 0) continue;
        double ns = 0;
        std::ifstream(p.path() / "schedstat") >> ns;
        total += ns / 1e9;
    }
    return total;
}

// KITH_BENCH_RELAY_CPU: "kith-relay" on CPU `cpu`, every other thread of
// this process on the others; false when the machine has one CPU or the
// thread is not found.
bool pin_relay(int cpu) {
    const int n = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
    if (n < 2 || cpu < 0 || cpu >= n) return false;
    cpu_set_t mine, others;
    CPU_ZERO(&mine);
    CPU_ZERO(&others);
    CPU_SET(cpu, &mine);
    for (int i = 0; i < n; ++i)
        if (i != cpu) CPU_SET(i, &others);
    bool found = false;
    for (auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
        std::string comm;
        std::getline(std::ifstream(t.path() / "comm"), comm);
        const pid_t tid = static_cast<pid_t>(std::stol(t.path().filename().string()));
        const bool relay = comm == "kith-relay";
        found = found || relay;
        ::sched_setaffinity(tid, sizeof(cpu_set_t), relay ? &mine : &others);
    }
    return found;
}

// Every thread of this process on any CPU again.
void unpin_all() {
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)); ++i) CPU_SET(i, &all);
    for (auto& t : std::filesystem::directory_iterator("/proc/self/task"))
        ::sched_setaffinity(static_cast<pid_t>(std::stol(t.path().filename().string())), sizeof all, &all);
}

// The relay figures, names starting with `prefix`, with the relay forwarding
// as `mode` says.
void relay_figures(const std::string& prefix, kith::relay_options::kernel_mode mode) {
    using namespace std::chrono_literals;
    using kith::bench::net_node;
    auto report = [&](const std::string& name, double v, const char* unit) {
        kith::bench::report(prefix + name, v, unit);
    };
    kith::bench::temp_dir dir;
    kith::node r(net_node("r@bench", dir.path / "r"));
    kith::relay_options ro;
    ro.listen = "127.0.0.1:0";
    ro.kernel_forward = mode;
    // KITH_BENCH_RELAY_PORTS=0: a relay without session ports (its clients
    // use the loopback forwarders and SOCKS: three hops each way), to compare.
    if (const char* e = std::getenv("KITH_BENCH_RELAY_PORTS"); e && std::string(e) == "0") ro.session_ports = false;
    kith::relay rel(r, ro);
    const bool in_kernel = rel.forwarding().rfind("kernel", 0) == 0;
    std::printf("%sforwarding_note: %s\n", prefix.c_str(), rel.forwarding().c_str());
    if (mode == kith::relay_options::kernel_mode::automatic && !in_kernel) return;
    kith::node a(net_node("a@bench", dir.path / "a"));
    kith::node b(net_node("b@bench", dir.path / "b"));
    kith::node c(net_node("c@bench", dir.path / "c"));  // b's direct caller (interleaved ratio)
    b.add_service(kith::bench::bench_service());
    if (!a.connect(r.endpoint(), r.key()).ok() || !b.connect(r.endpoint(), r.key()).ok()) {
        std::fprintf(stderr, "bench relay: cannot connect to the relay node\n");
        return;
    }
    kith::relay_client target(b, "r@bench", false);
    kith::relay_client dialler(a, "r@bench", nullptr);
    auto up = dialler.connect("b@bench", b.key());
    if (!up.ok()) {
        std::fprintf(stderr, "bench relay: connect through the relay failed: %s\n", up.err().detail.c_str());
        return;
    }
    struct unpin {
        bool on = false;
        ~unpin() {
            if (on) unpin_all();
        }
    } pinned;
    if (const char* e = std::getenv("KITH_BENCH_RELAY_CPU")) {
        pinned.on = pin_relay(std::atoi(e));
        report("pinned_cpu", pinned.on ? std::atoi(e) : -1, "(KITH_BENCH_RELAY_CPU; -1: not pinned)");
    }
    auto lat = kith::bench::rpc_latency(a, *up, 2000, 20000);
    if (!lat.empty()) {
        report("rpc_p50_us", lat[lat.size() / 2], "us");
        report("rpc_p99_us", lat[lat.size() * 99 / 100], "us");
    }
    if (auto cb = c.connect(b.endpoint(), b.key()); cb.ok()) {
        std::vector<double> direct, relayed;
        for (int round = 0; round < 20; ++round) {
            auto d = kith::bench::rpc_latency(c, *cb, 100, 1000);
            auto r = kith::bench::rpc_latency(a, *up, 100, 1000);
            if (d.empty() || r.empty()) break;
            direct.insert(direct.end(), d.begin(), d.end());
            relayed.insert(relayed.end(), r.begin(), r.end());
        }
        if (!direct.empty() && direct.size() == relayed.size()) {
            std::sort(direct.begin(), direct.end());
            std::sort(relayed.begin(), relayed.end());
            const double dp = direct[direct.size() / 2], rp = relayed[relayed.size() / 2];
            report("interleaved_direct_rpc_p50_us", dp, "us");
            report("interleaved_rpc_p50_us", rp, "us");
            report("rpc_p50_vs_interleaved_direct_ratio", rp / dp, "x (target <= 1.5)");
        }
    } else {
        std::fprintf(stderr, "bench relay: the direct caller cannot connect: %s\n", cb.err().detail.c_str());
    }
    kith::bench::remote_send(a, b, 200000, 100000, 8192);  // warm-up
    const double cpu0 = thread_cpu_s("kith-relay"), kw0 = in_kernel ? kworker_cpu_s() : 0;
    auto t0 = std::chrono::steady_clock::now();
    auto rs = kith::bench::remote_send(a, b, 2000000, 100000, 8192);
    const double wall = kith::bench::seconds_since(t0), cpu = thread_cpu_s("kith-relay") - cpu0;
    if (in_kernel && wall > 0)
        report("kworker_cpu_pct", 100.0 * (kworker_cpu_s() - kw0) / wall, "% of a core (all kworkers, during send)");
    report("send_msgs_per_s", rs.msgs_per_s, "msgs/s");
    if (rs.drops || !rs.complete)
        std::printf("%ssend_note: %s, received %llu of 2000000, %llu overload drops\n",
                    prefix.c_str(), rs.complete ? "complete" : "INCOMPLETE", (unsigned long long)rs.received,
                    (unsigned long long)rs.drops);
    if (rs.msgs_per_s > 0 && wall > 0)
        report("cpu_pct_per_10k_msgs_per_s", 100.0 * cpu / wall / (rs.msgs_per_s / 10000.0),
                            "% of a core");
    if (rs.msgs_per_s > 0 && wall > 0)
        report("cpu_pct", 100.0 * cpu / wall, "% of a core (during relay_send)");
    if (prefix != "relay_") return;
    const double rp = kith::bench::figure("rpc_p50_us"), rsd = kith::bench::figure("remote_send_msgs_per_s");
    if (rp > 0 && !lat.empty())
        report("rpc_p50_vs_direct_ratio", lat[lat.size() / 2] / rp, "x (target <= 1.5)");
    if (rsd > 0) report("send_vs_direct_ratio", rs.msgs_per_s / rsd, "x (target >= 0.5)");
}
}  // namespace

KITH_BENCH_GROUP("relay", 32) {
    for (auto [hops, name] : {std::pair{0, "relay_tcp_rtt_us"}, std::pair{1, "relay_tcp_rtt_1_hop_us"},
                              std::pair{3, "relay_tcp_rtt_3_hops_us"}})
        if (double us = kith::bench::splice_hop_rtt_us(hops); us > 0) kith::bench::report(name, us, "us");
    relay_figures("relay_", kith::relay_options::kernel_mode::off);
    relay_figures("relay_kernel_", kith::relay_options::kernel_mode::automatic);  // when it may
}
