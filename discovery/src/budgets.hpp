// budgets.hpp (private) — discovery's flood limits and replay state
// (discovery_options: max_beacons_per_s, max_stranger_beacons_per_s,
// max_answers_per_s). Used by the discovery thread only: no locking.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>

#include "kith/keys.hpp"

namespace kith::disc {

// A token bucket that starts full.
struct bucket {
    using clock_type = std::chrono::steady_clock;
    double tokens = -1;  // < 0: new, starts full
    clock_type::time_point at{};
    bool take(double rate, double burst, clock_type::time_point now) {
        rate = std::max(rate, 0.001);
        if (tokens < 0) tokens = burst;
        else tokens = std::min(burst, tokens + rate * std::chrono::duration<double>(now - at).count());
        at = now;
        if (tokens < 1) return false;
        tokens -= 1;
        return true;
    }
};

struct flood_budgets {
    using clock_type = std::chrono::steady_clock;
    // Per source address: authenticated beacons, and answers to its
    // unauthenticated unicast queries.
    struct source_budget {
        bucket cluster, answers;
        clock_type::time_point used{};
    };
    static constexpr std::size_t max_sources = 1024;  // beyond: new sources share `overflow`
    std::map<std::uint32_t, source_budget> sources;
    source_budget overflow;
    // Shared by everything unauthenticated: strangers' beacons and queries;
    // all answers to unauthenticated queries.
    bucket strangers, answers;

    // Replay protection: the newest authenticated beacon of each sender key
    // (kept while it is within the skew: older ones are stale anyway), and
    // a keyed digest of its bytes (crypto_shorthash, discovery's own random
    // key): a datagram with that digest is a copy of it, known without its
    // HMAC.
    struct sender_state {
        std::uint64_t ts = 0, nonce = 0, digest = 0;
    };
    static constexpr std::size_t max_senders = 4096;
    std::map<public_key, sender_state> senders;

    // The budget of a source address (the shared overflow one when the table
    // is full); marks it used now.
    source_budget& source(std::uint32_t addr, clock_type::time_point now) {
        auto it = sources.find(addr);
        if (it == sources.end()) {
            if (sources.size() >= max_sources) return overflow;
            it = sources.emplace(addr, source_budget{}).first;
        }
        it->second.used = now;
        return it->second;
    }

    // Forgets senders whose newest beacon is older than the skew (wall
    // clock, ms) and sources idle for 10 s.
    void prune(clock_type::time_point now, std::uint64_t wall_ms, std::uint64_t skew_ms) {
        for (auto it = senders.begin(); it != senders.end();)
            it = it->second.ts + skew_ms < wall_ms ? senders.erase(it) : std::next(it);
        for (auto it = sources.begin(); it != sources.end();)
            it = now - it->second.used > std::chrono::seconds(10) ? sources.erase(it) : std::next(it);
    }
};

}  // namespace kith::disc
