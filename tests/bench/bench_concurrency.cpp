// Concurrency figures (group "concurrency"), two kith nodes in one process on
// loopback with real CURVE, plus one idle node in its own process:
//   rpc_32_actor_callers_calls_per_s  32 actors on A, each with one call to B
//                                     outstanding (call_async; the reply
//                                     comes back to the actor as a message),
//                                     the shape of Erlang's 32 rpc:call
//                                     processes
//   remote_spawn_per_s                spawn of B's actor type "worker" from
//                                     A with the reply (the pid) awaited, 32
//                                     outstanding: 32 actors on A, each with
//                                     one spawn_async outstanding (the reply
//                                     comes back to the actor as a message),
//                                     the shape of Erlang's 32 processes each
//                                     spawning on the other node; the worker
//                                     ends at once, like Erlang's spawned
//                                     erlang:send
//   remote_spawn_32_threads_per_s     the same with 32 OS threads each in a
//                                     blocking node::spawn (a thread wake-up
//                                     per spawn on A that the actors' shape
//                                     does not have)
//   rpc_p50_us_under_bulk,            sequential small calls A -> B while an
//   rpc_p99_us_under_bulk             actor on A streams ~1 MiB binaries to B
//                                     (4 in flight): how long a large
//                                     message holds small ones behind it
//   bulk_mib_per_s                    what the stream moved meanwhile
//   idle_node_rss_kb,                 a `kith node` process with 8 connected
//   remote_idle_cpu_pct               peers, idle: its resident memory and
//                                     CPU (% of one core) over 3 s
// For profiling: KITH_BENCH_CONCURRENCY_ONLY=actors|spawn|spawn_threads|bulk|idle runs one
// part only; KITH_BENCH_CONCURRENCY_N=N sets the measured count of calls /
// spawns (one run, no warm-up), e.g. for callgrind (KITH_BENCH_WORKERS as in
// group "remote"); KITH_BENCH_CONCURRENCY_ACTORS=K runs the actor callers and
// spawners with K actors instead of 32 (their figures are then not the ones
// compared with Erlang: the names gain _K_actors).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench.hpp"
#include "bench_nodes.hpp"
#include "bench_peer.hpp"
#include "kith/node.hpp"
#include "kith/service.hpp"

