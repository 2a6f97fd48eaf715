// kith/pg.hpp — process groups (OTP `pg`): named sets of pids across the
// cluster, in scopes.
//
//   kith::pg_scope chat(node);                 // scope "default" on this node
//   chat.join("room", my_pid);                 // a LOCAL pid
//   chat.send_all("room", kith::arr("hello")); // every member, once
//
// Model. Every node that takes part runs one scope server per scope (a
// pg_scope object owns it), registered under "kith.pg.<scope>". A node only
// ever joins its OWN pids. Scope servers find each other through node
// events: on nodeup of a cluster member they exchange their local
// memberships ("sync"), then send each join and leave as it happens. The
// membership is eventually consistent: a join on node A is seen on node B
// after one message hop (plus the nodeup exchange, if they just met); nodes
// may briefly disagree; there is no cluster-wide lock.
//
// Members leave when they call leave, when they end (the scope server
// monitors them), when their scope server ends, and when their node goes
// down (nodedown / lost connection): every other node drops all members of
// that node at once. After a partition heals, the sync on nodeup restores
// them. A pid may join a group several times (it must leave as often);
// members() lists it once per join, send_all sends to it once.
//
// Who takes part: cluster members only. A scope server talks only to scope
// servers on nodes connected with trust "cluster" (node_info::trust), and
// accepts from a peer only memberships of pids on that peer's own node. A
// grantee, stranger or dialled server is never sent the membership and
// cannot add members (kith refuses its messages to registered names). Code
// running for such a principal (kith::current_principal().restricted(),
// e.g. a service function a grantee invoked) gets errc::unauthorized from
// every pg_scope method: a group service never becomes a non-member's
// deputy.
//
// Events: monitor(who) sends `who` the current membership once, as the
// reply value of monitor(), and then every change as a user message
//   ["pg", Scope, "join", Group, [Pid...]]  or  ["pg", Scope, "leave", Group, [Pid...]]
// in the order the changes were applied on this node.
//
// Thread-safety: every method may be called from any thread, including
// actor handlers; none blocks (reads come from a table the scope server
// keeps current; joins and leaves update it at once and the server
// forwards them). Ownership: the pg_scope owns its scope server; destroying
// it ends the server (peers drop this node's members) and unregisters the
// name. The node must outlive the pg_scope.
//
// Errors: errc::badarg for an empty group or scope name, a scope name not of
// [A-Za-z0-9._-] (1-64), a null or non-local pid, or leave of a pid that is
// not a member; errc::unauthorized as above. The constructor throws
// setup_error when the scope name is taken on this node.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kith/error.hpp"
#include "kith/log.hpp"
#include "kith/node.hpp"
#include "kith/term.hpp"

namespace kith {

namespace detail {
struct pg_table;
}

class pg_scope {
public:
    // Starts the scope server on `n`. `log` gets refused peer messages and
    // the like (unset: kith's default sink).
    explicit pg_scope(node& n, std::string scope = "default", log_sink log = {});
    ~pg_scope();
    pg_scope(const pg_scope&) = delete;
    pg_scope& operator=(const pg_scope&) = delete;

    const std::string& scope() const noexcept;
    // The scope server's pid.
    const pid& server() const noexcept;

    // Adds the local pid `who` to `group`. If `who` is already dead it is
    // removed again as soon as the server notices (a DOWN "noproc").
    result<void> join(const std::string& group, const pid& who);
    // Removes one join of `who` from `group`.
    result<void> leave(const std::string& group, const pid& who);
    // Members on every node of the cluster this node knows of (each join once).
    result<std::vector<pid>> members(const std::string& group) const;
    // Members on this node only.
    result<std::vector<pid>> local_members(const std::string& group) const;
    // Groups with at least one member anywhere.
    result<std::vector<std::string>> groups() const;
    // Sends `msg` (a user message) to every distinct member, local and remote.
    // Returns how many pids it was sent to (delivery is at most once, as any
    // send).
    result<std::size_t> send_all(const std::string& group, const term& msg) const;
    // Subscribes `who` to membership events (see the file comment); returns
    // the current membership {Group: [Pid...]}. on=false unsubscribes (returns
    // nil). Subscribers that end are dropped.
    result<term> monitor(const pid& who, bool on = true);

private:
    node* n_;
    std::shared_ptr<detail::pg_table> t_;
};

}  // namespace kith
