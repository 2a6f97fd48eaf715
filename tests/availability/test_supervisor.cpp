// Supervisors on one node (kith/supervisor.hpp): each strategy restarts the
// right children in the right order; restart intensity stops the supervisor;
// a transient child ending "normal" is not restarted; ordered shutdown in
// reverse start order with a kill after the shutdown timeout; bad specs.
// Children report to a test mailbox ("started"/"stopping" events), so every
// assertion is about observed behaviour, with deadlines.
#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "../runtime/runtime_test_util.hpp"
#include "kith/supervisor.hpp"

using namespace kith;
using namespace kith::test;
using namespace std::chrono_literals;

namespace {

// A child that tells `log` ["started", Id, Self] when it starts and, on exit
// signals (it traps them), ["stopping", Id] before ending "shutdown" —
// unless `stubborn`, which ignores them (so it must be killed). User
// messages: "crash" ends it with "boom", "normal" ends it "normal".
child_spec reporter(const std::string& id, pid log, restart_kind rk = restart_kind::permanent, bool stubborn = false,
                    std::chrono::milliseconds shutdown = 2000ms) {
    child_spec c;
    c.id = id;
    c.restart = rk;
    c.shutdown = shutdown;
    c.start = [id, log, stubborn](actor& self) -> behavior {
        self.trap_exit(true);
        self.send(log, arr("started", id, self.self()));
        return [id, log, stubborn](actor& s, message& m) {
            if (m.is_exit()) {
                if (stubborn) return;
                s.send(log, arr("stopping", id));
                s.quit("shutdown");
            } else if (m.is_user() && is_str(m.body, "crash")) {
                s.quit("boom");
            } else if (m.is_user() && is_str(m.body, "normal")) {
                s.quit("normal");
            }
        };
    };
    return c;
}

struct event {
    std::string what, id;
    pid who;
};

event next_event(mailbox& mb, std::chrono::milliseconds timeout = 5000ms) {
    auto r = mb.receive([](const message& m) { return m.is_user(); }, timeout);
    REQUIRE(r.ok());
    event e;
    e.what = *r->body.at(0)->as_string();
    e.id = *r->body.at(1)->as_string();
    if (r->body.size() > 2) e.who = *r->body.at(2)->as_pid();
    return e;
}

// The next `n` events, as "started:a" / "stopping:b" strings. A child says
// "started" from its own init, on a worker, so children the supervisor
// started one after the other may say so in any order: each run of
// consecutive "started" events is put in child order (every spec here starts
// its children in id order). "stopping" events are in the supervisor's
// order: it waits for each child to end before it stops the next.
std::vector<std::string> events(mailbox& mb, std::size_t n, std::map<std::string, pid>* pids = nullptr) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n; ++i) {
        auto e = next_event(mb);
        out.push_back(e.what + ":" + e.id);
        if (pids && e.what == "started") (*pids)[e.id] = e.who;
    }
    auto is_start = [](const std::string& x) { return x.rfind("started:", 0) == 0; };
    for (auto it = out.begin(); it != out.end();) {
        if (!is_start(*it)) {
            ++it;
            continue;
        }
        auto end = std::find_if_not(it, out.end(), is_start);
        std::sort(it, end);
        it = end;
    }
    return out;
}

// No further user message arrives within `quiet`.
bool silent(mailbox& mb, std::chrono::milliseconds quiet = 300ms) {
    return !mb.receive([](const message& m) { return m.is_user(); }, quiet).ok();
}

supervisor_spec spec_of(sup_strategy s, pid log, int intensity = 5) {
    supervisor_spec sp;
    sp.strategy = s;
    sp.intensity = intensity;
    sp.period = 5000ms;
    sp.log = [](const log_record&) {};
    for (auto id : {"a", "b", "c"}) sp.children.push_back(reporter(id, log));
    return sp;
}

}  // namespace

TEST_CASE("supervisor: one_for_one restarts only the child that ended", "[availability][supervisor]") {
    node n(opts());
    mailbox log(n);
    auto sup = start_supervisor(n, spec_of(sup_strategy::one_for_one, log.self()));
    REQUIRE(sup.ok());
    std::map<std::string, pid> p;
    CHECK(events(log, 3, &p) == std::vector<std::string>{"started:a", "started:b", "started:c"});
    log.send(p["b"], "crash");
    CHECK(events(log, 1, &p) == std::vector<std::string>{"started:b"});
    CHECK(silent(log));
    auto kids = which_children(n, *sup);
    REQUIRE(kids.ok());
    REQUIRE(kids->size() == 3);
    CHECK((*kids)[1].who == p["b"]);
    CHECK((*kids)[1].restarts == 1);
    CHECK((*kids)[0].restarts == 0);
    REQUIRE(stop_supervisor(n, *sup).ok());
}

