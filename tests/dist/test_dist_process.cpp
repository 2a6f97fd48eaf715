// Nodes in separate OS processes on loopback: the test's own kith::node talks
// to kith_test_node children (real fork/exec, real CURVE).
//   - the seeds' walkthroughs (kvs over rpc, echo server, dist_demo) and a
//     clean stop (SIGTERM: goodbye, nodedown "shutdown");
//   - kill -9 of a child: DOWN noconnection, pending call -> nodedown,
//     nodedown with a documented reason, all within the heartbeat bound; the
//     child restarts and the link comes back by itself;
//   - SIGSTOP of a child (silent, connection open): nodedown "timeout" within
//     the heartbeat bound, and back after SIGCONT;
//   - a wrong cookie and a wrong server key are refused quickly;
//   - forged envelopes and malformed frames from an authenticated peer are
//     counted and refused; the child carries on.
// Every wait has a deadline; children are killed and reaped at scope exit.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "kith/envelope.hpp"
#include "kith/keys.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"
#include "transport/transport.hpp"

#ifndef KITH_TEST_NODE
#error "KITH_TEST_NODE must name the kith_test_node binary"
#endif

using namespace kith;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace {

const std::string kCookie = "process-cookie-7";

double ms_since(clock_type::time_point t0, clock_type::time_point t1 = clock_type::now()) {
    return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

// ---------------------------------------------------------------------------
// A kith_test_node child process. Its stdout and stderr are read by a thread
// into buffers; waits on them have deadlines. The destructor kills (SIGKILL)
// and reaps the child whatever happened in the test.
class child_node {
public:
    std::string name, endpoint;
    public_key key;

    child_node(std::string node_name, const std::filesystem::path& key_dir, const std::string& cookie,
               const std::string& listen = {}, std::vector<std::string> extra = {})
        : name(std::move(node_name)) {
        std::vector<std::string> args{KITH_TEST_NODE, "--name", name, "--key-dir", key_dir.string(),
                                      "--cookie", cookie};
        if (!listen.empty()) {
            args.push_back("--listen");
            args.push_back(listen);
        }
        for (auto& e : extra) args.push_back(e);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);

        int out[2], err[2];
        if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
        if (pipe2(err, O_CLOEXEC) != 0) {
            ::close(out[0]);
            ::close(out[1]);
            throw std::runtime_error("pipe2 failed");
        }
        const pid_t parent = getpid();
        pid_ = fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            // Only async-signal-safe calls until exec (the parent has threads).
            prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
            if (getppid() != parent) _exit(127);
            dup2(out[1], 1);
            dup2(err[1], 2);
            execv(argv[0], argv.data());
            _exit(127);
        }
        ::close(out[1]);
        ::close(err[1]);
        out_fd_ = out[0];
        err_fd_ = err[0];
        reader_ = std::thread([this] { read_loop(); });
    }

    ~child_node() {
        kill_now();
        reap();
        stop_reader_ = true;
        if (reader_.joinable()) reader_.join();
        if (out_fd_ >= 0) ::close(out_fd_);
        if (err_fd_ >= 0) ::close(err_fd_);
    }
    child_node(const child_node&) = delete;
    child_node& operator=(const child_node&) = delete;

    pid_t os_pid() const { return pid_; }

    // Waits for "READY <endpoint> <z85 key>"; false if the child died or the
    // deadline passed first.
    bool wait_ready(std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lk(mu_);
        auto line_ready = [&] {
            auto p = out_.find("READY ");
            return p != std::string::npos && out_.find('\n', p) != std::string::npos;
        };
        cv_.wait_for(lk, timeout, [&] { return line_ready() || out_eof_; });
        if (!line_ready()) return false;
        auto p = out_.find("READY ");
        std::istringstream in(out_.substr(p + 6, out_.find('\n', p) - p - 6));
        std::string z85;
        in >> endpoint >> z85;
        auto k = public_key::from_z85(z85);
        if (!k || endpoint.empty()) return false;
        key = *k;
        return true;
    }

    // Waits until the child's stderr contains `needle`.
    bool wait_stderr(const std::string& needle, std::chrono::milliseconds timeout = 5s) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] { return err_.find(needle) != std::string::npos || err_eof_; }) &&
               err_.find(needle) != std::string::npos;
    }
    std::string stderr_text() {
        std::lock_guard lk(mu_);
        return err_;
    }
    std::size_t count_stderr(const std::string& needle) {
        std::lock_guard lk(mu_);
        std::size_t n = 0;
        for (auto p = err_.find(needle); p != std::string::npos; p = err_.find(needle, p + 1)) ++n;
        return n;
    }

    void signal(int sig) {
        if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
    }
    void kill_now() { signal(SIGKILL); }

    // True while the process has not exited.
    bool running() {
        if (reaped_ || pid_ <= 0) return false;
        int st = 0;
        pid_t r = waitpid(pid_, &st, WNOHANG);
        if (r == pid_) {
            reaped_ = true;
            status_ = st;
            return false;
        }
        return true;
    }

    // Waits for the child to exit (its pipes reach EOF) at most `timeout`;
    // then kills it if needed and reaps it. Returns the wait status.
    int reap(std::chrono::milliseconds timeout = 5s) {
        if (pid_ <= 0 || reaped_) return status_;
        {
            std::unique_lock lk(mu_);
            cv_.wait_for(lk, timeout, [&] { return out_eof_ && err_eof_; });
        }
        if (running()) {
            ::kill(pid_, SIGKILL);
            int st = 0;
            while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {}
            reaped_ = true;
            status_ = st;
        }
        return status_;
    }

