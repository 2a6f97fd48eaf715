// Raw libzmq baseline on loopback TCP (group "zmq_baseline"): DEALER -> ROUTER
// with the same CURVE setup as kith (CURVE server, ZAP domain enforced, a ZAP
// handler answering), one ZeroMQ message per 32-byte payload; plus the same
// without CURVE for reference. And (group "transport") kith's batching
// transport between two nodes in one process.
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "transport/transport.hpp"
#include "bench.hpp"

namespace {

using clk = std::chrono::steady_clock;

void set_int(void* s, int opt, int v) { zmq_setsockopt(s, opt, &v, sizeof v); }

// A ZAP handler that accepts every CURVE client (the cost of a ZAP round trip
// is per connection, not per message; this only makes the setup kith's).
struct zap_thread {
    void* rep;
    std::thread th;
    explicit zap_thread(void* ctx) {
        rep = zmq_socket(ctx, ZMQ_REP);
        set_int(rep, ZMQ_LINGER, 0);
        zmq_bind(rep, "inproc://zeromq.zap.01");
        th = std::thread([this] {
            for (;;) {
                std::vector<std::string> parts;
                bool more = true;
                while (more) {
                    zmq_msg_t m;
                    zmq_msg_init(&m);
                    if (zmq_msg_recv(&m, rep, 0) < 0) {
                        zmq_msg_close(&m);
                        zmq_close(rep);
                        return;
                    }
                    parts.emplace_back(static_cast<char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
                    more = zmq_msg_more(&m);
                    zmq_msg_close(&m);
                }
                std::string id = parts.size() > 1 ? parts[1] : "";
                zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
                zmq_send(rep, id.data(), id.size(), ZMQ_SNDMORE);
                zmq_send(rep, "200", 3, ZMQ_SNDMORE);
                zmq_send(rep, "OK", 2, ZMQ_SNDMORE);
                zmq_send(rep, "bench", 5, ZMQ_SNDMORE);
                zmq_send(rep, "", 0, 0);
            }
        });
    }
};

struct pair_setup {
    void* ctx = zmq_ctx_new();
    zap_thread* zap = nullptr;
    void* router = nullptr;
    void* dealer = nullptr;

    explicit pair_setup(bool curve) {
        if (curve) zap = new zap_thread(ctx);
        router = zmq_socket(ctx, ZMQ_ROUTER);
        dealer = zmq_socket(ctx, ZMQ_DEALER);
        for (void* s : {router, dealer}) {
            set_int(s, ZMQ_LINGER, 0);
            set_int(s, ZMQ_SNDHWM, 100000);
            set_int(s, ZMQ_RCVHWM, 100000);
        }
        if (curve) {
            char spub[41], ssec[41], cpub[41], csec[41];
            zmq_curve_keypair(spub, ssec);
            zmq_curve_keypair(cpub, csec);
            set_int(router, ZMQ_CURVE_SERVER, 1);
            zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, ssec, 40);
            zmq_setsockopt(router, ZMQ_ZAP_DOMAIN, "kith", 4);
            set_int(router, 93 /* ZMQ_ZAP_ENFORCE_DOMAIN */, 1);
            zmq_setsockopt(dealer, ZMQ_CURVE_SERVERKEY, spub, 40);
            zmq_setsockopt(dealer, ZMQ_CURVE_PUBLICKEY, cpub, 40);
            zmq_setsockopt(dealer, ZMQ_CURVE_SECRETKEY, csec, 40);
        }
        zmq_setsockopt(dealer, ZMQ_ROUTING_ID, "client", 6);
        zmq_bind(router, "tcp://127.0.0.1:0");
        char ep[256];
        size_t len = sizeof ep;
        zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, ep, &len);
        zmq_connect(dealer, ep);
    }
    ~pair_setup() {
        zmq_close(router);
        zmq_close(dealer);
        zmq_ctx_term(ctx);  // ends the ZAP thread's recv with ETERM
        if (zap) {
            zap->th.join();
            delete zap;
        }
    }
};

