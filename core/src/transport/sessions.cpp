// sessions.cpp — sending, and sessions: the handshake (membership proof,
// name claims), session up and down. See transport_impl.hpp.
#include "transport/transport_impl.hpp"

namespace kith::detail {

int transport::impl::send_on(link& l, const void* data, std::size_t size) {
    try {
        if (l.outbound) {
            if (!l.dealer) return -1;
            ask_item(l.item);  // a send may take a socket's command in passing (poll_sockets)
            return l.dealer.send(zmq::const_buffer(data, size), zmq::send_flags::dontwait) ? 1 : 0;
        }
        // l.rid: the listener's tag, then the routing id (listener.hpp).
        if (l.rid.empty()) return -1;
        zmq::socket_t& router = l.rid[0] == mem.tag ? mem.router : pub.router;
        if (!router) return -1;
        ask_item(l.rid[0] == mem.tag ? mem_item : pub_item);
        if (!router.send(zmq::const_buffer(l.rid.data() + 1, l.rid.size() - 1),
                         zmq::send_flags::sndmore | zmq::send_flags::dontwait))
            return 0;
        // A ROUTER takes every further part once it took the first.
        return router.send(zmq::const_buffer(data, size), zmq::send_flags::dontwait) ? 1 : -1;
    } catch (const zmq::error_t& e) {
        // EHOSTUNREACH (ROUTER_MANDATORY): the peer's connection is gone, which
        // its link learns from the monitor; anything else is a fault.
        if (e.num() != EHOSTUNREACH)
            socket_error("sending to " + (l.peer.empty() ? l.endpoint : l.peer) + " failed: " + e.what());
        return -1;
    }
}

void transport::impl::send_control(link& l, const envelope& e) {
    std::string f = encode_frame(e);
    if (send_on(l, f.data(), f.size()) == 1) {
        frames_out++;
        bytes_out += f.size();
    }
}

// Whether `n` more bytes may go to a non-member now (session::pace_tokens):
// at 7/8 of the read budget every node has by default, with half its burst,
// so that the peer's own bucket (which refills at the full rate) never runs
// dry on what we send. A frame over the burst goes once the bucket is full,
// leaving a debt. Never paced while stopping: what stop() flushes goes out.
bool transport::impl::pace(session& s, std::size_t n, clock::time_point now) {
    if (o.guest_bytes_per_s == 0 || stopping.load(std::memory_order_relaxed)) return true;
    const double rate = 0.875 * static_cast<double>(o.guest_bytes_per_s);
    const double burst = 0.5 * static_cast<double>(std::max(o.guest_burst_bytes, std::uint64_t{1}));
    if (s.pace_tokens < 0 && s.pace_last == clock::time_point{}) s.pace_tokens = burst;
    else s.pace_tokens = std::min(burst, s.pace_tokens + std::chrono::duration<double>(now - s.pace_last).count() * rate);
    s.pace_last = now;
    const double cost = static_cast<double>(n + o.guest_frame_cost_bytes);
    if (s.pace_tokens < std::min(cost, burst)) {
        paced_waits++;
        return false;
    }
    s.pace_tokens -= cost;
    return true;
}

void transport::impl::flush(session& s) {
    // A move waits for its answer (moves.cpp): no queued frame goes on the
    // first link after `move`, not even what stop() flushes (drain_output
    // reads on until the answer, then the queue goes on the mover, or on
    // the first link if the move was declined).
    if (s.hold) return;
    send_credit(s, *s.primary);
    const bool paced = s.info.auth.kind != trust_kind::cluster;
    {
        std::lock_guard lk(s.q->mu);
        while (!s.q->frames.empty()) {
            s.unsent.push_back(std::move(s.q->frames.front()));
            s.q->frames.pop_front();
        }
        // While a paced session waits, the open batch keeps filling (up to
        // batch_bytes), so that waiting envelopes share frames.
        if (!s.q->cur.empty() && !(paced && !s.unsent.empty())) s.unsent.push_back(s.q->cur.take());
        while (!s.q->bulk.empty()) {
            s.bulk.push_back(std::move(s.q->bulk.front()));
            s.q->bulk.pop_front();
        }
        s.q->dirty = false;
    }
    std::size_t sent = 0;
    std::uint64_t nframes = 0;
    const auto now = paced ? clock::now() : clock::time_point{};
    for (;;) {
        while (!s.unsent.empty()) {
            const std::string& f = s.unsent.front();
            if (paced && !pace(s, f.size(), now)) break;
            int rc = send_on(*s.primary, f.data(), f.size());
            if (rc == 0) {
                if (paced) s.pace_tokens += static_cast<double>(f.size() + o.guest_frame_cost_bytes);
                break;
            }
            // rc == -1: the link is gone; the frame is lost, and the link's
            // failure (already detected or about to be) reports the peer down.
            sent += f.size();
            if (rc == 1) nframes++;
            s.unsent.pop_front();
            // The answer to a move was the last frame for the old link (moves.cpp).
            if (s.move_to && --s.move_after == 0) {
                s.primary = s.move_to;
                s.move_to = nullptr;
            }
        }
        // The batch that filled while a paced frame waited goes next: left
        // in the queue (no longer dirty), it would wait for the next post.
        if (!paced || !s.unsent.empty()) break;
        std::lock_guard lk(s.q->mu);
        if (s.q->cur.empty()) break;
        s.unsent.push_back(s.q->cur.take());
    }
    frames_out += nframes;
    bytes_out += sent;
    if (sent) {
        std::lock_guard lk(s.q->mu);
        s.q->bytes -= std::min(sent, s.q->bytes);
    }
    if (!s.unsent.empty()) {
        mark_blocked(s);
    } else if (!s.bulk.empty()) {
        send_bulk(s);
    }
}

void transport::impl::session_up(link& l, const env_handshake& hs) {
    session& s = sessions[hs.node];
    s.name = hs.node;
    s.primary = &l;
    s.links = {&l};
    s.unsent.clear();
    s.info = peer_info{};
    s.info.endpoint = l.endpoint;
    // An inbound peer: its observed address (tcp://IP, from the socket) with
    // the port its handshake states, so people see where it listens. The
    // port is a claim, shown only; dist never matches a dial against it.
    if (!l.outbound && hs.port != 0 && l.endpoint.rfind("tcp://", 0) == 0 && l.endpoint.find('?') == std::string::npos) {
        const std::string host = l.endpoint.substr(6);
        s.info.endpoint = "tcp://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                          std::to_string(hs.port);
    }
    s.info.auth = l.auth;
    s.info.services = hs.services;
    s.info.hidden = hs.hidden;
    s.info.creation = hs.creation;
    s.info.outbound = l.outbound;
    if (!hs.key.empty()) s.info.node_key = public_key::from_z85(hs.key);
    s.q = std::make_shared<peer_queue>(hs.node);
    const frame_limits& theirs = l.auth.kind == trust_kind::cluster ? o.limits : o.guest_limits;
    s.q->max_envelope = theirs.term.max_bytes;
    s.q->max_frame = theirs.max_frame_bytes;
    s.q->fragments = l.auth.kind == trust_kind::cluster;
    s.guest = !l.outbound && l.auth.kind != trust_kind::cluster ? std::make_shared<guest_session>() : nullptr;
    {
        std::unique_lock lk(peers_mu);
        queues[hs.node] = s.q;
        queues_gen.fetch_add(1, std::memory_order_release);
    }
    peers_up++;
    call(cb.on_peer_up, s.name, s.info);
}

void transport::impl::session_down(const std::string& name, const std::string& reason, link* cause) {
    for (link* l : end_session(name, reason)) {
        if (l == cause) continue;
        reset_link(*l, /*tell_peer=*/true);
    }
}

std::vector<link*> transport::impl::end_session(const std::string& name, const std::string& reason) {
    auto it = sessions.find(name);
    if (it == sessions.end()) return {};
    blocked.erase(std::remove(blocked.begin(), blocked.end(), &it->second), blocked.end());
    session s = std::move(it->second);
    sessions.erase(it);
    if (s.guest) {
        // Waits for a delivery of this session's envelopes in progress on
        // the guest decoder; none comes after this.
        std::lock_guard lk(s.guest->mu);
        s.guest->up = false;
    }
    {
        std::unique_lock lk(peers_mu);
        queues.erase(name);
        queues_gen.fetch_add(1, std::memory_order_release);
    }
    std::size_t dropped = s.unsent.size() + s.bulk.size();
    {
        std::lock_guard lk(s.q->mu);
        s.q->closed = true;
        dropped += s.q->frames.size() + (s.q->cur.empty() ? 0 : 1) + s.q->bulk.size();
        // Its storage freed, not only emptied: a poster's cached pointer
        // (transport::post) may keep the closed queue a while.
        decltype(s.q->frames)().swap(s.q->frames);
        decltype(s.q->bulk)().swap(s.q->bulk);
        decltype(s.q->bulk_keys)().swap(s.q->bulk_keys);
        s.q->cur = frame_builder();
        s.q->bytes = 0;
    }
    dropped_at_down += dropped;
    peers_down++;
    call(cb.on_peer_down, name, reason);
    return s.links;
}

void transport::impl::reset_link(link& l, bool tell_peer) {
    if (tell_peer && l.state == lstate::established && !l.pending_mover()) send_control(l, env_goodbye{"reset"});
    if (l.outbound) {
        reopen(l);
    } else {
        erase_in(l);
    }
}

void transport::impl::erase_in(link& l) {
    l.state = lstate::connecting;
    l.peer.clear();
    doomed_ins.push_back(l.rid);
}

void transport::impl::detach(link& l) {
    if (l.peer.empty()) return;
    auto it = sessions.find(l.peer);
    if (it == sessions.end()) return;
    auto& v = it->second.links;
    v.erase(std::remove(v.begin(), v.end(), &l), v.end());
    if (it->second.move_to == &l) it->second.move_to = nullptr;  // a move's answer waits: we stay
}

void transport::impl::link_failed(link& l, const std::string& reason) {
    bool was_primary = false;
    std::string name = l.peer;
    if (l.state == lstate::established && !name.empty()) {
        auto it = sessions.find(name);
        if (it != sessions.end()) was_primary = it->second.primary == &l;
    }
    if (was_primary) {
        session_down(name, reason, &l);
    } else {
        detach(l);
    }
    reset_link(l, /*tell_peer=*/reason == "timeout");
}

void transport::impl::on_handshake(link& l, env_handshake& hs) {
    // A stopping node takes no new session (its sessions are reported down
    // with "shutdown"): unanswered, the connection closes with its socket,
    // and the peer dials again later, as after any stop. A refusal would
    // make the peer stop dialling.
    if (stopping.load(std::memory_order_relaxed)) return;
    auto bad = [&](const std::string& why) {
        protocol_errors++;
        if (l.outbound) {
            refuse_out(l, why);
        } else {
            if (!l.reset_sent) {
                l.reset_sent = true;
                send_control(l, env_goodbye{"refused: " + why});
            }
            erase_in(l);
        }
    };
    if (hs.version != protocol_version)
        return bad("protocol version " + std::to_string(hs.version) + " unsupported: this node speaks version " +
                   std::to_string(protocol_version) + "; run the same kith release on every node");
    if (hs.node.empty() || hs.node.size() > 255) return bad("bad node name in handshake");
    // What a handshake carries is stored and shown to people: bounded, and
    // names only (no text a terminal would interpret).
    if (hs.services.size() > transport_options::max_handshake_services)
        return bad("handshake lists " + std::to_string(hs.services.size()) + " services (at most " +
                   std::to_string(transport_options::max_handshake_services) + ")");
    for (const auto& s : hs.services)
        if (!valid_service_name(s)) return bad("handshake lists a service name that is not 1-64 of [A-Za-z0-9._-]");
    if (hs.node == o.node_name) {
        return bad(hs.creation == o.creation ? "connected to itself" : "peer uses our node name");
    }
    if (!l.outbound && (l.auth.kind == trust_kind::granted || l.auth.kind == trust_kind::stranger)) {
        // ZAP ran at the connection's start; the grant may have been
        // revoked since (a peer that ignores our goodbye and handshakes
        // again on the same connection is caught here).
        authz_decision d = zap.check(l.auth.key, {});
        bool same = l.auth.kind == trust_kind::granted
                        ? d.verdict == authz_decision::kind::grant && "grant:" + d.label == l.auth.user_id
                        : d.verdict == authz_decision::kind::stranger;
        if (!same) {
            const bool revoked = d.verdict == authz_decision::kind::revoked;
            if (!l.reset_sent) {
                l.reset_sent = true;
                send_control(l, env_goodbye{revoked ? "revoked" : "refused: " + d.reason});
            }
            refused_inbound++;
            refusal r;
            r.inbound = true;
            r.endpoint = l.endpoint;
            r.key = l.auth.key;
            r.reason = d.reason.empty() ? "refused at handshake" : d.reason;
            r.code = revoked ? errc::revoked : errc::unauthorized;
            call(cb.on_peer_refused, r);
            erase_in(l);
            return;
        }
    }
    if (l.outbound && l.creds.is_cluster() &&
        !auth::check_member_proof(proof_key, l.server_key, cluster.pub, l.nonce, hs.proof)) {
        // Dialling a node never makes it a member: it must prove the cookie.
        // Told, so that it forgets the connection at once (not after a timeout).
        protocol_errors++;
        send_control(l, env_goodbye{"refused: you did not prove membership of our cluster"});
        l.told_before_close = true;
        return refuse_out(l, l.endpoint + " (" + hs.node +
                                 ") did not prove membership of our cluster: it does not know our cookie "
                                 "(a different cookie, or not a member; use a grant or a visitor "
                                 "connection for a node outside the cluster)");
    }
    auto it = sessions.find(hs.node);
    if (l.move_of && (it == sessions.end() || it->second.info.creation != hs.creation ||
                      l.move_of->state != lstate::established || l.move_of->peer != hs.node))
        return abandon_move(l, "another node or incarnation answered at its member port");
    auth::name_claim nc;
    nc.name = hs.node;
    nc.claimant = &l.auth;
    if (!hs.key.empty()) nc.claimant_key = public_key::from_z85(hs.key);
    if (it != sessions.end()) {
        nc.holder = &it->second.info.auth;
        nc.holder_key = it->second.info.node_key;
        nc.holder_endpoint = it->second.info.endpoint;
    }
    auth::claim_verdict claim = cb.on_name_claim ? cb.on_name_claim(nc) : auth::claim_name(nc);
    if (claim.what == auth::claim_verdict::refuse) return bad(claim.why);
    if (claim.what == auth::claim_verdict::evict) {
        end_session_told(hs.node, "refused: " + claim.why, "connection_closed");
        it = sessions.end();
    }
    l.peer = hs.node;
    l.peer_creation = hs.creation;
    l.state = lstate::established;
    l.last_rx = clock::now();
    l.next_hb = clock::now() + o.heartbeat_interval;
    // The session is up here before our handshake answers the peer: once
    // the peer sees our answer, this node reports it up (a peer that asks
    // this node about itself through another channel never finds it absent).
    // What on_peer_up posts is queued and goes out after the answer.
    if (it != sessions.end() && it->second.info.creation == hs.creation) {
        it->second.links.push_back(&l);
        if (l.move_of) move_joined(l);
        else if (l.outbound) call(cb.on_outbound_joined, hs.node, l.endpoint);
    } else {
        // The peer restarted: the old session ends before the new one.
        if (it != sessions.end()) session_down(hs.node, "connection_closed", nullptr);
        session_up(l, hs);
    }
    if (!l.outbound) {
        std::string proof;
        if (l.auth.kind == trust_kind::cluster && hs.nonce.size() == auth::nonce_bytes)
            proof = auth::member_proof(proof_key, self.key(), l.auth.key, hs.nonce);
        auto ours = handshake(auth::fresh_nonce(), std::move(proof), member_port_for(l));
        send_on(l, ours.data(), ours.size());
    } else if (l.state == lstate::established && !l.move_of) {
        start_move(l, hs.member_port, hs.port);
    }
}

bool transport::impl::byte_bucket::take(double n, double rate, double burst, clock::time_point now) {
    if (tokens < 0) tokens = burst;
    else tokens = std::min(burst, tokens + std::chrono::duration<double>(now - last).count() * rate);
    last = now;
    if (tokens < n) return false;
    tokens -= n;
    return true;
}

bool transport::impl::charge_guest(const public_key& key, std::size_t bytes, clock::time_point now,
                                   bool public_port) {
    const double n = static_cast<double>(bytes);
    // All non-members' bucket first, whether or not the key's has room: a
    // single sender flooding past its own budget spends the shared one too,
    // so the public port pauses and TCP pushes back on it (listener.hpp)
    // rather than libzmq decrypting its frames for kith to drop.
    bool all_ok = true;
    if (o.guests_bytes_per_s > 0) {
        const double rate = static_cast<double>(o.guests_bytes_per_s);
        all_ok = guests_rx.take(n, rate, static_cast<double>(o.guests_burst_bytes), now);
        if (!all_ok) {
            // Spend what is left, and pause until the bucket holds this frame
            // again (at most 100 ms; the loop reads the member port meanwhile).
            const double missing = n - std::max(0.0, guests_rx.tokens);
            guests_rx.tokens = 0;
            if (public_port) {
                auto wait = std::chrono::duration<double>(std::min(0.1, std::max(0.001, missing / rate)));
                pub_paused_until = now + std::chrono::duration_cast<clock::duration>(wait);
                public_pauses++;
            }
        }
    }
    if (o.guest_bytes_per_s > 0) {
        // Buckets of keys that were idle long enough to be full again are
        // forgotten (housekeeping), so the map holds only active senders.
        auto& b = guest_rx[key];
        if (!b.take(n, static_cast<double>(o.guest_bytes_per_s), static_cast<double>(o.guest_burst_bytes), now))
            return false;
    }
    return all_ok;
}

void transport::impl::on_frame(link& l, std::string_view frame, const peer_auth& auth) {
    frames_in++;
    bytes_in += frame.size();
    l.last_rx = clock::now();
    // The budget of who sent it, checked before a byte is decoded.
    const frame_limits& lim = l.state != lstate::established ? o.handshake_limits
                              : auth.kind == trust_kind::cluster ? o.limits
                                                                 : o.guest_limits;
    if (auth.kind != trust_kind::cluster &&
        !charge_guest(auth.key, frame.size() + o.guest_frame_cost_bytes, l.last_rx, !l.outbound && !l.rid.empty() && l.rid[0] == pub.tag)) {
        rate_drops++;
        return;
    }
    if (frame.size() > lim.max_frame_bytes) {
        if (l.state == lstate::established) {
            decode_errors++;
            call(cb.on_decode_error, l.peer,
                 error{errc::decode, "frame of " + std::to_string(frame.size()) + " bytes dropped unread: over the " +
                                         std::to_string(lim.max_frame_bytes) + "-byte budget of " +
                                         std::string(trust_word(auth.kind)) + " peers"});
        } else {
            protocol_errors++;
        }
        return;
    }
    if (l.state == lstate::established && !l.outbound && auth.kind != trust_kind::cluster) {
        // A grantee's or a stranger's frame: decoded off this thread.
        auto it = sessions.find(l.peer);
        if (it != sessions.end() && it->second.guest) {
            if (!queue_guest_frame(l, frame, auth, it->second.guest)) rate_drops++;
            return;
        }
    }
    auto r = decode_frame(frame, lim);
    if (!r) {
        if (l.state == lstate::established) {
            decode_errors++;
            call(cb.on_decode_error, l.peer, r.err());
        } else {
            protocol_errors++;
            // A dialler of another protocol version (its frames fail the
            // version check) is told why in its own framing, once: the
            // goodbye envelope is the same in every version.
            const auto v = frame.size() >= 3 ? static_cast<std::uint8_t>(frame[2]) : protocol_version;
            const bool ours = frame.size() >= 3 && static_cast<std::uint8_t>(frame[0]) == 0xc1 && frame[1] == 0x4b;
            if (!l.outbound && !l.reset_sent && ours && v != protocol_version) {
                l.reset_sent = true;
                std::string f = encode_frame(env_goodbye{
                    "refused: protocol version " + std::to_string(v) + " unsupported: this node speaks version " +
                    std::to_string(protocol_version) + "; run the same kith release on every node"});
                f[2] = static_cast<char>(v);
                send_on(l, f.data(), f.size());
                erase_in(l);
            }
        }
        return;
    }
    std::vector<envelope>& envs = r.value();
    envelopes_in += envs.size();
    std::size_t i = 0;
    if (l.state != lstate::established) {
        if (l.outbound && !envs.empty() && std::holds_alternative<env_goodbye>(envs[0])) {
            // The server ended the link instead of answering our handshake.
            const std::string& why = std::get<env_goodbye>(envs[0]).reason;
            if (why == "revoked")
                refuse_out(l, "revoked: " + l.endpoint + " refused our grant (revoked or expired)",
                           errc::revoked);
            else if (why.starts_with("refused"))
                refuse_out(l, l.endpoint + " " + why);
            else
                protocol_errors++;
            return;
        }
        if (envs.empty() || !std::holds_alternative<env_handshake>(envs[0])) {
            protocol_errors++;
            if (!l.outbound && !l.reset_sent) {
                l.reset_sent = true;
                send_control(l, env_goodbye{"reset"});
            }
            return;
        }
        on_handshake(l, std::get<env_handshake>(envs[0]));
        if (l.state != lstate::established) return;
        i = 1;
    }
    session* s = nullptr;
    if (auth.kind == trust_kind::cluster)
        if (auto it = sessions.find(l.peer); it != sessions.end()) s = &it->second;
    auto goodbye = take_data(envs, i, s, &l);
    deliver(l, auth, std::move(envs));
    if (goodbye) on_goodbye(l, *goodbye);
    else if (l.mover && l.mover->move == link::move_step::done && !l.parked && l.state == lstate::established)
        park(l);  // the node moved to the mover: its answer was the last on this link
}

std::optional<std::string> transport::impl::take_data(std::vector<envelope>& envs, std::size_t first, session* s,
                                                      link* l) {
    // Data envelopes are compacted in place (no second vector, no move
    // per envelope in the common case of a frame holding only data).
    std::optional<std::string> goodbye;
    std::size_t w = first;
    for (std::size_t i = first; i < envs.size(); ++i) {
        envelope& e = envs[i];
        if (std::holds_alternative<env_heartbeat>(e)) continue;  // its arrival is what counts
        if (auto* f = std::get_if<env_fragment>(&e)) {
            if (!s) {
                protocol_errors++;  // between cluster members only
                continue;
            }
            auto whole = on_fragment(*s, *l, *f);
            if (!whole) continue;
            e = std::move(*whole);
        } else if (auto* c = std::get_if<env_credit>(&e)) {
            if (!s) {
                protocol_errors++;
                continue;
            }
            s->in_flight -= std::min<std::size_t>(s->in_flight, c->bytes);
            s->credit_wait_since = {};  // progress: the bound starts again when the window fills
            if (!s->bulk.empty()) mark_blocked(*s);  // flushed at the end of this turn
            continue;
        }
        if (std::holds_alternative<env_handshake>(e)) {
            protocol_errors++;
            continue;
        }
        if (auto* mv = std::get_if<env_move>(&e)) {
            if (s) on_move(*s, *l, *mv);
            else protocol_errors++;  // between cluster members only
            continue;
        }
        if (auto* ack = std::get_if<env_move_ack>(&e)) {
            if (s) on_move_ack(*s, *l, *ack);
            else protocol_errors++;
            continue;
        }
        if (auto* g = std::get_if<env_goodbye>(&e)) {
            goodbye = std::move(g->reason);
            break;
        }
        if (w != i) envs[w] = std::move(e);
        ++w;
    }
    envs.resize(w);
    if (first) envs.erase(envs.begin(), envs.begin() + static_cast<std::ptrdiff_t>(first));
    return goodbye;
}

void transport::impl::on_goodbye(link& l, const std::string& said) {
    std::string reason = down_reason_of_goodbye(said);
    std::string name = l.peer;
    if (sessions.count(name)) {
        session_down(name, reason, &l);
        // A server that refuses us now is not dialled again by itself.
        if (l.outbound && reason == "refused") refuse_out(l, l.endpoint + " " + said);
        else reset_link(l, false);
    } else {
        link_failed(l, reason);
    }
}

void transport::impl::deliver(link& l, const peer_auth& auth, std::vector<envelope>&& data) {
    if (data.empty() || l.peer.empty() || !sessions.count(l.peer)) return;
    call(cb.on_envelopes, l.peer, auth, std::move(data));
}

}  // namespace kith::detail
