// node::connect_async (kith/node.hpp): the non-blocking connect discovery
// uses. Real nodes over CURVE on loopback.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <functional>
#include <optional>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

node_options opts(const std::string& name, const temp_dir& dir, const std::string& cookie) {
    node_options o;
    o.name = name;
    o.workers = 1;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = dir.path;
    o.net.cookie = cookie;
    return o;
}

// Collects the one completion of connect_async.
struct outcome {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<result<std::string>> r;
    int calls = 0;
    std::function<void(result<std::string>)> cb() {
        return [this](result<std::string> x) {
            std::lock_guard lk(mu);
            ++calls;
            r.emplace(std::move(x));
            cv.notify_all();
        };
    }
    result<std::string> wait(std::chrono::milliseconds t = 10s) {
        std::unique_lock lk(mu);
        REQUIRE(cv.wait_for(lk, t, [&] { return r.has_value(); }));
        return *r;
    }
};

}  // namespace

TEST_CASE("connect_async: connects, and answers at once when already connected") {
    temp_dir da, db;
    node a(opts("a@host", da, "c1")), b(opts("b@host", db, "c1"));
    outcome o1;
    a.connect_async(b.endpoint(), b.key(), 5s, o1.cb());
    auto r = o1.wait();
    REQUIRE(r.ok());
    CHECK(*r == "b@host");
    outcome o2;
    a.connect_async(b.endpoint(), b.key(), 5s, o2.cb());
    auto r2 = o2.wait(1s);
    REQUIRE(r2.ok());
    CHECK(*r2 == "b@host");
    // exactly once, also after its deadline has passed
    std::this_thread::sleep_for(50ms);
    std::lock_guard lk(o1.mu);
    CHECK(o1.calls == 1);
}

TEST_CASE("connect_async: a wrong cookie is unauthorized, silence is a timeout, no network is nodedown") {
    temp_dir da, db;
    node a(opts("a@host", da, "c1")), b(opts("b@host", db, "c2"));
    outcome refused;
    a.connect_async(b.endpoint(), b.key(), 10s, refused.cb());
    auto r = refused.wait();
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == errc::unauthorized);

    outcome silent;
    a.connect_async("tcp://127.0.0.1:9", b.key(), 300ms, silent.cb());
    auto s = silent.wait();
    REQUIRE_FALSE(s.ok());
    CHECK(s.code() == errc::timeout);

    node_options lo;
    lo.name = "plain@host";
    lo.workers = 1;
    node plain(lo);
    outcome none;
    plain.connect_async(b.endpoint(), b.key(), 1s, none.cb());
    CHECK(none.wait().code() == errc::nodedown);
}

TEST_CASE("connect_async: pending connects fail with shutdown when the node stops") {
    temp_dir da, db;
    node a(opts("a@host", da, "c1"));
    outcome o;
    a.connect_async("tcp://127.0.0.1:9", public_key{}, 30s, o.cb());
    a.stop();
    auto r = o.wait();
    CHECK(r.code() == errc::shutdown);
}
