// listeners.cpp — opening and closing a node's listening ROUTERs, the
// public port and the member port (listener.hpp, docs/security.md "The
// member port").
#include <cerrno>
#include <cstdlib>

#include "transport/transport_impl.hpp"

namespace kith::detail {

void transport::impl::open_listener(listener& L, const std::string& endpoint, zap_handler& h) {
    const std::string what = L.is_member() ? "member port" : "public port";
    // Fail closed, step 1: the listener's ZAP route exists before its ROUTER
    // does, and is removed only after the ROUTER is closed.
    // Connections per address are rationed on TCP ports (listener.hpp);
    // the guard is the I/O thread's, the ZAP thread only queues addresses.
    if (!(o.conns_per_address_per_s >= 0 && o.conns_per_address_per_s <= 1e6) ||
        (o.conns_per_address_per_s > 0 && !(o.conns_per_address_burst >= 1 && o.conns_per_address_burst <= 1e6)))
        fail_start("kith: conns_per_address_per_s must be 0 (unlimited) to 1000000 and conns_per_address_burst 1 to "
                   "1000000 (got " + std::to_string(o.conns_per_address_per_s) + " and " +
                   std::to_string(o.conns_per_address_burst) + ")");
    const bool ration = o.conns_per_address_per_s > 0 && endpoint.rfind("tcp://", 0) == 0;
    L.guard = ration ? source_guard(o.conns_per_address_per_s, o.conns_per_address_burst) : source_guard();
    L.guard.set_memory_budget(source_guard::default_memory_budget());
    L.zap_route = shared->add_route(h, [this, &L, ration](const zap_outcome& out) {
        // Every handshake's address is charged to its source, but a
        // member's (the cluster key: nothing to gain by throttling it).
        if (out.accepted && (!ration || out.user_id == "cluster")) return;
        {
            std::lock_guard lk(refused_mu);
            if (ration && out.user_id != "cluster" && zap_sources.size() < 4096) zap_sources.emplace_back(&L, out.address);
            if (!out.accepted) {
                if (refused.size() < 1024) refused.push_back(out);  // bounded: a flood is counted, not stored
                refused_inbound++;
            }
        }
        refused_pending.store(true);
        wake();
    });
    try {
        L.router = zmq::socket_t(*ctx, zmq::socket_type::router);
        apply_common_options(L.router);
        // Its connections' engines (CURVE, recv) run on this I/O thread.
        L.router.set(zmq::sockopt::affinity, L.affinity);
        // The public port: a few messages per connection wait for kith, so
        // that when kith stops reading it (the non-members' budget is spent)
        // libzmq soon stops reading and decrypting too (TCP pushes back).
        if (!L.is_member()) L.router.set(zmq::sockopt::rcvhwm, std::min(o.rcvhwm, o.public_rcvhwm));
        L.router.set(zmq::sockopt::curve_server, true);
        L.router.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(self.keys_.sec.bytes().data(), 32));
        L.router.set(zmq::sockopt::zap_domain, L.zap_route);
    } catch (const zmq::error_t& e) {
        fail_start("kith: cannot set up the " + what + " socket: " + e.what() +
                   " (out of file descriptors or ZeroMQ sockets? see the open-file limit)");
    }
    // Fail closed, step 2: without a ZAP answer, refuse (libzmq accepts
    // every key when no handler answers unless this is set before bind).
    // (ZMQ_ZAP_ENFORCE_DOMAIN is a draft option: cppzmq 4.9 has no name for it.)
    int one = 1;
    if (zmq_setsockopt(L.router.handle(), 93 /* ZMQ_ZAP_ENFORCE_DOMAIN */, &one, sizeof one) != 0)
        fail_start("kith: libzmq lacks ZMQ_ZAP_ENFORCE_DOMAIN; refusing to run without fail-closed ZAP");
    try {
        L.router.set(zmq::sockopt::router_mandatory, true);
        // ZMQ_ROUTER_HANDOVER stays 0: a client cannot take over another
        // connection's routing id; kith DEALERs use a fresh random id per socket.
        // DISCONNECTED ends links; ACCEPTED and HANDSHAKE_FAILED count
        // connections in their handshake (a raw TCP flood; context.hpp).
        // LISTENING gives the listening socket's fd (its source filter).
        L.mon = open_monitor(L.router, ZMQ_EVENT_LISTENING | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED | ZMQ_EVENT_ACCEPTED |
                                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    } catch (const zmq::error_t& e) {
        fail_start("kith: cannot set up the " + what + "'s monitor: " + e.what() +
                   " (out of file descriptors or ZeroMQ sockets? see the open-file limit)");
    }
    try {
        L.router.bind(endpoint);
    } catch (const zmq::error_t& e) {
        // What to do, by errno (ZeroMQ does not look host names up to bind).
        const int n = e.num();
        fail_start("kith: cannot bind the " + what + " at " + endpoint + ": " + e.what() +
                   (L.is_member() ? " (is the port in use? choose another member port, net_options::member_listen "
                                    "or kith node --member-port)"
                    : n == EADDRINUSE ? " (the port is taken, by another node or program: choose another, or port 0 "
                                        "for any free one)"
                    : n == EADDRNOTAVAIL ? " (the address is not this machine's: give one of its own, or 0.0.0.0 for "
                                           "every interface)"
                    : n == ENODEV ? " (the host is neither an IPv4 address nor an interface of this machine: host "
                                    "names are not looked up to listen; give an address, an interface such as eth0, "
                                    "or 0.0.0.0)"
                                  : " (is the port in use, or the address not this machine's?)"));
    }
    try {
        L.bound = L.router.get(zmq::sockopt::last_endpoint);
    } catch (const zmq::error_t& e) {
        fail_start("kith: cannot read the " + what + "'s bound endpoint: " + e.what());
    }
    // bind() sent LISTENING (with the listening fd) before the socket can
    // accept anything, so it is the monitor's first event.
    if (auto colon = L.bound.rfind(':'); L.bound.rfind("tcp://", 0) == 0 && colon != std::string::npos)
        L.port = static_cast<std::uint16_t>(std::strtoul(L.bound.c_str() + colon + 1, nullptr, 10));
    if (L.guard.enabled()) {
        try {
            zmq_pollitem_t it{L.mon.handle(), 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&it, 1, 1000) > 0)
                if (auto ev = read_monitor_event(L.mon); ev && ev->first == ZMQ_EVENT_LISTENING)
                    L.listen_fd = static_cast<int>(ev->second);
        } catch (const zmq::error_t&) {}
        if (L.listen_fd < 0)
            log(log_level::warning, "the " + what + "'s listening socket was not reported by ZeroMQ: connections "
                                                     "per address are counted but not refused (limit them in the "
                                                     "firewall; docs/security.md, \"Connections per address\")");
    }
}

