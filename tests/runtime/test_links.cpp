// Links, monitors and exit reasons (Erlang semantics).
#include "runtime_test_util.hpp"

using namespace kith;
using namespace kith::test;

namespace {
// An actor that forwards everything it gets to `me`, untouched, and obeys
// the commands ["link", P], ["quit", R], ["throw", Text], ["exit", P, R],
// ["trap", bool].
behavior forwarder(pid me) {
    return [me](actor& self, message& m) {
        if (m.is_user() && m.body.is_array() && m.body.at(0)->is_string()) {
            const std::string& cmd = *m.body.at(0)->as_string();
            if (cmd == "link") return self.link(*m.body.at(1)->as_pid());
            if (cmd == "unlink") return self.unlink(*m.body.at(1)->as_pid());
            if (cmd == "quit") return self.quit(*m.body.at(1));
            if (cmd == "throw") throw std::runtime_error(*m.body.at(1)->as_string());
            if (cmd == "exit") return self.send_exit(*m.body.at(1)->as_pid(), *m.body.at(2));
            if (cmd == "trap") {
                self.trap_exit(*m.body.at(1)->get_if<bool>());
                return self.send(me, "trapping");
            }
        }
        // Forward as [kind, from, body].
        self.send(me, arr(static_cast<int>(m.kind), m.from, m.body));
    };
}

pid spawn_trapping(node& n, mailbox& mb) {
    pid p = n.spawn(forwarder(mb.self()));
    n.send(p, arr("trap", true));
    REQUIRE(is_str(next(mb).body, "trapping"));
    return p;
}

ref watch(mailbox& mb, const pid& p) { return mb.monitor(p); }

// Round trip through a forwarder: everything it was sent before is handled.
void sync(node& n, mailbox& mb, const pid& p) {
    n.send(p, "sync");
    auto m = mb.receive([](const message& x) { return x.is_user() && x.body.at(2) && is_str(*x.body.at(2), "sync"); },
                        deadline);
    REQUIRE(m.ok());
}

// Waits for the DOWN of monitor `r` and returns its reason.
term down_reason(mailbox& mb, const ref& r) {
    auto m = mb.receive([&](const message& x) { return x.is_down() && x.tag == r; }, deadline);
    REQUIRE(m.ok());
    return m->body;
}
}  // namespace

TEST_CASE("an abnormal exit kills linked actors that do not trap exits", "[runtime][links]") {
    node n(opts());
    mailbox mb(n);
    pid a = n.spawn(forwarder(mb.self()));
    pid b = n.spawn(forwarder(mb.self()));
    pid c = n.spawn(forwarder(mb.self()));
    ref ra = watch(mb, a), rb = watch(mb, b), rc = watch(mb, c);
    n.send(a, arr("link", b));
    n.send(b, arr("link", c));  // chain a - b - c
    sync(n, mb, a);
    sync(n, mb, b);
    n.send(c, arr("throw", "oops"));
    CHECK(is_str(down_reason(mb, rc), "oops"));
    CHECK(is_str(down_reason(mb, rb), "oops"));
    CHECK(is_str(down_reason(mb, ra), "oops"));
}

TEST_CASE("a normal exit does not kill linked actors", "[runtime][links]") {
    node n(opts());
    mailbox mb(n);
    pid a = n.spawn(forwarder(mb.self()));
    pid b = n.spawn(forwarder(mb.self()));
    ref rb = watch(mb, b);
    n.send(a, arr("link", b));
    sync(n, mb, a);
    n.send(b, arr("quit", "normal"));
    CHECK(is_str(down_reason(mb, rb), "normal"));
    n.send(a, "alive?");
    message m = next_of(mb, message_kind::user);
    CHECK(is_str(*m.body.at(2), "alive?"));
}

