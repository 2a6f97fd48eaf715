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
// Members connect automatically: the node whose name sorts first dials at
// once, the other after two intervals if no connection came (so a node that
// does not auto-connect, or knows us only as a static peer, still gets one).
// Node up/down events come from the node (node::subscribe_nodes,
// monitor_nodes), not from here.
//
// Threads: one thread per discovery object (UDP sockets, beacons every
// interval, interface re-enumeration every interval: an interface that comes
// back is queried at once, so Wi-Fi drops need no restart).
// Ownership: the discovery object must not outlive its node. Destroying it
// (or stop()) sends a "leaving" beacon and stops its thread; connections made
// through it stay up.
// Thread-safety: all methods may be called from any thread.
// Errors: the constructor throws setup_error for a node without network, an
// unknown interface, or a UDP port that cannot be bound; later network
// trouble (an interface going away, a send failing) is survived and retried.
// Hostile beacons are dropped and counted (stats()), never thrown.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
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
    // Where beacons go instead of the interfaces' broadcast addresses
    // (IPv4, numeric or a host name). Empty: the broadcast address of each
    // interface. Loopback has no broadcast interface: tests and benchmarks
    // on one machine use "127.255.255.255", which Linux delivers to every
    // socket sharing the port.
    std::string broadcast_address;
    // Static peers for networks without broadcast: "host:port" (the peer
    // node's TCP port). Each interval they get our announce and a query by
    // unicast to host:`port` above; the answer gives their key and endpoint.
    // (Only one node per peer host answers: unicast reaches one socket of a
    // shared port.) A node behind NAT sets net_options.advertise: a concrete
    // endpoint is announced as is; a wildcard or loopback one means "my
    // source address".
    std::vector<std::string> peers;
    // false: listen and query only, never announce (short-lived CLI
    // commands, hidden nodes).
    bool announce = true;
    // Connect to cluster members as their beacons arrive.
    bool auto_connect = true;
    // Flood limits (docs/protocol.md, "Discovery beacon"), all checked after
    // the cheap authentication (decoding, the HMAC, freshness and replay):
    // beacons whose HMAC checks get max_beacons_per_s per source address
    // (token bucket; a bounded table of sources); everything unauthenticated
    // (strangers' beacons and queries) shares one small global budget,
    // max_stranger_beacons_per_s, so a stranger's flood cannot crowd out
    // members. Beyond a budget, beacons are dropped and counted.
    unsigned max_beacons_per_s = 500;
    unsigned max_stranger_beacons_per_s = 100;
    // Unauthenticated unicast queries are answered at most max_answers_per_s
    // times per second in all and 1/s (burst 3) per source address, each
    // answer no bigger than its query; a broadcast query is answered by an
    // early broadcast announce (at most one per interval/4), never to its
    // (spoofable) source.
    unsigned max_answers_per_s = 20;
    // A cluster beacon whose timestamp is further than this from our clock is
    // dropped (counted `stale`, a hint says which node's clock is off).
    std::chrono::milliseconds max_clock_skew{30000};
    // Hints for the person running the node, one line each, on the
    // discovery thread or a kith thread (keep it short), each said once:
    //   "name clash: ..."   another node announces our own name with another key
    //   "stranger ..."      a node with another cookie (its cluster id and ours)
    //   "refused ..."       a cluster member refused our connection (why)
    //   "clock ..."         a member's beacons are dropped: its clock is off by more than max_clock_skew
    // Each is one record (kith/log.hpp, source "discovery", level info).
    // Unset: the process default sink (stderr).
    log_sink log;
};

// A node discovered by its beacon.
struct seen_node {
    std::string name;                     // "gandalf@pi1"
    std::string endpoint;                 // "tcp://192.0.2.7:4370"
    // Members only: its member port on the same host, "tcp://192.0.2.7:40123"
    // (from the MAC-covered part of its beacon; docs/security.md, "The member
    // port"); auto-connect dials it. "" for a stranger, or a node that
    // announces none (an older kith): then `endpoint` is dialled.
    std::string member_endpoint;
    public_key key;
    std::string fingerprint;
    trust_level trust = trust_level::stranger;  // cluster (HMAC checked) or stranger
    std::vector<std::string> services;    // cluster: all; stranger: its public ones
    bool connected = false;               // an authenticated connection is up (node::info)
    // The public id of the cluster its beacon names (8 hex digits, the same
    // for every node of one cookie, derived from the stretched cookie so it
    // reveals nothing cheaper than an Argon2id per guess); "" if none.
    std::string cluster_id;
    std::chrono::steady_clock::time_point last_seen{};
    // {"name", "endpoint", "fingerprint", "trust", "services", "connected"}
    term to_term() const;
};

struct discovery_counters {
    std::uint64_t beacons_sent = 0, beacons_received = 0;
    std::uint64_t bad_hmac = 0;          // cluster beacons whose HMAC did not check
    std::uint64_t malformed = 0;         // not a kith beacon, or truncated
    std::uint64_t rate_limited = 0;      // dropped by a flood limit (per source, or the strangers' budget)
    std::uint64_t key_conflicts = 0;     // a known name announced with another key
    std::uint64_t spoofed_leaves = 0;    // "leaving" for a node whose connection is alive (ignored; also
                                         // counts a genuine one sent while its node keeps running)
    std::uint64_t queries_answered = 0;
    std::uint64_t replayed = 0;          // beacons not newer than the sender's newest accepted one (those naming a
                                         // sender we took one from are dropped before the HMAC, as are copies)
    std::uint64_t duplicates = 0;        // exact copies of a member's newest beacon (a second path, or a replay):
                                         // only a sign of life; nothing in them, nor their source, is used
    std::uint64_t stale = 0;             // authenticated beacons outside the clock skew
    std::uint64_t answers_limited = 0;   // unauthenticated queries not answered (over their budget)
    std::uint64_t connect_failures = 0;  // auto-connects that failed (refused: e.g. an impersonator's endpoint)
    std::uint64_t dropped_by_kernel = 0; // datagrams the kernel dropped before discovery read them: not starting
                                         // like a beacon (the socket's filter), or its buffer full (Linux)
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
    // Everything heard of recently (cluster members and strangers): a node
    // not heard for max(3 intervals, 3 s) is forgotten unless connected.
    // Sorted by name.
    std::vector<seen_node> seen() const;
    // Finds a node by full ("gandalf@pi1") or short ("gandalf") name, asking
    // for beacons and waiting up to `timeout` for it to appear. errc::badarg
    // if a short name is ambiguous (detail lists the candidates); errc::timeout
    // if nothing by that name was heard (detail lists what was seen).
    // Blocks the calling thread at most `timeout` (a short name, once found,
    // waits up to find_grace more within it, so that an ambiguity is
    // noticed: answers to one query arrive within milliseconds).
    result<seen_node> find(const std::string& name, std::chrono::nanoseconds timeout = std::chrono::seconds(1));
    static constexpr std::chrono::milliseconds find_grace{200};
    discovery_counters stats() const;

private:
    struct impl;
    std::shared_ptr<impl> impl_;  // shared with in-flight connect callbacks (weakly)
};

}  // namespace kith
