// What `kith node` runs for availability (docs/availability.md): the global
// name server, process-group scope servers and failover services, and the
// functions of the admin service "node" that the commands whereis, groups
// and call/send --global ask (cluster members only, as every admin service):
//   global_whereis(Name)  -> [Pid, StampMs] | nil
//   global_names()        -> [[Name, Pid, StampMs]...] (sorted by name)
//   pg_groups(Scope)      -> {Group: [Pid...]}; badarg if this node does
//                            not run that scope
//   failovers()           -> [{"name", "nodes", "running_here", "instance"}...]
// A failover service run by `kith node --failover NAME=N1,N2,...` starts, on
// the first live node of the list, an actor that answers every request M
// with {"node": <its node>, "pid": <itself>, "got": M} and is registered
// globally as NAME. With `--join G,...` one such actor (it also prints each
// plain message it gets) joins the groups G of the first scope.
//
// Ownership: the host owns its servers; it must be destroyed before the node
// stops. The exported functions hold only a weak reference: after the host
// is gone they answer errc::shutdown. Thread-safety: the functions may run
// concurrently (the servers are thread-safe).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "kith/node.hpp"
#include "kith/service.hpp"

namespace kith::cli {

struct avail_options {
    std::vector<std::string> scopes{"default"};  // pg scopes to serve
    // NAME=N1,N2,... (names without '@' get this machine's hostname).
    std::vector<std::string> failovers;
    std::chrono::milliseconds failover_delay{750};  // failover_spec's default
    // Groups (of the first scope) that one actor of this node joins.
    std::vector<std::string> join;
};

class avail_host {
public:
    // Throws cli_error for a bad scope or failover spec.
    avail_host(kith::node& n, const avail_options& o);
    ~avail_host();
    avail_host(const avail_host&) = delete;
    avail_host& operator=(const avail_host&) = delete;
    // Adds the functions above to `node_admin` (the "node" service).
    void export_to(service& node_admin);
    // One line per failover for the start-up banner ("" if none).
    std::string describe() const;

    struct state;

private:
    std::shared_ptr<state> s_;
};

// `kith call --global NAME MESSAGE` and `kith send --global NAME MESSAGE`.
int call_global(int argc, char** argv);
int send_global(int argc, char** argv);
// True if the arguments hold the flag `--global`.
bool has_global_flag(int argc, char** argv);

}  // namespace kith::cli
