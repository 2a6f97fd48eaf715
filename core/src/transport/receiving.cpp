// receiving.cpp — reading the ROUTER and the DEALERs, frames, liveness
// (heartbeats, timeouts). See transport_impl.hpp.
#include <arpa/inet.h>
#include <netinet/in.h>

#include "transport/transport_impl.hpp"

namespace kith::detail {

// A kith frame is one part: the rest of a multipart message is read and
// dropped. Throws zmq::error_t.
static void drop_rest(zmq::socket_ref sock, zmq::message_t& x) {
    while (x.more())
        if (!sock.recv(x, zmq::recv_flags::dontwait)) break;  // the parts of a message arrive together
}

void transport::impl::note_fd_reuse(int fd) {
    if (fd < 0) return;
    if (closing_fds.erase(fd)) ++stale_fds[fd];
    std::vector<link*> old;
    for (auto& [rid, l] : ins) {
        if (l->fd != fd) continue;
        if (l->state == lstate::connecting) {  // forgotten, not yet reaped: its close is to come
            ++stale_fds[fd];
            l->fd = -1;
            continue;
        }
        old.push_back(l.get());
    }
    for (link* l : old) {
        ++stale_fds[fd];
        l->fd = -1;
        if (l->state == lstate::established) link_failed(*l, "connection_closed");
        else erase_in(*l);
    }
}

int transport::impl::read_router(listener& L) {
    int n = 0;
    zmq::socket_t& router = L.router;
    if (!router) return 0;
    // Two messages reused for the whole batch: each receive replaces the
    // previous content (zmq_msg_recv), no allocation per message here.
    zmq::message_t id, m;
    // Whether the next poll asks this socket (poll_sockets): not once a
    // receive found nothing (libzmq took its commands and found every pipe
    // empty, as ZMQ_EVENTS would have).
    const std::size_t item = L.is_member() ? mem_item : pub_item;
    ask_item(item);
    try {
        for (; n < read_batch; ++n) {
            // The public port pauses while non-members' budget is spent.
            if (!L.is_member() && pub_paused(clock::now())) return n;
            if (!router.recv(id, zmq::recv_flags::dontwait)) {
                settle_item(item);
                return n;
            }
            if (!id.more() || !router.recv(m, zmq::recv_flags::dontwait)) continue;  // no body: nothing to read
            if (m.more()) {
                protocol_errors++;
                drop_rest(router, m);
                continue;
            }
            std::string rid;  // the listener's tag, then the routing id (listener.hpp)
            rid.reserve(id.size() + 1);
            rid.push_back(L.tag);
            rid.append(id.data<char>(), id.size());
            const char* uid = zmq_msg_gets(m.handle(), "User-Id");  // null: no such property
            auto it = ins.find(rid);
            if (it == ins.end()) {
                if (ins.size() >= o.max_inbound_links || !uid) {
                    protocol_errors++;
                    continue;
                }
                auto l = std::make_unique<link>();
                l->outbound = false;
                l->state = lstate::handshaking;
                l->rid = rid;
                l->fd = zmq_msg_get(m.handle(), ZMQ_SRCFD);  // -1 if unknown: no fd bookkeeping then
                // Past ZMTP and CURVE: its first kith message.
                if (hs_fds.erase(l->fd)) handshakes_pending = hs_fds.size();
                else if (l->fd >= 0 && hs_early_fds.size() < 65536) hs_early_fds.insert(l->fd);
                note_fd_reuse(l->fd);
                l->hs_deadline = clock::now() + o.heartbeat_timeout;
                auto kind = auth::kind_of_user_id(uid);
                if (!kind) {  // fail closed: a User-Id our ZAP handler never issues
                    protocol_errors++;
                    continue;
                }
                l->auth.user_id = uid;
                l->auth.kind = *kind;
                if (const char* k = zmq_msg_gets(m.handle(), key_property))
                    if (auto pk = public_key::from_z85(k)) l->auth.key = *pk;
                if (L.is_member() && *kind != trust_kind::cluster) {  // ZAP admits only members there
                    protocol_errors++;
                    continue;
                }
                if (*kind != trust_kind::cluster) {
                    // Non-members never take the links kept for members, nor
                    // more than a few per key.
                    const bool full = ins.size() + o.member_reserved_links >= o.max_inbound_links;
                    auto per = links_per_key.find(l->auth.key);
                    if (full || (per != links_per_key.end() && per->second >= o.max_links_per_key)) {
                        protocol_errors++;
                        links_over_budget++;
                        continue;
                    }
                    ++links_per_key[l->auth.key];
                }
                const char* addr = zmq_msg_gets(m.handle(), "Peer-Address");
                l->endpoint = std::string("tcp://") + (addr ? addr : "?");
                it = ins.emplace(rid, std::move(l)).first;
            }
            link& l = *it->second;
            // Authorization comes from this message's User-Id, set by our ZAP
            // handler for this connection: it must match the link's.
            if (!uid || l.auth.user_id != uid) {
                protocol_errors++;
                continue;
            }
            on_frame(l, std::string_view(m.data<char>(), m.size()), l.auth);
        }
    } catch (const zmq::error_t& e) {
        socket_error(std::string("reading the ") + (L.is_member() ? "member port" : "ROUTER") + " failed: " + e.what());
    }
    return n;
}

int transport::impl::read_dealer(link& l) {
    void* sock = l.dealer.handle();
    int n = 0;
    zmq::message_t m;  // reused for the batch
    ask_item(l.item);  // as read_router
    try {
        for (; n < read_batch && l.dealer.handle() == sock && sock; ++n) {
            if (l.awaiting_move()) return n;  // moves.cpp
            if (!l.dealer.recv(m, zmq::recv_flags::dontwait)) {
                settle_item(l.item);
                return n;
            }
            if (m.more()) {
                protocol_errors++;
                drop_rest(l.dealer, m);
                continue;
            }
            // Messages from a server we dialled carry no ZAP User-Id (the
            // server authenticated itself by its key); their trust is that of
            // the link: "cluster" for a cluster link, "server:<key>" otherwise.
            on_frame(l, std::string_view(m.data<char>(), m.size()), l.auth);
        }
    } catch (const zmq::error_t& e) {
        socket_error("reading the link to " + l.endpoint + " failed: " + e.what());
    }
    return n;
}

void transport::impl::read_router_monitor(listener& L) {
    zmq::socket_t& router_mon = L.mon;
    if (!router_mon) return;
    // Up to 1024 events a turn: libzmq blocks its I/O thread when a
    // monitor's pipe is full (1,000 events), so a connection flood's events
    // are drained fast.
    for (int n = 0; n < 1024; ++n) {
        std::optional<std::pair<std::uint16_t, std::uint32_t>> event;
        try {
            event = read_monitor_event(router_mon);
        } catch (const zmq::error_t& e) {
            socket_error(std::string("reading the ROUTER's monitor failed: ") + e.what());
            break;
        }
        if (!event) {
            settle_item(L.is_member() ? mem_item + 1 : pub_item + 1);  // read empty (poll_sockets)
            break;
        }
        auto [ev, val] = *event;
        const int efd = static_cast<int>(val);
        // ACCEPTED and DISCONNECTED carry the fd; the HANDSHAKE events an
        // error number only, so a connection leaves hs_fds when it closes
        // or when its first kith message arrives (read_router).
        switch (ev) {
        case ZMQ_EVENT_ACCEPTED:
            // The monitor's pipe is not the data's: the first message may
            // have been read before this event.
            if (!hs_early_fds.erase(efd)) hs_fds.insert(efd);
            fresh_accepts.push_back(efd);
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:  // includes the handshake timeout
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: handshake_failures++; break;
        case ZMQ_EVENT_DISCONNECTED:
            hs_fds.erase(efd);
            hs_early_fds.erase(efd);
            // Closed already: its fd may be another connection's by the
            // time it is looked at, which must not be charged for it.
            if (auto f = std::find(fresh_accepts.rbegin(), fresh_accepts.rend(), efd); f != fresh_accepts.rend())
                fresh_accepts.erase(std::next(f).base());
            break;
        default: break;
        }
        if (ev == ZMQ_EVENT_DISCONNECTED) {
            // What the peer sent before closing (a goodbye, say) comes first.
            while (read_router(L) == read_batch) {}
            int fd = static_cast<int>(val);
            // The close of a connection already forgotten, whose fd a newer
            // connection may have by now: not that one's.
            if (auto c = stale_fds.find(fd); c != stale_fds.end()) {
                if (--c->second == 0) stale_fds.erase(c);
                continue;
            }
            if (closing_fds.erase(fd)) continue;  // the close of a connection already forgotten
            std::vector<link*> hit;
            for (auto& [rid, l] : ins) {
                if (l->fd != fd) continue;
                if (l->state == lstate::connecting) l->fd = -1;  // forgotten already: its close is this one
                else hit.push_back(l.get());
            }
            for (link* l : hit) {
                if (l->state == lstate::established) link_failed(*l, "connection_closed");
                else erase_in(*l);
            }
        }
    }
    // Connections accepted in this batch and not closed in it: charged to
    // their source addresses (a connection closed before the batch was read
    // is missed here; its handshake, if it got that far, is charged at ZAP).
    for (int fd : fresh_accepts) ration_accepted(L, fd);
    fresh_accepts.clear();
    handshakes_pending = hs_fds.size();
    // A quarter of the open-file budget in unfinished handshakes is not a
    // cluster reconnecting: say so, at most every 30 s.
    const std::uint64_t alarm = std::max<std::uint64_t>(256, open_files / 4);
    if (hs_fds.size() >= alarm && clock::now() - flood_warned > std::chrono::seconds(30)) {
        flood_warned = clock::now();
        log(log_level::warning, std::to_string(hs_fds.size()) +
                                    " inbound connections are in their handshake (open-file limit " +
                                    std::to_string(open_files) +
                                    "): a flood of connections that never finish CURVE? Each is closed after " +
                                    std::to_string(o.heartbeat_timeout.count()) +
                                    " ms; one address is cut off after net_options::conns_per_address_burst of them (unless that "
                                    "budget is 0), so this is likely many "
                                    "addresses: if it persists, limit connections per address in the firewall");
    }
}

void transport::impl::report_refusals() {
    std::vector<zap_outcome> got;
    std::vector<std::pair<listener*, std::string>> seen;
    {
        std::lock_guard lk(refused_mu);
        got.swap(refused);
        seen.swap(zap_sources);
        refused_pending.store(false);
    }
    for (auto& [L, address] : seen) {
        // A link-local IPv6 address comes with its zone ("fe80::1%eth0").
        if (auto pct = address.find('%'); pct != std::string::npos) address.resize(pct);
        sockaddr_storage ss{};
        auto& a4 = reinterpret_cast<sockaddr_in&>(ss);
        auto& a6 = reinterpret_cast<sockaddr_in6&>(ss);
        if (::inet_pton(AF_INET, address.c_str(), &a4.sin_addr) == 1) ss.ss_family = AF_INET;
        else if (::inet_pton(AF_INET6, address.c_str(), &a6.sin6_addr) == 1) ss.ss_family = AF_INET6;
        else continue;
        if (auto src = source_addr::of(ss)) ration(*L, *src, source_guard::seen::at_zap);
    }
    for (const zap_outcome& out : got) {
        refusal r;
        r.inbound = true;
        r.endpoint = out.address;
        r.key = out.client;
        r.reason = out.reason;
        call(cb.on_peer_refused, r);
    }
}

void transport::impl::ration_accepted(listener& L, int fd) {
    if (!L.guard.enabled()) return;
    // The fd may be closed by now (a churning peer's connections are short)
    // or belong to something newer: counted only if it is a connection this
    // port accepted (its local port is the port's; an outbound link's is
    // not), then at worst a newer one of this port is counted twice and the
    // closed one not at all. Enough to find a source that opens hundreds a
    // second.
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
    const std::uint16_t local = ss.ss_family == AF_INET    ? reinterpret_cast<const sockaddr_in&>(ss).sin_port
                                : ss.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6&>(ss).sin6_port
                                                           : 0;
    if (local == 0 || ntohs(local) != L.port) return;
    // It copied the listener's filter, which it has no use for (only SYNs
    // to the listener are looked at): dropped, so that long-lived links do
    // not each keep an old program in kernel memory.
    if (L.filtered) {
        int unused = 0;
        (void)::setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof unused);
    }
    len = sizeof ss;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return;
    if (auto src = source_addr::of(ss)) ration(L, *src, source_guard::seen::accepted);
}

