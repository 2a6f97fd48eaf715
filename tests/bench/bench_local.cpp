// Local (in-node) runtime figures:
//   local_send_msgs_per_s  one actor sending to another, 32-byte binary payload
//   local_spawn_per_s      spawn an actor that runs its init and ends, until all ended
//   idle_actor_bytes       resident memory per idle actor (100k actors)
// For profiling: KITH_BENCH_LOCAL_ONLY=send|spawn|idle runs one part only;
// KITH_BENCH_LOCAL_N=N sets the measured count of that part (one run, no
// warm-up), e.g. for callgrind instruction counts per message.
#include <malloc.h>

#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "bench.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"

namespace {

using clk = std::chrono::steady_clock;
using namespace std::chrono_literals;

kith::node_options bench_options() {
    kith::node_options o;
    o.name = "bench@local";
    o.workers = 0;  // one per core
    return o;
}

double seconds_since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

// Bytes in use by malloc (mallinfo2) — counts what the runtime allocates,
// independent of page-level RSS noise.
std::size_t heap_in_use() {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

std::size_t rss_bytes() {
    std::ifstream f("/proc/self/statm");
    std::size_t pages = 0, resident = 0;
    f >> pages >> resident;
    return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

double bench_send(std::int64_t total) {
    kith::node n(bench_options());
    kith::mailbox mb(n);
    const kith::pid me = mb.self();
    kith::pid sink = n.spawn([me, total](kith::actor&) -> kith::behavior {
        auto count = std::make_shared<std::int64_t>(0);
        return [me, total, count](kith::actor& self, kith::message& m) {
            (void)m;
            if (++*count == total) self.send(me, "done");
        };
    });
    static const std::uint8_t payload[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                      17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    // The source sends in chunks of one scheduling turn (sends count against
    // the turn budget, like Erlang reductions) and continues by messaging
    // itself, so the sink's mailbox stays bounded.
    constexpr std::int64_t chunk = 256;
    kith::pid source = n.spawn([sink, total](kith::actor&) -> kith::behavior {
        auto sent = std::make_shared<std::int64_t>(0);
        return [sink, total, sent](kith::actor& self, kith::message&) {
            std::int64_t end = std::min(*sent + chunk, total);
            for (std::int64_t i = *sent; i < end; ++i) self.send(sink, kith::binary(payload, sizeof payload));
            *sent = end;
            if (end < total) self.send(self.self(), kith::nil);
        };
    });
    auto t0 = clk::now();
    n.send(source, kith::nil);
    auto r = mb.receive(120s);
    double s = seconds_since(t0);
    if (!r.ok()) return 0;
    return static_cast<double>(total) / s;
}

double bench_spawn(std::int64_t total) {
    kith::node n(bench_options());
    // A spawner actor spawns in chunks; each child runs its init and ends.
    constexpr std::int64_t chunk = 1000;
    kith::pid spawner = n.spawn([total](kith::actor&) -> kith::behavior {
        auto done = std::make_shared<std::int64_t>(0);
        return [total, done](kith::actor& self, kith::message&) {
            std::int64_t end = std::min(*done + chunk, total);
            for (std::int64_t i = *done; i < end; ++i)
                self.spawn([](kith::actor&) -> kith::behavior { return {}; });
            *done = end;
            if (end < total) self.send(self.self(), kith::nil);
        };
    });
    auto t0 = clk::now();
    n.send(spawner, kith::nil);
    // Wait (with a deadline) until every child has ended.
    auto deadline = clk::now() + 120s;
    while (n.counters().exited < static_cast<std::uint64_t>(total)) {
        if (clk::now() > deadline) return 0;
        std::this_thread::sleep_for(200us);  // poll without taking a core from the workers
    }
    double s = seconds_since(t0);
    return static_cast<double>(total) / s;
}

void bench_idle(std::int64_t count, double& heap_per, double& rss_per) {
    kith::node n(bench_options());
    malloc_trim(0);
    std::vector<kith::pid> pids;
    pids.reserve(static_cast<std::size_t>(count));  // outside the measure below
    std::size_t h_res = heap_in_use(), r_res = rss_bytes();
    for (std::int64_t i = 0; i < count; ++i)
        pids.push_back(n.spawn([](kith::actor&, kith::message&) {}));
    std::size_t h1 = heap_in_use(), r1 = rss_bytes();
    heap_per = static_cast<double>(h1 - h_res) / static_cast<double>(count);
    rss_per = static_cast<double>(r1 - r_res) / static_cast<double>(count);
    // Check they are alive and responsive, then let the node drop them.
    n.send(pids.back(), 0);
}

}  // namespace

KITH_BENCH_GROUP("local", 10) {
    const char* only = std::getenv("KITH_BENCH_LOCAL_ONLY");
    const char* n_env = std::getenv("KITH_BENCH_LOCAL_N");
    const std::int64_t n = n_env ? std::atoll(n_env) : 0;
    auto want = [&](const char* part) { return !only || std::string(only) == part; };
    if (want("send")) {
        double best = 0;
        if (n > 0) {
            best = bench_send(n);
        } else {
            bench_send(200000);  // warm up
            for (int i = 0; i < 3; ++i) best = std::max(best, bench_send(5000000));
        }
        kith::bench::report("local_send_msgs_per_s", best, "msgs/s");
    }

    if (want("spawn")) {
        double sbest = 0;
        if (n > 0) {
            sbest = bench_spawn(n);
        } else {
            bench_spawn(100000);
            for (int i = 0; i < 3; ++i) sbest = std::max(sbest, bench_spawn(1000000));
        }
        kith::bench::report("local_spawn_per_s", sbest, "spawns/s");
    }

    if (want("idle")) {
        double heap_per = 0, rss_per = 0;
        bench_idle(n > 0 ? n : 100000, heap_per, rss_per);
        kith::bench::report("idle_actor_bytes", std::max(heap_per, rss_per), "bytes");
    }
}
