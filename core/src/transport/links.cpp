// links.cpp — outbound links (DEALER sockets, socket monitors, refusals) and
// the commands other threads queue. See transport_impl.hpp.
#include "transport/transport_impl.hpp"

namespace kith::detail {

void transport::impl::open_dealer(link& l) {
    l.state = lstate::connecting;
    l.zmq_ok = false;
    l.redial_at = {};
    l.peer.clear();
    // Cluster credentials go only where the caller believes a member
    // listens; the link is cluster only once the server proves it.
    const keypair& kp = l.creds.client ? *l.creds.client : l.creds.own_key ? self.keys_ : cluster;
    // A fresh routing id per socket: one socket = one connection incarnation
    // as far as the server's ROUTER can tell (ids starting with 0 are reserved).
    unsigned char rid[16];
    randombytes_buf(rid, sizeof rid);
    rid[0] = static_cast<unsigned char>(0x80 | (rid[0] & 0x7f));
    const char* step = "create a DEALER socket";
    try {
        l.dealer = zmq::socket_t(*ctx, zmq::socket_type::dealer);
        step = "set its options";
        apply_common_options(l.dealer);
        // A link with cluster credentials runs on the members' ZeroMQ I/O
        // thread; one to a server we hold a grant for, or visit, on the
        // public one (context.hpp).
        l.dealer.set(zmq::sockopt::affinity, l.creds.is_cluster() ? member_io_affinity : public_io_affinity);
        l.dealer.set(zmq::sockopt::reconnect_ivl, static_cast<int>(o.reconnect_interval.count()));
        l.dealer.set(zmq::sockopt::reconnect_ivl_max, static_cast<int>(o.reconnect_interval_max.count()));
        l.dealer.set(zmq::sockopt::curve_serverkey, zmq::const_buffer(l.server_key.bytes.data(), 32));
        l.dealer.set(zmq::sockopt::curve_publickey, zmq::const_buffer(kp.pub.bytes.data(), 32));
        l.dealer.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(kp.sec.bytes().data(), 32));
        l.dealer.set(zmq::sockopt::routing_id, zmq::const_buffer(rid, sizeof rid));
        l.dealer_rid.assign(reinterpret_cast<const char*>(rid), sizeof rid);
        step = "monitor it";
        l.mon = open_monitor(l.dealer, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_DISCONNECTED);
        step = "connect";
        l.dealer.connect(l.endpoint);
    } catch (const zmq::error_t& e) {
        // A bad endpoint, or out of descriptors or sockets: a refusal the
        // caller hears about (no retry loop), and a record here.
        std::string why = "cannot " + std::string(step) + " for " + l.endpoint + ": " + e.what();
        socket_error(why);
        items_dirty = true;
        refuse_out(l, why + (e.num() == EMFILE || e.num() == ENFILE
                                 ? " (out of file descriptors: raise the open-file limit)"
                                 : " (check the endpoint: tcp://host:port)"));
        return;
    }
    // Our handshake is the first message on the connection: queued in the
    // pipe now (a new pipe is never full), sent when the CURVE handshake
    // completes. Without it the link's handshake deadline reopens it.
    l.nonce = auth::fresh_nonce();
    auto hs = handshake(l.nonce);
    try {
        if (!l.dealer.send(zmq::buffer(hs), zmq::send_flags::dontwait))
            socket_error("could not queue our handshake to " + l.endpoint + " (pipe full); the link retries");
    } catch (const zmq::error_t& e) {
        socket_error("could not queue our handshake to " + l.endpoint + ": " + e.what() + "; the link retries");
    }
    items_dirty = true;
}

void transport::impl::close_dealer(link& l, int linger_ms) {
    if (!l.dealer) return;
    if (l.mon) {
        if (zmq_socket_monitor(l.dealer.handle(), nullptr, 0) != 0)
            socket_error("stopping the monitor of the link to " + l.endpoint + " failed: " + zmq_strerror(zmq_errno()));
        l.mon.close();
    }
    try {
        l.dealer.set(zmq::sockopt::linger, linger_ms);
    } catch (const zmq::error_t& e) {
        socket_error("setting the linger of the link to " + l.endpoint + " failed: " + e.what());
    }
    l.dealer.close();
    items_dirty = true;
}

void transport::impl::refuse_out(link& l, const std::string& reason, errc code) {
    if (l.move_of) return abandon_move(l, reason, true);  // no refusal: the first link carries on
    if (l.refused) return;
    l.refused = true;
    refused_outbound++;
    close_dealer(l, l.told_before_close ? static_cast<int>(o.linger.count()) : 0);
    refusal r;
    r.inbound = false;
    r.endpoint = l.endpoint;
    r.key = l.server_key;
    r.reason = reason;
    r.code = code;
    call(cb.on_peer_refused, r);
}