private:
    void read_loop() {
        char buf[4096];
        while (!stop_reader_) {
            pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
            bool open_out, open_err;
            {
                std::lock_guard lk(mu_);
                open_out = !out_eof_;
                open_err = !err_eof_;
            }
            if (!open_out && !open_err) return;
            if (!open_out) p[0].fd = -1;
            if (!open_err) p[1].fd = -1;
            int n = ::poll(p, 2, 50);
            if (n <= 0) continue;
            for (int i = 0; i < 2; ++i) {
                if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                ssize_t got = ::read(p[i].fd, buf, sizeof buf);
                std::lock_guard lk(mu_);
                if (got > 0) {
                    (i == 0 ? out_ : err_).append(buf, static_cast<std::size_t>(got));
                } else if (got == 0 || errno != EINTR) {
                    (i == 0 ? out_eof_ : err_eof_) = true;
                }
                cv_.notify_all();
            }
        }
    }

    pid_t pid_ = -1;
    bool reaped_ = false;
    int status_ = 0;
    int out_fd_ = -1, err_fd_ = -1;
    std::thread reader_;
    std::atomic<bool> stop_reader_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    std::string out_, err_;
    bool out_eof_ = false, err_eof_ = false;
};

// Node events with the time each arrived, from node::subscribe_nodes.
struct event_log {
    struct entry {
        node_event ev;
        clock_type::time_point at;
    };
    std::mutex mu;
    std::condition_variable cv;
    std::vector<entry> v;

    void operator()(const node_event& e) {
        std::lock_guard lk(mu);
        v.push_back({e, clock_type::now()});
        cv.notify_all();
    }
    std::size_t size() {
        std::lock_guard lk(mu);
        return v.size();
    }
    // The first event at index >= from for `node` of kind `k`.
    std::optional<entry> wait(std::size_t from, const std::string& node, node_event::kind k,
                              std::chrono::milliseconds timeout) {
        std::unique_lock lk(mu);
        std::optional<entry> found;
        cv.wait_for(lk, timeout, [&] {
            for (std::size_t i = from; i < v.size(); ++i)
                if (v[i].ev.node == node && v[i].ev.what == k) {
                    found = v[i];
                    return true;
                }
            return false;
        });
        return found;
    }
};

node_options opts(const std::string& name, const std::filesystem::path& key_dir, const std::string& cookie = kCookie) {
    node_options o;
    o.name = name;
    o.workers = 2;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = key_dir;
    o.net.cookie = cookie;
    return o;
}

