// Failover services with in-process nodes (real CURVE on loopback): the
// keep-majority rule on the minority side (the primary that loses both
// peers stops its instance and frees the name; nothing runs without a
// majority), an instance that ends is restarted, one cut link does not make
// a second instance (the confirmation round), and bad specs are refused.
// Unplug, return and SIGSTOP across processes: test_failover_process.cpp.
#include <chrono>
#include <memory>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "avail_common.hpp"
#include "kith/failover.hpp"
#include "kith/global.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

using avail::eventually;
using avail::opts;

failover_spec spec() {
    failover_spec fs;
    fs.name = "single";
    fs.nodes = {"x@localhost", "y@localhost", "z@localhost"};
    fs.delay = 200ms;
    fs.check_interval = 50ms;
    fs.start = [](node& n) { return n.spawn([](actor&, message&) {}); };
    fs.log = [](const log_record&) {};
    return fs;
}

struct member {
    std::unique_ptr<node> n;
    std::unique_ptr<global_names> g;
    std::unique_ptr<failover_service> fo;
    member(const std::string& name, const std::filesystem::path& dir)
        : n(std::make_unique<node>(opts(name, dir))),
          g(std::make_unique<global_names>(*n)),
          fo(std::make_unique<failover_service>(*n, *g, spec())) {}
    void down() {  // as an unplugged node would: everything of it ends
        fo.reset();
        g.reset();
        n->stop();
    }
};

// Three members of the list; link(a, b) connects two of them.
struct trio {
    temp_dir tmp;
    member x{"x@localhost", tmp.path / "x"}, y{"y@localhost", tmp.path / "y"}, z{"z@localhost", tmp.path / "z"};
    static void link(member& a, member& b) { REQUIRE(a.n->connect(b.n->endpoint(), b.n->key(), 5s).ok()); }
};

}  // namespace

TEST_CASE("failover: the primary that loses its majority stops, and an ended instance is restarted",
          "[availability][failover]") {
    trio t;
    auto& [tmp, x, y, z] = t;
    trio::link(x, y);
    trio::link(x, z);
    trio::link(y, z);

    REQUIRE(eventually([&] { return x.fo->running_here(); }));
    pid first = x.fo->instance();
    CHECK(eventually([&] { return y.g->whereis("single").ok() && *y.g->whereis("single") == first; }));
    CHECK(!y.fo->running_here());
    CHECK(!z.fo->running_here());

    // The instance ends: the failover service starts it again here.
    x.n->send_exit(first, "kill");
    CHECK(eventually([&] { return x.fo->running_here() && x.fo->instance() != first; }));
    pid second = x.fo->instance();

    // y and z go away: x sees 1 of 3, no majority, and stops its instance.
    mailbox watch(*x.n);
    ref mon = watch.monitor(second);
    y.down();
    z.down();
    auto d = watch.receive([&](const message& m) { return m.is_down() && m.tag == mon; }, 5s);
    REQUIRE(d.ok());
    CHECK(d->body == term("shutdown"));
    CHECK(!x.fo->running_here());
    // The name is freed when the global server sees the instance's exit,
    // which may come just after the down above: wait for it with a deadline.
    CHECK(eventually([&] { return x.g->whereis("single").code() == errc::noproc; }));
    // And it stays stopped (well past the delay).
    CHECK(!eventually([&] { return x.fo->running_here(); }, 600ms));
}

TEST_CASE("failover: with one link cut (x-y) both still see a majority, but only the first runs it",
          "[availability][failover]") {
    trio t;
    auto& [tmp, x, y, z] = t;
    // x-z and y-z, not x-y: y sees {y, z}, a majority with y first; only z
    // knows x is alive. The confirmation round asks z, which names x.
    trio::link(x, z);
    trio::link(y, z);
    REQUIRE(eventually([&] { return x.fo->running_here(); }));
    bool two = eventually([&] { return y.fo->running_here() || z.fo->running_here(); }, 1000ms);  // 5x the delay
    CHECK(!two);
    CHECK(x.fo->running_here());
}

TEST_CASE("failover: bad specs are refused with setup_error", "[availability][failover]") {
    temp_dir tmp;
    node n(opts("x@localhost", tmp.path / "x"));
    global_names g(n);
    auto s = spec();
    s.name.clear();
    CHECK_THROWS_AS(failover_service(n, g, s), setup_error);
    s = spec();
    s.start = nullptr;
    CHECK_THROWS_AS(failover_service(n, g, s), setup_error);
    s = spec();
    s.nodes = {"y@localhost", "z@localhost"};
    CHECK_THROWS_AS(failover_service(n, g, s), setup_error);
    s = spec();
    s.nodes = {"x@localhost", "y@localhost", "x@localhost"};
    CHECK_THROWS_AS(failover_service(n, g, s), setup_error);
    // A list of one is its own majority: it runs.
    s = spec();
    s.nodes = {"x@localhost"};
    failover_service fo(n, g, s);
    CHECK(eventually([&] { return fo.running_here() && g.whereis("single").ok(); }));
}
