// discovery_impl.hpp (private) — the state of one kith::discovery object and
// the files that work on it:
//   budgets.hpp       flood limits: token buckets per source, sender replay state
//   beacon_io.cpp     the UDP sockets: setup, sending, interface enumeration,
//                     draining datagrams, answering queries
//   seen.cpp          a received beacon checked (freshness, replay, budgets)
//                     and applied to the seen table; expiry; the list
//   auto_connect.cpp  dialing cluster members (who dials, back-off, redial)
//   discovery.cpp     the thread's loop and the public methods
//
// One thread per discovery object (run()) owns the sockets, the budgets and
// the replay table; `mu` guards what other threads read (seen, counters,
// hints said). Callbacks of connect_async run on kith threads and hold only a
// weak pointer (the object may be gone).
#pragma once

#include <netinet/in.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "beacon.hpp"
#include "budgets.hpp"
#include "kith/discovery.hpp"

namespace kith {

namespace disc {

using clock_type = std::chrono::steady_clock;

// Milliseconds since the epoch (beacon timestamps).
std::uint64_t wall_ms();
// The first four bytes of a cluster id, as people compare them (8 hex).
std::string id_hex(const std::uint8_t* id);
// "tcp://host:port" -> (host, port); port 0 if unparsable.
std::pair<std::string, std::uint16_t> split_endpoint(const std::string& ep);

struct fd_guard {
    int fd = -1;
    ~fd_guard();
};

}  // namespace disc

struct discovery::impl : std::enable_shared_from_this<discovery::impl> {
    using clock_type = disc::clock_type;
    struct entry {
        seen_node info;
        bool cluster = false;
        clock_type::time_point first_heard{};
        bool dialing = false;
        clock_type::time_point next_dial{};  // back-off after a failed dial
        int refusals = 0;                    // dials refused in a row (back-off doubles)
        bool public_next = false;            // the last dial of the member port failed: try the public one
    };

    node& n;
    discovery_options o;
    std::string my_name;
    public_key my_key;
    std::uint16_t my_port = 0;
    std::uint16_t my_member_port = 0;  // 0: none announced (node::member_endpoint is empty)
    std::string my_endpoint;  // advertised endpoint in beacons ("" = source address)
    std::optional<detail::beacon_hmac_key> hkey;

    disc::fd_guard rx, tx, wake;
    std::thread th;
    std::atomic<bool> stopping{false};
    std::atomic<bool> query_now{false};

    mutable std::mutex mu;  // seen, counters, said
    std::condition_variable cv;
    std::map<std::string, entry, std::less<>> seen;
    discovery_counters c;

    static constexpr std::size_t max_seen = 4096;  // strangers beyond are not listed
    std::string my_cluster;                          // our cluster id, 8 hex ("" without a cookie)
    std::set<std::string> said;                      // hints said once (bounded)
    // The broadcast destinations of the last enumeration.
    std::set<std::uint32_t> bcast;

    // Flood limits and replay protection (discovery thread only; budgets.hpp).
    disc::flood_budgets budgets;
    std::array<std::uint8_t, 16> copy_key{};  // crypto_shorthash key of sender_state::digest (random)
    std::uint64_t digest(std::span<const std::uint8_t> data) const;
    // The discovery thread's pause after a turn that read several datagrams (run()).
    static constexpr auto flood_coalesce = std::chrono::milliseconds(1);
    // Datagrams read with one recvmmsg (drain), allocated at setup.
    static constexpr unsigned rx_batch = 32;
    struct rx_buffers;
    std::unique_ptr<rx_buffers> rxb;
    std::uint64_t last_sent_ts = 0;  // our own timestamps strictly increase
    // Broadcast queries are answered by an early broadcast announce, at most
    // one per early_gap.
    clock_type::time_point last_early{};
    bool early_pending = false;
    clock_type::duration early_gap() const;
    std::uint64_t skew_ms() const;            // o.max_clock_skew, never negative
    void prune(clock_type::time_point now);  // budgets.prune with our clock and skew

    impl(node& nd, discovery_options opts);
    ~impl();

    // Says a hint once (o.log, else the default sink); call without mu held.
    void hint(const std::string& once_key, const std::string& line);
    void count(std::uint64_t discovery_counters::*field);

    // --- beacon_io.cpp
    void setup();  // throws setup_error
    void wakeup();
    detail::beacon make(detail::beacon_type t);
    std::vector<std::uint8_t> encode(const detail::beacon& b) const;
    void send_to(const std::vector<std::uint8_t>& bytes, const sockaddr_in& to);
    std::vector<std::uint32_t> enumerate();
    std::vector<sockaddr_in> peer_addrs() const;
    void broadcast(detail::beacon_type t, const std::vector<std::uint32_t>* only = nullptr, bool to_peers = true);
    void send_query(const std::vector<std::uint32_t>* only = nullptr, bool to_peers = true);
    int drain(int fd);  // returns the datagrams read
    bool is_broadcast(std::uint32_t dst) const;
    void answer(bool cluster, std::size_t query_size, const sockaddr_in& from, bool broadcast_dst,
                clock_type::time_point now);

    // --- seen.cpp
    void handle(std::span<const std::uint8_t> data, const sockaddr_in& from, bool broadcast_dst = false);
    // A copy of, or a datagram not newer than, the newest beacon taken from
    // the sender it names: counted and dropped before decoding or the HMAC.
    bool known_copy(std::span<const std::uint8_t> data, clock_type::time_point now);
    bool fresh_and_new(const detail::beacon& b, std::span<const std::uint8_t> data, const sockaddr_in& from,
                       clock_type::time_point now);
    void expire(clock_type::time_point now);
    std::vector<seen_node> list() const;

    // --- auto_connect.cpp
    void maybe_dial(entry& e, clock_type::time_point now, std::unique_lock<std::mutex>& lk);
    void redial(clock_type::time_point now);

    // --- discovery.cpp
    void run();
};

}  // namespace kith