void transport::impl::pause_redial(link& l) {
    // The key was right before, so this is not a refusal: something that
    // accepts and closes at once (ssh -L, a load balancer, a relay's
    // forwarder) while the node behind it is away. libzmq would redial
    // every reconnect interval; dial again after 1, 2, 4, 8, 8 ... s
    // instead (back within 8 s of the node's return, 3 tries a pause).
    if (l.move_of) return abandon_move(l, "closed during the CURVE handshake", true);
    const auto pause = std::chrono::seconds(1 << std::min(l.slow_redials, 3));
    if (l.slow_redials == 0)
        log(log_level::warning, "the link to " + l.endpoint + " (" + l.server_key.z85() + ") was closed during the CURVE "
                                "handshake " + std::to_string(l.silent_failures) + " times at once, though that key "
                                "answered before: a proxy or tunnel whose node is away, or a node that now has "
                                "another key; dialling again every 1-8 s");
    l.slow_redials++;
    l.silent_failures = 0;
    close_dealer(l, 0);
    l.state = lstate::connecting;
    l.redial_at = clock::now() + pause;
}

void transport::impl::reopen(link& l) {
    if (l.move_of) return abandon_move(l, "the connection ended", true);  // a mover is never dialled again
    if (l.mover && l.mover->pending_mover()) abandon_move(*l.mover, "its first link reconnected");
    close_dealer(l, 0);
    if (!l.refused && !stopping) open_dealer(l);
}

void transport::impl::handle_monitor(link& l) {
    for (int n = 0; n < 64 && l.mon; ++n) {
        std::optional<std::pair<std::uint16_t, std::uint32_t>> event;
        try {
            event = read_monitor_event(l.mon);
        } catch (const zmq::error_t& e) {
            socket_error("reading the monitor of the link to " + l.endpoint + " failed: " + e.what());
            return;
        }
        if (!event) {
            if (l.item) settle_item(l.item + 1);  // read empty: nothing to ask (poll_sockets)
            return;
        }
        auto [ev, val] = *event;
        switch (ev) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            l.zmq_ok = true;
            l.silent_failures = 0;
            l.key_proven = true;
            l.slow_redials = 0;
            // The peer's kith handshake may have been read already.
            if (l.state == lstate::connecting) {
                l.state = lstate::handshaking;
                l.hs_deadline = clock::now() + o.heartbeat_timeout;
                l.last_rx = clock::now();
            }
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            refuse_out(l, "authentication refused by " + l.endpoint + " (ZAP status " + std::to_string(val) +
                              "): wrong cookie or unknown key");
            return;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: {
            char code[16];
            std::snprintf(code, sizeof code, "0x%x", val);
            refuse_out(l, "CURVE handshake with " + l.endpoint + " failed with protocol error " + code +
                              ": not a kith node, or not using CURVE");
            return;
        }
        case ZMQ_EVENT_CONNECTED:
            l.connected_at = clock::now();
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            // A wrong server key fails at once (the server cannot decrypt
            // HELLO and hangs up); a slow or frozen server fails only after
            // its handshake interval, and is not a refusal.
            if (clock::now() - l.connected_at > o.heartbeat_timeout / 2) {
                l.silent_failures = 0;
                break;
            }
            if (++l.silent_failures >= o.max_silent_handshake_failures) {
                if (l.key_proven) {
                    pause_redial(l);
                    return;
                }
                refuse_out(l, "CURVE handshake with " + l.endpoint + " failed " +
                                  std::to_string(l.silent_failures) +
                                  " times without detail: wrong server key, the server refused us, or a proxy "
                                  "in front of it cannot reach it");
                return;
            }
            break;
        case ZMQ_EVENT_DISCONNECTED:
            if (l.zmq_ok || l.state != lstate::connecting) {
                // What the peer sent before closing (a goodbye, say) comes first.
                void* sock = l.dealer.handle();
                while (l.dealer.handle() == sock && read_dealer(l) == read_batch) {}
                if (l.dealer.handle() == sock) link_failed(l, "connection_closed");
                return;  // l's socket was replaced
            }
            break;
        default: break;
        }
    }
}

