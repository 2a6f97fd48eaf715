// kith_test_node: a node in its own OS process, for multi-process tests.
//   kith_test_node --name N --key-dir D [--cookie C] [--listen EP] [--hb-timeout-ms T]
// Hosts kvs, echo (with the spawnable "server" actor type) and "demo"
// (dist_demo's rpc server). Prints one line "READY <endpoint> <z85 key>" when
// it is up, then runs until SIGTERM/SIGINT (clean stop, goodbye sent) or kill.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include "kith/builtin.hpp"
#include "kith/node.hpp"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
    kith::node_options o;
    o.name = "test@localhost";
    o.net.listen = "tcp://127.0.0.1:0";
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--name") o.name = v;
        else if (k == "--key-dir") o.net.key_dir = v;
        else if (k == "--cookie") o.net.cookie = v;
        else if (k == "--listen") o.net.listen = v;
        else if (k == "--hb-timeout-ms") o.net.heartbeat_timeout = std::chrono::milliseconds(std::stoi(v));
        else {
            std::fprintf(stderr, "kith_test_node: unknown option %s\n", k.c_str());
            return 2;
        }
    }
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    kith::node n(o);
    n.add_service(kith::services::make_kvs());
    n.add_service(kith::services::make_echo());
    n.add_service(kith::services::make_demo(n));
    std::printf("READY %s %s\n", n.endpoint().c_str(), n.key().z85().c_str());
    std::fflush(stdout);
    while (!g_stop) pause();
    n.stop();
    return 0;
}
