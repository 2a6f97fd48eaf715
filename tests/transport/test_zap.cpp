// The ZAP decision (zap.hpp): cluster key, authorizer verdicts, malformed requests.
#include <zmq.h>

#include <cstring>
#include <mutex>
#include <vector>

#include "kith_catch.hpp"
#include "transport/context.hpp"
#include "transport/zap.hpp"

using namespace kith;
using namespace kith::detail;

static zap_request curve_request(const public_key& k) {
    zap_request r;
    r.version = "1.0";
    r.request_id = "1";
    r.domain = "kith";
    r.address = "127.0.0.1";
    r.mechanism = "CURVE";
    r.credentials.emplace_back(reinterpret_cast<const char*>(k.bytes.data()), 32);
    return r;
}

TEST_CASE("zap: the cluster key is accepted as 'cluster' - any other key is refused by default") {
    keypair cluster = cluster_keypair("cookie");
    auto ok = zap_decide(curve_request(cluster.pub), cluster.pub, {});
    CHECK(ok.accepted);
    CHECK(ok.user_id == "cluster");
    auto no = zap_decide(curve_request(keypair::generate().pub), cluster.pub, {});
    CHECK_FALSE(no.accepted);
    CHECK(no.reason.find("unknown key") != std::string::npos);
    // A node with another cookie presents another cluster key.
    CHECK_FALSE(zap_decide(curve_request(cluster_keypair("other").pub), cluster.pub, {}).accepted);
}

TEST_CASE("zap: the authorizer decides for non-cluster keys") {
    keypair cluster = cluster_keypair("cookie");
    keypair bob = keypair::generate(), eve = keypair::generate(), sam = keypair::generate();
    authorizer a = [&](const public_key& k, std::string_view) {
        if (k == bob.pub) return authz_decision::grant("bob-kvs");
        if (k == sam.pub) return authz_decision::stranger();
        return authz_decision::refuse("no grant");
    };
    auto g = zap_decide(curve_request(bob.pub), cluster.pub, a);
    CHECK(g.accepted);
    CHECK(g.user_id == "grant:bob-kvs");
    auto s = zap_decide(curve_request(sam.pub), cluster.pub, a);
    CHECK(s.accepted);
    CHECK(s.user_id == "stranger:" + sam.pub.z85());
    auto r = zap_decide(curve_request(eve.pub), cluster.pub, a);
    CHECK_FALSE(r.accepted);
    CHECK(r.reason == "no grant");
    authorizer thrower = [](const public_key&, std::string_view) -> authz_decision { throw 1; };
    CHECK_FALSE(zap_decide(curve_request(bob.pub), cluster.pub, thrower).accepted);
}

TEST_CASE("zap: the member port's handler admits the cluster key only, whatever its authorizer says") {
    keypair cluster = cluster_keypair("cookie");
    keypair bob = keypair::generate();
    zap_handler h(cluster.pub, {}, "n@h", true);
    int asked = 0;
    h.set_authorizer([&](const public_key&, std::string_view) {
        ++asked;
        return authz_decision::grant("bob-kvs");
    });
    auto ok = h.decide_without_authorizer(curve_request(cluster.pub));
    REQUIRE(ok.has_value());
    CHECK(ok->accepted);
    CHECK(ok->user_id == "cluster");
    // Decided on the ZAP thread: never passed to the authorizer's worker.
    auto no = h.decide_without_authorizer(curve_request(bob.pub));
    REQUIRE(no.has_value());
    CHECK_FALSE(no->accepted);
    CHECK(no->reason == member_port_refusal);
    CHECK(h.decide(curve_request(bob.pub)).reason == member_port_refusal);
    CHECK(h.check(bob.pub, "").verdict == authz_decision::kind::refuse);
    CHECK(asked == 0);
    CHECK_FALSE(h.decide(curve_request(cluster_keypair("other").pub)).accepted);
}

TEST_CASE("zap: malformed or foreign requests are refused") {
    keypair cluster = cluster_keypair("cookie");
    auto r = curve_request(cluster.pub);
    r.domain = "other";
    CHECK_FALSE(zap_decide(r, cluster.pub, {}).accepted);
    r = curve_request(cluster.pub);
    r.mechanism = "NULL";
    r.credentials.clear();
    CHECK_FALSE(zap_decide(r, cluster.pub, {}).accepted);
    r = curve_request(cluster.pub);
    r.version = "2.0";
    CHECK_FALSE(zap_decide(r, cluster.pub, {}).accepted);
    r = curve_request(cluster.pub);
    r.credentials[0].resize(31);
    CHECK_FALSE(zap_decide(r, cluster.pub, {}).accepted);
    CHECK_FALSE(zap_decide(zap_request{}, cluster.pub, {}).accepted);
}

