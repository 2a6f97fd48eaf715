// kith/grants.hpp — grants: keys a node's owner hands to a friend.
//
// A grant is a fresh client keypair that Alice's node issues, bound to
// services (optionally narrowed to named functions and actor types), a rate
// (token bucket), an optional expiry and a label. Whoever holds the grant
// file may connect to Alice's node and use exactly that, nothing more. Alice
// checks it on her own node for every message, against the live grant table,
// so revocation and rate changes take effect on the next message.
// See docs/security.md for the model in plain words and docs/protocol.md,
// "Grant files", for the file format.
//
//   // Alice
//   auto g = alice.grant({.label = "bob", .allow = {{"kvs", {}}}, .rate = {10, 20}});
//   g->save("bob.grant");                          // hand this file to Bob
//   alice.revoke_grant("bob");                     // later
//
//   // Bob
//   auto f = kith::grant_file::load("bob.grant");  // errors say what is wrong
//   auto alice_name = bob.connect(*f);             // -> "alice@pi1"
//   bob.call(*alice_name, "kvs", "store", kith::arr("k", 1));
//
// The node methods that act on grants are on kith::node (kith/node.hpp):
// grant, grants, revoke_grant, set_grant_rate, set_grant_limits, set_public, connect(grant_file).
//
// Thread-safety: plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kith/error.hpp"
#include "kith/keys.hpp"
#include "kith/term.hpp"

