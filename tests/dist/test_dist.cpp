// Several nodes in one process over real CURVE on loopback: the seeds'
// walkthroughs (echo, kvs over rpc, dist_demo), rpc errors, remote
// monitors/links, node events, cookies, and invalid envelopes from an
// authenticated peer.
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "kith/builtin.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

node_options opts(const std::string& name, const temp_dir& dir, std::string cookie = "classroom-42") {
    node_options o;
    o.name = name;
    o.workers = 2;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = dir.path;
    o.net.cookie = std::move(cookie);
    return o;
}

void host_builtins(node& n) {
    n.add_service(services::make_kvs());
    n.add_service(services::make_echo());
    n.add_service(services::make_demo(n));
}

// Waits for a message matching `pred`; fails the test after `timeout`.
message expect(mailbox& mb, const mailbox::predicate& pred, std::chrono::milliseconds timeout = 3000ms) {
    auto r = mb.receive(pred, timeout);
    REQUIRE(r.ok());
    return std::move(*r);
}

struct pair_of_nodes {
    temp_dir da, db;
    node a, b;
    pair_of_nodes() : a(opts("alice@localhost", da)), b(opts("bob@localhost", db)) {
        host_builtins(a);
        host_builtins(b);
        auto r = a.connect(b.endpoint(), b.key(), 5s);
        REQUIRE(r.ok());
        REQUIRE(*r == "bob@localhost");
    }
};

}  // namespace

TEST_CASE("dist: kvs over rpc, as in the seeds' two terminals", "[dist]") {
    pair_of_nodes p;
    // rpc:call(gandalf@localhost, kvs, store, [weather, fine]).  -> true
    auto stored = p.a.call("bob@localhost", "kvs", "store", arr("weather", "fine"), 2s);
    REQUIRE(stored.ok());
    CHECK(*stored == term(true));
    // rpc:call(gandalf@localhost, kvs, lookup, [weather]).  -> {ok, fine}
    auto found = p.a.call("bob@localhost", "kvs", "lookup", arr("weather"), 2s);
    REQUIRE(found.ok());
    CHECK(*found == arr("ok", "fine"));
    CHECK(p.a.call("bob@localhost", "kvs", "lookup", arr("rain"), 2s).value() == term("undefined"));
    // The other direction works over the same pair (cluster trust is mutual).
    CHECK(p.b.call("alice@localhost", "kvs", "keys", arr(), 2s).value() == arr());
    // A node may call itself.
    CHECK(p.a.call("alice@localhost", "echo", "echo", arr(7), 2s).value() == term(7));
}

TEST_CASE("dist: connecting back to a node that connected to us answers at once", "[dist]") {
    pair_of_nodes p;  // alice dialled bob
    auto t0 = std::chrono::steady_clock::now();
    auto back = p.b.connect(p.a.endpoint(), p.a.key(), 3s);
    REQUIRE(back.ok());  // it used to time out: the link joined the session alice's dial had opened
    CHECK(*back == "alice@localhost");
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    CHECK(p.b.call("alice@localhost", "echo", "echo", arr(1), 2s).value() == term(1));
    // Again: the endpoint is one bob dialled now, so the answer is at once
    // (the link exists: the transport has nothing to do that could answer).
    auto again = p.b.connect(p.a.endpoint(), p.a.key(), 3s);
    REQUIRE(again.ok());
    CHECK(*again == "alice@localhost");
}

TEST_CASE("dist: a node that dialled us is shown at its address with the port it listens at", "[dist]") {
    pair_of_nodes p;  // alice dialled bob: bob knows alice's port only from her handshake
    auto seen = p.b.info("alice@localhost");
    REQUIRE(seen.has_value());
    CHECK(seen->endpoint == p.a.endpoint());  // tcp://127.0.0.1:<alice's port>, not tcp://127.0.0.1
    CHECK(p.a.info("bob@localhost")->endpoint == p.b.endpoint());  // the one she dialled
}

TEST_CASE("dist: the port an inbound node claims never answers a connect to that endpoint", "[dist]") {
    // carol advertises bob's endpoint as hers and dials alice: alice shows
    // the claim, but connecting to bob's endpoint must reach bob.
    temp_dir da, db, dc;
    node a(opts("alice@localhost", da)), b(opts("bob@localhost", db));
    node_options co = opts("carol@localhost", dc);
    co.net.advertise = b.endpoint();
    node c(co);
    REQUIRE(c.connect(a.endpoint(), a.key(), 5s).value() == "alice@localhost");
    auto carol = a.info("carol@localhost");
    REQUIRE(carol.has_value());
    CHECK(carol->endpoint == b.endpoint());  // her claim, shown
    auto r = a.connect(b.endpoint(), b.key(), 5s);
    REQUIRE(r.ok());
    CHECK(*r == "bob@localhost");
    CHECK(a.info("bob@localhost").has_value());
}

