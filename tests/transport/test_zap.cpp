// The ZAP decision (zap.hpp): cluster key, authorizer verdicts, malformed requests.
#include <cstring>

#include "kith_catch.hpp"
#include "zap.hpp"

using namespace kith;
using namespace kith::detail;

static zap_request curve_request(const public_key& k) {
    zap_request r;
    r.version = "1.0";
    r.request_id = "1";
    r.domain = "kith";
    r.address = "127.0.0.1";
    r.mechanism = "CURVE";
    r.credentials.emplace_back(reinterpret_cast<const char*>(k.bytes.data()), 32);
    return r;
}

TEST_CASE("zap: the cluster key is accepted as 'cluster' - any other key is refused by default") {
    keypair cluster = cluster_keypair("cookie");
    auto ok = zap_decide(curve_request(cluster.pub), cluster.pub, {});
    CHECK(ok.accepted);
    CHECK(ok.user_id == "cluster");
    auto no = zap_decide(curve_request(keypair::generate().pub), cluster.pub, {});
    CHECK_FALSE(no.accepted);
    CHECK(no.reason.find("unknown key") != std::string::npos);
    // A node with another cookie presents another cluster key.
    CHECK_FALSE(zap_decide(curve_request(cluster_keypair("other").pub), cluster.pub, {}).accepted);
}

TEST_CASE("zap: the authorizer decides for non-cluster keys") {
    keypair cluster = cluster_keypair("cookie");
    keypair bob = keypair::generate(), eve = keypair::generate(), sam = keypair::generate();
    authorizer a = [&](const public_key& k, std::string_view) {
        if (k == bob.pub) return authz_decision::grant("bob-kvs");
        if (k == sam.pub) return authz_decision::stranger();
        return authz_decision::refuse("no grant");
    };
    auto g = zap_decide(curve_request(bob.pub), cluster.pub, a);
    CHECK(g.accepted);
    CHECK(g.user_id == "grant:bob-kvs");
    auto s = zap_decide(curve_request(sam.pub), cluster.pub, a);
    CHECK(s.accepted);
    CHECK(s.user_id == "stranger:" + sam.pub.z85());
    auto r = zap_decide(curve_request(eve.pub), cluster.pub, a);
    CHECK_FALSE(r.accepted);
    CHECK(r.reason == "no grant");
    authorizer thrower = [](const public_key&, std::string_view) -> authz_decision { throw 1; };
    CHECK_FALSE(zap_decide(curve_request(bob.pub), cluster.pub, thrower).accepted);
}

TEST_CASE("zap: malformed or foreign requests are refused") {
    keypair cluster = cluster_keypair("cookie");
    auto r = curve_request(cluster.pub);
    r.domain = "other";
    CHECK_FALSE(zap_decide(r, cluster.pub, {}).accepted);
    r = curve_request(cluster.pub);
    r.mechanism = "NULL";
    r.credentials.clear();
    CHECK_FALSE(zap_decide(r, cluster.pub, {}).accepted);
    r = curve_request(cluster.pub);
    r.version = "2.0";
    CHECK_FALSE(zap_decide(r, cluster.pub, {}).accepted);
    r = curve_request(cluster.pub);
    r.credentials[0].resize(31);
    CHECK_FALSE(zap_decide(r, cluster.pub, {}).accepted);
    CHECK_FALSE(zap_decide(zap_request{}, cluster.pub, {}).accepted);
}
