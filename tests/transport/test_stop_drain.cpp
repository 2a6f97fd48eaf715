// stop()'s wait for the credit of the fragments it flushed (docs/protocol.md
// §5.9, drain_fragments) while a non-member floods the public port: the port
// keeps its flood pause (docs/security.md, "The member port") during the
// wait, as in the I/O loop: it is neither read nor polled past non-members'
// budget, so the stopping node does not spin on it for up to 2 s.
#include <chrono>
#include <string>
#include <thread>

#include "kith_catch.hpp"
#include "transport_harness.hpp"

using namespace kt;
using namespace kith;
using namespace std::chrono_literals;
using kith::detail::authz_decision;
using kith::detail::link_credentials;

TEST_CASE("transport: stop()'s fragment drain keeps the public port's flood pause - a grantee's flood is not polled") {
    // A tiny budget for all non-members (64 KiB/s), none per key: Carol's
    // flood keeps Alice's public port paused.
    test_node alice("alice@home", "c", [](transport_options& o) {
        o.guest_bytes_per_s = 0;
        o.guests_bytes_per_s = 64u << 10;
        o.guests_burst_bytes = 64u << 10;
    });
    test_node bob("bob@home", "c"), carol("carol@home", "other");
    keypair grant = keypair::generate();
    alice.t->set_authorizer([&](const public_key& k, std::string_view) {
        return k == grant.pub ? authz_decision::grant("carol") : authz_decision::refuse("no grant");
    });
    bob.t->connect(alice.t->member_endpoint(), alice.t->key());
    carol.t->connect(alice.t->bound_endpoint(), alice.t->key(), link_credentials{grant});
    REQUIRE(alice.rec.wait([&] { return alice.rec.ups.size() == 2; }));
    REQUIRE(carol.rec.wait([&] { return carol.rec.ups.size() == 1; }));
    REQUIRE(bob.rec.wait([&] { return bob.rec.ups.size() == 1; }));
    // Bob stops reading: Alice's large envelopes to him wait for his credit,
    // so her stop() waits (at most 2 s, or until his session times out).
    bob.t->debug_freeze(true);
    std::vector<std::uint8_t> bytes(600u << 10, 0x5a);
    for (int i = 0; i < 3; ++i)
        REQUIRE(alice.t->post("bob@home", env_send{pid{"bob@home", 1}, term(binary(bytes.data(), bytes.size()))}).ok());
    // Carol sends 2 MiB in 8 KiB envelopes: 32 s of the budget.
    const std::string blob(8000, 'x');
    for (int i = 0; i < 256; ++i) (void)carol.t->post("alice@home", env_send{pid{"x@y", 1}, term(blob)});
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (alice.t->stats().public_pauses == 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(5ms);  // polling a counter, with a deadline
    REQUIRE(alice.t->stats().public_pauses > 0);
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
