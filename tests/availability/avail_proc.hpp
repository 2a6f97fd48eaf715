// What the availability process tests (test_availability_process,
// test_global_process, test_failover_process) share: a kith_avail_node child
// (tests/dist/child_node.hpp's child_node: real fork/exec, every wait with a
// deadline, killed and reaped at scope exit), and avail_common.hpp.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "avail_common.hpp"
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

}  // namespace avail
