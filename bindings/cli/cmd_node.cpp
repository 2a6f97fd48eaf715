// kith node: run a node in the foreground.
#include <pthread.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <mutex>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "avail_host.hpp"
#include "relay_host.hpp"
#include "cli.hpp"
#include "commands.hpp"
#include "kith/builtin.hpp"
#include "local.hpp"
#include "rkvs_host.hpp"

namespace kith::cli {

namespace {

const char* kNodeUsage = R"(usage: kith node [options]

Runs a node hosting the built-in services and prints its name, endpoint and
key fingerprint, then node up/down events as they happen. It finds the nodes
of its cluster (same cookie) on the LAN by UDP beacons and connects to them.
Ctrl-C or SIGTERM stops it cleanly (goodbye sent to every peer; the grant
table is saved on every change).

options:
  --name N          node name; "N" becomes "N@<hostname>" (default:
                    kith-XXXX@<hostname>, XXXX the first four digits of the
                    node key's fingerprint: unique even if every hostname is
                    the same)
  --port P          TCP port to listen on, all interfaces (default: 4370, or
                    if that is taken the first free one of 4372..4399, so
                    several nodes run on one machine with no port typed)
  --listen HOST:PORT  address and port to listen on instead, e.g.
                    127.0.0.1:0 (any free port, this machine only) or
                    tcp://192.168.1.10:4370 (tcp:// may be left out)
  --member-port P   the member port: a second port that admits only this
                    cluster's members, so that grantees and strangers flooding
                    the public port do not slow them (default: any free port,
                    announced in beacons; give one to open it in a firewall;
                    "off": none, members use the public port)
  --advertise HOST:PORT  what others should dial (behind NAT), e.g.
                    203.0.113.5:4370
  --cookie-file F   file holding the cluster cookie (mode 0600; default:
                    $KITH_COOKIE, else the cookie file in the key dir)
  --cookie C        the cookie on the command line (visible in ps: prefer
                    --cookie-file or KITH_COOKIE)
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
  --guest-workers N at most N of them run grantees' and strangers' work at
                    once, the rest stay free for members (default: half the
                    workers, at least 1; docs/security.md)
  --network-cpu C   keep the node's network threads on one CPU: a number
                    (0-based), "auto" (default: the least busy one, moved
                    when it gets busy) or "off" (the scheduler places them;
                    docs/performance.md)
  --conns-per-address N
                    connections a second each port accepts from one address
                    (burst 4N; default 16), beyond which that address's new
                    connections are dropped for 2-60 s; raise it for many
                    nodes behind one NAT address; 0: unlimited
                    (docs/security.md, "Connections per address")
  --scopes S,...    process-group scopes to serve (default: default)
  --failover NAME=N1,N2,...
                    run a failover service NAME over the nodes N1, N2, ...
                    (priority order, this node among them; every one of them
                    runs the same option): an actor on the first live node,
                    registered globally as NAME, answering every request M
                    with {"node", "pid", "got": M}; repeatable. A name without
                    '@' gets this machine's hostname
  --failover-delay S  seconds a node waits before starting a failover
                    instance it should run (default: 0.75)
  --join G,...      one actor of this node joins the process groups G (of
                    the first scope); it prints what it is sent and answers
                    requests like a failover instance
  --no-availability no global names, process groups or failovers
  --rkvs N1,N2,...  host the replicated kvs (service "rkvs": store, lookup,
                    delete, keys, as kvs) with the replicas N1, N2, ... (this
                    node among them; every one of them runs the same option);
                    a write is acknowledged once a majority stored it, a
                    lookup answers while any replica lives. A name without
                    '@' gets this machine's hostname (docs/availability.md)

Every node of the cluster runs global names and process groups (scope
"default") unless --no-availability: kith whereis, kith groups and
kith call/send --global NAME ask them (docs/availability.md).

Every command on this machine finds the node by name wherever it listens
(it registers in <key dir>/run while it runs).
)";

// Ports tried when none is given: the default, then 4372..4399 (4371 is the
// beacons' UDP port; one firewall rule "4370:4399/tcp" covers them all).
std::vector<int> default_ports() {
    std::vector<int> v{4370};
    for (int p = 4372; p <= 4399; ++p) v.push_back(p);
    return v;
}

std::string tcp_port_of(const std::string& ep) {
    auto c = ep.rfind(':');
    return c == std::string::npos ? std::string() : ep.substr(c + 1);
}

void print_event(const node_event& e) {
    static std::mutex mu;
    std::lock_guard lk(mu);
    if (e.what == node_event::kind::up) {
        std::string svcs;
        for (auto& s : e.info.services) svcs += (svcs.empty() ? "" : ",") + printable(s);
        // An inbound node's: its address with the port its handshake states.
        const std::string& ep = e.info.endpoint;
        std::printf("nodeup %s trust=%s endpoint=%s fingerprint=%s services=%s\n", printable(e.node).c_str(),
                    std::string(to_string(e.info.trust)).c_str(), printable(ep).c_str(),
                    e.info.fingerprint.c_str(), svcs.c_str());
    } else {
        std::printf("nodedown %s reason=%s\n", printable(e.node).c_str(), printable(e.reason).c_str());
    }
    std::fflush(stdout);
}

// --workers, --guest-workers: 1..1024 threads.
unsigned parse_threads(const std::string& opt, const std::string& v) {
    try {
        std::size_t used = 0;
        long n = std::stol(v, &used);
        if (used == v.size() && n >= 1 && n <= 1024) return static_cast<unsigned>(n);
    } catch (...) {
    }
    throw cli_error{"node: " + opt + " wants a number of threads from 1 to 1024 (got '" + v + "')", kUsage};
}

// --network-cpu: off, auto or a CPU number 0..1023.
int parse_network_cpu(const std::string& v) {
    if (v == "off") return net_options::network_cpu_off;
    if (v == "auto") return net_options::network_cpu_auto;
    try {
        std::size_t used = 0;
        long n = std::stol(v, &used);
        if (used == v.size() && n >= 0 && n <= 1023) return static_cast<int>(n);
    } catch (...) {
    }
    throw cli_error{"node: --network-cpu wants a CPU number (0 to `nproc` - 1), auto or off (got '" + v + "')",
                    kUsage};
}

// --conns-per-address: 0..100000 connections a second.
double parse_conns_per_address(const std::string& v) {
    try {
        std::size_t used = 0;
        long n = std::stol(v, &used);
        if (used == v.size() && n >= 0 && n <= 100000) return static_cast<double>(n);
    } catch (...) {
    }
    throw cli_error{"node: --conns-per-address wants connections a second from 0 (unlimited) to 100000 (got '" + v +
                        "')",
                    kUsage};
}

// Why the public port of --listen EP could not be bound, and what to do;
// nullopt for any other start-up failure.
std::optional<std::string> listen_failure(const std::string& ep, const std::string& what) {
    if (what.find("bind the public port") == std::string::npos) return std::nullopt;
    const std::string host = ep.substr(0, ep.rfind(':'));
    const std::string at = "node: --listen " + ep + ": ";
    if (what.find("Address already in use") != std::string::npos)
        return at + "the port is taken (another node or program?); choose another, or port 0 for any free one (e.g. "
                    "--listen " + host + ":0)";
    if (what.find("Cannot assign requested address") != std::string::npos)
        return at + host + " is not an address of this machine; give one of its own (ip -4 addr shows them), or "
                           "0.0.0.0 for every interface";
    if (what.find("No such device") != std::string::npos)
        return at + "'" + host + "' is neither an IPv4 address nor a network interface of this machine (a host "
                    "name is not looked up to listen); give an address (ip -4 addr shows them), an interface "
                    "such as eth0, or 0.0.0.0 for every interface";
    return std::nullopt;
}

}  // namespace

