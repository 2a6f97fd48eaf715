// transport.hpp — kith's node-to-node transport over ZeroMQ ROUTER/DEALER with
// CurveZMQ. Private to kith::core; the node wires it in. The design and its
// security argument are in docs/protocol.md, "Transport and security".
//
// Shape (zyre style): one I/O thread per transport owns a ZeroMQ context and
// every socket in it: the ROUTER (inbound), one DEALER per outbound link, the
// ZAP handler's REP socket, the socket monitors and a wake-up eventfd. Only
// that thread touches sockets. Other threads talk to it through post() and
// connect(), which queue work and wake it.
//
// Peers are named by their node name ("name@host") as sent in their handshake.
// A peer is "up" from the first link (connection) that completes the kith
// handshake until that session ends; every up is followed by exactly one
// down. Callbacks run on the I/O thread, in this order per peer:
//   on_peer_up, on_envelopes..., on_peer_down
// They must be quick and must not call stop(); they may call post()/connect().
//
// Errors: constructors/start() throw setup_error (bad key dir, bind failure,
// fail-closed ZAP unavailable). post() returns a result; nothing else throws
// after start().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kith/envelope.hpp"
#include "kith/error.hpp"
#include "kith/keys.hpp"
#include "kith/log.hpp"
#include "auth/identity.hpp"
#include "transport/zap.hpp"