TEST_CASE("an actor trapping exits gets EXIT messages instead of dying", "[runtime][links][trap_exit]") {
    node n(opts());
    mailbox mb(n);
    pid t = spawn_trapping(n, mb);
    pid b = n.spawn(forwarder(mb.self()));
    n.send(t, arr("link", b));
    sync(n, mb, t);
    n.send(b, arr("throw", "crash"));
    message m = next_of(mb, message_kind::user);
    CHECK(m.body.at(0)->as_int() == static_cast<int>(message_kind::exit));
    CHECK(*m.body.at(1) == term(b));
    CHECK(is_str(*m.body.at(2), "crash"));
    // A normal exit of a link is also delivered when trapping.
    pid c = n.spawn(forwarder(mb.self()));
    n.send(t, arr("link", c));
    sync(n, mb, t);
    n.send(c, arr("quit", "normal"));
    message m2 = next_of(mb, message_kind::user);
    CHECK(*m2.body.at(1) == term(c));
    CHECK(is_str(*m2.body.at(2), "normal"));
    CHECK(n.alive(t));
}

TEST_CASE("kill is untrappable and links see killed", "[runtime][links][kill]") {
    node n(opts());
    mailbox mb(n);
    pid victim = spawn_trapping(n, mb);
    pid observer = spawn_trapping(n, mb);
    n.send(observer, arr("link", victim));
    sync(n, mb, observer);
    ref rv = watch(mb, victim);
    mb.send_exit(victim, "kill");
    CHECK(is_str(down_reason(mb, rv), "killed"));
    message m = next_of(mb, message_kind::user);  // observer's EXIT, trappable "killed"
    CHECK(*m.body.at(1) == term(victim));
    CHECK(is_str(*m.body.at(2), "killed"));
    CHECK(n.alive(observer));
}

TEST_CASE("exit signals: abnormal kills, normal is ignored, trapped becomes EXIT", "[runtime][links][exit]") {
    node n(opts());
    mailbox mb(n);
    pid plain = n.spawn(forwarder(mb.self()));
    ref rp = watch(mb, plain);
    n.send_exit(plain, "normal");  // ignored
    n.send(plain, "ping");
    CHECK(is_str(*next_of(mb, message_kind::user).body.at(2), "ping"));
    n.send_exit(plain, "shutdown");
    CHECK(is_str(down_reason(mb, rp), "shutdown"));

    pid t = spawn_trapping(n, mb);
    pid sender = n.spawn(forwarder(mb.self()));
    n.send(sender, arr("exit", t, "please"));
    message m = next_of(mb, message_kind::user);
    CHECK(m.body.at(0)->as_int() == static_cast<int>(message_kind::exit));
    CHECK(*m.body.at(1) == term(sender));
    CHECK(is_str(*m.body.at(2), "please"));

    // exit(self(), normal) ends the actor itself.
    pid selfish = n.spawn([](actor& self, message&) { self.send_exit(self.self(), "normal"); });
    ref rs = watch(mb, selfish);
    n.send(selfish, 0);
    CHECK(is_str(down_reason(mb, rs), "normal"));
}

TEST_CASE("monitoring a dead or unknown pid fires DOWN noproc at once", "[runtime][monitors][noproc]") {
    node n(opts());
    mailbox mb(n);
    auto [a, ra] = mb.spawn_monitor([](actor& self, message&) { self.quit(); });
    n.send(a, 0);
    CHECK(is_str(down_reason(mb, ra), "normal"));
    CHECK(eventually([&] { return !n.alive(a); }));
    ref again = mb.monitor(a);
    CHECK(is_str(down_reason(mb, again), "noproc"));
    ref unknown = mb.monitor(pid{n.name(), 999999});
    message d = next(mb);
    CHECK(d.tag == unknown);
    CHECK(d.from == pid{n.name(), 999999});
    CHECK(is_str(d.body, "noproc"));
    // From an actor too.
    pid w = n.spawn([](actor& self, message& m) {
        if (m.is_user()) self.monitor(*m.body.as_pid());
        else if (m.is_down()) self.send(*self.whereis("test_main"), m.body);
    });
    REQUIRE(mb.register_name("test_main").ok());
    n.send(w, pid{n.name(), 999998});
    CHECK(is_str(next(mb).body, "noproc"));
}

