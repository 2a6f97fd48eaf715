// kith/supervisor.hpp — OTP-style supervisors: keep a set of children alive.
//
// A supervisor is an actor that starts its children in order, links to them,
// traps exits and restarts them when they end, following a strategy:
//
//   one_for_one   only the child that ended is restarted;
//   one_for_all   every other child is stopped (reverse start order), then
//                 all are started again in start order;
//   rest_for_one  the children started after the one that ended are stopped
//                 (reverse order), then it and they are started in order.
//
// Child kinds (restart_kind): permanent children are always restarted;
// transient ones only when they end abnormally (a reason other than "normal"
// or "shutdown"); temporary ones never (they are dropped from the list when
// they end, and one_for_all/rest_for_one stop them without restarting them).
//
// Restart intensity: more than `intensity` restarts within `period` means
// restarting does not help. The supervisor then stops every child (ordered
// shutdown, below), logs "reached_max_restart_intensity" and exits with
// reason "shutdown" (as OTP does), so its own supervisor or monitor decides.
//
// Ordered shutdown (on stop_supervisor, on an abnormal exit signal from a
// process that is not one of its children — its parent — or when intensity
// is exceeded): children are stopped one at a time in reverse start order,
// each with exit signal "shutdown"; a child that has not ended after its
// `shutdown` timeout gets "kill". shutdown = 0 means "kill" at once. A
// supervisor killed with reason "kill" cannot do this: its children get
// exit "killed" through their links.
//
// Remote children: a child_spec with `remote` set is spawned on another node
// (node::spawn_link of a spawnable actor type of a service there). A lost
// connection ends it with reason "noconnection" (the link fires on both
// sides, so a partitioned child also dies on its own node unless it traps
// exits). Restarting it tries the SAME node: if that node is down (nodedown
// or timeout) the child is marked "waiting", this costs no further
// intensity, and it is started again when the node comes back (nodeup) or
// at the latest every `retry_interval`. Other start errors (the service is
// gone, unauthorized, bad_args) count as a restart each time they are
// retried, so a broken child ends in intensity exceeded, not a busy loop.
// Failover to ANOTHER node is not a supervisor's job here (see
// docs/availability.md).
//
// Threads and blocking: the supervisor runs on a worker of its node like any
// actor. Starting a local child never blocks (child_spec::start runs inside
// the new child, on a worker). Starting a remote child blocks that worker
// for at most child_spec::start_timeout. Give a node with remote children at
// least two workers.
//
// supervisor_spec::log is called on that worker (keep it short). A child
// that is itself a supervisor (a tree) should get a `shutdown` timeout long
// enough for its own ordered shutdown.
//
// Ownership: the supervisor owns its children (they are linked to it). The
// node must outlive every supervisor started on it. Specs are copied.
//
// Errors: start_supervisor returns errc::badarg for an invalid spec (empty
// or duplicate child id, neither or both of start/remote set, intensity < 0,
// period <= 0) and errc::exception with "start_failed: <id>: <why>" when a
// child could not be started (the children already started are stopped
// first). The supervisor never throws out of its handler.
//
// Protocol (requests to a supervisor pid, usable from any node of the cluster):
//   "which_children" -> [{"id", "pid" (pid or nil), "state" ("running",
//                        "waiting", "stopped"), "node", "restarts"}...]
//   "stop"           -> "ok" after the ordered shutdown; the supervisor then
//                        exits with reason "normal".
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "kith/actor.hpp"
#include "kith/log.hpp"
#include "kith/node.hpp"

namespace kith {

enum class sup_strategy { one_for_one, one_for_all, rest_for_one };
enum class restart_kind { permanent, transient, temporary };

// An actor type of a service on another node, started with node::spawn_link.
struct remote_child {
    std::string node;     // "name@host"
    std::string service;  // service name on that node
    std::string type;     // its spawnable actor type
    term args;            // an array
};

struct child_spec {
    std::string id;                     // unique within the supervisor
    actor_init start;                   // a local child: runs inside the new child
    std::optional<remote_child> remote; // or a remote one (exactly one of the two)
    restart_kind restart = restart_kind::permanent;
    std::chrono::milliseconds shutdown{5000};       // 0: "kill" at once
    std::chrono::milliseconds start_timeout{5000};  // remote spawn deadline
};

struct supervisor_spec {
    sup_strategy strategy = sup_strategy::one_for_one;
    int intensity = 1;                              // max restarts ...
    std::chrono::milliseconds period{5000};         // ... within this window
    std::chrono::milliseconds retry_interval{1000}; // a "waiting" remote child
    std::vector<child_spec> children;               // in start order
    log_sink log;  // restarts and give-ups; unset: kith's default sink
};

// The init of a supervisor actor, to spawn yourself or to use as the `start`
// of a child_spec (a supervision tree). A bad spec or a failed child start
// ends the actor with reason "start_failed: ...".
actor_init supervisor(node& n, supervisor_spec spec);

// Spawns a supervisor on `n` and waits until all its children are started.
// Blocks the calling thread up to `timeout` (errc::timeout; the supervisor
// is then told to stop). Errors: see the file comment.
result<pid> start_supervisor(node& n, supervisor_spec spec,
                             std::chrono::milliseconds timeout = std::chrono::seconds(30));

struct child_info {
    std::string id;
    pid who;            // null unless running
    std::string state;  // "running", "waiting", "stopped"
    std::string node;   // where it runs or will run
    int restarts = 0;
};

// Asks the supervisor for its children (blocking, from a plain thread).
// errc::noproc if it is not alive, errc::timeout.
result<std::vector<child_info>> which_children(node& n, const pid& sup,
                                               std::chrono::milliseconds timeout = std::chrono::seconds(5));
// Ordered shutdown, then the supervisor exits "normal". Blocking.
result<void> stop_supervisor(node& n, const pid& sup, std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace kith
