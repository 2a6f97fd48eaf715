// seen.cpp — a received beacon, checked and applied to the seen table (see
// discovery_impl.hpp). Order of the checks, cheapest and least exploitable
// first: a copy of (or anything not newer than) a sender's newest beacon
// taken, from the fixed header and a keyed digest, before anything else
// (known_copy: a replay flood costs no HMAC); decoding and the HMAC
// (beacon.cpp), freshness and replay for authenticated beacons, then the flood budgets (per source for members,
// one shared budget for everything unauthenticated), and only then the
// table. A stranger never takes a member's name, never downgrades or removes
// its entry; a connected node's entry is decided by its connection.
#include <arpa/inet.h>
#include <sodium.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "discovery_impl.hpp"

namespace kith {

using namespace detail;

std::uint64_t discovery::impl::skew_ms() const {
    return static_cast<std::uint64_t>(std::max<long long>(0, o.max_clock_skew.count()));
}

void discovery::impl::prune(clock_type::time_point now) { budgets.prune(now, disc::wall_ms(), skew_ms()); }

// An authenticated beacon: fresh against our clock, then strictly newer than
// the sender's newest accepted beacon (the timestamp is MAC'd), then within
// its source's budget. Counts (and hints) what it drops.
std::uint64_t discovery::impl::digest(std::span<const std::uint8_t> data) const {
    std::uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, data.data(), data.size(), copy_key.data());
    std::uint64_t v;
    std::memcpy(&v, h, sizeof v);
    return v;
}

bool discovery::impl::known_copy(std::span<const std::uint8_t> data, clock_type::time_point now) {
    auto h = peek_cluster_header(data);
    if (!h) return false;
    if (h->key == my_key && (h->name == my_name || h->type == beacon_type::query)) {
        // Our own (as handle() would find after the HMAC), or a forgery of it.
        std::lock_guard lk(mu);
        ++c.beacons_received;
        return true;
    }
    auto it = budgets.senders.find(h->key);
    if (it == budgets.senders.end() || h->timestamp_ms > it->second.ts) return false;
    // Not newer than the sender's newest beacon: dropped whatever its HMAC
    // would say (fresh_and_new would drop it after the HMAC). Only a copy
    // of that very beacon, byte for byte (its keyed digest), is a sign of life.
    const bool same = h->timestamp_ms == it->second.ts && h->nonce == it->second.nonce &&
                      h->type == beacon_type::announce && digest(data) == it->second.digest;
    std::lock_guard lk(mu);
    ++c.beacons_received;
    if (same)
        if (auto e = seen.find(h->name); e != seen.end() && e->second.info.key == h->key && e->second.cluster) {
            e->second.info.last_seen = now;
            ++c.duplicates;
            return true;
        }
    ++c.replayed;
    return true;
}

bool discovery::impl::fresh_and_new(const beacon& b, std::span<const std::uint8_t> data, const sockaddr_in& from,
                                    clock_type::time_point now) {
    const auto wall = disc::wall_ms();
    const auto skew = skew_ms();
    if (b.timestamp_ms + skew < wall || b.timestamp_ms > wall + skew) {
        count(&discovery_counters::stale);
        long long off = static_cast<long long>(b.timestamp_ms) - static_cast<long long>(wall);
        hint("clock " + b.key.z85(),
             "clock: the beacons of " + b.name + " (key " + b.key.fingerprint() + ") are " +
                 std::to_string(std::llabs(off) / 1000) + " s " + (off < 0 ? "behind" : "ahead of") +
                 " our clock (more than " + std::to_string(skew / 1000) +
                 " s allowed) and are ignored; set both clocks (NTP, or date -s)");
        return false;
    }
    auto it = budgets.senders.find(b.key);
    if (it != budgets.senders.end() && b.timestamp_ms <= it->second.ts) {
        if (b.timestamp_ms == it->second.ts && b.nonce == it->second.nonce && b.type == beacon_type::announce) {
            // The same beacon again (a second path): only a sign of
            // life; nothing in it (nor its source address) is used.
            std::lock_guard lk(mu);
            if (auto e = seen.find(b.name); e != seen.end() && e->second.info.key == b.key && e->second.cluster) {
                e->second.info.last_seen = now;
                ++c.duplicates;
                return false;
            }
        }
        count(&discovery_counters::replayed);
        return false;
    }
    if (!budgets.source(from.sin_addr.s_addr, now).cluster.take(o.max_beacons_per_s, o.max_beacons_per_s, now)) {
        count(&discovery_counters::rate_limited);
        return false;
    }
    if (it == budgets.senders.end()) {
        if (budgets.senders.size() >= budgets.max_senders) prune(now);
        if (budgets.senders.size() >= budgets.max_senders) {
            count(&discovery_counters::rate_limited);
            return false;
        }
        it = budgets.senders.emplace(b.key, disc::flood_budgets::sender_state{}).first;
    }
    it->second = {b.timestamp_ms, b.nonce, digest(data)};
    return true;
}

