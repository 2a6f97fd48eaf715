// The member port (docs/security.md, "The member port"): a second ROUTER
// that admits only the cluster key, beside the public endpoint that admits
// everybody as before; and the public port's read budget, which pauses
// reading it (not the member port) while non-members' bytes are spent.
#include <thread>

#include "kith_catch.hpp"
#include "transport_harness.hpp"

using namespace kith;
using namespace kith::detail;
using namespace kt;

TEST_CASE("transport: a member port beside the public one - members get in, a grantee is refused with the reason") {
    test_node alice("alice@home", "c"), bob("bob@home", "c"), carol("carol@home", "other");
    const std::string mep = alice.t->member_endpoint();
    REQUIRE_FALSE(mep.empty());
    CHECK(mep != alice.t->bound_endpoint());
    CHECK(mep.rfind("tcp://127.0.0.1:", 0) == 0);  // the public port's address, another port
    keypair grant = keypair::generate();
    admit_grantee(*alice.t, grant.pub, "carol-kvs");
    // A member by the member port.
    REQUIRE(dial_up(bob, *alice.t, mep, &alice.rec));
    {
        std::lock_guard lk(alice.rec.mu);
        CHECK(alice.rec.ups[0].second.auth.kind == trust_kind::cluster);
    }
    REQUIRE(bob.t->post("alice@home", send_int(1)).ok());
    REQUIRE(alice.rec.wait([&] { return alice.rec.values.size() == 1; }));
    REQUIRE(alice.t->post("bob@home", send_int(2)).ok());  // the answer goes back by the member port
    REQUIRE(bob.rec.wait([&] { return bob.rec.values.size() == 1; }));
    // A grantee at the member port: refused at ZAP, both sides say so.
    carol.t->connect(mep, alice.t->key(), link_credentials{grant});
    REQUIRE(carol.rec.wait([&] { return carol.rec.refusals.size() == 1; }));
    CHECK(carol.rec.refusals[0].code == errc::unauthorized);
    REQUIRE(alice.rec.wait([&] { return !alice.rec.refusals.empty(); }));
    {
        std::lock_guard lk(alice.rec.mu);
        CHECK(alice.rec.refusals[0].inbound);
        CHECK(alice.rec.refusals[0].reason == member_port_refusal);
        REQUIRE(alice.rec.refusals[0].key.has_value());
        CHECK(*alice.rec.refusals[0].key == grant.pub);
    }
    // The same grantee at the public endpoint: admitted as before.
    carol.t->connect(alice.t->bound_endpoint(), alice.t->key(), link_credentials{grant});
    REQUIRE(alice.rec.wait([&] { return alice.rec.ups.size() == 2; }));
    {
        std::lock_guard lk(alice.rec.mu);
        CHECK(alice.rec.ups[1].second.auth.user_id == "grant:carol-kvs");
    }
}

TEST_CASE("transport: member port off, or a non-TCP endpoint - none, and members use the public endpoint") {
    test_node alice("alice@home", "c", [](transport_options& o) { o.member_bind_endpoint = "off"; });
    CHECK(alice.t->member_endpoint().empty());
    test_node bob("bob@home", "c");
    bob.t->connect(alice.t->endpoint(), alice.t->key());
    REQUIRE(alice.rec.wait([&] { return alice.rec.ups.size() == 1; }));
    test_node ipc("ipc@home", "c", [](transport_options& o) { o.bind_endpoint = "inproc://kith-member-port-test"; });
    CHECK(ipc.t->member_endpoint().empty());
}

TEST_CASE("transport: non-members past their budget pause the public port - the member port is read meanwhile") {
    // A tiny budget for non-members (all of them, 64 KiB/s), none per key.
    test_node alice("alice@home", "c", tiny_guests_budget);
    test_node bob("bob@home", "c"), carol("carol@home", "other");
    REQUIRE(dial_up(bob, *alice.t, alice.t->member_endpoint(), &alice.rec));
    REQUIRE(dial_granted(carol, alice, keypair::generate(), "carol"));
    // Carol sends 2 MiB in 8 KiB envelopes: far past 64 KiB/s.
    REQUIRE(flood_past_budget(carol, alice, "alice@home"));
    // Meanwhile Bob's envelopes by the member port arrive.
    for (int i = 0; i < 100; ++i) REQUIRE(bob.t->post("alice@home", send_int(i)).ok());
    REQUIRE(alice.rec.wait([&] { return alice.rec.values.size() == 100; }));
    CHECK(alice.rec.values.front() == 0);
    CHECK(alice.rec.values.back() == 99);
    CHECK(alice.t->is_up("carol@home"));
}

