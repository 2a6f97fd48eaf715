// kith/rkvs.hpp — the replicated kvs: the seeds' kvs (kith/builtin.hpp) with
// its values on a group of nodes, so it answers while any replica lives.
//
//   kith::rkvs_options o;
//   o.replicas = {"pi1@lab", "pi2@lab", "pi3@lab"};
//   kith::replicated_kvs kv(node, o);          // on EVERY listed node
//   // from anywhere in the cluster (or a grantee with a grant for "rkvs"):
//   node.call("pi2@lab", "rkvs", "store", kith::arr("answer", 42));
//   node.call("pi3@lab", "rkvs", "lookup", kith::arr("answer"));  // ["ok", 42]
//
// Service. Each replica exports the service `options.service` (default
// "rkvs") with the kvs functions, so a client moves from the single-node
// "kvs" by changing the service name only:
//   store(Key, Value) -> true        acknowledged (see "Writes" below)
//   lookup(Key)       -> ["ok", Value] | "undefined"
//   delete(Key)       -> true if the called replica held a value for Key,
//                        else false; either way a tombstone is written,
//                        acknowledged like store
//   keys()            -> [Key...] sorted: THIS replica's live keys (no
//                        network round; may lag behind the others)
// Call any replica; the one called coordinates. It sits beside the builtin
// "kvs" rather than replacing it: the builtin needs no configuration and
// every `kith node` hosts it alone; this one needs the same replica list on
// every replica and answers differently in a partition (see below).
//
// State. A state-based CRDT: a map Key -> (Value or tombstone, Stamp, Node).
// Two replicas merge key by key; of two entries the one with the larger
// (Stamp, Node) wins (last writer wins). Merging is commutative, associative
// and idempotent, so replicas that have received the same entries, in any
// order and any number of times, hold the same map. Stamp is a hybrid
// logical clock: (wall-clock ms << 16) + a counter, never below anything this
// replica has stored or handed out before. So a write that starts after
// another write's acknowledgement, on a replica that stored it, gets a
// larger stamp and wins; two concurrent writes (or writes in two
// partitions) are ordered by their stamps, i.e. roughly by wall clock, and
// the smaller one is lost even though both may have been acknowledged.
//
// Writes (store, delete). The coordinator refuses at once, storing
// nothing, when it cannot reach `write_quorum` replicas (itself included;
// default a strict majority of the list): errc::nodedown. Otherwise it
// stores the entry, sends it to every replica it is connected to, waits for
// all of their answers (each for at most ack_timeout) and acknowledges
// (true) only if at least write_quorum replicas stored it. Else it answers
// errc::timeout naming how many stored it: the write was NOT acknowledged
// but may still appear later (it is stored where it got to, and spreads by
// anti-entropy), as in Dynamo-style stores. So an acknowledged write is
// stored on a majority, and on every replica that was connected to the
// coordinator and answering at the time.
//
// Reads (lookup). The coordinator asks every replica it is connected to
// (each for at most read_timeout) and returns the newest entry of those
// answers and its own; stale replicas are repaired on the way. A lookup
// never needs a quorum, so it answers while any replica lives. It returns
// the latest acknowledged value whenever it reaches a replica that stored
// it: always when it reaches a majority (every majority overlaps the
// write's), and from any single replica for writes made while that replica
// was connected.
//
// Anti-entropy. When two replicas meet (nodeup), each pushes its whole map
// to the other; every sync_interval each compares a digest with every
// connected replica and pushes its map where they differ. After a
// partition heals, every replica holds every entry either side stored.
//
// Partitions. The side with a majority of the replicas keeps accepting
// writes; a minority side refuses them (nodedown) but still answers
// lookups with what it holds, which may miss writes made on the majority
// side meanwhile. After the heal both sides converge to the same map.
//
// Deletes are tombstones (an entry without a value) that count against the
// limits and are dropped tombstone_ttl after the delete (by the writer's
// stamp); a replica away for longer than tombstone_ttl may bring a deleted
// key back: wipe its state (restart it empty) before it rejoins.
//
// Bounds. Keys are 1..max_key_bytes bytes; a value's encoded (msgpack)
// size is at most max_value_bytes; the map holds at most max_keys entries
// (tombstones included) and max_total_bytes of keys and values. store past
// a limit answers errc::badarg (too big) or errc::overloaded (full), naming
// the limit. Entries from peers past a limit are refused and logged.
//
// Who may do what: the kvs functions are an ordinary service: cluster
// members may call them; grantees, visitors and strangers only what a grant
// (or set_public) gives them for this service name, checked by kith. The
// replicas talk to each other through the same service's functions
// "kith.merge", "kith.read" and "kith.digest", which answer only cluster
// members on the replica list (errc::unauthorized for anyone else, even a
// grantee whose grant names the whole service).
//
// Thread-safety: every method may be called from any thread; none blocks.
// Ownership: the object owns its table and its anti-entropy actor; the node
// must outlive it. Destroying it stops the actor; the service stays exported
// (kith cannot remove a service) but answers errc::shutdown. Errors: the
// constructor throws setup_error for a list without this node, with
// duplicates, a write_quorum above the list's size, or a bad service name.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kith/log.hpp"
#include "kith/node.hpp"
#include "kith/term.hpp"

namespace kith {

struct rkvs_options {
    std::string service = "rkvs";
    std::vector<std::string> replicas;            // node names; must include this node
    std::size_t write_quorum = 0;                 // 0: a strict majority of replicas
    std::chrono::milliseconds ack_timeout{2000};  // per replica, for store/delete
    std::chrono::milliseconds read_timeout{1000};  // per replica, for lookup
    std::chrono::milliseconds sync_interval{5000};  // digest comparison
    std::chrono::milliseconds tombstone_ttl{24 * 3600 * 1000};
    std::size_t max_key_bytes = 255;
    std::size_t max_value_bytes = 64 * 1024;
    std::size_t max_keys = 10000;
    std::size_t max_total_bytes = 64 * 1024 * 1024;
    log_sink log;  // refused entries, failed pushes (unset: kith's default sink)
};

// One entry as a replica holds it.
struct rkvs_entry {
    std::optional<term> value;  // nullopt: a tombstone
    std::int64_t stamp = 0;     // hybrid logical clock: (ms << 16) + counter
    std::string node;           // the coordinator that wrote it
};

namespace detail {
struct rkvs_state;
}

class replicated_kvs {
public:
    // Exports the service and starts the anti-entropy actor.
    replicated_kvs(node& n, rkvs_options opts);
    ~replicated_kvs();
    replicated_kvs(const replicated_kvs&) = delete;
    replicated_kvs& operator=(const replicated_kvs&) = delete;

    const rkvs_options& options() const noexcept;
    std::size_t write_quorum() const noexcept;
    // This replica's own entry for `key` (tombstones included), no network.
    std::optional<rkvs_entry> local(const std::string& key) const;
    // How many entries (tombstones included) this replica holds.
    std::size_t size() const;
    // An order-independent hash of this replica's whole map: two replicas
    // with equal digests hold the same entries.
    std::uint64_t digest() const;

private:
    node* n_;
    std::shared_ptr<detail::rkvs_state> s_;
};

}  // namespace kith
