// The CURVE ROUTER/DEALER transport over real loopback sockets: handshake,
// batching and order, authentication (cookie, grants, fail-closed ZAP),
// heartbeats, goodbye, reconnect, bounded queues, malformed frames.
#include <zmq.h>

#include <cstring>
#include <thread>

#include "kith_catch.hpp"
#include "raw_client.hpp"
#include "transport_harness.hpp"

using namespace kt;
using namespace kith;
using kith::detail::trust_kind;

TEST_CASE("transport: same cookie -> handshake, 100k envelopes batched and in order, trust 'cluster'") {
    test_node a("a@test", "cookie-1"), b("b@test", "cookie-1");
    a.connect_to(b);
    REQUIRE(a.rec.wait([&] { return a.rec.ups.size() == 1; }));
    REQUIRE(b.rec.wait([&] { return b.rec.ups.size() == 1; }));
    {
        std::lock_guard lk(a.rec.mu);
        CHECK(a.rec.ups[0].first == "b@test");
        CHECK(a.rec.ups[0].second.outbound);
        CHECK(a.rec.ups[0].second.auth.kind == trust_kind::cluster);
        CHECK(a.rec.ups[0].second.auth.key == b.t->key());
        CHECK(a.rec.ups[0].second.creation == b.t->creation());
    }
    {
        std::lock_guard lk(b.rec.mu);
        CHECK(b.rec.ups[0].first == "a@test");
        CHECK_FALSE(b.rec.ups[0].second.outbound);
        CHECK(b.rec.ups[0].second.auth.user_id == "cluster");
        // The client key reaches each message through ZAP metadata.
        CHECK(b.rec.ups[0].second.auth.key == cluster_keypair("cookie-1").pub);
    }
    CHECK(a.t->is_up("b@test"));

    constexpr int N = 100000;
    for (int i = 0; i < N; ++i) {
        auto r = a.t->post("b@test", send_int(i));
        while (r.code() == errc::overloaded) {
            std::this_thread::yield();
            r = a.t->post("b@test", send_int(i));
        }
        REQUIRE(r.ok());
    }
    REQUIRE(b.rec.wait([&] { return b.rec.values.size() == N; }, 30s));
    {
        std::lock_guard lk(b.rec.mu);
        bool ordered = true;
        for (int i = 0; i < N; ++i) ordered &= b.rec.values[i] == i;
        CHECK(ordered);
        for (auto& au : b.rec.auths) CHECK(au.user_id == "cluster");
        CHECK(b.rec.log.front() == "up:a@test");
    }
    auto st = a.t->stats();
    CHECK(st.envelopes_out >= N);
    CHECK(st.frames_out < N / 10);  // batched: many envelopes per ZeroMQ message

    // The reply path: b never dialled a, so it answers over its ROUTER.
    REQUIRE(b.t->post("a@test", send_int(7)).ok());
    REQUIRE(a.rec.wait([&] { return a.rec.values.size() == 1; }));
    CHECK(a.rec.values[0] == 7);
}

TEST_CASE("transport: nodes that dial each other get one session each way, ordered both ways") {
    test_node a("a@test", "c"), b("b@test", "c");
    a.connect_to(b);
    b.connect_to(a);
    REQUIRE(a.rec.wait([&] { return a.rec.ups.size() == 1; }));
    REQUIRE(b.rec.wait([&] { return b.rec.ups.size() == 1; }));
    constexpr int N = 20000;
    std::thread ta([&] {
        for (int i = 0; i < N; ++i)
            while (a.t->post("b@test", send_int(i)).code() == errc::overloaded) std::this_thread::yield();
    });
    for (int i = 0; i < N; ++i)
        while (b.t->post("a@test", send_int(i)).code() == errc::overloaded) std::this_thread::yield();
    ta.join();
    REQUIRE(a.rec.wait([&] { return a.rec.values.size() == N; }, 30s));
    REQUIRE(b.rec.wait([&] { return b.rec.values.size() == N; }, 30s));
    std::lock_guard la(a.rec.mu);
    std::lock_guard lb(b.rec.mu);
    bool ordered = true;
    for (int i = 0; i < N; ++i) ordered &= a.rec.values[i] == i && b.rec.values[i] == i;
    CHECK(ordered);
    CHECK(a.rec.ups.size() == 1);
    CHECK(b.rec.ups.size() == 1);
    CHECK(a.rec.downs.empty());
    CHECK(b.rec.downs.empty());
}

