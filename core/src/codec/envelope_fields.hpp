// envelope_fields.hpp (private to codec/) — the per-type field lists that
// drive the envelope codec: encoding and the msgpack path (envelope.cpp) and
// the fast path (envelope_fast.cpp) read the same tables.
#pragma once

#include <string>
#include <tuple>

#include "kith/envelope.hpp"

namespace kith::detail::envelope_fields {

// ---- per-type field lists ---------------------------------------------------
// One table drives both encoding and decoding: the fields in wire order and
// their names (for error descriptions).

template <class E>
struct meta;

// Field accessors (const and non-const) for each envelope.
#define KITH_FIELDS(T, ...)                                                        \
    [[maybe_unused]] inline auto fields(T& e) { return std::tie(__VA_ARGS__); }    \
    [[maybe_unused]] inline auto fields(const T& e) { return std::tie(__VA_ARGS__); }

// Raw-byte fields travel as msgpack bin (a str must be UTF-8 text).
struct bin_ref {
    std::string& s;
};
struct bin_cref {
    const std::string& s;
};
[[maybe_unused]] inline auto fields(env_handshake& e) {
    return std::tuple<std::uint32_t&, std::string&, std::uint64_t&, std::vector<std::string>&, bool&, std::string&,
                      bin_ref, bin_ref, std::uint16_t&, std::uint16_t&>(e.version, e.node, e.creation, e.services,
                                                                        e.hidden, e.key, bin_ref{e.nonce},
                                                                        bin_ref{e.proof}, e.port, e.member_port);
}
[[maybe_unused]] inline auto fields(const env_handshake& e) {
    return std::tuple<const std::uint32_t&, const std::string&, const std::uint64_t&, const std::vector<std::string>&,
                      const bool&, const std::string&, bin_cref, bin_cref, const std::uint16_t&, const std::uint16_t&>(
        e.version, e.node, e.creation, e.services, e.hidden, e.key, bin_cref{e.nonce}, bin_cref{e.proof}, e.port,
        e.member_port);
}
KITH_FIELDS(env_send, e.to, e.msg)
KITH_FIELDS(env_send_named, e.name, e.msg)
KITH_FIELDS(env_spawn_request, e.req_id, e.from, e.service, e.actor_type, e.args, e.flags, e.monitor_ref)
KITH_FIELDS(env_spawn_reply, e.req_id, e.code, e.spawned, e.detail)
KITH_FIELDS(env_call, e.req_id, e.from, e.service, e.function, e.args, e.timeout_ms)
KITH_FIELDS(env_cast, e.service, e.function, e.args)
KITH_FIELDS(env_reply, e.req_id, e.code, e.value)
KITH_FIELDS(env_monitor, e.from, e.target, e.mref)
KITH_FIELDS(env_demonitor, e.from, e.target, e.mref)
KITH_FIELDS(env_down, e.mref, e.who, e.to, e.reason)
KITH_FIELDS(env_link, e.from, e.to)
KITH_FIELDS(env_unlink, e.from, e.to)
KITH_FIELDS(env_exit, e.from, e.to, e.reason, e.linked)
KITH_FIELDS(env_heartbeat, e.seq, e.ack)
KITH_FIELDS(env_goodbye, e.reason)
KITH_FIELDS(env_request, e.to, e.from, e.tag, e.msg)
KITH_FIELDS(env_response, e.to, e.tag, e.code, e.value)
[[maybe_unused]] inline auto fields(env_fragment& e) {
    return std::tuple<std::uint64_t&, std::uint32_t&, std::uint32_t&, bin_ref>(e.id, e.offset, e.total,
                                                                                 bin_ref{e.data});
}
[[maybe_unused]] inline auto fields(const env_fragment& e) {
    return std::tuple<const std::uint64_t&, const std::uint32_t&, const std::uint32_t&, bin_cref>(
        e.id, e.offset, e.total, bin_cref{e.data});
}
KITH_FIELDS(env_credit, e.bytes)
[[maybe_unused]] inline auto fields(env_move& e) { return std::tuple<bin_ref>(bin_ref{e.link}); }
[[maybe_unused]] inline auto fields(const env_move& e) { return std::tuple<bin_cref>(bin_cref{e.link}); }
KITH_FIELDS(env_move_ack, e.accepted)

#define KITH_META(T, TAG, ...)                                                     \
    template <>                                                                    \
    struct meta<T> {                                                               \
        static constexpr env_type type = env_type::TAG;                            \
        static constexpr const char* name = #TAG;                                  \
        static constexpr const char* field_names[] = {__VA_ARGS__};                \
    };

KITH_META(env_handshake, handshake, "version", "node", "creation", "services", "hidden", "key", "nonce", "proof", "port", "member_port")
KITH_META(env_send, send, "to", "msg")
KITH_META(env_send_named, send_named, "name", "msg")
KITH_META(env_spawn_request, spawn_request, "req_id", "from", "service", "actor_type", "args", "flags", "monitor_ref")
KITH_META(env_spawn_reply, spawn_reply, "req_id", "code", "spawned", "detail")
KITH_META(env_call, call, "req_id", "from", "service", "function", "args", "timeout_ms")
KITH_META(env_cast, cast, "service", "function", "args")
KITH_META(env_reply, reply, "req_id", "code", "value")
KITH_META(env_monitor, monitor, "from", "target", "mref")
KITH_META(env_demonitor, demonitor, "from", "target", "mref")
KITH_META(env_down, down, "mref", "who", "to", "reason")
KITH_META(env_link, link, "from", "to")
KITH_META(env_unlink, unlink, "from", "to")
KITH_META(env_exit, exit, "from", "to", "reason", "linked")
KITH_META(env_heartbeat, heartbeat, "seq", "ack")
KITH_META(env_goodbye, goodbye, "reason")
KITH_META(env_request, request, "to", "from", "tag", "msg")
KITH_META(env_response, response, "to", "tag", "code", "value")
KITH_META(env_fragment, fragment, "id", "offset", "total", "data")
KITH_META(env_credit, credit, "bytes")
KITH_META(env_move, move, "link")
KITH_META(env_move_ack, move_ack, "accepted")

#undef KITH_META
#undef KITH_FIELDS

}  // namespace kith::detail::envelope_fields
