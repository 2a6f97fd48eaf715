// rkvs_table.hpp — internal to kith::services: the replicated kvs's CRDT map
// (last writer wins per key, tombstones with a lifetime), its hybrid logical
// clock, its limits and its wire form. No networking here; rkvs.cpp uses it.
// Not thread-safe by itself: rkvs.cpp guards it with a mutex.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kith/error.hpp"
#include "kith/rkvs.hpp"
#include "kith/term.hpp"

namespace kith::detail {

// The hybrid logical clock: (wall ms << 16) + counter, strictly increasing
// for stamps this replica hands out, never below a stamp it has stored.
class hlc {
public:
    std::int64_t now();
    // Moves the clock up to `seen` unless `seen` is more than max_ahead_ms
    // in the future of our wall clock (a peer with a clock far ahead would
    // otherwise drag every later write of ours with it).
    void observe(std::int64_t seen);
    static std::int64_t wall_ms();
    static constexpr std::int64_t max_ahead_ms = 60'000;

private:
    std::int64_t last_ = 0;
};

// The winner of two entries for one key: larger stamp, then larger node.
bool newer(const rkvs_entry& a, const rkvs_entry& b);

struct merge_counts {
    std::size_t applied = 0, stale = 0, refused = 0;
    std::string first_refusal;  // why the first refused entry was refused
};

class rkvs_map {
public:
    explicit rkvs_map(const rkvs_options& o) : o_(&o) {}

    // Checks a write from a client against the limits: badarg for a key or
    // value too big, overloaded for a full map. Error texts name the limit.
    result<void> check_write(const std::string& key, const std::optional<term>& value) const;
    // Merges one entry (the CRDT join). Returns true if it changed the map;
    // false for an older or equal entry. Entries past a limit, and
    // tombstones already past their lifetime, are refused (counted in c).
    bool merge(const std::string& key, const rkvs_entry& e, merge_counts& c, std::int64_t now_ms);
    const rkvs_entry* find(const std::string& key) const;
    std::vector<std::string> live_keys() const;
    std::size_t size() const { return entries_.size(); }
    std::uint64_t digest() const;
    // Drops tombstones older than the lifetime; returns how many.
    std::size_t purge(std::int64_t now_ms);
    // The whole map as wire chunks, each at most max_chunk_bytes encoded
    // (one entry bigger than that goes alone in its chunk).
    std::vector<term> chunks(std::size_t max_chunk_bytes) const;

private:
    const rkvs_options* o_;
    std::map<std::string, rkvs_entry> entries_;
    std::size_t bytes_ = 0;  // keys + encoded values
    std::size_t cost(const std::string& key, const rkvs_entry& e) const;
    bool tombstone_expired(const rkvs_entry& e, std::int64_t now_ms) const;
};

// Wire form of an entry: [Key, Value | nil, Stamp, Node, Deleted].
term entry_term(const std::string& key, const rkvs_entry& e);
// Parses one; false (with why) for a malformed one.
bool parse_entry(const term& t, std::string& key, rkvs_entry& e, std::string& why);

}  // namespace kith::detail
