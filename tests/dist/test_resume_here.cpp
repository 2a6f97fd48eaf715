// An actor woken by a call's or remote spawn's reply runs that turn on the
// I/O thread that read the reply (dist::resume_here). Attacks on it, over
// real nodes in one process, real CURVE on loopback: the resumed turn calls
// back synchronously into both nodes, the node stops while such a turn
// blocks, messages from a local sender interleave with replies (order, one
// thread at a time), and actors that are gone when their reply comes.
// Behaviour only (values, error codes, events), waiting with deadlines.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "kith/builtin.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"
#include "test_gate.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

node_options opts(const std::string& name, const temp_dir& dir) {
    node_options o;
    o.name = name;
    o.workers = 2;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = dir.path;
    o.net.cookie = "resume-cookie";
    return o;
}

struct two_nodes {
    temp_dir da, db;
    node a, b;
    two_nodes() : a(opts("alice@localhost", da)), b(opts("bob@localhost", db)) {
        a.add_service(services::make_echo());
        b.add_service(services::make_echo());
        auto r = a.connect(b.endpoint(), b.key(), 10s);
        REQUIRE(r.ok());
    }
};

struct down_log {
    std::mutex mu;
    std::size_t downs = 0;
    void watch(node& n) {
        n.subscribe_nodes([this](const node_event& e) {
            if (e.what != node_event::kind::down) return;
            std::lock_guard lk(mu);
            ++downs;
        });
    }
    std::size_t count() {
        std::lock_guard lk(mu);
        return downs;
    }
};

// The threads that ran a call's completion (an I/O thread: dist::finish).
struct io_threads {
    std::mutex mu;
    std::set<std::thread::id> ids;
    void saw() {
        std::lock_guard lk(mu);
        ids.insert(std::this_thread::get_id());
    }
    bool here() {
        std::lock_guard lk(mu);
        return ids.count(std::this_thread::get_id()) != 0;
    }
};

using gate = test_gate;

// An actor that calls bob's echo until a reply resumes it on the I/O thread
// that read the reply, then runs `then` in that turn.
template <class Then>
pid resumed_on_io(node& an, io_threads& io, Then then) {
    node* n = &an;
    return an.spawn([n, &io, then, tries = 0](actor& self, message& m) mutable {
        if (m.body == term("go") || (m.body == term("echoed") && !io.here() && ++tries < 200)) {
            pid me = self.self();
            n->call_async("bob@localhost", "echo", "echo", arr("echoed"), 10s, [n, me, &io](result<term> r) {
                io.saw();
                n->send(me, r.ok() ? *r : term("failed"));
            });
            return;
        }
        then(self, m.body == term("echoed") && io.here());
    });
}

}  // namespace

TEST_CASE("resume on the I/O thread: a resumed actor calling both nodes synchronously does not deadlock",
          "[dist][resume_here]") {
    down_log downs;
    io_threads io;
    two_nodes p;
    // Bob's function calls back into alice, synchronously, while alice's
    // actor waits for it on alice's I/O thread.
    node* an = &p.a;
    node* bn = &p.b;
    p.b.add_service(service("back").function("call", [bn]() -> term {
        auto r = bn->call("alice@localhost", "echo", "echo", arr("from bob"), 10s);
        return r.ok() ? *r : term(std::string(to_string(r.code())));
    }));
    downs.watch(p.a);
    downs.watch(p.b);
    mailbox done(p.a);
    const pid to = done.self();
    pid x = resumed_on_io(p.a, io, [an, to](actor&, bool on_io) {
        auto r1 = an->call("bob@localhost", "back", "call", arr(), 10s);
        auto r2 = an->call("alice@localhost", "echo", "echo", arr("self"), 10s);
        auto r3 = an->call("bob@localhost", "echo", "echo", arr("bob"), 10s);
        an->send(to, arr(on_io, r1.ok() ? *r1 : term(std::string(to_string(r1.code()))), r2.ok() ? *r2 : term("failed"),
                         r3.ok() ? *r3 : term("failed")));
    });
    p.a.send(x, term("go"));
    auto m = done.receive(30s);
    REQUIRE(m.ok());
    CHECK(*m->body.at(0) == term(true));  // the path under attack was taken
    CHECK(*m->body.at(1) == term("from bob"));
    CHECK(*m->body.at(2) == term("self"));
    CHECK(*m->body.at(3) == term("bob"));
    CHECK(downs.count() == 0);
}

TEST_CASE("resume on the I/O thread: the node stops while a resumed actor blocks in a call, which fails nodedown",
          "[dist][resume_here]") {
    io_threads io;
    gate g;
    two_nodes p;
    p.b.add_service(service("slow").function("wait", [&g] { return g.enter(); }));
    node* an = &p.a;
    std::mutex mu;
    std::optional<result<term>> got;
    bool on_io = false;
    pid x = resumed_on_io(p.a, io, [an, &mu, &got, &on_io](actor&, bool here) {
        auto r = an->call("bob@localhost", "slow", "wait", arr(), 60s);
        std::lock_guard lk(mu);
        on_io = here;
        got = std::move(r);
    });
    p.a.send(x, term("go"));
    REQUIRE(g.wait_inside(1));
    auto stopping = std::async(std::launch::async, [&] { p.a.stop(); });
    const bool stopped = stopping.wait_for(20s) == std::future_status::ready;
    g.open();  // lets the test end either way
    stopping.wait();
    CHECK(stopped);  // not held until the call's 60 s deadline
    std::lock_guard lk(mu);
    CHECK(on_io);
    REQUIRE(got.has_value());
    REQUIRE_FALSE(got->ok());
    CHECK((got->code() == errc::nodedown || got->code() == errc::shutdown));
}