namespace kith {

// A token bucket: `per_second` tokens refill each second up to `burst`.
// Every call, cast, spawn, send, request, monitor, link and linked exit
// under the grant takes one token; without a token the operation is refused
// with errc::rate_limited (calls, spawns and requests are answered with it;
// casts and sends, which have no answer, are dropped and counted in
// grant_info::rate_limited). The bucket starts full.
// per_second <= 0 means unlimited.
struct rate_limit {
    double per_second = 10;
    double burst = 20;
    // "10/s", "10/s,burst=20" or "unlimited"; without burst= the burst is
    // twice the rate (at least 1). errc::badarg with the reason otherwise.
    static result<rate_limit> parse(std::string_view text);
    std::string to_string() const;
    friend bool operator==(const rate_limit&, const rate_limit&) = default;
};

// What one grant's key may hold on the node at once (docs/security.md,
// "Bounds"), all its sessions together. 0 in a field: the node's default for
// grantees (pending 64, spawned 256, queued 4 MiB, relations 4096). Set
// lower for a grantee you trust less, higher (up to 16x the default) for a
// heavy but trusted one. Over a limit the grantee's request is refused with
// errc::overloaded, the detail naming the limit ("limit pending: ...").
struct grant_limits {
    static constexpr std::uint64_t default_pending = 64, default_spawned = 256,
                                   default_queued_bytes = 4u << 20, default_relations = 4096;
    std::uint64_t pending = 0;       // calls, casts and spawns in flight (queued or running)
    std::uint64_t spawned = 0;       // actors it spawned that are alive
    std::uint64_t queued_bytes = 0;  // bytes of its messages waiting in local mailboxes
    std::uint64_t relations = 0;     // monitors and links it holds on local processes
    // "pending=8,spawned=4,queued=1048576,relations=100" (any subset, any
    // order; queued in bytes), or "default". Each value 1..16x the default;
    // errc::badarg otherwise, the detail naming the limit and its bounds
    // ("pending must be 1..1024 (16x the default 64; got 0)").
    static result<grant_limits> parse(std::string_view text);
    // For limits set field by field: each field 0 (the default) or
    // 1..16x the default; errc::badarg as parse's otherwise.
    result<void> check() const;
    // The inverse: only the fields that are set; "default" if none is.
    std::string to_string() const;
    bool is_default() const noexcept { return !pending && !spawned && !queued_bytes && !relations; }
    // The limit in force for each: the field, or the default when it is 0.
    std::uint64_t max_pending() const noexcept { return pending ? pending : default_pending; }
    std::uint64_t max_spawned() const noexcept { return spawned ? spawned : default_spawned; }
    std::uint64_t max_queued_bytes() const noexcept { return queued_bytes ? queued_bytes : default_queued_bytes; }
    std::uint64_t max_relations() const noexcept { return relations ? relations : default_relations; }
    friend bool operator==(const grant_limits&, const grant_limits&) = default;
};

// What a grant allows: service -> names within it (functions and actor
// types). An empty list allows the whole service.
using grant_scope = std::map<std::string, std::vector<std::string>>;
// "kvs,echo:echo,demo:rpc_server" -> {kvs: [], echo: [echo], demo: [rpc_server]}.
// Names are 1-64 of [A-Za-z0-9._-]; "kvs" together with "kvs:store" means the
// whole of kvs. errc::badarg with the reason otherwise (also for "").
result<grant_scope> parse_grant_scope(std::string_view text);
// The inverse: "demo:rpc_server,echo:echo,kvs" (sorted by service).
std::string format_grant_scope(const grant_scope& scope);

struct grant_spec {
    // Unique on the node: 1-64 of [A-Za-z0-9._-]. errc::badarg otherwise or
    // if a grant with this label exists.
    std::string label;
    grant_scope allow;
    rate_limit rate{};
    // Unset: never expires. An expired grant behaves as revoked.
    std::optional<std::chrono::system_clock::time_point> expires;
    // What its key may hold at once; all 0: the node's defaults.
    grant_limits limits{};
};

// One row of a node's grant table (as kith grant list shows it).
struct grant_info {
    std::string label;
    grant_scope allow;
    rate_limit rate;
    grant_limits limits;  // 0 in a field: the node's default
    std::optional<std::chrono::system_clock::time_point> expires;
    std::chrono::system_clock::time_point created;
    std::string fingerprint;         // of the grant's client public key
    bool revoked = false;
    bool expired = false;
    bool connected = false;          // the holder is connected now
    std::uint64_t accepted = 0;      // operations allowed (since the node started)
    std::uint64_t refused = 0;       // unauthorized / revoked
    std::uint64_t rate_limited = 0;  // refused for rate
    // As a term: map with the fields above (times as ISO 8601 UTC strings).
    term to_term() const;
};

// The file Alice hands to Bob: everything Bob needs to connect. Readable by a
// person; versioned; contains a secret key (saved with mode 0600).
struct grant_file {
    // Version 2 adds relay routes, version 3 the grant's limits. A file is
    // written with the lowest version that holds what it carries (1 without
    // relay routes or limits), so an older kith still reads it when it can.
    // All three versions are read.
    static constexpr int current_version = 3;
    // As read, or 1 for a grant node::grant issued; to_text() writes 3 when
    // `limits` is not all defaults, else 2 when `relays` is not empty, else
    // 1, whatever this says.
    int version = current_version;
    std::string node;                    // Alice's node name, "alice@pi1"
    std::vector<std::string> endpoints;  // where to dial Alice, "tcp://192.0.2.7:4370"
    // Where else Alice is reachable: a relay (kith/relay.hpp) she registers
    // at. The grantee tries `endpoints` first, then these in order: it
    // connects to the relay node (`endpoint`, proving `key`) and dials `node`
    // (the field above) through it; CURVE with `server_key` stays end to
    // end, so the relay is never trusted with Alice's key. No secret here.
    struct relay_route {
        std::string node;      // the relay's node name, "relay@vps"
        std::string endpoint;  // its kith endpoint, "tcp://203.0.113.5:4370"
        public_key key;        // its node key
        friend bool operator==(const relay_route&, const relay_route&) = default;
    };
    std::vector<relay_route> relays;     // at most 8; a file needs an endpoint or a relay
    public_key server_key;               // Alice's node key
    keypair client;                      // the grant's keypair
    // For information only (Alice's node enforces its own table):
    std::string label;
    grant_scope allow;
    rate_limit rate;
    std::optional<std::chrono::system_clock::time_point> expires;
    // What the grant's key may hold on the node at once when the file was
    // issued (all 0: the node's defaults; "limits:" line, version 3). The
    // owner may change them later (kith grant limits): a refusal names the
    // limit in force ("limit pending: ...").
    grant_limits limits;

    std::string to_text() const;
    // errc::decode with a message that says what is wrong (truncated, wrong
    // version, bad key, checksum mismatch, ...). Never throws.
    static result<grant_file> parse(std::string_view text);
    static result<grant_file> load(const std::filesystem::path& file);
    // Writes atomically with mode 0600. errc::badarg with the OS error.
    result<void> save(const std::filesystem::path& file) const;
};

}  // namespace kith