void transport::impl::ration(listener& L, const source_addr& src, source_guard::seen how) {
    if (src.loopback() && !o.ration_loopback) return;
    const auto now = clock::now();
    auto b = L.guard.accepted(src, now, how);
    if (!b) return;
    install_guard(L);
    address_blocks++;  // after: whoever sees the count finds the filter in place
    // At most one warning a second (many addresses can be blocked at once).
    if (now - block_warned < std::chrono::seconds(1)) {
        blocks_unwarned++;
        return;
    }
    block_warned = now;
    const std::string more =
        blocks_unwarned ? " (and " + std::to_string(blocks_unwarned) + " more blocks since the last warning)" : "";
    blocks_unwarned = 0;
    const auto secs = std::to_string(std::chrono::duration_cast<std::chrono::seconds>(b->length).count());
    log(log_level::warning,
        "new connections from " + b->source.text() + " to the " + (L.is_member() ? "member" : "public") +
            " port are dropped for " + secs + " s: it opened more than " +
            std::to_string(static_cast<long>(o.conns_per_address_burst)) + " at over " +
            std::to_string(static_cast<long>(o.conns_per_address_per_s)) +
            " a second (its open connections stay; a NAT or script of yours? raise "
            "net_options::conns_per_address_per_s; docs/security.md, \"Connections per address\")" + more);
}