// Starts a child and waits for READY (fails the test with its stderr if not).
void require_ready(child_node& c) {
    bool ok = c.wait_ready(10s);
    INFO("child stderr:\n" << c.stderr_text());
    REQUIRE(ok);
}

message expect(mailbox& mb, const mailbox::predicate& pred, std::chrono::milliseconds timeout = 5000ms) {
    auto r = mb.receive(pred, timeout);
    REQUIRE(r.ok());
    return std::move(*r);
}

std::int64_t stat_of(const term& stats, const char* key) {
    const term* v = stats.lookup(term(key));
    REQUIRE(v != nullptr);
    REQUIRE(v->as_int().has_value());
    return *v->as_int();
}

// Joins a thread at scope exit (also when a REQUIRE throws), after running
// `first` (e.g. killing the child the thread is blocked on).
struct joiner {
    std::thread& t;
    std::function<void()> first;
    ~joiner() {
        if (!t.joinable()) return;
        if (first) first();
        t.join();
    }
};

}  // namespace

TEST_CASE("process: the seeds' walkthroughs across OS processes, then a clean stop", "[dist][process]") {
    temp_dir tmp;
    event_log events;
    node me(opts("tester@localhost", tmp.path / "me"));
    me.subscribe_nodes(std::ref(events));
    child_node child("child@localhost", tmp.path / "child", kCookie);
    require_ready(child);

    auto name = me.connect(child.endpoint, child.key, 5s);
    REQUIRE(name.ok());
    CHECK(*name == "child@localhost");
    auto up = events.wait(0, "child@localhost", node_event::kind::up, 5s);
    REQUIRE(up);
    CHECK(up->ev.info.trust == trust_level::cluster);
    CHECK(me.nodes() == std::vector<std::string>{"child@localhost"});

    // kvs through call: store, then lookup.
    CHECK(me.call("child@localhost", "kvs", "store", arr("weather", "fine"), 5s).value() == term(true));
    CHECK(me.call("child@localhost", "kvs", "lookup", arr("weather"), 5s).value() == arr("ok", "fine"));
    CHECK(me.call("child@localhost", "kvs", "lookup", arr("rain"), 5s).value() == term("undefined"));

    // The echo server spawned on the child: [self, "abc"] comes back as "abc".
    mailbox mb(me);
    auto echo = me.spawn("child@localhost", "echo", "server", arr(), 5s);
    REQUIRE(echo.ok());
    CHECK(echo->node == "child@localhost");
    mb.send(*echo, arr(mb.self(), "abc"));
    CHECK(expect(mb, [](const message& m) { return m.is_user(); }).body == term("abc"));

    // dist_demo: spawn demo:rpc_server on the child, then rpc through it.
    auto server = me.spawn("child@localhost", "demo", "rpc_server", arr(), 5s);
    REQUIRE(server.ok());
    auto r = mb.call(*server, arr("demo", "node", arr()), 5s);
    REQUIRE(r.ok());
    CHECK(*r == term("child@localhost"));
    CHECK(mb.call(*server, arr("kvs", "lookup", arr("weather")), 5s).value() == arr("ok", "fine"));

    // SIGTERM: the child stops cleanly, says goodbye, and we see "shutdown"
    // at once (well before any heartbeat timeout).
    ref mref = mb.monitor(*echo);
    auto t0 = clock_type::now();
    child.signal(SIGTERM);
    auto down = events.wait(0, "child@localhost", node_event::kind::down, 5s);
    REQUIRE(down);
    CHECK(down->ev.reason == "shutdown");
    CHECK(ms_since(t0, down->at) < 2000);
    CHECK(expect(mb, [&](const message& m) { return m.is_down() && m.tag == mref; }).body == term("noconnection"));
    int st = child.reap(5s);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    CHECK(me.nodes().empty());
    std::fprintf(stderr, "[process] SIGTERM -> nodedown(shutdown): %.1f ms\n", ms_since(t0, down->at));
}