TEST_CASE("resume on the I/O thread: a local sender's messages keep their order and the actor runs on one thread at a time",
          "[dist][resume_here]") {
    io_threads io;
    two_nodes p;
    mailbox done(p.a);
    node* an = &p.a;
    const pid to = done.self();
    constexpr int kSeq = 20000, kReplies = 400, kInFlight = 8;
    struct state {
        std::atomic<int> in_turn{0};
        int overlaps = 0, out_of_order = 0, next = 1, replies = 0, issued = 0, on_io = 0;
        bool reported = false;
    };
    auto st = std::make_shared<state>();
    pid x = p.a.spawn([an, &io, to, st](actor& self, message& m) {
        if (st->in_turn.fetch_add(1) != 0) ++st->overlaps;
        pid me = self.self();
        auto issue = [&] {
            ++st->issued;
            an->call_async("bob@localhost", "echo", "echo", arr("r"), 10s, [an, me, &io](result<term> r) {
                io.saw();
                an->send(me, r.ok() ? *r : term("failed"));
            });
        };
        if (m.body == term("go")) {
            for (int i = 0; i < kInFlight; ++i) issue();
        } else if (m.body == term("r")) {
            ++st->replies;
            if (io.here()) ++st->on_io;
            if (st->issued < kReplies) issue();
        } else if (auto n = m.body.as_int()) {
            if (*n != st->next) ++st->out_of_order;
            st->next = static_cast<int>(*n) + 1;
        }
        if (!st->reported && st->replies >= kReplies && st->next > kSeq) {
            st->reported = true;
            an->send(to, arr(st->overlaps, st->out_of_order, st->on_io));
        }
        st->in_turn.fetch_sub(1);
    });
    p.a.send(x, term("go"));
    // A local sender on a worker, while the replies come in.
    p.a.spawn([x](actor& self) -> behavior {
        for (int i = 1; i <= kSeq; ++i) self.send(x, term(i));
        self.quit();
        return [](actor&, message&) {};
    });
    auto m = done.receive(60s);
    REQUIRE(m.ok());
    CHECK(*m->body.at(0) == term(0));  // never two threads in one actor
    CHECK(*m->body.at(1) == term(0));  // the sender's order kept
    CHECK(m->body.at(2)->as_int().value_or(0) > 0);  // some turns ran on the I/O thread
}

TEST_CASE("resume on the I/O thread: replies to actors that are gone are dropped and counted, the node serves on",
          "[dist][resume_here]") {
    down_log downs;
    std::atomic<int> completed{0};
    two_nodes p;
    downs.watch(p.a);
    // Bob holds the replies until every caller is gone: a reply that came
    // while its caller was still ending (quit, not yet out of the process
    // table) would be queued into it, not counted as dropped.
    std::mutex pm;
    std::vector<reply_to> parked;
    p.b.add_service(service("gate").function("wait", [&](reply_to r, std::int64_t n) {
        std::lock_guard lk(pm);
        parked.push_back(std::move(r));
        (void)n;
    }));
    node* an = &p.a;
    constexpr int kActors = 50;
    std::vector<pid> callers;
    for (int i = 0; i < kActors; ++i) {
        pid x = p.a.spawn([an, &completed](actor& self, message&) {
            pid me = self.self();
            an->call_async("bob@localhost", "gate", "wait", arr(1), 120s, [an, me, &completed](result<term> r) {
                an->send(me, r.ok() ? *r : term("failed"));  // to an actor that quit
                completed.fetch_add(1);
            });
            self.quit();
        });
        callers.push_back(x);
        p.a.send(x, term("go"));
    }
    auto parked_count = [&] {
        std::lock_guard lk(pm);
        return parked.size();
    };
    auto within_20s = [](auto pred) {
        const auto until = std::chrono::steady_clock::now() + 20s;
        while (!pred()) {
            if (std::chrono::steady_clock::now() > until) return false;
            std::this_thread::sleep_for(2ms);
        }
        return true;
    };
    REQUIRE(within_20s([&] { return parked_count() == kActors; }));
    // Every caller out of the process table: a probe to each is counted as
    // dropped (one to an actor still ending would be queued into it).
    REQUIRE(within_20s([&] {
        const auto b = p.a.counters().dropped_unknown;
        for (auto& x : callers) p.a.send(x, term("probe"));
        return p.a.counters().dropped_unknown - b == kActors;
    }));
    const auto before = p.a.counters().dropped_unknown;
    {
        std::lock_guard lk(pm);
        for (auto& r : parked) r(term(1));
    }
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (completed.load() < kActors && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    REQUIRE(completed.load() == kActors);
    CHECK(p.a.counters().dropped_unknown - before == kActors);
    CHECK(p.a.call("bob@localhost", "echo", "echo", arr("still"), 10s).value() == term("still"));
    CHECK(p.b.call("alice@localhost", "echo", "echo", arr("still"), 10s).value() == term("still"));
    CHECK(downs.count() == 0);
}
