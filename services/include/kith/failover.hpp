// kith/failover.hpp — failover services (OTP distributed applications with
// a keep-majority rule): one instance of something, running on the first
// live node of a priority list, under a global name that follows it.
//
//   kith::failover_spec fs;
//   fs.name = "kvs";                                  // its global name
//   fs.nodes = {"pi1@lab", "pi2@lab", "pi3@lab"};     // priority order
//   fs.start = [](kith::node& n) { return n.spawn(kvs_actor); };
//   kith::failover_service fo(node, names, fs);       // on EVERY listed node
//
// The rule, applied by each listed node from what it sees (connected
// cluster members, nodeup/nodedown), plus one confirmation round:
//   * a listed node is "live" if it is this node or connected to it as a
//     cluster member;
//   * this node WANTS the instance iff it sees a strict majority of the
//     list live (keep-majority) and it is the first live node of the list;
//   * when it has wanted it continuously for `delay` and the global name is
//     free (as this node knows), it asks the other listed nodes' controllers
//     (registered as "kith.failover.<name>") whom they see first; it starts
//     the instance only when a strict majority of the list (itself
//     included) name it, then registers the instance under the name. The
//     round matters when links fail one at a time: with only a-b cut, b
//     sees {b, c}, a majority with itself first, but c still sees a and
//     does not vote for b, so b does not start a second instance;
//   * a node that stops wanting it (lost its
//     majority, or a higher node is live again) stops its instance at once
//     with exit signal `shutdown` (`kill` after `stop_timeout`). The name is
//     freed when the instance ends, so a higher node that returns takes over
//     only after the lower one's instance has ended (handover, never two).
//
// Why this never runs two instances in one majority: a start needs a
// majority naming the starter, and two majorities of one list overlap; a
// minority node stops its instance when it notices the loss (heartbeat
// timeout), while the majority starts one only `delay` after noticing it,
// so `delay` must exceed the difference between the two detection times
// (at most one heartbeat interval plus one check of the heartbeat timeout:
// 0.6 s with the defaults; default delay 750 ms).
// If it ever happened (clock-free but timing-based), the global name's
// conflict rule ends one instance when the sides meet. With an even split
// (2 of 4) no side has a majority and nothing runs: availability is given
// up for uniqueness, as keep-majority does. Failover time after an unplug:
// the time to notice (immediate for a closed connection, the heartbeat
// timeout for a silent node) plus `delay`.
//
// Every node of the list must run a failover_service with the same spec and
// all must be connected to each other (a full mesh, as global names need).
// Only listed cluster members' questions are answered; anything else sent
// to a controller is ignored (and logged).
//
// Thread-safety: running_here()/instance() may be called from any thread.
// Ownership: the object owns its controller actor and, when running here,
// the instance; destroying it stops both (the name is freed). The node and
// the global_names must outlive it. Errors: the constructor throws
// setup_error for an empty name, an empty start function, a list without
// this node, a list with duplicates, or a second failover_service with the
// same name on this node.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kith/global.hpp"
#include "kith/log.hpp"
#include "kith/node.hpp"

namespace kith {

struct failover_spec {
    std::string name;                          // the global name of the instance
    std::vector<std::string> nodes;            // priority list, first = preferred
    std::function<pid(node&)> start;           // starts the instance (a local pid); runs on the controller
    std::chrono::milliseconds delay{750};      // how long to want it before starting it (> heartbeat interval + 0.1 s)
    std::chrono::milliseconds check_interval{100};
    std::chrono::milliseconds stop_timeout{2000};  // shutdown, then kill
    log_sink log;                              // start/stop decisions (unset: kith's default sink)
};

namespace detail {
struct failover_state;
}

class failover_service {
public:
    failover_service(node& n, global_names& names, failover_spec spec);
    ~failover_service();
    failover_service(const failover_service&) = delete;
    failover_service& operator=(const failover_service&) = delete;

    // True while this node's instance runs.
    bool running_here() const;
    // This node's instance, or the null pid.
    pid instance() const;

private:
    node* n_;
    std::shared_ptr<detail::failover_state> s_;
};

}  // namespace kith
