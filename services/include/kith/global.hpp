// kith/global.hpp — global names (OTP `global`, without its locks): a name
// that means one pid anywhere in the cluster.
//
//   kith::global_names g(node);                 // one per node
//   g.register_name("kvs", my_pid);             // a LOCAL pid
//   g.whereis("kvs");                           // from any node: the pid
//   g.send("kvs", kith::arr("get", "k"));
//
// Model. Every node that takes part runs one name server (a global_names
// object owns it), registered under "kith.global". A node only registers its
// OWN pids, stamps each registration with its own wall clock (ms since the
// epoch) and tells the name servers of the cluster members it is connected
// to: the full table when they meet (nodeup, both directions), then every
// register and unregister as it happens. Reads are local and never wait.
// There is no cluster-wide lock: register() refuses a name this node already
// knows to be held, but two nodes that do not (yet) know of each other's
// registration can both succeed (a race inside one message hop, or a
// partition). Then both entries are in the tables and every node applies
// the same rule, with no coordination:
//
//   THE RULE: of two registrations of one name, the one with the smaller
//   stamp wins (the earlier registration, by its owner's clock); equal
//   stamps: the smaller node name wins.
//
// whereis() answers the winner as soon as a node knows both entries. The
// loser's OWN node removes the name, tells its peers, and sends the losing
// pid the exit signal ["global_name_conflict", Name] (a pid that does not
// trap exits ends with that reason). Clocks are only compared, never trusted
// for ordering events: a node whose clock is behind wins conflicts, which is
// deterministic, not "fair".
//
// A name is freed when it is unregistered, when its pid ends (the name
// server monitors it), when its name server ends, and when its node goes
// down or goes silent (nodedown): every other node drops that node's names
// at once. A restarted node reuses pid values (kith has no creation number),
// but it is always seen as nodedown first, so its old names are gone before
// its new pids can be registered; no stale entry can point at a new pid.
//
// Who takes part: cluster members only, as kith/pg.hpp. A name server talks
// only to name servers on nodes connected with trust "cluster" and accepts
// from a peer only names of that peer's own pids. Code running for a
// grantee, stranger or dialled server (current_principal().restricted(),
// e.g. a service function a grantee invoked) gets errc::unauthorized from
// every method.
//
// Thread-safety: every method may be called from any thread, including actor
// handlers; none blocks. Ownership: the object owns its name server;
// destroying it ends the server (peers drop this node's names). The node
// must outlive it.
//
// Errors: errc::badarg for a name that is empty or over 255 bytes, a null
// or non-local pid, a name already held (the message names the holder), or
// unregister of a name this node does not hold; errc::noproc from register
// for a pid that is not alive, and from whereis/send for an unknown name;
// errc::unauthorized as above. The constructor throws setup_error when a
// global_names already runs on this node.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kith/error.hpp"
#include "kith/log.hpp"
#include "kith/node.hpp"
#include "kith/term.hpp"

namespace kith {

namespace detail {
struct global_table;
}

// One registration as a node knows it.
struct global_entry {
    std::string name;
    pid who;
    std::int64_t stamp_ms = 0;  // the owner's wall clock at register()
};

class global_names {
public:
    explicit global_names(node& n, log_sink log = {});
    ~global_names();
    global_names(const global_names&) = delete;
    global_names& operator=(const global_names&) = delete;

    // The name server's pid.
    const pid& server() const noexcept;

    // Registers the local pid `who` under `name` for the whole cluster.
    result<void> register_name(const std::string& name, const pid& who);
    // Removes a name this node holds.
    result<void> unregister_name(const std::string& name);
    // The pid holding `name` as this node knows it (the rule's winner).
    result<pid> whereis(const std::string& name) const;
    // Sends `msg` (a user message) to whereis(name); at most once, as any send.
    result<void> send(const std::string& name, const term& msg) const;
    // Every name this node knows of, each with its winning entry, sorted.
    result<std::vector<global_entry>> registered() const;

private:
    node* n_;
    std::shared_ptr<detail::global_table> t_;
};

}  // namespace kith