TEST_CASE("process: kill -9 of a peer - noconnection, nodedown, then restart and reconnect", "[dist][process]") {
    temp_dir tmp;
    event_log events;
    node me(opts("tester@localhost", tmp.path / "me"));
    me.subscribe_nodes(std::ref(events));
    mailbox watcher(me);
    me.monitor_nodes(watcher.self());
    const auto child_dir = tmp.path / "child";

    std::string endpoint;
    public_key key;
    {
        child_node child("child@localhost", child_dir, kCookie);
        require_ready(child);
        endpoint = child.endpoint;
        key = child.key;
        REQUIRE(me.connect(child.endpoint, child.key, 5s).ok());
        REQUIRE(events.wait(0, "child@localhost", node_event::kind::up, 5s));
        REQUIRE(me.call("child@localhost", "kvs", "store", arr("before", 1), 5s).ok());

        // A monitor on a pid in the child.
        mailbox mb(me);
        auto echo = me.spawn("child@localhost", "echo", "server", arr(), 5s);
        REQUIRE(echo.ok());
        ref mref = mb.monitor(*echo);
        mb.send(*echo, arr(mb.self(), "ping"));  // after the monitor, on the same stream
        CHECK(expect(mb, [](const message& m) { return m.is_user(); }).body == term("ping"));

        // A call that the child parks and never answers.
        std::optional<result<term>> got;
        clock_type::time_point got_at;
        std::thread caller([&] {
            auto r = me.call("child@localhost", "slow", "wait", arr(), 30s);
            got_at = clock_type::now();
            got.emplace(std::move(r));
        });
        joiner j{caller, [&] { child.kill_now(); }};  // on failure: unblock the call at once
        // Wait (with a deadline) until the child really holds the call.
        auto park_deadline = clock_type::now() + 5s;
        std::int64_t parked = 0;
        while (parked < 1 && clock_type::now() < park_deadline) {
            auto p = me.call("child@localhost", "slow", "parked", arr(), 2s);
            REQUIRE(p.ok());
            parked = *p->as_int();
        }
        REQUIRE(parked == 1);

        std::size_t before_kill = events.size();
        auto t0 = clock_type::now();
        child.kill_now();

        // The monitor fires noconnection.
        auto down = expect(mb, [&](const message& m) { return m.is_down() && m.tag == mref; }, 10s);
        auto down_ms = ms_since(t0);
        CHECK(down.body == term("noconnection"));
        CHECK(down.from == *echo);
        CHECK(down_ms < 3500);

        // The pending call fails with nodedown (not timeout), within the bound.
        caller.join();
        REQUIRE(got.has_value());
        CHECK(got->code() == errc::nodedown);
        auto call_ms = ms_since(t0, got_at);
        CHECK(call_ms < 4000);

        // The subscriber gets nodedown with a documented reason, within the bound.
        auto nd = events.wait(before_kill, "child@localhost", node_event::kind::down, 10s);
        REQUIRE(nd);
        auto nd_ms = ms_since(t0, nd->at);
        INFO("nodedown reason: " << nd->ev.reason);
        CHECK((nd->ev.reason == "timeout" || nd->ev.reason == "connection_closed"));
        CHECK(nd_ms < 3500);
        // The same event as a message to monitor_nodes subscribers.
        auto ndm = expect(watcher, [](const message& m) {
            return m.body.at(0) && *m.body.at(0) == term("nodedown");
        });
        CHECK(*ndm.body.at(1) == term("child@localhost"));
        CHECK(*ndm.body.at(2) == term(nd->ev.reason));
        std::fprintf(stderr,
                     "[process] kill -9 -> nodedown(%s): %.1f ms, DOWN noconnection: %.1f ms, "
                     "pending call nodedown: %.1f ms\n",
                     nd->ev.reason.c_str(), nd_ms, down_ms, call_ms);

        int st = child.reap(5s);
        CHECK(WIFSIGNALED(st));
        CHECK(WTERMSIG(st) == SIGKILL);
        CHECK(me.nodes().empty());
        CHECK(me.call("child@localhost", "kvs", "keys", arr(), 5s).code() == errc::nodedown);
        CHECK_FALSE(me.ping("child@localhost", 200ms));
    }

    // Restart with the same key dir, name and endpoint. The test node does not
    // call connect again: its outbound link reconnects by itself.
    std::size_t before_restart = events.size();
    auto t1 = clock_type::now();
    child_node again("child@localhost", child_dir, kCookie, endpoint);
    require_ready(again);
    CHECK(again.endpoint == endpoint);
    CHECK(again.key == key);  // same key dir, same identity
    auto up = events.wait(before_restart, "child@localhost", node_event::kind::up, 10s);
    INFO("child stderr:\n" << again.stderr_text());
    REQUIRE(up);  // automatic reconnect
    std::fprintf(stderr, "[process] restart -> nodeup (automatic reconnect): %.1f ms after exec\n",
                 ms_since(t1, up->at));
    auto upm = expect(watcher, [](const message& m) { return m.body.at(0) && *m.body.at(0) == term("nodeup"); });
    CHECK(*upm.body.at(1) == term("child@localhost"));
    // connect() now just reports the live connection.
    auto again_name = me.connect(endpoint, key, 5s);
    REQUIRE(again_name.ok());
    CHECK(*again_name == "child@localhost");
    // Calls work again, against the new incarnation (fresh kvs, nothing parked).
    CHECK(me.call("child@localhost", "kvs", "lookup", arr("before"), 5s).value() == term("undefined"));
    CHECK(me.call("child@localhost", "kvs", "store", arr("after", 2), 5s).value() == term(true));
    CHECK(me.call("child@localhost", "kvs", "lookup", arr("after"), 5s).value() == arr("ok", 2));
    CHECK(me.call("child@localhost", "slow", "parked", arr(), 5s).value() == term(0));
    CHECK(me.ping("child@localhost"));
}

