// Helpers shared by the benchmark groups that start kith nodes: a temporary
// key directory and the options of a loopback node with real CURVE.
#pragma once

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>

#include "../transport/tmpdir.hpp"
#include "kith/node.hpp"

namespace kith::bench {

// A temporary directory, removed afterwards (the tests' own).
using ::temp_dir;

using clk = std::chrono::steady_clock;

inline constexpr const char* bench_cookie = "kith-bench-cookie";

// The name of a benchmark node: `short_name` ("a@bench"), or with
// KITH_BENCH_LONG_NAMES=1 one as long as `kith node`'s default names
// ("kith-a000@raspberrypi", 21 characters): pids and refs carry their
// node's name, and one over 15 characters is a heap string in every copy.
inline std::string bench_name(const std::string& short_name) {
    const char* v = std::getenv("KITH_BENCH_LONG_NAMES");
    if (!v || !*v || std::string(v) == "0") return short_name;
    const std::string head = short_name.substr(0, short_name.find('@'));
    return "kith-" + head + std::string(head.size() < 4 ? 4 - head.size() : 0, '0') + "@raspberrypi";
}

// A node on loopback (any free port) with its own key directory `dir`, the
// bench cookie and KITH_BENCH_WORKERS workers when set.
inline kith::node_options net_node(const std::string& name, const std::filesystem::path& dir) {
    std::filesystem::create_directories(dir);
    kith::node_options o;
    o.name = name;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = dir;
    o.net.cookie = bench_cookie;
    if (const char* w = std::getenv("KITH_BENCH_WORKERS")) o.workers = static_cast<unsigned>(std::atoi(w));
    // Profiling: every node's network threads on this CPU, or "auto"
    // (net_options::network_cpu, network_cpu_auto).
    if (const char* c = std::getenv("KITH_BENCH_NETWORK_CPU"))
        o.net.network_cpu = std::string(c) == "auto" ? kith::net_options::network_cpu_auto : std::atoi(c);
    // Profiling runs (a set count, typically under callgrind) are slow
    // enough to miss the default heartbeat bound.
    if (std::getenv("KITH_BENCH_REMOTE_N") || std::getenv("KITH_BENCH_CONCURRENCY_N"))
        o.net.heartbeat_timeout = std::chrono::seconds(60);
    return o;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A group's profiling knobs: KITH_BENCH_<GROUP>_ONLY=part runs that part
// only; KITH_BENCH_<GROUP>_N=N sets the measured count (one run, no
// warm-up; 0 when unset), e.g. for callgrind.
struct parts {
    explicit parts(const std::string& group) {
        if (const char* o = std::getenv(("KITH_BENCH_" + group + "_ONLY").c_str())) only = o;
        if (const char* v = std::getenv(("KITH_BENCH_" + group + "_N").c_str())) n = std::atoll(v);
    }
    bool want(const char* part) const { return only.empty() || only == part; }
    std::string only;
    std::int64_t n = 0;
};

// Connects `a` to `b`: b's name, or empty after saying why on stderr.
inline std::string connect_nodes(kith::node& a, kith::node& b, const char* group) {
    auto up = a.connect(b.endpoint(), b.key());
    if (up.ok()) return *up;
    std::fprintf(stderr, "bench %s: connect failed: %s\n", group, up.err().detail.c_str());
    return {};
}

// `total` operations, each issued and completed on kith threads (a window
// of calls kept full from their completions); the measuring thread waits
// for the last.
struct completions {
    explicit completions(std::int64_t n) : total(n) {}
    const std::int64_t total;
    std::atomic<std::int64_t> issued{0}, done{0}, failed{0};

    // Claims the next operation; false once `total` were claimed.
    bool claim() { return issued.fetch_add(1) < total; }
    // One ended (`ok` or failed); the last wakes wait() and returns true:
    // its caller must then touch nothing of the measuring thread's (which
    // may have returned already).
    bool finish(bool ok) {
        if (!ok) failed.fetch_add(1);
        if (done.fetch_add(1) + 1 != total) return false;
        std::lock_guard lk(mu);
        cv.notify_all();
        return true;
    }
    // Waits (at most 120 s) for every operation; returns the successful
    // ones per second since `t0`.
    double wait_rate(std::chrono::steady_clock::time_point t0) {
        {
            std::unique_lock lk(mu);
            cv.wait_for(lk, std::chrono::seconds(120), [&] { return done.load() >= total; });
        }
        return static_cast<double>(done.load() - failed.load()) / seconds_since(t0);
    }

private:
    std::mutex mu;
    std::condition_variable cv;
};

}  // namespace kith::bench
