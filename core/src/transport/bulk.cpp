// bulk.cpp — large envelopes between cluster members: sent in fragments
// within a window of credit, so that they never hold small envelopes to
// other destinations behind them for more than a fragment; joined again by
// the receiver, one at a time per session. See docs/protocol.md §5.9 and
// transport_impl.hpp.
#include "transport/transport_impl.hpp"

namespace kith::detail {

std::uint64_t dest_key(const envelope& e) noexcept {
    // Low bit 1: an actor (every destination pid is on the peer: its serial
    // names it); low bit 0: a name or a service (a hash); 0: everything else.
    auto actor = [](const pid& p) { return (p.serial << 1) | 1; };
    auto named = [](std::uint64_t salt, std::string_view s) {
        return ((std::hash<std::string_view>{}(s) ^ salt) & ~std::uint64_t{1}) | 2;
    };
    return std::visit(
        [&](const auto& x) -> std::uint64_t {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, env_send> || std::is_same_v<T, env_request> ||
                          std::is_same_v<T, env_response> || std::is_same_v<T, env_down> ||
                          std::is_same_v<T, env_link> || std::is_same_v<T, env_unlink> ||
                          std::is_same_v<T, env_exit>)
                return actor(x.to);
            else if constexpr (std::is_same_v<T, env_monitor> || std::is_same_v<T, env_demonitor>)
                return actor(x.target);
            else if constexpr (std::is_same_v<T, env_send_named>)
                return named(0x6e616d65, x.name);
            else if constexpr (std::is_same_v<T, env_call> || std::is_same_v<T, env_cast>)
                return named(0x73657276, x.service);
            else
                return 0;
        },
        e);
}

void transport::impl::send_bulk(session& s) {
    std::size_t sent = 0;
    std::uint64_t nframes = 0;
    std::vector<std::uint64_t> done;  // keys of the items handed over
    bool would_block = false;
    while (!s.bulk.empty()) {
        bulk_item& it = s.bulk.front();
        std::string f = frame_builder().take();  // the frame header
        std::size_t n = it.bytes.size();
        if (it.large) {
            // On the receiver's credit; at stop() (shutdown_io) everything
            // goes to ZeroMQ, which lingers: no credit comes after it.
            if (s.in_flight >= fragment_window && !stopping) {
                if (s.credit_wait_since == clock::time_point{}) s.credit_wait_since = clock::now();
                break;
            }
            if (s.bulk_off == 0) ++s.bulk_id;
            n = std::min(fragment_bytes, it.bytes.size() - s.bulk_off);
            env_fragment fr{s.bulk_id, static_cast<std::uint32_t>(s.bulk_off),
                            static_cast<std::uint32_t>(it.bytes.size()), it.bytes.substr(s.bulk_off, n)};
            encode_envelope(fr, f);
        } else {
            f += it.bytes;
        }
        int rc = send_on(*s.primary, f.data(), f.size());
        if (rc == 0) {
            would_block = true;
            break;
        }
        // rc == -1: the link is gone (see flush).
        if (rc == 1) nframes++;
        sent += n;
        if (it.large) {
            s.bulk_off += n;
            s.in_flight += n;
            if (s.bulk_off < it.bytes.size()) continue;
            s.bulk_off = 0;
        }
        done.push_back(it.key);
        s.bulk.pop_front();
    }
    frames_out += nframes;
    bytes_out += sent;
    if (sent || !done.empty()) {
        std::lock_guard lk(s.q->mu);
        s.q->bytes -= std::min(sent, s.q->bytes);
        for (std::uint64_t k : done)
            if (auto c = s.q->bulk_keys.find(k); c != s.q->bulk_keys.end() && --c->second == 0)
                s.q->bulk_keys.erase(c);
    }
    if (would_block) mark_blocked(s);
}

void transport::impl::end_credit_stalls(clock::time_point now) {
    std::vector<link*> stalled;
    for (auto& [name, s] : sessions) {
        if (s.credit_wait_since == clock::time_point{} || now - s.credit_wait_since <= o.heartbeat_timeout ||
            !s.primary)
            continue;
        std::size_t waiting = 0;
        for (const bulk_item& it : s.bulk) waiting += it.bytes.size();
        log(log_level::warning,
            name + " sent no fragment credit for " +
                std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - s.credit_wait_since).count()) +
                " ms while " + std::to_string(s.in_flight) + " bytes of fragments waited for it and " +
                std::to_string(waiting) +
                " bytes of messages queued behind them (docs/protocol.md section 5.9): its session is ended as "
                "timed out, its queued messages are dropped and calls to it fail with nodedown. A member that "
                "does this again runs a broken kith or is hostile: upgrade it, or remove it from the cluster");
        stalled.push_back(s.primary);
    }
    for (link* l : stalled) {
        credit_timeouts++;
        link_failed(*l, "timeout");
    }
}

