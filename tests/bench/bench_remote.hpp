// The measurements of group "remote" (bench_remote.cpp) that group "relay"
// (bench_relay.cpp) repeats over a relayed link: the same code on both, so
// their figures compare.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "kith/node.hpp"

namespace kith::bench {

// Sequential blocking calls of b's "bench":"echo" from `a` (`warmup` not
// counted); returns the `n` latencies in microseconds, sorted; empty if a
// call failed.
std::vector<double> rpc_latency(kith::node& a, const std::string& b, int warmup, int n);

struct send_result {
    double msgs_per_s = 0;
    std::uint64_t received = 0;
    std::uint64_t drops = 0;
    bool complete = false;
};

// An actor on A sends `total` 32-byte binaries to a sink actor on B. The sink
// acknowledges every `ack_every` messages; the source keeps at most `window`
// unacknowledged messages in flight (flow control as an application would do
// it, so no per-peer queue overflows). A run stalled for `stall_limit` ends
// incomplete.
send_result remote_send(kith::node& a, kith::node& b, std::int64_t total, std::int64_t window,
                        std::int64_t ack_every,
                        std::chrono::steady_clock::duration stall_limit = std::chrono::seconds(5));

}  // namespace kith::bench
