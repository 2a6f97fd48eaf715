// stop()'s wait for the credit of the fragments it flushed (docs/protocol.md
// §5.9, drain_fragments) while a non-member floods the public port: the port
// keeps its flood pause (docs/security.md, "The member port") during the
// wait, as in the I/O loop: it is neither read nor polled past non-members'
// budget, so the stopping node does not spin on it for up to 2 s.
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kith_catch.hpp"
#include "transport_harness.hpp"

using namespace kt;
using namespace kith;
using namespace std::chrono_literals;

TEST_CASE("transport: stop()'s fragment drain keeps the public port's flood pause - a grantee's flood is not polled") {
    // A tiny budget for all non-members (64 KiB/s), none per key: Carol's
    // flood keeps Alice's public port paused.
    test_node alice("alice@home", "c", tiny_guests_budget);
    test_node bob("bob@home", "c"), carol("carol@home", "other");
    REQUIRE(dial_up(bob, *alice.t, alice.t->member_endpoint(), &alice.rec));
    REQUIRE(dial_granted(carol, alice, keypair::generate(), "carol"));
    // Bob stops reading: Alice's large envelopes to him wait for his credit,
    // so her stop() waits (at most 2 s, or until his session times out).
    bob.t->debug_freeze(true);
    std::vector<std::uint8_t> bytes(600u << 10, 0x5a);
    for (int i = 0; i < 3; ++i)
        REQUIRE(alice.t->post("bob@home", env_send{pid{"bob@home", 1}, term(binary(bytes.data(), bytes.size()))}).ok());
    // Carol sends 2 MiB in 8 KiB envelopes: 32 s of the budget.
    REQUIRE(flood_past_budget(carol, alice, "alice@home"));
    const auto t0 = std::chrono::steady_clock::now();
    alice.t->stop();
    const long took_ms = static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
    const auto st = alice.t->stats();
    INFO("stop took " << took_ms << " ms; drain turns " << st.stop_drain_turns << ", public pauses "
                      << st.public_pauses << ", rate drops " << st.rate_drops);
    // The drain ran, and each of its turns waited for a socket (at most
    // 5 ms, or until a pause ended): spinning on the paused port's waiting
    // messages made tens of thousands of turns a second.
    CHECK(st.stop_drain_turns > 0);
    CHECK(st.stop_drain_turns <= static_cast<std::uint64_t>(took_ms / 2 + 50));
    bob.t->debug_freeze(false);
}

TEST_CASE("stop: what a peer did not read within the stop's bound is reported - a warning names the peer, not the others") {
    std::mutex mu;
    std::vector<std::string> warnings;
    test_node alice("alice@home", "c", [&](transport_options& o) {
        o.log = [&](const log_record& r) {
            if (r.level != log_level::warning) return;
            std::lock_guard lk(mu);
            warnings.emplace_back(r.text);
        };
    });
    test_node bob("bob@home", "c"), dave("dave@home", "c");
    REQUIRE(dial_up(bob, *alice.t, alice.t->member_endpoint(), &alice.rec));
    REQUIRE(dial_up(dave, *alice.t, alice.t->member_endpoint(), &alice.rec));
    // Bob stops reading; Dave reads on. Alice queues large envelopes (past
    // the credit window) and small ones to both, then stops.
    bob.t->debug_freeze(true);
    std::vector<std::uint8_t> bytes(600u << 10, 0x5a);
    for (const char* to : {"bob@home", "dave@home"}) {
        for (int i = 0; i < 3; ++i)
            REQUIRE(alice.t->post(to, env_send{pid{to, 1}, term(binary(bytes.data(), bytes.size()))}).ok());
        for (int i = 0; i < 100; ++i) REQUIRE(alice.t->post(to, env_send{pid{to, 1}, term(i)}).ok());
    }
    alice.t->stop();
    bob.t->debug_freeze(false);
    REQUIRE(dave.rec.wait([&] { return dave.rec.values.size() == 100; }));  // all of Dave's small ones
    std::lock_guard lk(mu);
    std::vector<std::string> about_bob, about_dave;
    for (auto& w : warnings) {
        if (w.find("stop(): bob@home did not get everything") != std::string::npos) about_bob.push_back(w);
        if (w.find("dave@home") != std::string::npos) about_dave.push_back(w);
    }
    INFO("warnings: " << warnings.size() << (warnings.empty() ? "" : ", first: " + warnings[0]));
    REQUIRE(about_bob.size() == 1);
    INFO(about_bob[0]);
    // Bob read nothing after the freeze: ZeroMQ took all of it at stop()
    // (the credit window is not kept then), none of the fragments credited.
    std::string one;
    encode_envelope(env_send{pid{"bob@home", 1}, term(binary(bytes.data(), bytes.size()))}, one);
    CHECK(about_bob[0].find(std::to_string(3 * one.size()) + " bytes of large envelopes sent but not acknowledged") !=
          std::string::npos);
    CHECK(about_bob[0].find("read too slowly or stopped reading") != std::string::npos);
    CHECK(about_bob[0].find("after 2000 ms (the stop's wait") != std::string::npos);
    CHECK(about_dave.empty());
}
