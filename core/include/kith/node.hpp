// kith/node.hpp — a kith node: the runtime that hosts actors.
//
// A node owns a small pool of worker threads that run its actors (see
// kith/actor.hpp), a timer thread, a per-node table of registered names, and
// the counters of what it dropped. Its full name ("name@host") is carried by
// every pid of its actors.
//
//   kith::node n({.name = "gandalf@pi1"});
//   kith::pid echo = n.spawn([](kith::actor& self, kith::message& m) {
//       if (m.is_request()) self.reply(m, m.body);
//   });
//   kith::mailbox me(n);                         // kith/mailbox.hpp
//   auto r = me.call(echo, "hi", std::chrono::seconds(1));
//
// Thread-safety: every public method of kith::node may be called from any
// thread, concurrently, including from inside actor handlers — except stop()
// and the destructor, which must not be called from a handler of this node.
// Ownership: the node owns its actors; stopping it drops them all.
// Errors: setup failures throw kith::setup_error (constructor); runtime
// outcomes are values (result<T>) or messages (DOWN, EXIT).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kith/actor.hpp"
#include "kith/error.hpp"
#include "kith/grants.hpp"
#include "kith/net.hpp"
#include "kith/service.hpp"
#include "kith/term.hpp"

namespace kith {

namespace detail {
class node_impl;
struct node_net;
struct node_access;
}

struct node_options {
    // Full node name, "name@host". Carried by every pid of this node.
    // Default "kith@localhost". Must not be empty (setup_error).
    std::string name = "kith@localhost";
    // Worker threads running actors. 0 (default) = hardware concurrency.
    unsigned workers = 0;
    // Worker threads that non-members' work may occupy at once: grantees'
    // and strangers' calls, casts and spawned actors, and every actor acting
    // for them. The other workers stay free for cluster members (and this
    // node's own actors); a non-member's turn beyond the share waits, in the
    // order it became ready, until one of the share's turns ends (the wait is
    // bounded by what the principal may hold: its calls in flight and its
    // actors, docs/security.md "The workers' share"). 0 (default) = half the
    // workers, at least 1; more than `workers` is clamped to `workers`. With
    // one worker nothing can be kept back: give members >= 2.
    unsigned guest_workers = 0;
    // Messages an actor handles per scheduling turn before yielding the
    // worker to other ready actors. Default 256; 0 is treated as 1.
    unsigned turn_messages = 256;
    // Networking (kith/net.hpp). Default: none (net.listen empty), a purely
    // local node.
    net_options net;
};

// Monotonic counters (relaxed snapshots; exact once the node is quiet).
struct node_counters {
    std::uint64_t spawned = 0;          // actors ever spawned
    std::uint64_t exited = 0;           // actors that ended
    std::uint64_t live = 0;             // processes (actors + mailboxes) alive now
    std::uint64_t dropped_unknown = 0;  // sends to unknown/dead local pids or names
    std::uint64_t dropped_remote = 0;   // sends to remote pids with no route
};

class node {
public:
    using duration = std::chrono::nanoseconds;

    // Starts the workers and the timer thread. Throws setup_error on a bad
    // option (empty name) or if threads cannot be started.
    explicit node(node_options opts = {});
    // stop(), then releases the node. Mailboxes may outlive the node (their
    // operations then fail with errc::shutdown or time out).
    ~node();
    node(const node&) = delete;
    node& operator=(const node&) = delete;

    // The full name, "name@host".
    const std::string& name() const noexcept;
    // Number of worker threads.
    unsigned workers() const noexcept;

    // Spawns an actor; F is a behaviour `void(actor&, message&)` or an init
    // `behavior(actor&)` (run first, on a worker, or on the network I/O
    // thread when spawned from a reply's completion: docs/architecture.md,
    // "Threads"). Returns its pid at once.
    // After stop(): returns a pid of an actor that never runs.
    template <spawnable F>
    pid spawn(F&& f) {
        auto [i, b] = detail::split_spawnable(std::forward<F>(f));
        return spawn_impl(std::move(i), std::move(b));
    }

