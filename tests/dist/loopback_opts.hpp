// The options of a test node on loopback (any free port, real CURVE) with
// its own key directory, a cookie and two workers.
#pragma once

#include <filesystem>
#include <string>

#include "kith/node.hpp"

inline kith::node_options loopback_opts(const std::string& name, const std::filesystem::path& key_dir,
                                        const std::string& cookie) {
    kith::node_options o;
    o.name = name;
    o.workers = 2;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = key_dir;
    o.net.cookie = cookie;
    return o;
}
