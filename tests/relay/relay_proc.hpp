// relay_proc.hpp — a kith_relay_node process (tests/relay/kith_relay_node.cpp)
// for the tests that run every node as an OS process: in a network namespace
// (ns "<id>..."), or here (ns ""). Killed at scope exit.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kith_catch.hpp"
#include "netns_proc.hpp"

#ifndef KITH_RELAY_NODE
#error "KITH_RELAY_NODE must name the kith_relay_node program"
#endif

namespace {

using namespace std::chrono_literals;

struct node_proc {
    std::string endpoint;  // from READY
    std::unique_ptr<netns_test::netns_proc> p;
    std::string key;  // z85, from READY
    node_proc(const std::string& ns, std::vector<std::string> args) {
        p = std::make_unique<netns_test::netns_proc>(ns, KITH_RELAY_NODE, std::move(args));
        bool ready = p->wait_for({"READY "}, 20s);
        INFO(p->dump());
        REQUIRE(ready);
        auto out = p->dump();
        auto at = out.find("READY ");
        auto line = out.substr(at, out.find('\n', at) - at);
        key = line.substr(line.rfind(' ') + 1);
        endpoint = line.substr(6, line.rfind(' ') - 6);
    }
    // Sends a command and waits for the answer line that starts with `tag`.
    std::string ask(const std::string& cmd, const std::string& tag, std::chrono::milliseconds t = 15s) {
        auto m = p->mark();
        p->write_line(cmd);
        bool ok = p->wait_for({tag}, t, m);
        INFO(cmd << "\n" << p->dump());
        REQUIRE(ok);
        auto out = lines_from(m);
        auto at = out.find(tag);
        return out.substr(at, out.find('\n', at) - at);
    }
    std::string lines_from(std::size_t m) {
        // dump() is every line; keep those from mark m on.
        auto all = p->dump();
        std::size_t pos = 0;
        for (std::size_t i = 0; i < m && pos != std::string::npos; ++i) pos = all.find('\n', pos) + 1;
        return all.substr(pos);
    }
};

std::vector<std::string> node_args(const std::string& name, const std::filesystem::path& dir,
                                   const std::string& cookie, const std::string& listen) {
    return {"--name", name, "--key-dir", dir.string(), "--cookie", cookie, "--listen", listen};
}

}  // namespace