namespace {

// A supervisor of a, b and c with `strategy`, reporting to `log`; all
// three started (their pids in p), then b crashed.
struct b_crashed {
    node n{opts()};
    mailbox log{n};
    pid sup;
    std::map<std::string, pid> p;
    explicit b_crashed(sup_strategy strategy) {
        auto s = start_supervisor(n, spec_of(strategy, log.self()));
        REQUIRE(s.ok());
        sup = *s;
        events(log, 3, &p);
        log.send(p["b"], "crash");
    }
};

}  // namespace

TEST_CASE("supervisor: one_for_all stops the others in reverse order, then restarts all in order",
          "[availability][supervisor]") {
    b_crashed t(sup_strategy::one_for_all);
    CHECK(events(t.log, 5) ==
          std::vector<std::string>{"stopping:c", "stopping:a", "started:a", "started:b", "started:c"});
    CHECK(silent(t.log));
    REQUIRE(stop_supervisor(t.n, t.sup).ok());
}

TEST_CASE("supervisor: rest_for_one restarts the child and those started after it", "[availability][supervisor]") {
    b_crashed t(sup_strategy::rest_for_one);
    CHECK(events(t.log, 3) == std::vector<std::string>{"stopping:c", "started:b", "started:c"});
    CHECK(silent(t.log));
    t.log.send(t.p["c"], "crash");  // the old c is gone: nothing happens
    CHECK(silent(t.log));
    REQUIRE(stop_supervisor(t.n, t.sup).ok());
}

TEST_CASE("supervisor: more restarts than the intensity stops everything with reason shutdown",
          "[availability][supervisor]") {
    node n(opts());
    mailbox log(n);
    std::vector<std::string> records;
    std::mutex mu;
    auto sp = spec_of(sup_strategy::one_for_one, log.self(), 2);
    sp.log = [&](const log_record& r) {
        std::lock_guard lk(mu);
        records.emplace_back(r.text);
    };
    auto sup = start_supervisor(n, sp);
    REQUIRE(sup.ok());
    ref mon = log.monitor(*sup);
    std::map<std::string, pid> p;
    events(log, 3, &p);
    log.send(p["a"], "crash");
    events(log, 1, &p);
    log.send(p["a"], "crash");
    events(log, 1, &p);
    log.send(p["a"], "crash");  // third restart within the period: give up
    CHECK(events(log, 2) == std::vector<std::string>{"stopping:c", "stopping:b"});
    auto down = log.receive([&](const message& m) { return m.is_down() && m.tag == mon; }, 5000ms);
    REQUIRE(down.ok());
    CHECK(is_str(down->body, "shutdown"));
    std::lock_guard lk(mu);
    bool said = false;
    for (auto& t : records) said = said || t.find("reached_max_restart_intensity") != std::string::npos;
    CHECK(said);
}

TEST_CASE("supervisor: child kinds (transient normal exit, temporary)", "[availability][supervisor]") {
    node n(opts());
    mailbox log(n);
    supervisor_spec sp;
    sp.intensity = 10;
    sp.log = [](const log_record&) {};
    sp.children.push_back(reporter("t", log.self(), restart_kind::transient));
    sp.children.push_back(reporter("tmp", log.self(), restart_kind::temporary));
    auto sup = start_supervisor(n, sp);
    REQUIRE(sup.ok());
    std::map<std::string, pid> p;
    events(log, 2, &p);
    log.send(p["t"], "normal");  // transient ending normally: not restarted
    CHECK(silent(log));
    log.send(p["tmp"], "crash");  // temporary: never restarted, dropped
    CHECK(silent(log));
    auto kids = which_children(n, *sup);
    REQUIRE(kids.ok());
    REQUIRE(kids->size() == 1);
    CHECK((*kids)[0].id == "t");
    CHECK((*kids)[0].state == "stopped");
    REQUIRE(stop_supervisor(n, *sup).ok());
}

TEST_CASE("supervisor: transient child ending abnormally is restarted", "[availability][supervisor]") {
    node n(opts());
    mailbox log(n);
    supervisor_spec sp;
    sp.log = [](const log_record&) {};
    sp.children.push_back(reporter("t", log.self(), restart_kind::transient));
    auto sup = start_supervisor(n, sp);
    REQUIRE(sup.ok());
    std::map<std::string, pid> p;
    events(log, 1, &p);
    log.send(p["t"], "crash");
    CHECK(events(log, 1) == std::vector<std::string>{"started:t"});
    REQUIRE(stop_supervisor(n, *sup).ok());
}