TEST_CASE("process: a frozen peer (SIGSTOP) is declared down by heartbeat timeout, and comes back", "[dist][process]") {
    temp_dir tmp;
    event_log events;
    node me(opts("tester@localhost", tmp.path / "me"));
    me.subscribe_nodes(std::ref(events));
    child_node child("child@localhost", tmp.path / "child", kCookie);
    require_ready(child);
    REQUIRE(me.connect(child.endpoint, child.key, 5s).ok());
    REQUIRE(events.wait(0, "child@localhost", node_event::kind::up, 5s));

    mailbox mb(me);
    auto echo = me.spawn("child@localhost", "echo", "server", arr(), 5s);
    REQUIRE(echo.ok());
    ref mref = mb.monitor(*echo);
    mb.send(*echo, arr(mb.self(), "ping"));
    CHECK(expect(mb, [](const message& m) { return m.is_user(); }).body == term("ping"));

    std::size_t before = events.size();
    auto t0 = clock_type::now();
    child.signal(SIGSTOP);  // the connection stays open; only heartbeats stop
    auto nd = events.wait(before, "child@localhost", node_event::kind::down, 10s);
    child.signal(SIGCONT);
    REQUIRE(nd);
    auto nd_ms = ms_since(t0, nd->at);
    CHECK(nd->ev.reason == "timeout");
    CHECK(nd_ms >= 2000);  // not before the 2.5 s heartbeat timeout (minus one interval)
    CHECK(nd_ms < 3500);
    CHECK(expect(mb, [&](const message& m) { return m.is_down() && m.tag == mref; }).body == term("noconnection"));
    std::fprintf(stderr, "[process] SIGSTOP -> nodedown(%s): %.1f ms\n", nd->ev.reason.c_str(), nd_ms);

    // Thawed, the child is reached again by the automatic reconnect.
    auto up = events.wait(before, "child@localhost", node_event::kind::up, 10s);
    REQUIRE(up);
    CHECK(me.call("child@localhost", "echo", "echo", arr(5), 5s).value() == term(5));
}

