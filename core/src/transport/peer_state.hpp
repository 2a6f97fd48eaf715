// peer_state.hpp (private to transport/) — the per-peer state the I/O
// thread keeps: the frame queue posting threads share with it, a link (one
// connection), a grantee's or stranger's session as the guest decoder sees
// it, and a session (a named peer over one or more links). Included by
// transport_impl.hpp; the threads that may touch each field are said where
// it is declared.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "transport/bulk.hpp"
#include "transport/transport.hpp"

namespace kith::detail {

using clock = std::chrono::steady_clock;

// A frame queue shared between posting threads and the I/O thread.
struct peer_queue {
    explicit peer_queue(std::string n) : name(std::move(n)) {}
    std::string name;
    std::mutex mu;
    frame_builder cur;                // batch under construction
    std::deque<std::string> frames;   // finished batches, oldest first
    std::size_t bytes = 0;            // bytes in cur + frames + the I/O thread's unsent frames
    bool dirty = false;               // on the I/O thread's dirty list
    bool closed = false;              // the peer went down; post() answers nodedown
    // What the peer accepts from us (its budget for our kind of peer,
    // assumed configured as ours): post() refuses a larger envelope and
    // never builds a larger frame, so nothing is dropped unread there.
    std::size_t max_envelope = SIZE_MAX;
    std::size_t max_frame = SIZE_MAX;
    // Large envelopes (cluster members only: `fragments`): `bulk` waits to
    // move to the session's; bulk_keys counts the items of each key queued
    // or in progress in either, so that post() puts a later envelope to the
    // same destination behind them.
    bool fragments = false;
    std::deque<bulk_item> bulk;
    std::unordered_map<std::uint64_t, std::size_t> bulk_keys;
};

enum class lstate { connecting, handshaking, established };

struct link {
    bool outbound = false;
    lstate state = lstate::connecting;
    std::string peer;                  // node name once established
    std::uint64_t peer_creation = 0;
    clock::time_point last_rx{}, next_hb{}, hs_deadline{};
    peer_auth auth;
    std::string endpoint;
    std::string nonce;                 // outbound: the nonce our handshake sent (the server's proof covers it)
    // inbound
    std::string rid;
    int fd = -1;
    bool reset_sent = false;
    // outbound
    zmq::socket_t dealer;              // empty while closed
    zmq::socket_t mon;                 // its monitor (PAIR)
    public_key server_key;
    link_credentials creds;
    int silent_failures = 0;           // consecutive quick CURVE failures without detail
    // The server once completed a CURVE handshake with `server_key`: quick
    // silent failures after that are a proxy or tunnel whose backend is
    // away (or a server with a new key), dialled again slowly, never refused.
    bool key_proven = false;
    int slow_redials = 0;              // pauses in a row (1, 2, 4, 8, 8 ... s)
    clock::time_point redial_at{};     // while paused (no socket): when to dial again
    clock::time_point connected_at{};  // last TCP connect of the socket
    bool zmq_ok = false;               // ZMQ (CURVE) handshake succeeded on this socket
    bool refused = false;              // terminal: closed after a refusal
    bool told_before_close = false;    // a goodbye is queued: close with linger so that it goes out
    bool doomed = false;               // disconnected/replaced: erased at the end of the loop turn
    std::string dealer_rid;            // outbound: this socket's 16-byte routing id
    std::size_t item = 0;              // outbound: its DEALER's index in the poll set (0: not polled)
    // Moving to the member port (moves.cpp; docs/protocol.md, "Moving to the
    // member port"). On the link dialled at a public port (L1): `mover`, the
    // link dialled at the same node's member port for it. On that link (L2):
    // `move_of`, L1; L2 is never dialled again: when it fails or the move
    // does not complete by `move_deadline`, it is closed and L1 carries on.
    // After the move L1 is closed, silently, and `parked`: dialled again
    // when the mover ends. `move_answered`: an inbound link answers one
    // `move` (a second is a protocol error).
    link* mover = nullptr;
    link* move_of = nullptr;
    enum class move_step : std::uint8_t { dialling, awaiting, done } move = move_step::dialling;
    clock::time_point move_deadline{};
    bool parked = false;
    bool move_answered = false;
    // A mover whose move is not done: no goodbye on it (the node reads the
    // member port first and would end the session before the rest of L1).
    bool pending_mover() const noexcept { return move_of && move != move_step::done; }
    // A mover waiting for the node's answer: not read, nor polled.
    bool awaiting_move() const noexcept { return move_of && move == move_step::awaiting; }
};

// A session of a grantee or a stranger, as the guest decoder sees it
// (sessions_guest.cpp): `up` is cleared, under `mu`, when the session ends,
// and the decoder delivers a frame's envelopes only under `mu` with `up`
// set, so nothing of a session reaches the node after its down.
struct guest_session {
    std::mutex mu;
    bool up = true;
};
// A frame of a grantee or a stranger waiting for the guest decoder.
struct guest_frame {
    std::string peer;                    // the session's node name
    std::string rid;                     // the link's routing id (for a goodbye)
    peer_auth auth;
    std::shared_ptr<guest_session> gs;
    std::string bytes;
};
struct session {
    std::string name;
    std::shared_ptr<guest_session> guest;  // inbound grantees and strangers only
    peer_info info;
    link* primary = nullptr;
    std::vector<link*> links;
    std::shared_ptr<peer_queue> q;
    std::deque<std::string> unsent;    // taken from q, not yet accepted by ZeroMQ
    // Sending to a non-member (we are its grantee or stranger, or it is
    // ours): what it reads of us is budgeted (guest_bytes_per_s, each frame
    // charged guest_frame_cost_bytes) and dropped unread beyond, so flush
    // paces frames to that budget instead (< 0: new, starts at the burst).
    double pace_tokens = -1;
    clock::time_point pace_last{};
    // Sending large envelopes (bulk.cpp): items taken from q, sent in
    // order once `unsent` is empty; the front one, if large, in fragments.
    std::deque<bulk_item> bulk;
    std::size_t bulk_off = 0;          // bytes of bulk.front() handed to ZeroMQ
    std::uint64_t bulk_id = 0;         // id of the large envelope in progress
    std::size_t in_flight = 0;         // fragment bytes sent and not credited
    // Since when a fragment waits for credit (the window is full), reset by
    // each credit; epoch: not waiting. housekeeping ends a session that
    // waits longer than heartbeat_timeout (a member withholding credit).
    clock::time_point credit_wait_since{};
    // Receiving: the one large envelope in progress (at most the members'
    // max envelope size, limits.term.max_bytes).
    std::uint64_t credit_owed = 0;     // credit not yet accepted by ZeroMQ (sent by flush)
    bool rx_on = false;
    std::uint64_t rx_id = 0;
    std::uint32_t rx_total = 0;
    std::string rx;
    // A move of our link to the peer's member port waits for its answer:
    // nothing is sent to the peer meanwhile (moves.cpp).
    bool hold = false;
    // Listener: the answer to a move waits in `unsent`; once the last
    // `move_after` frames are handed on, `move_to` is the primary (flush).
    link* move_to = nullptr;
    std::size_t move_after = 0;
};

}  // namespace kith::detail
