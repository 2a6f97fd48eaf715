// context.hpp — the process's one ZeroMQ context, shared by every node in
// the process, and the ZAP handler thread that serves all of them. Private
// to kith::core.
//
// ZeroMQ asks for one context per process; with one, the nodes of a process
// share its two ZeroMQ I/O threads (member_io_affinity, public_io_affinity
// below; a process with many nodes does not run two per node). ZAP is per context (one socket bound at
// inproc://zeromq.zap.01), so the handler is per process too: each node
// registers a route, gets a ZAP domain of its own ("kith/<n>") for its
// ROUTER, and the handler thread passes each request to the route of its
// domain. A request for a domain never given out is refused (400): still
// fail closed. One for a removed route (a node stopping, whose ROUTER may
// still finish a handshake it accepted) goes unanswered: a refusal would
// tell the peer its key is wrong, and it would stop redialling.
// The handler's socket is a ROUTER (not REP), so a request may also go
// unanswered (a paused route: the node's debug_freeze test hook), as it
// would in a hung process; libzmq then fails that handshake by its timeout.
//
// Who waits for whom (issue 15): the ZAP thread decides on its own only what
// needs no authorizer (the cluster key, malformed requests, no authorizer
// set). A request that needs a node's authorizer (which may re-read a grant
// table from disk, or block on a slow filesystem) goes to that route's own
// worker thread, started on first use; the answer comes back to the ZAP
// thread, which sends it. So a slow authorizer holds up the handshakes of
// its own node only, never those of another node in the process, and never
// a member's (the cluster key is decided on the ZAP thread). A route's
// worker queues at most max_route_backlog requests; beyond that a request
// is refused at once ("authorizer busy"): a flood of unknown keys against a
// node whose authorizer is slow costs bounded memory.
//
// Thread-safety: all members are thread-safe. A route's handler decides on
// the ZAP thread (without authorizer) or on the route's worker; its report
// function is called on either of them (it must be thread-safe), and
// neither is used after remove_route returns.
#pragma once

#include <zmq.hpp>

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "transport/zap.hpp"

namespace kith::detail {

// File descriptors, the budget a raw TCP flood attacks (issue 13). Every
// connection costs the node one descriptor from accept() until libzmq gives
// up on its handshake, before ZAP or kith can tell a member from a stranger.
// What bounds it:
//   - the handshake timeout: the ROUTER's ZMQ_HANDSHAKE_IVL is the node's
//     heartbeat_timeout (2.5 s by default); a connection that has not
//     finished its ZMTP greeting and CURVE handshake by then is closed. An
//     attacker holds at most (connections opened per second) x 2.5 s;
//   - the open-file limit: at node start the soft RLIMIT_NOFILE is raised to
//     the hard one (at most 1,048,576), once per process; most systems start
//     processes at 1,024 soft with a hard limit far above it. A node needs
//     about 16 descriptors of its own, 3 per outbound link (TCP and two
//     ZeroMQ mailboxes), 1 per inbound connection (up to max_inbound_links,
//     4,096) and 1 per connection still in its handshake. A hard limit below
//     about 8,192 is logged as a warning at start;
//   - the transport counts connections in their handshake
//     (transport_stats::handshakes_pending) and failed or timed-out ones
//     (handshake_failures), from the ROUTER's socket monitor.
// What an attacker can still do: from many addresses, or faster than the
// budget / 2.5 s (about 3,000 connections a second against a 8,192 limit),
// keep the limit exhausted; libzmq then retries accept() in a loop (a busy
// I/O thread) and members are let in only as descriptors free up. libzmq
// has no per-address cap on unfinished handshakes; a firewall rule
// (connlimit, hashlimit) in front of the port is the remedy there.
struct fd_limit {
    std::uint64_t before = 0, now = 0, hard = 0;
    bool raise_failed = false;
};
// Raises the soft RLIMIT_NOFILE to the hard limit (capped at 1,048,576);
// process-wide, idempotent. Returns the limits before and after.
fd_limit raise_open_file_limit() noexcept;
inline constexpr std::uint64_t fd_limit_warn_below = 8192;

// The context's two ZeroMQ I/O threads (ZMQ_AFFINITY bits): the member
// thread runs every node's member port and its outbound links with cluster
// credentials; the public thread every public port and the links dialled
// with a grant or as a visitor. CURVE decryption and the kernel's recv for
// a connection run on its socket's I/O thread, so a flood of frames on a
// public port (decrypted there before kith can drop them) leaves the member
// thread free. Nodes of one process share both threads.
// The public port's I/O thread runs at this nice value (Linux: per thread),
// below the member thread, kith's I/O loop and the workers: on a busy
// machine a flood's decryption waits, members' frames do not.
inline constexpr int public_io_nice = 10;
inline constexpr std::uint64_t member_io_affinity = 1;
inline constexpr std::uint64_t public_io_affinity = 2;

class shared_context {
public:
    // The process's context, created on first use (setup_error if ZeroMQ
    // cannot bind the ZAP handler). When the last holder lets go, the ZAP
    // thread stops and the context ends (waiting for sockets' linger).
    // network_cpu >= 0: a new context's ZeroMQ I/O threads run on that CPU
    // only (net_options::network_cpu); an existing context is returned as it
    // is (network_cpu() says what it has).
    static std::shared_ptr<shared_context> acquire(int network_cpu = -1);
    int network_cpu() const noexcept { return network_cpu_; }
    // This context's ZeroMQ I/O threads (Linux thread ids; empty if they
    // could not be found), for net_options::network_cpu_auto.
    const std::vector<pid_t>& io_threads() const noexcept { return io_threads_; }
    ~shared_context();
    shared_context(const shared_context&) = delete;
    shared_context& operator=(const shared_context&) = delete;

