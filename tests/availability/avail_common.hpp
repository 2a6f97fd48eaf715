// What every availability test shares, in-process or not: node options
// with a fast heartbeat and bounded waits.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "../dist/loopback_opts.hpp"
#include "../transport/tmpdir.hpp"
#include "kith/node.hpp"

namespace avail {
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

inline const std::string kCookie = "avail-cookie-17";

// Heartbeat every 200 ms, a peer lost after 1 s of silence (the children
// get the same timeout through --hb-timeout-ms), so losses show up fast.
inline kith::node_options opts(const std::string& name, const std::filesystem::path& key_dir,
                               const std::string& cookie = kCookie) {
    kith::node_options o = loopback_opts(name, key_dir, cookie);
    o.net.heartbeat_interval = 200ms;
    o.net.heartbeat_timeout = 1000ms;
    return o;
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

// The trust tests' cast: Alice and Carol of one cluster, Bob of another
// (his own cookie), each with a key directory in tmp.
struct alice_carol_bob {
    temp_dir tmp;
    kith::node alice{opts("alice@localhost", tmp.path / "alice")};
    kith::node carol{opts("carol@localhost", tmp.path / "carol")};
    kith::node bob{opts("bob@localhost", tmp.path / "bob", "bobs-own-cookie")};
};

inline double ms_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

}  // namespace avail