void discovery::impl::handle(std::span<const std::uint8_t> data, const sockaddr_in& from, bool broadcast_dst) {
    if (hkey && known_copy(data, clock_type::now())) return;
    auto d = decode_beacon(data, hkey ? &*hkey : nullptr);
    {
        std::lock_guard lk(mu);
        ++c.beacons_received;
        if (d.status == beacon_status::malformed) {
            ++c.malformed;
            return;
        }
        if (d.status == beacon_status::bad_hmac) {
            ++c.bad_hmac;
            return;
        }
    }
    beacon& b = d.b;
    if (b.key == my_key && (b.name == my_name || b.type == beacon_type::query)) return;  // our own
    const bool cluster = d.status == beacon_status::ok_cluster;
    auto now = clock_type::now();
    if (cluster) {
        if (!fresh_and_new(b, data, from, now)) return;
    } else if (!budgets.strangers.take(o.max_stranger_beacons_per_s, o.max_stranger_beacons_per_s, now)) {
        count(&discovery_counters::rate_limited);
        return;
    }
    if (b.type == beacon_type::query) {
        answer(cluster, data.size(), from, broadcast_dst, now);
        return;
    }
    char ip[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
    // E = 0: the MAC covers the tcp port; the source address is only a
    // hint (a dial elsewhere reaches a host that cannot complete CURVE
    // with this node key), and a copy of an accepted beacon from another
    // source changes nothing (above).
    const std::string endpoint =
        !b.endpoint.empty() ? b.endpoint : "tcp://" + std::string(ip) + ":" + std::to_string(b.tcp_port);
    if (b.name == my_name) {
        // Another node using our name (the transport refuses it as a
        // member): say so once per key.
        if (b.key != my_key && b.type == beacon_type::announce)
            hint("clash " + b.key.z85(), "name clash: another node calls itself " + my_name + " (key " +
                                             b.key.fingerprint() + " at " + endpoint +
                                             "); one of you should choose another name: kith node --name NAME");
        return;
    }
    const bool zero_id = std::all_of(d.cluster_id.begin(), d.cluster_id.end(), [](auto c) { return c == 0; });
    const std::string their_cluster = zero_id ? std::string() : disc::id_hex(d.cluster_id.data());
    if (b.endpoint.empty() && b.tcp_port == 0) {
        std::lock_guard lk(mu);
        ++c.malformed;
        return;
    }
    const bool connected = n.info(b.name).has_value();
    std::unique_lock lk(mu);
    auto it = seen.find(b.name);
    if (b.type == beacon_type::leaving) {
        if (it == seen.end() || it->second.info.key != b.key) return;
        if (cluster && connected) {
            // The connection says it is alive; its goodbye (or its
            // heartbeats) decide, never a datagram.
            ++c.spoofed_leaves;
            return;
        }
        if (!cluster && it->second.cluster) return;  // a stranger cannot remove a member
        seen.erase(it);
        return;
    }
    // announce
    if (it != seen.end()) {
        entry& e = it->second;
        if (!cluster && e.cluster) {
            // A stranger never takes a member's name, nor downgrades its
            // entry (not even with the member's own public key).
            ++c.key_conflicts;
            return;
        }
        if (e.info.key != b.key) {
            // The name is pinned to the first key while that node is
            // connected.
            if (connected) {
                ++c.key_conflicts;
                return;
            }
            if (e.cluster && cluster) {
                // a member restarted with another key: start afresh
                seen.erase(it);
                it = seen.end();
            } else if (!cluster) {
                ++c.key_conflicts;  // two strangers: the first keeps the name until it expires
                return;
            } else {
                seen.erase(it);  // a member replaces a stranger that used its name
                it = seen.end();
            }
        }
    } else if (!cluster && connected) {
        ++c.key_conflicts;  // a stranger using the name of a connected node
        return;
    }
    if (it == seen.end()) {
        if (seen.size() >= max_seen && !cluster) return;  // bounded: a flood of invented strangers
        it = seen.emplace(b.name, entry{}).first;
        it->second.first_heard = now;
    }
    entry& e = it->second;
    e.cluster = cluster;
    e.info.name = b.name;
    e.info.endpoint = endpoint;
    e.info.member_endpoint.clear();
    if (cluster && b.member_port != 0)
        if (auto colon = endpoint.rfind(':'); colon != std::string::npos)
            e.info.member_endpoint = endpoint.substr(0, colon + 1) + std::to_string(b.member_port);
    e.info.key = b.key;
    e.info.fingerprint = b.key.fingerprint();
    e.info.trust = cluster ? trust_level::cluster : trust_level::stranger;
    e.info.services = cluster ? b.services : b.public_services;
    e.info.last_seen = now;
    e.info.cluster_id = their_cluster;
    const bool fresh_stranger = !cluster && e.first_heard == now;
    cv.notify_all();
    if (cluster && o.auto_connect && !connected) maybe_dial(e, now, lk);
    if (fresh_stranger && o.announce && b.type == beacon_type::announce) {
        lk.unlock();
        hint("stranger " + b.name,
             "stranger " + b.name + " at " + endpoint + ": another cookie (its cluster id " +
                 (their_cluster.empty() ? std::string("none") : their_cluster) + ", ours " + my_cluster +
                 "); to work together, start both nodes with the same --cookie");
    }
}

void discovery::impl::expire(clock_type::time_point now) {
    auto ttl = std::max<clock_type::duration>(3 * o.interval, std::chrono::seconds(3));
    std::vector<std::string> names;
    {
        std::lock_guard lk(mu);
        for (auto& [k, e] : seen)
            if (now - e.info.last_seen > ttl) names.push_back(k);
    }
    for (auto& k : names) {
        if (n.info(k)) continue;  // connected: the connection decides
        std::lock_guard lk(mu);
        if (auto it = seen.find(k); it != seen.end() && now - it->second.info.last_seen > ttl && !it->second.dialing)
            seen.erase(it);
    }
}

std::vector<seen_node> discovery::impl::list() const {
    std::vector<seen_node> v;
    {
        std::lock_guard lk(mu);
        for (auto& [k, e] : seen) v.push_back(e.info);
    }
    for (auto& s : v) s.connected = n.info(s.name).has_value();
    return v;
}
}  // namespace kith
