// kith::discovery under abuse, on loopback with real UDP (a per-run port,
// broadcast to 127.255.255.255): a stranger's flood does not starve members,
// replayed and stale beacons do nothing, a copy of a beacon from another
// source address does not redirect dials, queries cannot be turned into
// amplification. docs/protocol.md, "Discovery beacon".
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <memory>
#include <thread>
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

const std::string cookie = "discovery-abuse-test-cookie";

struct test_node {
    temp_dir dir;
    std::unique_ptr<node> n;
    explicit test_node(const std::string& name, const std::string& c = cookie) {
        node_options o;
        o.name = name;
        o.workers = 1;
        o.net.listen = "tcp://127.0.0.1:0";
        o.net.key_dir = dir.path;
        o.net.cookie = c;
        n = std::make_unique<node>(o);
    }
};

discovery_options local_opts(std::uint16_t port, std::chrono::milliseconds interval = 200ms) {
    discovery_options o;
    o.port = port;
    o.broadcast_address = "127.255.255.255";
    o.interval = interval;
    return o;
}

std::uint64_t now_ms() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

const seen_node* find_seen(const std::vector<seen_node>& v, const std::string& name) {
    for (auto& s : v)
        if (s.name == name) return &s;
    return nullptr;
}

// A beacon of an invented member "x@host" (key 0x42...), signed with the
// cluster's cookie: what an insider or a recorded genuine beacon looks like.
detail::beacon member_beacon(std::uint64_t ts, std::string endpoint, std::uint16_t port = 1111) {
    detail::beacon b;
    b.type = detail::beacon_type::announce;
    b.timestamp_ms = ts;
    b.nonce = ts * 7 + 1;
    b.tcp_port = port;
    b.key.bytes.fill(0x42);
    b.name = "x@host";
    b.endpoint = std::move(endpoint);
    b.cluster = true;
    return b;
}

}  // namespace

TEST_CASE("discovery abuse: a stranger's beacon flood does not starve members (budgets after the HMAC)") {
    auto port = free_udp_port();
    test_node a("a@host"), b("b@host");
    discovery da(*a.n, local_opts(port)), db(*b.n, local_opts(port));
    REQUIRE(eventually([&] { return a.n->nodes() == std::vector<std::string>{"b@host"}; }, 10s));
    // The flood: ~20,000 datagrams/s for 4 s to the broadcast address (every
    // node gets them), 40 times the strangers' budget: well-formed stranger
    // beacons with ever new names and keys, and forgeries that carry our
    // cluster id (public) with a wrong HMAC.
    std::atomic<bool> stop{false};
    std::atomic<long> sent{0};
    std::thread flood([&] {
        udp_socket out;
        auto wrong = detail::beacon_hmac_key::from_cookie(cookie);
        wrong.hmac[0] ^= 1;
        auto t0 = std::chrono::steady_clock::now();
        for (long i = 0; !stop; ++i) {
            detail::beacon s;
            s.timestamp_ms = now_ms();
            s.nonce = static_cast<std::uint64_t>(i);
            s.tcp_port = 9;
            s.key.bytes.fill(static_cast<std::uint8_t>(i));
            s.key.bytes[0] = static_cast<std::uint8_t>(i >> 8);
            s.name = "flood" + std::to_string(i % 5000) + "@evil";
            s.public_services = {"echo"};
            s.cluster = (i % 2) == 1;
            out.send(detail::encode_beacon(s, s.cluster ? &wrong : nullptr), "127.255.255.255", port);
            ++sent;
            // Paced: 200 per 10 ms.
            if (i % 200 == 199) std::this_thread::sleep_until(t0 + (i / 200 + 1) * 10ms);
        }
    });
    // A member that starts during the flood is still found and connected,
    // and the member already there is never forgotten.
    test_node c("c@host");
    discovery dc(*c.n, local_opts(port));
    bool b_always_listed = true, c_connected = false;
    auto deadline = std::chrono::steady_clock::now() + 4s;
    while (std::chrono::steady_clock::now() < deadline) {
        auto seen = da.seen();
        auto* sb = find_seen(seen, "b@host");
        b_always_listed = b_always_listed && sb && sb->trust == trust_level::cluster;
        if (a.n->info("c@host")) c_connected = true;
        std::this_thread::sleep_for(50ms);
    }
    stop = true;
    flood.join();
    INFO("flood datagrams sent: " << sent.load());
    CHECK(sent.load() > 20000);
    CHECK(b_always_listed);
    CHECK(c_connected);
    auto st = da.stats();
    std::fprintf(stderr,
                 "flood: sent %ld datagrams in 4 s; member a received %llu (rate_limited %llu, bad_hmac %llu, "
                 "malformed %llu); b stayed listed: %d, c connected during the flood: %d\n",
                 sent.load(), static_cast<unsigned long long>(st.beacons_received),
                 static_cast<unsigned long long>(st.rate_limited), static_cast<unsigned long long>(st.bad_hmac),
                 static_cast<unsigned long long>(st.malformed), int(b_always_listed), int(c_connected));
    CHECK(st.rate_limited > 0);  // the strangers' budget did its job
    CHECK(st.bad_hmac > 0);
    CHECK(a.n->info("b@host").has_value());
    // Strangers listed are bounded by the budget (100/s), not by the flood.
    std::size_t strangers = 0;
    for (auto& s : da.seen()) strangers += s.trust == trust_level::stranger;
    CHECK(strangers <= 100 + 100 * 5);
}