namespace kith::detail {

struct transport_options {
    std::string node_name;                        // required, "name@host"
    std::string bind_endpoint = "tcp://127.0.0.1:0";  // "tcp://*:4370", port 0 = any
    std::string advertised_endpoint;              // what others should dial; empty = bound endpoint
    // The member port (docs/security.md, "The member port"): a second ROUTER
    // that admits only the cluster key, on the ZeroMQ I/O thread of its own
    // (context.hpp), so that non-members' traffic on the public endpoint is
    // never decrypted on the thread that carries members' frames. Empty:
    // bind_endpoint's address with any free port; "off": none (members then
    // use the public endpoint, sharing its fate under a flood).
    std::string member_bind_endpoint;
    // ZMQ_RCVHWM of the public ROUTER (at most rcvhwm): while non-members'
    // read budget is spent the transport stops reading that socket, and
    // libzmq stops reading a connection once this many messages wait.
    int public_rcvhwm = 16;
    std::filesystem::path key_dir;                // empty = default_key_dir(); unused if node_keys given
    std::optional<keypair> node_keys;             // the long-term keypair; default: loaded from key_dir
    std::optional<std::string> cookie;            // default: the cookie file in key_dir
    std::chrono::milliseconds heartbeat_interval{500};  // a heartbeat per link this often
    std::chrono::milliseconds heartbeat_timeout{2500};  // a link silent this long is dead ("timeout")
    std::chrono::milliseconds reconnect_interval{100};      // ZMQ_RECONNECT_IVL
    std::chrono::milliseconds reconnect_interval_max{1000}; // ZMQ_RECONNECT_IVL_MAX
    std::chrono::milliseconds linger{200};        // time to push out goodbyes at stop()
    frame_limits limits;                          // inbound decode limits; max_frame_bytes -> ZMQ_MAXMSGSIZE
    // Budgets per principal, checked before anything is decoded (a frame
    // over max_frame_bytes is dropped unread, counted in decode_errors):
    // `limits` for cluster members; `guest_limits` for grantees, strangers
    // and servers we dialled; `handshake_limits` for every frame of a link
    // whose handshake is not done yet (nobody is known then).
    frame_limits guest_limits = default_guest_limits();
    frame_limits handshake_limits = default_handshake_limits();
    static frame_limits default_guest_limits() {
        frame_limits f;
        f.max_frame_bytes = 256u << 10;
        f.max_envelopes = 1024;
        f.term.max_bytes = 256u << 10;
        f.term.max_depth = 32;
        f.term.max_array = 4096;
        f.term.max_map = 2048;
        f.term.max_str = 256u << 10;
        f.term.max_bin = 256u << 10;
        return f;
    }
    static frame_limits default_handshake_limits() {
        frame_limits f;
        f.max_frame_bytes = 32u << 10;  // a handshake with 256 services of 64 characters fits
        f.max_envelopes = 4;
        f.term.max_bytes = 32u << 10;
        f.term.max_depth = 4;
        f.term.max_array = max_handshake_services;
        f.term.max_map = 0;
        f.term.max_str = 1024;  // a goodbye's reason
        f.term.max_bin = 64;
        return f;
    }
    static constexpr std::size_t max_handshake_services = 256;  // names of at most 64 characters
    // Bytes a second that non-members may make this node read, checked
    // before a frame is decoded (a decode bomb costs its sender this budget,
    // not the node's CPU): per key (all its links together) and for all
    // non-members together, each a token bucket with the given burst. A
    // frame over either is dropped unread and counted in rate_drops; the
    // sender's calls then time out. Cluster members are never charged, so
    // they keep the node's capacity. 0: unlimited.
    // (A frame decodes to at most about 48 bytes of terms per byte: a nil is
    // one byte on the wire and a term in memory. The burst bounds what a
    // non-member can make the node hold at once.)
    // Grantees' and strangers' frames are decoded on a thread of their own
    // (the guest decoder), so that a member's frames never wait behind a
    // guest's decode; its queue holds at most guests_burst_bytes (64 MiB
    // when that is 0), beyond which frames are dropped unread (rate_drops).
    std::uint64_t guest_bytes_per_s = 1u << 20;
    std::uint64_t guest_burst_bytes = 1u << 20;
    std::uint64_t guests_bytes_per_s = 8u << 20;
    std::uint64_t guests_burst_bytes = 8u << 20;
    // What one frame costs besides its bytes, charged to both budgets above:
    // a frame costs the node its receive, CURVE and bookkeeping whatever its
    // size, so a flood of tiny frames (a call flood, one call a frame) is
    // bounded by the same budgets as big ones (1 MiB/s per key: about 2,000
    // frames a second of a few bytes; 8 MiB/s all non-members: about 16,000).
    std::size_t guest_frame_cost_bytes = 512;
    std::size_t batch_bytes = 64 * 1024;          // a batch is flushed once it reaches this size
    std::size_t max_queue_bytes = 8u << 20;       // per peer: queued + unsent bytes before post() fails
    int network_cpu = -1;                         // net_options::network_cpu (a node passes its own: auto by default)
    int sndhwm = 256;                             // ZMQ_SNDHWM (messages, i.e. batches) per socket/pipe
    int rcvhwm = 256;                             // ZMQ_RCVHWM
    // Connections each listening port accepts from one source address (an
    // IPv4 address or an IPv6 /64) a second, with this burst; a source over
    // it gets its new connections dropped in the kernel for 2 s, doubling
    // while it goes on, up to 60 s (source_guard.hpp; docs/security.md,
    // "Connections per address"). 0: unlimited.
    double conns_per_address_per_s = 16;
    double conns_per_address_burst = 64;
    // Ration connections from this machine too (127.0.0.0/8, ::1): off by
    // default, since local programs, the CLI and a relay_client's forwarder
    // (one connection per relayed session) connect from there.
    bool ration_loopback = false;
    std::size_t max_inbound_links = 4096;         // inbound connections tracked at once
    std::size_t member_reserved_links = 1024;     // of those, kept for cluster members only
    std::size_t max_links_per_key = 8;            // inbound connections of one non-member key
    int max_silent_handshake_failures = 3;        // then an outbound link is refused (wrong server key), or
                                                  // paused 1-8 s if its key completed a handshake before
    std::uint64_t creation = 0;                   // incarnation; 0 = now in ms since the epoch
    std::vector<std::string> services;            // sent in the handshake
    // When set, asked at every handshake instead (services added later).
    std::function<std::vector<std::string>()> live_services;
    bool hidden = false;                          // sent in the handshake
    // Where the transport's records go (source "transport", node = node_name):
    // a callback or an authorizer that threw, a libzmq call that failed at
    // run time. Unset: the process default sink (kith/log.hpp).
    log_sink log;
};

struct peer_info {
    // outbound: the endpoint we dialled; inbound: "tcp://<peer ip>:<port its
    // handshake states>" ("tcp://<peer ip>" without one)
    std::string endpoint;
    peer_auth auth;            // of the link the session was opened on
    std::vector<std::string> services;
    bool hidden = false;
    std::uint64_t creation = 0;
    bool outbound = false;     // true if the session's send path is our DEALER
    std::optional<public_key> node_key;  // the peer's own key as its handshake states it (information only)
};

struct refusal {
    bool inbound = false;                 // true: we refused a client; false: a server refused us
    std::string endpoint;                 // outbound: dialled endpoint; inbound: client IP
    std::optional<public_key> key;        // the other side's public key when known
    std::string reason;                   // human-readable, never secret
    // Outbound: errc::revoked when the server said our grant is revoked or
    // expired (ZAP status 300, or a goodbye "revoked" instead of its
    // handshake); errc::unauthorized for every other refusal.
    errc code = errc::unauthorized;
};

struct transport_callbacks {
    std::function<void(const std::string& peer, const peer_info&)> on_peer_up;
    // reason: "shutdown" (goodbye or local stop), "timeout", "connection_closed",
    // "revoked" (goodbye "revoked": the grant we used was revoked)
    std::function<void(const std::string& peer, const std::string& reason)> on_peer_down;
    std::function<void(const refusal&)> on_peer_refused;
    // A link we dialled to `endpoint` joined the session that `peer` already
    // had (it had dialled us first, or we had another link): no on_peer_up
    // follows, but a connect to `endpoint` is done.
    std::function<void(const std::string& peer, const std::string& endpoint)> on_outbound_joined;
    // Data envelopes (handshake/heartbeat/goodbye are consumed here), in the
    // order the peer sent them. `auth` comes from the User-Id of the ZeroMQ
    // message that carried them (never from envelope contents).
    std::function<void(const std::string& peer, const peer_auth& auth, std::vector<envelope>&& envs)> on_envelopes;
    // A frame from an authenticated, handshaken peer failed to decode; it was
    // dropped and counted; the link carries on.
    std::function<void(const std::string& peer, const error& e)> on_decode_error;
    // A handshake names node `name`: may the link's identity `claimant` hold
    // it, given the identity that holds it now (`holder`, null if none)?
    // Asked on the I/O thread before the link joins or opens a session, and
    // before our own handshake answers an inbound link. The callback may
    // fill in `reserved`. Unset: auth::claim_name without reservations.
    std::function<auth::claim_verdict(auth::name_claim& claim)> on_name_claim;
    // Runs a job that run_after_turn accepted elsewhere (a worker): the jobs
    // of a turn not yet started when the other I/O thread took the sockets
    // over (the one before them runs long or blocks). Called on an I/O
    // thread; must not block. Unset: they run on the I/O thread that took
    // them, one after the other.
    std::function<void(std::function<void()>)> run_elsewhere;
};

// How an outbound link authenticates itself to the server.
//   cluster  the cluster keypair derived from our cookie. The link is
//            "cluster" only once the server proved it knows the cookie too
//            (auth::member_proof in its handshake); otherwise it is refused
//            (errc::unauthorized, "did not prove ...").
//   grant    a keypair another node issued us: trust of the server "server".
//   visitor  this node's own long-term keypair, for a stranger's public
//            service: trust "server"; the cluster key is never shown.
struct link_credentials {
    std::optional<keypair> client;  // set: that keypair (a grant we hold)
    bool own_key = false;           // visitor: this node's own keypair
    static link_credentials cluster() { return {}; }
    static link_credentials visitor() { return {std::nullopt, true}; }
    bool is_cluster() const noexcept { return !client && !own_key; }
    friend bool operator==(const link_credentials& a, const link_credentials& b) {
        return a.own_key == b.own_key && a.client.has_value() == b.client.has_value() &&
               (!a.client || a.client->pub == b.client->pub);
    }
};

// A snapshot of the counters (monotonic since start).
struct transport_stats {
    std::uint64_t frames_in = 0, frames_out = 0;
    std::uint64_t envelopes_in = 0, envelopes_out = 0;
    std::uint64_t bytes_in = 0, bytes_out = 0;
    std::uint64_t refused_inbound = 0;     // ZAP refusals (all reasons)
    std::uint64_t refused_outbound = 0;    // servers that refused us
    std::uint64_t decode_errors = 0;       // frames from handshaken peers that failed to decode or were over budget
    std::uint64_t protocol_errors = 0;     // frames before a handshake, bad handshakes, name clashes
    std::uint64_t overload_drops = 0;      // post() calls refused with errc::overloaded
    std::uint64_t dropped_at_down = 0;     // queued envelopes discarded when their peer went down
    std::uint64_t heartbeat_timeouts = 0;
    std::uint64_t peers_up = 0, peers_down = 0;
    // Inbound connections accepted that have not sent their first kith
    // message (now: in the ZMTP/CURVE handshake, or silent after it), and
    // ZMTP/CURVE handshakes that failed or timed out (since start).
    // A raw TCP flood shows in both (context.hpp, "File descriptors").
    std::uint64_t handshakes_pending = 0, handshake_failures = 0;
    // libzmq calls that failed at run time (each logged, at most one record
    // a second): a socket that could not be opened, a failed send or read.
    std::uint64_t socket_errors = 0;
    // Frames from non-members dropped unread: over guest_bytes_per_s (their
    // key's) or guests_bytes_per_s (all non-members').
    std::uint64_t rate_drops = 0;
    // Times the public port was left unread because non-members' read
    // budget (guests_bytes_per_s) was spent.
    std::uint64_t public_pauses = 0;
    // Times a source address was blocked: over conns_per_address_per_s, its
    // new connections to a listening port were dropped for a while.
    std::uint64_t address_blocks = 0;
    // Sessions of members ended because their fragment credit stopped:
    // large envelopes waited for credit longer than heartbeat_timeout while
    // the member kept its link alive (docs/protocol.md §5.9). Also counted
    // in peers_down, with the reason "timeout".
    std::uint64_t credit_timeouts = 0;
    // Times a frame to a non-member waited because what it reads of us is
    // budgeted (guest_bytes_per_s; flush paces to it rather than have the
    // peer drop frames unread).
    std::uint64_t paced_waits = 0;
    // Turns of stop()'s wait until ZeroMQ took every frame and the peers
    // credited every fragment (drain_output), of its goodbyes' retries, of
    // its reads until the links it dialled are quiet (quiet_own_links) and
    // of its wait for the peers' closes; each waits at most 5 ms.
    std::uint64_t stop_drain_turns = 0;
    // Member links moved from a public port to the member port (moves.cpp),
    // counted by both ends; and moves this node tried that did not work
    // (the link stayed where it was dialled).
    std::uint64_t member_moves = 0, member_moves_failed = 0;
};

class transport {
public:
    // Loads keys and cookie (setup_error on failure). Does not bind.
    transport(transport_options opts, transport_callbacks cbs);
    // Calls stop().
    ~transport();
    transport(const transport&) = delete;
    transport& operator=(const transport&) = delete;

