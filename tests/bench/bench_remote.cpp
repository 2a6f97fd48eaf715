// Distributed figures (group "remote"): two kith nodes in one process on
// loopback, over real CURVE (the full transport, ZAP and cookie setup).
//   rpc_p50_us, rpc_p99_us       sequential blocking node::call of an echo
//                                service function (one caller)
//   remote_send_msgs_per_s       actor on A -> actor on B, 32-byte binary
//                                payload, counted at B; the sender keeps a
//                                bounded window in flight (B acknowledges),
//                                so no queue overflows
//   rpc_32_callers_calls_per_s   node::call_async with 32 calls outstanding
//   rpc_32_callers_pinned_calls_per_s  the same, both nodes' network threads
//                                on one CPU (net_options::network_cpu)
//   rpc_32_callers_auto_calls_per_s    the same with network_cpu_auto (the
//                                least busy CPU, re-chosen once a second)
// and the ratios to the raw libzmq CURVE baseline of the same run (group
// "zmq_baseline"), when that group ran first.
// (The idle figures are in group "concurrency": one node, 8 peers.)
// For profiling: KITH_BENCH_REMOTE_ONLY=rpc|send|rpc32|rpc32pin|rpc32auto runs one part
// only (KITH_BENCH_FRAMES=1: rpc32 prints its envelopes per frame);
// KITH_BENCH_WORKERS=N sets each node's worker count (default: the node's
// default, hardware concurrency); KITH_BENCH_REMOTE_N=N sets the measured
// count of calls / messages (one run, no warm-up), e.g. for callgrind.

#include <sched.h>

#include <cstdlib>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench.hpp"
#include "bench_nodes.hpp"
#include "bench_remote.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith/service.hpp"
#include "bench_peer.hpp"