TEST_CASE("demonitor: no DOWN afterwards", "[runtime][monitors]") {
    node n(opts());
    mailbox mb(n);
    pid a = n.spawn(forwarder(mb.self()));
    ref r1 = mb.monitor(a);
    ref r2 = mb.monitor(a);
    CHECK(mb.demonitor(r1));
    CHECK_FALSE(mb.demonitor(r1));
    n.send(a, arr("quit", "bye"));
    message d = next(mb);
    CHECK(d.tag == r2);
    CHECK(is_str(d.body, "bye"));
    CHECK(mb.receive(50ms).code() == errc::timeout);

    // An actor demonitors before the target dies: it never sees the DOWN.
    pid target = n.spawn(forwarder(mb.self()));
    pid w = n.spawn([me = mb.self(), target](actor& self, message& m) {
        if (is_str(m.body, "watch")) {
            ref r = self.monitor(target);
            self.send(me, self.demonitor(r) ? "demonitored" : "?");
            self.send(target, arr("quit", "x"));
            self.send_after(20ms, self.self(), "late");
        } else {
            self.send(me, m.is_down() ? term("down") : m.body);
        }
    });
    n.send(w, "watch");
    CHECK(is_str(next(mb).body, "demonitored"));
    CHECK(is_str(next(mb).body, "late"));
}

TEST_CASE("unlink: no exit propagates afterwards", "[runtime][links]") {
    node n(opts());
    mailbox mb(n);
    pid a = n.spawn(forwarder(mb.self()));
    pid b = n.spawn(forwarder(mb.self()));
    ref rb = watch(mb, b);
    n.send(a, arr("link", b));
    n.send(a, arr("unlink", b));
    n.send(a, "sync");
    CHECK(is_str(*next_of(mb, message_kind::user).body.at(2), "sync"));
    n.send(b, arr("throw", "x"));
    CHECK(is_str(down_reason(mb, rb), "x"));
    n.send(a, "alive");
    CHECK(is_str(*next_of(mb, message_kind::user).body.at(2), "alive"));
}

TEST_CASE("linking to a dead pid sends exit noproc", "[runtime][links][noproc]") {
    node n(opts());
    mailbox mb(n);
    pid dead{n.name(), 424242};
    pid a = n.spawn(forwarder(mb.self()));
    ref ra = watch(mb, a);
    n.send(a, arr("link", dead));
    CHECK(is_str(down_reason(mb, ra), "noproc"));
    // A mailbox always traps: it gets an EXIT message.
    mb.link(dead);
    message m = next_of(mb, message_kind::exit);
    CHECK(m.from == dead);
    CHECK(is_str(m.body, "noproc"));
}

TEST_CASE("spawn_link and a mailbox linked to a crashing actor", "[runtime][links]") {
    node n(opts());
    mailbox mb(n);
    pid child = mb.spawn_link([](actor&, message&) { throw std::runtime_error("child died"); });
    n.send(child, 0);
    message m = next_of(mb, message_kind::exit);
    CHECK(m.from == child);
    CHECK(is_str(m.body, "child died"));

    // Parent actor spawn_links a child; the child's crash kills the parent.
    pid parent = n.spawn([me = mb.self()](actor& self, message&) {
        pid c = self.spawn_link([](actor&, message&) { throw std::runtime_error("kid"); });
        self.send(c, 0);
    });
    ref rp = mb.monitor(parent);
    n.send(parent, 0);
    CHECK(is_str(down_reason(mb, rp), "kid"));

    // spawn_monitor from an actor.
    pid watcher = n.spawn([me = mb.self()](actor& self, message& m) {
        if (m.is_down()) return self.send(me, arr("down", m.body));
        auto [c, r] = self.spawn_monitor([](actor& s, message&) { s.quit("done"); });
        self.send(c, 0);
    });
    n.send(watcher, 0);
    message d = next(mb);
    CHECK(is_str(*d.body.at(1), "done"));
}

TEST_CASE("a mailbox ending fires its links and monitors with normal", "[runtime][links][mailbox]") {
    node n(opts());
    mailbox mb(n);
    pid t = spawn_trapping(n, mb);
    {
        mailbox other(n);
        pid o = other.self();
        n.send(t, arr("link", o));
        n.send(t, "sync");
        CHECK(is_str(*next_of(mb, message_kind::user).body.at(2), "sync"));
        ref r = mb.monitor(o);
        (void)r;
    }
    message down = next_of(mb, message_kind::down);
    CHECK(is_str(down.body, "normal"));
    message ex = next_of(mb, message_kind::user);
    CHECK(ex.body.at(0)->as_int() == static_cast<int>(message_kind::exit));
    CHECK(is_str(*ex.body.at(2), "normal"));
}
