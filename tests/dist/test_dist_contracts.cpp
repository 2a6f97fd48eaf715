// Contracts of kith/node.hpp that a caller builds on, checked over real
// nodes (real CURVE on loopback):
//  - call_async's `done` never runs on the calling thread before call_async
//    returns, in every error case (unknown node, no network, bad args, no
//    such service, unauthorized, overloaded) and for a local call that
//    answers at once;
//  - spawn_async likewise, with distinct errors, and many outstanding;
//  - what kith's own code catches reaches the node's log sink (a node-event
//    subscriber that throws, a damaged grant table), and the node keeps
//    working.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "kith/builtin.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"
#include "loopback_opts.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

node_options opts(const std::string& name, const temp_dir& dir) {
    return loopback_opts(name, dir.path, "contracts-cookie");
}

// Records what reaches a log sink.
struct log_capture {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> lines;  // "level|source|node|text"
    log_sink sink() {
        return [this](const log_record& r) {
            std::lock_guard lk(mu);
            lines.push_back(std::string(to_string(r.level)) + "|" + std::string(r.source) + "|" +
                            std::string(r.node) + "|" + std::string(r.text));
            cv.notify_all();
        };
    }
    // The first line starting with `prefix`, waiting up to `d`.
    std::optional<std::string> find(const std::string& prefix, std::chrono::milliseconds d = 5000ms) {
        std::unique_lock lk(mu);
        std::optional<std::string> hit;
        cv.wait_for(lk, d, [&] {
            for (auto& l : lines)
                if (l.starts_with(prefix)) {
                    hit = l;
                    return true;
                }
            return false;
        });
        return hit;
    }
    std::size_t count(const std::string& prefix) {
        std::lock_guard lk(mu);
        std::size_t n = 0;
        for (auto& l : lines) n += l.starts_with(prefix);
        return n;
    }
    // `o` with its log going here.
    node_options logged(node_options o) {
        o.net.log = sink();
        return o;
    }
};

// What `done` got, and whether it ran on the caller's thread before the
// asynchronous call returned (the contract says never).
template <class T>
struct outcome {
    result<T> r{errc::timeout, "done never ran"};
    bool inline_run = false;
};

// Runs `start(done)` (one call_async or spawn_async) and waits for `done`.
template <class T, class Start>
outcome<T> await_once(Start start, std::chrono::milliseconds timeout) {
    struct shared {
        std::mutex mu;
        std::condition_variable cv;
        std::optional<result<T>> got;
        std::atomic<bool> inside{true};
        bool inline_run = false;
        std::thread::id caller = std::this_thread::get_id();
    };
    auto st = std::make_shared<shared>();
    start([st](result<T> r) {
        std::lock_guard lk(st->mu);
        if (st->inside.load() && std::this_thread::get_id() == st->caller) st->inline_run = true;
        st->got.emplace(std::move(r));
        st->cv.notify_all();
    });
    st->inside.store(false);
    std::unique_lock lk(st->mu);
    REQUIRE(st->cv.wait_for(lk, timeout + 3s, [&] { return st->got.has_value(); }));
    return {std::move(*st->got), st->inline_run};
}

using async_outcome = outcome<term>;
async_outcome call_once(node& n, const std::string& target, const std::string& svc, const std::string& fn, term args,
                        std::chrono::milliseconds timeout = 2000ms) {
    return await_once<term>(
        [&](auto done) { n.call_async(target, svc, fn, std::move(args), timeout, std::move(done)); }, timeout);
}

service math_service() {
    return service("math").function("add", [](int a, int b) { return a + b; });
}

}  // namespace

