// The callee node of the two-process figures: node B in a process of its own
// (this program started again as `kith_bench --peer-node DIR`), as distributed
// Erlang's anchor runs its two nodes in two VMs. The shapes that compare with
// Erlang are then measured both ways: two nodes in one process (one ZeroMQ
// context, one network CPU for both) and one node per process (each with its
// own network threads, placed by its own process), which is what two
// machines, or two programs on one machine, run.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "kith/keys.hpp"
#include "kith/node.hpp"
#include "kith/service.hpp"

namespace kith::bench {

// The service the callee offers in every group: "echo" returns its argument,
// "worker" is an actor type that ends at once (like Erlang's spawned
// erlang:send).
kith::service bench_service();

// A running peer process; its destructor closes its stdin (it then stops its
// node and exits) and waits for it.
struct peer_process {
    pid_t pid = -1;
    int to_child = -1;  // the child's stdin
    std::string endpoint;
    kith::public_key key;
    ~peer_process();
};

// Starts node B (`net_node("b@bench", dir)` with bench_service()) in a new
// process (killed if the bench dies) and waits (at most 20 s) until it
// listens. Null, after saying why on stderr, when it did not start.
std::unique_ptr<peer_process> start_peer_process(const std::filesystem::path& dir);

// A peer process (key directory dir/b2p) and node A of this process
// (`net_node("a2p@bench", dir/a2p)`) connected to it. `bn` is the peer's
// name, empty (after saying why on stderr, naming `group` when the
// connection failed) when either failed.
struct peer_pair {
    std::unique_ptr<peer_process> peer;  // declared first: stopped after `a`
    std::optional<kith::node> a;
    std::string bn;
};
void start_peer_pair(peer_pair& p, const std::filesystem::path& dir, const char* group);

// The child's side (main() calls it for `--peer-node DIR`): prints
// "<endpoint> <key z85>" and serves until its stdin closes.
int serve_peer_node(const char* dir);

}  // namespace kith::bench