void transport::impl::housekeeping() {
    const auto now = clock::now();
    for (listener* L : {&pub, &mem})
        if (L->guard.enabled() && L->guard.expire(now)) install_guard(*L);
    for (auto& lp : outs) {
        link& l = *lp;
        if (!l.dealer) {
            if (!l.refused && !stopping && l.redial_at != clock::time_point{} && now >= l.redial_at) {
                l.redial_at = {};
                open_dealer(l);
            }
            continue;
        }
        if (l.state == lstate::established) {
            // A mover awaiting its answer is not read (moves.cpp): L1's
            // liveness stands for the node meanwhile.
            if (l.awaiting_move()) l.last_rx = now;
            if (now - l.last_rx > o.heartbeat_timeout) {
                heartbeat_timeouts++;
                link_failed(l, "timeout");
            } else if (now >= l.next_hb) {
                send_control(l, env_heartbeat{});
                l.next_hb = now + o.heartbeat_interval;
            }
        } else if (l.state == lstate::handshaking && now > l.hs_deadline) {
            protocol_errors++;
            reopen(l);  // CURVE succeeded but no kith handshake came: start over
        }
    }
    std::vector<link*> failed;
    for (auto& [rid, lp] : ins) {
        link& l = *lp;
        if (l.state == lstate::established) {
            if (now - l.last_rx > o.heartbeat_timeout) {
                failed.push_back(&l);
            } else if (now >= l.next_hb) {
                send_control(l, env_heartbeat{});
                l.next_hb = now + o.heartbeat_interval;
            }
        } else if (now > l.hs_deadline) {
            erase_in(l);
        }
    }
    for (link* l : failed) {
        heartbeat_timeouts++;
        link_failed(*l, "timeout");
    }
    end_credit_stalls(now);
    check_moves(now);
    // Read budgets of keys idle long enough to be full again.
    if (o.guest_bytes_per_s > 0) {
        const auto refill = std::chrono::duration<double>(static_cast<double>(o.guest_burst_bytes) /
                                                          static_cast<double>(o.guest_bytes_per_s));
        for (auto it = guest_rx.begin(); it != guest_rx.end();)
            it = now - it->second.last > refill ? guest_rx.erase(it) : std::next(it);
    }
}

void transport::impl::reap_ins() {
    for (auto& rid : doomed_ins) {
        auto it = ins.find(rid);
        if (it != ins.end() && it->second->state == lstate::connecting) {
            forget_key_link(*it->second);
            // Its connection may still be open: its close is still to come.
            if (it->second->fd >= 0 && closing_fds.size() < 65536) closing_fds.insert(it->second->fd);
            ins.erase(it);
        }
    }
    doomed_ins.clear();
}

}  // namespace kith::detail
