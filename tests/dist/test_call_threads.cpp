// Where incoming calls and casts run (transport.cpp, leader and follower I/O
// threads; dist::run_job): real nodes in one process over real CURVE on
// loopback. A service function runs on the I/O thread that read it, right
// after its turn; if it runs long the other I/O thread takes the sockets
// over, and when that one is busy too the function goes to a worker. These
// tests assert behaviour only (values, error codes, events), waiting with
// deadlines; durations are bounds, never pass criteria.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "kith/builtin.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"
#include "test_gate.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;

node_options opts(const std::string& name, const temp_dir& dir, unsigned workers = 2) {
    node_options o;
    o.name = name;
    o.workers = workers;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = dir.path;
    o.net.cookie = "threads-cookie";
    return o;
}

void connect(node& from, node& to) {
    auto r = from.connect(to.endpoint(), to.key(), 10s);
    REQUIRE(r.ok());
    REQUIRE(*r == to.name());
}

// Records node-down events (a stalled I/O thread would let heartbeats lapse).
struct down_log {
    std::mutex mu;
    std::vector<node_event> downs;
    void watch(node& n) {
        n.subscribe_nodes([this](const node_event& e) {
            if (e.what != node_event::kind::down) return;
            std::lock_guard lk(mu);
            downs.push_back(e);
        });
    }
    std::size_t count() {
        std::lock_guard lk(mu);
        return downs.size();
    }
};

using gate = test_gate;

// Blocks the calling thread for `d` (the work of a slow function; nothing
// signals it).
void busy_for(std::chrono::milliseconds d) {
    std::mutex m;
    std::condition_variable cv;
    std::unique_lock lk(m);
    cv.wait_for(lk, d, [] { return false; });
}

// Collects the results of call_async callbacks; wait_all waits with a
// deadline until `n` have arrived.
struct results {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::pair<int, result<term>>> got;
    std::function<void(result<term>)> slot(int tag) {
        return [this, tag](result<term> r) {
            {
                std::lock_guard lk(mu);
                got.emplace_back(tag, std::move(r));
            }
            cv.notify_all();
        };
    }
    bool wait_all(std::size_t n, std::chrono::milliseconds timeout = 20s) {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, timeout, [&] { return got.size() >= n; });
    }
};

struct two_nodes {
    temp_dir da, db;
    node a, b;
    explicit two_nodes(unsigned b_workers = 2) : a(opts("alice@localhost", da)), b(opts("bob@localhost", db, b_workers)) {
        a.add_service(services::make_echo());
        b.add_service(services::make_echo());
        connect(a, b);
    }
};

}  // namespace

TEST_CASE("call threads: a slow function does not stall its node", "[dist][call_threads]") {
    down_log downs;  // outlives the nodes: their stop reports downs to it
    two_nodes p;
    gate g;
    p.b.add_service(service("slow").function("wait", [&g] { return g.enter(); }));
    downs.watch(p.a);
    downs.watch(p.b);
    mailbox on_b(p.b);
    mailbox on_a(p.a);

    for (int round = 0; round < 3; ++round) {
        {
            std::lock_guard lk(g.mu);
            g.inside = 0;
            g.opened = false;
        }
        std::promise<result<term>> slow;
        p.a.call_async("bob@localhost", "slow", "wait", arr(), 30s,
                       [&slow](result<term> r) { slow.set_value(std::move(r)); });
        REQUIRE(g.wait_inside(1));
        // While the function is blocked inside bob: a fast call to bob returns,
        // a message to an actor on bob arrives, and bob can call alice.
        for (int i = 0; i < 5; ++i) {
            auto r = p.a.call("bob@localhost", "echo", "echo", arr(i), 10s);
            REQUIRE(r.ok());
            CHECK(*r == term(i));
        }
        on_a.send(on_b.self(), arr("hello", round));
        auto m = on_b.receive([](const message& m) { return m.is_user(); }, 10s);
        REQUIRE(m.ok());
        CHECK(m->body == arr("hello", round));
        CHECK(p.b.call("alice@localhost", "echo", "echo", arr("back"), 10s).value() == term("back"));
        g.open();
        auto fut = slow.get_future();
        REQUIRE(fut.wait_for(20s) == std::future_status::ready);
        auto r = fut.get();
        REQUIRE(r.ok());
        CHECK(*r == term(true));  // opened by the test, not by its bound
    }
    // The connection stayed up all along.
    CHECK(p.a.nodes() == std::vector<std::string>{"bob@localhost"});
    CHECK(downs.count() == 0);
}

