// The options every test node program takes (tests only):
//   --name N --key-dir D --cookie C --listen EP --hb-timeout-ms T
//   --guest-bytes B (net_options::guest_bytes_per_s and its burst)
//   --workers N --guest-workers N (node_options::workers, guest_workers)
// Fills `o` from argv (pairs); false, with a message on stderr naming
// `program`, for an option it does not know. Also how such a program waits
// for its stop signal (at the end).
#pragma once

#include <time.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>

#include "kith/node.hpp"

inline bool parse_node_args(const char* program, int argc, char** argv, kith::node_options& o) {
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--name") o.name = v;
        else if (k == "--key-dir") o.net.key_dir = v;
        else if (k == "--cookie") o.net.cookie = v;
        else if (k == "--listen") o.net.listen = v;
        else if (k == "--hb-timeout-ms") o.net.heartbeat_timeout = std::chrono::milliseconds(std::stoi(v));
        else if (k == "--workers") o.workers = static_cast<unsigned>(std::stoul(v));
        else if (k == "--guest-workers") o.guest_workers = static_cast<unsigned>(std::stoul(v));
        else if (k == "--guest-bytes") o.net.guest_bytes_per_s = o.net.guest_burst_bytes = std::stoull(v);
        else {
            std::fprintf(stderr, "%s: unknown option %s\n", program, k.c_str());
            return false;
        }
    }
    return true;
}

// A test node program runs until SIGTERM or SIGINT: stop_on_signals() before
// it starts its node, wait_for_stop() when it is ready.
namespace node_stop {
inline volatile std::sig_atomic_t requested = 0;
inline void on_signal(int) { requested = 1; }
}  // namespace node_stop
inline void stop_on_signals() {
    std::signal(SIGTERM, node_stop::on_signal);
    std::signal(SIGINT, node_stop::on_signal);
}
// Polls instead of pause(): the signal may be delivered to any of the node's
// threads (after SIGSTOP/SIGCONT it often is), and pause() returns only in
// the thread that ran the handler.
inline void wait_for_stop() {
    while (!node_stop::requested) {
        timespec tick{0, 20'000'000};
        nanosleep(&tick, nullptr);
    }
}
