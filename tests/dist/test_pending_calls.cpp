// The pending-call table and the connect waiters as units (private headers
// core/src/dist/pending_calls.hpp, connect_waiters.hpp): every entry is
// completed exactly once, by the first of reply / deadline / shutdown, on
// the thread the contract names.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "dist/connect_waiters.hpp"
#include "dist/pending_calls.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace kith::detail;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

// Records completions; wait_for_count waits with a deadline.
struct recorder {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::pair<errc, std::string>> got;  // code (ok for values), detail or value
    std::vector<std::thread::id> threads;
    pending_calls::call_done cb() {
        return [this](result<term> r) {
            std::lock_guard lk(mu);
            got.emplace_back(r.ok() ? errc::ok : r.code(), r.ok() ? std::string("value") : r.err().detail);
            threads.push_back(std::this_thread::get_id());
            cv.notify_all();
        };
    }
    bool wait_for_count(std::size_t n, std::chrono::milliseconds d = 5000ms) {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, d, [&] { return got.size() >= n; });
    }
    std::size_t count() {
        std::lock_guard lk(mu);
        return got.size();
    }
};

pending_calls::entry call_entry(const std::string& node, clk::duration in, pending_calls::call_done f) {
    pending_calls::entry e;
    e.node = node;
    e.deadline = clk::now() + in;
    e.on_call = std::move(f);
    return e;
}

}  // namespace

TEST_CASE("pending_calls: a deadline fires exactly once, with timeout, on the deadline thread", "[dist][pending]") {
    recorder rec;
    pending_calls pc({}, "me@here");
    auto id = pc.add(call_entry("far@away", 50ms, rec.cb()));
    CHECK(id != 0);
    REQUIRE(rec.wait_for_count(1));
    CHECK(rec.got[0].first == errc::timeout);
    CHECK(rec.got[0].second == "no reply from far@away");
    CHECK(rec.threads[0] != std::this_thread::get_id());
    // A late reply completes nothing; no second completion ever comes.
    CHECK_FALSE(pc.take(id, "far@away", pending_calls::kind::call).has_value());
    CHECK_FALSE(rec.wait_for_count(2, 200ms));
    CHECK(pc.size() == 0);
}

TEST_CASE("pending_calls: only the node asked, and the right kind, may complete an entry", "[dist][pending]") {
    recorder rec;
    pending_calls pc({}, "me@here");
    auto id = pc.add(call_entry("far@away", 10s, rec.cb()));
    CHECK_FALSE(pc.take(id, "other@node", pending_calls::kind::call).has_value());
    CHECK_FALSE(pc.take(id, "far@away", pending_calls::kind::spawn).has_value());
    auto e = pc.take(id, "far@away", pending_calls::kind::call);
    REQUIRE(e.has_value());
    e->on_call(term(1));
    CHECK(rec.count() == 1);
    CHECK_FALSE(pc.take(id, "far@away", pending_calls::kind::call).has_value());
}

TEST_CASE("pending_calls: take_call takes only a call, from the node asked, once, and keeps no capture",
          "[dist][pending]") {
    // dist::finish's path for a reply: the completion alone is moved out.
    recorder rec;
    pending_calls pc({}, "me@here");
    pending_calls::call_done out;
    auto id = pc.add(call_entry("far@away", 10s, rec.cb()));
    CHECK_FALSE(pc.take_call(id, "other@node", out));
    CHECK_FALSE(out);
    CHECK_FALSE(pc.take_call(id + 1000, "far@away", out));
    pending_calls::entry s;
    s.node = "far@away";
    s.deadline = clk::now() + 10s;
    s.on_spawn = [](result<pid>) {};
    auto sid = pc.add(std::move(s));
    CHECK_FALSE(pc.take_call(sid, "far@away", out));  // a spawn's answer is not a reply
    REQUIRE(pc.take_call(id, "far@away", out));
    REQUIRE(out);
    out(term(1));
    CHECK(rec.count() == 1);
    out = nullptr;
    CHECK_FALSE(pc.take_call(id, "far@away", out));  // a second reply completes nothing
    CHECK(pc.size() == 1);  // the spawn
    // Slots taken this way are reused by add(): nothing of a taken call stays.
    auto held = std::make_shared<int>(7);
    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 300; ++i) ids.push_back(pc.add(call_entry("far@away", 60s, [held](result<term>) {})));
    for (auto i : ids) {
        pending_calls::call_done f;
        REQUIRE(pc.take_call(i, "far@away", f));
    }
    CHECK(held.use_count() == 1);
    auto cid = pc.add(call_entry("far@away", 50ms, rec.cb()));
    for (auto i : ids) CHECK_FALSE(pc.take_call(i, "far@away", out));
    REQUIRE(rec.wait_for_count(2));  // the new entry times out, once
    CHECK(rec.got[1].first == errc::timeout);
    CHECK_FALSE(pc.take_call(cid, "far@away", out));
    pc.shutdown();
    CHECK(rec.count() == 2);
}