// A nested call is posted from inside a job: after the follower took the
// sockets over, that post must wake the new leader (it once waited for the
// next housekeeping tick, ~100 ms per nested call; no timing is asserted,
// the suite's run time shows it).
TEST_CASE("call threads: a function that calls back the calling node", "[dist][call_threads]") {
    temp_dir da, db, dc;
    node a(opts("alice@localhost", da)), b(opts("bob@localhost", db)), c(opts("carol@localhost", dc));
    connect(a, b);
    connect(b, c);
    connect(c, a);
    // g on alice: x + 1
    a.add_service(service("g").function("inc", [](int x) { return x + 1; }));
    // nested:back on bob calls alice:g (alice called it) and returns its
    // result * 10.
    node* bp = &b;
    b.add_service(service("nested").function("back", [bp](int x) -> result<term> {
        auto r = bp->call("alice@localhost", "g", "inc", arr(x), 10s);
        if (!r.ok()) return r.err();
        return term(*r->as_int() * 10);
    }));
    // A chain of three: alice -> bob:chain -> carol:chain -> alice:g.
    b.add_service(service("chain").function("step", [bp](int x) -> result<term> {
        auto r = bp->call("carol@localhost", "chain", "step", arr(x), 10s);
        if (!r.ok()) return r.err();
        return term(*r->as_int() + 100);
    }));
    node* cp = &c;
    c.add_service(service("chain").function("step", [cp](int x) -> result<term> {
        auto r = cp->call("alice@localhost", "g", "inc", arr(x), 10s);
        if (!r.ok()) return r.err();
        return term(*r->as_int() * 2);
    }));

    for (int i = 0; i < 50; ++i) {
        auto r = a.call("bob@localhost", "nested", "back", arr(i), 15s);
        REQUIRE(r.ok());
        CHECK(*r == term((i + 1) * 10));
        auto ch = a.call("bob@localhost", "chain", "step", arr(i), 15s);
        REQUIRE(ch.ok());
        CHECK(*ch == term((i + 1) * 2 + 100));
    }
    // Several nested calls in flight at once.
    results res;
    for (int i = 0; i < 8; ++i) a.call_async("bob@localhost", "chain", "step", arr(i), 20s, res.slot(i));
    REQUIRE(res.wait_all(8));
    std::lock_guard lk(res.mu);
    for (auto& [i, r] : res.got) {
        REQUIRE(r.ok());
        CHECK(*r == term((i + 1) * 2 + 100));
    }
}

TEST_CASE("call threads: several slow functions at once, fast calls in between", "[dist][call_threads]") {
    SECTION("timed slow functions, two workers") {
        two_nodes p;
        p.b.add_service(service("slow").function("work", [](int x) {
            busy_for(200ms);
            return x * 3;
        }));
        for (int round = 0; round < 3; ++round) {
            results slow;
            for (int i = 0; i < 4; ++i)
                p.a.call_async("bob@localhost", "slow", "work", arr(i), 30s, slow.slot(i));
            for (int i = 0; i < 10; ++i) {
                auto r = p.a.call("bob@localhost", "echo", "echo", arr(i), 30s);
                REQUIRE(r.ok());
                CHECK(*r == term(i));
            }
            REQUIRE(slow.wait_all(4, 30s));
            std::lock_guard lk(slow.mu);
            std::set<int> tags;
            for (auto& [i, r] : slow.got) {
                REQUIRE(r.ok());
                CHECK(*r == term(i * 3));
                tags.insert(i);
            }
            CHECK(tags.size() == 4);
        }
    }
    SECTION("four functions blocked inside together, four workers") {
        // One may run on an I/O thread, the others go to workers when the
        // other I/O thread is busy: all four are inside at the same time.
        two_nodes p(4);
        gate g;
        p.b.add_service(service("slow").function("wait", [&g](int x) -> result<term> {
            if (!g.enter()) return error{errc::exception, "gate not opened"};
            return term(x);
        }));
        results slow;
        for (int i = 0; i < 4; ++i) p.a.call_async("bob@localhost", "slow", "wait", arr(i), 30s, slow.slot(i));
        REQUIRE(g.wait_inside(4, 20s));
        for (int i = 0; i < 10; ++i) CHECK(p.a.call("bob@localhost", "echo", "echo", arr(i), 10s).value() == term(i));
        g.open();
        REQUIRE(slow.wait_all(4));
        std::lock_guard lk(slow.mu);
        for (auto& [i, r] : slow.got) {
            REQUIRE(r.ok());
            CHECK(*r == term(i));
        }
    }
}

