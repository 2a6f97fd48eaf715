// auth/identity.cpp — see identity.hpp.
#include "auth/identity.hpp"

#include <sodium.h>

namespace kith::detail {

std::string_view trust_word(trust_kind k) noexcept {
    switch (k) {
        case trust_kind::cluster: return "cluster";
        case trust_kind::granted: return "grant";
        case trust_kind::stranger: return "stranger";
        case trust_kind::server: return "server";
    }
    return "?";
}

namespace auth {

std::optional<trust_kind> kind_of_user_id(std::string_view uid) noexcept {
    if (uid == "cluster") return trust_kind::cluster;
    if (uid.starts_with("grant:") && uid.size() > 6) return trust_kind::granted;
    if (uid.starts_with("stranger:") && uid.size() > 9) return trust_kind::stranger;
    return std::nullopt;  // "server:" is never a ZAP User-Id: it names links we dialled
}

std::string fresh_nonce() {
    std::string n(nonce_bytes, '\0');
    randombytes_buf(n.data(), n.size());
    return n;
}

std::string member_proof(const proof_key& k, const public_key& server, const public_key& client,
                         std::string_view client_nonce) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, k.data(), k.size(), 32);
    static constexpr std::string_view tag = "kith-member-proof-v1";
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(tag.data()), tag.size());
    crypto_generichash_update(&st, server.bytes.data(), server.bytes.size());
    crypto_generichash_update(&st, client.bytes.data(), client.bytes.size());
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(client_nonce.data()), client_nonce.size());
    std::string out(32, '\0');
    crypto_generichash_final(&st, reinterpret_cast<unsigned char*>(out.data()), out.size());
    sodium_memzero(&st, sizeof st);
    return out;
}

bool check_member_proof(const proof_key& k, const public_key& server, const public_key& client,
                        std::string_view client_nonce, std::string_view proof) {
    if (proof.size() != 32 || client_nonce.size() != nonce_bytes) return false;
    std::string want = member_proof(k, server, client, client_nonce);
    return sodium_memcmp(want.data(), proof.data(), 32) == 0;
}

claim_verdict claim_name(const name_claim& c) {
    const std::string& name = c.name;
    const peer_auth& claimant = *c.claimant;
    const peer_auth* holder = c.holder;
    const bool member = claimant.kind == trust_kind::cluster;
    const std::string members_name = "node name " + name + " belongs to a cluster member of this node";
    const bool inbound_nonmember = claimant.kind == trust_kind::granted || claimant.kind == trust_kind::stranger;
    const std::string dialled_name =
        c.dialled_key ? "node name " + name + " belongs to a node this node dialled (key " + c.dialled_key->fingerprint() + ")"
                      : std::string();
    if (!holder) {
        if (!member && c.reserved) return {claim_verdict::refuse, members_name};
        if (inbound_nonmember && c.dialled_key) return {claim_verdict::refuse, dialled_name};
        return {};
    }
    if (holder->user_id == claimant.user_id) {
        // Two members: the same node (its key) joins or restarts; another
        // node with the same name is refused, saying who has it.
        if (member && c.holder_key && c.claimant_key && *c.holder_key != *c.claimant_key)
            return {claim_verdict::refuse,
                    "node name " + name + " is held by another node of the cluster (key " +
                        c.holder_key->fingerprint() + (c.holder_endpoint.empty() ? "" : ", at " + c.holder_endpoint) +
                        "); start this node with another name (kith node --name NAME)"};
        return {};
    }
    const bool held_by_member = holder->kind == trust_kind::cluster;
    // The same node again under other credentials (say, as a visitor after
    // a refused member dial): the claimant proved the node key (it is its
    // CURVE key) that the holder only stated; the old session goes.
    if (!member && !held_by_member && c.claimant_key && claimant.key == *c.claimant_key && c.holder_key &&
        *c.holder_key == *c.claimant_key)
        return {claim_verdict::evict, "node name " + name + " reconnected with its own key"};
    if (member && !held_by_member) return {claim_verdict::evict, members_name};
    if (!member && held_by_member) return {claim_verdict::refuse, members_name};
    // A server we dial takes its name back from an inbound grantee or stranger.
    if (claimant.kind == trust_kind::server && (holder->kind == trust_kind::granted || holder->kind == trust_kind::stranger))
        return {claim_verdict::evict, "node name " + name + " belongs to a node this node dialled"};
    if (inbound_nonmember && c.dialled_key) return {claim_verdict::refuse, dialled_name};
    return {claim_verdict::refuse, "node name " + name + " is already connected under other credentials"};
}

}  // namespace auth
}  // namespace kith::detail
