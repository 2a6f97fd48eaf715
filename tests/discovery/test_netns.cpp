// kith::discovery with real broadcast between network namespaces: a bridge
// in its own namespace and one veth pair per host, all created and removed by
// the test (unique names per run; traffic never leaves these namespaces).
// Nodes run as OS processes (kith_disc_node) under `ip netns exec`.
// Needs root (CAP_NET_ADMIN) and iproute2; without them the tests say so and
// do nothing.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "kith_catch.hpp"
#include "netns_proc.hpp"

#ifndef KITH_DISC_NODE
#error "KITH_DISC_NODE must name the kith_disc_node program"
#endif

using namespace std::chrono_literals;

namespace {

using netns_test::can_run;
using netns_test::sh;

// A LAN of hosts 10.77.0.<i+1> (netns_test::lan), namespaces "kd<pid>x...".
struct lan : netns_test::lan {
    explicit lan(int n) : netns_test::lan(n, "kd", "10.77.0") {}
};

// A kith_disc_node process in a namespace.
struct proc : netns_test::netns_proc {
    proc(const std::string& ns, std::vector<std::string> args) : netns_proc(ns, KITH_DISC_NODE, std::move(args)) {}
};

const std::string cookie = "netns-classroom-cookie-0123456789";

std::unique_ptr<proc> start_node(const lan& l, int host, const std::string& name, const temp_dir& dir,
                                 std::vector<std::string> extra = {}, const std::string& c = cookie) {
    std::vector<std::string> a{"--name", name, "--key-dir", dir.path.string(), "--cookie", c};
    a.insert(a.end(), extra.begin(), extra.end());
    auto p = std::make_unique<proc>(l.hosts.at(static_cast<std::size_t>(host)), a);
    REQUIRE(p->wait_for({"READY"}, 20s));
    return p;
}

}  // namespace

TEST_CASE("netns: hosts find each other with no address, link cut and back, leave, death, strangers, static peer") {
    if (!can_run()) return;
    lan net(5);
    temp_dir d0, d1, d2a, d2b, d3, d4;
    // h0 alpha, h1 beta, h2 two nodes on one host, h3 a stranger (another
    // cookie), h4 no broadcast at all (only loopback) with a static peer.
    auto alpha = start_node(net, 0, "alpha@h0", d0);
    auto beta = start_node(net, 1, "beta@h1", d1);
    auto g1 = start_node(net, 2, "gamma1@h2", d2a);
    auto g2 = start_node(net, 2, "gamma2@h2", d2b, {"--listen", "tcp://*:4380"});
    auto delta = start_node(net, 3, "delta@h3", d3, {}, "some-other-cluster-cookie");
    auto eps = start_node(net, 4, "eps@h4", d4, {"--interface", "lo", "--peer", net.ip(0) + ":4370"});
    INFO(alpha->dump());
    for (auto n : {"beta@h1", "gamma1@h2", "gamma2@h2", "eps@h4"})
        CHECK(alpha->wait_for({"UP " + std::string(n) + " cluster"}, 20s));
    // Dialled at the beacon's source address, at beta's member port (any
    // free port: docs/security.md, "The member port"), not its public 4370.
    CHECK(alpha->wait_for({"UP beta@h1 cluster tcp://" + net.ip(1) + ":"}, 1s));
    CHECK_FALSE(alpha->has({"UP beta@h1 cluster tcp://" + net.ip(1) + ":4370"}));
    CHECK(alpha->wait_for({"SEEN delta@h3 stranger 0"}, 10s));
    CHECK(g1->wait_for({"UP gamma2@h2 cluster"}, 20s));   // two nodes on one host
    CHECK(eps->wait_for({"UP alpha@h0 cluster"}, 10s));
    CHECK(delta->wait_for({"SEEN alpha@h0 stranger 0"}, 10s));
    CHECK_FALSE(alpha->has({"UP delta"}));
    CHECK_FALSE(delta->has({"UP "}));

    // Cut beta's cable: nodedown from heartbeats; back: nodeup again.
    auto m = alpha->mark();
    net.link(1, false);
    CHECK(alpha->wait_for({"DOWN beta@h1 timeout"}, 15s, m));
    m = alpha->mark();
    net.link(1, true);
    CHECK(alpha->wait_for({"UP beta@h1 cluster"}, 20s, m));

    // A clean leave (goodbye), and a silent death.
    m = alpha->mark();
    g2->kill(SIGTERM);
    CHECK(alpha->wait_for({"DOWN gamma2@h2 shutdown"}, 10s, m));
    g1->kill(SIGKILL);
    CHECK(alpha->wait_for({"DOWN gamma1@h2"}, 15s, m));
    CHECK_FALSE(alpha->has({"DOWN delta"}));
}

TEST_CASE("netns: bad HMAC ignored, spoofed leaving ignored, impersonator refused") {
    if (!can_run()) return;
    lan net(4);
    temp_dir d0, d1, d3;
    auto alice = start_node(net, 0, "alice@h0", d0);
    auto bob = start_node(net, 1, "bob@h1", d1);
    INFO(bob->dump());
    REQUIRE(bob->wait_for({"UP alice@h0 cluster"}, 20s));
    const std::vector<std::string> forge{"--target", "alice@h0", "--cookie", cookie, "--bcast", "10.77.0.255"};
    auto forger = [&](const std::string& mode) {
        std::vector<std::string> a{"--forge", mode};
        a.insert(a.end(), forge.begin(), forge.end());
        auto p = std::make_unique<proc>(net.hosts[2], a);
        REQUIRE(p->wait_for({"CAPTURED"}, 20s));
        return p;
    };
    {
        auto f = forger("bad-hmac");
        CHECK(bob->wait_for({"STATS bad_hmac=1"}, 10s));
    }
    CHECK_FALSE(bob->has({"forger@evil"}));
    {
        auto f = forger("leave");
        CHECK(bob->wait_for({"spoofed_leaves=1"}, 10s));
    }
    CHECK_FALSE(bob->has({"DOWN alice"}));
    CHECK_FALSE(bob->has({"SEEN alice@h0 cluster 0"}));

    // The impersonator on h2 captures alice's beacon; alice's cable is cut;
    // a fresh node carol (h3) hears only the replay, which points at h2: the
    // CURVE handshake with alice's key fails there, carol never gets a node
    // "alice@h0". When alice is back, carol connects to the real one.
    auto imp = forger("replay");
    net.link(0, false);
    auto carol = start_node(net, 3, "carol@h3", d3);
    INFO(carol->dump());
    imp->write_line("go");
    CHECK(carol->wait_for({"connect_failures=1"}, 20s));
    CHECK_FALSE(carol->has({"UP alice"}));
    net.link(0, true);
    bool up = carol->wait_for({"UP alice@h0 cluster tcp://" + net.ip(0)}, 20s);
    INFO("carol:\n" << carol->dump() << "alice:\n" << alice->dump());
    CHECK(up);
}
