// Identity rules (core/src/auth/identity.hpp): User-Ids fail closed, the
// membership proof binds keys and nonce, and who may hold a node name.
#include "kith_catch.hpp"

#include <map>

#include "doc_blocks.hpp"

#include "auth/identity.hpp"

using namespace kith;
using namespace kith::detail;
using auth::claim_verdict;

namespace {
peer_auth who(trust_kind k, std::string uid) { return peer_auth{k, std::move(uid), {}}; }
}  // namespace

TEST_CASE("identity: only User-Ids the ZAP handler issues have a trust, the rest are refused") {
    struct row {
        const char* uid;
        std::optional<trust_kind> want;
    };
    const row rows[] = {
        {"cluster", trust_kind::cluster},
        {"grant:bob", trust_kind::granted},
        {"stranger:Hello", trust_kind::stranger},
        {"", std::nullopt},
        {"Cluster", std::nullopt},
        {"cluster ", std::nullopt},
        {"grant:", std::nullopt},
        {"stranger:", std::nullopt},
        {"server:abc", std::nullopt},  // names links we dialled; never a ZAP User-Id
        {"admin", std::nullopt},
    };
    for (auto& r : rows) {
        INFO("User-Id '" << r.uid << "'");
        CHECK(auth::kind_of_user_id(r.uid) == r.want);
    }
}

TEST_CASE("identity: the membership proof is bound to the cookie, both keys and the nonce") {
    auto k = derive_cookie_key("class-cookie", auth::proof_purpose);
    auto other = derive_cookie_key("other-cookie", auth::proof_purpose);
    auto server = keypair::generate().pub, server2 = keypair::generate().pub;
    auto client = cluster_keypair("class-cookie").pub, client2 = keypair::generate().pub;
    std::string nonce = auth::fresh_nonce(), nonce2 = auth::fresh_nonce();
    REQUIRE(nonce.size() == 16);
    CHECK(nonce != nonce2);
    std::string p = auth::member_proof(k, server, client, nonce);
    REQUIRE(p.size() == 32);
    CHECK(auth::check_member_proof(k, server, client, nonce, p));
    CHECK_FALSE(auth::check_member_proof(other, server, client, nonce, p));   // another cookie
    CHECK_FALSE(auth::check_member_proof(k, server2, client, nonce, p));      // replayed by another server key
    CHECK_FALSE(auth::check_member_proof(k, server, client2, nonce, p));      // to another client key
    CHECK_FALSE(auth::check_member_proof(k, server, client, nonce2, p));      // another connection
    CHECK_FALSE(auth::check_member_proof(k, server, client, nonce, ""));      // no proof
    CHECK_FALSE(auth::check_member_proof(k, server, client, "", p));          // no nonce sent
    std::string flipped = p;
    flipped[31] = static_cast<char>(flipped[31] ^ 1);
    CHECK_FALSE(auth::check_member_proof(k, server, client, nonce, flipped));
    CHECK_FALSE(auth::check_member_proof(k, server, client, nonce, p.substr(0, 31)));
}

TEST_CASE("identity: a name belongs to the identity that proved it, and members come first") {
    const auto member = who(trust_kind::cluster, "cluster");
    const auto bob = who(trust_kind::granted, "grant:bob");
    const auto eve = who(trust_kind::granted, "grant:eve");
    const auto stranger = who(trust_kind::stranger, "stranger:K1");
    const auto server = who(trust_kind::server, "server:K2");
    struct row {
        const char* what;
        const peer_auth* claimant;
        const peer_auth* holder;
        bool reserved;
        claim_verdict::kind want;
    };
    const row rows[] = {
        {"a member, free name", &member, nullptr, false, claim_verdict::accept},
        {"a member, its own reserved name", &member, nullptr, true, claim_verdict::accept},
        {"a member joins the member session", &member, &member, true, claim_verdict::accept},
        {"a member takes back a name a grantee holds", &member, &bob, false, claim_verdict::evict},
        {"a member takes back a name a stranger holds", &member, &stranger, true, claim_verdict::evict},
        {"a member takes back a name a dialled server holds", &member, &server, false, claim_verdict::evict},
        {"a grantee, free name", &bob, nullptr, false, claim_verdict::accept},
        {"a grantee, a name a member held before", &bob, nullptr, true, claim_verdict::refuse},
        {"a stranger, a name a member held before", &stranger, nullptr, true, claim_verdict::refuse},
        {"a dialled server, a name a member held before", &server, nullptr, true, claim_verdict::refuse},
        {"a grantee, a name a member holds", &bob, &member, true, claim_verdict::refuse},
        {"a stranger, a name a member holds", &stranger, &member, false, claim_verdict::refuse},
        {"a grantee joins its own session", &bob, &bob, false, claim_verdict::accept},
        {"another grantee, a name a grantee holds", &eve, &bob, false, claim_verdict::refuse},
        {"a stranger, a name a grantee holds", &stranger, &bob, false, claim_verdict::refuse},
        {"a node we dial takes its name back from a stranger", &server, &stranger, false, claim_verdict::evict},
        {"a node we dial takes its name back from a grantee", &server, &bob, false, claim_verdict::evict},
    };
    for (auto& r : rows) {
        INFO(r.what);
        auth::name_claim c;
        c.name = "carol@pi";
        c.claimant = r.claimant;
        c.holder = r.holder;
        c.reserved = r.reserved;
        auto v = auth::claim_name(c);
        CHECK(v.what == r.want);
        if (r.want != claim_verdict::accept) CHECK(v.why.find("carol@pi") != std::string::npos);
    }
}