TEST_CASE("process: a wrong cookie and a wrong server key are refused quickly", "[dist][process]") {
    temp_dir tmp;
    node me(opts("tester@localhost", tmp.path / "me"));
    child_node child("child@localhost", tmp.path / "child", "another-cookie");
    require_ready(child);

    auto t0 = clock_type::now();
    auto r = me.connect(child.endpoint, child.key, 5s);
    auto refused_ms = ms_since(t0);
    CHECK(r.code() == errc::unauthorized);
    INFO("refusal: " << (r.ok() ? std::string("none") : r.err().detail));
    CHECK(refused_ms < 4000);
    CHECK(me.nodes().empty());
    CHECK(me.call("child@localhost", "kvs", "keys", arr(), 500ms).code() == errc::nodedown);
    // The child says so too.
    CHECK(child.wait_stderr("refused", 5s));
    std::fprintf(stderr, "[process] wrong cookie refused in %.1f ms\n", refused_ms);

    // A wrong server key (an impostor at that endpoint, from our point of view).
    auto t1 = clock_type::now();
    auto r2 = me.connect(child.endpoint, keypair::generate().pub, 5s);
    auto wrong_key_ms = ms_since(t1);
    CHECK(r2.code() == errc::unauthorized);
    CHECK(wrong_key_ms < 4000);
    std::fprintf(stderr, "[process] wrong server key refused in %.1f ms\n", wrong_key_ms);

    // The child is unharmed and serves a node with the right cookie.
    CHECK(child.running());
    temp_dir tmp2;
    node friend_node(opts("friend@localhost", tmp2.path, "another-cookie"));
    auto ok = friend_node.connect(child.endpoint, child.key, 5s);
    REQUIRE(ok.ok());
    CHECK(friend_node.call("child@localhost", "kvs", "keys", arr(), 5s).value() == arr());
}

namespace {

// A raw kith transport standing in for an authenticated but misbehaving peer.
struct raw_peer {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::string> ups, downs;
    std::map<std::uint64_t, env_reply> replies;
    std::map<std::uint64_t, env_spawn_reply> spawn_replies;
    std::vector<envelope> other;
    std::unique_ptr<detail::transport> t;

    raw_peer(const std::string& name, const std::string& cookie) {
        detail::transport_options o;
        o.node_name = name;
        o.cookie = cookie;
        o.node_keys = keypair::generate();
        detail::transport_callbacks c;
        c.on_peer_up = [this](const std::string& p, const detail::peer_info&) {
            std::lock_guard lk(mu);
            ups.push_back(p);
            cv.notify_all();
        };
        c.on_peer_down = [this](const std::string& p, const std::string& r) {
            std::lock_guard lk(mu);
            downs.push_back(p + ":" + r);
            cv.notify_all();
        };
        c.on_envelopes = [this](const std::string&, const detail::peer_auth&, std::vector<envelope>&& es) {
            std::lock_guard lk(mu);
            for (auto& e : es) {
                if (auto* r = std::get_if<env_reply>(&e))
                    replies[r->req_id] = *r;
                else if (auto* s = std::get_if<env_spawn_reply>(&e))
                    spawn_replies[s->req_id] = *s;
                else
                    other.push_back(e);
            }
            cv.notify_all();
        };
        t = std::make_unique<detail::transport>(std::move(o), std::move(c));
        t->start();
    }
    ~raw_peer() { t->stop(); }

    template <class P>
    bool wait(P pred, std::chrono::milliseconds d = 5s) {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, d, pred);
    }
    // Calls fn on peer with req_id and waits for the reply.
    std::optional<env_reply> call(const std::string& peer, std::uint64_t req, const std::string& svc,
                                  const std::string& fn, term args) {
        env_call c;
        c.req_id = req;
        c.service = svc;
        c.function = fn;
        c.args = std::move(args);
        c.timeout_ms = 5000;
        if (!t->post(peer, envelope{std::move(c)}).ok()) return std::nullopt;
        std::unique_lock lk(mu);
        if (!cv.wait_for(lk, 5s, [&] { return replies.count(req) > 0; })) return std::nullopt;
        return replies.at(req);
    }
};

// A raw libzmq DEALER speaking CURVE with the cluster key: it can send bytes
// that kith's own transport never would.
struct raw_dealer {
    void* ctx = zmq_ctx_new();
    void* s = nullptr;

