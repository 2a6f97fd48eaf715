// Shared by the relay tests: node options on loopback with a key directory
// of their own, and waiting with a deadline.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "kith/node.hpp"

namespace relay_test {

inline kith::node_options opts(const std::string& name, const std::filesystem::path& dir,
                               const std::string& cookie = "relay-test-cookie") {
    std::filesystem::create_directories(dir);
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
    kith::node_options o;
    o.name = name;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = dir;
    o.net.cookie = cookie;
    o.net.log = [](const kith::log_record&) {};
    return o;
}

// Waits until `f()` holds, at most `t`.
template <class F>
bool eventually(F f, std::chrono::milliseconds t = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + t;
    while (!f()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

}  // namespace relay_test