TEST_CASE("identity: the name of a node this node dialled stays that node's") {
    const auto bob = who(trust_kind::granted, "grant:bob");
    const auto stranger = who(trust_kind::stranger, "stranger:K1");
    const auto server = who(trust_kind::server, "server:K2");
    auth::name_claim c;
    c.name = "dave@home";
    c.dialled_key = keypair::generate().pub;
    for (const peer_auth* p : {&bob, &stranger}) {
        c.claimant = p;
        auto v = auth::claim_name(c);
        CHECK(v.what == claim_verdict::refuse);
        CHECK(v.why.find("belongs to a node this node dialled") != std::string::npos);
    }
    c.claimant = &server;  // dialled again (by the user's choice, whatever the key)
    CHECK(auth::claim_name(c).what == claim_verdict::accept);
}

TEST_CASE("identity: the same node back under its own proven key replaces its old non-member session") {
    auto k = keypair::generate().pub, other = keypair::generate().pub;
    const peer_auth old_session{trust_kind::stranger, "stranger:" + other.z85(), other};
    const peer_auth visitor{trust_kind::stranger, "stranger:" + k.z85(), k};
    auth::name_claim c;
    c.name = "erin@laptop";
    c.claimant = &visitor;
    c.claimant_key = k;        // proven: it is the visitor's CURVE key
    c.holder = &old_session;
    c.holder_key = k;          // only stated by the old session
    CHECK(auth::claim_name(c).what == claim_verdict::evict);
    c.holder_key = other;      // another node's name: not this one's to take
    CHECK(auth::claim_name(c).what == claim_verdict::refuse);
    c.holder_key = k;
    c.claimant_key = other;    // a stated key that the claimant did not prove
    CHECK(auth::claim_name(c).what == claim_verdict::refuse);
}

TEST_CASE("identity: two members with one name - the node key that holds it keeps it, nobody flaps") {
    const auto member = who(trust_kind::cluster, "cluster");
    auto k1 = keypair::generate().pub, k2 = keypair::generate().pub;
    auth::name_claim c;
    c.name = "sam@raspberrypi";
    c.claimant = &member;
    c.holder = &member;
    c.holder_key = k1;
    c.holder_endpoint = "tcp://10.0.0.5:4370";
    c.claimant_key = k1;  // the same node: a second link, or a restart
    CHECK(auth::claim_name(c).what == claim_verdict::accept);
    c.claimant_key = k2;  // another Pi with the same name
    auto v = auth::claim_name(c);
    CHECK(v.what == claim_verdict::refuse);
    CHECK(v.why == "node name sam@raspberrypi is held by another node of the cluster (key " + k1.fingerprint() +
                       ", at tcp://10.0.0.5:4370); start this node with another name (kith node --name NAME)");
    c.claimant_key.reset();  // a peer that states no key: as before
    CHECK(auth::claim_name(c).what == claim_verdict::accept);
}

TEST_CASE("identity: the membership vectors of docs/protocol.md") {
    bool closed = false;
    auto lines = fenced_lines(std::string(KITH_SOURCE_DIR) + "/docs/protocol.md", "membership", &closed);
    REQUIRE(closed);
    std::map<std::string, std::string> v;
    for (auto& [n, line] : lines) {
        auto colon = line.find(": ");
        INFO("docs/protocol.md:" << n);
        REQUIRE(colon != std::string::npos);
        v[line.substr(0, colon)] = line.substr(colon + 2);
    }
    REQUIRE(v.size() == 8);
    auto hex = [](const auto& bytes) {
        std::string s;
        static const char* d = "0123456789abcdef";
        for (unsigned char b : bytes) s += {d[b >> 4], d[b & 15]};
        return s;
    };
    const std::string cookie = v["cookie"];
    // Argon2id (docs/protocol.md, "The cookie and the keys derived from it").
    CHECK(hex(stretch_cookie(cookie)) == v["stretched master key"]);
    CHECK(hex(derive_cookie_key(cookie, "cluster-client-key")) == v["cluster-client-key seed"]);
    CHECK(cluster_keypair(cookie).pub.z85() == v["cluster public key"]);
    auto k = derive_cookie_key(cookie, auth::proof_purpose);
    CHECK(hex(k) == v["member-proof key"]);
    std::array<std::uint8_t, 32> seed{};
    for (int i = 0; i < 32; ++i) seed[i] = static_cast<std::uint8_t>(i);
    auto server = keypair::from_seed(seed).pub;
    CHECK(server.z85() == v["server key"]);
    std::string nonce;
    for (int i = 0; i < 16; ++i) nonce += static_cast<char>(0xa0 + i);
    CHECK(hex(nonce) == v["nonce"]);
    auto proof = auth::member_proof(k, server, cluster_keypair(cookie).pub, nonce);
    CHECK(hex(proof) == v["proof"]);
}
