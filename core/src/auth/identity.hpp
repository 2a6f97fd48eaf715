// auth/identity.hpp (private) — who a peer is. With gate.hpp this folder is
// the one place where kith decides trust (docs/security.md); everything here
// is a pure function of its arguments: no I/O, no locks, no clocks.
//
//   * the trust of a connection, from the ZAP User-Id it was admitted under
//     (unknown User-Ids are refused, never defaulted);
//   * the membership proof a server gives a client that connected with the
//     cluster key (docs/protocol.md, "Membership is proven both ways");
//   * which session may hold a node name ("identity is a key, not a name").
//
// The transport carries identities and asks; it never decides.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kith/keys.hpp"
#include "kith/net.hpp"

namespace kith::detail {

// How much a peer is trusted, from the User-Id of its messages. One enum for
// trust: this is the public kith::trust_level (kith/net.hpp) under the name
// auth has always used, so what auth decides and what node_info shows cannot
// drift apart. Its values, and the ZAP User-Id each comes from:
//   cluster   "cluster": proved it holds our cookie (both directions: see member_proof)
//   granted   "grant:<label>": a key we granted, connected to us
//   stranger  "stranger:<z85>": any key, admitted by the authorizer for public services
//   server    "server:<z85>": a non-cluster node *we* connected to (a grant we hold, or as a visitor)
using trust_kind = kith::trust_level;
// The word for a trust in User-Ids and in log lines: "cluster", "grant",
// "stranger", "server" (kith::to_string gives the public names, "granted"
// for a grant; both spellings are kept as they were before the merge).
std::string_view trust_word(trust_kind k) noexcept;

struct peer_auth {
    trust_kind kind = trust_kind::cluster;
    std::string user_id;   // as above; for inbound messages the ZAP User-Id verbatim
    public_key key;        // inbound: the client key; outbound: the server key
};

namespace auth {

// The trust of a ZAP User-Id; nullopt for anything this node's ZAP handler
// never issues (the connection is then refused: fail closed).
std::optional<trust_kind> kind_of_user_id(std::string_view uid) noexcept;

// ---- membership proof ---------------------------------------------------------------
// A client that dials with the cluster key proves it knows the cookie to the
// server through CURVE itself (only a cookie holder has that secret key). The
// server proves it back in its handshake:
//   proof = BLAKE2b-256 keyed with K = derive_cookie_key(cookie, "member-proof")
//           over "kith-member-proof-v1" || server key (32) || client key (32) || client nonce (16)
// bound to this connection by the client's fresh nonce and to both keys, so
// no other server key can replay it. Sent only to clients admitted as
// "cluster": a non-member never sees a value keyed by the cookie.
using proof_key = std::array<std::uint8_t, 32>;
inline constexpr std::string_view proof_purpose = "member-proof";
inline constexpr std::size_t nonce_bytes = 16;
std::string fresh_nonce();
std::string member_proof(const proof_key& k, const public_key& server, const public_key& client,
                         std::string_view client_nonce);
// Constant-time comparison with the expected proof; false for a wrong size.
bool check_member_proof(const proof_key& k, const public_key& server, const public_key& client,
                        std::string_view client_nonce, std::string_view proof);

// ---- node names ----------------------------------------------------------------------
// A handshake names node `name`; may its link's identity hold that name?
//   accept  the link opens (or joins, or restarts) the session of `name`;
//   refuse  the link is refused (`why` says so to the peer and in logs);
//   evict   the current holder's session is ended first (a cluster member
//           takes back a name a non-member holds), then the link opens it.
struct claim_verdict {
    enum kind { accept, refuse, evict } what = accept;
    std::string why;
};
// A handshake's claim on a node name, with what is known of its holder.
struct name_claim {
    std::string name;
    const peer_auth* claimant = nullptr;  // the link's identity (required)
    std::optional<public_key> claimant_key;  // the node key its handshake states
    const peer_auth* holder = nullptr;    // who holds `name` now (null: nobody)
    std::optional<public_key> holder_key; // the node key the holder's handshake stated
    std::string holder_endpoint;          // where the holder is (for the message)
    // `name` has been a proven cluster member of this node before, so no
    // non-member may take it, even while the member is away.
    bool reserved = false;
    // `name` is (or was) a node this node dialled as a server (a grant it
    // holds, or as a visitor), with this key: no inbound non-member takes it.
    std::optional<public_key> dialled_key;
};
// Members come first; among members a name belongs to the node key that
// holds it: another member's node (another key, e.g. a second Pi with the
// same hostname) is refused at once, with who holds it, so nobody flaps;
// the same node key with a new incarnation is a restart. The name of a
// server this node dialled stays that server's: a node we dial takes its
// name back from an inbound grantee or stranger, and none of those can take
// it while the server is away.
claim_verdict claim_name(const name_claim& c);

}  // namespace auth
}  // namespace kith::detail
