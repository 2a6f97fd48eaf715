// kith::discovery in one process on loopback: real UDP (broadcast to
// 127.255.255.255 on a per-run port), real CURVE connections. Several nodes on
// one host share the port; strangers are listed, never trusted; bad HMACs,
// spoofed leaving beacons and impersonators are refused.
#include <zmq.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
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

const std::string cookie_a = "discovery-test-cookie-a";

struct test_node {
    temp_dir dir;
    std::unique_ptr<node> n;
    test_node(const std::string& name, const std::string& cookie, const std::string& listen = "tcp://127.0.0.1:0") {
        node_options o;
        o.name = name;
        o.workers = 1;
        o.net.listen = listen;
        o.net.key_dir = dir.path;
        o.net.cookie = cookie;
        n = std::make_unique<node>(o);
    }
};

discovery_options local_opts(std::uint16_t port) {
    discovery_options o;
    o.port = port;
    o.broadcast_address = "127.255.255.255";
    return o;
}

bool sees(const discovery& d, const std::string& name, trust_level t, bool connected) {
    for (auto& s : d.seen())
        if (s.name == name) return s.trust == t && s.connected == connected;
    return false;
}

std::uint16_t tcp_port(const node& n) {
    auto ep = n.endpoint();
    return static_cast<std::uint16_t>(std::stoi(ep.substr(ep.rfind(':') + 1)));
}

detail::beacon genuine(node& n, detail::beacon_type t) {
    detail::beacon b;
    b.type = t;
    b.timestamp_ms = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    b.nonce = 7;
    b.tcp_port = tcp_port(n);
    b.key = n.key();
    b.name = n.name();
    b.cluster = true;
    return b;
}

}  // namespace

TEST_CASE("discovery: nodes on one host share the port and connect with no address given") {
    auto port = free_udp_port();
    std::vector<std::unique_ptr<test_node>> nodes;
    std::vector<std::unique_ptr<discovery>> ds;
    struct events {
        std::mutex mu;
        std::vector<node_event> v;
    };
    auto ev = std::make_shared<events>();
    for (auto name : {"a@host", "b@host", "c@host"}) nodes.push_back(std::make_unique<test_node>(name, cookie_a));
    nodes[0]->n->subscribe_nodes([ev](const node_event& e) {
        std::lock_guard lk(ev->mu);
        ev->v.push_back(e);
    });
    for (auto& t : nodes) ds.push_back(std::make_unique<discovery>(*t->n, local_opts(port)));
    for (auto& t : nodes) REQUIRE(eventually([&] { return t->n->nodes().size() == 2; }, 10s));
    for (auto& d : ds)
        for (auto& t : nodes)
            if (t.get() != nodes[&d - &ds[0]].get()) {
                INFO(t->n->name());
                CHECK(eventually([&] { return sees(*d, t->n->name(), trust_level::cluster, true); }, 5s));
            }
    {
        std::lock_guard lk(ev->mu);
        REQUIRE(ev->v.size() >= 2);
        for (auto& e : ev->v) {
            CHECK(e.what == node_event::kind::up);
            CHECK(e.info.trust == trust_level::cluster);
            CHECK_FALSE(e.info.fingerprint.empty());
            CHECK(e.info.endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
        }
    }
    // find: full and short names, unknown names with what was seen
    auto f = ds[0]->find("b", 2s);
    REQUIRE(f.ok());
    CHECK(f->name == "b@host");
    CHECK(ds[0]->find("c@host", 2s).ok());
    auto missing = ds[0]->find("zed", 300ms);
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.code() == errc::timeout);
    CHECK(missing.err().detail.find("b@host") != std::string::npos);
    CHECK(ds[1]->stats().queries_answered + ds[2]->stats().queries_answered > 0);

    // A clean leave: the node's goodbye, well within the 100 ms bound on an
    // idle machine (the test only bounds it generously).
    ds[2]->stop();
    nodes[2]->n->stop();
    REQUIRE(eventually([&] { return nodes[0]->n->nodes().size() == 1; }, 3s));
    std::lock_guard lk(ev->mu);
    CHECK(ev->v.back().what == node_event::kind::down);
    CHECK(ev->v.back().node == "c@host");
    CHECK(ev->v.back().reason == "shutdown");
}