// The process's ZAP thread (context.hpp), spoken to as libzmq does: a REQ
// socket at inproc://zeromq.zap.01 in the shared context.
namespace {
struct zap_client {
    std::shared_ptr<shared_context> ctx = shared_context::acquire();
    void* req = zmq_socket(ctx->get(), ZMQ_REQ);
    zap_client() {
        int zero = 0, relaxed = 1, corr = 1;
        zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof zero);
        // A paused route never answers: let the next request go out anyway.
        zmq_setsockopt(req, ZMQ_REQ_RELAXED, &relaxed, sizeof relaxed);
        zmq_setsockopt(req, ZMQ_REQ_CORRELATE, &corr, sizeof corr);
        zmq_connect(req, "inproc://zeromq.zap.01");
    }
    ~zap_client() { zmq_close(req); }
    // Sends `r`; returns the reply's frames, or nothing if none came in time.
    std::vector<std::string> ask(const zap_request& r, int wait_ms = 5000) {
        std::vector<std::string> parts = {r.version, r.request_id, r.domain, r.address, r.identity, r.mechanism};
        parts.insert(parts.end(), r.credentials.begin(), r.credentials.end());
        for (std::size_t i = 0; i < parts.size(); ++i)
            zmq_send(req, parts[i].data(), parts[i].size(), i + 1 < parts.size() ? ZMQ_SNDMORE : 0);
        zmq_pollitem_t item{req, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, wait_ms) <= 0) return {};
        std::vector<std::string> out;
        for (;;) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, req, 0) < 0) break;
            out.emplace_back(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
            bool more = zmq_msg_more(&m);
            zmq_msg_close(&m);
            if (!more) break;
        }
        return out;
    }
};
}  // namespace

TEST_CASE("zap: the process's handler routes by domain, refuses unknown domains, and ends a route") {
    keypair cluster = cluster_keypair("cookie");
    zap_handler h(cluster.pub);
    zap_client c;
    std::vector<zap_outcome> reported;
    std::mutex mu;
    std::string domain = c.ctx->add_route(h, [&](const zap_outcome& o) {
        std::lock_guard lk(mu);
        reported.push_back(o);
    });
    CHECK(domain.rfind("kith/", 0) == 0);
    auto r = curve_request(cluster.pub);
    r.domain = domain;
    auto ok = c.ask(r);
    REQUIRE(ok.size() == 6);
    CHECK(ok[2] == "200");
    CHECK(ok[4] == "cluster");
    r.domain = "kith/unknown";
    auto unknown = c.ask(r);
    REQUIRE(unknown.size() == 6);
    CHECK(unknown[2] == "400");
    {
        std::lock_guard lk(mu);
        REQUIRE(reported.size() == 1);  // only the routed request reaches its node
        CHECK(reported[0].accepted);
    }
    // Paused (a frozen node): no answer at all.
    c.ctx->pause_route(domain, true);
    r.domain = domain;
    CHECK(c.ask(r, 300).empty());
    c.ctx->pause_route(domain, false);
    auto again = c.ask(r);
    REQUIRE(again.size() == 6);
    CHECK(again[2] == "200");
    // Removed (a node stopping, whose ROUTER may still finish a handshake
    // it accepted): no answer, never a refusal, which would tell the peer
    // its key is wrong and stop its redials to the node's next start; and
    // its report is never called again.
    c.ctx->remove_route(domain);
    CHECK(c.ask(r, 300).empty());
    // A domain of the same form never given out is still refused.
    r.domain = "kith/" + std::to_string(c.ctx->unique() + 1000);
    auto never = c.ask(r);
    REQUIRE(never.size() == 6);
    CHECK(never[2] == "400");
    r.domain = "kith/";
    auto empty_number = c.ask(r);
    REQUIRE(empty_number.size() == 6);
    CHECK(empty_number[2] == "400");
    std::lock_guard lk(mu);
    CHECK(reported.size() == 2);
}