TEST_CASE("transport: a wrong cookie is refused on both sides, clearly, without a retry loop") {
    test_node a("a@test", "right"), b("b@test", "wrong");
    a.connect_to(b);
    REQUIRE(a.rec.wait([&] { return a.rec.refusals.size() == 1; }));
    REQUIRE(b.rec.wait([&] { return b.rec.refusals.size() == 1; }));
    {
        std::lock_guard lk(a.rec.mu);
        CHECK_FALSE(a.rec.refusals[0].inbound);
        CHECK(a.rec.refusals[0].reason.find("wrong cookie") != std::string::npos);
        CHECK(a.rec.refusals[0].endpoint == b.t->endpoint());
    }
    {
        std::lock_guard lk(b.rec.mu);
        CHECK(b.rec.refusals[0].inbound);
        CHECK(b.rec.refusals[0].key == cluster_keypair("right").pub);
        CHECK(b.rec.refusals[0].reason.find("unknown key") != std::string::npos);
        CHECK(b.rec.refusals[0].reason.find("right") == std::string::npos);  // no secret in the text
    }
    // No retry: nothing more happens (bounded wait for an event that must not come).
    CHECK_FALSE(b.rec.wait([&] { return b.rec.refusals.size() > 1; }, 700ms));
    CHECK(b.t->stats().refused_inbound == 1);
    CHECK(a.t->stats().refused_outbound == 1);
    CHECK(a.rec.ups.empty());
    CHECK(b.rec.ups.empty());
    CHECK(a.t->post("b@test", send_int(1)).code() == errc::nodedown);
}