TEST_CASE("discovery: strangers are listed with fingerprint but never trusted or connected") {
    auto port = free_udp_port();
    test_node a("a@host", cookie_a), s("stranger@elsewhere", "another-cookie");
    discovery da(*a.n, local_opts(port)), ds(*s.n, local_opts(port));
    REQUIRE(eventually([&] { return sees(da, "stranger@elsewhere", trust_level::stranger, false); }, 5s));
    REQUIRE(eventually([&] { return sees(ds, "a@host", trust_level::stranger, false); }, 5s));
    for (auto& x : da.seen())
        if (x.name == "stranger@elsewhere") {
            CHECK(x.fingerprint == s.n->key().fingerprint());
            CHECK(x.services.empty());  // no public services; the cluster list is not readable
        }
    CHECK(a.n->nodes().empty());
    CHECK(s.n->nodes().empty());
    CHECK(da.stats().connect_failures == 0);
}

TEST_CASE("discovery: bad HMAC, malformed and flooded beacons are dropped and counted") {
    auto port = free_udp_port();
    test_node a("a@host", cookie_a);
    auto o = local_opts(port);
    o.max_stranger_beacons_per_s = 200;
    discovery d(*a.n, o);
    udp_socket out;
    // A beacon with our cluster id (public: it is in every beacon) and an
    // HMAC made without the cookie.
    auto b = genuine(*a.n, detail::beacon_type::announce);
    b.name = "forger@host";
    auto wrong = detail::beacon_hmac_key::from_cookie(cookie_a);
    wrong.hmac[0] ^= 1;
    out.send(detail::encode_beacon(b, &wrong), "127.0.0.1", port);
    // Not starting like a beacon: the socket's filter drops it in the kernel.
    out.send({1, 2, 3}, "127.0.0.1", port);
    // Starting like one (magic, version), then nonsense: read and malformed.
    std::vector<std::uint8_t> junk(100, 0xab);
    std::copy(detail::beacon_magic.begin(), detail::beacon_magic.end(), junk.begin());
    junk[4] = detail::beacon_version;
    out.send(junk, "127.0.0.1", port);
    REQUIRE(eventually([&] { return d.stats().bad_hmac == 1 && d.stats().malformed == 1; }, 5s));
    REQUIRE(eventually([&] { return d.stats().dropped_by_kernel == 1; }, 5s));
    for (auto& s : d.seen()) CHECK(s.name != "forger@host");
    // A flood of strangers: far more than their budget in well under a
    // second. Junk is decoded (cheap) and counted; well-formed strangers
    // beyond the budget are dropped before anything else is done.
    for (int i = 0; i < 300; ++i) out.send(junk, "127.0.0.1", port);
    std::vector<std::uint8_t> noise(100, 0xab);  // the kernel's
    for (int i = 0; i < 300; ++i) out.send(noise, "127.0.0.1", port);
    auto s = genuine(*a.n, detail::beacon_type::announce);
    s.cluster = false;
    s.key.bytes.fill(9);
    for (int i = 0; i < 3000; ++i) {
        s.name = "stranger" + std::to_string(i) + "@host";
        out.send(detail::encode_beacon(s, nullptr), "127.0.0.1", port);
    }
    REQUIRE(eventually([&] { return d.stats().rate_limited > 0; }, 5s));
    REQUIRE(eventually([&] { return d.stats().malformed >= 100; }, 5s));
    CHECK(d.stats().dropped_by_kernel >= 100);
    std::size_t listed = 0;
    for (auto& x : d.seen()) listed += x.trust == trust_level::stranger;
    CHECK(listed < 1000);  // at most ~the budget per second
}

TEST_CASE("discovery: a spoofed leaving beacon does not evict a connected node") {
    auto port = free_udp_port();
    test_node a("a@host", cookie_a), b("b@host", cookie_a);
    discovery da(*a.n, local_opts(port)), db(*b.n, local_opts(port));
    REQUIRE(eventually([&] { return sees(da, "b@host", trust_level::cluster, true); }, 10s));
    // Forged with the right cookie (worst case: an insider replaying), and
    // newer than anything b sent.
    auto bye = genuine(*b.n, detail::beacon_type::leaving);
    bye.timestamp_ms += 5000;  // within the clock skew (30 s)
    auto key = detail::beacon_hmac_key::from_cookie(cookie_a);
    udp_socket out;
    out.send(detail::encode_beacon(bye, &key), "127.255.255.255", port);
    REQUIRE(eventually([&] { return da.stats().spoofed_leaves >= 1; }, 5s));
    CHECK(sees(da, "b@host", trust_level::cluster, true));
    CHECK(a.n->nodes() == std::vector<std::string>{"b@host"});
    CHECK(a.n->ping("b@host"));
}

