// kith_disc_node: a node with discovery, for the network-namespace tests
// (run inside a namespace with `ip netns exec`). Prints one line per event
// on stdout (flushed):
//   READY <endpoint> <fingerprint>
//   UP <name> <trust> <endpoint>          node events (node::subscribe_nodes)
//   DOWN <name> <reason>
//   SEEN <name> <trust> <connected>       when the discovery list changes
//   STATS <field>=<n> ...                 when the counters change
// Runs until SIGTERM/SIGINT (clean stop: leaving beacon, goodbye) or kill.
//
//   kith_disc_node --name N --key-dir D --cookie C [--listen EP] [--interface IF]
//                  [--peer HOST:PORT] [--announce 0|1]
//
// Forger mode (the hostile host of the tests; no node):
//   kith_disc_node --forge bad-hmac|leave|replay --target NAME --cookie C --bcast ADDR
// captures NAME's beacon on port 4371, prints CAPTURED, then every 300 ms:
//   bad-hmac  a beacon "forger@evil" with our cluster id and a wrong HMAC (newer
//             than NAME's)
//   leave     a "leaving" for NAME, newer, HMAC made with the cookie (insider)
//   replay    NAME's captured beacon verbatim (from this host's address), after
//             a line "go" on stdin; meanwhile a CURVE server with its own key
//             listens on NAME's TCP port here (the impersonator).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "beacon.hpp"
#include "kith/discovery.hpp"
#include "kith/node.hpp"
#include "udp_sockets.hpp"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }
std::mutex out_mu;
void say(const std::string& s) {
    std::lock_guard lk(out_mu);
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
}

int forge(const std::string& mode, const std::string& target, const std::string& cookie, const std::string& bcast) {
    using namespace kith::detail;
    auto key = beacon_hmac_key::from_cookie(cookie);
    int rx = kith_test::shared_udp_socket(), tx = kith_test::shared_udp_socket();
    sockaddr_in a;
    kith_test::ipv4_address("", 4371, a);
    if (::bind(rx, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 3;
    timeval tv{0, 200000};
    ::setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::vector<std::uint8_t> captured(2048);
    decoded_beacon d;
    while (!g_stop) {
        auto r = ::recv(rx, captured.data(), captured.size(), 0);
        if (r <= 0) continue;
        d = decode_beacon(std::span(captured.data(), static_cast<std::size_t>(r)), &key);
        if (d.status == beacon_status::ok_cluster && d.b.name == target && d.b.type == beacon_type::announce) {
            captured.resize(static_cast<std::size_t>(r));
            break;
        }
    }
    say("CAPTURED");
    std::vector<std::uint8_t> out;
    zmq::context_t ctx;
    zmq::socket_t imp(ctx, zmq::socket_type::router);
    if (mode == "bad-hmac") {
        beacon b = d.b;
        b.name = "forger@evil";
        // Newer than the target's beacons: one not newer would be dropped
        // as a replay before its HMAC is checked.
        b.timestamp_ms += 5000;
        auto wrong = key;
        wrong.hmac[0] ^= 1;
        out = encode_beacon(b, &wrong);
    } else if (mode == "leave") {
        beacon b = d.b;
        b.type = beacon_type::leaving;
        b.timestamp_ms += 5000;  // newer than anything sent, within the clock skew
        out = encode_beacon(b, &key);
    } else if (mode == "replay") {
        char pub[41], sec[41];
        zmq_curve_keypair(pub, sec);
        imp.set(zmq::sockopt::curve_server, 1);
        imp.set(zmq::sockopt::curve_secretkey, std::string(sec));
        imp.bind("tcp://*:" + std::to_string(d.b.tcp_port));
        std::string line;
        while (!g_stop && std::getline(std::cin, line) && line != "go") {
        }
        out = captured;
    } else {
        return 2;
    }
    sockaddr_in to;
    kith_test::ipv4_address(bcast, 4371, to);
    while (!g_stop) {
        ::sendto(tx, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    return 0;
}
}  // namespace

int main(int argc, char** argv) {
    std::map<std::string, std::string> args;
    std::vector<std::string> peers;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (std::string(argv[i]) == "--peer")
            peers.push_back(argv[i + 1]);
        else
            args[argv[i]] = argv[i + 1];
    }
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    if (args.count("--forge")) return forge(args["--forge"], args["--target"], args["--cookie"], args["--bcast"]);

    kith::node_options o;
    o.name = args["--name"];
    o.workers = 1;
    o.net.listen = args.count("--listen") ? args["--listen"] : "tcp://*:4370";
    o.net.key_dir = args["--key-dir"];
    o.net.cookie = args["--cookie"];
    kith::node n(o);
    n.subscribe_nodes([](const kith::node_event& e) {
        if (e.what == kith::node_event::kind::up)
            say("UP " + e.node + " " + std::string(kith::to_string(e.info.trust)) + " " + e.info.endpoint);
        else
            say("DOWN " + e.node + " " + e.reason);
    });
    kith::discovery_options d;
    d.interface = args["--interface"];
    d.peers = peers;
    d.announce = args["--announce"] != "0";
    kith::discovery disc(n, d);
    say("READY " + n.endpoint() + " " + n.key().fingerprint());
    std::map<std::string, std::string> last;
    std::string last_stats;
    while (!g_stop) {
        std::map<std::string, std::string> now;
        for (auto& s : disc.seen())
            now[s.name] = std::string(kith::to_string(s.trust)) + " " + (s.connected ? "1" : "0");
        for (auto& [k, v] : now)
            if (last[k] != v) say("SEEN " + k + " " + v);
        last = now;
        auto c = disc.stats();
        std::string st = "STATS bad_hmac=" + std::to_string(c.bad_hmac) + " malformed=" + std::to_string(c.malformed) +
                         " key_conflicts=" + std::to_string(c.key_conflicts) +
                         " spoofed_leaves=" + std::to_string(c.spoofed_leaves) +
                         " connect_failures=" + std::to_string(c.connect_failures) +
                         " replayed=" + std::to_string(c.replayed);
        if (st != last_stats) say(st);
        last_stats = st;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    disc.stop();
    n.stop();
    return 0;
}