    // Binds the ZAP handler, then the ROUTER, and starts the two I/O threads
    // (one owns the sockets at a time; see run_after_turn). Throws
    // setup_error on failure. Call once.
    void start();
    // Flushes queued envelopes, waiting until ZeroMQ took them all (at most
    // 2 s, or heartbeat_timeout if shorter; a peer that stopped reading, or
    // whose link is gone, or that never answers a move to its member port
    // this node asked for, loses the rest; a warning names each peer still
    // up that was left with queued envelopes or unacknowledged large ones),
    // sends goodbye on every link,
    // reports every up peer down ("shutdown"), closes the sockets and joins
    // the I/O threads. The last transport of the process to stop ends the
    // shared ZeroMQ context, waiting at most `linger` for what is queued;
    // while others run, the goodbyes go out in the background. Idempotent.
    // Not from a callback, nor from a job given to run_after_turn.
    void stop();

    // The bound endpoint with its real port ("tcp://127.0.0.1:40123"); valid
    // after start(). The advertised endpoint if one was given.
    std::string endpoint() const;
    // The bound endpoint alone ("tcp://0.0.0.0:4370", the real port), even
    // when another is advertised: what this machine's own processes dial.
    std::string bound_endpoint() const;
    // The member port's bound endpoint ("tcp://127.0.0.1:40124"), empty if
    // there is none; valid after start(). Only cluster members get in there
    // (anyone else: ZAP 400); what to advertise is the caller's business.
    std::string member_endpoint() const;
    const public_key& key() const noexcept { return keys_.pub; }
    const std::string& node_name() const noexcept { return opts_.node_name; }
    std::uint64_t creation() const noexcept { return opts_.creation; }

