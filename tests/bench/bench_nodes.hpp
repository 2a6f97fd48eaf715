// Helpers shared by the benchmark groups that start kith nodes: a temporary
// key directory and the options of a loopback node with real CURVE.
#pragma once

#include <stdlib.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "../transport/tmpdir.hpp"
#include "kith/node.hpp"

namespace kith::bench {

// A temporary directory, removed afterwards (the tests' own).
using ::temp_dir;

inline constexpr const char* bench_cookie = "kith-bench-cookie";

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
    // Profiling runs (a set count, typically under callgrind) are slow
    // enough to miss the default heartbeat bound.
    if (std::getenv("KITH_BENCH_REMOTE_N")) o.net.heartbeat_timeout = std::chrono::seconds(60);
    return o;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace kith::bench
