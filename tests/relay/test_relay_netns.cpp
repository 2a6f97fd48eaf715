// The relay across real NAT (issue 16): network namespaces made and removed
// by the test (names "k16b<pid>x<n>..."; traffic never leaves them):
//   - the "internet": a bridge with the relay (10.161.0.1), Eve (10.161.0.4)
//     and the WAN side of two home routers (10.161.0.2, 10.161.0.3);
//   - Alice's home (192.168.1.0/24) and Bob's (192.168.2.0/24), each behind
//     its own router doing nftables masquerade, which forwards nothing
//     inbound that its LAN did not open.
// Every node is an OS process (kith_relay_node) under `ip netns exec`. Bob
// cannot dial Alice, neither at her address nor at her router; through the
// relay he calls her kvs with his grant, and the grant's scope, rate limit
// and revocation act exactly as on a direct link. Eve cannot register
// Alice's name. The relay is killed (-9) and started again: Alice and Bob
// see each other go down and come back without anyone doing anything.
// Needs root, iproute2 and nftables; without them the test says so and does
// nothing.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "kith_catch.hpp"
#include "netns_proc.hpp"
#include "relay_proc.hpp"

#ifndef KITH_RELAY_NODE
#error "KITH_RELAY_NODE must name the kith_relay_node program"
#endif

using namespace std::chrono_literals;
using netns_test::sh;

namespace {

// The namespaces: <id>i (the internet's bridge), <id>r (relay), <id>e (Eve),
// <id>ra / <id>rb (routers), <id>a / <id>b (Alice's and Bob's hosts).
struct homes {
    std::string id;
    std::vector<std::string> made;
    temp_dir files;
    homes() {
        netns_test::remove_stale("k16b");
        std::random_device rd;
        id = "k16b" + std::to_string(::getpid()) + "x" + std::to_string(rd() % 1000);
        ns("i");
        run("ip -n " + n("i") + " link add br0 type bridge && ip -n " + n("i") + " link set br0 up", "bridge");
        wan("r", "10.161.0.1");
        wan("e", "10.161.0.4");
        wan("ra", "10.161.0.2");
        wan("rb", "10.161.0.3");
        home("a", "ra", "192.168.1");
        home("b", "rb", "192.168.2");
    }
    ~homes() { cleanup(); }
    homes(const homes&) = delete;
    homes& operator=(const homes&) = delete;

    std::string n(const std::string& role) const { return id + role; }

