// One sample of every envelope type, shared by the codec tests. The values
// match the golden vectors in docs/protocol.md.
#pragma once

#include <string>
#include <vector>

#include "kith/envelope.hpp"

namespace kith::test {

inline pid P(std::uint64_t n) { return pid{"a@h", n}; }
inline ref R(std::uint64_t n) { return ref{"a@h", n}; }

// Named samples, in env_type order; the names are the golden vector names.
inline std::vector<std::pair<std::string, envelope>> sample_envelopes() {
    return {
        {"handshake", env_handshake{2, "a@h", 1700000000000ull, {"kvs"}, false, "",
                                   std::string("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f", 16), "",
                                   4370, 4371}},
        {"send", env_send{P(42), arr("hi", 1)}},
        {"send_named", env_send_named{"kvs", arr("get", "k")}},
        {"spawn_request", env_spawn_request{7, P(5), "kvs", "worker", arr(1), spawn_monitor_flag, R(3)}},
        {"spawn_reply", env_spawn_reply{7, errc::ok, P(9), ""}},
        {"call", env_call{8, P(5), "kvs", "get", arr("k"), 5000}},
        {"cast", env_cast{"kvs", "put", arr("k", 2)}},
        {"reply", env_reply{8, errc::no_such_function, term("get")}},
        {"monitor", env_monitor{P(5), P(9), R(4)}},
        {"demonitor", env_demonitor{P(5), P(9), R(4)}},
        {"down", env_down{R(4), P(9), P(5), term("normal")}},
        {"link", env_link{P(5), P(9)}},
        {"unlink", env_unlink{P(5), P(9)}},
        {"exit", env_exit{P(9), P(5), term("kill"), true}},
        {"heartbeat", env_heartbeat{3, true}},
        {"goodbye", env_goodbye{"shutdown"}},
        {"request", env_request{P(9), P(5), R(6), arr("ping")}},
        {"response", env_response{P(5), R(6), errc::ok, term("pong")}},
        {"fragment", env_fragment{7, 4096, 4099, "abc"}},
        {"credit", env_credit{4096}},
        {"move", env_move{std::string("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f", 16)}},
        {"move_ack", env_move_ack{true}},
    };
}

inline std::string to_hex(std::string_view s) {
    static const char* d = "0123456789abcdef";
    std::string h;
    for (unsigned char c : s) {
        h += d[c >> 4];
        h += d[c & 15];
    }
    return h;
}

inline std::string from_hex(std::string_view h) {
    std::string out;
    auto nib = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    int hi = -1;
    for (char c : h) {
        int v = nib(c);
        if (v < 0) continue;  // whitespace
        if (hi < 0) hi = v;
        else {
            out += static_cast<char>(hi * 16 + v);
            hi = -1;
        }
    }
    return out;
}

}  // namespace kith::test
