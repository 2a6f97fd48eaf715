// bulk.hpp (private to transport/) — what the send path needs to know of
// large envelopes: the thresholds, the destination key, the queued item.
// The code is in bulk.cpp; docs/protocol.md §5.9 has the rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kith/envelope.hpp"

namespace kith::detail {

// Large envelopes to cluster members (docs/protocol.md §5.9): an envelope
// whose encoding is over fragment_threshold goes in fragments of at most
// fragment_bytes, at most fragment_window bytes in flight (not yet
// credited by the receiver), so that envelopes to other destinations pass
// it. Later envelopes to the same destination (dest_key) queue behind it.
constexpr std::size_t fragment_threshold = 64u << 10;
constexpr std::size_t fragment_bytes = 64u << 10;
constexpr std::size_t fragment_window = 256u << 10;

// What must stay in order behind a large envelope: envelopes with the same
// key. An actor's pid (its serial: every destination is on the peer), a
// registered name, a service; 0 for everything else (one lane). Keys that
// collide only keep more in order.
std::uint64_t dest_key(const envelope& e) noexcept;

// An envelope queued behind a large one of its destination, or a large one.
struct bulk_item {
    std::uint64_t key = 0;
    std::string bytes;   // the envelope's encoding (no frame header)
    bool large = false;  // goes in fragments
};

}  // namespace kith::detail
