// The seam to the network layer: routing of non-local pids to a remote_port,
// the fallbacks without one, and the entry points for incoming traffic.
#include <mutex>

#include "runtime/node_impl.hpp"
#include "runtime/remote_port.hpp"
#include "runtime_test_util.hpp"

using namespace kith;
using namespace kith::test;

namespace {
struct fake_port final : detail::remote_port {
    std::mutex mu;
    std::vector<std::string> log;  // "send <kind> <body>", "monitor", ...
    std::vector<message> sent;
    bool connected = true;

    void note(std::string s) {
        std::lock_guard l(mu);
        log.push_back(std::move(s));
    }
    bool send(const pid&, message&& m) override {
        std::lock_guard l(mu);
        log.push_back("send");
        sent.push_back(std::move(m));
        return connected;
    }
    bool send_named(const std::string& node, const std::string& name, message&&) override {
        note("send_named " + node + " " + name);
        return connected;
    }
    bool link(const pid&, const pid&) override { note("link"); return connected; }
    bool unlink(const pid&, const pid&) override { note("unlink"); return connected; }
    bool monitor(const pid&, const pid&, const ref&) override { note("monitor"); return connected; }
    bool demonitor(const pid&, const pid&, const ref&) override { note("demonitor"); return connected; }
    bool exit(const pid&, const pid&, const term& reason, bool linked) override {
        note(std::string(linked ? "link_exit " : "exit ") + (reason.as_string() ? *reason.as_string() : "?"));
        return connected;
    }
    bool has(const std::string& s) {
        std::lock_guard l(mu);
        return std::find(log.begin(), log.end(), s) != log.end();
    }
};

const pid remote{"far@away", 5};
}  // namespace

TEST_CASE("without a remote port: sends dropped and counted, monitors fire noconnection",
          "[runtime][remote_seam]") {
    node n(opts());
    mailbox mb(n);
    auto before = n.counters().dropped_remote;
    mb.send(remote, "lost");
    mb.send("name", "far@away", "lost");
    CHECK(n.counters().dropped_remote == before + 2);
    ref r = mb.monitor(remote);
    message d = next(mb);
    CHECK(d.is_down());
    CHECK(d.tag == r);
    CHECK(d.from == remote);
    CHECK(is_str(d.body, "noconnection"));
    mb.link(remote);
    message e = next(mb);
    CHECK(e.is_exit());
    CHECK(is_str(e.body, "noconnection"));
    CHECK(mb.call(remote, "x", deadline).code() == errc::nodedown);
    // From an actor: a request fails with nodedown.
    pid a = n.spawn([me = mb.self()](actor& self, message&) {
        self.request(remote, "x", deadline, [me, &self](result<term> res) { self.send(me, static_cast<int>(res.code())); });
    });
    n.send(a, 0);
    CHECK(next(mb).body == term(static_cast<int>(errc::nodedown)));
}

TEST_CASE("with a remote port: operations on remote pids are routed to it", "[runtime][remote_seam]") {
    node n(opts());
    auto port = std::make_shared<fake_port>();
    detail::node_access::impl(n).set_remote_port(port);
    mailbox mb(n);
    mb.send(remote, "hello");
    mb.send("kvs", "far@away", "named");
    ref r = mb.monitor(remote);
    mb.link(remote);
    mb.send_exit(remote, "bye");
    CHECK(port->has("send"));
    CHECK(port->has("send_named far@away kvs"));
    CHECK(port->has("monitor"));
    CHECK(port->has("link"));
    CHECK(port->has("exit bye"));
    {
        std::lock_guard l(port->mu);
        REQUIRE(port->sent.size() == 1);
        CHECK(port->sent[0].kind == message_kind::user);
        CHECK(is_str(port->sent[0].body, "hello"));
    }
    CHECK(mb.receive(20ms).code() == errc::timeout);  // no DOWN: the port accepted
    // The connection drops: the network layer delivers noconnection.
    detail::node_access::impl(n).deliver(mb.self(), message(message_kind::down, "noconnection", remote, r));
    detail::node_access::impl(n).deliver(mb.self(), message(message_kind::link_exit, "noconnection", remote));
    message d = next(mb);
    CHECK(d.is_down());
    CHECK(d.tag == r);
    CHECK(is_str(d.body, "noconnection"));
    message e = next(mb);
    CHECK(e.is_exit());
    CHECK(e.from == remote);
    CHECK(mb.demonitor(r) == false);
    // A port that reports no route behaves like no port.
    port->connected = false;
    ref r2 = mb.monitor(remote);
    CHECK(next(mb).tag == r2);
    detail::node_access::impl(n).set_remote_port(nullptr);
}

