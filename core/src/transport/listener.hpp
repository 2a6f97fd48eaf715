// listener.hpp (private to transport/) — one of a node's listening ROUTERs.
// A node has two (docs/security.md, "The member port"):
//   public  the endpoint everybody dials: members, grantees, strangers. Its
//           ZAP route asks the node's authorizer; its ZeroMQ I/O thread is
//           the public one (public_io_affinity); it is read last in a turn
//           and, while non-members' read budget is spent, not at all (its
//           small RCVHWM then makes TCP push back on the senders, so libzmq
//           stops reading and decrypting their frames).
//   member  admits only the cluster key at ZAP (zap_handler members_only);
//           its own I/O thread (member_io_affinity); read first in a turn.
// Inbound links are keyed in `ins` by the listener's tag and the routing id
// (link::rid = tag + id): two ROUTERs' routing ids may be equal.
#pragma once

#include <zmq.hpp>

#include "transport/source_guard.hpp"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

namespace kith::detail {

// Reads one socket-monitor event (two frames: 16-bit event + 32-bit value,
// then the endpoint) without blocking; nullopt when none is waiting. Throws
// zmq::error_t on a failed read.
inline std::optional<std::pair<std::uint16_t, std::uint32_t>> read_monitor_event(zmq::socket_ref mon) {
    zmq::message_t a, b;
    if (!mon.recv(a, zmq::recv_flags::dontwait)) return std::nullopt;
    // The second frame is queued with the first (one message of two parts).
    if (a.more() && !mon.recv(b, zmq::recv_flags::dontwait)) return std::nullopt;
    std::uint16_t ev = 0;
    std::uint32_t val = 0;
    if (a.size() >= 6) {
        std::memcpy(&ev, a.data(), 2);
        std::memcpy(&val, a.data<char>() + 2, 4);
    }
    return std::make_pair(ev, val);
}

struct listener {
    char tag = 'p';            // 'p' public, 'm' member
    std::uint64_t affinity = 0;
    std::string zap_route;     // this socket's ZAP domain ("kith/<n>")
    zmq::socket_t router;      // empty when there is no such listener
    zmq::socket_t mon;         // its monitor (PAIR)
    std::string bound;         // the bound endpoint, real port
    // The listening socket's own fd (from ZMQ_EVENT_LISTENING; libzmq owns
    // it, open until close_listener unbinds), where `guard`'s filter goes;
    // -1 when unknown (the guard then only counts).
    int listen_fd = -1;
    std::uint16_t port = 0;    // the bound TCP port (0: not TCP)
    source_guard guard;        // connections accepted per source address
    bool filtered = false;     // a filter was installed (accepted sockets copy it: they drop their copy)
    bool is_member() const noexcept { return tag == 'm'; }
};

// The endpoint of `ep` ("tcp://host:port") with another port; empty if `ep`
// has no port.
inline std::string with_port(const std::string& ep, const std::string& port) {
    auto colon = ep.rfind(':');
    if (colon == std::string::npos || ep.rfind("tcp://", 0) != 0 || colon < 6) return {};
    return ep.substr(0, colon + 1) + port;
}

}  // namespace kith::detail
