// moves.cpp — a member link dialled at a node's public port moves to its
// member port (docs/protocol.md, "Moving to the member port"). See
// transport_impl.hpp.
//
// Why: the public port runs on the process's public ZeroMQ I/O thread (at a
// lower CPU priority, shared with strangers' floods), the member port on
// the members' own. A member that was given `connect(tcp://host:4370)`
// would otherwise cross both threads on every frame and share the public
// port's fate under a flood.
//
// Order: each direction of a session is one ordered stream (docs/protocol.md,
// "Links, handshake and sessions"). The dialler sends `move` on its first
// link (L1) and then nothing until the answer; the listener reads `move`
// after everything the dialler sent before it, answers `move_ack` on L1 as
// the last envelope it sends there, and sends on the mover (L2) from then
// on. The dialler does not read L2 until that answer came, and sends on L2
// only after it. So neither side reads anything of the new link before all
// of the old.
#include "transport/transport_impl.hpp"

namespace kith::detail {

std::uint16_t transport::impl::member_port_for(const link& l) const {
    if (l.outbound || l.auth.kind != trust_kind::cluster || l.rid.empty() || l.rid[0] != pub.tag || !mem.router)
        return 0;
    // Behind an advertised endpoint (NAT) the member port is reachable only
    // if it was chosen (and forwarded) on purpose (node::member_endpoint).
    if (!o.advertised_endpoint.empty() && o.member_bind_endpoint.empty()) return 0;
    return port_of(mem.bound);
}

void transport::impl::start_move(link& l1, std::uint16_t port, std::uint16_t public_port) {
    if (port == 0 || l1.mover || l1.move_of || !l1.outbound || !l1.creds.is_cluster() || stopping) return;
    // Only a link dialled at the node's own public port, "tcp://HOST:PORT":
    // a relay's splice, a tunnel or a forwarded port has another port, and
    // the member port is not behind it.
    const std::string& ep = l1.endpoint;
    const auto colon = ep.rfind(':');
    if (!ep.starts_with("tcp://") || ep.find('?') != std::string::npos || colon == std::string::npos || colon < 6 ||
        port_of(ep) == 0 || port_of(ep) != public_port || public_port == port)
        return;
    auto l2 = std::make_unique<link>();
    l2->outbound = true;
    l2->endpoint = ep.substr(0, colon + 1) + std::to_string(port);
    l2->server_key = l1.server_key;
    l2->creds = l1.creds;
    l2->auth = l1.auth;
    l2->move_of = &l1;
    l2->move_deadline = clock::now() + o.heartbeat_timeout;
    l1.mover = l2.get();
    outs.push_back(std::move(l2));
    open_dealer(*outs.back());  // a failure abandons it (refuse_out)
}

void transport::impl::move_joined(link& l2) {
    link& l1 = *l2.move_of;
    auto it = sessions.find(l2.peer);
    if (it == sessions.end() || l1.state != lstate::established) return abandon_move(l2, "its first link is down");
    session& s = it->second;
    // `move` goes ahead of frames ZeroMQ did not take yet (s.unsent): those
    // go on the mover after the answer, so the listener still reads them
    // after everything before them.
    const std::string f = encode_frame(env_move{l2.dealer_rid});
    if (send_on(l1, f.data(), f.size()) != 1) return abandon_move(l2, "its first link could not take the request");
    frames_out++;
    bytes_out += f.size();
    // The answer comes after everything the node reads of L1 before it, and
    // L1's own liveness covers a node that stops answering (the unread
    // mover is kept alive meanwhile: housekeeping). A node that keeps L1
    // alive but never answers fails L1 after twice the heartbeat timeout.
    l2.move = link::move_step::awaiting;
    l2.move_deadline = clock::now() + 2 * o.heartbeat_timeout;
    if (s.primary == &l1) s.hold = true;
    items_dirty = true;  // the mover is not polled until the answer
}

void transport::impl::on_move(session& s, link& l, const env_move& m) {
    if (l.outbound || l.state != lstate::established || l.move_answered) {
        protocol_errors++;  // only the dialler of a link moves it, once
        return;
    }
    l.move_answered = true;
    link* l2 = nullptr;
    if (m.link.size() == 16)
        if (auto it = ins.find(std::string(1, mem.tag) + m.link); it != ins.end()) l2 = it->second.get();
    const bool ok = l2 && l2 != &l && l2->state == lstate::established && l2->peer == l.peer &&
                    l2->peer_creation == l.peer_creation && l2->auth.kind == trust_kind::cluster &&
                    std::find(s.links.begin(), s.links.end(), l2) != s.links.end();
    if (!ok) protocol_errors++;
    std::string f = encode_frame(env_move_ack{ok});
    if (ok) member_moves++;
    if (s.primary == &l) {
        // The answer is the last we send on `l` (the dialler closes it once
        // read): if frames wait (ZeroMQ's queue full), it goes behind them
        // and the mover becomes the primary once they are all handed on.
        if (s.unsent.empty()) {
            const int rc = send_on(l, f.data(), f.size());
            if (rc != 0) {
                if (rc == 1) frames_out++, bytes_out += f.size();
                if (ok) s.primary = l2;
                if (!s.bulk.empty()) mark_blocked(s);
                return;
            }
        }
        s.unsent.push_back(std::move(f));  // never dropped: the dialler holds until it comes
        if (ok) {
            s.move_to = l2;
            s.move_after = s.unsent.size();
        }
        mark_blocked(s);
        return;
    }
    // Our frames to this peer go on another link (or the move is declined).
    if (send_on(l, f.data(), f.size()) == 1) {
        frames_out++;
        bytes_out += f.size();
    }
}

void transport::impl::on_move_ack(session& s, link& l, const env_move_ack& a) {
    if (!l.outbound || !l.mover || !l.mover->awaiting_move()) {
        protocol_errors++;
        return;
    }
    link& l2 = *l.mover;
    if (!a.accepted) return abandon_move(l2, "the node declined it");
    l2.move = link::move_step::done;
    l2.last_rx = clock::now();
    if (s.primary == &l) s.primary = &l2;
    s.hold = false;
    member_moves++;
    items_dirty = true;
    mark_blocked(s);
    // L1 is parked once this frame's envelopes are delivered (on_frame).
}

void transport::impl::park(link& l1) {
    // The node sends nothing more on L1 after its answer and read all we
    // sent there before `move`: closed at once, without a goodbye (that
    // would end the session); the node forgets it when it sees it close.
    // Linger: credits for fragments the node sent before its answer may
    // still be queued on L1 (bulk.cpp answers on the link they came on).
    detach(l1);
    close_dealer(l1, static_cast<int>(o.linger.count()));
    l1.state = lstate::connecting;
    l1.peer.clear();
    l1.parked = true;
}

void transport::impl::abandon_move(link& l2, const std::string& why, bool failed) {
    link* l1 = l2.move_of;
    if (!l1 || l2.doomed) return;
    const auto step = l2.move;
    l2.doomed = true;  // before session_down, which must not reset it again
    l1->mover = nullptr;
    auto it = l2.state == lstate::established ? sessions.find(l2.peer) : sessions.end();
    if (it != sessions.end() &&
        (it->second.primary == &l2 || (failed && step == link::move_step::awaiting))) {
        // It carried the session, or the node may have moved to it already.
        session_down(l2.peer, "connection_closed", &l2);
    } else {
        if (it != sessions.end() && it->second.hold && it->second.primary == l1) {
            it->second.hold = false;
            mark_blocked(it->second);
        }
        detach(l2);
    }
    close_dealer(l2, l2.told_before_close ? static_cast<int>(o.linger.count()) : 0);
    l2.state = lstate::connecting;
    l2.peer.clear();
    l2.refused = true;
    if (l1->parked) {
        l1->parked = false;
        if (!l1->refused && !stopping) open_dealer(*l1);
    }
    if (step == link::move_step::done) return;  // a moved link that ended: not a failed move
    member_moves_failed++;
    log(log_level::debug, "the link to " + l1->endpoint + " stays there: moving it to the node's member port (" +
                              l2.endpoint + ") did not work (" + why + ")");
}

void transport::impl::check_moves(clock::time_point now) {
    std::vector<link*> late, unanswered;
    for (auto& l : outs) {
        if (!l->move_of || l->doomed || now <= l->move_deadline) continue;
        if (l->move == link::move_step::dialling) late.push_back(l.get());
        else if (l->move == link::move_step::awaiting) unanswered.push_back(l->move_of);
    }
    for (link* l : late) abandon_move(*l, "it did not join the session in time");
    for (link* l1 : unanswered) {
        if (!l1->mover || l1->mover->doomed) continue;
        log(log_level::warning, "the node at " + l1->endpoint + " did not answer our move to its member port within " +
                                    std::to_string((2 * o.heartbeat_timeout).count()) +
                                    " ms while the link stayed alive: the link is closed and dialled again (a "
                                    "broken kith on that node? upgrade it)");
        heartbeat_timeouts++;
        link_failed(*l1, "timeout");
    }
}

void transport::impl::reap_outs() {
    for (auto& l : outs) {
        if (!l->doomed) continue;
        if (l->mover) abandon_move(*l->mover, "its first link was closed");
        if (l->move_of && l->move_of->mover == l.get()) l->move_of->mover = nullptr;
    }
    outs.remove_if([](auto& l) { return l->doomed; });
}

}  // namespace kith::detail