    // Sends a user message (no sender). Same rules as actor::send.
    void send(const pid& to, term msg);
    void send(const std::string& name, term msg);
    void send(const std::string& name, const std::string& node, term msg);
    // Sends an exit signal with no sender process (like exit/2 from outside).
    void send_exit(const pid& to, term reason);
    // Answers a request from outside the target actor (e.g. from a stored
    // reply_handle, from any thread).
    void reply(const reply_handle& to, result<term> answer);
    void reply(const reply_handle& to, term value) { reply(to, result<term>(std::move(value))); }

    // Registered names; see actor::register_name.
    result<void> register_name(const std::string& name, const pid& who);
    result<void> unregister_name(const std::string& name);
    std::optional<pid> whereis(const std::string& name) const;

    // Timers; see actor::send_after / cancel_timer.
    ref send_after(duration delay, const pid& to, term msg);
    bool cancel_timer(const ref& timer);

    // True while the local actor or mailbox `p` is alive (false for remote
    // pids).
    bool alive(const pid& p) const;
    node_counters counters() const;

    // Stops the workers and the timer thread, drops every remaining actor and
    // pending timer, joins the threads. Idempotent. Links and monitors do not
    // fire for actors dropped this way. Pending calls fail with
    // errc::shutdown (or nodedown "shutdown") before it returns. What was
    // sent to other nodes before it goes out first, and each peer is told
    // "shutdown" behind it: stop() blocks until ZeroMQ took every frame and
    // the peers closed their connections, at most 2 s (or the heartbeat
    // timeout if shorter; a peer that stopped reading loses the rest, and
    // sees its link end; the node logs a warning naming it when envelopes
    // were left queued or large ones unacknowledged). Must not be
    // called from a handler, from a service function running on this node,
    // or from a call_async completion on its deadline thread (std::terminate:
    // it would join its own thread); stop it from another thread.
    void stop();

    // --- services -------------------------------------------------------------
    // Exports a service (functions and spawnable actor types) under its name,
    // replacing one of the same name. Thread-safe; takes effect for the next
    // call.
    void add_service(service s);
    // Names of the exported services.
    std::vector<std::string> services() const;
    // Invokes a function of one of this node's services without the network
    // (errc::no_such_service / no_such_function / bad_args / exception).
    // Runs on the calling thread; `reply` may be answered later.
    void invoke_local(const std::string& svc, const std::string& fn, const term& args, reply_to reply) const;

    // --- distribution (needs options.net.listen; else errc::nodedown) ----------
    // All of these are thread-safe. The blocking ones (connect, call,
    // multicall, spawn on a node, ping) block the calling thread until the
    // answer or the timeout: call them from plain threads, or from actors
    // only when blocking that worker is acceptable.