TEST_CASE("discovery abuse: stale, replayed and re-sourced beacons do nothing") {
    auto port = free_udp_port();
    test_node a("a@host");
    auto o = local_opts(port, 100ms);
    o.auto_connect = false;
    std::vector<std::string> said;
    std::mutex said_mu;
    o.log = [&](const log_record& l) {
        std::lock_guard lk(said_mu);
        said.emplace_back(l.text);
    };
    discovery d(*a.n, o);
    auto key = detail::beacon_hmac_key::from_cookie(cookie);
    udp_socket from1("127.0.0.1"), from2("127.0.0.2"), from3("127.0.0.3");
    auto x_endpoint = [&]() -> std::string {
        auto seen = d.seen();
        auto* s = find_seen(seen, "x@host");
        return s ? s->endpoint : "";
    };
    // 1. Outside the clock skew (a beacon recorded a minute ago): dropped,
    //    counted, and the hint names the node.
    from1.send(detail::encode_beacon(member_beacon(now_ms() - 60000, "tcp://127.0.0.1:1111"), &key), "127.0.0.1",
               port);
    from1.send(detail::encode_beacon(member_beacon(now_ms() + 60000, "tcp://127.0.0.1:1111"), &key), "127.0.0.1",
               port);
    REQUIRE(eventually([&] { return d.stats().stale == 2; }, 5s));
    CHECK(x_endpoint().empty());
    {
        std::lock_guard lk(said_mu);
        REQUIRE(said.size() == 1);  // once per key
        CHECK(said[0].rfind("clock: the beacons of x@host", 0) == 0);
    }
    // 2. A fresh one is listed.
    const auto t = now_ms();
    auto first = detail::encode_beacon(member_beacon(t, "tcp://127.0.0.1:1111"), &key);
    from1.send(first, "127.0.0.1", port);
    REQUIRE(eventually([&] { return x_endpoint() == "tcp://127.0.0.1:1111"; }, 5s));
    // 3. An older one (within the skew) with another endpoint: replayed.
    from1.send(detail::encode_beacon(member_beacon(t - 1000, "tcp://127.0.0.1:2222"), &key), "127.0.0.1", port);
    REQUIRE(eventually([&] { return d.stats().replayed == 1; }, 5s));
    CHECK(x_endpoint() == "tcp://127.0.0.1:1111");
    // 4. No endpoint in the beacon (E = 0): the MAC'd port and the source
    //    address of the first copy; a copy from another source changes
    //    nothing (the same timestamp is only a sign of life).
    auto noep = detail::encode_beacon(member_beacon(t + 1, "", 3333), &key);
    from2.send(noep, "127.0.0.1", port);
    REQUIRE(eventually([&] { return x_endpoint() == "tcp://127.0.0.2:3333"; }, 5s));
    const auto before = d.stats();
    from3.send(noep, "127.0.0.1", port);
    from3.send(first, "127.0.0.1", port);
    REQUIRE(eventually([&] { return d.stats().beacons_received >= before.beacons_received + 2; }, 5s));
    CHECK(x_endpoint() == "tcp://127.0.0.2:3333");
    CHECK(d.stats().replayed == 2);  // `first` again: older than the newest
    // 5. Once x is forgotten (no beacon for 3 s), its recorded beacons still
    //    do nothing: the sender's newest timestamp is remembered.
    REQUIRE(eventually([&] { return x_endpoint().empty(); }, 8s));
    from3.send(noep, "127.0.0.1", port);
    REQUIRE(eventually([&] { return d.stats().replayed == 3; }, 5s));
    CHECK(x_endpoint().empty());
}