TEST_CASE("pending_calls: a taken entry's slot, reused, keeps nothing of it and answers only to the new entry",
          "[dist][pending]") {
    // take() keeps the table's nodes for the next add() (no allocation per
    // call): what a reused node held must be gone, and the new entry must be
    // matched by its own id, node and kind only, and time out or shut down
    // exactly once like any other.
    recorder rec;
    pending_calls pc({}, "me@here");
    auto held = std::make_shared<int>(7);
    std::vector<std::uint64_t> old_ids;
    for (int i = 0; i < 300; ++i) {  // more than the nodes kept
        auto id = pc.add(call_entry("far@away", 60s, [held](result<term>) {}));
        old_ids.push_back(id);
    }
    for (auto id : old_ids) {
        auto e = pc.take(id, "far@away", pending_calls::kind::call);
        REQUIRE(e.has_value());
    }
    CHECK(held.use_count() == 1);  // no capture left behind in a kept node
    CHECK(pc.size() == 0);
    // New entries in reused nodes: a spawn to another node, a call that times out.
    pending_calls::entry s;
    s.node = "other@node";
    s.deadline = clk::now() + 60s;
    std::atomic<int> spawned{0};
    s.on_spawn = [&](result<pid> r) { spawned.fetch_add(r.ok() ? 1 : 100); };
    auto sid = pc.add(std::move(s));
    auto cid = pc.add(call_entry("far@away", 50ms, rec.cb()));
    for (auto id : old_ids) CHECK_FALSE(pc.take(id, "far@away", pending_calls::kind::call).has_value());
    CHECK_FALSE(pc.take(sid, "far@away", pending_calls::kind::spawn).has_value());
    CHECK_FALSE(pc.take(sid, "other@node", pending_calls::kind::call).has_value());
    REQUIRE(rec.wait_for_count(1));
    CHECK(rec.got[0].first == errc::timeout);
    CHECK(rec.got[0].second == "no reply from far@away");
    CHECK_FALSE(pc.take(cid, "far@away", pending_calls::kind::call).has_value());
    auto e = pc.take(sid, "other@node", pending_calls::kind::spawn);
    REQUIRE(e.has_value());
    CHECK_FALSE(e->on_call);
    e->on_spawn(pid{});
    CHECK(spawned.load() == 1);
    pc.shutdown();
    CHECK(rec.count() == 1);
}

TEST_CASE("pending_calls: a reply racing the deadline completes each entry exactly once", "[dist][pending]") {
    // Both ways a reply takes its entry: take() (spawns, and tests) and
    // take_call() (dist::finish).
    for (const bool via_take_call : {false, true}) {
        INFO("via take_call: " << via_take_call);
        constexpr int n = 2000;
        std::vector<std::atomic<int>> done(n);
        std::atomic<int> timeouts{0}, replies{0};
        pending_calls pc({}, "me@here");
        std::vector<std::uint64_t> ids(n);
        for (int i = 0; i < n; ++i) {
            // Deadlines spread over the next ~20 ms, so replies and deadlines meet.
            ids[i] = pc.add(call_entry("far@away", std::chrono::microseconds(10 * i), [&, i](result<term> r) {
                done[i].fetch_add(1);
                (r.ok() ? replies : timeouts).fetch_add(1);
            }));
        }
        std::thread replier([&] {
            for (int i = 0; i < n; ++i) {
                if (via_take_call) {
                    pending_calls::call_done f;
                    if (pc.take_call(ids[i], "far@away", f)) f(term(i));
                } else if (auto e = pc.take(ids[i], "far@away", pending_calls::kind::call)) {
                    e->on_call(term(i));
                }
            }
        });
        replier.join();
        auto until = clk::now() + 5s;
        while (replies + timeouts < n && clk::now() < until) std::this_thread::sleep_for(1ms);
        CHECK(replies + timeouts == n);
        for (int i = 0; i < n; ++i) CHECK(done[i].load() == 1);
        CHECK(pc.size() == 0);
    }
}

