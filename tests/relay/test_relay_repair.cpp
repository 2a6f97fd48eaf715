// A dialler's link through a session port pair that the relay closes while
// the link is still wanted (relay_port_closed to the dialler's agent: the
// node it dials left the relay, the dialler was away from Pd for
// session_port_idle, or the node never reached Pa: a firewall) moves to a
// new pair, or to the forwarders, by itself: the application never calls
// connect again. Every node is an OS process (kith_relay_node). The first
// test runs on loopback; the others in a network namespace of their own
// ("rops<pid>x<n>", removed afterwards) whose nftables drops what a firewall
// would, and need root and nftables (without them they say so and skip).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <string>

#include "../transport/tmpdir.hpp"
#include "kith_catch.hpp"
#include "netns_proc.hpp"
#include "relay_proc.hpp"

using netns_test::sh;

namespace {

// A namespace with loopback only, where the relay, Alice and Bob all run.
struct own_ns {
    std::string name;
    temp_dir files;
    own_ns() {
        netns_test::remove_stale("rops");
        std::random_device rd;
        name = "rops" + std::to_string(::getpid()) + "x" + std::to_string(rd() % 10000);
        if (!sh("ip netns add " + name) || !sh("ip -n " + name + " link set lo up"))
            throw std::runtime_error("network namespace setup failed: ip netns add " + name);
    }
    ~own_ns() { sh("ip netns del " + name); }
    own_ns(const own_ns&) = delete;
    own_ns& operator=(const own_ns&) = delete;
    // Loads nftables rules (an "inet rops" table) into the namespace.
    void nft(const std::string& rules) {
        const auto f = files.path / "rules.nft";
        std::ofstream(f) << rules;
        REQUIRE(sh("ip netns exec " + name + " nft -f " + f.string()));
    }
};

// A relay, Alice registered with kvs, Bob dialling her through the relay
// with a grant she issued; `ns` "" runs them here.
struct relay_trio {
    temp_dir dr, da, db;
    std::string ns, grant;
    std::vector<std::string> relay_args, alice_args;
    std::unique_ptr<node_proc> relay, alice, bob;
    relay_trio(std::string ns_, std::vector<std::string> relay_extra) : ns(std::move(ns_)) {
        grant = (db.path / "bob.grant").string();
        relay_args = node_args("relay@vps", dr.path, "relay-cookie-0123456789", "tcp://127.0.0.1:0");
        relay_args.insert(relay_args.end(), {"--relay-data", "127.0.0.1:0"});
        relay_args.insert(relay_args.end(), relay_extra.begin(), relay_extra.end());
        relay = std::make_unique<node_proc>(ns, relay_args);
        alice_args = visit(node_args("alice@home", da.path, "alice-cookie-0123456789", "tcp://127.0.0.1:0"));
        alice_args.insert(alice_args.end(), {"--kvs", "--register"});
        alice = std::make_unique<node_proc>(ns, alice_args);
        bob = std::make_unique<node_proc>(
            ns, visit(node_args("bob@home", db.path, "bob-cookie-0123456789", "tcp://127.0.0.1:0")));
        REQUIRE(alice->ask("grant bob " + grant + " 100/s,burst=100", "GRANTED") == "GRANTED bob");
    }
    std::vector<std::string> visit(std::vector<std::string> a) {
        a.insert(a.end(), {"--relay", "relay@vps", "--relay-ep", relay->endpoint, "--relay-key", relay->key});
        return a;
    }
    // The relay's counters line, once it contains `want` (within 15 s).
    bool counters_show(const std::string& want) {
        for (auto until = std::chrono::steady_clock::now() + 15s; std::chrono::steady_clock::now() < until;) {
            if (relay->ask("counters", "COUNTERS").find(want) != std::string::npos) return true;
            relay->p->wait_for({"never printed"}, 100ms);
        }
        return false;
    }
    // Bob sees Alice's node go down (from `mark` on) and come back up, and
    // his calls answer again, without his doing anything.
    void bob_sees_her_come_back(std::size_t mark) {
        REQUIRE(bob->p->wait_for({"DOWN alice@home"}, 15s, mark));
        bool back = bob->p->wait_for({"UP alice@home"}, 20s, bob->p->mark());
        INFO("bob:\n" << bob->p->dump() << "alice:\n" << alice->p->dump());
        CHECK(back);
        CHECK(call_until_ok().find("fine") != std::string::npos);
    }
    // Bob's call to Alice's kvs, until it answers (within 20 s).
    std::string call_until_ok() {
        std::string r;
        for (auto until = std::chrono::steady_clock::now() + 20s; std::chrono::steady_clock::now() < until;) {
            r = bob->ask("call alice@home kvs lookup weather", "CALL");
            if (r.rfind("CALL ok", 0) == 0) break;
            bob->p->wait_for({"never printed"}, 100ms);
        }
        return r;
    }
};

// The trio in a namespace of its own whose firewall the test sets: session
// ports 4400-4409 (the first pair: Pd 4400, Pa 4401) and `extra` relay
// options. Made only where can_run() (root and nftables).
struct firewalled_trio : own_ns, relay_trio {
    static bool can_run() { return netns_test::can_run({"nft --version"}); }
    explicit firewalled_trio(std::vector<std::string> extra) : relay_trio(own_ns::name, with_ports(std::move(extra))) {}
    // Drops at the namespace's input what the nft `rules` match ("  tcp dport 4400 drop\n").
    void drop(const std::string& rules) {
        nft("table inet rops {\n chain guard {\n  type filter hook input priority 0;\n" + rules + " }\n}\n");
    }

private:
    static std::vector<std::string> with_ports(std::vector<std::string> extra) {
        extra.insert(extra.begin(), {"--relay-ports", "4400-4409"});
        return extra;
    }
};

}  // namespace

