// Fuzz target: the handshake. The input is a frame followed by 8 control
// bytes. The frame is decoded as a node decodes a new link's first frame
// (kith::decode_frame with the default limits); if its first envelope is a
// handshake, the checks the transport makes on it (core/src/transport/
// sessions.cpp, on_handshake) run on the fuzzed fields: version and name,
// the membership proof (check_member_proof, keyed with the `membership`
// golden vector of docs/protocol.md) and the claim on the node name
// (claim_name), with the link's identity, the current holder, reservations
// and dialled keys chosen by the control bytes. kind_of_user_id is tried on
// every string the handshake carries. Checks, besides the sanitizers:
//   * check_member_proof accepts exactly the proof member_proof computes
//     (32 bytes, for a 16-byte nonce);
//   * User-Ids fail closed: only "cluster", "grant:<x>", "stranger:<x>" map;
//   * a non-member never takes a name a member holds or has reserved; a
//     member is refused only by another member key holding the name;
//   * a refusal always says why.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>

#include "auth/identity.hpp"
#include "fuzz_util.hpp"
#include "kith/envelope.hpp"
#include "kith/keys.hpp"

using namespace kith;
using namespace kith::detail;

namespace {

std::array<std::uint8_t, 32> from_hex32(std::string_view h) {
    std::array<std::uint8_t, 32> out{};
    auto pk = public_key::from_hex(h);
    if (pk) out = pk->bytes;
    return out;
}

// docs/protocol.md, the ```membership block (read from the document when
// it is there, so the seeds' nonce and proof check; else these values).
struct golden {
    auth::proof_key key = from_hex32("0bd63fd81840780ddee95f769d86262a772e5c088f31fb154a732e6ee8e9c10f");
    public_key cluster = public_key::from_z85("+QR&N!H=9{<AP8=+^W*qr2qyT5G<dvt)<v+i$Z/Y").value_or(public_key{});
    public_key server = public_key::from_z85("m/*$&H^-y+t0OZ/ISr/LFYZlVkyTnmN9xTcTAhI+").value_or(public_key{});
    golden() {
#ifdef KITH_PROTOCOL_MD
        std::ifstream in(KITH_PROTOCOL_MD);
        std::string line;
        bool inside = false;
        while (std::getline(in, line)) {
            if (!inside) {
                inside = line == "```membership";
                continue;
            }
            if (line == "```") break;
            auto c = line.find(": ");
            if (c == std::string::npos) continue;
            std::string k = line.substr(0, c), v = line.substr(c + 2);
            if (k == "member-proof key") key = from_hex32(v);
            if (k == "cluster public key") cluster = public_key::from_z85(v).value_or(cluster);
            if (k == "server key") server = public_key::from_z85(v).value_or(server);
        }
#endif
    }
};

void check_user_id(std::string_view uid) {
    auto k = auth::kind_of_user_id(uid);
    if (!k) return;
    switch (*k) {
    case trust_kind::cluster: FUZZ_CHECK(uid == "cluster", "User-Id mapped to cluster: " + std::string(uid)); break;
    case trust_kind::granted:
        FUZZ_CHECK(uid.starts_with("grant:") && uid.size() > 6, "User-Id mapped to grant: " + std::string(uid));
        break;
    case trust_kind::stranger:
        FUZZ_CHECK(uid.starts_with("stranger:") && uid.size() > 9, "User-Id mapped to stranger: " + std::string(uid));
        break;
    case trust_kind::server: FUZZ_CHECK(false, "a User-Id mapped to server: " + std::string(uid)); break;
    }
}

std::string uid_for(trust_kind k, bool other) {
    switch (k) {
    case trust_kind::cluster: return "cluster";
    case trust_kind::granted: return other ? "grant:other" : "grant:bob";
    case trust_kind::stranger: return other ? "stranger:other" : "stranger:key";
    case trust_kind::server: return other ? "server:other" : "server:key";
    }
    return {};
}

void run(const env_handshake& hs, const env_handshake* reply, const std::uint8_t* c) {
    static const golden g;
    for (auto& s : hs.services) check_user_id(s);
    check_user_id(hs.node);
    check_user_id(hs.key);
    // The transport's own checks come first (sessions.cpp).
    if (hs.version != protocol_version) return;
    if (hs.node.empty() || hs.node.size() > 255) return;

    std::optional<public_key> stated;
    if (!hs.key.empty()) stated = public_key::from_z85(hs.key);
    // z85_nul: public_key::from_z85 reads a key text with an embedded NUL
    // as the key of its prefix (z85_decode32 hands libzmq a C string).
    if (stated && !(fuzz_masked("z85_nul") && hs.key.find('\0') != std::string::npos))
        FUZZ_CHECK(stated->z85() == hs.key, "a Z85 key does not print as it was read: " + hs.key);

    // Membership: the client's nonce is in `hs`, the server's proof in its
    // reply (the same handshake when the frame holds only one).
    const env_handshake& srv = reply ? *reply : hs;
    const public_key server = srv.key.empty() ? g.server : public_key::from_z85(srv.key).value_or(g.server);
    const auth::proof_key key = (c[3] & 1) ? auth::proof_key{} : g.key;
    const bool proven = auth::check_member_proof(key, server, g.cluster, hs.nonce, srv.proof);
    const bool want = hs.nonce.size() == auth::nonce_bytes && srv.proof.size() == 32 &&
                      auth::member_proof(key, server, g.cluster, hs.nonce) == srv.proof;
    FUZZ_CHECK(proven == want, "check_member_proof disagrees with member_proof; nonce " + fuzz_hex(hs.nonce) +
                                   " proof " + fuzz_hex(srv.proof));
    if (hs.nonce.size() == auth::nonce_bytes)
        FUZZ_CHECK(auth::check_member_proof(key, server, g.cluster, hs.nonce,
                                            auth::member_proof(key, server, g.cluster, hs.nonce)),
                   "a computed member proof does not check");

    // The claim on the name.
    const auto kind = static_cast<trust_kind>(c[0] & 3);
    peer_auth claimant{kind, uid_for(kind, false), stated.value_or(g.cluster)};
    auth::name_claim nc;
    nc.name = hs.node;
    nc.claimant = &claimant;
    if (c[0] & 4) nc.claimant_key = stated;
    peer_auth holder;
    auto pick_key = [&](unsigned sel) -> std::optional<public_key> {
        switch (sel & 3) {
        case 1: return stated ? stated : std::optional<public_key>(g.cluster);
        case 2: return g.server;
        case 3: return g.cluster;
        }
        return std::nullopt;
    };
    if (c[1] & 3) {
        const auto hk = static_cast<trust_kind>((c[1] >> 2) & 3);
        holder = peer_auth{hk, uid_for(hk, hk != kind || (c[1] & 0x40)), g.server};
        nc.holder = &holder;
        nc.holder_key = pick_key(c[1] >> 4);
        if (c[1] & 0x80) nc.holder_endpoint = srv.node;
    }
    nc.reserved = c[2] & 1;
    nc.dialled_key = pick_key(c[2] >> 1);
    auto v = auth::claim_name(nc);

    const bool member = kind == trust_kind::cluster;
    const bool nonmember_inbound = kind == trust_kind::granted || kind == trust_kind::stranger;
    if (v.what == auth::claim_verdict::refuse) FUZZ_CHECK(!v.why.empty(), "a refusal without a reason");
    if (!member && nc.holder && holder.kind == trust_kind::cluster)
        FUZZ_CHECK(v.what == auth::claim_verdict::refuse, "a non-member took a name a member holds: " + hs.node);
    if (!member && !nc.holder && nc.reserved)
        FUZZ_CHECK(v.what == auth::claim_verdict::refuse, "a non-member took a reserved name: " + hs.node);
    if (nonmember_inbound && !nc.holder && nc.dialled_key)
        FUZZ_CHECK(v.what == auth::claim_verdict::refuse, "an inbound non-member took a dialled name: " + hs.node);
    if (member && v.what == auth::claim_verdict::refuse)
        FUZZ_CHECK(nc.holder && holder.kind == trust_kind::cluster && nc.holder_key && nc.claimant_key &&
                       *nc.holder_key != *nc.claimant_key,
                   "a member was refused its name without another member key holding it: " + hs.node);
    if (member && nc.holder && holder.kind != trust_kind::cluster)
        FUZZ_CHECK(v.what == auth::claim_verdict::evict, "a member did not take its name back: " + hs.node);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    constexpr std::size_t ctrl = 8;
    if (size < ctrl) return 0;
    const std::uint8_t* c = data + size - ctrl;
    std::string_view frame(reinterpret_cast<const char*>(data), size - ctrl);
    try {
        auto r = decode_frame(frame);
        if (!r.ok() || r->empty()) return 0;
        auto* hs = std::get_if<env_handshake>(&(*r)[0]);
        if (!hs) return 0;
        const env_handshake* reply = r->size() > 1 ? std::get_if<env_handshake>(&(*r)[1]) : nullptr;
        run(*hs, reply, c);
    } catch (const std::exception& e) {
        FUZZ_CHECK(false, std::string("the handshake path threw: ") + e.what());
    }
    return 0;
}
