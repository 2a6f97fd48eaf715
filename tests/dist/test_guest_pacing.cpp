// A grantee that keeps within its grant is never dropped by the node it
// calls: the node reads a non-member's frames within a byte budget
// (net_options::guest_bytes_per_s, each frame charged
// transport_options::guest_frame_cost_bytes besides its bytes) and drops
// what is over it unread (net_counters::rate_drops), so the sender paces
// what it sends a non-member peer to that budget instead (docs/security.md,
// "Bounds"). Before the pacing, one grantee thread making blocking calls
// as fast as it could (about 2,000 one-call frames a second on loopback)
// lost calls to timeouts. Over real nodes (CURVE on loopback).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "kith/builtin.hpp"
#include "kith/grants.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"
#include "loopback_opts.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

struct pair_of_nodes {
    temp_dir da, db;
    node alice{loopback_opts("alice@localhost", da.path, "alice-own-cookie")};
    node bob{loopback_opts("bob@localhost", db.path, "bob-own-cookie")};
    pair_of_nodes() {
        alice.add_service(services::make_echo());
        alice.add_service(services::make_kvs());
        grant_spec spec;
        spec.label = "bob";
        spec.allow = {{"echo", {}}, {"kvs", {}}};
        spec.rate = *rate_limit::parse("unlimited");
        auto g = alice.grant(spec);
        REQUIRE(g.ok());
        REQUIRE(bob.connect(*g));
    }
};

}  // namespace

TEST_CASE("guest pacing: a grantee calling as fast as it can loses no call to the node's read budget",
          "[dist][grants]") {
    pair_of_nodes p;
    const auto until = std::chrono::steady_clock::now() + 2500ms;
    std::uint64_t ok = 0;
    std::vector<std::string> failures;
    while (std::chrono::steady_clock::now() < until && failures.size() < 5) {
        auto r = p.bob.call("alice@localhost", "echo", "echo", arr("x"), 2000ms);
        if (r) ok++;
        else failures.push_back(std::string(to_string(r.code())) + ": " + r.err().detail);
    }
    INFO("calls ok: " << ok << ", first failure: " << (failures.empty() ? "" : failures[0]));
    CHECK(failures.empty());
    CHECK(p.alice.net_stats().rate_drops == 0);
    CHECK(p.bob.net_stats().rate_drops == 0);
}

TEST_CASE("guest pacing: large requests and replies to a grantee arrive, paced, none dropped", "[dist][grants]") {
    pair_of_nodes p;
    // Requests: 100 KB each, 20 of them (2 MB, twice the read budget a
    // second); then large replies to small requests (kvs lookups of 200 KB,
    // 4 MB in all), which Alice must pace.
    const term big(std::string(100 * 1024, 'x'));
    std::vector<std::string> failures;
    auto note = [&](const result<term>& r) {
        if (!r) failures.push_back(std::string(to_string(r.code())) + ": " + r.err().detail);
    };
    for (int i = 0; i < 20 && failures.size() < 3; ++i)
        note(p.bob.call("alice@localhost", "echo", "echo", arr(big), 10s));
    note(p.bob.call("alice@localhost", "kvs", "store", arr("k", term(std::string(200 * 1024, 'y'))), 10s));
    for (int i = 0; i < 20 && failures.size() < 3; ++i) note(p.bob.call("alice@localhost", "kvs", "lookup", arr("k"), 10s));
    INFO("first failure: " << (failures.empty() ? "" : failures[0]));
    CHECK(failures.empty());
    CHECK(p.alice.net_stats().rate_drops == 0);
    CHECK(p.bob.net_stats().rate_drops == 0);
    // Both sides held frames back rather than have the other drop them.
    CHECK(p.bob.net_stats().paced_waits > 0);
    CHECK(p.alice.net_stats().paced_waits > 0);
}

namespace {

// Small calls from Bob, one after another, for as long as `busy` is set:
// their latencies in us (sorted), and any failure.
std::vector<long> small_calls(node& bob, const std::atomic<bool>& busy, std::vector<std::string>& failures) {
    std::vector<long> us;
    while (busy.load() && failures.size() < 3) {
        const auto t0 = std::chrono::steady_clock::now();
        auto r = bob.call("alice@localhost", "echo", "echo", arr("x"), 10s);
        if (!r) {
            failures.push_back(std::string(to_string(r.code())) + ": " + r.err().detail);
            continue;
        }
        us.push_back(static_cast<long>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count()));
    }
    std::sort(us.begin(), us.end());
    return us;
}

}  // namespace

// Head-of-line for a grantee (issue 18): its envelopes are not fragmented
// (docs/protocol.md §5.9, "Why only members"), so a small call waits behind
// the large envelopes queued before it, each paced to the grantee's read
// budget. Asserted: every call is answered, nothing is dropped; the small
// calls' latency is printed ("guest hol figure"), never asserted (figures
// belong to the benchmark).
TEST_CASE("guest pacing: a grantee's small calls while 4 MB stream to it and from it - all answered",
          "[dist][grants]") {
    pair_of_nodes p;
    REQUIRE(p.bob.call("alice@localhost", "kvs", "store", arr("k", term(std::string(200 * 1024, 'y'))), 10s));
    for (const char* way : {"to", "from"}) {
        std::atomic<bool> busy{true};
        std::vector<std::string> failures, bulk_failures;
        std::vector<long> us;
        std::thread small([&] { us = small_calls(p.bob, busy, failures); });
        // 20 envelopes of 200 KB: replies to Bob (kvs lookups), or requests
        // from him (kvs stores), 4 MB in all, from another thread.
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 20 && bulk_failures.size() < 3; ++i) {
            auto r = std::string(way) == "to"
                         ? p.bob.call("alice@localhost", "kvs", "lookup", arr("k"), 20s)
                         : p.bob.call("alice@localhost", "kvs", "store",
                                      arr("k", term(std::string(200 * 1024, 'y'))), 20s);
            if (!r) bulk_failures.push_back(std::string(to_string(r.code())) + ": " + r.err().detail);
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        busy = false;
        small.join();
        INFO("first failure: " << (failures.empty() ? "" : failures[0])
                               << (bulk_failures.empty() ? "" : " bulk: " + bulk_failures[0]));
        CHECK(failures.empty());
        CHECK(bulk_failures.empty());
        REQUIRE(!us.empty());
        std::printf("guest hol figure: 4 MB %s the grantee in %.1f s, small calls n=%zu p50_us=%ld p99_us=%ld "
                    "max_us=%ld\n",
                    way, s, us.size(), us[us.size() / 2], us[us.size() * 99 / 100], us.back());
    }
    CHECK(p.alice.net_stats().rate_drops == 0);
    CHECK(p.bob.net_stats().rate_drops == 0);
}