    void cleanup() {
        for (auto it = made.rbegin(); it != made.rend(); ++it) sh("ip netns del " + *it);
        made.clear();
    }
    void run(const std::string& cmd, const char* what) {
        if (!sh(cmd)) {
            cleanup();
            throw std::runtime_error(std::string("network namespace setup failed: ") + what + ": " + cmd);
        }
    }
    void ns(const std::string& role) {
        run("ip netns add " + n(role), "netns add");
        made.push_back(n(role));
        run("ip -n " + n(role) + " link set lo up", "lo up");
    }
    // A host on the internet bridge: interface "wan" at `ip`/24.
    void wan(const std::string& role, const std::string& ip) {
        ns(role);
        const std::string v = "v" + role;  // the bridge side, inside <id>i
        run("ip -n " + n("i") + " link add " + v + " type veth peer name wan netns " + n(role), "veth");
        run("ip -n " + n("i") + " link set " + v + " master br0 && ip -n " + n("i") + " link set " + v + " up",
            "veth up");
        run("ip -n " + n(role) + " addr add " + ip + "/24 dev wan && ip -n " + n(role) + " link set wan up", "addr");
    }
    // A home: host `role` at <net>.2 behind router `router` (<net>.1), which
    // masquerades what goes out on wan and forwards inbound only what
    // belongs to a connection its LAN opened.
    void home(const std::string& role, const std::string& router, const std::string& net) {
        ns(role);
        const std::string r = n(router), h = n(role);
        run("ip -n " + r + " link add lan type veth peer name eth0 netns " + h, "home veth");
        run("ip -n " + r + " addr add " + net + ".1/24 dev lan && ip -n " + r + " link set lan up", "router lan");
        run("ip -n " + h + " addr add " + net + ".2/24 dev eth0 && ip -n " + h + " link set eth0 up", "host addr");
        run("ip -n " + h + " route add default via " + net + ".1", "default route");
        run("ip netns exec " + r + " sysctl -qw net.ipv4.ip_forward=1", "ip_forward");
        const auto rules = files.path / (router + ".nft");
        std::ofstream(rules) << "table ip nat {\n"
                                "  chain masq { type nat hook postrouting priority 100; oifname \"wan\" masquerade; }\n"
                                "}\n"
                                "table ip filter {\n"
                                "  chain guard { type filter hook forward priority 0; policy drop;\n"
                                "    ct state established,related accept\n"
                                "    iifname \"lan\" accept\n"
                                "  }\n"
                                "}\n";
        run("ip netns exec " + r + " nft -f " + rules.string(), "nftables");
    }
};

double ms_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_CASE("relay netns: Alice and Bob behind their own NAT, a grant through the relay, Eve, the relay killed and back") {
    if (!netns_test::can_run({"nft --version"})) return;
    homes net;
    temp_dir dr, da, db, de;
    const std::string grant = (net.files.path / "bob.grant").string();
    auto relay_args = node_args("relay@vps", dr.path, "relay-cookie-0123456789", "tcp://10.161.0.1:4370");
    relay_args.insert(relay_args.end(), {"--relay-data", "10.161.0.1:4380"});
    auto relay = std::make_unique<node_proc>(net.n("r"), relay_args);
    auto visit = [&](std::vector<std::string> a) {
        a.insert(a.end(), {"--relay", "relay@vps", "--relay-ep", "tcp://10.161.0.1:4370", "--relay-key", relay->key});
        return a;
    };
    auto a_args = visit(node_args("alice@home", da.path, "alice-cookie-0123456789", "tcp://*:4370"));
    a_args.insert(a_args.end(), {"--kvs", "--register"});
    node_proc alice(net.n("a"), a_args);
    node_proc bob(net.n("b"), visit(node_args("bob@home", db.path, "bob-cookie-0123456789", "tcp://*:4370")));
    CHECK(alice.ask("grant bob " + grant + " 5/s,burst=10", "GRANTED") == "GRANTED bob");

    // No inbound path to Alice: not at her own address (no route), not at
    // her router's (nothing forwarded in).
    CHECK(bob.ask("direct " + grant, "DIRECT").rfind("DIRECT err", 0) == 0);
    CHECK(bob.ask("direct " + grant + " tcp://10.161.0.2:4370", "DIRECT").rfind("DIRECT err", 0) == 0);

    // Through the relay, with the grant: scope, rate and all end to end.
    CHECK(bob.ask("directory", "DIRECTORY").find("alice@home") != std::string::npos);
    CHECK(bob.ask("via " + grant, "VIA") == "VIA ok alice@home");
    CHECK(alice.p->wait_for({"UP bob@home granted"}, 10s));
    CHECK(bob.ask("call alice@home kvs store weather fine", "CALL") == "CALL ok true");
    CHECK(bob.ask("call alice@home kvs lookup weather", "CALL").find("fine") != std::string::npos);
    CHECK(bob.ask("call alice@home kvs keys", "CALL") == "CALL err unauthorized");  // outside the grant
    CHECK(bob.ask("call alice@home echo echo hi", "CALL") == "CALL err unauthorized");
    // Over the grant's rate (5/s, burst 10; four calls were made): some go
    // through, the rest are refused as rate_limited, nothing else goes wrong.
    auto burst = bob.ask("burst 12 alice@home kvs lookup weather", "BURST");
    INFO(burst);
    CHECK(burst.find("rate_limited=") != std::string::npos);
    CHECK(burst.find(" ok=") != std::string::npos);
    for (auto& w : {"nodedown", "timeout", "unauthorized"}) CHECK(burst.find(w) == std::string::npos);

    // Eve, on the internet with her own key, claims Alice's name: the relay's
    // node refuses her link while Alice is connected under that name
    // ("already connected under other credentials"); if it let her in, the
    // relay would refuse to register the name (tested on loopback in
    // test_relay: "a name stays bound to the key that registered it").
    {
        auto e_args = visit(node_args("alice@home", de.path, "eve-cookie-0123456789", "tcp://*:4370"));
        netns_test::netns_proc eve(net.n("e"), KITH_RELAY_NODE, e_args);
        auto deadline = std::chrono::steady_clock::now() + 20s;
        while (!eve.has({"READY"}) && !eve.has({"FAILED"}) && std::chrono::steady_clock::now() < deadline)
            eve.wait_for({"READY"}, 50ms);
        INFO(eve.dump());
        REQUIRE((eve.has({"READY"}) || eve.has({"FAILED", "already connected under other credentials"})));
        if (eve.has({"READY"})) {
            auto m = eve.mark();
            eve.write_line("register");
            REQUIRE(eve.wait_for({"REGISTER"}, 15s, m));
            CHECK((eve.has({"REGISTER err", "unauthorized"}, m) || eve.has({"REGISTER err", "another key"}, m)));
            INFO(eve.dump());
            CHECK_FALSE(eve.has({"REGISTER ok"}));
        }
        // Alice's registration is untouched: still hers, with her key.
        CHECK(bob.ask("directory", "DIRECTORY").find(alice.key) != std::string::npos);
    }

    // The relay is killed and started again (same key, same addresses).
    auto mb = bob.p->mark(), ma = alice.p->mark();
    auto killed = std::chrono::steady_clock::now();
    relay->p->kill(SIGKILL);
    CHECK(bob.p->wait_for({"DOWN alice@home"}, 10s, mb));
    const double down_ms = ms_since(killed);
    CHECK(alice.p->wait_for({"DOWN bob@home"}, 10s, ma));
    mb = bob.p->mark();
    auto restarted = std::chrono::steady_clock::now();
    relay = std::make_unique<node_proc>(net.n("r"), relay_args);
    bool back = bob.p->wait_for({"UP alice@home"}, 30s, mb);
    INFO("alice:\n" << alice.p->dump() << "bob:\n" << bob.p->dump());
    CHECK(back);
    const double up_ms = ms_since(restarted);
    std::printf("relay netns: nodedown %.0f ms after kill -9 of the relay; nodeup %.0f ms after its restart\n",
                down_ms, up_ms);
    std::fflush(stdout);
    // (The burst above may have left the grant's bucket empty: a call
    // refused as rate_limited is asked again, within a deadline.)
    std::string again;
    for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
        again = bob.ask("call alice@home kvs lookup weather", "CALL");
        if (again != "CALL err rate_limited") break;
        bob.p->wait_for({"never printed"}, 100ms);
    }
    CHECK(again.find("fine") != std::string::npos);

    // Alice revokes Bob's grant mid-session: his link ends ("revoked"), his
    // calls and a new connection through the relay are refused.
    mb = bob.p->mark();
    CHECK(alice.ask("revoke bob", "REVOKED") == "REVOKED bob");
    CHECK(bob.p->wait_for({"DOWN alice@home revoked"}, 10s, mb));
    CHECK(bob.ask("call alice@home kvs lookup weather", "CALL") == "CALL err revoked");
    CHECK(bob.ask("via " + grant, "VIA").rfind("VIA err revoked", 0) == 0);
    INFO("alice:\n" << alice.p->dump() << "bob:\n" << bob.p->dump());
}
