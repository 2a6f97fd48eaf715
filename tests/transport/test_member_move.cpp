// Moving to the member port (docs/protocol.md, "Moving to the member port"):
// a member that dials a node's public port moves its link to the member port
// the node's handshake states, without losing or reordering anything in
// either direction; where the member port cannot be reached the link stays;
// and `move` / `move_ack` from anyone but the member whose move it is are
// protocol errors that change nothing.
#include <atomic>
#include <thread>

#include "kith_catch.hpp"
#include "raw_client.hpp"
#include "raw_listener.hpp"
#include "transport_harness.hpp"

using namespace kith;
using namespace kith::detail;
using namespace kt;

namespace {

// Posts 0..n-1 from `from` to `to_name` while the link moves (retrying a
// post the full queue refuses), on a thread of its own.
struct streamer {
    std::thread th;
    std::atomic<int> refused{0};
    streamer(transport& from, std::string to_name, int n) {
        th = std::thread([&from, to_name, n, this] {
            for (int i = 0; i < n;) {
                auto r = from.post(to_name, send_int(i));
                if (r.ok()) {
                    ++i;
                } else {
                    refused++;
                    std::this_thread::sleep_for(1ms);
                }
            }
        });
    }
    ~streamer() { th.join(); }
};

std::vector<std::int64_t> iota(int n) {
    std::vector<std::int64_t> v(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
    return v;
}

template <class F>
bool poll_until(F f, std::chrono::milliseconds d = 10s) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (!f() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(2ms);
    return f();
}

std::string frame_of(const envelope& e) { return encode_frame(e); }

std::uint16_t port_of_for_test(const std::string& ep) {
    return static_cast<std::uint16_t>(std::stoi(ep.substr(ep.rfind(':') + 1)));
}

// `c` says it is node `name`; the node's handshake answer, decoded.
env_handshake handshake_answer(raw_client& c, const std::string& name) {
    c.send(frame_of(env_handshake{protocol_version, name, 1, {}, false}));
    auto hs = c.recv();
    REQUIRE(hs.has_value());
    auto d = decode_frame(*hs, frame_limits{});
    REQUIRE(d.ok());
    auto* answer = std::get_if<env_handshake>(&d.value().at(0));
    REQUIRE(answer != nullptr);
    return *answer;
}

}  // namespace

TEST_CASE("member move: a member that dialled the public port moves to the member port - both ways whole and in order") {
    test_node alice("alice@home", "c"), bob("bob@home", "c");
    REQUIRE_FALSE(alice.t->member_endpoint().empty());
    REQUIRE(dial_up(bob, *alice.t, alice.t->endpoint(), &alice.rec));
    // Both directions stream while the move happens (it starts at once).
    constexpr int n = 20000;
    {
        streamer to_alice(*bob.t, "alice@home", n), to_bob(*alice.t, "bob@home", n);
        REQUIRE(alice.rec.wait([&] { return alice.rec.values.size() >= n; }, 30s));
        REQUIRE(bob.rec.wait([&] { return bob.rec.values.size() >= n; }, 30s));
    }
    REQUIRE(poll_until([&] { return alice.t->stats().member_moves == 1 && bob.t->stats().member_moves == 1; }));
    std::lock_guard la(alice.rec.mu), lb(bob.rec.mu);
    CHECK(alice.rec.values == iota(n));
    CHECK(bob.rec.values == iota(n));
    CHECK(bob.t->stats().member_moves_failed == 0);
    CHECK(alice.t->stats().protocol_errors == 0);
    CHECK(bob.t->stats().protocol_errors == 0);
    CHECK(alice.rec.downs.empty());
    CHECK(bob.rec.downs.empty());
    // Bob's view of alice is still the endpoint it dialled.
    CHECK(bob.rec.ups.size() == 1);
    CHECK(bob.rec.ups[0].second.endpoint == alice.t->endpoint());
}

TEST_CASE("member move: the link is on the member port afterwards - a non-members' flood pausing the public port does not hold it") {
    test_node alice("alice@home", "c", tiny_guests_budget);
    test_node bob("bob@home", "c"), carol("carol@home", "other");
    REQUIRE(dial_up(bob, *alice.t, alice.t->endpoint(), &alice.rec));
    REQUIRE(poll_until([&] { return bob.t->stats().member_moves == 1; }));
    REQUIRE(dial_granted(carol, alice, keypair::generate(), "carol"));
    REQUIRE(flood_past_budget(carol, alice, "alice@home"));
    const auto pauses = alice.t->stats().public_pauses;
    REQUIRE(pauses > 0);
    for (int i = 0; i < 100; ++i) REQUIRE(bob.t->post("alice@home", send_int(i)).ok());
    REQUIRE(alice.rec.wait([&] { return alice.rec.values.size() == 100; }));
    CHECK(alice.rec.values == iota(100));
}

TEST_CASE("member move: a member port not reachable where the public port is - the link stays, nothing lost") {
    // The member port on another loopback address: the dialler tries the
    // public port's host, where nothing listens on that port.
    test_node alice("alice@home", "c", [](transport_options& o) { o.member_bind_endpoint = "tcp://127.0.0.2:0"; });
    test_node bob("bob@home", "c");
    REQUIRE(alice.t->member_endpoint().rfind("tcp://127.0.0.2:", 0) == 0);
    REQUIRE(dial_up(bob, *alice.t, alice.t->endpoint(), &alice.rec));
    constexpr int n = 5000;
    {
        streamer to_alice(*bob.t, "alice@home", n), to_bob(*alice.t, "bob@home", n);
        REQUIRE(alice.rec.wait([&] { return alice.rec.values.size() >= n; }, 30s));
        REQUIRE(bob.rec.wait([&] { return bob.rec.values.size() >= n; }, 30s));
    }
    // The mover gives up within the heartbeat timeout (2.5 s).
    REQUIRE(poll_until([&] { return bob.t->stats().member_moves_failed == 1; }));
    CHECK(bob.t->stats().member_moves == 0);
    CHECK(alice.t->stats().member_moves == 0);
    CHECK(bob.rec.refusals.empty());  // not a refusal anyone hears of
    // Still up and carrying traffic afterwards.
    REQUIRE(bob.t->post("alice@home", send_int(n)).ok());
    REQUIRE(alice.rec.wait([&] { return alice.rec.values.size() == n + 1; }));
    std::lock_guard la(alice.rec.mu), lb(bob.rec.mu);
    CHECK(alice.rec.values == iota(n + 1));
    CHECK(bob.rec.values == iota(n));
    CHECK(alice.rec.downs.empty());
}

TEST_CASE("member move: disconnecting the dialled endpoint after the move ends the session on both sides") {
    test_node alice("alice@home", "c"), bob("bob@home", "c");
    REQUIRE(dial_up(bob, *alice.t, alice.t->endpoint(), &alice.rec));
    REQUIRE(poll_until([&] { return alice.t->stats().member_moves == 1 && bob.t->stats().member_moves == 1; }));
    bob.t->disconnect(alice.t->endpoint());
    REQUIRE(bob.rec.wait([&] { return bob.rec.downs.size() == 1; }));
    REQUIRE(alice.rec.wait([&] { return alice.rec.downs.size() == 1; }));
    CHECK(bob.rec.downs[0].second == "shutdown");
    CHECK(alice.rec.downs[0].second == "shutdown");
    CHECK_FALSE(bob.t->is_up("alice@home"));
    CHECK_FALSE(alice.t->is_up("bob@home"));
}

TEST_CASE("member move: the listener restarts after the move - the session comes back and moves again") {
    auto keys = keypair::generate();
    auto alice = std::make_unique<test_node>("alice@home", "c", nullptr, keys);
    const std::string ep = alice->t->endpoint();
    const std::string port = ep.substr(ep.rfind(':') + 1);
    test_node bob("bob@home", "c");
    REQUIRE(dial_up(bob, *alice->t, ep, &alice->rec));
    REQUIRE(poll_until([&] { return bob.t->stats().member_moves == 1; }));
    alice.reset();
    REQUIRE(bob.rec.wait([&] { return bob.rec.downs.size() == 1; }));
    alice = std::make_unique<test_node>("alice@home", "c",
                                        [&](transport_options& o) { o.bind_endpoint = "tcp://127.0.0.1:" + port; }, keys);
    REQUIRE(bob.rec.wait([&] { return bob.rec.ups.size() == 2; }, 15s));
    REQUIRE(poll_until([&] { return bob.t->stats().member_moves == 2; }));
    REQUIRE(bob.t->post("alice@home", send_int(7)).ok());
    REQUIRE(alice->rec.wait([&] { return alice->rec.values.size() == 1; }));
    CHECK(bob.t->stats().member_moves_failed == 0);
}

TEST_CASE("member move: a grantee is never told the member port, and its move and move_ack are protocol errors") {
    test_node alice("alice@home", "c"), carol("carol@home", "other");
    keypair grant = keypair::generate();
    admit_grantee(*alice.t, grant.pub, "carol");
    public_key srv = alice.t->key();
    raw_client g(alice.t->endpoint(), &srv, &grant);
    CHECK(handshake_answer(g, "grantee@x").member_port == 0);
    const auto before = alice.t->stats().protocol_errors;
    g.send(frame_of(env_move{std::string(16, '\x81')}));
    g.send(frame_of(env_move_ack{true}));
    REQUIRE(poll_until([&] { return alice.t->stats().protocol_errors >= before + 2; }));
    CHECK(alice.t->stats().protocol_errors == before + 2);
    CHECK(alice.t->stats().member_moves == 0);
    CHECK(alice.t->is_up("grantee@x"));
    // A kith grantee dialling the public port stays there: no mover.
    REQUIRE(dial_granted(carol, alice, keypair::generate(), "carol2"));
    REQUIRE(carol.t->post("alice@home", send_int(1)).ok());
    REQUIRE(alice.rec.wait([&] { return alice.rec.values.size() == 1; }));
    CHECK(carol.t->stats().member_moves == 0);
    CHECK(carol.t->stats().member_moves_failed == 0);
}

TEST_CASE("member move: move and move_ack from a stranger, from a member naming no link of its session, or unasked - protocol errors, nothing moves") {
    test_node alice("alice@home", "c"), bob("bob@home", "c");
    alice.t->set_authorizer([](const public_key&, std::string_view) { return authz_decision::stranger(); });
    // A stranger (its own key) on the public port.
    keypair sk = keypair::generate();
    public_key srv = alice.t->key();
    raw_client stranger(alice.t->endpoint(), &srv, &sk);
    stranger.send(frame_of(env_handshake{protocol_version, "stranger@x", 1, {}, false}));
    auto hs = stranger.recv();
    REQUIRE(hs.has_value());
    auto before = alice.t->stats().protocol_errors;
    stranger.send(frame_of(env_move{std::string(16, '\x81')}));
    stranger.send(frame_of(env_move_ack{true}));
    REQUIRE(poll_until([&] { return alice.t->stats().protocol_errors >= before + 2; }));
    // A member (the cluster key) on the public port: its handshake answer
    // states the member port; a move naming a link that is not its own is
    // declined.
    keypair ck = cluster_keypair("c");
    raw_client member(alice.t->endpoint(), &srv, &ck);
    CHECK(handshake_answer(member, "raw@x").member_port == port_of_for_test(alice.t->member_endpoint()));
    // Bob's real link to alice (by the member port): a link of another session.
    REQUIRE(dial_up(bob, *alice.t, alice.t->member_endpoint(), &alice.rec));
    before = alice.t->stats().protocol_errors;
    member.send(frame_of(env_move{std::string(16, '\x82')}));  // no such link: declined
    std::optional<envelope> ack;
    for (int tries = 0; tries < 10 && !ack; ++tries) {
        auto f = member.recv();
        REQUIRE(f.has_value());
        auto d = decode_frame(*f, frame_limits{});
        REQUIRE(d.ok());
        for (auto& e : d.value())
            if (std::holds_alternative<env_move_ack>(e)) ack = e;
    }
    REQUIRE(ack.has_value());
    CHECK_FALSE(std::get<env_move_ack>(*ack).accepted);
    member.send(frame_of(env_move{"short"}));  // a second move on the link: not answered
    // An answer nobody asked for (on a link it dialled, the listener never asks).
    member.send(frame_of(env_move_ack{true}));
    REQUIRE(poll_until([&] { return alice.t->stats().protocol_errors >= before + 3; }));
    CHECK(alice.t->stats().protocol_errors == before + 3);
    CHECK(alice.t->stats().member_moves == 0);
    // Bob's link still carries its envelopes.
    REQUIRE(alice.t->post("bob@home", send_int(1)).ok());
    REQUIRE(bob.rec.wait([&] { return bob.rec.values.size() == 1; }));
    // Everyone is still up, and alice still answers.
    CHECK(alice.t->is_up("bob@home"));
    CHECK(alice.t->is_up("raw@x"));
    CHECK(alice.t->is_up("stranger@x"));
}

TEST_CASE("member move: a node that stops right after a stream, after the move - all of it, in order, before its down") {
    for (int stopper = 0; stopper < 2; ++stopper) {
        auto alice = std::make_unique<test_node>("alice@home", "c");
        auto bob = std::make_unique<test_node>("bob@home", "c");
        REQUIRE(dial_up(*bob, *alice->t, alice->t->endpoint(), &alice->rec));
        REQUIRE(poll_until([&] { return bob->t->stats().member_moves == 1 && alice->t->stats().member_moves == 1; }));
        // The dialler (bob) or the listener (alice) streams, then stops at once.
        auto& from = stopper == 0 ? bob : alice;
        auto& to = stopper == 0 ? alice : bob;
        const std::string to_name = stopper == 0 ? "alice@home" : "bob@home";
        constexpr int n = 20000;
        { streamer s(*from->t, to_name, n); }
        from.reset();  // stop(): flushes, then says goodbye
        REQUIRE(to->rec.wait([&] { return to->rec.downs.size() == 1; }));
        INFO("stopper " << stopper << ", got " << to->rec.values.size() << ", down " << (to->rec.downs.empty() ? "" : to->rec.downs[0].second));
        std::lock_guard lk(to->rec.mu);
        CHECK(to->rec.log.back().starts_with("down:"));
        // Dialler or listener: stop() waits (bounded) until ZeroMQ took
        // every frame, then says goodbye behind them. (A listener's stop()
        // used to hand on only what its ROUTER took at once: a prefix, and
        // at times no goodbye, so the peer saw connection_closed.)
        CHECK(to->rec.values == iota(n));
        CHECK(to->rec.downs[0].second == "shutdown");
    }
}

TEST_CASE("member move: the listener streams large envelopes while the link moves - they arrive, the credit keeps flowing") {
    test_node alice("alice@home", "c"), bob("bob@home", "c");
    REQUIRE(dial_up(bob, *alice.t, alice.t->endpoint(), &alice.rec));
    // At once: 12 envelopes of 512 KiB (in fragments, credited by bob on the
    // link they came on, which it parks after the move), then a marker.
    const kith::term big(std::string(512 << 10, 'x'));
    for (int i = 0; i < 12; ++i) {
        auto r = alice.t->post("bob@home", kith::env_send{kith::pid{"x@y", 1}, big});
        if (!r.ok()) FAIL("post " << i << ": " << r.err().detail);
    }
    REQUIRE(alice.t->post("bob@home", send_int(1)).ok());
    REQUIRE(bob.rec.wait([&] { return bob.rec.values.size() == 1; }, 30s));
    REQUIRE(poll_until([&] { return bob.t->stats().member_moves == 1; }));
    // More large ones after the move still go (a window short of lost credit would stall them).
    for (int i = 0; i < 12; ++i) {
        auto r = alice.t->post("bob@home", kith::env_send{kith::pid{"x@y", 1}, big});
        if (!r.ok()) FAIL("post " << i << " after the move: " << r.err().detail);
    }
    REQUIRE(alice.t->post("bob@home", send_int(2)).ok());
    REQUIRE(bob.rec.wait([&] { return bob.rec.values.size() == 2; }, 30s));
    CHECK(alice.t->stats().credit_timeouts == 0);
    CHECK(bob.rec.downs.empty());
    CHECK(alice.rec.downs.empty());
}

TEST_CASE("stop: a listener that stops right after a stream on a link dialled at its member port - all of it, in order, then shutdown") {
    auto alice = std::make_unique<test_node>("alice@home", "c");
    test_node bob("bob@home", "c");
    REQUIRE(dial_up(bob, *alice->t, alice->t->member_endpoint(), &alice->rec));
    constexpr int n = 20000;
    { streamer s(*alice->t, "bob@home", n); }
    alice.reset();
    REQUIRE(bob.rec.wait([&] { return bob.rec.downs.size() == 1; }));
    INFO("got " << bob.rec.values.size() << ", down " << bob.rec.downs[0].second);
    std::lock_guard lk(bob.rec.mu);
    CHECK(bob.rec.values == iota(n));
    CHECK(bob.rec.downs[0].second == "shutdown");
    CHECK(bob.t->stats().member_moves == 0);
}

TEST_CASE("stop: nodes in a ring (each dialled the next) stop at once - none waits for another's close to its bound") {
    // a dials b, b dials c, c dials a: each has a link it dialled and one
    // dialled to it, from different peers.
    std::unique_ptr<test_node> n[3] = {std::make_unique<test_node>("a@home", "c"),
                                       std::make_unique<test_node>("b@home", "c"),
                                       std::make_unique<test_node>("c@home", "c")};
    for (int i = 0; i < 3; ++i)
        REQUIRE(dial_up(*n[i], *n[(i + 1) % 3]->t, n[(i + 1) % 3]->t->member_endpoint(), &n[(i + 1) % 3]->rec));
    // Each stop waits (at most 2 s) for the connections to its ports to
    // close; each node closes its own before that wait, so none runs to
    // the bound (before, each waited for the next: 2 s each).
    std::atomic<long long> ms[3];
    std::vector<std::thread> ts;
    for (int i = 0; i < 3; ++i)
        ts.emplace_back([&, i] {
            const auto t0 = std::chrono::steady_clock::now();
            n[i].reset();
            ms[i] = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
        });
    for (auto& t : ts) t.join();
    INFO("stops took " << ms[0] << ", " << ms[1] << ", " << ms[2] << " ms");
    for (auto& m : ms) CHECK(m < 1900);  // the bound is 2 s (+ 200 ms linger)
}

TEST_CASE("stop: a grantee or stranger that never closes its connection holds a node's stop no longer than its bound") {
    // A heartbeat timeout far above the 2 s cap: a stop that ignored the
    // cap would wait 10 s.
    auto alice = std::make_unique<test_node>("alice@home", "c", [](transport_options& o) { o.heartbeat_timeout = 10s; });
    keypair grant = keypair::generate();
    admit_grantee(*alice->t, grant.pub, "carol");
    public_key srv = alice->t->key();
    // A grantee with a session that reads nothing more and never closes.
    raw_client g(alice->t->endpoint(), &srv, &grant);
    CHECK(handshake_answer(g, "grantee@x").node == "alice@home");
    REQUIRE(poll_until([&] { return alice->t->stats().peers_up == 1; }));
    const auto t0 = std::chrono::steady_clock::now();
    alice.reset();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    // The wait for peers to close is bounded by min(heartbeat timeout, 2 s),
    // plus the sockets' 200 ms linger: never longer, whatever the peer does
    // (2 s of slack for a loaded, sanitized run).
    INFO("stop took " << ms << " ms");
    CHECK(ms < 4200);
}

TEST_CASE("stop: a dialler that stops right after a stream while its peer streams to it - the peer gets all of it, then shutdown") {
    for (const bool member_port : {true, false}) {
        test_node alice("alice@home", "c");
        auto bob = std::make_unique<test_node>("bob@home", "c");
        REQUIRE(dial_up(*bob, *alice.t, member_port ? alice.t->member_endpoint() : alice.t->endpoint(), &alice.rec));
        if (!member_port)
            REQUIRE(poll_until([&] { return bob->t->stats().member_moves == 1 && alice.t->stats().member_moves == 1; }));
        // Alice streams to bob until his down, so his connection may have
        // her bytes unread in it when he closes it (the reset that cost a
        // stopping listener its stream's end, session 33; for a dialler
        // suspected, not seen: this guards it).
        std::atomic<bool> stop_alice{false};
        std::thread alice_streams([&] {
            const kith::term chunk(std::string(4096, 'a'));
            while (!stop_alice.load())
                if (!alice.t->post("bob@home", kith::env_send{kith::pid{"x@y", 1}, chunk}).ok())
                    std::this_thread::sleep_for(1ms);
        });
        // Bob's stream: large envelopes (alice's side of the connection
        // full of them when he stops), then numbered ones.
        const kith::term big(std::string(256 << 10, 'b'));
        const auto until = std::chrono::steady_clock::now() + 30s;
        int posted = 0;
        while (posted < 64 && std::chrono::steady_clock::now() < until) {
            if (bob->t->post("alice@home", kith::env_send{kith::pid{"x@y", 1}, big}).ok()) ++posted;
            else std::this_thread::sleep_for(1ms);
        }
        constexpr int n = 2000;
        { streamer s(*bob->t, "alice@home", n); }
        bob.reset();  // stop(): flushes, says goodbye, closes his connection
        const bool down = alice.rec.wait([&] { return alice.rec.downs.size() == 1; });
        stop_alice = true;
        alice_streams.join();
        REQUIRE(posted == 64);
        REQUIRE(down);
        std::lock_guard lk(alice.rec.mu);
        INFO((member_port ? "member port" : "public port, moved") << ": got " << alice.rec.values.size() << ", down "
                                                                  << alice.rec.downs[0].second);
        CHECK(alice.rec.values == iota(n));
        CHECK(alice.rec.downs[0].second == "shutdown");
    }
}

namespace {

constexpr std::size_t move_big = 600u << 10;

envelope large_to_b(std::int64_t tag) {
    static const std::vector<std::uint8_t> bytes(move_big, 0x7a);
    return kith::env_send{kith::pid{"b@test", 1}, kith::arr(tag, kith::binary(bytes))};
}

// What `L` receives until `done` says stop or nothing came for timeout_ms:
// heartbeats skipped, fragments credited on the link they came on (their
// bytes added to `fragment_bytes`), every other envelope kept in order.
template <class Done>
std::vector<envelope> read_port(raw_listener& L, raw_listener::port& p, std::size_t& fragment_bytes, Done done,
                                int timeout_ms = 5000) {
    std::vector<envelope> kept;
    while (!done(kept)) {
        std::string rid;
        auto es = L.recv_envelopes(p, &rid, timeout_ms);
        if (es.empty()) break;
        for (auto& e : es) {
            if (std::holds_alternative<env_heartbeat>(e)) continue;
            if (auto* f = std::get_if<env_fragment>(&e)) {
                fragment_bytes += f->data.size();
                L.send(p, rid, env_credit{f->data.size()});
                continue;
            }
            kept.push_back(std::move(e));
        }
    }
    return kept;
}

std::size_t encoded_size(const envelope& e) {
    std::string bytes;
    encode_envelope(e, bytes);
    return bytes.size();
}

bool ends_in_goodbye(const std::vector<envelope>& es) {
    return !es.empty() && std::holds_alternative<env_goodbye>(es.back());
}

// Member a (a real transport) linked to the raw listener b at its public port.
struct raw_pair {
    raw_listener b{"b@test", "c"};
    std::mutex mu;
    std::vector<std::string> warnings;  // a's
    test_node a{"a@test", "c", [this](transport_options& o) {
                    o.heartbeat_timeout = 20s;  // b sends no heartbeats
                    o.log = [this](const log_record& r) {
                        if (r.level != log_level::warning) return;
                        std::lock_guard lk(mu);
                        warnings.emplace_back(r.text);
                    };
                }};
    std::string l1;  // b's routing id of the link
    std::thread stopper;
    raw_pair() {
        REQUIRE(b.ok());
        a.t->connect(b.pub.endpoint, b.key.pub);
        l1 = b.accept_member(b.pub);
        REQUIRE_FALSE(l1.empty());
    }
    // The mover's handshake accepted on b's member port and a's `move` read
    // on the first link (unanswered); b's routing id of the mover.
    std::string await_move() {
        std::string l2 = b.accept_member(b.mem);
        REQUIRE_FALSE(l2.empty());
        std::size_t on_l1 = 0;
        auto got = read_port(b, b.pub, on_l1, [](auto& es) { return !es.empty(); });
        REQUIRE(got.size() == 1);
        REQUIRE(std::holds_alternative<env_move>(got[0]));
        CHECK(on_l1 == 0);
        return l2;
    }
    // a.stop() on a thread of its own; true once it flushed and drains.
    bool stop_in_background() {
        stopper = std::thread([this] { a.t->stop(); });
        return poll_until([&] { return a.t->stats().stop_drain_turns > 0; });
    }
    ~raw_pair() {
        if (stopper.joinable()) stopper.join();  // stop() ends within its bound on every path
    }
};

}  // namespace

// The dialler's side of a move while it stops, with the listener held at
// each step (a raw listener: tests/transport/raw_listener.hpp). Session 35:
// a stopping dialler whose `move` waited for its answer sent its queued
// fragments on the first link after `move` (stop() flushed past the hold);
// the answer then parked that link with the listener's credits for them
// unread, so stop() waited its full bound and the reset lost the last
// fragments (CI, under load: 5 in 20 runs).
TEST_CASE("member move: a dialler that stops while its move awaits the answer sends nothing more on the first link - all of it by the member port after the answer, then goodbye") {
    raw_pair p;
    auto& b = p.b;
    auto& a = p.a;
    const std::string& l1 = p.l1;
    const std::string l2 = p.await_move();  // a dials the member port the handshake states
    std::size_t on_l1 = 0, on_l2 = 0;
    // Unanswered: a posts three large envelopes and stops.
    for (int i = 0; i < 3; ++i) REQUIRE(a.t->post("b@test", large_to_b(i)).ok());
    const auto stopped = std::chrono::steady_clock::now();
    const bool draining = p.stop_in_background();
    auto after_move = read_port(b, b.pub, on_l1, [](auto&) { return false; }, 200);
    REQUIRE(draining);
    CHECK(after_move.empty());
    CHECK(on_l1 == 0);
    // The answer: everything goes by the member port, then goodbye.
    b.send(b.pub, l1, env_move_ack{true});
    auto rest = read_port(b, b.mem, on_l2, ends_in_goodbye);
    // Every fragment credited at once: the drain ends then, not at its bound
    // (2 s from the stop), which it waited for when the credits went where a
    // no longer read.
    CHECK(std::chrono::steady_clock::now() - stopped < 1900ms);
    CHECK(on_l2 == 3 * encoded_size(large_to_b(0)));  // every fragment, each once
    REQUIRE(ends_in_goodbye(rest));
    CHECK(std::get<env_goodbye>(rest.back()).reason == "shutdown");
    CHECK(a.t->stats().member_moves == 1);
}

TEST_CASE("member move: a dialler whose mover joins while it stops does not move - all of it on the first link, then goodbye") {
    raw_pair p;
    auto& b = p.b;
    auto& a = p.a;
    REQUIRE(poll_until([&] { return a.t->is_up("b@test"); }));
    // a dials the member port; its handshake there is answered only once a stops.
    std::size_t on_l1 = 0, on_l2 = 0;
    for (int i = 0; i < 3; ++i) REQUIRE(a.t->post("b@test", large_to_b(i)).ok());
    const bool draining = p.stop_in_background();
    const std::string l2 = b.accept_member(b.mem);
    REQUIRE(draining);
    REQUIRE_FALSE(l2.empty());
    auto got = read_port(b, b.pub, on_l1, ends_in_goodbye);
    REQUIRE(ends_in_goodbye(got));
    CHECK(got.size() == 1);  // no move: only the goodbye besides fragments
    CHECK(std::get<env_goodbye>(got.back()).reason == "shutdown");
    CHECK(on_l1 == 3 * encoded_size(large_to_b(0)));
    auto on_mover = read_port(b, b.mem, on_l2, [](auto&) { return false; }, 200);
    CHECK(on_mover.empty());
    CHECK(on_l2 == 0);
    CHECK(a.t->stats().member_moves == 0);
}

// The attack the hold opens: a listener (a broken or hostile kith) that never
// answers a stopping dialler's move. The queue it holds costs that peer its
// envelopes at the stop's bound, never more time, and the dialler says so.
TEST_CASE("member move: a listener that never answers a stopping dialler's move holds its stop no longer than the bound - a warning names it, goodbye on the first link") {
    raw_pair p;
    auto& b = p.b;
    auto& a = p.a;
    p.await_move();
    std::size_t on_l1 = 0, on_l2 = 0;
    for (int i = 0; i < 3; ++i) REQUIRE(a.t->post("b@test", large_to_b(i)).ok());
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(p.stop_in_background());
    // Never answered: nothing but the goodbye on the first link, at the bound.
    auto got = read_port(b, b.pub, on_l1, ends_in_goodbye);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    p.stopper.join();
    REQUIRE(ends_in_goodbye(got));
    CHECK(got.size() == 1);
    CHECK(std::get<env_goodbye>(got.back()).reason == "shutdown");
    CHECK(on_l1 == 0);
    CHECK(read_port(b, b.mem, on_l2, [](auto&) { return false; }, 200).empty());
    CHECK(on_l2 == 0);
    INFO("goodbye " << ms << " ms after stop()");
    CHECK(ms >= 1900);  // the bound: heartbeat_timeout (20 s here), at most 2 s
    CHECK(ms < 4200);   // never much longer (2 s of slack for a loaded, sanitized run)
    std::lock_guard lk(p.mu);
    REQUIRE(p.warnings.size() == 1);
    INFO(p.warnings[0]);
    CHECK(p.warnings[0].find("stop(): b@test did not get everything before this node closed: 3 large envelope(s) not sent after 2000 ms") !=
          std::string::npos);
    CHECK(p.warnings[0].find("b@test did not answer our move to its member port") != std::string::npos);
    CHECK(a.t->stats().member_moves == 0);
}

// What quiet_own_links opens: a peer we dialled that never stops sending
// while we stop. It is read and dropped (never delivered), and holds the
// stop no longer than its bound.
TEST_CASE("stop: a peer that keeps sending on a link we dialled holds our stop no longer than its bound - goodbye still sent") {
    raw_pair p;
    auto& b = p.b;
    REQUIRE(poll_until([&] { return p.a.t->is_up("b@test"); }));
    std::atomic<bool> sending{true};
    std::thread flood([&] {
        while (sending.load()) {
            b.send(b.pub, p.l1, env_heartbeat{});
            std::this_thread::sleep_for(2ms);
        }
    });
    const auto t0 = std::chrono::steady_clock::now();
    p.a.t->stop();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    sending = false;
    flood.join();
    INFO("stop took " << ms << " ms");
    CHECK(ms < 4200);  // the bound (2 s) + linger, with slack for a loaded, sanitized run
    std::size_t on_l1 = 0;
    auto got = read_port(b, b.pub, on_l1, ends_in_goodbye);
    REQUIRE(ends_in_goodbye(got));
    CHECK(std::get<env_goodbye>(got.back()).reason == "shutdown");
}