TEST_CASE("supervisor: ordered shutdown in reverse order, a stubborn child is killed after its timeout",
          "[availability][supervisor]") {
    node n(opts());
    mailbox log(n);
    supervisor_spec sp;
    sp.log = [](const log_record&) {};
    sp.children.push_back(reporter("a", log.self()));
    sp.children.push_back(reporter("stubborn", log.self(), restart_kind::permanent, true, 300ms));
    sp.children.push_back(reporter("c", log.self()));
    auto sup = start_supervisor(n, sp);
    REQUIRE(sup.ok());
    std::map<std::string, pid> p;
    events(log, 3, &p);
    ref ms = log.monitor(p["stubborn"]);
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(stop_supervisor(n, *sup).ok());
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(events(log, 2) == std::vector<std::string>{"stopping:c", "stopping:a"});
    auto down = log.receive([&](const message& m) { return m.is_down() && m.tag == ms; }, 5000ms);
    REQUIRE(down.ok());
    CHECK(is_str(down->body, "killed"));
    CHECK(took >= 300ms);
    CHECK(took < 3000ms);
    CHECK(eventually([&] { return !n.alive(*sup); }));  // it ends right after replying
}

TEST_CASE("supervisor: an abnormal exit of its parent shuts the tree down in order", "[availability][supervisor]") {
    node n(opts());
    mailbox log(n);
    mailbox parent(n);
    supervisor_spec sp = spec_of(sup_strategy::one_for_one, log.self());
    pid sup = parent.spawn_link(supervisor(n, sp));
    ref mon = log.monitor(sup);
    events(log, 3);
    parent.send_exit(sup, "parent_gone");
    CHECK(events(log, 3) == std::vector<std::string>{"stopping:c", "stopping:b", "stopping:a"});
    auto down = log.receive([&](const message& m) { return m.is_down() && m.tag == mon; }, 5000ms);
    REQUIRE(down.ok());
    CHECK(is_str(down->body, "parent_gone"));
}

TEST_CASE("supervisor: bad specs are refused with badarg and say why", "[availability][supervisor]") {
    node n(opts());
    supervisor_spec sp;
    child_spec c;
    c.id = "x";
    sp.children.push_back(c);  // neither start nor remote
    auto r = start_supervisor(n, sp);
    REQUIRE(!r.ok());
    CHECK(r.code() == errc::badarg);
    CHECK(r.err().detail.find("exactly one of start and remote") != std::string::npos);
    sp.children[0].start = [](actor&) -> behavior { return [](actor&, message&) {}; };
    sp.children.push_back(sp.children[0]);
    r = start_supervisor(n, sp);
    CHECK(r.code() == errc::badarg);
    CHECK(r.err().detail.find("duplicate child id") != std::string::npos);
    sp.children.pop_back();
    sp.intensity = -1;
    CHECK(start_supervisor(n, sp).code() == errc::badarg);
}

TEST_CASE("supervisor: a remote child that cannot start fails the start, naming it", "[availability][supervisor]") {
    node n(opts());  // no network: every remote start is nodedown
    mailbox log(n);
    supervisor_spec sp;
    sp.log = [](const log_record&) {};
    sp.children.push_back(reporter("a", log.self()));
    child_spec far;
    far.id = "far";
    far.remote = remote_child{"nobody@nowhere", "echo", "server", arr()};
    sp.children.push_back(far);
    auto r = start_supervisor(n, sp);
    REQUIRE(!r.ok());
    CHECK(r.code() == errc::exception);
    CHECK(r.err().detail.find("start_failed: far: nodedown") != std::string::npos);
    CHECK(events(log, 2) == std::vector<std::string>{"started:a", "stopping:a"});
}

TEST_CASE("supervisor: a tree: a child supervisor that gives up is restarted by its parent",
          "[availability][supervisor]") {
    node n(opts());
    mailbox log(n);
    supervisor_spec inner = spec_of(sup_strategy::one_for_one, log.self(), 0);  // gives up at the first crash
    inner.children.resize(2);                                                 // a, b
    supervisor_spec outer;
    outer.log = [](const log_record&) {};
    child_spec sub;
    sub.id = "inner";
    sub.start = supervisor(n, inner);
    sub.shutdown = 10000ms;  // long enough for the inner tree's own ordered shutdown
    outer.children.push_back(sub);
    auto top = start_supervisor(n, outer);
    REQUIRE(top.ok());
    std::map<std::string, pid> p;
    CHECK(events(log, 2, &p) == std::vector<std::string>{"started:a", "started:b"});
    pid inner1 = (*which_children(n, *top))[0].who;
    log.send(p["a"], "crash");
    // inner stops b and exits "shutdown"; outer (permanent child) starts it again.
    CHECK(events(log, 3, &p) == std::vector<std::string>{"stopping:b", "started:a", "started:b"});
    auto kids = which_children(n, *top);
    REQUIRE(kids.ok());
    CHECK((*kids)[0].restarts == 1);
    CHECK((*kids)[0].who != inner1);
    // Stopping the top stops the whole tree, deepest last-started first.
    REQUIRE(stop_supervisor(n, *top).ok());
    CHECK(events(log, 2) == std::vector<std::string>{"stopping:b", "stopping:a"});
}
