// A raw libzmq DEALER with a monitor, for clients kith would never build
// (the transport tests' adversaries).
#pragma once

#include <zmq.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>

#include "kith/keys.hpp"

namespace kt {

using kith::keypair;
using kith::public_key;

struct raw_client {
    void* ctx = zmq_ctx_new();
    void* s = nullptr;
    void* mon = nullptr;

    raw_client(const std::string& ep, const public_key* server, const keypair* client) {
        s = zmq_socket(ctx, ZMQ_DEALER);
        int z = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &z, sizeof z);
        if (server) {
            zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server->bytes.data(), 32);
            zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, client->pub.bytes.data(), 32);
            zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, client->sec.bytes().data(), 32);
        }
        zmq_socket_monitor(s, "inproc://raw-mon", ZMQ_EVENT_ALL);
        mon = zmq_socket(ctx, ZMQ_PAIR);
        zmq_setsockopt(mon, ZMQ_LINGER, &z, sizeof z);
        zmq_connect(mon, "inproc://raw-mon");
        zmq_connect(s, ep.c_str());
    }
    ~raw_client() {
        zmq_socket_monitor(s, nullptr, 0);
        zmq_close(mon);
        zmq_close(s);
        zmq_ctx_term(ctx);
    }
    void send(const std::string& frame) { zmq_send(s, frame.data(), frame.size(), 0); }
    // Waits for a monitor event in `mask`; returns it (0 on timeout).
    std::uint16_t wait_event(int mask, int timeout_ms = 5000) {
        auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (std::chrono::steady_clock::now() < end) {
            zmq_pollitem_t it{mon, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&it, 1, 50) <= 0) continue;
            zmq_msg_t a, b;
            zmq_msg_init(&a);
            zmq_msg_init(&b);
            zmq_msg_recv(&a, mon, 0);
            zmq_msg_recv(&b, mon, 0);
            std::uint16_t ev;
            std::memcpy(&ev, zmq_msg_data(&a), 2);
            zmq_msg_close(&a);
            zmq_msg_close(&b);
            if (ev & mask) return ev;
        }
        return 0;
    }
    // The next message, waiting at most timeout_ms.
    std::optional<std::string> recv(int timeout_ms = 5000) {
        zmq_pollitem_t it{s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, timeout_ms) <= 0) return std::nullopt;
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            return std::nullopt;
        }
        std::string out(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
        zmq_msg_close(&m);
        return out;
    }
};

}  // namespace kt