TEST_CASE("relay repair: Alice's node restarts, and Bob's link through a session port comes back by itself",
          "[relay]") {
    relay_trio w("", {});
    REQUIRE(w.bob->ask("via " + w.grant, "VIA") == "VIA ok alice@home");
    REQUIRE(w.bob->ask("call alice@home kvs store weather fine", "CALL") == "CALL ok true");
    CHECK(w.counters_show("pairs=1 "));

    // Alice's process dies and starts again (same key, name and grant
    // table): her pair at the relay is gone with her registration ("gone").
    auto mb = w.bob->p->mark();
    w.alice.reset();
    w.alice = std::make_unique<node_proc>(w.ns, w.alice_args);
    // Bob does nothing: his relay client gets a new pair once she is registered.
    w.bob_sees_her_come_back(mb);
    // One pair, the new one: the old one is not kept or leaked.
    CHECK(w.counters_show("pairs=1 "));
    CHECK(w.counters_show("sessions=1 "));
}

TEST_CASE("relay repair: Bob's path to his session port is cut past session_port_idle, and he gets a new pair",
          "[relay]") {
    if (!firewalled_trio::can_run()) return;
    firewalled_trio w({"--relay-port-idle", "1500"});
    REQUIRE(w.bob->ask("via " + w.grant, "VIA") == "VIA ok alice@home");
    REQUIRE(w.bob->ask("call alice@home kvs store weather fine", "CALL") == "CALL ok true");
    // A firewall that drops everything to and from Pd, the link's packets too:
    // the link ends, Bob's redials of Pd go nowhere, the relay closes the pair
    // as idle, tells Bob's agent, and his client asks for a new pair (Bob's
    // control link to the relay is untouched).
    auto mb = w.bob->p->mark();
    w.drop("  tcp dport 4400 drop\n  tcp sport 4400 drop\n");
    w.bob_sees_her_come_back(mb);
    CHECK(w.counters_show("pairs=1 "));
}

TEST_CASE("relay repair: a firewall drops SYNs to Alice's session port, Bob falls back and the pair closes",
          "[relay]") {
    if (!firewalled_trio::can_run()) return;
    firewalled_trio w({"--relay-pair-timeout", "1500"});
    // Pa of the first pair (4401) is unreachable for new connections.
    w.drop("  tcp dport 4401 tcp flags & (syn | ack) == syn drop\n");
    auto via = w.bob->ask("via " + w.grant, "VIA", 20s);
    INFO("bob:\n" << w.bob->p->dump() << "alice:\n" << w.alice->p->dump());
    CHECK(via == "VIA ok alice@home");  // through the forwarders
    CHECK(w.bob->ask("call alice@home kvs store weather fine", "CALL") == "CALL ok true");
    // The pair Alice never reached is closed (pair_timeout); the session
    // runs through the forwarders.
    CHECK(w.counters_show("pairs=0 "));
    CHECK(w.counters_show("sessions=1 "));
    CHECK(w.call_until_ok().find("fine") != std::string::npos);
}
