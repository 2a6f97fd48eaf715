// A network namespace with only its loopback up, for the load mode's beacon
// floods (test_adversary_load) and the benchmark's (bench_abuse): named
// kab<pid><tag><n>, removed at scope exit; stale ones of dead processes are
// removed first. Needs root and iproute2, else `ok` is false and nothing is
// made.
#pragma once
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace adv_netns {

inline bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

struct loopback_netns {
    std::string name;
    bool ok = false;
    explicit loopback_netns(char tag) {
        if (::geteuid() != 0 || !sh("ip -V")) return;
        if (FILE* f = ::popen("ip netns list 2>/dev/null", "r")) {
            char line[256];
            while (std::fgets(line, sizeof line, f)) {
                std::string n;
                std::istringstream(line) >> n;
                if (n.rfind("kab", 0) != 0) continue;
                const long owner = std::atol(n.c_str() + 3);
                if (owner > 0 && ::kill(static_cast<pid_t>(owner), 0) != 0) sh("ip netns del " + n);
            }
            ::pclose(f);
        }
        static int seq = 0;
        name = "kab" + std::to_string(::getpid()) + tag + std::to_string(++seq);
        ok = sh("ip netns add " + name) && sh("ip -n " + name + " link set lo up");
    }
    ~loopback_netns() {
        if (!name.empty()) sh("ip netns del " + name);
    }
    loopback_netns(const loopback_netns&) = delete;
    loopback_netns& operator=(const loopback_netns&) = delete;
    std::vector<std::string> exec() const { return {"/usr/sbin/ip", "netns", "exec", name}; }
    // A victim or member there, running discovery on its loopback.
    std::vector<std::string> exec_with_discovery() const {
        auto p = exec();
        p.insert(p.end(), {"/usr/bin/env", "KITH_VICTIM_DISCOVERY=127.255.255.255"});
        return p;
    }
};

}  // namespace adv_netns
