// What the availability process tests (test_availability_process,
// test_global_process, test_failover_process) share: a kith_avail_node child
// (tests/dist/child_node.hpp's child_node: real fork/exec, every wait with a
// deadline, killed and reaped at scope exit), node options with a fast
// heartbeat, and small waits.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kith/node.hpp"
#include "kith_catch.hpp"

#ifndef KITH_AVAIL_NODE
#error "KITH_AVAIL_NODE must name the kith_avail_node binary"
#endif

// kith_avail_node takes kith_test_node's command line; child_node runs
// whatever KITH_TEST_NODE names.
#ifndef KITH_TEST_NODE
#define KITH_TEST_NODE KITH_AVAIL_NODE
#endif
#include "child_node.hpp"

namespace avail {
using namespace std::chrono_literals;
using process_test::child_node;
using clock_type = std::chrono::steady_clock;

inline const std::string kCookie = "avail-cookie-17";

// Heartbeat every 200 ms, a peer lost after 1 s of silence (the children
// get the same timeout through --hb-timeout-ms), so losses show up fast.
inline kith::node_options opts(const std::string& name, const std::filesystem::path& key_dir,
                               const std::string& cookie = kCookie) {
    kith::node_options o;
    o.name = name;
    o.workers = 2;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = key_dir;
    o.net.cookie = cookie;
    o.net.heartbeat_interval = 200ms;
    o.net.heartbeat_timeout = 1000ms;
    return o;
}

// Starts a child of the kCookie cluster and waits for READY (fails the test
// with its stderr if not). `extra` is appended to its command line.
inline std::unique_ptr<child_node> start_child(const std::string& name, const std::filesystem::path& dir,
                                               const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args{"--hb-timeout-ms", "1000"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto c = std::make_unique<child_node>(name, dir, kCookie, "tcp://127.0.0.1:0", args);
    bool ok = c->wait_ready(10s);
    INFO("child stderr:\n" << c->stderr_text());
    REQUIRE(ok);
    return c;
}

// Connects `me` to `kid`, and `kid` (glctl:connect) to each of `peers`:
// each pair once (a second connect of a connected pair is not what the
// tests test).
inline void mesh_child(kith::node& me, child_node& kid, const std::vector<child_node*>& peers) {
    REQUIRE(me.connect(kid.endpoint, kid.key, 5s).ok());
    for (auto* other : peers) {
        auto r = me.call(kid.name, "glctl", "connect", kith::arr(other->endpoint, other->key.z85()), 8s);
        INFO((r.ok() ? std::string() : r.err().message()));
        REQUIRE(r.ok());
    }
}

template <class P>
bool eventually(P pred, std::chrono::milliseconds timeout = 5000ms) {
    auto end = clock_type::now() + timeout;
    while (!pred()) {
        if (clock_type::now() > end) return false;
        std::this_thread::sleep_for(5ms);  // polling interval, not a wait for an event
    }
    return true;
}

inline double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

}  // namespace avail