TEST_CASE("incoming traffic: deliver, links and monitors from remote processes", "[runtime][remote_seam]") {
    node n(opts());
    auto port = std::make_shared<fake_port>();
    detail::node_access::impl(n).set_remote_port(port);
    mailbox mb(n);
    REQUIRE(mb.register_name("local_main").ok());
    pid a = n.spawn([me = mb.self()](actor& self, message& m) {
        if (m.is_request()) return self.reply(m, "answer");
        if (is_str(m.body, "die")) throw std::runtime_error("remote asked");
        self.send(me, m.body);
    });
    detail::node_access::impl(n).deliver(a, message("from afar"));
    CHECK(is_str(next(mb).body, "from afar"));
    detail::node_access::impl(n).deliver_named("local_main", message("named from afar"));
    CHECK(is_str(next(mb).body, "named from afar"));

    // A remote request is answered through the port.
    ref tag{"far@away", 9};
    detail::node_access::impl(n).deliver(a, message(message_kind::request, "q", remote, tag));
    CHECK(eventually([&] {
        std::lock_guard l(port->mu);
        return !port->sent.empty();
    }));
    {
        std::lock_guard l(port->mu);
        CHECK(port->sent[0].kind == message_kind::reply);
        CHECK(port->sent[0].tag == tag);
        CHECK(is_str(port->sent[0].body, "answer"));
    }

    // Remote link and monitor on `a`; when `a` dies, both go out through the port.
    CHECK(detail::node_access::impl(n).remote_link(remote, a));
    ref mref{"far@away", 10};
    CHECK(detail::node_access::impl(n).remote_monitor(remote, a, mref));
    ref local_mon = mb.monitor(a);
    detail::node_access::impl(n).deliver(a, message("die"));
    message d = next_of(mb, message_kind::down);
    CHECK(d.tag == local_mon);
    CHECK(eventually([&] { return port->has("link_exit remote asked"); }));
    CHECK(eventually([&] {
        std::lock_guard l(port->mu);
        return std::any_of(port->sent.begin(), port->sent.end(), [&](const message& m) {
            return m.kind == message_kind::down && m.tag == mref && m.from == a;
        });
    }));
    // On a dead target the entry points say no; the network layer answers noproc.
    CHECK_FALSE(detail::node_access::impl(n).remote_link(remote, a));
    CHECK_FALSE(detail::node_access::impl(n).remote_monitor(remote, a, mref));
    CHECK_FALSE(detail::node_access::impl(n).remote_monitor(remote, pid{"other@node", 1}, mref));

    // A link_exit "noconnection" from a lost node kills a linked, non-trapping actor.
    pid b = n.spawn([](actor&, message&) {});
    ref rb = mb.monitor(b);
    detail::node_access::impl(n).deliver(b, message(message_kind::user, arr("link")));
    // link from b's side: done through the entry point as the peer would
    REQUIRE(detail::node_access::impl(n).remote_link(remote, b));
    detail::node_access::impl(n).deliver(b, message(message_kind::link_exit, "noconnection", remote));
    message db = next_of(mb, message_kind::down);
    CHECK(db.tag == rb);
    CHECK(is_str(db.body, "noconnection"));
    detail::node_access::impl(n).set_remote_port(nullptr);
}
