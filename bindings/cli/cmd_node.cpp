// kith node: run a node in the foreground.
#include <pthread.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <mutex>

#include "cli.hpp"
#include "commands.hpp"
#include "kith/builtin.hpp"

namespace kith::cli {

namespace {

const char* kNodeUsage = R"(usage: kith node [options]

Runs a node hosting the built-in services and prints its name, endpoint and
key fingerprint, then node up/down events as they happen. It finds the nodes
of its cluster (same cookie) on the LAN by UDP beacons and connects to them.
Ctrl-C or SIGTERM stops it cleanly (goodbye sent to every peer; the grant
table is saved on every change).

options:
  --name N          node name; "N" becomes "N@<hostname>" (default: kith)
  --port P          TCP port to listen on, all interfaces (default: 4370)
  --listen EP       ZeroMQ endpoint to bind instead, e.g. tcp://127.0.0.1:0
  --advertise EP    endpoint others should dial (behind NAT)
  --cookie C        cluster cookie (default: the cookie file in the key dir)
  --key-dir D       key directory (default: $KITH_HOME or ~/.kith)
  --services S,...  built-in services to host: kvs, echo, demo, node
                    (with echo, an echo server is registered as "echo")
                    (default: kvs,echo,demo,node; "grants" is always hosted,
                    for `kith grant`, and only the cluster may use it)
  --public S,...    services anyone who can reach the node may call,
                    strangers included (rate-limited per caller)
  --peer HOST:PORT  a node to find without broadcast; repeatable
  --interface IF    network interface for beacons (default: all; or $KITH_INTERFACE)
  --beacon-port P   UDP port of the beacons (default: 4371)
  --broadcast ADDR  where beacons go instead of each interface's broadcast
                    address (e.g. 127.255.255.255: nodes of one machine only)
  --no-discovery    no beacons: connect only through --peer and grants
  --hidden          do not appear in other nodes' lists
  --workers N       actor worker threads (default: one per core)
)";

void print_event(const node_event& e) {
    static std::mutex mu;
    std::lock_guard lk(mu);
    if (e.what == node_event::kind::up) {
        std::string svcs;
        for (auto& s : e.info.services) svcs += (svcs.empty() ? "" : ",") + s;
        std::printf("nodeup %s trust=%s endpoint=%s fingerprint=%s services=%s\n", e.node.c_str(),
                    std::string(to_string(e.info.trust)).c_str(), e.info.endpoint.c_str(),
                    e.info.fingerprint.c_str(), svcs.c_str());
    } else {
        std::printf("nodedown %s reason=%s\n", e.node.c_str(), e.reason.c_str());
    }
    std::fflush(stdout);
}

}  // namespace

int cmd_node(int argc, char** argv) {
    args a = parse_args("node", argc, argv,
                        {"--name", "--port", "--listen", "--advertise", "--cookie", "--key-dir", "--services",
                         "--public", "--peer", "--interface", "--beacon-port", "--broadcast", "--workers"},
                        {"--no-discovery", "--hidden"});
    if (a.has("--help")) {
        std::fputs(kNodeUsage, stdout);
        return 0;
    }
    if (!a.pos.empty()) throw cli_error{"node: unexpected argument '" + a.pos[0] + "'", kUsage};

    node_options o;
    o.name = full_node_name(a.get("--name", "kith"));
    if (!valid_node_name(o.name)) throw cli_error{"node: invalid node name '" + o.name + "'", kUsage};
    int port = a.has("--port") ? parse_port("node: --port", a.get("--port"), 0) : 4370;
    o.net.listen = a.get("--listen", "tcp://*:" + std::to_string(port));
    if (o.net.listen.empty()) throw cli_error{"node: --listen needs an endpoint, e.g. tcp://127.0.0.1:0", kUsage};
    o.net.advertise = a.get("--advertise");
    if (a.has("--cookie")) o.net.cookie = a.get("--cookie");
    if (a.has("--key-dir")) o.net.key_dir = a.get("--key-dir");
    o.net.hidden = a.has("--hidden");
    if (a.has("--workers")) {
        try {
            o.workers = static_cast<unsigned>(std::stoul(a.get("--workers")));
        } catch (...) {
            throw cli_error{"node: --workers must be a number", kUsage};
        }
    }
    std::vector<std::string> services = a.has("--services") ? a.list("--services")
                                                            : std::vector<std::string>{"kvs", "echo", "demo", "node"};
    for (auto& s : services)
        if (s != "kvs" && s != "echo" && s != "demo" && s != "node")
            throw cli_error{"node: unknown service '" + s + "' (built-in: kvs, echo, demo, node)", kUsage};
    for (auto& s : a.list("--public"))
        if (s == "grants") throw cli_error{"node: the grants service cannot be public", kUsage};
    discovery_options d;
    d.interface = a.get("--interface");
    d.peers = a.list("--peer");
    if (a.has("--beacon-port")) d.port = parse_port("node: --beacon-port", a.get("--beacon-port"), 1);
    d.broadcast_address = a.get("--broadcast");
    d.announce = !o.net.hidden;

    // Block the stop signals in every thread; the main thread waits for them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    kith::node n(o);
    for (auto& s : services) {
        if (s == "kvs") n.add_service(services::make_kvs());
        if (s == "echo") n.add_service(services::make_echo());
        if (s == "demo") n.add_service(services::make_demo(n));
        if (s == "node") n.add_service(services::make_node_info(n));
    }
    n.add_service(services::make_grant_admin(n));
    // The seeds' registered echo server (echo:start()): prints what it gets
    // and answers [Client, M] by sending M to Client.
    if (std::find(services.begin(), services.end(), "echo") != services.end()) {
        pid echo = n.spawn([](actor& self, message& m) {
            if (!m.is_user()) return;
            std::printf("echo got %s\n", m.body.to_string().c_str());
            std::fflush(stdout);
            if (m.body.size() == 2 && m.body.at(0)->is_pid()) self.send(*m.body.at(0)->as_pid(), *m.body.at(1));
        });
        (void)n.register_name("echo", echo);
    }
    for (auto& s : a.list("--public"))
        if (auto r = n.set_public(s); !r.ok()) {
            std::fprintf(stderr, "kith node: --public %s: %s\n", s.c_str(), r.err().detail.c_str());
            return 2;
        }
    n.subscribe_nodes(print_event);
    std::unique_ptr<kith::discovery> disc;
    if (!a.has("--no-discovery")) disc = std::make_unique<kith::discovery>(n, d);

    std::printf("node %s\nendpoint %s\nkey %s\nfingerprint %s\nservices", n.name().c_str(), n.endpoint().c_str(),
                n.key().z85().c_str(), n.key().fingerprint().c_str());
    for (auto& s : services) std::printf(" %s", s.c_str());
    std::printf("\npublic");
    for (auto& s : n.public_services()) std::printf(" %s", s.c_str());
    std::printf("\ndiscovery %s\nready (Ctrl-C to stop)\n",
                disc ? ("udp port " + std::to_string(d.port)).c_str() : "off");
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    std::printf("stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(stdout);
    if (disc) disc->stop();
    n.stop();
    std::printf("stopped\n");
    return 0;
}

}  // namespace kith::cli
