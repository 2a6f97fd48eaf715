// Request / response between actors, and the blocking mailbox call.
#include <atomic>

#include "runtime_test_util.hpp"

using namespace kith;
using namespace kith::test;

namespace {
// Replies to ["echo", X] with X, to ["fail"] with an error, ignores
// ["ignore"], stores ["later"] and answers it on ["now", V], dies on ["die"].
pid spawn_server(node& n) {
    return n.spawn([](actor&) -> behavior {
        auto stored = std::make_shared<std::vector<reply_handle>>();
        return [stored](actor& self, message& m) {
            if (!m.is_request()) {
                if (is_str(*m.body.at(0), "now"))
                    for (auto& h : *stored) self.reply(h, *m.body.at(1));
                return;
            }
            const std::string& cmd = *m.body.at(0)->as_string();
            if (cmd == "echo") self.reply(m, *m.body.at(1));
            else if (cmd == "fail") self.reply(m, error(errc::bad_args, "wrong"));
            else if (cmd == "later") stored->push_back(reply_handle(m));
            else if (cmd == "die") throw std::runtime_error("server crashed");
        };
    });
}

// A client actor: on a user message [target, payload, timeout_ms] it makes
// a request and reports [ok, value] or [error_code, detail] to `me`.
pid spawn_client(node& n, pid me) {
    return n.spawn([me](actor& self, message& m) {
        pid target = *m.body.at(0)->as_pid();
        auto ms = m.body.at(2)->as_int().value();
        self.request(target, *m.body.at(1), std::chrono::milliseconds(ms), [me, &self](result<term> r) {
            if (r.ok()) self.send(me, arr("ok", *r));
            else self.send(me, arr(static_cast<int>(r.code()), r.err().detail));
        });
    });
}
}  // namespace

TEST_CASE("request gets the reply", "[runtime][requests]") {
    node n(opts());
    mailbox mb(n);
    pid server = spawn_server(n);
    pid client = spawn_client(n, mb.self());
    n.send(client, arr(server, arr("echo", "hi"), 5000));
    CHECK(next(mb).body == arr("ok", "hi"));
    n.send(client, arr(server, arr("fail"), 5000));
    CHECK(next(mb).body == arr(static_cast<int>(errc::bad_args), "wrong"));
}

TEST_CASE("request times out - a late reply is dropped", "[runtime][requests][timeout]") {
    node n(opts());
    mailbox mb(n);
    pid server = spawn_server(n);
    pid client = spawn_client(n, mb.self());
    n.send(client, arr(server, arr("later"), 30));
    CHECK(next(mb).body == arr(static_cast<int>(errc::timeout), ""));
    n.send(server, arr("now", "too late"));   // the reply reaches the client, which drops it
    n.send(client, arr(server, arr("echo", "after"), 5000));
    CHECK(next(mb).body == arr("ok", "after"));
    CHECK(mb.size() == 0);
}

TEST_CASE("request to a dead or dying target fails with noproc", "[runtime][requests][noproc]") {
    node n(opts());
    mailbox mb(n);
    pid client = spawn_client(n, mb.self());
    n.send(client, arr(pid{n.name(), 777777}, "x", 5000));
    CHECK(next(mb).body.at(0)->as_int() == static_cast<int>(errc::noproc));
    pid server = spawn_server(n);
    n.send(client, arr(server, arr("die"), 5000));
    message m = next(mb);
    CHECK(m.body.at(0)->as_int() == static_cast<int>(errc::noproc));
    CHECK(is_str(*m.body.at(1), "server crashed"));
}

TEST_CASE("a stored reply handle answers later, even from another thread", "[runtime][requests]") {
    node n(opts());
    mailbox mb(n);
    // The server hands the requests' reply handles to the test thread.
    pid server = n.spawn([me = mb.self()](actor& self, message& m) {
        if (m.is_request()) self.send(me, arr("handle", m.from, m.tag));
    });
    pid client = spawn_client(n, mb.self());
    n.send(client, arr(server, "a", 5000));
    n.send(client, arr(server, "b", 5000));
    // The first answer may reach the mailbox before the second handle does:
    // take the handles selectively, then the answers.
    auto is_handle = [](const message& m) { return m.body.at(0) && is_str(*m.body.at(0), "handle"); };
    auto is_answer = [](const message& m) { return m.body.at(0) && is_str(*m.body.at(0), "ok"); };
    for (int i = 0; i < 2; ++i) {
        auto h = mb.receive(is_handle, deadline);
        REQUIRE(h.ok());
        n.reply(reply_handle(*h->body.at(1)->as_pid(), *h->body.at(2)->get_if<ref>()), 40 + i);
    }
    auto a1 = mb.receive(is_answer, deadline);
    auto a2 = mb.receive(is_answer, deadline);
    REQUIRE(a1.ok());
    REQUIRE(a2.ok());
    CHECK(a1->body == arr("ok", 40));
    CHECK(a2->body == arr("ok", 41));
    // A reply to a handle nobody waits for is dropped quietly.
    n.reply(reply_handle(client, ref{n.name(), 99999}), 0);
    n.reply(reply_handle(), 0);
}

TEST_CASE("mailbox call: reply, error, timeout, noproc", "[runtime][requests][mailbox]") {
    node n(opts());
    mailbox mb(n);
    pid server = spawn_server(n);
    auto r = mb.call(server, arr("echo", 7), deadline);
    REQUIRE(r.ok());
    CHECK(*r == term(7));
    auto e = mb.call(server, arr("fail"), deadline);
    CHECK(e.code() == errc::bad_args);
    CHECK(e.err().detail == "wrong");
    auto t = mb.call(server, arr("later"), 30ms);
    CHECK(t.code() == errc::timeout);
    n.send(server, arr("now", "late"));  // the late reply must not show up
    auto r2 = mb.call(server, arr("echo", 8), deadline);
    CHECK(r2.ok());
    CHECK(mb.receive(20ms).code() == errc::timeout);
    auto np = mb.call(pid{n.name(), 888888}, "x", deadline);
    CHECK(np.code() == errc::noproc);
    auto dying = mb.call(server, arr("die"), deadline);
    CHECK(dying.code() == errc::noproc);
    CHECK(mb.size() == 0);
}

TEST_CASE("call leaves other messages queued in order", "[runtime][requests][mailbox]") {
    node n(opts());
    mailbox mb(n);
    pid server = n.spawn([me = mb.self()](actor& self, message& m) {
        self.send(me, "before");
        self.reply(m, "answer");
        self.send(me, "after");
    });
    auto r = mb.call(server, "q", deadline);
    REQUIRE(r.ok());
    CHECK(is_str(*r, "answer"));
    CHECK(is_str(next(mb).body, "before"));
    CHECK(is_str(next(mb).body, "after"));
}

TEST_CASE("a mailbox can serve requests", "[runtime][requests][mailbox]") {
    node n(opts());
    mailbox srv(n);
    mailbox cli(n);
    std::thread t([&] {
        auto m = srv.receive([](const message& x) { return x.is_request(); }, deadline);
        if (m.ok()) srv.reply(*m, arr("served", m->body));
    });
    auto r = cli.call(srv.self(), 1, deadline);
    t.join();
    REQUIRE(r.ok());
    CHECK(*r == arr("served", 1));
}
