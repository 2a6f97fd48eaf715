// A message larger than the receiving node accepts (1 MiB encoded for a
// cluster member, docs/protocol.md §6) is refused by the sender, where
// somebody can learn it, instead of being dropped unread by the receiver
// (which would also lose every message batched in the same frame):
//  - a call, cast or remote spawn whose request is too large fails with
//    errc::badarg at once, saying the size and the limit;
//  - a reply too large reaches the caller as errc::badarg;
//  - an actor's message too large is not sent: counted in
//    node_counters::dropped_remote and logged; the messages around it arrive.
// Over real nodes (CURVE on loopback).
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith/service.hpp"
#include "kith_catch.hpp"
#include "loopback_opts.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

struct log_lines {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> lines;
    log_sink sink() {
        return [this](const log_record& r) {
            std::lock_guard lk(mu);
            lines.push_back(std::string(r.source) + "|" + std::string(r.text));
            cv.notify_all();
        };
    }
    bool wait_for(const std::string& part, std::chrono::milliseconds d = 5000ms) {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, d, [&] {
            for (auto& l : lines)
                if (l.find(part) != std::string::npos) return true;
            return false;
        });
    }
};

node_options opts(const std::string& name, const temp_dir& dir, log_lines* log = nullptr) {
    node_options o = loopback_opts(name, dir.path, "oversize-cookie");
    if (log) o.net.log = log->sink();
    return o;
}

term bytes(std::size_t n) {
    std::string s(n, 'x');
    return term(binary(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

constexpr std::size_t mib = 1u << 20;

}  // namespace

TEST_CASE("oversize: requests and replies over the receiver's limit fail with badarg, never silently",
          "[dist][oversize]") {
    temp_dir da, db;
    node a(opts("a@localhost", da));
    node b(opts("b@localhost", db));
    service svc("t");
    svc.function("echo", [](term x) { return x; });
    svc.function("big", []() { return bytes(mib + 16); });
    svc.actor_type("idle", []() {
        return [](actor&) -> behavior { return [](actor&, message&) {}; };
    });
    b.add_service(std::move(svc));
    auto up = a.connect(b.endpoint(), b.key(), 5s);
    REQUIRE(up.ok());
    const std::string bn = *up;

    // A binary of 1 MiB is within the per-binary bound, but its envelope is
    // over 1 MiB. The deadline is long: a timeout would mean it was lost.
    auto r = a.call(bn, "t", "echo", arr(bytes(mib)), 30s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == errc::badarg);
    CHECK(r.err().detail.find("limit of one message to " + bn) != std::string::npos);

    auto big = a.call(bn, "t", "big", arr(), 30s);
    REQUIRE_FALSE(big.ok());
    CHECK(big.code() == errc::badarg);
    CHECK(big.err().detail.find("the reply was not sent") != std::string::npos);

    auto c = a.cast(bn, "t", "echo", arr(bytes(2 * mib)));
    CHECK(c.code() == errc::badarg);

    auto s = a.spawn(bn, "t", "idle", arr(bytes(mib)), 30s);
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == errc::badarg);

    // Just under the limit goes through, and the link is unharmed.
    auto fits = a.call(bn, "t", "echo", arr(bytes(mib - 4096)), 30s);
    REQUIRE(fits.ok());
    CHECK(*fits == bytes(mib - 4096));
    CHECK(a.call(bn, "t", "echo", arr(7), 5s).value() == term(7));
    CHECK(b.net_stats().decode_errors == 0);
    CHECK(a.net_stats().decode_errors == 0);
}

TEST_CASE("oversize: an actor's message over the limit is counted and logged, and the ones around it arrive",
          "[dist][oversize]") {
    temp_dir da, db;
    log_lines log;
    node a(opts("a@localhost", da, &log));
    node b(opts("b@localhost", db));
    auto up = a.connect(b.endpoint(), b.key(), 5s);
    REQUIRE(up.ok());
    mailbox inbox(b);
    const auto dropped0 = a.counters().dropped_remote;
    // One batch (sent back to back): the small ones must not share the
    // large one's fate.
    a.send(inbox.self(), term("before"));
    a.send(inbox.self(), bytes(mib + 1));
    a.send(inbox.self(), term("after"));
    auto m1 = inbox.receive(10s);
    REQUIRE(m1.ok());
    CHECK(m1->body == term("before"));
    auto m2 = inbox.receive(10s);
    REQUIRE(m2.ok());
    CHECK(m2->body == term("after"));
    CHECK(a.counters().dropped_remote == dropped0 + 1);
    CHECK(log.wait_for("dist|a message to " + *up + " was not sent: a message of "));
    CHECK(b.net_stats().decode_errors == 0);
}