    // The endpoint others should dial, "tcp://192.0.2.7:4370": the advertised
    // one if set, else the bound one; for a wildcard bind ("tcp://*:4370") the
    // address of the first non-loopback IPv4 interface that is up (loopback if
    // there is none). "" if the node has no network.
    std::string endpoint() const;
    // Every endpoint this node can be dialled at: the advertised one alone if
    // set; for a wildcard bind one per IPv4 interface that is up, loopback
    // only if no other interface is up; else the bound one. Grant files
    // carry these.
    std::vector<std::string> endpoints() const;
    // The endpoint the node's socket is bound to, with its real port
    // ("tcp://0.0.0.0:4370" for a wildcard bind), whatever it advertises:
    // what processes of this machine dial to reach it (a node advertising a
    // port forward's outside port listens on another). "" without network.
    std::string bound_endpoint() const;
    // Where this cluster's members should dial it: endpoint() with the member
    // port's port (net.member_listen; docs/security.md, "The member port").
    // Only the cluster key is admitted there (anyone else: refused,
    // errc::unauthorized). "" if there is none, or if net.advertise is set
    // and net.member_listen is not. Beacons and the local registry carry it.
    std::string member_endpoint() const;
    // The node's listening socket connects out to `endpoint` ("tcp://IP:PORT")
    // and serves whoever is there as any inbound connection (CURVE, the
    // cluster proof, grants: nothing is trusted more), redialling it until
    // disconnect_listener. For a relay's session port (kith/relay.hpp).
    // Thread-safe, non-blocking; no effect without network.
    void connect_listener(const std::string& endpoint);
    void disconnect_listener(const std::string& endpoint);
    // Closes the outbound link to `endpoint` (a goodbye first, if it is up)
    // and stops redialling it: e.g. a relay's session port that is gone.
    // Thread-safe, non-blocking.
    void disconnect(const std::string& endpoint);
    // The key directory in use (net.key_dir, else $KITH_HOME or ~/.kith):
    // where the node keeps its keys, cookie and grant table, and where
    // services that persist state for it (a relay's name bindings) keep
    // theirs. Empty without network.
    std::filesystem::path key_dir() const;
    // The node's long-term public key (all zero without network).
    public_key key() const;
    // Opens a connection to the node listening at `endpoint` with public key
    // `key`, and waits until it is up. Returns the peer's node name;
    // errc::unauthorized (with the reason) if it refused us (e.g. a wrong
    // cookie), errc::timeout if nothing answered.
    //
    // Membership is proven both ways: this dials with the cluster key, and
    // the link is a cluster link only once the server proved (inside the
    // encrypted session) that it knows the cookie too. A node that cannot
    // — a different cookie, or a node outside the cluster — is refused:
    // errc::unauthorized "... did not prove membership of our cluster";
    // use connect_visitor (or a grant) for a node outside the cluster.
    result<std::string> connect(const std::string& endpoint, const public_key& key,
                                duration timeout = std::chrono::seconds(5));
    // Connects to a node outside the cluster to use its public services, as
    // a visitor: dials with this node's own long-term key, never the cluster
    // key. The server sees a stranger; it gets no right on this node beyond
    // answering our requests and messaging pids we hand it (trust "server").
    // Errors as for connect.
    result<std::string> connect_visitor(const std::string& endpoint, const public_key& key,
                                        duration timeout = std::chrono::seconds(5));
    // Non-blocking connect: `done` runs once with the peer's name or the
    // error connect() would return: on a kith thread (the I/O thread when the
    // link comes up or is refused, the timer thread on timeout), except that
    // a node already connected at `endpoint` (its name), or a node that is
    // stopping (errc::shutdown), answers at once on the calling thread,
    // before connect_async returns. A `done` that throws is logged.
    void connect_async(const std::string& endpoint, const public_key& key, duration timeout,
                       std::function<void(result<std::string>)> done);
    // Connects with a grant that another node issued us (kith/grants.hpp):
    // tries its endpoints in order (sharing `timeout`). Returns the granting
    // node's name; errc::revoked if the grant was revoked or has expired,
    // errc::unauthorized if the node does not know it, errc::timeout if
    // nothing answered. Afterwards call/cast/spawn/send to that node go
    // through the grant; the granting node gets no right on this node from
    // it (it may only answer, and message pids we handed to it). If the
    // grant is revoked later: nodedown reason "revoked", pending and later
    // calls to that node fail with errc::revoked.
    result<std::string> connect(const grant_file& grant, duration timeout = std::chrono::seconds(5));