TEST_CASE("call threads: exceptions and bad arguments on the inline path", "[dist][call_threads]") {
    two_nodes p;
    p.b.add_service(service("math").function("div", [](int a, int b) {
        if (b == 0) throw std::domain_error("division by zero");
        return a / b;
    }));
    for (int i = 0; i < 50; ++i) {
        auto ex = p.a.call("bob@localhost", "math", "div", arr(i, 0), 10s);
        CHECK(ex.code() == errc::exception);
        CHECK(ex.err().detail == "division by zero");
        auto bad = p.a.call("bob@localhost", "math", "div", arr(i), 10s);
        CHECK(bad.code() == errc::bad_args);
        CHECK(bad.err().detail == "expected 2 arguments, got 1");
        CHECK(p.a.call("bob@localhost", "math", "div", arr("x", 2), 10s).code() == errc::bad_args);
        CHECK(p.a.call("bob@localhost", "math", "div", arr(i * 4, 2), 10s).value() == term(i * 2));
    }
    CHECK(p.a.nodes() == std::vector<std::string>{"bob@localhost"});
}

TEST_CASE("call threads: many casts all run", "[dist][call_threads]") {
    two_nodes p;
    std::atomic<int> count{0};
    std::atomic<long long> sum{0};
    p.b.add_service(service("counter").function("add", [&](int x) {
        sum.fetch_add(x);
        count.fetch_add(1);
    }));
    constexpr int n = 1000;
    for (int i = 1; i <= n; ++i) REQUIRE(p.a.cast("bob@localhost", "counter", "add", arr(i)).ok());
    auto deadline = clock_type::now() + 20s;
    while (count.load() < n && clock_type::now() < deadline) std::this_thread::sleep_for(2ms);
    CHECK(count.load() == n);
    CHECK(sum.load() == static_cast<long long>(n) * (n + 1) / 2);
    // Casts mixed with a slow cast: the slow one does not hold up the others.
    gate g;
    p.b.add_service(service("slowcast").function("hold", [&g] { (void)g.enter(); }));
    REQUIRE(p.a.cast("bob@localhost", "slowcast", "hold", arr()).ok());
    REQUIRE(g.wait_inside(1));
    for (int i = 0; i < n; ++i) REQUIRE(p.a.cast("bob@localhost", "counter", "add", arr(1)).ok());
    deadline = clock_type::now() + 20s;
    while (count.load() < 2 * n && clock_type::now() < deadline) std::this_thread::sleep_for(2ms);
    CHECK(count.load() == 2 * n);
    g.open();
}

TEST_CASE("call threads: stopping a node while a function is blocked in it", "[dist][call_threads]") {
    down_log downs;  // outlives the nodes: their stop reports downs to it
    temp_dir da, db;
    node a(opts("alice@localhost", da));
    downs.watch(a);
    gate g;
    std::atomic<int> returned{0};
    {
        node b(opts("bob@localhost", db));
        b.add_service(service("slow").function("wait", [&] {
            bool opened = g.enter();
            returned.fetch_add(1);
            return opened;
        }));
        connect(a, b);
        std::promise<result<term>> slow;
        a.call_async("bob@localhost", "slow", "wait", arr(), 30s,
                     [&slow](result<term> r) { slow.set_value(std::move(r)); });
        REQUIRE(g.wait_inside(1));
        // Stop bob from another thread while the function is still blocked.
        auto stopped = std::async(std::launch::async, [&b] { b.stop(); });
        // bob says goodbye without waiting for the function: the pending
        // call fails with nodedown (reason "shutdown") while it is blocked.
        auto fut = slow.get_future();
        REQUIRE(fut.wait_for(20s) == std::future_status::ready);
        auto r = fut.get();
        CHECK(r.code() == errc::nodedown);
        CHECK(r.err().detail == "bob@localhost: shutdown");
        CHECK(returned.load() == 0);
        g.open();
        REQUIRE(stopped.wait_for(20s) == std::future_status::ready);
        stopped.get();
        CHECK(returned.load() == 1);
    }
    auto deadline = clock_type::now() + 10s;
    while (downs.count() < 1 && clock_type::now() < deadline) std::this_thread::sleep_for(2ms);
    REQUIRE(downs.count() == 1);
    {
        std::lock_guard lk(downs.mu);
        CHECK(downs.downs[0].reason == "shutdown");
    }
    CHECK(a.nodes().empty());
}

