// Discovery figures (group "mesh"): N nodes started together in one process
// on this machine, each with its own key directory, all with one cookie and
// a kith::discovery; time from the moment the discoveries start until every
// node has a connection to every other (node::nodes() lists N-1 names).
//   mesh_16_converge_s, mesh_32_converge_s
//   mesh_join_nodeup_ms     a node joining a running pair: from its
//                           discovery's start until the first of the others
//                           reports nodeup for it (target: within 1 s)
//   mesh_leave_nodedown_ms  a node stopping cleanly (discovery, then node):
//                           until the others report nodedown "shutdown"
//                           (target: within 100 ms)
// Loopback has no broadcast-capable interface, so the beacons go to
// 127.255.255.255 (discovery_options.broadcast_address): Linux delivers a
// datagram to lo's broadcast address to every socket of the port's
// SO_REUSEPORT group, like a LAN broadcast. Each run uses a fresh free UDP
// port, so other kith nodes on this machine are not disturbed. The figure
// includes the queries at start, the answers, the beacons, the CURVE
// handshakes of N*(N-1)/2 connections (the node whose name sorts first
// dials) and the node-up events.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "bench.hpp"
#include "kith/discovery.hpp"
#include "kith/node.hpp"

namespace {

using clk = std::chrono::steady_clock;

std::uint16_t free_udp_port() {
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t l = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
    ::close(fd);
    return ntohs(a.sin_port);
}

// Seconds until a full mesh of n nodes, or a negative value if it did not
// converge within 30 s.
double converge(int n) {
    temp_dir dir;
    std::vector<std::unique_ptr<kith::node>> nodes;
    for (int i = 0; i < n; ++i) {
        kith::node_options o;
        o.name = "mesh" + std::to_string(i) + "@bench";
        o.workers = 1;
        o.net.listen = "tcp://127.0.0.1:0";
        o.net.key_dir = dir.path / std::to_string(i);
        o.net.cookie = "kith-bench-mesh-cookie";
        nodes.push_back(std::make_unique<kith::node>(o));
    }
    kith::discovery_options d;
    d.port = free_udp_port();
    d.broadcast_address = "127.255.255.255";
    std::vector<std::unique_ptr<kith::discovery>> ds;
    auto t0 = clk::now();
    for (auto& nd : nodes) ds.push_back(std::make_unique<kith::discovery>(*nd, d));
    auto deadline = t0 + std::chrono::seconds(30);
    while (clk::now() < deadline) {
        bool all = true;
        for (auto& nd : nodes)
            if (nd->nodes().size() != static_cast<std::size_t>(n - 1)) {
                all = false;
                break;
            }
        if (all) return std::chrono::duration<double>(clk::now() - t0).count();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return -1;
}

kith::node_options mesh_opts(const temp_dir& dir, const std::string& name) {
    kith::node_options o;
    o.name = name;
    o.workers = 1;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = dir.path / name;
    o.net.cookie = "kith-bench-mesh-cookie";
    return o;
}

// Milliseconds until `pred` holds (polled every 100 µs), negative after 10 s.
template <class F>
double ms_until(clk::time_point t0, F pred) {
    while (clk::now() - t0 < std::chrono::seconds(10)) {
        if (pred()) return std::chrono::duration<double, std::milli>(clk::now() - t0).count();
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return -1;
}

void join_and_leave() {
    temp_dir dir;
    kith::discovery_options d;
    d.port = free_udp_port();
    d.broadcast_address = "127.255.255.255";
    kith::node a(mesh_opts(dir, "a@bench")), b(mesh_opts(dir, "b@bench"));
    kith::discovery da(a, d), db(b, d);
    ms_until(clk::now(), [&] { return a.nodes().size() == 1; });
    auto c = std::make_unique<kith::node>(mesh_opts(dir, "c@bench"));
    auto t0 = clk::now();
    auto dc = std::make_unique<kith::discovery>(*c, d);
    kith::bench::report("mesh_join_nodeup_ms",
                        ms_until(t0, [&] { return a.info("c@bench") || b.info("c@bench"); }), "ms");
    ms_until(clk::now(), [&] { return a.info("c@bench") && b.info("c@bench"); });
    t0 = clk::now();
    dc.reset();
    c->stop();
    kith::bench::report("mesh_leave_nodedown_ms",
                        ms_until(t0, [&] { return !a.info("c@bench") && !b.info("c@bench"); }), "ms");
}

}  // namespace

KITH_BENCH_GROUP("mesh", 40) {
    for (int n : {16, 32}) {
        double s = converge(n);
        if (s < 0) std::fprintf(stderr, "mesh: %d nodes did not converge within 30 s\n", n);
        kith::bench::report("mesh_" + std::to_string(n) + "_converge_s", s, "s");
    }
    join_and_leave();
}