TEST_CASE("dist: rpc errors are distinct values", "[dist]") {
    pair_of_nodes p;
    p.b.add_service(service("math")
                        .function("div", [](int a, int b) {
                            if (b == 0) throw std::domain_error("division by zero");
                            return a / b;
                        })
                        .function("never", [](reply_to r) { (void)r.replied(); /* kept until dropped */ }));
    auto call = [&](const std::string& svc, const std::string& fn, term args, std::chrono::milliseconds t = 2000ms) {
        return p.a.call("bob@localhost", svc, fn, std::move(args), t);
    };
    CHECK(call("math", "div", arr(7, 2)).value() == term(3));
    CHECK(call("nosuch", "f", arr()).code() == errc::no_such_service);
    CHECK(call("math", "mul", arr(1, 2)).code() == errc::no_such_function);
    auto bad = call("math", "div", arr(1));
    CHECK(bad.code() == errc::bad_args);
    CHECK(bad.err().detail == "expected 2 arguments, got 1");
    CHECK(call("math", "div", arr("x", 2)).code() == errc::bad_args);
    auto ex = call("math", "div", arr(1, 0));
    CHECK(ex.code() == errc::exception);
    CHECK(ex.err().detail == "division by zero");
    CHECK(p.a.call("carol@localhost", "kvs", "keys", arr(), 1s).code() == errc::nodedown);

    // A function that answers later than the caller's deadline: timeout.
    std::mutex mu;
    std::vector<reply_to> parked;
    p.b.add_service(service("slow").function("wait", [&](reply_to r) {
        std::lock_guard lk(mu);
        parked.push_back(std::move(r));
    }));
    auto t0 = std::chrono::steady_clock::now();
    CHECK(call("slow", "wait", arr(), 200ms).code() == errc::timeout);
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    std::lock_guard lk(mu);
    for (auto& r : parked) r.value(1);  // a late reply is dropped quietly
}

TEST_CASE("dist: cast and multicall", "[dist]") {
    pair_of_nodes p;
    REQUIRE(p.a.cast("bob@localhost", "kvs", "store", arr("k", 1)).ok());
    // The cast arrives. (Service invocations run concurrently, one transient
    // actor each, as Erlang's rpc does: a later call may start before an
    // earlier cast has finished, so poll with a deadline.)
    auto deadline = std::chrono::steady_clock::now() + 3s;
    term seen;
    while (std::chrono::steady_clock::now() < deadline) {
        seen = p.a.call("bob@localhost", "kvs", "lookup", arr("k"), 2s).value();
        if (seen == arr("ok", 1)) break;
        std::this_thread::yield();
    }
    CHECK(seen == arr("ok", 1));
    auto mc = p.a.multicall({"alice@localhost", "bob@localhost", "nobody@localhost"}, "demo", "node", arr(), 2s);
    CHECK(mc.results.at("alice@localhost") == term("alice@localhost"));
    CHECK(mc.results.at("bob@localhost") == term("bob@localhost"));
    REQUIRE(mc.bad_nodes.count("nobody@localhost") == 1);
    CHECK(mc.bad_nodes.at("nobody@localhost").code == errc::nodedown);
    CHECK(p.a.cast("nobody@localhost", "kvs", "keys", arr()).code() == errc::nodedown);
}

TEST_CASE("dist: the seeds' echo server spawned on another node", "[dist]") {
    pair_of_nodes p;
    mailbox me(p.a);
    // S2 = spawn('bilbo@...', echo, server, []).  S2 ! {self(), 17}.
    auto s2 = p.a.spawn("bob@localhost", "echo", "server", arr(), 2s);
    REQUIRE(s2.ok());
    CHECK(s2->node == "bob@localhost");
    me.send(*s2, arr(me.self(), 17));
    CHECK(expect(me, [](const message& m) { return m.is_user(); }).body == term(17));
    // register(echo, ...) on bob, then {echo, 'bob@...'} ! {self(), "abc"}.
    REQUIRE(p.b.register_name("echo", *s2).ok());
    me.send("echo", "bob@localhost", arr(me.self(), "abc"));
    CHECK(expect(me, [](const message& m) { return m.is_user(); }).body == term("abc"));
    // Unknown service / actor type are distinct errors.
    CHECK(p.a.spawn("bob@localhost", "echo", "nosuch", arr(), 2s).code() == errc::no_such_function);
    CHECK(p.a.spawn("bob@localhost", "nosuch", "server", arr(), 2s).code() == errc::no_such_service);
}