TEST_CASE("call threads: stopping a node whose function waits out its own bound", "[dist][call_threads]") {
    temp_dir da, db;
    node a(opts("alice@localhost", da));
    gate g;
    {
        node b(opts("bob@localhost", db));
        b.add_service(service("slow").function("wait", [&g] { return g.enter(500ms); }));
        connect(a, b);
        results res;
        a.call_async("bob@localhost", "slow", "wait", arr(), 30s, res.slot(0));
        REQUIRE(g.wait_inside(1));
        b.stop();  // returns once the function has run out its bound
        REQUIRE(res.wait_all(1));
        std::lock_guard lk(res.mu);
        CHECK(res.got[0].second.code() == errc::nodedown);
    }
    CHECK(a.nodes().empty());
}

TEST_CASE("call threads: a node destroyed right after a burst of calls", "[dist][call_threads]") {
    constexpr int n = 300;
    SECTION("the callee goes") {
        temp_dir da, db;
        node a(opts("alice@localhost", da));
        results res;
        {
            node b(opts("bob@localhost", db));
            b.add_service(services::make_echo());
            std::atomic<int> casts{0};
            b.add_service(service("counter").function("add", [&casts] { casts.fetch_add(1); }));
            connect(a, b);
            for (int i = 0; i < n; ++i) {
                a.call_async("bob@localhost", "echo", "echo", arr(i), 20s, res.slot(i));
                (void)a.cast("bob@localhost", "counter", "add", arr());
            }
        }  // bob destroyed with calls and casts in flight
        REQUIRE(res.wait_all(n));
        std::lock_guard lk(res.mu);
        for (auto& [i, r] : res.got) {
            if (r.ok())
                CHECK(*r == term(i));
            else
                CHECK(r.code() == errc::nodedown);
        }
    }
    SECTION("the caller goes") {
        temp_dir da, db;
        node b(opts("bob@localhost", db));
        b.add_service(services::make_echo());
        results res;
        {
            node a(opts("alice@localhost", da));
            connect(a, b);
            for (int i = 0; i < n; ++i) a.call_async("bob@localhost", "echo", "echo", arr(i), 20s, res.slot(i));
        }  // alice destroyed: every callback has run
        std::lock_guard lk(res.mu);
        REQUIRE(res.got.size() == static_cast<std::size_t>(n));
        for (auto& [i, r] : res.got) {
            if (r.ok())
                CHECK(*r == term(i));
            else
                CHECK((r.code() == errc::nodedown || r.code() == errc::shutdown));
        }
    }
}

TEST_CASE("call threads: many sequential calls interleaved with sends", "[dist][call_threads]") {
    two_nodes p;
    mailbox from(p.a);
    mailbox to(p.b);
    constexpr int calls = 20000, every = 100;
    int sent = 0;
    for (int i = 0; i < calls; ++i) {
        auto r = p.a.call("bob@localhost", "echo", "echo", arr(i), 10s);
        REQUIRE(r.ok());
        REQUIRE(*r == term(i));
        if (i % every == 0) from.send(to.self(), term(sent++));
    }
    for (int k = 0; k < sent; ++k) {
        auto m = to.receive([](const message& m) { return m.is_user(); }, 10s);
        REQUIRE(m.ok());
        REQUIRE(m->body == term(k));  // in the order sent
    }
    CHECK(p.a.nodes() == std::vector<std::string>{"bob@localhost"});
}

