// remote_port.hpp (private) — the seam between the in-node runtime and the
// network layer.
//
// The runtime routes every operation whose target pid (or node) is not the
// local node to the remote_port installed with node_impl::set_remote_port().
// The network layer implements it (encodes envelopes, batches, sends) and
// feeds what arrives from peers back through the node_impl entry points
// marked "network entry point" in node_impl.hpp.
//
// Contract for implementers:
//   * Every method is called from arbitrary threads (actor workers, mailbox
//     threads, the timer thread), concurrently; it must be thread-safe and
//     must not block for long (queue and return). It must not call back into
//     the runtime synchronously while holding its own locks in a way that
//     could re-enter the same method (the runtime holds no lock of its own
//     while calling a port method).
//   * Return value: true if the operation was accepted for delivery to a
//     connected node; false if there is no route to that node (unknown or
//     disconnected). On false the runtime applies the local fallback: a send
//     is dropped and counted (node_counters::dropped_remote), a monitor fires
//     DOWN "noconnection" at once, a link delivers exit "noconnection".
//   * Once a monitor or link was accepted (true), the port owns the promise
//     that it ends: when the remote side answers (DOWN / EXIT from the peer)
//     or when the connection to that node is lost, the port delivers DOWN
//     (reason "noconnection" on loss) with node_impl::deliver(), for a link an
//     exit message of kind link_exit. The runtime does not track remote
//     monitors itself.
//   * Ordering: operations from one local process to one remote process must
//     reach the peer in the order of the calls (one ordered stream per node
//     pair).
#pragma once

#include <string>

#include "kith/actor.hpp"
#include "kith/term.hpp"

namespace kith::detail {

class remote_port {
public:
    virtual ~remote_port() = default;

    // Delivers `m` to the remote process `to`. m.kind is user, request,
    // reply, reply_error or down (a DOWN for a remote watcher; then m.from
    // is the local process that ended and m.tag the monitor ref).
    virtual bool send(const pid& to, message&& m) = 0;
    // Delivers `m` (kind user or request) to the process registered as
    // `name` on `node`.
    virtual bool send_named(const std::string& node, const std::string& name, message&& m) = 0;
    // Local process `from` links to remote `to`. The peer adds the link on
    // its side, or answers with a link_exit "noproc".
    virtual bool link(const pid& from, const pid& to) = 0;
    virtual bool unlink(const pid& from, const pid& to) = 0;
    // Local `watcher` monitors remote `target` under `tag`. The peer answers
    // DOWN "noproc" at once if `target` is dead.
    virtual bool monitor(const pid& watcher, const pid& target, const ref& tag) = 0;
    virtual bool demonitor(const pid& watcher, const pid& target, const ref& tag) = 0;
    // An exit signal from local `from` (may be null: from outside any
    // process) to remote `to`. linked = true: `from` was linked to `to` and
    // ended with `reason` (kind link_exit at the peer); false: exit/2 (kind
    // exit_signal).
    virtual bool exit(const pid& from, const pid& to, const term& reason, bool linked) = 0;
};

}  // namespace kith::detail
