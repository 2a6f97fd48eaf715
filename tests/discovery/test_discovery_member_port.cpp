// The member port and discovery (docs/security.md, "The member port"): a
// member announces its member port in the MAC-covered part of its beacon and
// is dialled there; a node that announces none (member_listen "off", as an
// older kith's beacon) is dialled at its public endpoint, and still joins.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "beacon.hpp"
#include "discovery_test_util.hpp"
#include "kith/discovery.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace kith::test;
using namespace std::chrono_literals;

namespace {

struct test_node {
    temp_dir dir;
    std::unique_ptr<node> n;
    test_node(const std::string& name, const std::string& member_listen) {
        node_options o;
        o.name = name;
        o.workers = 1;
        o.net.listen = "tcp://127.0.0.1:0";
        o.net.member_listen = member_listen;
        o.net.key_dir = dir.path;
        o.net.cookie = "member-port-test-cookie";
        n = std::make_unique<node>(o);
    }
};

std::string seen_member_endpoint(const discovery& d, const std::string& name) {
    for (auto& s : d.seen())
        if (s.name == name) return s.member_endpoint;
    return "?";
}

}  // namespace

TEST_CASE("member port: beacons carry it under the MAC, and a beacon without one still decodes") {
    auto key = detail::beacon_hmac_key::from_cookie("c");
    detail::beacon b;
    b.timestamp_ms = 1;
    b.nonce = 2;
    b.tcp_port = 4370;
    b.name = "a@h";
    b.cluster = true;
    b.services = {"kvs"};
    b.member_port = 40123;
    auto bytes = detail::encode_beacon(b, &key);
    auto d = detail::decode_beacon(bytes, &key);
    REQUIRE(d.status == detail::beacon_status::ok_cluster);
    CHECK(d.b.member_port == 40123);
    // Covered by the MAC: another port does not check.
    auto forged = bytes;
    forged[forged.size() - detail::beacon_hmac_bytes - 1] ^= 1;
    CHECK(detail::decode_beacon(forged, &key).status == detail::beacon_status::bad_hmac);
    // Another cluster (or no cookie) learns no member port.
    auto other = detail::beacon_hmac_key::from_cookie("other");
    auto s = detail::decode_beacon(bytes, &other);
    CHECK(s.status == detail::beacon_status::ok_stranger);
    CHECK(s.b.member_port == 0);
    // An old-style beacon (no member port): flag clear, decodes as before.
    b.member_port = 0;
    auto old = detail::encode_beacon(b, &key);
    CHECK(old.size() + 2 == bytes.size());
    CHECK((old[6] & 0x02) == 0);
    auto o = detail::decode_beacon(old, &key);
    REQUIRE(o.status == detail::beacon_status::ok_cluster);
    CHECK(o.b.member_port == 0);
    // The flag without a cluster section is malformed.
    b.cluster = false;
    auto plain = detail::encode_beacon(b, nullptr);
    plain[6] |= 0x02;
    CHECK(detail::decode_beacon(plain, &key).status == detail::beacon_status::malformed);
}

TEST_CASE("member port: discovered members are dialled at their member port, old-style beacons at the public one") {
    auto port = free_udp_port();
    // a < b < c: a dials b and c, b dials c (the smaller name dials).
    test_node a("a@host", ""), b("b@host", ""), c("c@host", "off");
    REQUIRE_FALSE(a.n->member_endpoint().empty());
    REQUIRE_FALSE(b.n->member_endpoint().empty());
    CHECK(b.n->member_endpoint() != b.n->endpoint());
    CHECK(c.n->member_endpoint().empty());
    std::vector<std::unique_ptr<discovery>> ds;
    for (auto* t : {&a, &b, &c}) {
        discovery_options o;
        o.port = port;
        o.broadcast_address = "127.255.255.255";
        ds.push_back(std::make_unique<discovery>(*t->n, o));
    }
    for (auto* t : {&a, &b, &c}) REQUIRE(eventually([&] { return t->n->nodes().size() == 2; }, 10s));
    CHECK(seen_member_endpoint(*ds[0], "b@host") == b.n->member_endpoint());
    CHECK(seen_member_endpoint(*ds[0], "c@host").empty());
    // The endpoint each session was dialled at.
    auto ab = a.n->info("b@host");
    REQUIRE(ab.has_value());
    CHECK(ab->endpoint == b.n->member_endpoint());
    auto ac = a.n->info("c@host");
    REQUIRE(ac.has_value());
    CHECK(ac->endpoint == c.n->endpoint());
    auto bc = b.n->info("c@host");
    REQUIRE(bc.has_value());
    CHECK(bc->endpoint == c.n->endpoint());
    for (auto& d : ds) d->stop();
}