    raw_dealer(const std::string& ep, const public_key& server, const keypair& client) {
        s = zmq_socket(ctx, ZMQ_DEALER);
        int z = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &z, sizeof z);
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server.bytes.data(), 32);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, client.pub.bytes.data(), 32);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, client.sec.bytes().data(), 32);
        zmq_connect(s, ep.c_str());
    }
    ~raw_dealer() {
        zmq_close(s);
        zmq_ctx_term(ctx);
    }
    void send(const std::string& frame) { zmq_send(s, frame.data(), frame.size(), 0); }
    // Receives frames until one holds an envelope matching pred, at most `timeout`.
    template <class P>
    std::optional<envelope> recv_until(P pred, std::chrono::milliseconds timeout = 5s) {
        auto end = clock_type::now() + timeout;
        while (clock_type::now() < end) {
            zmq_pollitem_t it{s, 0, ZMQ_POLLIN, 0};
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - clock_type::now()).count();
            if (zmq_poll(&it, 1, static_cast<long>(std::max<long long>(left, 1))) <= 0) continue;
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s, 0) < 0) {
                zmq_msg_close(&m);
                continue;
            }
            std::string frame(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
            zmq_msg_close(&m);
            auto envs = decode_frame(frame);
            if (!envs) continue;
            for (auto& e : *envs)
                if (pred(e)) return e;
        }
        return std::nullopt;
    }
};

}  // namespace