void transport::impl::install_guard(listener& L) {
    if (L.listen_fd < 0) return;
    std::string err = install_socket_filter(L.listen_fd, L.guard.program());
    if (err.empty()) L.filtered = L.filtered || L.guard.blocked() > 0;
    else
        socket_error("installing the " + std::string(L.is_member() ? "member" : "public") +
                     " port's filter of blocked addresses failed (" + err +
                     "): those addresses are not blocked now, their connections cost a handshake each again");
}

void transport::impl::close_listener(listener& L) {
    L.listen_fd = -1;  // closed by the unbind below: never touched again
    // The shared ZeroMQ context closes a listener in the background: unbind
    // and wait (at most a second) until it is closed, so that the port is
    // free when stop() returns (a node restarted on it can bind).
    if (L.router && L.mon && !L.bound.empty()) {
        try {
            L.router.unbind(L.bound);
            const auto until = clock::now() + std::chrono::seconds(1);
            for (auto now = clock::now(); now < until; now = clock::now()) {
                zmq_pollitem_t it{L.mon.handle(), 0, ZMQ_POLLIN, 0};
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
                if (zmq_poll(&it, 1, static_cast<long>(left)) <= 0) break;  // timeout, or the context ends
                auto ev = read_monitor_event(L.mon);
                if (ev && ev->first == ZMQ_EVENT_CLOSED) break;
            }
        } catch (const zmq::error_t& e) {
            socket_error(std::string("unbinding ") + L.bound + " failed: " + e.what() +
                         " (the port may stay busy for a moment after stop)");
        }
    }
    if (L.mon) {
        if (zmq_socket_monitor(L.router.handle(), nullptr, 0) != 0)
            socket_error(std::string("stopping a ROUTER's monitor failed: ") + zmq_strerror(zmq_errno()));
        L.mon.close();
    }
    L.router.close();
    // After the ROUTER: never a ROUTER without its handler. (The context
    // itself ends with the last transport of the process, in stop().)
    if (shared && !L.zap_route.empty()) shared->remove_route(L.zap_route);
    L.zap_route.clear();
}

}  // namespace kith::detail