int cmd_node(int argc, char** argv) {
    std::set<std::string> value_opts = {"--name", "--port", "--listen", "--member-port", "--advertise", "--cookie", "--cookie-file", "--key-dir", "--services",
                         "--public", "--peer", "--interface", "--beacon-port", "--broadcast", "--workers", "--guest-workers", "--network-cpu", "--conns-per-address", "--scopes",
                         "--failover", "--failover-delay", "--join", "--rkvs"};
    std::set<std::string> flag_opts = {"--no-discovery", "--hidden", "--no-availability"};
    value_opts.insert(relay_value_opts().begin(), relay_value_opts().end());
    flag_opts.insert(relay_flag_opts().begin(), relay_flag_opts().end());
    args a = parse_args("node", argc, argv, value_opts, flag_opts);
    if (a.has("--help")) {
        std::fputs(kNodeUsage, stdout);
        std::fputs(kRelayNodeHelp, stdout);
        return 0;
    }
    if (!a.pos.empty()) throw cli_error{"node: unexpected argument '" + a.pos[0] + "'", kUsage};

    node_options o;
    if (a.has("--workers")) o.workers = parse_threads("--workers", a.get("--workers"));
    if (a.has("--guest-workers")) o.guest_workers = parse_threads("--guest-workers", a.get("--guest-workers"));
    if (a.has("--network-cpu")) o.net.network_cpu = parse_network_cpu(a.get("--network-cpu"));
    if (a.has("--conns-per-address")) {
        o.net.conns_per_address_per_s = parse_conns_per_address(a.get("--conns-per-address"));
        o.net.conns_per_address_burst = 4 * o.net.conns_per_address_per_s;
    }
    // Endpoints before anything is created (the key directory).
    using platform::endpoint_use;
    const std::string listen =
        a.has("--listen") ? parse_endpoint("node: --listen", a.get("--listen"), endpoint_use::listen).zmq() : "";
    const std::string advertise =
        a.has("--advertise") ? parse_endpoint("node: --advertise", a.get("--advertise"), endpoint_use::dial).zmq() : "";
    const std::vector<std::string> peers = parse_peers("node: --peer", a);
    std::string cookie_source;
    o.net.cookie = given_cookie(a, &cookie_source);
    if (a.has("--key-dir")) o.net.key_dir = a.get("--key-dir");
    const std::filesystem::path key_dir = o.net.key_dir.empty() ? default_key_dir() : o.net.key_dir;
    // The node's key first: the default name is made from it.
    const keypair kp = load_or_create_keypair(key_dir);
    std::vector<local_node> here = running_nodes(key_dir);
    auto running_here = [&](const std::string& name) -> const local_node* {
        for (auto& l : here)
            if (l.name == name) return &l;
        return nullptr;
    };
    if (a.has("--name")) {
        o.name = full_node_name(a.get("--name"));
        if (auto* l = running_here(o.name))
            throw cli_error{"node: a node named " + o.name + " is already running on this machine (pid " +
                                std::to_string(l->pid) + ", port " + std::to_string(l->port) +
                                "); choose another name with --name",
                            kFailed};
    } else {
        // kith-<first fingerprint group>@host: unique on a LAN of identical
        // hostnames; a second unnamed node of this key directory gets -2, -3...
        std::string base = "kith-" + kp.pub.fingerprint().substr(0, 4);
        o.name = full_node_name(base);
        for (int i = 2; running_here(o.name); ++i) o.name = full_node_name(base + "-" + std::to_string(i));
    }
    if (!valid_node_name(o.name)) throw cli_error{"node: invalid node name '" + o.name + "'", kUsage};
    std::vector<int> ports;
    if (a.has("--listen")) {
        o.net.listen = listen;
    } else if (a.has("--port")) {
        ports.push_back(parse_port("node: --port", a.get("--port"), 0));
    } else {
        ports = default_ports();
    }
    o.net.advertise = advertise;
    if (a.has("--member-port")) {
        const std::string mp = a.get("--member-port");
        if (mp == "off") {
            o.net.member_listen = "off";
        } else {
            const auto p = std::to_string(parse_port("node: --member-port", mp, 1));
            // The public port's address (all interfaces unless --listen says otherwise).
            std::string host = "tcp://*";
            if (a.has("--listen"))
                if (auto c = o.net.listen.rfind(':'); c != std::string::npos && c > 6) host = o.net.listen.substr(0, c);
            o.net.member_listen = host + ":" + p;
        }
    }
    const bool cookie_file_existed = std::filesystem::exists(key_dir / "cookie");
    std::vector<std::string> services = a.has("--services") ? a.list("--services")
                                                            : std::vector<std::string>{"kvs", "echo", "demo", "node"};
    for (auto& s : services)
        if (s != "kvs" && s != "echo" && s != "demo" && s != "node")
            throw cli_error{"node: unknown service '" + s + "' (built-in: kvs, echo, demo, node)", kUsage};
    for (auto& s : a.list("--public"))
        if (s == "grants" || s == "node")
            throw cli_error{"node: --public " + s + ": \"" + s +
                                "\" is an admin service: only cluster members may use it; it can never be public",
                            kUsage};
    discovery_options d;
    d.interface = a.get("--interface");
    d.peers = peers;
    if (a.has("--beacon-port")) d.port = parse_port("node: --beacon-port", a.get("--beacon-port"), 1);
    d.broadcast_address = a.get("--broadcast");
    d.announce = !o.net.hidden;

    // Block the stop signals in every thread; the main thread waits for them.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    std::unique_ptr<kith::node> np;
    if (ports.empty()) {
        try {
            np = std::make_unique<kith::node>(o);
        } catch (const setup_error& e) {
            const std::string ep = platform::parse_tcp_endpoint(a.get("--listen"), endpoint_use::listen)->host_port();
            if (auto why = listen_failure(ep, e.what())) throw cli_error{*why, kFailed};
            throw;
        }
    } else {
        for (std::size_t i = 0; i < ports.size(); ++i) {
            o.net.listen = "tcp://*:" + std::to_string(ports[i]);
            try {
                np = std::make_unique<kith::node>(o);
                break;
            } catch (const setup_error& e) {
                // The member port fixed by --member-port is taken: another
                // public port would not help.
                if (std::strstr(e.what(), "bind the member port"))
                    throw cli_error{"node: the member port " + a.get("--member-port") +
                                        " is taken (another node or program?); choose another with --member-port "
                                        "P, or leave it out for any free port",
                                    kFailed};
                // Taken by another node of this machine: the next port.
                if (ports.size() == 1 || i + 1 == ports.size() || !std::strstr(e.what(), "in use")) {
                    if (ports.size() > 1 && std::strstr(e.what(), "in use"))
                        throw cli_error{"node: ports 4370 and 4372..4399 are all taken on this machine; give a "
                                        "free one with --port P",
                                        kFailed};
                    if (ports.size() == 1 && std::strstr(e.what(), "in use"))
                        throw cli_error{"node: port " + std::to_string(ports[0]) +
                                            " is taken (another node?); leave out --port to take a free one",
                                        kFailed};
                    throw;
                }
            }
        }
    }
    kith::node& n = *np;
    // Global names, process groups and failovers (avail_host.hpp); the
    // "node" admin service answers whereis/groups from them.
    std::unique_ptr<avail_host> avail;
    if (!a.has("--no-availability")) {
        avail_options ao;
        if (a.has("--scopes")) ao.scopes = a.list("--scopes");
        if (ao.scopes.empty()) throw cli_error{"node: --scopes needs at least one scope name", kUsage};
        ao.join = a.list("--join");
        if (auto it = a.opts.find("--failover"); it != a.opts.end()) ao.failovers = it->second;
        if (a.has("--failover-delay")) ao.failover_delay = parse_seconds("node: --failover-delay", a.get("--failover-delay"));
        avail = std::make_unique<avail_host>(n, ao);
    } else if (a.has("--failover") || a.has("--scopes") || a.has("--join")) {
        throw cli_error{"node: --failover, --join and --scopes need availability: leave out --no-availability", kUsage};
    }
    for (auto& s : services) {
        if (s == "kvs") n.add_service(services::make_kvs());
        if (s == "echo") n.add_service(services::make_echo());
        if (s == "demo") n.add_service(services::make_demo(n));
        if (s == "node") {
            service admin = services::make_node_info(n);
            if (avail) avail->export_to(admin);
            n.add_service(std::move(admin));
        }
    }
    n.add_service(services::make_grant_admin(n));
    std::unique_ptr<replicated_kvs> rkvs;  // --rkvs: the replicated kvs (kith/rkvs.hpp)
    if (a.has("--rkvs")) rkvs = host_rkvs(n, a.list("--rkvs"));
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
        if (auto r = n.set_public(s); !r.ok()) throw cli_error{"node: --public " + s + ": " + r.err().detail, kUsage};
    n.subscribe_nodes(print_event);
    auto relays = std::make_unique<relay_host>(n, a);  // --serve-relay, --relay FILE
    std::unique_ptr<kith::discovery> disc;
    // Hints from discovery (a node using our name, a refused connection, a
    // node of the class with another cookie), one line each.
    d.log = [](const kith::log_record& r) {
        std::printf("%.*s\n", static_cast<int>(r.text.size()), r.text.data());
        std::fflush(stdout);
    };
    if (!a.has("--no-discovery")) disc = std::make_unique<kith::discovery>(n, d);
    std::string cluster = n.cookie_key("beacon-cluster-id") ? cluster_id_hex(*n.cookie_key("beacon-cluster-id")) : "";
    std::string cookie_from = o.net.cookie          ? "from " + cookie_source
                              : cookie_file_existed ? "from " + (key_dir / "cookie").string()
                                                    : "from " + (key_dir / "cookie").string() +
                                                          " (created now, random: nodes of other machines need the "
                                                          "same one; copy the file and give them --cookie-file)";
    if (o.net.cookie)
        warn_if_weak(*o.net.cookie, cookie_source);
    else if (cookie_file_existed)
        warn_if_weak(load_or_create_cookie(key_dir), (key_dir / "cookie").string());
    local_node self;
    self.name = n.name();
    self.endpoint = n.endpoint();
    self.key = n.key();
    self.pid = ::getpid();
    self.cluster = cluster;
    // This machine reaches the node at its bound port, whatever it advertises
    // (a port forward's outside port may differ).
    auto port = tcp_port_of(n.bound_endpoint());
    self.port = static_cast<std::uint16_t>(std::atoi(port.c_str()));
    if (auto m = n.member_endpoint(); !m.empty())
        self.member_port = static_cast<std::uint16_t>(std::atoi(tcp_port_of(m).c_str()));
    std::optional<registration> reg;
    if (!o.net.hidden && self.port) reg.emplace(key_dir, self);

    std::printf("node %s\nendpoint %s\n", n.name().c_str(), n.endpoint().c_str());
    if (!n.member_endpoint().empty())
        std::printf("member endpoint %s (cluster members only)\n", n.member_endpoint().c_str());
    std::printf("key %s\nfingerprint %s\nservices", n.key().z85().c_str(), n.key().fingerprint().c_str());
    for (auto& s : services) std::printf(" %s", s.c_str());
    if (rkvs) std::printf(" rkvs");
    std::printf("\npublic");
    for (auto& s : n.public_services()) std::printf(" %s", s.c_str());
    if (n.public_services().empty())
        std::printf(" none (only cluster members and grant holders may call; --public SERVICE opens one to anyone)");
    std::printf("\ncookie %s, cluster id %s (nodes that print the same id share the cookie)", cookie_from.c_str(),
                cluster.c_str());
    std::printf("\n%s", avail ? avail->describe().c_str() : "");
    std::printf("%s", relays->describe().c_str());
    if (rkvs) {
        std::printf("rkvs on");
        for (auto& r : rkvs->options().replicas) std::printf(" %s", r.c_str());
        std::printf("\n");
    }
    std::printf("availability %s\ndiscovery %s\nready (Ctrl-C to stop)\n", avail ? "global names, groups" : "off",
                disc ? ("udp port " + std::to_string(d.port)).c_str() : "off");
    std::fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    std::printf("stopping (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(stdout);
    reg.reset();
    relays.reset();
    if (disc) disc->stop();
    rkvs.reset();
    avail.reset();  // failovers end their instances; peers drop our names and members
    n.stop();
    std::printf("stopped\n");
    return 0;
}

}  // namespace kith::cli
