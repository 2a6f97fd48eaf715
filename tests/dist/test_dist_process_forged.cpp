// An authenticated peer that misbehaves: forged envelopes and malformed
// frames from a raw transport and a raw CURVE DEALER against a
// kith_test_node child are counted and refused; the child carries on.

#include "process_support.hpp"

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
    CHECK(child.wait_stderr("warning: refused send envelope from raw@localhost"));
    CHECK(child.wait_stderr("warning: refused spawn_request envelope from raw@localhost"));
    CHECK(child.wait_stderr("warning: refused down envelope from raw@localhost"));
    CHECK(child.wait_stderr("warning: refused call envelope from raw@localhost"));
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