    // --- grants and public services (kith/grants.hpp) ---------------------------
    // What a grant allows and never allows: docs/security.md. All of these
    // are thread-safe; grant, revoke_grant, set_grant_rate and set_grant_limits block while the
    // table is written (fsync). Without network: errc::nodedown (grants()
    // and public_services() are empty, set_public does nothing).
    //
    // Issues a grant: a fresh client keypair bound to spec. The returned file
    // (endpoints = this node's advertised endpoint: set net.advertise when
    // listening on a wildcard address) is for the grantee; save() it and hand
    // it over privately. The table is saved atomically to <key_dir>/grants
    // before this returns. errc::badarg: bad or duplicate label, bad names or
    // an empty scope, a scope naming an admin service ("grants", "node":
    // never granted), a burst below 1, limits out of grant_limits' bounds,
    // or the table could not be written.
    result<grant_file> grant(const grant_spec& spec);
    // The grant table (revoked grants included, marked), with live counters.
    // Re-reads <key_dir>/grants if another process changed it.
    std::vector<grant_info> grants() const;
    // Revokes at once: the next message under it is refused with errc::revoked,
    // its connection is told "revoked" (goodbye), its reconnects fail.
    // errc::badarg if there is no such label, or (revoked nonetheless) if the
    // table could not be saved.
    result<void> revoke_grant(const std::string& label);
    // Changes a grant's rate; effective for the next message. errc::badarg if
    // unknown or revoked (a revoked grant is never usable again).
    result<void> set_grant_rate(const std::string& label, rate_limit rate);
    // Replaces a grant's limits (kith::grant_limits; all 0: the defaults),
    // saved in the table; in force for the holder's next request, on its
    // live sessions too. What it holds already is kept: after a limit is
    // lowered below its use, further requests of that kind are refused
    // (errc::overloaded, "limit pending: ...") until it is under again.
    // Only this node's owner changes them (this method, the "grants"
    // service's set_limits, which only cluster members may call, or
    // `kith grant limits`); a grantee never can. errc::badarg if unknown,
    // revoked, out of bounds, or the table could not be written (then the
    // limits stay as they were; set_grant_rate likewise).
    result<void> set_grant_limits(const std::string& label, const grant_limits& limits);
    // Opens service `svc` (which need not be added yet) to anyone who can
    // reach this node, strangers included, each connecting key limited to
    // `rate` for that service. A stranger may call, cast and spawn in public
    // services and message the pids handed to it, nothing else. on=false
    // closes it again (effective for the next message); when none is left,
    // every stranger is disconnected and loses what it was handed. Not
    // persisted. errc::badarg for the admin services "grants" and "node",
    // which can never be public; errc::nodedown without network.
    result<void> set_public(const std::string& svc, bool on = true, rate_limit rate = {});
    std::vector<std::string> public_services() const;
    // rpc: calls `svc`:`fn`(args...) on `node` (this node's own name works
    // too). `args` is an array. Returns the value, or timeout, nodedown,
    // unauthorized, no_such_service, no_such_function, bad_args, exception
    // (detail = the remote exception's text), overloaded, badarg (the request
    // or its reply is over the receiver's limit of one message, 1 MiB
    // encoded between cluster members: nothing of it was sent).
    result<term> call(const std::string& node, const std::string& svc, const std::string& fn, term args,
                      duration timeout = std::chrono::seconds(5));
    // Non-blocking call: `done` runs exactly once, on a kith thread (the I/O
    // thread for a reply or a nodedown, the deadline thread for a timeout or
    // an error known at once, the timer thread for a local call that answered
    // at once), and never on the calling thread before call_async returns —
    // not even for errors known at once (not connected, unauthorized,
    // overloaded, no_such_service, bad_args, no network). Keep it short and
    // do not block in it (a blocking call in it can wait for the very thread
    // it runs on); do not stop the node from it (std::terminate). Once the
    // node has stopped, `done` runs on a short-lived thread of its own.
    void call_async(const std::string& node, const std::string& svc, const std::string& fn, term args,
                    duration timeout, std::function<void(result<term>)> done);
    // Calls and casts run concurrently on the callee (on its I/O thread right
    // after the request is read, or in a transient actor on a worker; see
    // docs/architecture.md, "Threads"): invocations are not ordered with each
    // other, even from one caller. Order between two actors is kept for
    // messages (send), not for service invocations.
    // rpc cast: no reply. nodedown if not connected, overloaded if its queue
    // is full; otherwise sent (at most once).
    result<void> cast(const std::string& node, const std::string& svc, const std::string& fn, term args);
    // Calls every node in parallel; {results by node, bad nodes with errors}.
    multicall_result multicall(const std::vector<std::string>& nodes, const std::string& svc,
                               const std::string& fn, term args, duration timeout = std::chrono::seconds(5));
    // Spawns the actor type `type` of service `svc` on `node` with `args`;
    // returns its pid. Errors as for call.
    result<pid> spawn(const std::string& node, const std::string& svc, const std::string& type, term args,
                      duration timeout = std::chrono::seconds(5));
    // Non-blocking spawn (Erlang's spawn_request): `done` gets the new
    // actor's pid or one of spawn's errors, exactly once, on a kith thread
    // (the I/O thread for the answer or a nodedown, the deadline thread for
    // a timeout or an error known at once, the timer thread for this node's
    // own name), never on the calling thread before spawn_async returns. The
    // rules of call_async's `done` apply (short, no blocking, no stop). From
    // an actor: send the result to itself, as with call_async.
    void spawn_async(const std::string& node, const std::string& svc, const std::string& type, term args,
                     duration timeout, std::function<void(result<pid>)> done);
    // As spawn, and links the new actor with the local actor or mailbox
    // `linker`, on both nodes before this returns (Erlang's spawn_link/4):
    // if either ends abnormally the other gets the exit signal; if the
    // connection is lost, the linker gets exit "noconnection".
    result<pid> spawn_link(const pid& linker, const std::string& node, const std::string& svc,
                           const std::string& type, term args, duration timeout = std::chrono::seconds(5));
    // As spawn, and makes the local `watcher` monitor the new actor: a DOWN
    // message with the returned ref arrives when it ends ("noconnection" if
    // the node is lost). The monitor is set up before the actor can end, so
    // the DOWN carries the real reason. Call it from the watcher's own
    // thread: its handler for an actor, any thread for a mailbox.
    result<std::pair<pid, ref>> spawn_monitor(const pid& watcher, const std::string& node, const std::string& svc,
                                              const std::string& type, term args,
                                              duration timeout = std::chrono::seconds(5));
    // "pong" (true) if `node` is connected and answers within `timeout`,
    // "pang" (false) otherwise.
    bool ping(const std::string& node, duration timeout = std::chrono::seconds(1));
    // Connected, non-hidden nodes ("name@host"), in name order. Empty
    // without network.
    std::vector<std::string> nodes() const;
    // What is known about the connected node `node` (hidden ones included):
    // the snapshot taken when it came up (kith/net.hpp, node_info). nullopt if
    // it is not connected, or without network. Thread-safe; never blocks on
    // the network.
    std::optional<node_info> info(const std::string& node) const;
    // Node up/down events to a callback (on a kith thread; keep it short).
    // Returns an id for unsubscribe_nodes.
    std::uint64_t subscribe_nodes(std::function<void(const node_event&)> cb);
    void unsubscribe_nodes(std::uint64_t id);
    // Node up/down events as messages ["nodeup", Name, Info] /
    // ["nodedown", Name, Reason] to an actor or mailbox.
    void monitor_nodes(const pid& who, bool on = true);
    // ["nodedown", Node, Reason] to `who` when `node` goes down; at once
    // (reason "noconnection") if it is not connected.
    void monitor_node(const std::string& node, const pid& who);
    // The distribution layer's counters (kith/net.hpp, net_counters): events
    // since start, a relaxed snapshot. All zero without network. Thread-safe
    // and cheap: atomic reads, no lock.
    net_counters net_stats() const;
    // A 32-byte key derived from this node's cluster cookie for `purpose`
    // (derive_cookie_key, kith/keys.hpp), e.g. "beacon-hmac" for kith's
    // discovery beacons; the cookie itself is never handed out. nullopt for a
    // node without network. May throw setup_error if the cookie file cannot
    // be read.
    std::optional<std::array<std::uint8_t, 32>> cookie_key(std::string_view purpose) const;

private:
    friend struct detail::node_access;  // kith's own code reaches the runtime through it
    pid spawn_impl(actor_init init, behavior b);
    void start_net(const net_options& o);
    void stop_net();
    bool on_net_thread() const noexcept;
    std::shared_ptr<detail::node_impl> impl_;
    std::shared_ptr<detail::node_net> net_;
};

}  // namespace kith