void transport::impl::run_commands() {
    std::vector<command> cs;
    {
        std::lock_guard lk(cmd_mu);
        cs.swap(cmds);
    }
    if (!cs.empty()) full_poll_next = true;  // connect/disconnect take a socket's commands in passing
    for (auto& c : cs) {
        if (c.k == command::end_sessions) {
            end_sessions(c.endpoint, c.reason);
            continue;
        }
        if (c.k == command::listen_out || c.k == command::unlisten_out) {
            // The listening ROUTER dials out (transport.hpp, connect_listener).
            if (c.k == command::listen_out ? zmq_connect(pub.router.handle(), c.endpoint.c_str()) != 0
                                           : zmq_disconnect(pub.router.handle(), c.endpoint.c_str()) != 0)
                socket_error(std::string(c.k == command::listen_out ? "connecting" : "disconnecting") +
                             " the listener to " + c.endpoint + " failed: " + zmq_strerror(zmq_errno()));
            continue;
        }
        if (c.k == command::goodbye) {
            // From the guest decoder: the link, if it still serves that session.
            auto s = sessions.find(c.endpoint);
            auto in = ins.find(c.rid);
            if (s != sessions.end() && s->second.guest == c.gs && in != ins.end() &&
                in->second->state == lstate::established && in->second->peer == c.endpoint)
                on_goodbye(*in->second, c.reason);
            continue;
        }
        auto it = std::find_if(outs.begin(), outs.end(),
                               [&](auto& l) { return !l->doomed && !l->move_of && l->endpoint == c.endpoint; });
        if (c.k == command::connect && it != outs.end() && !(*it)->refused && (*it)->server_key == c.key &&
            (*it)->creds == c.creds) {
            // Already linked: nothing to do, unless it is waiting to dial
            // again after a pause (pause_redial): asked now, dial now.
            if (!(*it)->dealer && (*it)->redial_at != clock::time_point{}) open_dealer(**it);
            continue;
        }
        if (it != outs.end()) {
            link& l = **it;
            l.refused = true;  // no reopen (nor a parked link dialled again when its mover ends below)
            // After a move its mover carries the session (l is parked).
            link* carrier = l.mover && l.mover->state == lstate::established && l.mover->move == link::move_step::done
                                ? l.mover
                                : nullptr;
            const std::string peer = l.state == lstate::established ? l.peer : carrier ? carrier->peer : "";
            if (l.state == lstate::established) send_control(l, env_goodbye{"shutdown"});
            if (carrier) {  // the node reads the member port first
                send_control(*carrier, env_goodbye{"shutdown"});
                carrier->told_before_close = true;
            }
            if (!peer.empty()) {
                auto s = sessions.find(peer);
                if (s != sessions.end() && (s->second.primary == &l || s->second.primary == carrier))
                    session_down(peer, "shutdown", &l);
                else
                    detach(l);
            }
            close_dealer(l, static_cast<int>(o.linger.count()));
            l.doomed = true;   // erased after this loop turn (pointers to it may be in use)
        }
        if (c.k == command::connect) {
            auto l = std::make_unique<link>();
            l->outbound = true;
            l->endpoint = c.endpoint;
            l->server_key = c.key;
            l->creds = std::move(c.creds);
            if (!l->creds.is_cluster()) {
                l->auth.kind = trust_kind::server;
                l->auth.user_id = "server:" + c.key.z85();
            } else {
                l->auth.kind = trust_kind::cluster;
                l->auth.user_id = "cluster";
            }
            l->auth.key = c.key;
            outs.push_back(std::move(l));
            open_dealer(*outs.back());
        }
    }
}

void transport::impl::end_sessions(const std::string& user_id, const std::string& reason) {
    const bool prefix = !user_id.empty() && user_id.back() == '*';
    const std::string_view want = prefix ? std::string_view(user_id).substr(0, user_id.size() - 1) : user_id;
    std::vector<std::string> names;
    for (auto& [name, s] : sessions)
        if (prefix ? s.info.auth.user_id.starts_with(want) : s.info.auth.user_id == want) names.push_back(name);
    for (auto& name : names) end_session_told(name, reason, down_reason_of_goodbye(reason));
}

void transport::impl::end_session_told(const std::string& name, const std::string& told, const std::string& reason) {
    auto it = sessions.find(name);
    if (it == sessions.end()) return;
    std::vector<link*> ls = std::move(it->second.links);
    it->second.links.clear();
    for (link* l : ls)
        if (l->state == lstate::established) send_control(*l, env_goodbye{told});
    session_down(name, reason, nullptr);
    for (link* l : ls) {
        if (l->outbound && told.starts_with("refused")) {
            refuse_out(*l, l->endpoint + " " + told);  // no silent reconnect
            continue;
        }
        reset_link(*l, /*tell_peer=*/false);
    }
}

void transport::impl::take_dirty() {
    std::vector<std::shared_ptr<peer_queue>> d;
    {
        std::lock_guard lk(dirty_mu);
        d.swap(dirty);
    }
    for (auto& q : d) {
        auto it = sessions.find(q->name);
        if (it == sessions.end() || it->second.q != q) continue;
        flush(it->second);
    }
}

}  // namespace kith::detail
