// transport_internal.hpp (private to transport/) — helpers and constants
// the transport's parts share: names of goodbyes, service-name and endpoint
// checks, the I/O loop's thread-locals and its bounds. Included by
// transport_impl.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kith::detail {

namespace transport_internal {

// Sockets: cppzmq's RAII types (zmq::socket_t, zmq::message_t). Their calls
// throw zmq::error_t on failure, except send/recv with dontwait, which
// return an empty result on EAGAIN: every libzmq return code is seen. At
// start a failure is a setup_error; at run time it is logged and counted
// (socket_error, transport_stats::socket_errors), and the link concerned
// fails. The hot path costs what the raw calls cost: send is zmq_send,
// receive is zmq_msg_recv into a message reused across a batch.

// ZAP metadata property carrying the client's key in Z85, so that each
// inbound message names its key as well as its User-Id.
constexpr const char* key_property = "X-Kith-Key";

// Maps a goodbye's reason to a nodedown reason.
inline std::string down_reason_of_goodbye(const std::string& r) {
    if (r == "shutdown" || r == "revoked") return r;
    if (r.starts_with("refused")) return "refused";
    return "connection_closed";
}

// A service name as kith accepts it anywhere: 1-64 of [A-Za-z0-9._-].
inline bool valid_service_name(std::string_view s) noexcept {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    return true;
}

// Heterogeneous lookup by string_view (post() looks a peer up per call).
struct name_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// The transport whose I/O thread this is, if any: post() from inside a
// callback needs no wake-up, since the loop flushes dirty queues after
// running the callbacks of the same turn.
inline thread_local const void* tl_io_owner = nullptr;
// The transport whose run_after_turn job this thread is running, if any.
inline thread_local const void* tl_job_owner = nullptr;
inline thread_local std::uint64_t tl_job_lead = 0;  // the `lead` value while that job holds the sockets

// The port of "tcp://HOST:PORT" ("tcp://[v6]:PORT"), 0 if there is none.
inline std::uint16_t port_of(const std::string& endpoint) {
    const auto colon = endpoint.rfind(':');
    if (colon == std::string::npos || colon < 6 || colon + 1 >= endpoint.size() || endpoint.size() - colon > 6)
        return 0;
    unsigned v = 0;
    for (std::size_t i = colon + 1; i < endpoint.size(); ++i) {
        if (endpoint[i] < '0' || endpoint[i] > '9') return 0;
        v = v * 10 + static_cast<unsigned>(endpoint[i] - '0');
    }
    return v <= 65535 ? static_cast<std::uint16_t>(v) : 0;
}

// How long a run_after_turn job may keep the sockets before the follower
// takes them over. KITH_JOB_STEAL_AFTER_US is for profiling builds only:
// under valgrind every job runs ~50x slower and the turn would be handed
// on to workers, which a real run never does (docs/performance.md,
// "Measuring on a noisy machine").
#ifndef KITH_JOB_STEAL_AFTER_US
#define KITH_JOB_STEAL_AFTER_US 200
#endif
constexpr auto job_steal_after = std::chrono::microseconds(KITH_JOB_STEAL_AFTER_US);
// Jobs run_after_turn takes in one turn (a frame of calls); further ones
// run elsewhere at once.
constexpr std::size_t max_jobs_per_turn = 256;
// After a turn with activity the loop polls without blocking for a while:
// spin_window.hpp.

}  // namespace transport_internal

}  // namespace kith::detail