    zmq::context_t& context() noexcept { return ctx_; }
    void* get() noexcept { return ctx_.handle(); }

    // Serves ZAP requests for a new domain, returned, with `handler`; each
    // outcome is also passed to `report`. Both must outlive the route.
    std::string add_route(zap_handler& handler, std::function<void(const zap_outcome&)> report);
    // While paused, the route's requests get no answer at all.
    void pause_route(const std::string& domain, bool paused);
    // Ends a route; when this returns, its handler and report are not in use
    // and never will be again (it waits for an authorizer running now).
    // Requests for the domain go unanswered from now (a stopping node;
    // see the header comment), never refused.
    void remove_route(const std::string& domain);

    // A process-unique number (for inproc endpoint names).
    std::uint64_t unique() noexcept;

    // Requests waiting for one route's authorizer before new ones are refused.
    static constexpr std::size_t max_route_backlog = 256;

private:
    struct request {
        std::vector<std::string> envelope;  // routing frames and delimiter, sent back with the reply
        zap_request req;
    };
    struct answer {
        std::vector<std::string> envelope;
        zap_request req;
        zap_outcome out;
    };
    // One route's authorizer thread and its queue.
    struct worker {
        std::mutex mu;
        std::condition_variable cv;
        std::deque<request> q;
        bool stop = false;
        std::thread thread;
    };
    struct route {
        zap_handler* handler;
        std::function<void(const zap_outcome&)> report;
        bool paused = false;
        std::shared_ptr<worker> w;  // started on the first request that needs the authorizer
    };
    explicit shared_context(int network_cpu);
    int network_cpu_ = -1;
    std::vector<pid_t> io_threads_;
    static std::map<pid_t, std::string> io_thread_ids();
    // Finds this context's I/O threads (those not in `before`) and lowers
    // ZMQbg/IO/1 to public_io_nice.
    void find_io_threads(const std::map<pid_t, std::string>& before);
    void serve();
    void send_answers();
    void work(route r);  // a worker's thread (r.w is its worker)
    // `domain` is one add_route gave out ("kith/<n>", n already issued):
    // a route now removed, i.e. a node that stopped.
    bool was_issued(std::string_view domain) const noexcept;

    zmq::context_t ctx_;
    zmq::socket_t sock_;  // ROUTER at inproc://zeromq.zap.01; the ZAP thread's only
    int answers_fd_ = -1;  // eventfd: answers_ has work for the ZAP thread
    std::thread thread_;
    std::mutex mu_;
    std::vector<answer> answers_;  // under mu_: decided by workers, to be sent
    std::map<std::string, route, std::less<>> routes_;  // under mu_
    std::atomic<std::uint64_t> next_{0};  // domains and unique(): never reused
};

}  // namespace kith::detail