namespace {
// Polls `f` (a counter) every 2 ms until it holds, for at most 10 s.
template <class F>
bool poll_until(F f) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!f() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(2ms);
    return f();
}
}  // namespace

TEST_CASE("transport: a non-member's frame costs guest_frame_cost_bytes besides its bytes - tiny frames are bounded too") {
    // Per key a burst of 64 KiB, each frame costing 16 KiB more than its
    // bytes: four tiny frames spend the burst, whatever their size. The
    // refill is slow (4 KiB/s, a frame's cost in 4 s) so that the outcome
    // does not depend on how long a loaded machine takes for the 12.
    test_node alice("alice@home", "c", [](transport_options& o) {
        o.guest_bytes_per_s = 4u << 10;
        o.guest_burst_bytes = 64u << 10;
        o.guests_bytes_per_s = 0;
        o.guest_frame_cost_bytes = 16u << 10;
    });
    test_node carol("carol@home", "other");
    REQUIRE(dial_granted(carol, alice, keypair::generate(), "carol"));
    // 12 envelopes of a few bytes, each in a frame of its own (the next is
    // posted once the previous frame has left).
    for (int i = 0; i < 12; ++i) {
        const auto sent = carol.t->stats().frames_out;
        REQUIRE(carol.t->post("alice@home", send_int(i)).ok());
        REQUIRE(poll_until([&] { return carol.t->stats().frames_out > sent; }));
    }
    REQUIRE(poll_until([&] {
        std::lock_guard lk(alice.rec.mu);
        return alice.t->stats().rate_drops + alice.rec.values.size() >= 12;
    }));
    CHECK(alice.t->stats().rate_drops >= 6);  // at most 4 frames' burst and a little refill got through
    CHECK(alice.rec.values.size() <= 6);
    CHECK(alice.t->is_up("carol@home"));
}

// Pacing (docs/security.md, "Bounds"): while a frame to a non-member waits
// for the pacing budget, later envelopes gather in the open batch. Before,
// that batch was left behind when the waiting frame went: with nothing
// posted afterwards it was never sent (a grantee's call lost while 4 MB of
// replies streamed to it, test_guest_pacing, 1 run in 3).
TEST_CASE("transport: envelopes batched while a paced frame waits go out after it, with nothing posted later") {
    // 64 KiB/s to non-members (pacing at 7/8 of it, half the burst).
    test_node alice("alice@home", "c", [](transport_options& o) {
        o.guest_bytes_per_s = 64u << 10;
        o.guest_burst_bytes = 64u << 10;
    });
    test_node carol("carol@home", "other");
    REQUIRE(dial_granted(carol, alice, keypair::generate(), "carol"));
    // A frame far over the burst (sent at once, leaving a debt of about a
    // second), then two small ones: the first waits in a frame of its own,
    // the second in the open batch behind it. Then nothing more.
    const auto before = alice.t->stats().frames_out;
    REQUIRE(alice.t->post("carol@home", kith::env_send{kith::pid{"x@y", 1}, kith::term(std::string(100000, 'x'))})
                .ok());
    REQUIRE(poll_until([&] { return alice.t->stats().frames_out > before; }));
    REQUIRE(alice.t->post("carol@home", send_int(1)).ok());
    REQUIRE(poll_until([&] { return alice.t->stats().paced_waits > 0; }));
    REQUIRE(alice.t->post("carol@home", send_int(2)).ok());
    REQUIRE(carol.rec.wait([&] { return carol.rec.values.size() == 2; }, 20s));
    CHECK(carol.rec.values == std::vector<std::int64_t>{1, 2});
}