TEST_CASE("pending_calls: shutdown fails every entry with errc::shutdown, later ones too", "[dist][pending]") {
    recorder rec;
    pending_calls pc({}, "me@here");
    for (int i = 0; i < 10; ++i) pc.add(call_entry("n" + std::to_string(i) + "@h", 60s, rec.cb()));
    pc.shutdown();
    // shutdown() returns once they ran, on the deadline thread.
    REQUIRE(rec.count() == 10);
    for (std::size_t i = 0; i < 10; ++i) {
        CHECK(rec.got[i].first == errc::shutdown);  // not timeout, not nodedown: distinct
        CHECK(rec.got[i].second == "node stopping");
        CHECK(rec.threads[i] != std::this_thread::get_id());
    }
    // After shutdown: failed too, never on the adding thread.
    pc.add(call_entry("late@h", 60s, rec.cb()));
    REQUIRE(rec.wait_for_count(11));
    CHECK(rec.got[10].first == errc::shutdown);
    CHECK(rec.threads[10] != std::this_thread::get_id());
    pc.shutdown();  // idempotent
    CHECK(rec.count() == 11);
}

TEST_CASE("pending_calls: fail_later and fail_soon complete on the deadline thread, once", "[dist][pending]") {
    recorder rec;
    pending_calls pc({}, "me@here");
    pc.fail_later(call_entry("far@away", 60s, rec.cb()), error{errc::unauthorized, "no"});
    auto id = pc.add(call_entry("far@away", 60s, rec.cb()));
    pc.fail_soon(id, error{errc::overloaded, "queue full"});
    pc.fail_soon(id, error{errc::nodedown, "twice"});  // already gone: nothing
    REQUIRE(rec.wait_for_count(2));
    CHECK_FALSE(rec.wait_for_count(3, 200ms));
    std::set<errc> codes{rec.got[0].first, rec.got[1].first};
    CHECK(codes == std::set<errc>{errc::unauthorized, errc::overloaded});
    for (auto& t : rec.threads) CHECK(t != std::this_thread::get_id());
}

TEST_CASE("pending_calls: a completion that throws is logged and the thread carries on", "[dist][pending][log]") {
    std::mutex mu;
    std::vector<std::string> records;
    log_sink sink = [&](const log_record& r) {
        std::lock_guard lk(mu);
        records.push_back(std::string(to_string(r.level)) + "|" + std::string(r.source) + "|" +
                          std::string(r.node) + "|" + std::string(r.text));
    };
    recorder rec;
    pending_calls pc(sink, "me@here");
    pc.add(call_entry("bad@h", 10ms, [](result<term>) { throw std::runtime_error("boom"); }));
    pc.add(call_entry("good@h", 30ms, rec.cb()));
    REQUIRE(rec.wait_for_count(1));
    CHECK(rec.got[0].first == errc::timeout);
    // Both may fall due in one scan (a loaded machine), completed in the
    // table's order: the good one may run before the bad one throws.
    auto until = clk::now() + 5s;
    auto logged = [&] {
        std::lock_guard lk(mu);
        return !records.empty();
    };
    while (!logged() && clk::now() < until) std::this_thread::sleep_for(1ms);
    std::lock_guard lk(mu);
    REQUIRE(records.size() == 1);
    CHECK(records[0].starts_with("error|dist|me@here|a completion of a request to bad@h threw: boom"));
}

TEST_CASE("connect_waiters: settled once, by the first outcome, and close() is shutdown", "[dist][pending]") {
    connect_waiters cw;
    std::vector<result<std::string>> got;
    auto a = cw.add("tcp://a", [&](result<std::string> r) { got.push_back(std::move(r)); });
    REQUIRE(a);
    cw.settle("tcp://a", std::string("alice@h"));
    cw.settle_one(a, error{errc::timeout, "late"});  // the timeout after the answer: nothing
    REQUIRE(got.size() == 1);
    CHECK(*got[0] == "alice@h");
    // Blocking: a timeout that is the waiter's own.
    auto b = cw.add("tcp://b");
    auto r = cw.wait(b, 20ms);
    CHECK(r.code() == errc::timeout);
    CHECK(r.err().detail == "no answer from tcp://b");
    // A refusal settles only the waiters of that endpoint.
    auto c = cw.add("tcp://c", [&](result<std::string> x) { got.push_back(std::move(x)); });
    auto d = cw.add("tcp://d", [&](result<std::string> x) { got.push_back(std::move(x)); });
    cw.settle("tcp://c", error{errc::unauthorized, "refused"});
    REQUIRE(got.size() == 2);
    CHECK(got[1].code() == errc::unauthorized);
    cw.close();
    REQUIRE(got.size() == 3);
    CHECK(got[2].code() == errc::shutdown);
    CHECK(cw.size() == 0);
    connect_waiters::done_fn keep = [](result<std::string>) {};
    CHECK(cw.add("tcp://e", std::move(keep)) == nullptr);
    CHECK(keep);  // refused: left to the caller
}