// Round trips of 32-byte messages; returns sorted latencies in microseconds.
std::vector<double> pingpong(bool curve, int n) {
    pair_setup p(curve);
    std::thread echo([&] {
        char id[256], buf[64];
        for (int i = 0; i < n + 1000; ++i) {
            int il = zmq_recv(p.router, id, sizeof id, 0);
            int bl = zmq_recv(p.router, buf, sizeof buf, 0);
            if (il < 0 || bl < 0) return;
            zmq_send(p.router, id, il, ZMQ_SNDMORE);
            zmq_send(p.router, buf, bl, 0);
        }
    });
    char msg[32] = {0}, buf[64];
    std::vector<double> us;
    us.reserve(n);
    for (int i = 0; i < n + 1000; ++i) {
        auto t0 = clk::now();
        zmq_send(p.dealer, msg, sizeof msg, 0);
        zmq_recv(p.dealer, buf, sizeof buf, 0);
        if (i >= 1000) us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
    }
    echo.join();
    std::sort(us.begin(), us.end());
    return us;
}

// One-way 32-byte messages, one ZeroMQ message each; returns msgs/s.
double oneway(bool curve, int n) {
    pair_setup p(curve);
    // Warm up: the connection (and the CURVE handshake) is done before timing.
    char msg[32] = {0};
    zmq_send(p.dealer, msg, sizeof msg, 0);
    char id[256], buf[64];
    zmq_recv(p.router, id, sizeof id, 0);
    zmq_recv(p.router, buf, sizeof buf, 0);
    std::atomic<bool> go{false};
    clk::time_point end;
    std::thread rx([&] {
        go = true;
        for (int i = 0; i < n; ++i) {
            zmq_recv(p.router, id, sizeof id, 0);
            zmq_recv(p.router, buf, sizeof buf, 0);
        }
        end = clk::now();
    });
    while (!go) std::this_thread::yield();
    auto t0 = clk::now();
    for (int i = 0; i < n; ++i) zmq_send(p.dealer, msg, sizeof msg, 0);
    rx.join();
    return n / std::chrono::duration<double>(end - t0).count();
}

}  // namespace

KITH_BENCH_GROUP("zmq_baseline", 1) {
    auto c = pingpong(true, 20000);
    kith::bench::report("zmq_curve_pingpong_p50_us", c[c.size() / 2], "us");
    kith::bench::report("zmq_curve_pingpong_p99_us", c[c.size() * 99 / 100], "us");
    kith::bench::report("zmq_curve_oneway_msgs_per_s", oneway(true, 600000), "msgs/s");
    kith::bench::report("zmq_plain_oneway_msgs_per_s", oneway(false, 3000000), "msgs/s");
}

// kith's transport: two nodes in one process, envelopes (env_send carrying a
// 32-byte binary) posted from one thread, batched, counted on arrival.
KITH_BENCH_GROUP("transport", 20) {
    using namespace kith;
    using namespace kith::detail;
    std::atomic<std::uint64_t> got{0};
    std::atomic<int> ups{0};
    auto make = [&](const std::string& name, bool count) {
        transport_options o;
        o.node_name = name;
        o.cookie = "bench-cookie";
        o.node_keys = keypair::generate();
        transport_callbacks cb;
        cb.on_peer_up = [&](const std::string&, const peer_info&) { ups++; };
        if (count)
            cb.on_envelopes = [&](const std::string&, const peer_auth&, std::vector<envelope>&& es) {
                got += es.size();
            };
        auto t = std::make_unique<transport>(std::move(o), std::move(cb));
        t->start();
        return t;
    };
    auto a = make("a@bench", false);
    auto b = make("b@bench", true);
    a->connect(b->endpoint(), b->key());
    while (ups < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const int n = 3000000;
    std::vector<std::uint8_t> payload(32, 0xab);
    envelope e = env_send{pid{"b@bench", 1}, term(binary(payload))};
    auto t0 = clk::now();
    for (int i = 0; i < n; ++i)
        while (!a->post("b@bench", e).ok()) std::this_thread::yield();
    while (got < static_cast<std::uint64_t>(n)) std::this_thread::yield();
    double secs = std::chrono::duration<double>(clk::now() - t0).count();
    auto st = a->stats();
    kith::bench::report("transport_oneway_envelopes_per_s", n / secs, "envelopes/s");
    kith::bench::report("transport_envelopes_per_frame", double(st.envelopes_out) / std::max<double>(1, st.frames_out),
                        "envelopes");
    double base = kith::bench::figure("zmq_curve_oneway_msgs_per_s");
    if (base > 0) kith::bench::report("transport_oneway_vs_zmq_curve", n / secs / base, "x");
    b->stop();
    a->stop();
}