TEST_CASE("discovery: an impersonator never gets a member's name") {
    auto port = free_udp_port();
    test_node alice("alice@host", cookie_a);
    // 1. Capture a genuine beacon of alice, then silence alice's discovery
    //    (the node stays up).
    udp_socket capture("0.0.0.0", port, true);
    std::vector<std::uint8_t> replay;
    {
        discovery dal(*alice.n, local_opts(port));
        auto key = detail::beacon_hmac_key::from_cookie(cookie_a);
        REQUIRE(eventually(
            [&] {
                auto r = capture.recv();
                auto d = detail::decode_beacon(r, &key);
                if (d.status == detail::beacon_status::ok_cluster && d.b.type == detail::beacon_type::announce &&
                    d.b.name == "alice@host")
                    replay = r;
                return !replay.empty();
            },
            5s));
    }
    // 2. The impersonator: a CURVE server with its own key at 127.0.0.2 on
    //    alice's TCP port; the replay comes from 127.0.0.2, so the victim
    //    dials there expecting alice's key.
    zmq::context_t ctx;
    zmq::socket_t imp(ctx, zmq::socket_type::router);
    char pub[41], sec[41];
    REQUIRE(zmq_curve_keypair(pub, sec) == 0);
    imp.set(zmq::sockopt::curve_server, 1);
    imp.set(zmq::sockopt::curve_secretkey, std::string(sec));
    imp.bind("tcp://127.0.0.2:" + std::to_string(tcp_port(*alice.n)));

    test_node victim("victim@host", cookie_a);
    auto vo = local_opts(port);
    vo.announce = false;
    discovery dv(*victim.n, vo);
    udp_socket from("127.0.0.2");
    from.send(replay, "127.255.255.255", port);
    REQUIRE(eventually([&] { return dv.stats().connect_failures >= 1; }, 15s));
    CHECK(victim.n->nodes().empty());
    for (auto& s : dv.seen())
        if (s.name == "alice@host") {
            CHECK_FALSE(s.connected);
            CHECK(s.key == alice.n->key());
        }

    // 3. With alice announcing again, the victim connects to the real one,
    //    and a stranger beacon naming alice with another key is refused.
    discovery dal2(*alice.n, local_opts(port));
    REQUIRE(eventually([&] { return victim.n->info("alice@host").has_value(); }, 15s));
    CHECK(victim.n->info("alice@host")->fingerprint == alice.n->key().fingerprint());
    auto fake = genuine(*alice.n, detail::beacon_type::announce);
    fake.cluster = false;
    fake.key = keypair::generate().pub;
    from.send(detail::encode_beacon(fake, nullptr), "127.255.255.255", port);
    REQUIRE(eventually([&] { return dv.stats().key_conflicts >= 1; }, 5s));
    // Nor with alice's own public key (no HMAC) pointing elsewhere.
    auto fake2 = genuine(*alice.n, detail::beacon_type::announce);
    fake2.cluster = false;
    fake2.endpoint = "tcp://127.0.0.2:1";
    from.send(detail::encode_beacon(fake2, nullptr), "127.255.255.255", port);
    REQUIRE(eventually([&] { return dv.stats().key_conflicts >= 2; }, 5s));
    CHECK(sees(dv, "alice@host", trust_level::cluster, true));
    for (auto& s : dv.seen())
        if (s.name == "alice@host") {
            CHECK(s.key == alice.n->key());
            CHECK(s.endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
        }
    auto found = dv.find("alice", 2s);
    REQUIRE(found.ok());
    CHECK(found->trust == trust_level::cluster);
    CHECK(found->endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
}

TEST_CASE("discovery: setup errors for a node without network and an unknown interface") {
    node_options lo;
    lo.name = "plain@host";
    lo.workers = 1;
    node local(lo);
    CHECK_THROWS_AS(discovery(local), setup_error);
    test_node a("a@host", cookie_a);
    auto o = local_opts(free_udp_port());
    o.interface = "no-such-if0";
    CHECK_THROWS_AS(discovery(*a.n, o), setup_error);
}
