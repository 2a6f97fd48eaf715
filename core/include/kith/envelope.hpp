// kith/envelope.hpp — the typed envelopes that cross between nodes, and the
// frame codec that batches several of them into one ZeroMQ message.
//
// The byte layout is specified in docs/protocol.md (normative); the golden
// vectors there are checked by tests/codec. Envelopes are plain structs held in
// one std::variant and dispatched with std::visit.
//
// Thread-safety: plain values; the codec functions are reentrant.
// Errors: decoding never throws; malformed, truncated or over-limit input
// yields errc::decode with a description.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kith/term.hpp"

namespace kith {

// Protocol version carried in every frame header. Used on the wire; a node
// refuses frames of another major version.
inline constexpr std::uint8_t protocol_version = 5;

// Envelope type tags. Used on the wire; never change, only append.
enum class env_type : std::uint8_t {
    handshake = 1,
    send = 2,
    send_named = 3,
    spawn_request = 4,
    spawn_reply = 5,
    call = 6,
    cast = 7,
    reply = 8,
    monitor = 9,
    demonitor = 10,
    down = 11,
    link = 12,
    unlink = 13,
    exit = 14,
    heartbeat = 15,
    goodbye = 16,
    request = 17,
    response = 18,
    fragment = 19,
    credit = 20,
    move = 21,
    move_ack = 22,
};

// Flags of a spawn request. Used on the wire.
enum spawn_flags : std::uint8_t { spawn_plain = 0, spawn_link_flag = 1, spawn_monitor_flag = 2 };

// First envelope on every new connection, in both directions.
struct env_handshake {
    std::uint32_t version = protocol_version;
    std::string node;            // sender's full node name, "name@host"
    std::uint64_t creation = 0;  // sender's incarnation (start time, ms); a restart changes it
    std::vector<std::string> services;  // services the sender offers (for information)
    bool hidden = false;         // a short-lived CLI node that others should not list
    // The sender's long-term public key in Z85 (40 characters), or empty.
    // Information only (for fingerprints shown to people): the server side
    // of a link is authenticated by CURVE, never by this field.
    std::string key;
    // Raw bytes, msgpack bin. `nonce`: 16 fresh random bytes per connection
    // (or empty). `proof`: empty, or the 32-byte membership proof a server
    // gives a client that connected with the cluster key (docs/protocol.md,
    // "Membership is proven both ways").
    std::string nonce;
    std::string proof;
    // The TCP port of the sender's advertised (else bound) public endpoint,
    // 0 if it has none. Information only, for the endpoint people see of an
    // inbound peer (its observed address with this port): a receiver never
    // dials it and never matches a dialled endpoint against it.
    std::uint16_t port = 0;
    // Sent only in a listener's answer to a cluster member that dialled its
    // public port: the member port's TCP port on the host the member
    // dialled, so that the member may move its link there (docs/protocol.md,
    // "Moving to the member port"); 0 otherwise, and always from a dialler.
    std::uint16_t member_port = 0;
    friend bool operator==(const env_handshake&, const env_handshake&) = default;
};

// Deliver `msg` to the actor `to` (whose node is the receiver).
struct env_send {
    pid to;
    term msg;
    friend bool operator==(const env_send&, const env_send&) = default;
};

// Deliver `msg` to the actor registered as `name` on the receiver.
struct env_send_named {
    std::string name;
    term msg;
    friend bool operator==(const env_send_named&, const env_send_named&) = default;
};

// Ask the receiver to spawn `service`/`actor_type` with `args`.
struct env_spawn_request {
    std::uint64_t req_id = 0;  // chosen by the requester, echoed in the reply
    pid from;                  // requesting actor (link/monitor target)
    std::string service;
    std::string actor_type;
    term args;                 // normally an array
    std::uint8_t flags = spawn_plain;  // spawn_flags
    ref monitor_ref;           // set when flags has spawn_monitor_flag
    friend bool operator==(const env_spawn_request&, const env_spawn_request&) = default;
};

struct env_spawn_reply {
    std::uint64_t req_id = 0;
    errc code = errc::ok;
    pid spawned;               // valid when code == ok
    std::string detail;        // error detail when code != ok
    friend bool operator==(const env_spawn_reply&, const env_spawn_reply&) = default;
};

// rpc call: reply expected (env_reply with the same req_id).
struct env_call {
    std::uint64_t req_id = 0;
    pid from;                  // caller (may be the null pid for a non-actor caller)
    std::string service;
    std::string function;
    term args;                 // normally an array
    std::uint32_t timeout_ms = 0;  // caller's remaining deadline; 0 = none given
    friend bool operator==(const env_call&, const env_call&) = default;
};

// rpc cast: no reply.
struct env_cast {
    std::string service;
    std::string function;
    term args;
    friend bool operator==(const env_cast&, const env_cast&) = default;
};

// Reply to a call (or to an actor-level request carried by env_send).
struct env_reply {
    std::uint64_t req_id = 0;
    errc code = errc::ok;
    term value;                // result when ok; error detail string otherwise
    friend bool operator==(const env_reply&, const env_reply&) = default;
};

struct env_monitor {
    pid from;                  // watcher (on the sender node)
    pid target;                // watched (on the receiver node)
    ref mref;
    friend bool operator==(const env_monitor&, const env_monitor&) = default;
};

struct env_demonitor {
    pid from;
    pid target;
    ref mref;
    friend bool operator==(const env_demonitor&, const env_demonitor&) = default;
};

struct env_down {
    ref mref;
    pid who;                   // the actor that ended
    pid to;                    // the watcher
    term reason;
    friend bool operator==(const env_down&, const env_down&) = default;
};

struct env_link {
    pid from;
    pid to;
    friend bool operator==(const env_link&, const env_link&) = default;
};

struct env_unlink {
    pid from;
    pid to;
    friend bool operator==(const env_unlink&, const env_unlink&) = default;
};

// An exit signal from `from` to `to` (link propagation or an explicit exit/2).
struct env_exit {
    pid from;
    pid to;
    term reason;
    bool linked = false;       // true: propagated along a link; false: an explicit exit/2
    friend bool operator==(const env_exit&, const env_exit&) = default;
};

struct env_heartbeat {
    std::uint64_t seq = 0;
    bool ack = false;          // true: answer to a heartbeat
    friend bool operator==(const env_heartbeat&, const env_heartbeat&) = default;
};

// Sent once before a clean close; the receiver declares the sender down at once.
struct env_goodbye {
    std::string reason;        // "shutdown", ...
    friend bool operator==(const env_goodbye&, const env_goodbye&) = default;
};

// An actor-level request (the building block of request/response with a
// deadline): deliver `msg` to `to` as a request from `from` tagged `tag`.
struct env_request {
    pid to;
    pid from;
    ref tag;                   // the request's ref, echoed in the response
    term msg;
    friend bool operator==(const env_request&, const env_request&) = default;
};

// A piece of one large envelope (docs/protocol.md §5.9): between cluster
// members only, handled by the transport (never delivered to the node).
// `data` is bytes [offset, offset + size) of the envelope's encoding, which
// is `total` bytes long; message `id`'s pieces come in order, one message
// at a time.
struct env_fragment {
    std::uint64_t id = 0;
    std::uint32_t offset = 0;
    std::uint32_t total = 0;
    std::string data;          // msgpack bin
    friend bool operator==(const env_fragment&, const env_fragment&) = default;
};

// The receiver of fragments consumed `bytes` more of them: the sender may
// have that many more in flight (§5.9).
struct env_credit {
    std::uint64_t bytes = 0;
    friend bool operator==(const env_credit&, const env_credit&) = default;
};

// Between cluster members only, handled by the transport (docs/protocol.md,
// "Moving to the member port"): a dialler tells the listener, on the link it
// dialled, that it sends on its other link `link` (that link's 16-byte
// routing id) from the listener's answer on; `move_ack` is that answer, on
// the same link, the last envelope the listener sends there if `accepted`.
struct env_move {
    std::string link;          // msgpack bin, 16 bytes
    friend bool operator==(const env_move&, const env_move&) = default;
};
struct env_move_ack {
    bool accepted = false;
    friend bool operator==(const env_move_ack&, const env_move_ack&) = default;
};

// The answer to an env_request.
struct env_response {
    pid to;                    // the requester
    ref tag;                   // the request's tag
    errc code = errc::ok;
    term value;                // result when ok; error detail otherwise
    friend bool operator==(const env_response&, const env_response&) = default;
};

using envelope = std::variant<env_handshake, env_send, env_send_named, env_spawn_request, env_spawn_reply,
                              env_call, env_cast, env_reply, env_monitor, env_demonitor, env_down, env_link,
                              env_unlink, env_exit, env_heartbeat, env_goodbye,
                              env_request, env_response, env_fragment, env_credit, env_move, env_move_ack>;

env_type type_of(const envelope& e) noexcept;

// Limits for decoding a frame from an untrusted peer.
struct frame_limits {
    std::size_t max_frame_bytes = 8u << 20;  // one ZeroMQ message
    std::size_t max_envelopes = 65536;       // envelopes in one frame
    decode_limits term;                      // applied to each envelope (max_bytes = max envelope size)
};

// A frame under construction: a header followed by envelopes appended one by
// one. Not thread-safe; one writer.
class frame_builder {
public:
    frame_builder();
    // Appends one encoded envelope. Returns the frame's size afterwards.
    std::size_t add(const envelope& e);
    std::size_t count() const noexcept { return count_; }
    std::size_t size() const noexcept { return buf_.size(); }
    bool empty() const noexcept { return count_ == 0; }
    // Moves the finished frame out and resets the builder to an empty frame.
    std::string take();
    // Removes the envelope appended last; `size_before` is size() as it was
    // before that add().
    void drop_last(std::size_t size_before);
    // Moves out a frame of every envelope but the last (`size_before` as for
    // drop_last); the builder keeps the last one alone. Needs count() >= 2.
    std::string take_all_but_last(std::size_t size_before);

private:
    std::string buf_;
    std::size_t count_ = 0;
};

// Encodes a frame holding exactly one envelope.
std::string encode_frame(const envelope& e);

// Decodes every envelope of a frame. All or nothing: on any error no envelope
// is returned.
result<std::vector<envelope>> decode_frame(std::string_view frame, const frame_limits& limits = {});

// Encodes / decodes one envelope body (no frame header). decode_envelope
// requires the bytes to hold exactly one envelope.
void encode_envelope(const envelope& e, std::string& out);
result<envelope> decode_envelope(std::string_view bytes, const decode_limits& limits = {});

}  // namespace kith