TEST_CASE("transport: ZAP fails closed - unknown CURVE keys and plain clients get nothing through") {
    test_node b("b@test", "c");
    SECTION("a random CURVE key (no cookie, no authorizer) is refused") {
        keypair k = keypair::generate();
        public_key srv = b.t->key();
        raw_client c(b.t->endpoint(), &srv, &k);
        c.send(encode_frame(env_handshake{protocol_version, "intruder@x", 1, {}, false}));
        CHECK(c.wait_event(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
        REQUIRE(b.rec.wait([&] { return b.rec.refusals.size() == 1; }));
        CHECK(b.rec.refusals[0].key == k.pub);
    }
    SECTION("a plain (non-CURVE) client cannot talk") {
        raw_client c(b.t->endpoint(), nullptr, nullptr);
        c.send(encode_frame(env_handshake{protocol_version, "plain@x", 1, {}, false}));
        CHECK(c.wait_event(ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL);
    }
    SECTION("the cluster key with a wrong server key never gets through, and a kith link stops retrying") {
        test_node a("a@test", "c");
        a.t->connect(b.t->endpoint(), keypair::generate().pub);
        REQUIRE(a.rec.wait([&] { return a.rec.refusals.size() == 1; }));
        CHECK(a.rec.refusals[0].reason.find("wrong server key") != std::string::npos);
        CHECK_FALSE(a.rec.wait([&] { return a.rec.refusals.size() > 1; }, 500ms));
    }
    CHECK(b.rec.ups.empty());
    CHECK(b.rec.values.empty());
    CHECK(b.t->stats().frames_in == 0);
}

TEST_CASE("transport: the authorizer admits a granted key - trust is not reciprocal") {
    test_node alice("alice@home", "alice-cookie"), bob("bob@home", "bob-cookie");
    keypair grant = keypair::generate();
    REQUIRE(dial_granted(bob, alice, grant, "bob-kvs"));
    {
        std::lock_guard lk(alice.rec.mu);
        auto& info = alice.rec.ups[0].second;
        CHECK(info.auth.kind == trust_kind::granted);
        CHECK(info.auth.user_id == "grant:bob-kvs");
        CHECK(info.auth.key == grant.pub);
        CHECK_FALSE(info.outbound);
    }
    {
        std::lock_guard lk(bob.rec.mu);
        CHECK(bob.rec.ups[0].second.auth.kind == trust_kind::server);
        CHECK(bob.rec.ups[0].second.auth.user_id == "server:" + alice.t->key().z85());
    }
    REQUIRE(bob.t->post("alice@home", send_int(1)).ok());
    REQUIRE(alice.rec.wait([&] { return alice.rec.values.size() == 1; }));
    CHECK(alice.rec.auths.back().user_id == "grant:bob-kvs");
    // Alice answers over Bob's own connection.
    REQUIRE(alice.t->post("bob@home", send_int(2)).ok());
    REQUIRE(bob.rec.wait([&] { return bob.rec.values.size() == 1; }));
    // Alice dialling Bob with her cluster key gets nothing: Bob granted her nothing.
    alice.t->connect(bob.t->endpoint(), bob.t->key());
    REQUIRE(alice.rec.wait([&] { return alice.rec.refusals.size() == 1; }));
    CHECK(alice.rec.refusals[0].reason.find("authentication refused") != std::string::npos);
}

TEST_CASE("transport: goodbye on stop -> peer down 'shutdown' at once") {
    test_node a("a@test", "c");
    auto b = std::make_unique<test_node>("b@test", "c");
    a.connect_to(*b);
    REQUIRE(a.rec.wait([&] { return a.rec.ups.size() == 1; }));
    REQUIRE(b->rec.wait([&] { return b->rec.ups.size() == 1; }));
    REQUIRE(a.t->post("b@test", send_int(1)).ok());
    REQUIRE(b->rec.wait([&] { return b->rec.values.size() == 1; }));
    auto t0 = std::chrono::steady_clock::now();
    b->t->stop();
    // "shutdown" comes only from b's goodbye (a timeout would say
    // "timeout", after heartbeat_timeout), and before b's stop could run
    // to its bound (2 s).
    REQUIRE(a.rec.wait([&] { return a.rec.downs.size() == 1; }, 2s));
    CHECK(std::chrono::steady_clock::now() - t0 < 1900ms);
    CHECK(a.rec.downs[0] == std::make_pair(std::string("b@test"), std::string("shutdown")));
    // The stopping side reports its peers down too: every up has one down.
    CHECK(b->rec.downs.size() == 1);
    CHECK(a.t->post("b@test", send_int(2)).code() == errc::nodedown);
    CHECK(b->t->post("a@test", send_int(2)).code() == errc::shutdown);
}

TEST_CASE("transport: a silent peer is declared down 'timeout' within the bound, then reconnects") {
    // A timeout well above the stalls a loaded 2-core machine running
    // sanitized tests gives a thread (hundreds of ms): a shorter one made
    // a live peer look silent.
    auto fast = [](transport_options& o) {
        o.heartbeat_interval = 100ms;
        o.heartbeat_timeout = 1500ms;
    };
    test_node a("a@test", "c", fast), b("b@test", "c", fast);
    a.connect_to(b);
    REQUIRE(a.rec.wait([&] { return a.rec.ups.size() == 1; }));
    REQUIRE(b.rec.wait([&] { return b.rec.ups.size() == 1; }));
    // Quiet for longer than the timeout: heartbeats keep the link up.
    CHECK_FALSE(a.rec.wait([&] { return !a.rec.downs.empty(); }, 3000ms));
    auto t0 = std::chrono::steady_clock::now();
    b.t->debug_freeze(true);
    REQUIRE(a.rec.wait([&] { return a.rec.downs.size() == 1; }, 8s));
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(a.rec.downs[0].second == "timeout");
    // Not before the timeout, less what b may have been stalled before t0
    // (its last heartbeat is older then); at most the timeout plus slack.
    CHECK(took >= 1000ms);
    CHECK(took < 1500ms + 1400ms);
    CHECK(a.t->stats().heartbeat_timeouts >= 1);
    // Still frozen: a keeps trying (its CURVE handshakes time out on b's side)
    // but never mistakes the silence for a refusal.
    CHECK_FALSE(a.rec.wait([&] { return !a.rec.refusals.empty(); }, 2500ms));
    b.t->debug_freeze(false);
    REQUIRE(a.rec.wait([&] { return a.rec.ups.size() == 2; }, 10s));
    // b saw a's side go quiet too (its own timeout, or a's reset): down, then up again.
    bool b_ok = b.rec.wait([&] { return b.rec.ups.size() >= 2 && b.rec.ups.size() == b.rec.downs.size() + 1; }, 10s);
    {
        std::lock_guard lk(b.rec.mu);
        std::string log;
        for (auto& e : b.rec.log) log += e + " ";
        INFO("b's events: " << log);
        REQUIRE(b_ok);
    }
    REQUIRE(a.t->post("b@test", send_int(5)).ok());
    REQUIRE(b.rec.wait([&] { return !b.rec.values.empty(); }));
    CHECK(b.rec.values.back() == 5);
}

TEST_CASE("transport: a restarted peer gives down then up with the new creation") {
    test_node a("a@test", "c");
    keypair bk = keypair::generate();
    auto b = std::make_unique<test_node>("b@test", "c", nullptr, bk);
    std::string ep = b->t->endpoint();
    std::uint64_t c1 = b->t->creation();
    a.t->connect(ep, bk.pub);
    REQUIRE(a.rec.wait([&] { return a.rec.ups.size() == 1; }));
    b.reset();
    REQUIRE(a.rec.wait([&] { return a.rec.downs.size() == 1; }));
    b = std::make_unique<test_node>("b@test", "c",
                                    [&](transport_options& o) {
                                        o.bind_endpoint = ep;
                                        o.creation = c1 + 1;
                                    },
                                    bk);
    REQUIRE(a.rec.wait([&] { return a.rec.ups.size() == 2; }, 10s));
    std::lock_guard lk(a.rec.mu);
    CHECK(a.rec.ups[1].second.creation == c1 + 1);
    CHECK(a.rec.log == std::vector<std::string>{"up:b@test", "down:b@test:shutdown", "up:b@test"});
}

TEST_CASE("transport: one thread posting to one peer name through two transports reaches each peer over its own, "
          "and after the peer restarts reaches the new session") {
    // post() keeps the queue this thread posted to last (per transport and
    // table generation): alternating transports, and a session that ends
    // and comes back under the same name, must each find the right queue.
    test_node a1("a1@test", "c-one"), a2("a2@test", "c-two");
    keypair bk = keypair::generate();
    auto b1 = std::make_unique<test_node>("b@test", "c-one", nullptr, bk);
    test_node b2("b@test", "c-two");
    const std::string ep = b1->t->endpoint();
    const std::uint64_t c1 = b1->t->creation();
    REQUIRE(dial_up(a1, *b1->t, ep, &b1->rec));
    REQUIRE(dial_up(a2, *b2.t, b2.t->endpoint(), &b2.rec));
    constexpr int n = 2000;
    for (int i = 0; i < n; ++i) {
        transport& via = i % 2 == 0 ? *a1.t : *a2.t;
        REQUIRE(via.post("b@test", send_int(i)).ok());
    }
    REQUIRE(b1->rec.wait([&] { return b1->rec.values.size() == n / 2; }));
    REQUIRE(b2.rec.wait([&] { return b2.rec.values.size() == n / 2; }));
    {
        std::lock_guard l1(b1->rec.mu), l2(b2.rec.mu);
        bool own = true;
        for (int k = 0; k < n / 2; ++k) own &= b1->rec.values[k] == 2 * k && b2.rec.values[k] == 2 * k + 1;
        CHECK(own);
    }

    // b1 stops (the queue this thread posted to last closes): nodedown; a
    // new b@test at the same endpoint comes up: the next post reaches it.
    REQUIRE(a1.t->post("b@test", send_int(-1)).ok());
    b1.reset();
    REQUIRE(a1.rec.wait([&] { return a1.rec.downs.size() == 1; }));
    CHECK(a1.t->post("b@test", send_int(-2)).code() == errc::nodedown);
    auto b3 = std::make_unique<test_node>("b@test", "c-one",
                                          [&](transport_options& o) {
                                              o.bind_endpoint = ep;
                                              o.creation = c1 + 1;
                                          },
                                          bk);
    REQUIRE(a1.rec.wait([&] { return a1.rec.ups.size() == 2; }, 10s));
    REQUIRE(a1.t->post("b@test", send_int(42)).ok());
    REQUIRE(b3->rec.wait([&] { return !b3->rec.values.empty(); }));
    std::lock_guard lk(b3->rec.mu);
    CHECK(b3->rec.values == std::vector<std::int64_t>{42});
}

TEST_CASE("transport: a full queue answers 'overloaded', counts it, and leaves other peers alone") {
    auto small = [](transport_options& o) {
        o.max_queue_bytes = 256 * 1024;
        o.batch_bytes = 16 * 1024;
        o.sndhwm = 4;
        o.rcvhwm = 4;
        o.heartbeat_timeout = 20s;
        o.heartbeat_interval = 1s;
    };
    test_node a("a@test", "c", small), b("b@test", "c", small), c("c@test", "c", small);
    a.connect_to(b);
    a.connect_to(c);
    REQUIRE(a.rec.wait([&] { return a.rec.ups.size() == 2; }));
    REQUIRE(b.rec.wait([&] { return b.rec.ups.size() == 1; }));
    REQUIRE(c.rec.wait([&] { return c.rec.ups.size() == 1; }));
    b.t->debug_freeze(true);  // b stops reading: a's queue to b fills
    std::int64_t accepted = 0;
    bool overloaded = false;
    auto end = std::chrono::steady_clock::now() + 20s;
    while (!overloaded && std::chrono::steady_clock::now() < end) {
        auto r = a.t->post("b@test", send_int(accepted));
        if (r.ok()) ++accepted;
        else {
            REQUIRE(r.code() == errc::overloaded);
            // Retry briefly: it must stay overloaded while b is silent.
            overloaded = true;
            for (int i = 0; i < 1000 && overloaded; ++i) {
                std::this_thread::yield();
                if (a.t->post("b@test", send_int(accepted)).ok()) {
                    ++accepted;
                    overloaded = false;
                }
            }
        }
    }
    REQUIRE(overloaded);
    CHECK(a.t->stats().overload_drops >= 1);
    // Bounded: the queue limit plus ZeroMQ's HWM and the kernel's socket buffers.
    CHECK(accepted < 2000000);
    // Another peer is unaffected.
    REQUIRE(a.t->post("c@test", send_int(42)).ok());
    REQUIRE(c.rec.wait([&] { return c.rec.values.size() == 1; }));
    b.t->debug_freeze(false);
    REQUIRE(b.rec.wait([&] { return b.rec.values.size() == static_cast<std::size_t>(accepted); }, 30s));
    std::lock_guard lk(b.rec.mu);
    bool ordered = true;
    for (std::int64_t i = 0; i < accepted; ++i) ordered &= b.rec.values[i] == i;
    CHECK(ordered);
}

TEST_CASE("transport: a malformed frame from an authenticated peer is counted and dropped - the link carries on") {
    test_node b("b@test", "c");
    keypair ck = cluster_keypair("c");
    public_key srv = b.t->key();
    raw_client raw(b.t->endpoint(), &srv, &ck);
    // Data before any handshake is dropped, not delivered.
    raw.send(encode_frame(send_int(-1)));
    raw.send(encode_frame(env_handshake{protocol_version, "raw@test", 99, {}, false}));
    REQUIRE(b.rec.wait([&] { return b.rec.ups.size() == 1; }));
    raw.send(std::string("\x01\xff garbage that is not a kith frame", 34));
    raw.send(encode_frame(send_int(1)));
    REQUIRE(b.rec.wait([&] { return b.rec.values.size() == 1; }));
    CHECK(b.rec.values[0] == 1);
    CHECK(b.rec.decode_errors == 1);
    CHECK(b.t->stats().decode_errors == 1);
    CHECK(b.t->stats().protocol_errors >= 1);
    CHECK(b.t->is_up("raw@test"));
    CHECK(b.rec.downs.empty());
}

TEST_CASE("transport: post to an unknown peer is nodedown - setup errors throw") {
    test_node a("a@test", "c");
    CHECK(a.t->post("nobody@x", send_int(1)).code() == errc::nodedown);
    transport_options o;
    o.node_name = "z@test";
    o.cookie = "c";
    o.node_keys = keypair::generate();
    o.bind_endpoint = a.t->endpoint();  // already bound
    transport t(o, {});
    CHECK_THROWS_AS(t.start(), setup_error);
    transport_options no_name;
    CHECK_THROWS_AS(transport(no_name, {}), setup_error);
}
