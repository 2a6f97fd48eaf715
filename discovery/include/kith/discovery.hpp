// kith/discovery.hpp — zero-config LAN discovery (kith::discovery).
//
// A discovery object makes its node announce itself with a UDP beacon
// (docs/protocol.md, "Discovery beacon") and listen for the beacons of
// others. Nodes of the same cluster (same cookie: the beacon's HMAC checks)
// are connected automatically; liveness then comes from the authenticated
// connection (heartbeats, goodbye), never from beacons alone. Nodes of other
// clusters are listed as strangers, with their fingerprint and public
// services, and never trusted.
//
//   kith::node n({.name = "gandalf@pi1", .net = {.listen = "tcp://*:4370"}});
//   kith::discovery d(n);                  // announce, listen, auto-connect
//   n.subscribe_nodes([](const kith::node_event& e) { ... });
//   for (auto& s : d.seen()) ...           // cluster members and strangers
//
// Ownership: the discovery object must not outlive its node. Destroying it
// (or stop()) sends a "leaving" beacon and stops its thread; connections made
// through it stay up.
// Thread-safety: all methods may be called from any thread.
// Errors: the constructor throws setup_error for a node without network or an
// unknown interface; later network trouble (an interface going away) is
// survived and retried.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kith/error.hpp"
#include "kith/keys.hpp"
#include "kith/net.hpp"
#include "kith/node.hpp"

namespace kith {

struct discovery_options {
    // UDP port the beacons use (documented in docs/protocol.md).
    std::uint16_t port = 4371;
    std::chrono::milliseconds interval{1000};
    // Interface to use ("eth0"); empty = every broadcast-capable interface,
    // or $KITH_INTERFACE when set.
    std::string interface;
    // Where beacons go. Empty: the broadcast address of each interface.
    // Tests on loopback use "127.255.255.255"-style addresses.
    std::string broadcast_address;
    // Static peers for networks without broadcast: "host:port" (the peer
    // node's TCP port; its key is asked for by a unicast beacon query).
    std::vector<std::string> peers;
    // false: listen and query only, never announce (short-lived CLI
    // commands, hidden nodes).
    bool announce = true;
    // Connect to cluster members as their beacons arrive.
    bool auto_connect = true;
    // Beacons handled per second at most (a flood beyond is dropped and
    // counted), so CPU stays bounded.
    unsigned max_beacons_per_s = 500;
};

// A node discovered by its beacon.
struct seen_node {
    std::string name;                     // "gandalf@pi1"
    std::string endpoint;                 // "tcp://192.0.2.7:4370"
    public_key key;
    std::string fingerprint;
    trust_level trust = trust_level::stranger;  // cluster (HMAC checked) or stranger
    std::vector<std::string> services;    // cluster: all; stranger: its public ones
    bool connected = false;               // an authenticated connection is up
    std::chrono::steady_clock::time_point last_seen{};
    term to_term() const;
};

struct discovery_counters {
    std::uint64_t beacons_sent = 0, beacons_received = 0;
    std::uint64_t bad_hmac = 0;          // cluster beacons whose HMAC did not check
    std::uint64_t malformed = 0;         // not a kith beacon, or truncated
    std::uint64_t rate_limited = 0;      // dropped by the flood limit
    std::uint64_t key_conflicts = 0;     // a known name announced with another key
    std::uint64_t spoofed_leaves = 0;    // "leaving" for a node whose connection is alive
    std::uint64_t queries_answered = 0;
    std::uint64_t replayed = 0;          // authenticated beacons older than one already accepted
    std::uint64_t connect_failures = 0;  // auto-connects that failed (refused: e.g. an impersonator's endpoint)
};

class discovery {
public:
    // Starts announcing and listening. Throws setup_error (see above).
    explicit discovery(node& n, discovery_options o = {});
    ~discovery();
    discovery(const discovery&) = delete;
    discovery& operator=(const discovery&) = delete;

    // Sends a leaving beacon and stops. Idempotent.
    void stop();
    // Broadcasts a query: nodes already there answer at once.
    void query();
    // Everything heard of recently (cluster members and strangers).
    std::vector<seen_node> seen() const;
    // Finds a node by full ("gandalf@pi1") or short ("gandalf") name, asking
    // for beacons and waiting up to `timeout` for it to appear. errc::badarg
    // if a short name is ambiguous (detail lists the candidates); errc::timeout
    // if nothing by that name was heard (detail lists what was seen).
    result<seen_node> find(const std::string& name, std::chrono::nanoseconds timeout = std::chrono::seconds(1));
    discovery_counters stats() const;

private:
    struct impl;
    std::shared_ptr<impl> impl_;  // shared with in-flight connect callbacks (weakly)
};

}  // namespace kith