TEST_CASE("call_async: done never runs inside call_async, whatever the error", "[dist][contracts]") {
    temp_dir da, db;
    node a(opts("alice@localhost", da));
    a.add_service(math_service());

    SECTION("a node that is not connected") {
        auto o = call_once(a, "ghost@nowhere", "math", "add", arr(1, 2));
        CHECK_FALSE(o.inline_run);
        CHECK(o.r.code() == errc::nodedown);
        CHECK(o.r.err().detail == "ghost@nowhere is not connected");
    }
    SECTION("local: bad args, no such service, no such function, and a value") {
        auto bad = call_once(a, a.name(), "math", "add", arr("x"));
        CHECK_FALSE(bad.inline_run);
        CHECK(bad.r.code() == errc::bad_args);
        auto nosvc = call_once(a, a.name(), "nope", "add", arr(1, 2));
        CHECK_FALSE(nosvc.inline_run);
        CHECK(nosvc.r.code() == errc::no_such_service);
        auto nofn = call_once(a, a.name(), "math", "nope", arr(1, 2));
        CHECK_FALSE(nofn.inline_run);
        CHECK(nofn.r.code() == errc::no_such_function);
        auto ok = call_once(a, a.name(), "math", "add", arr(1, 2));
        CHECK_FALSE(ok.inline_run);
        REQUIRE(ok.r.ok());
        CHECK(*ok.r == term(3));
    }
    SECTION("a node without network") {
        node_options lo;
        lo.name = "solo@localhost";
        lo.workers = 1;
        node local(lo);
        auto o = call_once(local, "alice@localhost", "math", "add", arr(1, 2));
        CHECK_FALSE(o.inline_run);
        CHECK(o.r.code() == errc::nodedown);
    }
    SECTION("unauthorized: a node connected to us as a stranger gives us no right to call it") {
        node b(opts("bob@localhost", db));
        b.add_service(math_service());
        REQUIRE(b.set_public("math").ok());
        auto up = a.connect_visitor(b.endpoint(), b.key(), 5s);
        REQUIRE(up.ok());
        // On b, alice is a stranger: b may not make requests to her.
        auto deadline = std::chrono::steady_clock::now() + 5s;
        while (!b.info("alice@localhost") && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(5ms);
        REQUIRE(b.info("alice@localhost"));
        auto o = call_once(b, "alice@localhost", "math", "add", arr(1, 2));
        CHECK_FALSE(o.inline_run);
        CHECK(o.r.code() == errc::unauthorized);
        // The visitor's own call still works.
        auto v = call_once(a, "bob@localhost", "math", "add", arr(2, 3));
        CHECK_FALSE(v.inline_run);
        REQUIRE(v.r.ok());
        CHECK(*v.r == term(5));
    }
    SECTION("overloaded: the peer's send queue is full") {
        auto ob = opts("bob@localhost", db);
        node b(ob);
        b.add_service(math_service());
        auto oc = opts("carol@localhost", da);
        oc.net.key_dir = da.path / "carol";
        std::filesystem::create_directories(oc.net.key_dir);
        oc.net.max_queue_bytes = 1024;
        node c(oc);
        REQUIRE(c.connect(b.endpoint(), b.key(), 5s).ok());
        // Many large calls at once: the queue is over its bound before the
        // I/O thread drains it, so some fail with overloaded right away.
        const std::string big(64 * 1024, 'x');
        struct tally {
            std::mutex mu;
            std::condition_variable cv;
            int done = 0, overloaded = 0, inline_runs = 0;
        };
        auto t = std::make_shared<tally>();
        constexpr int n = 200;
        for (int i = 0; i < n; ++i) {
            auto inside = std::make_shared<std::atomic<bool>>(true);
            auto caller = std::this_thread::get_id();
            c.call_async("bob@localhost", "math", "add", arr(big, i), 5s, [t, inside, caller](result<term> r) {
                std::lock_guard lk(t->mu);
                if (inside->load() && std::this_thread::get_id() == caller) ++t->inline_runs;
                if (!r.ok() && r.code() == errc::overloaded) ++t->overloaded;
                ++t->done;
                t->cv.notify_all();
            });
            inside->store(false);
        }
        std::unique_lock lk(t->mu);
        REQUIRE(t->cv.wait_for(lk, 15s, [&] { return t->done == n; }));
        CHECK(t->overloaded > 0);
        CHECK(t->inline_runs == 0);
    }
}

namespace {
// One spawn_async, as call_once.
using spawn_outcome = outcome<pid>;
spawn_outcome spawn_once(node& n, const std::string& target, const std::string& svc, const std::string& type,
                         term args, std::chrono::milliseconds timeout = 2000ms) {
    return await_once<pid>(
        [&](auto done) { n.spawn_async(target, svc, type, std::move(args), timeout, std::move(done)); }, timeout);
}

service lab_service() {
    return service("lab")
        .actor_type("sleeper", [](int) { return [](actor&, message&) {}; })
        .actor_type("broken", [](int) -> behavior { throw std::runtime_error("factory bug"); });
}
}  // namespace

TEST_CASE("spawn_async: done never runs inside spawn_async, errors are distinct, many outstanding all answer",
          "[dist][contracts][spawn]") {
    temp_dir da, db;
    node a(opts("alice@localhost", da));
    a.add_service(lab_service());
    node b(opts("bob@localhost", db));
    b.add_service(lab_service());
    REQUIRE(a.connect(b.endpoint(), b.key(), 5s).ok());

    auto local = spawn_once(a, a.name(), "lab", "sleeper", arr(1));
    CHECK_FALSE(local.inline_run);
    REQUIRE(local.r.ok());
    CHECK(local.r->node == a.name());
    CHECK(a.alive(*local.r));

    auto down = spawn_once(a, "ghost@nowhere", "lab", "sleeper", arr(1));
    CHECK_FALSE(down.inline_run);
    CHECK(down.r.code() == errc::nodedown);

    auto nosvc = spawn_once(a, "bob@localhost", "nope", "sleeper", arr(1));
    CHECK_FALSE(nosvc.inline_run);
    CHECK(nosvc.r.code() == errc::no_such_service);
    auto notype = spawn_once(a, "bob@localhost", "lab", "nope", arr(1));
    CHECK(notype.r.code() == errc::no_such_function);
    CHECK(notype.r.err().detail == "lab:nope");
    auto badargs = spawn_once(a, "bob@localhost", "lab", "sleeper", arr("x"));
    CHECK(badargs.r.code() == errc::bad_args);
    auto broken = spawn_once(a, "bob@localhost", "lab", "broken", arr(1));
    CHECK(broken.r.code() == errc::exception);
    CHECK(broken.r.err().detail == "factory bug");

    // 200 outstanding at once: every one answers with a live actor on bob.
    struct tally {
        std::mutex mu;
        std::condition_variable cv;
        std::vector<pid> pids;
        int failed = 0;
    };
    auto t = std::make_shared<tally>();
    constexpr int n = 200;
    for (int i = 0; i < n; ++i)
        a.spawn_async("bob@localhost", "lab", "sleeper", arr(i), 10s, [t](result<pid> r) {
            std::lock_guard lk(t->mu);
            if (r.ok()) t->pids.push_back(*r);
            else ++t->failed;
            t->cv.notify_all();
        });
    std::unique_lock lk(t->mu);
    REQUIRE(t->cv.wait_for(lk, 15s, [&] { return static_cast<int>(t->pids.size()) + t->failed == n; }));
    CHECK(t->failed == 0);
    for (auto& p : t->pids) {
        CHECK(p.node == "bob@localhost");
        CHECK(b.alive(p));
    }
}

TEST_CASE("logging: a node-event subscriber that throws is logged, and the others and the node carry on",
          "[dist][contracts][log]") {
    temp_dir da, db;
    log_capture cap;
    node a(cap.logged(opts("alice@localhost", da)));
    node b(opts("bob@localhost", db));
    b.add_service(math_service());
    std::atomic<int> seen{0};
    a.subscribe_nodes([](const node_event&) { throw std::runtime_error("subscriber bug"); });
    a.subscribe_nodes([&](const node_event& e) {
        if (e.what == node_event::kind::up) seen.fetch_add(1);
    });
    REQUIRE(a.connect(b.endpoint(), b.key(), 5s).ok());
    auto line = cap.find("error|dist|alice@localhost|a node-event subscriber threw on bob@localhost up: subscriber bug");
    REQUIRE(line);
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (seen.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    CHECK(seen.load() == 1);
    auto r = a.call("bob@localhost", "math", "add", arr(20, 22), 5s);
    REQUIRE(r.ok());
    CHECK(*r == term(42));
}

TEST_CASE("logging: a damaged grant table goes to the node's sink once, and the table in memory stays",
          "[dist][contracts][log]") {
    temp_dir da, db;
    log_capture cap;
    node a(cap.logged(opts("alice@localhost", da)));
    a.add_service(math_service());
    grant_spec spec;
    spec.label = "bob";
    spec.allow = {{"math", {}}};
    REQUIRE(a.grant(spec).ok());
    {
        std::ofstream f(da.path / "grants", std::ios::trunc);
        f << "this is not a grant table\n";
    }
    auto list = a.grants();  // re-reads the file: damaged, ignored
    REQUIRE(list.size() == 1);
    CHECK(list[0].label == "bob");
    auto line = cap.find("warning|grants|alice@localhost|ignoring a damaged grant table ");
    REQUIRE(line);
    CHECK(line->find("fix or remove the file") != std::string::npos);
    CHECK(a.grants().size() == 1);
    CHECK(cap.count("warning|grants|") == 1);  // reported once per version of the file
    // The node still serves.
    node b(opts("bob@localhost", db));
    REQUIRE(b.connect(a.endpoint(), a.key(), 5s).ok());
    auto r = b.call("alice@localhost", "math", "add", arr(1, 1), 5s);
    REQUIRE(r.ok());
    CHECK(*r == term(2));
}