TEST_CASE("discovery abuse: queries cannot be turned into amplification") {
    auto port = free_udp_port();
    test_node a("a@host");
    auto o = local_opts(port, 1000ms);
    discovery d(*a.n, o);
    udp_socket asker;  // a stranger, on an ephemeral port
    detail::beacon q;
    q.type = detail::beacon_type::query;
    q.timestamp_ms = now_ms();
    q.key.bytes.fill(7);
    q.name = "asker@evil";
    auto query = detail::encode_beacon(q, nullptr);
    REQUIRE(query.size() == detail::beacon_query_bytes);
    // 1. 30 unauthenticated unicast queries at once: a few answers (burst 3
    //    per source), each no bigger than the query.
    for (int i = 0; i < 30; ++i) asker.send(query, "127.0.0.1", port);
    std::size_t answers = 0, answer_bytes = 0;
    for (auto deadline = std::chrono::steady_clock::now() + 1s; std::chrono::steady_clock::now() < deadline;) {
        auto r = asker.recv();
        if (r.empty()) continue;
        ++answers;
        answer_bytes += r.size();
        CHECK(r.size() <= query.size());
        auto dec = detail::decode_beacon(r, nullptr);
        CHECK(dec.b.name == "a@host");
    }
    CHECK(answers >= 1);
    CHECK(answers <= 4);
    CHECK(answer_bytes <= 30 * query.size() / 7);
    CHECK(d.stats().answers_limited >= 26);
    // 2. A broadcast query (its source may be anyone's): no unicast answer to
    //    the source; one early announce by broadcast instead. (The capture
    //    socket joins the port only now: a unicast datagram reaches one
    //    socket of the group.)
    {
    udp_socket capture("0.0.0.0", port, true);
    while (!capture.recv().empty()) {
    }
    const auto sent_before = d.stats().beacons_sent;
    for (int i = 0; i < 10; ++i) asker.send(query, "127.255.255.255", port);
    bool announced = false;
    for (auto deadline = std::chrono::steady_clock::now() + 600ms; std::chrono::steady_clock::now() < deadline;) {
        auto r = capture.recv();
        if (r.empty()) continue;
        auto dec = detail::decode_beacon(r, nullptr);
        if (dec.b.name == "a@host" && dec.b.type == detail::beacon_type::announce) announced = true;
    }
    CHECK(announced);
    CHECK(asker.recv().empty());
    // At most the periodic announce and a few early ones (one per 250 ms).
    CHECK(d.stats().beacons_sent - sent_before <= 4);
    }  // (the capture socket leaves the port: unicast below must reach the node)
    // 3. A member's query (authenticated, fresh) is answered directly.
    test_node m("m@host");
    auto key = detail::beacon_hmac_key::from_cookie(cookie);
    detail::beacon mq;
    mq.type = detail::beacon_type::query;
    mq.timestamp_ms = now_ms();
    mq.key = m.n->key();
    mq.name = "m@host";
    mq.cluster = true;
    udp_socket member;
    member.send(detail::encode_beacon(mq, &key), "127.0.0.1", port);
    bool answered = false;
    for (auto deadline = std::chrono::steady_clock::now() + 2s; !answered && std::chrono::steady_clock::now() < deadline;) {
        auto r = member.recv();
        if (!r.empty()) answered = detail::decode_beacon(r, &key).status == detail::beacon_status::ok_cluster;
    }
    CHECK(answered);
    // ... once: the same query again is a replay, not answered.
    member.send(detail::encode_beacon(mq, &key), "127.0.0.1", port);
    CHECK(eventually([&] { return d.stats().replayed >= 1; }, 3s));
    CHECK(member.recv().empty());
}
