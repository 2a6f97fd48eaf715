// A raw member node for the dialler's side of the protocol: two CURVE
// ROUTERs (a public port and a member port) with one node key, answering
// handshakes as a member of cluster `cookie` would (the membership proof,
// the member port stated) and otherwise doing only what the test says:
// answer a `move` or not, read what each port receives, credit fragments.
// It lets a test hold the listener's side still at a chosen step, which a
// real transport cannot be made to do. It sends no heartbeats: give the
// dialler a heartbeat_timeout longer than the test.
#pragma once

#include <zmq.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "auth/identity.hpp"
#include "kith/envelope.hpp"
#include "kith/keys.hpp"

namespace kt {

struct raw_listener {
    struct port {
        void* s = nullptr;
        std::string endpoint;
        std::uint16_t number = 0;
    };
    std::string name;
    std::string cookie;
    kith::keypair key = kith::keypair::generate();
    void* ctx = zmq_ctx_new();
    port pub, mem;

    raw_listener(std::string node_name, std::string cluster_cookie)
        : name(std::move(node_name)), cookie(std::move(cluster_cookie)) {
        for (port* p : {&pub, &mem}) {
            p->s = zmq_socket(ctx, ZMQ_ROUTER);
            int one = 1, zero = 0;
            zmq_setsockopt(p->s, ZMQ_CURVE_SERVER, &one, sizeof one);
            zmq_setsockopt(p->s, ZMQ_CURVE_SECRETKEY, key.sec.bytes().data(), 32);
            zmq_setsockopt(p->s, ZMQ_LINGER, &zero, sizeof zero);
            char ep[256];
            std::size_t n = sizeof ep;
            if (zmq_bind(p->s, "tcp://127.0.0.1:0") != 0 || zmq_getsockopt(p->s, ZMQ_LAST_ENDPOINT, ep, &n) != 0)
                continue;  // ok() is false
            p->endpoint = ep;
            p->number = static_cast<std::uint16_t>(std::stoi(p->endpoint.substr(p->endpoint.rfind(':') + 1)));
        }
    }
    raw_listener(const raw_listener&) = delete;
    raw_listener& operator=(const raw_listener&) = delete;
    // Both ports bound.
    bool ok() const { return pub.number != 0 && mem.number != 0; }
    ~raw_listener() {
        zmq_close(pub.s);
        zmq_close(mem.s);
        zmq_ctx_term(ctx);
    }

    // One message from `p`: the connection's routing id and its frame, or
    // nothing within timeout_ms.
    std::optional<std::pair<std::string, std::string>> recv(port& p, int timeout_ms = 5000) {
        zmq_pollitem_t it{p.s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, timeout_ms) <= 0) return std::nullopt;
        std::string parts[2];
        for (auto& part : parts) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, p.s, 0) < 0) {
                zmq_msg_close(&m);
                return std::nullopt;
            }
            part.assign(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
            zmq_msg_close(&m);
        }
        return std::pair{std::move(parts[0]), std::move(parts[1])};
    }
    // The envelopes of a frame from `p` (empty: none came, or it did not decode).
    std::vector<kith::envelope> recv_envelopes(port& p, std::string* rid = nullptr, int timeout_ms = 5000) {
        auto m = recv(p, timeout_ms);
        if (!m) return {};
        if (rid) *rid = m->first;
        auto d = kith::decode_frame(m->second, kith::frame_limits{});
        return d.ok() ? std::move(d.value()) : std::vector<kith::envelope>{};
    }
    void send(port& p, const std::string& rid, const kith::envelope& e) {
        const std::string f = kith::encode_frame(e);
        zmq_send(p.s, rid.data(), rid.size(), ZMQ_SNDMORE);
        zmq_send(p.s, f.data(), f.size(), 0);
    }

    // Reads a member's handshake on `p` and answers it as node `name`
    // (creation 1) with the proof of the cookie; returns the link's routing
    // id (empty if no handshake came).
    std::string accept_member(port& p) {
        std::string rid;
        auto es = recv_envelopes(p, &rid);
        if (es.empty() || !std::holds_alternative<kith::env_handshake>(es[0])) return {};
        const auto& theirs = std::get<kith::env_handshake>(es[0]);
        kith::env_handshake ours;
        ours.node = name;
        ours.creation = 1;
        ours.key = key.pub.z85();
        ours.nonce = kith::detail::auth::fresh_nonce();
        ours.proof = kith::detail::auth::member_proof(kith::derive_cookie_key(cookie, kith::detail::auth::proof_purpose), key.pub,
                                              kith::cluster_keypair(cookie).pub, theirs.nonce);
        ours.port = pub.number;
        ours.member_port = mem.number;
        send(p, rid, ours);
        return rid;
    }
};

}  // namespace kt