namespace {

using namespace std::chrono_literals;
using namespace kith::bench;  // clk, net_node, report, seconds_since, temp_dir, ...

// 32 actors, each with one call outstanding; `total` calls in all.
double actor_callers(kith::node& a, const std::string& b, int actors, std::int64_t total) {
    auto st = std::make_shared<kith::bench::completions>(total);
    kith::node* an = &a;
    std::vector<kith::pid> callers;
    for (int i = 0; i < actors; ++i) {
        callers.push_back(a.spawn([st, an, b](kith::actor& self, kith::message& m) {
            // Any message (the start, or the reply of the last call) issues the next call.
            if (!(m.body.is_string() && *m.body.as_string() == "start"))
                st->finish(!(m.body.is_string() && *m.body.as_string() == "failed"));
            if (!st->claim()) return;
            kith::pid me = self.self();
            an->call_async(b, "bench", "echo", kith::arr(1), 10s, [an, me](kith::result<kith::term> r) {
                an->send(me, r.ok() ? std::move(*r) : kith::term("failed"));
            });
        }));
    }
    auto t0 = clk::now();
    for (auto& p : callers) a.send(p, kith::term("start"));
    const double rate = st->wait_rate(t0);
    for (auto& p : callers) a.send_exit(p, kith::term("kill"));
    if (st->failed) std::fprintf(stderr, "bench concurrency: %lld actor calls failed\n", (long long)st->failed.load());
    return rate;
}

// `actors` actors, each with one spawn of B's "worker" outstanding
// (spawn_async, the pid sent back to the actor); `total` spawns in all.
double actor_spawners(kith::node& a, const std::string& b, int actors, std::int64_t total) {
    auto st = std::make_shared<kith::bench::completions>(total);
    kith::node* an = &a;
    std::vector<kith::pid> spawners;
    for (int i = 0; i < actors; ++i) {
        spawners.push_back(a.spawn([st, an, b](kith::actor& self, kith::message& m) {
            // Any message (the start, or the answer of the last spawn) issues the next.
            if (!(m.body.is_string() && *m.body.as_string() == "start")) st->finish(m.body.is_pid());
            if (!st->claim()) return;
            kith::pid me = self.self();
            an->spawn_async(b, "bench", "worker", kith::arr(), 10s, [an, me](kith::result<kith::pid> r) {
                an->send(me, r.ok() ? kith::term(*r) : kith::term("failed"));
            });
        }));
    }
    auto t0 = clk::now();
    for (auto& p : spawners) a.send(p, kith::term("start"));
    const double rate = st->wait_rate(t0);
    for (auto& p : spawners) a.send_exit(p, kith::term("kill"));
    if (st->failed) std::fprintf(stderr, "bench concurrency: %lld remote spawns failed\n", (long long)st->failed.load());
    return rate;
}

// `threads` threads each spawning B's "worker" until `total` spawns are done.
double remote_spawns(kith::node& a, const std::string& b, int threads, std::int64_t total) {
    std::atomic<std::int64_t> next{0}, failed{0};
    auto t0 = clk::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&] {
            while (next.fetch_add(1) < total)
                if (!a.spawn(b, "bench", "worker", kith::arr(), 10s).ok()) failed.fetch_add(1);
        });
    for (auto& t : ts) t.join();
    double s = seconds_since(t0);
    if (failed) std::fprintf(stderr, "bench concurrency: %lld remote spawns failed\n", (long long)failed.load());
    return static_cast<double>(total - failed.load()) / s;
}

// Small sequential calls while an actor on A streams 1 MiB binaries to a sink
// on B with `window` messages unacknowledged. Reports the figures itself.
void calls_under_bulk(kith::node& a, kith::node& b, const std::string& bn) {
    constexpr int window = 4;
    auto received = std::make_shared<std::atomic<std::int64_t>>(0);
    kith::pid sink = b.spawn([received](kith::actor& self, kith::message& m) {
        if (m.body.size() == 2 && m.body.at(0)->is_pid()) {  // {source, payload}
            received->fetch_add(1);
            self.send(*m.body.at(0)->as_pid(), kith::term("ack"));
        }
    });
    auto stop = std::make_shared<std::atomic<bool>>(false);
    kith::pid source = a.spawn([sink, stop](kith::actor& self, kith::message& m) {
        // "go" starts `window` messages; each "ack" sends one more.
        int n = m.body.is_string() && *m.body.as_string() == "go" ? window : 1;
        if (stop->load()) return;
        // As large as one envelope may be (1 MiB encoded, docs/protocol.md
        // §6), less room for the envelope's own fields.
        static const std::string mib((1u << 20) - 4096, 'x');
        for (int i = 0; i < n; ++i)
            self.send(sink, kith::arr(self.self(), kith::binary(reinterpret_cast<const std::uint8_t*>(mib.data()),
                                                                 mib.size())));
    });
    a.send(source, kith::term("go"));
    std::this_thread::sleep_for(300ms);  // the stream is flowing
    std::vector<double> us;
    const std::int64_t r0 = received->load();
    auto t0 = clk::now();
    while (clk::now() - t0 < 3s) {
        auto c0 = clk::now();
        auto r = a.call(bn, "bench", "echo", kith::arr(1), 5s);
        if (!r.ok()) {
            std::fprintf(stderr, "bench concurrency: a call under bulk failed: %s\n", r.err().detail.c_str());
            continue;
        }
        us.push_back(std::chrono::duration<double, std::micro>(clk::now() - c0).count());
    }
    const double s = seconds_since(t0);
    const std::int64_t moved = received->load() - r0;
    stop->store(true);
    a.send_exit(source, kith::term("kill"));
    b.send_exit(sink, kith::term("kill"));
    if (us.empty()) return;
    std::sort(us.begin(), us.end());
    report("rpc_p50_us_under_bulk", us[us.size() / 2], "us");
    report("rpc_p99_us_under_bulk", us[us.size() * 99 / 100], "us (target: a few ms at most)");
    report("bulk_mib_per_s", static_cast<double>(moved) / s, "MiB/s");
}

