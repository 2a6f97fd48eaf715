// relay_splice.hpp (private to services/) — the state of the relay's data
// plane loop (relay::impl::run, on its own thread): every connection it
// holds, SOCKS or spliced (relay_splice.cpp), and the session ports
// (relay_ports.cpp). Only the data plane's thread touches it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "relay_impl.hpp"

namespace kith::splice {

using clock = relay::impl::clock;

constexpr std::size_t kBuf = 64 * 1024;       // per direction of a session
constexpr std::size_t kMaxSocksBytes = 600;   // greeting (2+255) + request (5+255+2), with room

enum class state { greeting, request, waiting, spliced };

struct conn {
    int fd = -1;
    state s = state::greeting;
    std::string socks;  // SOCKS bytes read so far
    clock::time_point deadline;
    int peer = -1;
    std::vector<std::uint8_t> buf;  // read from this fd, to be written to the peer
    std::size_t off = 0, len = 0;
    bool dialler_side = false;
    std::string dialler, target, token, session;
    std::string account;   // dialler side: whose sessions it counts against (dial_token::account())
    std::string registrant;  // dialler side: the target's registration::account it counts against
    double rate = 0;       // bytes/s this direction may forward (0: unlimited): the session's
    double allowance = 0;  // bytes this direction may still forward (rate limit)
    clock::time_point refilled;
    std::uint32_t events = 0;
    bool eof = false;  // closed its side: what it sent is still delivered, then the session ends
    std::string port_session;  // a session port's connection (relay_ports.cpp): its session
    std::string pa;            // a dialler's port connection: its session's Pa
    clock::time_point since;   // when it came
    bool asked = false;        // the node was asked again to connect to Pa
    relay::impl::dial_token tok;  // a port connection's dial (relay_ports.cpp)
    // Forwarded in the kernel (relay_splice_kernel.cpp): `counted` of the
    // bytes the kernel redirected from fd are in the counters. With eof, the
    // session ends once the kernel has handed every byte from fd to the
    // peer's send queue and buf is empty.
    // held: the kernel's queue for the peer held too much, so fd's bytes
    // stay with fd (kernel_forward::hold): the relay reads them into buf
    // (read_total so far) and writes them to the peer itself once every
    // byte the kernel redirected before them has reached the peer: the
    // kernel's queue was seen empty when it had redirected drained_at
    // bytes, and has redirected no more since (may_write caches that).
    // TCP's window holds the sender back while buf is full.
    bool kernel = false, held = false, may_write = false;
    bool unpublished = false;  // held bytes written since the kernel was last told (release)
    bool stuck = false;        // held bytes not readable yet (behind the peer's): read on the tick
    int sndbuf_before = 0;     // its SO_SNDBUF before kernel_unstick gave it room (0: not given)
    // Held bytes past held_bound, piled up behind the peer's (which waited
    // for this side's send queue, where TCP's window does not count the
    // held ones), that the session is not ended for: what passed the bound
    // within kPileGrace of pile_since (the first look that found it past;
    // none: within the bound), from the relay-wide kMaxStuckPile, given
    // back as the pile is read (relay::impl::forgive_pile). pile_counted:
    // in kernel_late_piles.
    std::uint64_t piled = 0;
    clock::time_point pile_since{};
    bool pile_counted = false;
    std::uint64_t counted = 0, read_total = 0;
    std::uint64_t drained_at = ~std::uint64_t{0};
    // With eof: the bytes still waiting at the last look (kernel_tick).
    std::uint64_t drain_left = ~std::uint64_t{0};
};

// A kernel-forwarded direction whose bytes wait for the peer's send queue
// beyond kPauseAbove is held until fewer than a quarter of that wait.
constexpr std::uint64_t kPauseAbove = 4u << 20;  // released below a quarter of it
// A held side whose bytes wait behind its peer's in the kernel gets a TCP
// send queue large enough for those, up to this (relay::impl::kernel_unstick).
constexpr std::uint64_t kMaxUnstickSndbuf = 1u << 30;
// Held bytes past a session's bound that piled up behind the peer's while
// those waited (the room kernel_unstick made had not taken effect: the
// relay's thread or the kernel's worker off the CPU) that sessions are not
// ended for: what passed the bound within kPileGrace of its first passing
// it, at most kMaxStuckPile on the whole relay at once.
constexpr std::uint64_t kMaxStuckPile = 256u << 20;
constexpr std::chrono::milliseconds kPileGrace{1000};

// A port session: the connection each side holds (-1: none), and when each
// side last held one (a pair whose dialler has not been there for
// session_port_idle, or whose node has not been there for pair_timeout, is
// closed: relay_ports.cpp, ports_tick).
struct held {
    int d = -1, a = -1;
    clock::time_point d_seen, a_seen;
    bool a_came = false;  // the node reached Pa once (later absences: ask_port_again)
    std::string target, pa;  // its registered node, and the Pa that node was told
};

struct loop {
    std::map<int, conn> conns;
    // Spliced connections with a rate: while there are any, deadlines and
    // refills are looked at every 20 ms instead of 100.
    std::size_t rated = 0;
    // Bytes forwarded since the counters were last updated: added under mu
    // once per wake-up, not once per send.
    std::uint64_t forwarded = 0;
    std::uint64_t user_reads = 0;  // likewise: recv calls that returned session bytes
    // Kernel-forwarded connections that ended and wait for their last bytes
    // to reach the peer's send queue: looked at every drain_tick while any
    // do, 2 ms while their bytes move or a side has just ended, doubled up
    // to 100 ms while none did (a peer that does not read costs the relay
    // no 2 ms wake-ups).
    std::size_t draining = 0;
    std::chrono::milliseconds drain_tick{2};
    // A kernel-forwarded session is live (not ended): the queues are looked
    // at every 10 ms, a quiet session's too (it may start sending at any
    // moment; kernel_tick pauses what is over kPauseAbove).
    bool kernel_busy = false;
    // Session ports: listening fd -> its side of a session, and per session
    // the connections held.
    std::map<int, relay::impl::port_listener> lports;
    std::map<std::string, held> port_conns;
};

}  // namespace kith::splice