void transport::impl::fragment_error(session& s, const std::string& what) {
    s.rx_on = false;
    std::string().swap(s.rx);
    decode_errors++;
    call(cb.on_decode_error, s.name,
         error{errc::decode, "a fragmented envelope from " + s.name + " was dropped: " + what +
                                 " (a peer that breaks docs/protocol.md section 5.9; upgrade or fix it)"});
}

void transport::impl::send_credit(session& s, link& l) {
    if (!s.credit_owed) return;
    std::string f = encode_frame(env_credit{s.credit_owed});
    int rc = send_on(l, f.data(), f.size());
    if (rc == 0) {
        mark_blocked(s);
        return;
    }
    s.credit_owed = 0;  // rc == -1: the link is gone, and the session with it
    frames_out++;
    bytes_out += f.size();
}

std::optional<envelope> transport::impl::on_fragment(session& s, link& l, env_fragment& f) {
    // Every fragment is credited, even one that breaks the rules: the
    // sender's window never waits for bytes this node dropped.
    s.credit_owed += f.data.size();
    send_credit(s, l);
    const std::size_t max = o.limits.term.max_bytes;
    if (f.total > max) {
        fragment_error(s, "its total size " + std::to_string(f.total) + " is over the " + std::to_string(max) +
                              "-byte limit of one envelope");
        return std::nullopt;
    }
    if (f.data.empty() || f.offset + static_cast<std::uint64_t>(f.data.size()) > f.total) {
        fragment_error(s, "a fragment of " + std::to_string(f.data.size()) + " bytes at offset " +
                              std::to_string(f.offset) + " does not fit its total of " + std::to_string(f.total));
        return std::nullopt;
    }
    if (s.rx_on && f.offset == 0) {
        // A new envelope begins: the one in progress is abandoned (a peer
        // whose session restarted while this node kept its own, after a
        // lost goodbye, begins again at id 1). Reported, and the new one kept.
        fragment_error(s, "envelope " + std::to_string(s.rx_id) + " ended at " + std::to_string(s.rx.size()) +
                              " of " + std::to_string(s.rx_total) + " bytes when envelope " + std::to_string(f.id) +
                              " began");
    }
    if (!s.rx_on) {
        if (f.offset != 0) {
            fragment_error(s, "a fragment at offset " + std::to_string(f.offset) + " of an envelope never begun");
            return std::nullopt;
        }
        s.rx_on = true;
        s.rx_id = f.id;
        s.rx_total = f.total;
        s.rx.clear();
        s.rx.reserve(f.total);
    } else if (f.id != s.rx_id || f.total != s.rx_total || f.offset != s.rx.size()) {
        fragment_error(s, "fragment " + std::to_string(f.id) + "@" + std::to_string(f.offset) +
                              " came while envelope " + std::to_string(s.rx_id) + " was at " +
                              std::to_string(s.rx.size()) + " of " + std::to_string(s.rx_total));
        return std::nullopt;
    }
    s.rx += f.data;
    if (s.rx.size() < s.rx_total) return std::nullopt;
    s.rx_on = false;
    auto r = decode_envelope(s.rx, o.limits.term);
    std::string().swap(s.rx);
    if (!r) {
        decode_errors++;
        call(cb.on_decode_error, s.name, r.err());
        return std::nullopt;
    }
    envelope& e = r.value();
    if (std::holds_alternative<env_handshake>(e) || std::holds_alternative<env_heartbeat>(e) ||
        std::holds_alternative<env_goodbye>(e) || std::holds_alternative<env_fragment>(e) ||
        std::holds_alternative<env_credit>(e) || std::holds_alternative<env_move>(e) ||
        std::holds_alternative<env_move_ack>(e)) {
        protocol_errors++;  // control envelopes never come in fragments
        return std::nullopt;
    }
    return std::move(e);
}

}  // namespace kith::detail