    // Hook for keys other than the cluster key (grants, strangers). Default:
    // refuse. Thread-safe; takes effect for the next handshake.
    void set_authorizer(authorizer a);

    // Opens (asynchronously) an outbound link to the ROUTER at `endpoint`
    // whose public key must be `server_key`. Retries until it connects; when a
    // session ends the link reconnects by itself. A refusal (ZAP 400, protocol
    // mismatch, or repeated silent handshake failures such as a wrong server
    // key) is reported once through on_peer_refused and the link is closed:
    // no retry loop. Calling connect again for the same endpoint replaces the
    // link. Thread-safe, non-blocking.
    void connect(const std::string& endpoint, const public_key& server_key,
                 link_credentials creds = link_credentials::cluster());
    // Closes the outbound link to `endpoint` (goodbye first). Thread-safe.
    void disconnect(const std::string& endpoint);
    // The listening ROUTER itself connects out to `endpoint` (on = true), or
    // stops (false): whoever is at the other end is then served exactly as
    // an inbound connection (CURVE server, ZAP, the kith handshake); libzmq
    // redials it when it drops, until it is disconnected. For a relay's
    // session port (docs/relay.md). Thread-safe, asynchronous; a failure
    // is logged and counted in socket_errors.
    void connect_listener(const std::string& endpoint, bool on);
    // Ends every session whose User-Id is `user_id` (e.g. "grant:bob"; a
    // trailing '*' matches a prefix, "stranger:*" every stranger): a
    // goodbye with `reason` on each of its links, then peer down(`reason`)
    // here. Used when a grant is revoked; the authorizer, asked again at the
    // next handshake, keeps the peer out. Thread-safe, asynchronous.
    void end_sessions(const std::string& user_id, const std::string& reason);