namespace kith::bench {

using namespace std::chrono_literals;

std::vector<double> rpc_latency(kith::node& a, const std::string& b, int warmup, int n) {
    std::vector<double> us;
    us.reserve(n);
    for (int i = 0; i < warmup + n; ++i) {
        auto t0 = clk::now();
        auto r = a.call(b, "bench", "echo", kith::arr(i), 5s);
        double d = std::chrono::duration<double, std::micro>(clk::now() - t0).count();
        if (!r.ok()) {
            std::fprintf(stderr, "bench remote: rpc failed: %s\n", r.err().detail.c_str());
            return {};
        }
        if (i >= warmup) us.push_back(d);
    }
    std::sort(us.begin(), us.end());
    return us;
}

namespace {
// call_async with a fixed window of `window` outstanding calls; returns calls/s.
double rpc_window(kith::node& a, const std::string& b, int window, std::int64_t total) {
    auto st = std::make_shared<kith::bench::completions>(total);
    // Each completion (on a kith thread) issues the next call.
    std::function<void()> issue;
    issue = [&a, &b, st, &issue] {
        if (!st->claim()) return;
        a.call_async(b, "bench", "echo", kith::arr(1), 10s, [st, &issue](kith::result<kith::term> r) {
            if (!st->finish(r.ok())) issue();
        });
    };
    auto t0 = clk::now();
    for (int w = 0; w < window; ++w) issue();
    const double rate = st->wait_rate(t0);
    if (st->failed) std::fprintf(stderr, "bench remote: %lld calls failed\n", (long long)st->failed.load());
    // Let stragglers (if any) finish before `issue` goes out of scope.
    while (st->done.load() < std::min<std::int64_t>(st->issued.load(), total)) std::this_thread::sleep_for(1ms);
    return rate;
}

}  // namespace

send_result remote_send(kith::node& a, kith::node& b, std::int64_t total, std::int64_t window,
                        std::int64_t ack_every, std::chrono::steady_clock::duration stall_limit) {
    auto drops0 = a.net_stats().overload_drops;
    auto received = std::make_shared<std::atomic<std::int64_t>>(0);
    auto source_pid = std::make_shared<kith::pid>();
    auto sink_ready = std::make_shared<std::atomic<bool>>(false);
    kith::pid sink = b.spawn([received, total, ack_every](kith::actor&) -> kith::behavior {
        auto count = std::make_shared<std::int64_t>(0);
        auto source = std::make_shared<kith::pid>();
        return [received, total, ack_every, count, source](kith::actor& self, kith::message& m) {
            if (m.body.is_pid()) {  // the source introduces itself
                *source = *m.body.as_pid();
                return;
            }
            ++*count;
            if (*count % ack_every == 0 || *count == total) {
                received->store(*count, std::memory_order_release);
                if (!source->is_null()) self.send(*source, kith::term(*count));
            }
        };
    });
    static const std::uint8_t payload[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                             17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    constexpr std::int64_t chunk = 256;  // sends per scheduling turn
    kith::pid source = a.spawn([sink, total, window](kith::actor&) -> kith::behavior {
        struct st {
            std::int64_t sent = 0, acked = 0;
            bool more_pending = false;
        };
        auto s = std::make_shared<st>();
        return [sink, total, window, s](kith::actor& self, kith::message& m) {
            if (auto v = m.body.as_int()) s->acked = std::max<std::int64_t>(s->acked, *v);
            if (m.body.is_string() && *m.body.as_string() == "more") s->more_pending = false;
            if (m.body.is_string() && *m.body.as_string() == "hello") {
                self.send(sink, kith::term(self.self()));
                return;
            }
            std::int64_t limit = std::min(total, s->acked + window);
            std::int64_t end = std::min(s->sent + chunk, limit);
            for (std::int64_t i = s->sent; i < end; ++i) self.send(sink, kith::binary(payload, sizeof payload));
            s->sent = std::max(s->sent, end);
            if (s->sent < limit && !s->more_pending) {
                s->more_pending = true;
                self.send(self.self(), kith::term("more"));
            }
        };
    });
    a.send(source, kith::term("hello"));
    // The sink learns the source's pid before data flows (same actor pair: in order).
    auto t0 = clk::now();
    a.send(source, kith::term("go"));
    auto deadline = t0 + 120s;
    std::int64_t last = -1;
    auto last_change = clk::now();
    while (received->load(std::memory_order_acquire) < total) {
        std::this_thread::sleep_for(200us);
        auto now = clk::now();
        std::int64_t r = received->load(std::memory_order_acquire);
        if (r != last) {
            last = r;
            last_change = now;
        }
        // Stalled (messages lost to drops) or out of time.
        if (now > deadline || now - last_change > stall_limit) break;
    }
    send_result out;
    double s = seconds_since(t0);
    out.received = static_cast<std::uint64_t>(received->load());
    out.complete = out.received >= static_cast<std::uint64_t>(total);
    out.drops = a.net_stats().overload_drops - drops0;
    out.msgs_per_s = static_cast<double>(out.received) / s;
    a.send_exit(source, kith::term("kill"));
    b.send_exit(sink, kith::term("kill"));
    return out;
}

}  // namespace kith::bench

using namespace kith::bench;

KITH_BENCH_GROUP("remote", 30) {
    temp_dir dir;
    std::filesystem::create_directories(dir.path / "a");
    std::filesystem::create_directories(dir.path / "b");
    {
        kith::node a(net_node(bench_name("a@bench"), dir.path / "a"));
        kith::node b(net_node(bench_name("b@bench"), dir.path / "b"));
        b.add_service(kith::bench::bench_service());
        const std::string bn = kith::bench::connect_nodes(a, b, "remote");
        if (bn.empty()) return;
        const kith::bench::parts knobs("REMOTE");
        auto want = [&](const char* part) { return knobs.want(part); };
        const std::int64_t n = knobs.n;
        auto lat = want("rpc") ? rpc_latency(a, bn, n > 0 ? 0 : 2000, n > 0 ? static_cast<int>(n) : 20000)
                               : std::vector<double>{};
        if (!lat.empty()) {
            kith::bench::report("rpc_p50_us", lat[lat.size() / 2], "us");
            kith::bench::report("rpc_p99_us", lat[lat.size() * 99 / 100], "us");
        }

        send_result rs;
        if (want("send")) {
            const std::int64_t total = n > 0 ? n : 2000000;
            if (n <= 0) remote_send(a, b, 200000, 100000, 8192);  // warm-up
            // Under callgrind (a set count) progress is slow: a longer stall bound.
            rs = remote_send(a, b, total, 100000, 8192, n > 0 ? clk::duration(60s) : clk::duration(5s));
            kith::bench::report("remote_send_msgs_per_s", rs.msgs_per_s, "msgs/s");
            // A run that lost messages says so (the figure is then not comparable).
            if (rs.drops || !rs.complete)
                std::printf("remote_send_note: %s, received %llu of %d, %llu overload drops\n",
                            rs.complete ? "complete" : "INCOMPLETE", (unsigned long long)rs.received, (int)total,
                            (unsigned long long)rs.drops);
        }
        if (want("rpc32")) {
            if (n <= 0) rpc_window(a, bn, 32, 20000);  // warm-up
            const auto a0 = a.net_stats(), b0 = b.net_stats();
            kith::bench::report("rpc_32_callers_calls_per_s", rpc_window(a, bn, 32, n > 0 ? n : 300000), "calls/s");
            if (std::getenv("KITH_BENCH_FRAMES")) {  // envelopes per frame, each way (profiling)
                const auto a1 = a.net_stats(), b1 = b.net_stats();
                std::printf("rpc32 frames: a->b %llu frames %.1f env/frame, b->a %llu frames %.1f env/frame\n",
                            (unsigned long long)(a1.frames_out - a0.frames_out),
                            double(a1.envelopes_out - a0.envelopes_out) / double(a1.frames_out - a0.frames_out + 1),
                            (unsigned long long)(b1.frames_out - b0.frames_out),
                            double(b1.envelopes_out - b0.envelopes_out) / double(b1.frames_out - b0.frames_out + 1));
            }
        }
        double zp = kith::bench::figure("zmq_curve_pingpong_p50_us");
        double zo = kith::bench::figure("zmq_curve_oneway_msgs_per_s");
        double rp = kith::bench::figure("rpc_p50_us");
        if (zp > 0 && rp > 0) kith::bench::report("rpc_p50_vs_zmq_pingpong_ratio", rp / zp, "x (target <= 1.3)");
        if (zo > 0) kith::bench::report("remote_send_vs_zmq_curve_oneway_ratio", rs.msgs_per_s / zo, "x (target >= 3)");
    }
    const kith::bench::parts knobs("REMOTE");
    // The same 32 concurrent calls with B in a process of its own
    // (bench_peer.hpp), as Erlang's anchor runs its two nodes.
    if (knobs.want("rpc32_2p")) {
        kith::bench::peer_pair pp;
        kith::bench::start_peer_pair(pp, dir.path, "remote");
        if (!pp.bn.empty()) {
            const std::int64_t n = knobs.n;
            if (n <= 0) rpc_window(*pp.a, pp.bn, 32, 20000);  // warm-up
            kith::bench::report("rpc_32_callers_2proc_calls_per_s", rpc_window(*pp.a, pp.bn, 32, n > 0 ? n : 300000),
                                "calls/s (B in its own process)");
        }
    }
    // The same 32 concurrent calls with both nodes' network threads on one
    // CPU (net_options::network_cpu; ZeroMQ's I/O threads are started with
    // the first node of the process, so this runs with fresh nodes, after
    // the ones above are gone), and with network_cpu_auto (the placer's
    // first look comes 200 ms after the first node starts, before the
    // warm-up ends).
    for (const char* part : {"rpc32pin", "rpc32auto"}) {
        if (!knobs.want(part)) continue;
        const bool fixed = std::string(part) == "rpc32pin";
        const int cpu = ::sched_getcpu();
        auto pinned = [&](const char* name, const char* sub) {
            kith::node_options o = net_node(name, dir.path / sub);
            o.net.network_cpu = !fixed ? kith::net_options::network_cpu_auto : cpu < 0 ? 0 : cpu;
            return o;
        };
        kith::node a(pinned("a@bench", "a"));
        kith::node b(pinned("b@bench", "b"));
        b.add_service(kith::bench::bench_service());
        const std::string bn = kith::bench::connect_nodes(a, b, "remote");
        if (bn.empty()) return;
        const std::int64_t n = knobs.n;
        if (n <= 0) rpc_window(a, bn, 32, 20000);  // warm-up
        kith::bench::report(fixed ? "rpc_32_callers_pinned_calls_per_s" : "rpc_32_callers_auto_calls_per_s",
                            rpc_window(a, bn, 32, n > 0 ? n : 300000), "calls/s");
    }
}