// A remote spawn runs the actor type's factory in the new actor's init, on a
// worker: a factory that blocks (a Python one holds the GIL) never holds the
// network still. A factory that fails answers the spawn with its error.
TEST_CASE("call threads: a blocked actor factory does not stall its node", "[dist][call_threads]") {
    down_log downs;  // outlives the nodes: their stop reports downs to it
    two_nodes p;
    gate g;
    p.b.add_service(service("slowtype")
                        .actor_type("t",
                                    [&g] {
                                        g.enter();
                                        return [](actor&, message&) {};
                                    })
                        .actor_type("bad", []() -> behavior { throw std::runtime_error("no resources"); }));
    downs.watch(p.a);
    downs.watch(p.b);
    std::promise<result<pid>> spawned;
    std::thread spawner([&] { spawned.set_value(p.a.spawn("bob@localhost", "slowtype", "t", arr(), 30s)); });
    REQUIRE(g.wait_inside(1));
    // While the factory blocks on bob: calls to bob are answered.
    for (int i = 0; i < 5; ++i) CHECK(p.a.call("bob@localhost", "echo", "echo", arr(i), 10s).value() == term(i));
    g.open();
    auto fut = spawned.get_future();
    REQUIRE(fut.wait_for(20s) == std::future_status::ready);
    auto child = fut.get();
    spawner.join();
    REQUIRE(child.ok());
    CHECK(child->node == "bob@localhost");
    auto bad = p.a.spawn("bob@localhost", "slowtype", "bad", arr(), 10s);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.code() == errc::exception);
    CHECK(bad.err().detail == "no resources");
    CHECK(downs.count() == 0);
}

// An actor waiting for a call's (or a remote spawn's) reply runs its next
// turn on the I/O thread that read the reply, right after that thread's
// turn (dist::resume_here). An actor that then blocks never holds the
// network still: the other I/O thread takes the sockets over, and a second
// such actor goes to a worker.
TEST_CASE("call threads: actors resumed by a reply that block do not stall their node", "[dist][call_threads]") {
    down_log downs;  // outlives the nodes: their stop reports downs to it
    two_nodes p;
    p.b.add_service(service("types").actor_type("t", [] { return [](actor&, message&) {}; }));
    gate g;
    downs.watch(p.a);
    downs.watch(p.b);
    mailbox done(p.a);
    node* an = &p.a;
    const pid to = done.self();
    // Caller 1 makes a call, caller 2 a remote spawn; each blocks in the
    // gate when its answer arrives, then reports what it got.
    auto caller = [&g, an, to](bool spawn) {
        return [&g, an, to, spawn](actor& self, message& m) {
            if (m.body == term("go")) {
                pid me = self.self();
                if (spawn)
                    an->spawn_async("bob@localhost", "types", "t", arr(), 10s, [an, me](result<pid> r) {
                        an->send(me, r.ok() ? term(*r) : term("failed"));
                    });
                else
                    an->call_async("bob@localhost", "echo", "echo", arr(7), 10s, [an, me](result<term> r) {
                        an->send(me, r.ok() ? *r : term("failed"));
                    });
                return;
            }
            bool opened = g.enter();
            an->send(to, arr(spawn ? "spawn" : "call", m.body.is_pid() || m.body == term(7), opened));
        };
    };
    pid c1 = p.a.spawn(caller(false));
    p.a.send(c1, term("go"));
    REQUIRE(g.wait_inside(1));
    pid c2 = p.a.spawn(caller(true));
    p.a.send(c2, term("go"));
    REQUIRE(g.wait_inside(2));
    // Both blocked on alice: alice still calls bob, and bob calls alice.
    for (int i = 0; i < 5; ++i) CHECK(p.a.call("bob@localhost", "echo", "echo", arr(i), 10s).value() == term(i));
    CHECK(p.b.call("alice@localhost", "echo", "echo", arr("back"), 10s).value() == term("back"));
    g.open();
    std::set<std::string> seen;
    for (int i = 0; i < 2; ++i) {
        auto m = done.receive(10s);
        REQUIRE(m.ok());
        CHECK(*m->body.at(1) == term(true));  // the answer it waited for
        CHECK(*m->body.at(2) == term(true));  // opened by the test, not by its bound
        seen.insert(*m->body.at(0)->as_string());
    }
    CHECK(seen == std::set<std::string>{"call", "spawn"});
    CHECK(downs.count() == 0);
}