    // Queues `e` for peer `peer`. Never blocks on the network. Thread-safe.
    // Returns errc::nodedown if the peer is not up, errc::overloaded (and
    // counts it) if the peer's queue holds max_queue_bytes already,
    // errc::shutdown after stop(), errc::badarg for an envelope larger than
    // the peer accepts (limits.term.max_bytes for a cluster member, else
    // guest_limits'; nothing of it is queued, nor of the envelopes after it
    // in `es`). Envelopes posted to one peer from one thread arrive in order
    // per destination (docs/protocol.md 5.9: to a cluster member, one over
    // 64 KiB goes in fragments and envelopes to other actors, names or
    // services may pass it); no frame is built larger than the peer's
    // max_frame_bytes.
    result<void> post(std::string_view peer, const envelope& e);
    result<void> post(std::string_view peer, std::span<const envelope> es);

    // Runs `job` on the calling thread right after the current I/O turn,
    // while the transport's second I/O thread takes over the sockets, so the
    // job may block or run long without stalling the network. Only from a
    // transport callback (on the I/O thread). Up to max_jobs_per_turn jobs
    // of one turn run one after the other; those not started when the other
    // I/O thread takes the sockets over go to callbacks.run_elsewhere, so
    // jobs that wait for each other still run together.
    // Returns false, leaving `job` untouched, when that is not possible now:
    // not on the I/O thread, max_jobs_per_turn taken this turn, stopping, or
    // the other I/O thread busy with a job of its own; run the job elsewhere
    // then.
    // Saves the wake-up of another thread on the way from a request to its
    // reply (docs/architecture.md, "Threads").
    bool run_after_turn(std::function<void()>& job);

    // True if the calling thread is one of this transport's I/O threads (in
    // its loop, or running a run_after_turn job).
    bool on_own_thread() const noexcept;

    // True if `peer` is up now. Thread-safe.
    bool is_up(std::string_view peer) const;
    transport_stats stats() const;

    // Test hook: while frozen, the I/O thread touches no socket (a peer that
    // stops answering without closing its connections). Freezing returns
    // once the loop stands still (at most 2 s: a loop not running never
    // does). Thread-safe; not from the I/O thread.
    void debug_freeze(bool frozen);

    struct impl;

private:
    transport_options opts_;
    keypair keys_;
    std::unique_ptr<impl> impl_;
};

}  // namespace kith::detail
