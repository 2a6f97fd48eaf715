// source_guard.hpp (private to transport/) — rations the TCP connections a
// listening port accepts from each source address (docs/security.md,
// "Connections per address").
//
// Every connection a listener accepts costs the node a TCP accept and close,
// libzmq's engine and its CURVE handshake (a few X25519 operations and
// guarded allocations) before ZAP can refuse its key: a peer that opens
// connections in a loop (with fresh keys, a revoked key, or no handshake at
// all) costs the node CPU whatever its key. So each listener counts the
// connections it accepts per source (an IPv4 address, or an IPv6 /64) in a
// token bucket, twice: as libzmq reports them accepted (best effort: the
// address is read from the connection's fd, which a short connection has
// closed by then) and as their CURVE handshakes reach ZAP (exact: ZAP is
// told the address). A source over either bucket is *blocked*: a classic BPF filter
// on the listening socket drops its SYNs in the kernel, before a connection
// exists, for 2 s, doubling while it offends again (at most 60 s). Its
// connections already open are not touched. The dropped SYNs also slow the
// offender down: its TCP retries them after 1, 3, 7 ... s.
//
// Not thread-safe: the transport's I/O thread owns each guard.
#pragma once

#include <linux/filter.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace kith::detail {

// A connection's source, as rationed: an IPv4 address, or an IPv6 /64
// prefix (one host can have a whole /64). IPv4-mapped IPv6 is IPv4.
struct source_addr {
    bool v6 = false;
    std::array<std::uint8_t, 8> bytes{};  // v4: first 4 bytes; v6: the /64 prefix
    bool operator==(const source_addr& o) const noexcept { return v6 == o.v6 && bytes == o.bytes; }
    bool operator<(const source_addr& o) const noexcept {
        return v6 != o.v6 ? v6 < o.v6 : bytes < o.bytes;
    }
    // "192.0.2.7" or "2001:db8:1:2::/64".
    std::string text() const;
    // 127.0.0.0/8 or ::1's /64: this machine itself.
    bool loopback() const noexcept;
    // The source of a socket address; nullopt for other families.
    static std::optional<source_addr> of(const sockaddr_storage& sa);
};

struct source_addr_hash {
    std::size_t operator()(const source_addr& s) const noexcept;
};

class source_guard {
public:
    using clock = std::chrono::steady_clock;
    // `per_s` connections a second per source, with `burst`; 0: unlimited.
    source_guard(double per_s = 0, double burst = 0) : rate_(per_s), burst_(burst) {}

    // The blocks this guard holds at most (the BPF program checks each SYN
    // against every one; classic BPF allows 4096 instructions). Fewer when
    // the program would not fit the kernel's socket option memory
    // (`optmem_max`, 20 KiB on Linux before 6.9): set_memory_budget.
    static constexpr std::size_t max_blocked = 512;
    // What the program may cost in socket option memory (bytes, as the
    // kernel charges it: about 24 bytes per IPv4 block, 48 per IPv6 one,
    // and 512 for the rest); a block that would take it over ends the one
    // closest to its end instead.
    void set_memory_budget(std::size_t bytes) noexcept { budget_ = bytes; }
    // Half of /proc/sys/net/core/optmem_max (20480 when unreadable): the old
    // program and its replacement may be charged together.
    static std::size_t default_memory_budget();
    // Sources whose buckets are remembered at most (the oldest idle ones are
    // forgotten first; a forgotten source starts with a full bucket).
    static constexpr std::size_t max_tracked = 8192;
    static constexpr std::chrono::seconds first_block{2}, longest_block{60};

    struct block_info {
        source_addr source;
        std::chrono::milliseconds length;
    };
    // Where a connection was seen: accepted (ZMQ_EVENT_ACCEPTED), or its
    // handshake at ZAP. Each has a bucket of its own, so a connection seen
    // both ways is charged once in each.
    enum class seen : std::uint8_t { accepted, at_zap };
    // A connection from `s` was seen at `now`. When that takes `s` over
    // its budget, `s` is blocked and the block is returned (the caller then
    // installs program()).
    std::optional<block_info> accepted(const source_addr& s, clock::time_point now, seen how = seen::accepted);
    // Ends blocks that are over, forgets buckets that are full again; true
    // when the set of blocked sources changed (install program() again).
    bool expire(clock::time_point now);
    // The socket filter for the current blocks: passes every packet but a
    // SYN (without ACK) from a blocked source. Empty when nothing is blocked.
    std::vector<sock_filter> program() const;
    std::size_t blocked() const noexcept { return blocks_.size(); }
    bool enabled() const noexcept { return rate_ > 0; }

private:
    struct bucket {
        double tokens = 0;
        clock::time_point last{};
    };
    struct buckets {
        bucket of[2];
        // True when both are full again at `now`.
        bool full(double rate, double burst, clock::time_point now) const;
    };
    struct block {
        clock::time_point until{};
        std::chrono::milliseconds length{0};  // of the last block: the next one is twice as long
        clock::time_point last_end{};         // a source that stays good this long is forgiven
    };
    // Ends the block closest to its end (remembered in history_).
    void end_soonest();
    std::size_t cost(std::size_t v4, std::size_t v6) const noexcept { return 512 + 24 * v4 + 48 * v6; }
    double rate_, burst_;
    std::size_t budget_ = 10240;
    std::size_t v4_blocks_ = 0, v6_blocks_ = 0;
    std::unordered_map<source_addr, buckets, source_addr_hash> buckets_;
    std::map<source_addr, block> blocks_;     // sources blocked now
    std::map<source_addr, block> history_;    // blocks that ended, remembered to double the next
};

// Installs `prog` on the listening socket `fd` (SO_ATTACH_FILTER; an empty
// program detaches). Returns an error text, empty on success. Connections
// accepted while a program is installed keep it (the kernel copies a
// listener's filter to its new sockets): it passes all their packets after
// checking one flag.
std::string install_socket_filter(int fd, const std::vector<sock_filter>& prog);

}  // namespace kith::detail