TEST_CASE("dist: dist_demo - spawn on a remote node, then rpc through it", "[dist]") {
    pair_of_nodes p;
    mailbox me(p.a);
    // Pid = dist_demo:start('bob@...').
    auto pid = p.a.spawn("bob@localhost", "demo", "rpc_server", arr(), 2s);
    REQUIRE(pid.ok());
    // dist_demo:rpc(Pid, erlang, node, []).  -> 'bob@...'
    auto r = me.call(*pid, arr("demo", "node", arr()), 2s);
    REQUIRE(r.ok());
    CHECK(*r == term("bob@localhost"));
    CHECK(me.call(*pid, arr("kvs", "store", arr("x", 1)), 2s).value() == term(true));
    CHECK(me.call(*pid, arr("nosuch", "f", arr()), 2s).code() == errc::no_such_service);
}

TEST_CASE("dist: remote monitors and links, pids travel inside messages", "[dist]") {
    pair_of_nodes p;
    mailbox me(p.a);
    // An actor on bob that forwards whatever it gets to the pid inside it.
    pid fwd = p.b.spawn([](actor& self, message& m) {
        if (m.is_user() && m.body.at(0) && m.body.at(0)->is_pid()) self.send(*m.body.at(0)->as_pid(), *m.body.at(1));
    });
    me.send(fwd, arr(me.self(), "via bob"));
    CHECK(expect(me, [](const message& m) { return m.is_user(); }).body == term("via bob"));

    ref mref = me.monitor(fwd);
    me.send_exit(fwd, "kill");
    auto down = expect(me, [&](const message& m) { return m.is_down() && m.tag == mref; });
    CHECK(down.from == fwd);
    CHECK(down.body == term("killed"));

    // Monitoring a dead remote pid: DOWN noproc at once.
    ref m2 = me.monitor(fwd);
    CHECK(expect(me, [&](const message& m) { return m.is_down() && m.tag == m2; }).body == term("noproc"));

    // A link across nodes: the remote actor ends abnormally, the local
    // trapping actor gets EXIT.
    pid victim = p.b.spawn([](actor& self, message& m) {
        if (m.is_user()) self.quit("crashed");
    });
    pid watcher = p.a.spawn([victim, to = me.self()](actor& self) -> behavior {
        self.trap_exit(true);
        self.link(victim);
        self.send(to, "linked");
        return [to](actor& self, message& m) {
            if (m.is_exit()) self.send(to, arr("exit", m.from, m.body));
        };
    });
    (void)watcher;
    expect(me, [](const message& m) { return m.body == term("linked"); });
    me.send(victim, "die");
    auto ex = expect(me, [](const message& m) { return m.body.at(0) && *m.body.at(0) == term("exit"); });
    CHECK(*ex.body.at(1) == term(victim));
    CHECK(*ex.body.at(2) == term("crashed"));
}

TEST_CASE("dist: node events, goodbye, and pending calls failing with nodedown", "[dist]") {
    temp_dir da, db;
    node a(opts("alice@localhost", da));
    std::mutex mu;
    std::vector<node_event> events;
    a.subscribe_nodes([&](const node_event& e) {
        std::lock_guard lk(mu);
        events.push_back(e);
    });
    mailbox watcher(a);
    a.monitor_nodes(watcher.self());
    {
        node b(opts("bob@localhost", db));
        std::mutex pm;
        std::vector<reply_to> parked;
        b.add_service(service("slow").function("wait", [&](reply_to r) {
            std::lock_guard lk(pm);
            parked.push_back(std::move(r));
        }));
        REQUIRE(a.connect(b.endpoint(), b.key(), 5s).ok());
        auto up = expect(watcher, [](const message& m) { return m.body.at(0) && *m.body.at(0) == term("nodeup"); });
        CHECK(*up.body.at(1) == term("bob@localhost"));
        CHECK(up.body.at(2)->lookup("trust")->as_string()->compare("cluster") == 0);
        CHECK(a.nodes() == std::vector<std::string>{"bob@localhost"});
        CHECK(a.ping("bob@localhost"));
        CHECK_FALSE(a.ping("carol@localhost"));
        mailbox nm(a);
        a.monitor_node("bob@localhost", nm.self());

        // A call pending while bob stops fails with nodedown, not timeout.
        std::atomic<bool> done{false};
        std::optional<result<term>> got;
        std::chrono::steady_clock::time_point got_at;
        std::thread caller([&] {
            auto r = a.call("bob@localhost", "slow", "wait", arr(), 30s);
            got_at = std::chrono::steady_clock::now();
            got.emplace(std::move(r));
            done = true;
        });
        // wait until bob holds the call
        for (int i = 0; i < 500; ++i) {
            {
                std::lock_guard lk(pm);
                if (!parked.empty()) break;
            }
            std::this_thread::sleep_for(10ms);
        }
        auto t0 = std::chrono::steady_clock::now();
        b.stop();
        caller.join();
        // Ended by b's goodbye, before b's stop could run to its bound (2 s).
        CHECK(got_at - t0 < 1900ms);
        REQUIRE(got.has_value());
        CHECK(got->code() == errc::nodedown);
        auto nd = expect(nm, [](const message&) { return true; });
        CHECK(nd.body == arr("nodedown", "bob@localhost", "shutdown"));
        std::lock_guard lk(pm);
        parked.clear();
    }
    auto down = expect(watcher, [](const message& m) { return m.body.at(0) && *m.body.at(0) == term("nodedown"); });
    CHECK(down.body == arr("nodedown", "bob@localhost", "shutdown"));
    CHECK(a.nodes().empty());
    std::lock_guard lk(mu);
    REQUIRE(events.size() == 2);
    CHECK(events[0].what == node_event::kind::up);
    CHECK(events[1].what == node_event::kind::down);
    CHECK(events[1].reason == "shutdown");
}