TEST_CASE("process: forged envelopes and malformed frames from an authenticated peer are refused and counted",
          "[dist][process]") {
    temp_dir tmp;
    node me(opts("tester@localhost", tmp.path / "me"));
    child_node child("child@localhost", tmp.path / "child", kCookie);
    require_ready(child);
    REQUIRE(me.connect(child.endpoint, child.key, 5s).ok());
    const std::string cn = "child@localhost";

    // A live actor on the child, the target of the forged envelopes.
    mailbox mb(me);
    auto echo = me.spawn(cn, "echo", "server", arr(), 5s);
    REQUIRE(echo.ok());

    // --- a raw kith transport with the cluster cookie: well-formed but invalid envelopes
    raw_peer raw("raw@localhost", kCookie);
    raw.t->connect(child.endpoint, child.key);
    REQUIRE(raw.wait([&] { return !raw.ups.empty(); }));
    CHECK(raw.ups[0] == cn);

    auto base = raw.call(cn, 1, "test", "stats", arr());
    REQUIRE(base);
    REQUIRE(base->code == errc::ok);
    const auto proto0 = stat_of(base->value, "protocol_errors");
    const auto decode0 = stat_of(base->value, "decode_errors");

    const pid mallory{"mallory@localhost", 7};
    const pid mallory2{"mallory@localhost", 9};
    std::vector<envelope> forged;
    // env_send to a pid of another node
    forged.push_back(env_send{pid{"mallory@localhost", 1}, term("to somebody else")});
    // env_call with a forged caller
    {
        env_call c;
        c.req_id = 2;
        c.from = mallory;
        c.service = "kvs";
        c.function = "store";
        c.args = arr("forged", 1);
        c.timeout_ms = 5000;
        forged.push_back(c);
    }
    // env_spawn_request with a forged requester (link + monitor to it)
    {
        env_spawn_request s;
        s.req_id = 3;
        s.from = mallory;
        s.service = "echo";
        s.actor_type = "server";
        s.args = arr();
        s.flags = spawn_link_flag | spawn_monitor_flag;
        s.monitor_ref = ref{"mallory@localhost", 5};
        forged.push_back(s);
    }
    // env_down with a forged "who" aimed at a live local actor
    forged.push_back(env_down{ref{"mallory@localhost", 6}, mallory2, *echo, term("forged")});
    // env_exit from a forged pid: would kill the echo server if accepted
    forged.push_back(env_exit{mallory2, *echo, term("kill"), false});
    // env_link / env_monitor with a forged watcher
    forged.push_back(env_link{mallory2, *echo});
    forged.push_back(env_monitor{mallory2, *echo, ref{"mallory@localhost", 8}});
    // env_request with a forged requester
    forged.push_back(env_request{*echo, mallory2, ref{"mallory@localhost", 10}, arr("x")});
    const auto n_forged = static_cast<std::int64_t>(forged.size());
    REQUIRE(raw.t->post(cn, forged).ok());

    // Envelopes from one peer are handled in order: once this reply is back,
    // every forged envelope above has been judged.
    auto after = raw.call(cn, 4, "test", "stats", arr());
    REQUIRE(after);
    REQUIRE(after->code == errc::ok);
    INFO("child stderr:\n" << child.stderr_text());
    CHECK(stat_of(after->value, "protocol_errors") - proto0 == n_forged);
    CHECK(stat_of(after->value, "decode_errors") == decode0);
    {
        std::lock_guard lk(raw.mu);
        CHECK(raw.spawn_replies.count(3) == 0);  // nothing spawned for the forger
        CHECK(raw.downs.empty());                // the raw peer was not cut off
    }
    CHECK(child.wait_stderr("kith: refused send envelope from raw@localhost"));
    CHECK(child.wait_stderr("kith: refused spawn_request envelope from raw@localhost"));
    CHECK(child.wait_stderr("kith: refused down envelope from raw@localhost"));
    CHECK(child.wait_stderr("kith: refused call envelope from raw@localhost"));
    // The forged call did not run (no reply for it, nothing stored), and the
    // echo server survived the forged exit signal.
    CHECK(me.call(cn, "kvs", "lookup", arr("forged"), 5s).value() == term("undefined"));
    mb.send(*echo, arr(mb.self(), "still here"));
    CHECK(expect(mb, [](const message& m) { return m.is_user(); }).body == term("still here"));
    {
        std::lock_guard lk(raw.mu);
        CHECK(raw.replies.count(2) == 0);
    }

    // --- a raw CURVE DEALER with the cluster key: malformed frames
    raw_dealer rd(child.endpoint, child.key, cluster_keypair(kCookie));
    rd.send(encode_frame(env_handshake{protocol_version, "rawz@localhost", 99, {}, false}));
    REQUIRE(rd.recv_until([](const envelope& e) { return std::holds_alternative<env_handshake>(e); }));
    rd.send(std::string("\x01\xff garbage that is not a kith frame", 34));
    std::string truncated = encode_frame(env_send{*echo, term(std::string(64, 'x'))});
    truncated.resize(truncated.size() - 10);
    rd.send(truncated);
    {
        env_spawn_request s;  // flag bits the protocol reserves: rejected by the decoder
        s.req_id = 8;
        s.service = "echo";
        s.actor_type = "server";
        s.args = arr();
        s.flags = 0x80;
        rd.send(encode_frame(s));
    }
    rd.send(encode_frame(env_handshake{protocol_version, "rawz@localhost", 99, {}, false}));  // a second handshake
    rd.send(encode_frame(env_call{5, pid{}, "test", "stats", arr(), 5000}));
    auto rep = rd.recv_until([](const envelope& e) {
        auto* r = std::get_if<env_reply>(&e);
        return r && r->req_id == 5;
    });
    REQUIRE(rep);
    const auto& stats = std::get<env_reply>(*rep);
    REQUIRE(stats.code == errc::ok);
    CHECK(stat_of(stats.value, "decode_errors") - decode0 == 3);
    CHECK(stat_of(stats.value, "protocol_errors") - proto0 == n_forged + 1);

    // The child is alive and serving, on every connection.
    CHECK(child.running());
    CHECK(me.call(cn, "kvs", "store", arr("k", 1), 5s).value() == term(true));
    CHECK(me.call(cn, "kvs", "lookup", arr("k"), 5s).value() == arr("ok", 1));
    auto last = raw.call(cn, 6, "echo", "echo", arr("fine"));
    REQUIRE(last);
    CHECK(last->value == term("fine"));
    CHECK(me.nodes() == std::vector<std::string>{cn});
}
