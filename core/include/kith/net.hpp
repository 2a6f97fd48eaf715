// kith/net.hpp — the value types of kith's distribution layer: network
// options, node events, multicall results. The operations themselves are
// methods of kith::node (kith/node.hpp).
//
// Thread-safety: plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kith/error.hpp"
#include "kith/keys.hpp"
#include "kith/log.hpp"
#include "kith/term.hpp"

namespace kith {

// Networking of a node. A node whose `listen` is empty is purely local: no
// sockets, no keys; remote operations fail with errc::nodedown.
struct net_options {
    // ZeroMQ endpoint the node's ROUTER binds: "tcp://*:4370", or
    // "tcp://127.0.0.1:0" for any free port on loopback. Empty: no network.
    std::string listen;
    // What other nodes should dial, when it differs from the bound endpoint
    // (a node behind NAT). Empty: the bound endpoint.
    std::string advertise;
    // The member port (docs/security.md, "The member port"): a second
    // listening socket that admits only this cluster's members, so that a
    // flood from grantees or strangers on `listen` does not slow members
    // down. Empty: listen's address with any free port; "tcp://*:4380" a
    // fixed one (open it in the firewall for members on other machines);
    // "off": none. Members learn it from beacons and the local registry;
    // with `advertise` set it is advertised only if set here too (a port
    // forward must exist for it).
    std::string member_listen;
    // Key directory (node.key, node.pub, cookie). Empty: $KITH_HOME or ~/.kith.
    std::filesystem::path key_dir;
    // Cluster cookie. Unset: the cookie file in key_dir (random, created on
    // first start), so one user's nodes on one machine cluster by default.
    std::optional<std::string> cookie;
    // A silent peer is declared down after heartbeat_timeout (default 2.5 s,
    // within the 3 s bound); heartbeats go out every heartbeat_interval.
    std::chrono::milliseconds heartbeat_interval{500};
    std::chrono::milliseconds heartbeat_timeout{2500};
    // Per-peer outgoing queue bound; beyond it sends are dropped and counted
    // and calls fail with errc::overloaded.
    std::size_t max_queue_bytes = 8u << 20;
    // A hidden node (e.g. a short-lived CLI) is not listed by others' nodes().
    bool hidden = false;
    // This node's diagnostics (kith/log.hpp): refused connections, malformed
    // or refused envelopes, a damaged grant table, a callback that threw;
    // never secrets. Called on kith threads; keep it short. At most 20
    // records a second of peer-caused diagnostics reach it (the rest are
    // counted in net_counters only). Unset: the process default sink
    // (stderr, "kith dist [name@host]: warning: <text>").
    log_sink log;
    // Bytes a second a grantee or stranger may make this node read (per
    // key, with this burst), charged before a frame is decoded; beyond, its
    // frames are dropped unread (net_counters::rate_drops) and its calls
    // time out. Bounds decode bombs (docs/security.md, "Bounds"). All
    // non-members together get 8x this. Cluster members are never charged.
    // 0: unlimited.
    std::uint64_t guest_bytes_per_s = 1u << 20;
    std::uint64_t guest_burst_bytes = 1u << 20;
    // Pins the node's network threads to this CPU (0-based): its two I/O
    // threads and ZeroMQ's two I/O threads, which every node of the process
    // shares (the first node started with a value pins those; a later,
    // different value leaves them and logs a warning). A frame passes between
    // these threads one after the other (kith's I/O thread, ZeroMQ's, the
    // wire, and back), so on one CPU each hand-off is a switch on that CPU,
    // while spread over several each one is a cross-CPU wake-up that costs
    // more CPU than the work it hands on: on a 2-core VM, 32 concurrent calls
    // took 3.5 us of CPU per call pinned against 3.5-7.5 us unpinned,
    // depending on where the scheduler put the threads (docs/performance.md).
    // Workers, and the threads that call into the node, are not pinned.
    // A fixed CPU is right only where that CPU is not busy with other work:
    // the network threads get no more than it. A CPU this process may not
    // run on: the node starts, unpinned, with a warning.
    // network_cpu_off (-1): no pinning, the scheduler places them.
    // network_cpu_auto (the default): the process keeps these threads
    // together on the allowed CPU least busy with other work, looked at
    // about once a second by a thread of its own (/proc/stat, and how long
    // the threads waited for their CPU), and moves them when their CPU gets
    // busier with other work than another by a quarter of a CPU, or when
    // they wait for it long each time they run (a CPU-bound thread pinned
    // there), once the move was wanted 2-4 looks in a row (so that two busy
    // kith processes on one machine settle, apart when a CPU is free,
    // instead of moving in step for good); when they wait for each other
    // instead (a one-way stream, faster on two CPUs) it unpins them for 2 s,
    // doubling while the stream goes on, up to 30 s; a debug line in the log says where and why (a warning,
    // once, if pinning fails: the threads are then left to the scheduler).
    // Service functions and actor turns often run on these threads, so a
    // thread one of them starts inherits that one CPU (set its affinity, or
    // start it elsewhere); a process it forks gets the process's CPUs back.
    // The placer follows a changed process mask (taskset -a -p, a cgroup's
    // cpuset) at its next look. Nothing is pinned
    // with fewer than two allowed CPUs, or without /proc. The default since
    // it measured better than network_cpu_off for every figure of the
    // benchmark, streams included, with and without a CPU-bound thread on
    // one CPU (docs/performance.md, "Placed by default").
    static constexpr int network_cpu_off = -1;
    static constexpr int network_cpu_auto = -2;
    int network_cpu = network_cpu_auto;
    // Connections a second each listening port accepts from one source
    // address (an IPv4 address, an IPv6 /64), with this burst. Each costs
    // the node a TCP accept and a CURVE handshake before its key can be
    // refused, so a source over this (a peer reconnecting in a loop, a
    // flood of fresh keys or of raw TCP connections) has its new connections
    // dropped by the kernel, before they exist, for 2 s, doubling while it
    // goes on, up to 60 s; its open connections stay, and a warning names
    // it (net_counters::address_blocks). Raise it for many nodes behind one
    // NAT address that connect at once (docs/security.md, "Connections per
    // address"). 0: unlimited.
    double conns_per_address_per_s = 16;
    double conns_per_address_burst = 64;
    // Connections from this machine itself (127.0.0.0/8, ::1) are not
    // rationed unless this is set: local programs, the CLI, and a relay
    // client's forwarder (a connection per relayed session) come from there.
    bool ration_loopback = false;
};

// How much a connected node is trusted (see docs/security.md). The one enum
// for trust: kith's own authorization code uses it too.
//   cluster   a member: proved it holds this cluster's cookie (both ways)
//   granted   connected to us with a key from our grant table
//   stranger  any key, let in only because a service is public
//   server    a node outside the cluster that *we* dialled (with a grant we
//             hold, or as a visitor); it gets no right here
enum class trust_level : std::uint8_t { cluster, granted, stranger, server };
// "cluster", "granted", "stranger", "server".
std::string_view to_string(trust_level t) noexcept;

// What is known about a connected node: a snapshot taken when it came up
// (node::info, node_event::info); it does not change while the node stays up.
struct node_info {
    std::string name;          // "name@host"
    // The endpoint we dialled; for a node that dialled us, its address as
    // seen here with the port its handshake states ("tcp://192.0.2.7:4370";
    // "tcp://192.0.2.7" if it states none). The port is the peer's claim.
    std::string endpoint;
    // Short fingerprint of its public key (kith/keys.hpp): the server key for
    // a link we dialled; for an inbound member the node key it states (it
    // shares the cluster key); for a grantee or a stranger its client key.
    std::string fingerprint;
    trust_level trust = trust_level::cluster;
    // The services it exported when it connected (later additions are not
    // reflected here).
    std::vector<std::string> services;
    bool hidden = false;       // a hidden node (not in nodes(), no events)
    // As a term: {"name", "endpoint", "fingerprint", "trust", "services", "hidden"}.
    term to_term() const;
};

// A node up/down event. Delivered to callbacks (node::subscribe_nodes) and to
// actors / mailboxes (node::monitor_nodes) as the user message
//   ["nodeup", Name, InfoMap]   or   ["nodedown", Name, Reason]
// Reasons: "shutdown" (clean stop, goodbye), "timeout" (heartbeats stopped),
// "connection_closed", "revoked". For one node, nodeup comes before any
// message from it and nodedown after all of them.
struct node_event {
    enum class kind { up, down } what = kind::up;
    std::string node;
    node_info info;            // for up
    std::string reason;        // for down
    term to_term() const;
};

// Result of node::multicall: values by node, and the nodes that failed with
// their errors (Erlang's {Results, BadNodes}).
struct multicall_result {
    std::map<std::string, term> results;
    std::map<std::string, error> bad_nodes;
};

// Counters of the distribution layer (node::net_stats). Every field counts
// events (not bytes) since the node started, and only grows. A snapshot:
// each field is read on its own (relaxed atomics), so two fields may be a
// few events apart while traffic flows; exact once the node is quiet.
struct net_counters {
    // Envelopes (messages, calls, replies, links, ...) decoded from and
    // posted to authenticated peers.
    std::uint64_t envelopes_in = 0, envelopes_out = 0;
    // Transport frames (one frame carries one or more envelopes).
    std::uint64_t frames_in = 0, frames_out = 0;
    std::uint64_t decode_errors = 0;     // malformed or over-budget frames from authenticated peers, dropped
    std::uint64_t protocol_errors = 0;   // well-formed but invalid frames or envelopes (forged pids, ...)
    // Operations refused by this node's authorization (an envelope from a
    // peer, or code acting for a grantee or a stranger): unauthorized,
    // revoked, rate_limited, over a per-principal budget, ...
    std::uint64_t refused = 0;
    // ... of those, by reason (these need not add up to `refused`):
    std::uint64_t refused_unauthorized = 0, refused_revoked = 0, refused_rate_limited = 0;
    // Refused overloaded: a per-principal cap (docs/security.md, "Bounds").
    std::uint64_t refused_overloaded = 0;
    // Refusals not answered: a non-member's envelopes past its rate, beyond
    // 1000 answered a second per session (burst 1000; counted in
    // refused_rate_limited too). The sender's calls time out instead.
    std::uint64_t refused_unanswered = 0;
    // Sends dropped (and calls failed with errc::overloaded) because a
    // peer's outgoing queue was over net_options::max_queue_bytes.
    std::uint64_t overload_drops = 0;
    // Connections refused at their handshake, both ways: keys this node did
    // not admit, and nodes that refused us.
    std::uint64_t refused_connections = 0;
    // Frames from grantees and strangers dropped unread, over the bytes a
    // second a non-member may make this node read, or over the queue of the
    // thread that decodes them (8x guest_burst_bytes; docs/security.md, "Bounds").
    std::uint64_t rate_drops = 0;
    // Times this node held a frame back from a grantee, a stranger or a
    // node it holds a grant of, because the peer reads a non-member's frames
    // within a budget (guest_bytes_per_s, each frame costing 512 bytes more)
    // and would drop the excess unread: the sender paces to it instead, so
    // heavy use of a grant is slower, never lost (docs/security.md, "Bounds").
    std::uint64_t paced_waits = 0;
    // Times a source address had its new connections dropped for a while
    // (2 s, doubling while it goes on, up to 60 s), because it opened them
    // to one of this node's ports faster than conns_per_address_per_s.
    std::uint64_t address_blocks = 0;
    // Links to cluster members moved from the public port they were dialled
    // at to the member port the member stated (docs/protocol.md, "Moving to
    // the member port"), counted at both ends; and moves this node tried
    // that did not work (the member port not reachable where the public
    // port is: the link stayed, nothing was lost).
    std::uint64_t member_moves = 0;
    std::uint64_t member_moves_failed = 0;
};

}  // namespace kith