TEST_CASE("dist: a wrong cookie is refused with a clear error", "[dist]") {
    temp_dir da, db;
    node a(opts("alice@localhost", da, "cookie-one"));
    node b(opts("bob@localhost", db, "cookie-two"));
    auto t0 = std::chrono::steady_clock::now();
    auto r = a.connect(b.endpoint(), b.key(), 5s);
    CHECK(r.code() == errc::unauthorized);
    CHECK(std::chrono::steady_clock::now() - t0 < 4s);
    CHECK(a.nodes().empty());
    CHECK(b.nodes().empty());
    CHECK(a.call("bob@localhost", "kvs", "keys", arr(), 500ms).code() == errc::nodedown);
}

TEST_CASE("dist: a purely local node answers remote operations with nodedown", "[dist]") {
    node_options o;
    o.name = "solo@localhost";
    o.workers = 1;
    node n(o);
    n.add_service(services::make_kvs());
    CHECK(n.endpoint().empty());
    CHECK(n.call("solo@localhost", "kvs", "store", arr("a", 1), 1s).value() == term(true));
    CHECK(n.call("other@localhost", "kvs", "keys", arr(), 1s).code() == errc::nodedown);
    CHECK(n.spawn("other@localhost", "echo", "server", arr(), 1s).code() == errc::nodedown);
}

TEST_CASE("dist: spawn_link and spawn_monitor on a remote node", "[dist]") {
    pair_of_nodes p;
    p.b.add_service(service("life")
                        .actor_type("mortal",
                                    [] {
                                        return [](actor& self, message& m) {
                                            if (m.is_user()) self.quit(m.body);
                                        };
                                    })
                        .actor_type("instant", [](std::string reason) {
                            return [reason](actor& self) -> behavior {
                                self.quit(reason);
                                return [](actor&, message&) {};
                            };
                        }));
    mailbox me(p.a);

    // Monitored: the DOWN carries the real reason, even for an actor that
    // ends at once (the monitor exists before it can end).
    auto m = p.a.spawn_monitor(me.self(), "bob@localhost", "life", "instant", arr("early"), 2s);
    INFO(m.err().message());
    REQUIRE(m.ok());
    auto down = expect(me, [&](const message& x) { return x.is_down() && x.tag == m->second; });
    CHECK(down.from == m->first);
    CHECK(down.body == term("early"));

    // Linked: the child ends abnormally, the (trapping) mailbox gets EXIT.
    auto l = p.a.spawn_link(me.self(), "bob@localhost", "life", "mortal", arr(), 2s);
    REQUIRE(l.ok());
    me.send(*l, "crashed");
    auto ex = expect(me, [&](const message& x) { return x.is_exit() && x.from == *l; });
    CHECK(ex.body == term("crashed"));

    // Linked the other way: the local linker ends, the remote child is killed.
    auto l2 = p.a.spawn_monitor(me.self(), "bob@localhost", "life", "mortal", arr(), 2s);
    REQUIRE(l2.ok());
    pid linker = p.a.spawn([&](actor&) -> behavior {
        return [](actor& self, message& msg) {
            if (msg.is_user()) self.quit("linker quit");
        };
    });
    // link the remote child to `linker` from the child's side: spawn another
    // one linked to `linker`, then end `linker`.
    auto child = p.a.spawn_link(linker, "bob@localhost", "life", "mortal", arr(), 2s);
    REQUIRE(child.ok());
    ref watch = me.monitor(*child);
    me.send(linker, "go");
    auto gone = expect(me, [&](const message& x) { return x.is_down() && x.tag == watch; });
    CHECK(gone.body == term("linker quit"));

    CHECK(p.a.spawn_link(me.self(), "bob@localhost", "life", "nosuch", arr(), 2s).code() == errc::no_such_function);
    CHECK(p.a.spawn_monitor(me.self(), "nobody@localhost", "life", "mortal", arr(), 1s).code() == errc::nodedown);
}
