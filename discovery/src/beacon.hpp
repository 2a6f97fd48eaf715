// beacon.hpp (private to kith::discovery) — the UDP discovery beacon codec.
// The format is normative in docs/protocol.md, "Discovery beacon"; its golden
// vectors are checked by tests/discovery/test_beacon.cpp.
//
// Pure functions: no I/O, no state. Decoding is bounded (a datagram is at most
// beacon_max_bytes; every length is checked before it is used) and never
// throws: anything that is not a well-formed beacon is reported as malformed.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kith/keys.hpp"

namespace kith::detail {

inline constexpr std::array<std::uint8_t, 4> beacon_magic{'k', 'i', 't', 'h'};
inline constexpr std::uint8_t beacon_version = 1;
// Every beacon fits one datagram of this size (below any Ethernet/Wi-Fi MTU);
// a query is padded to exactly this size, so an answer is never bigger.
inline constexpr std::size_t beacon_max_bytes = 1200;
inline constexpr std::size_t beacon_query_bytes = beacon_max_bytes;
inline constexpr std::size_t beacon_max_services = 32;       // per list
inline constexpr std::size_t beacon_max_service_len = 64;
inline constexpr std::size_t beacon_hmac_bytes = 32;
inline constexpr std::size_t beacon_fixed_bytes = 58;        // header up to the name

enum class beacon_type : std::uint8_t { announce = 1, leaving = 2, query = 3 };

struct beacon {
    beacon_type type = beacon_type::announce;
    std::uint64_t timestamp_ms = 0;   // sender's wall clock, ms since the Unix epoch
    std::uint64_t nonce = 0;          // random per beacon
    std::uint16_t tcp_port = 0;       // the node's TCP port (0 in a query from a node without network)
    public_key key;                   // the node's long-term public key (its identity)
    std::string name;                 // "name@host"
    std::string endpoint;             // advertised endpoint; empty = source address + tcp_port
    std::vector<std::string> public_services;   // in clear, for everyone
    bool cluster = false;             // the cluster section (services + HMAC) is present
    std::vector<std::string> services;          // cluster section: all services
    // Cluster section: the member port (docs/security.md, "The member
    // port"), on the host of the public endpoint; 0 = none (flag 0x02 clear:
    // a beacon of a node without one, or of an older kith).
    std::uint16_t member_port = 0;

    friend bool operator==(const beacon&, const beacon&) = default;
};

// What a cluster's cookie gives the beacon: the HMAC key and the cluster id
// (a public tag that tells a member's beacon from another cluster's).
struct beacon_hmac_key {
    std::array<std::uint8_t, 32> hmac{};   // derive_cookie_key(cookie, "beacon-hmac")
    std::array<std::uint8_t, 8> id{};      // first 8 bytes of derive_cookie_key(cookie, "beacon-cluster-id")
    static beacon_hmac_key from_cookie(std::string_view cookie);
    // From the two derived keys (kith::node::cookie_key).
    static beacon_hmac_key from_keys(const std::array<std::uint8_t, 32>& hmac,
                                     const std::array<std::uint8_t, 32>& id);
};
inline constexpr std::size_t beacon_cluster_id_bytes = 8;

// Encodes `b`. With b.cluster the cluster section is added and authenticated
// with `key` (required then). Services that do not fit the limits (count,
// length, beacon_max_bytes) are left out: beacons are hints, the connection
// handshake carries the full list. A query is padded to beacon_query_bytes.
// The name and endpoint must fit (≤ 255 bytes each); otherwise an empty
// vector is returned.
std::vector<std::uint8_t> encode_beacon(const beacon& b, const beacon_hmac_key* key);

enum class beacon_status {
    ok_cluster,   // well formed, our cluster's section present and its HMAC checks
    ok_stranger,  // well formed, no cluster section or another cluster's (its services are dropped)
    bad_hmac,     // well formed, our cluster id, HMAC does not check
    malformed,    // anything else
};

struct decoded_beacon {
    beacon_status status = beacon_status::malformed;
    beacon b;
    // The cluster id its cluster section names (ours or another's); all
    // zero without a cluster section.
    std::array<std::uint8_t, beacon_cluster_id_bytes> cluster_id{};
};

// Decodes one datagram. `key` may be null (a node without a cookie key):
// then any cluster section is another cluster's.
decoded_beacon decode_beacon(std::span<const std::uint8_t> data, const beacon_hmac_key* key);

// The fixed header of a datagram that looks like a beacon with a cluster
// section: magic, version, type and flags checked, nothing else, nothing
// authenticated. What discovery needs to drop, before the HMAC, a copy of a
// beacon it has taken already (docs/security.md, "Discovery").
struct beacon_header {
    beacon_type type = beacon_type::announce;
    std::uint64_t timestamp_ms = 0;
    std::uint64_t nonce = 0;
    public_key key;
    std::string_view name;  // into the datagram
};
std::optional<beacon_header> peek_cluster_header(std::span<const std::uint8_t> data);

}  // namespace kith::detail