#ifdef KITH_CLI_BINARY
// The idle node: `kith node` in its own process, 8 peers of this process
// connected to it. Reads its VmRSS and CPU time from /proc.
long proc_rss_kb(pid_t p) {
    std::ifstream f("/proc/" + std::to_string(p) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

double proc_cpu_s(pid_t p) {
    std::ifstream f("/proc/" + std::to_string(p) + "/stat");
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto rp = all.rfind(')');
    if (rp == std::string::npos) return -1;
    std::istringstream in(all.substr(rp + 2));
    std::string field;
    double ut = 0, st = 0;
    for (int i = 3; i <= 15 && in >> field; ++i) {  // fields 14, 15: utime, stime
        if (i == 14) ut = std::atof(field.c_str());
        if (i == 15) st = std::atof(field.c_str());
    }
    return (ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

void idle_node(const std::filesystem::path& dir) {
    auto kd = dir / "idle";
    std::filesystem::create_directories(kd);
    std::filesystem::permissions(kd, std::filesystem::perms::owner_all);
    // A free port: bind :0 through a throwaway node would hold it; pick one
    // from a short-lived node's endpoint instead.
    std::string endpoint;
    {
        kith::node probe(net_node("probe@bench", dir / "probe"));
        endpoint = probe.endpoint();
    }
    pid_t child = ::fork();
    if (child == 0) {
        ::setenv("KITH_COOKIE", kith::bench::bench_cookie, 1);
        // Its event lines would mix with the figures.
        if (FILE* null = std::fopen("/dev/null", "w")) {
            ::dup2(fileno(null), 1);
            ::dup2(fileno(null), 2);
        }
        ::execl(KITH_CLI_BINARY, KITH_CLI_BINARY, "node", "--name", "idle", "--listen", endpoint.c_str(),
                "--key-dir", kd.c_str(), "--no-discovery", "--services", "kvs", static_cast<char*>(nullptr));
        std::_Exit(127);
    }
    std::vector<std::unique_ptr<kith::node>> peers;
    int connected = 0;
    auto deadline = clk::now() + 20s;
    for (int i = 0; i < 8; ++i) peers.push_back(std::make_unique<kith::node>(
                                    net_node("peer" + std::to_string(i) + "@bench", dir / ("p" + std::to_string(i)))));
    while (clk::now() < deadline && connected == 0) {
        std::error_code ec;
        if (std::filesystem::exists(kd / "node.pub", ec)) {
            std::ifstream f(kd / "node.pub");
            std::string z;
            std::getline(f, z);
            if (auto key = kith::public_key::from_z85(z)) {
                for (auto& p : peers) connected += p->connect(endpoint, *key).ok();
                break;
            }
        }
        std::this_thread::sleep_for(50ms);
    }
    if (connected == 8) {
        std::this_thread::sleep_for(1s);  // settle
        const double c0 = proc_cpu_s(child);
        const auto t0 = clk::now();
        std::this_thread::sleep_for(3s);
        report("idle_node_rss_kb", static_cast<double>(proc_rss_kb(child)), "kB (kith node, 8 peers connected)");
        report("remote_idle_cpu_pct", 100.0 * (proc_cpu_s(child) - c0) / seconds_since(t0),
               "% of a core (kith node, 8 peers connected)");
    } else {
        std::printf("idle_node_note: only %d of 8 peers connected to the idle node\n", connected);
    }
    peers.clear();
    ::kill(child, SIGTERM);
    int status = 0;
    ::waitpid(child, &status, 0);
}
#endif

}  // namespace

KITH_BENCH_GROUP("concurrency", 35) {
    const kith::bench::parts knobs("CONCURRENCY");
    kith::bench::temp_dir dir;
    {
        kith::node a(net_node(bench_name("a@bench"), dir.path / "a"));
        kith::node b(net_node(bench_name("b@bench"), dir.path / "b"));
        b.add_service(kith::bench::bench_service());
        const std::string bn = kith::bench::connect_nodes(a, b, "concurrency");
        if (bn.empty()) return;
        auto want = [&](const char* part) { return knobs.want(part); };
        const std::int64_t n = knobs.n;
        const char* k_env = std::getenv("KITH_BENCH_CONCURRENCY_ACTORS");
        const int k = k_env ? std::max(1, std::atoi(k_env)) : 32;
        const std::string tail = k == 32 ? "" : "_" + std::to_string(k) + "_actors";
        if (want("actors")) {
            if (n <= 0) actor_callers(a, bn, k, 20000);  // warm-up
            report("rpc_32_actor_callers_calls_per_s" + tail, actor_callers(a, bn, k, n > 0 ? n : 300000), "calls/s");
        }
        if (want("spawn")) {
            if (n <= 0) actor_spawners(a, bn, k, 4000);  // warm-up
            report("remote_spawn_per_s" + tail, actor_spawners(a, bn, k, n > 0 ? n : 100000),
                   "spawns/s (" + std::to_string(k) + " actors)");
        }
        if (want("spawn_threads")) {
            if (n <= 0) remote_spawns(a, bn, 32, 2000);  // warm-up
            report("remote_spawn_32_threads_per_s", remote_spawns(a, bn, 32, n > 0 ? n : 40000),
                   "spawns/s (32 blocked threads)");
        }
        if (want("bulk")) calls_under_bulk(a, b, bn);
    }
    // The actor shapes again with B in a process of its own (bench_peer.hpp):
    // each node's network threads on the CPU its own process chose, as with
    // Erlang's two VMs or two machines.
    if (knobs.want("actors2p") || knobs.want("spawn2p")) {
        kith::bench::peer_pair pp;
        kith::bench::start_peer_pair(pp, dir.path, "concurrency");
        if (!pp.bn.empty()) {
            kith::node& a = *pp.a;
            const std::int64_t n = knobs.n;
            if (knobs.want("actors2p")) {
                if (n <= 0) actor_callers(a, pp.bn, 32, 20000);  // warm-up
                const auto a0 = a.net_stats();
                report("rpc_32_actor_callers_2proc_calls_per_s", actor_callers(a, pp.bn, 32, n > 0 ? n : 300000),
                       "calls/s (B in its own process)");
                if (std::getenv("KITH_BENCH_FRAMES")) {  // envelopes per frame, A to B (profiling)
                    const auto a1 = a.net_stats();
                    std::printf("actors2p frames: a->b %llu frames %.1f env/frame\n",
                                (unsigned long long)(a1.frames_out - a0.frames_out),
                                double(a1.envelopes_out - a0.envelopes_out) / double(a1.frames_out - a0.frames_out + 1));
                }
            }
            if (knobs.want("spawn2p")) {
                if (n <= 0) actor_spawners(a, pp.bn, 32, 4000);  // warm-up
                report("remote_spawn_2proc_per_s", actor_spawners(a, pp.bn, 32, n > 0 ? n : 100000),
                       "spawns/s (32 actors, B in its own process)");
            }
        }
    }
    if (!knobs.want("idle")) return;
#ifdef KITH_CLI_BINARY
    idle_node(dir.path);
#else
    std::printf("idle_node_note: built without the kith program; no idle-node figures\n");
#endif
}
