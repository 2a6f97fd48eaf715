// relay_splice_kernel.cpp — the data plane's in-kernel forwarding
// (relay_options::kernel_forward, docs/relay.md "Forwarding in the
// kernel"): which sessions go to the kernel, their ends, their byte counts.
// The BPF side is relay_kernel.cpp.
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "relay_splice.hpp"

namespace kith {

void relay::impl::open_kernel_forward() {
    auto mode = o_.kernel_forward;
    if (mode == relay_options::kernel_mode::standard) {
        mode = relay_options::kernel_mode::off;
        if (const char* e = std::getenv("KITH_RELAY_KERNEL_FORWARD")) {
            std::string v = e;
            if (v == "auto") mode = relay_options::kernel_mode::automatic;
            else if (v == "on") mode = relay_options::kernel_mode::on;
            else if (v != "off" && !v.empty())
                throw setup_error("relay: KITH_RELAY_KERNEL_FORWARD is '" + v + "'; use auto, on or off (or unset it)");
        }
    }
    if (mode == relay_options::kernel_mode::off) {
        kf_why_ = "kernel forwarding is off";
        return;
    }
    kf_ = splice::kernel_forward::open(kf_why_);
    if (!kf_ && mode == relay_options::kernel_mode::on)
        throw setup_error("relay: kernel forwarding is on but unavailable: " + kf_why_ +
                          "; or start the relay with kernel forwarding auto or off");
}

bool relay::impl::try_kernel(splice::loop& sp, splice::conn& a, splice::conn& b) {
    // A rate needs the user-space forwarder's throttle; bytes the relay
    // holds would be overtaken by those the kernel forwards.
    if (!kf_ || a.rate > 0 || b.rate > 0 || a.len || b.len || a.eof || b.eof) return false;
    std::string why;
    if (!kf_->add(a.fd, b.fd, why)) return false;  // user space for this one (why: a full map)
    for (splice::conn* x : {&a, &b}) {
        x->kernel = true;
        x->counted = 0;
        x->buf.clear();
        x->buf.shrink_to_fit();
        x->off = x->len = 0;
        set_events(sp, *x);
    }
    sp.kernel_busy = true;  // looked at within a 10 ms tick from now on (kernel_tick)
    std::lock_guard lk(mu);
    ++c.kernel_sessions;
    return true;
}

void relay::impl::kernel_start(splice::conn& a, splice::conn& b) {
    kf_->start(a.fd);
    kf_->start(b.fd);
}

void relay::impl::kernel_count(splice::loop& sp, splice::conn& cn) {
    std::uint64_t r = kf_->redirected(cn.fd);
    if (r > cn.counted) sp.forwarded += r - cn.counted;
    cn.counted = std::max(cn.counted, r);
}

// Reads bytes the kernel held for the relay (fd's own queue) into buf
// and writes what it may to the peer. false: the session ends (an error).
bool relay::impl::kernel_read_held(splice::loop& sp, splice::conn& cn) {
    const std::uint64_t unread = held_unread(cn);
    if (cn.buf.size() < splice::kBuf) cn.buf.resize(splice::kBuf);
    const std::size_t room = splice::kBuf - cn.off - cn.len;
    if (unread == 0) return true;
    if (room == 0) {  // its bytes behind may still wait behind the peer's: room for those
        kernel_unstick(cn);
        return true;
    }
    ssize_t r = ::recv(cn.fd, cn.buf.data() + cn.off + cn.len,
                       static_cast<std::size_t>(std::min<std::uint64_t>(room, unread)), MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        // Held bytes not readable yet: they wait behind the peer's bytes for
        // this socket in the kernel, while the socket still polls readable.
        // Looked at on the tick instead of spinning on epoll.
        if (!cn.stuck) {
            cn.stuck = true;
            set_events(sp, cn);
        }
        kernel_unstick(cn);
        return true;
    }
    if (r < 0) return false;
    if (cn.stuck && r > 0) {
        cn.stuck = false;
        set_events(sp, cn);
    }
    if (r == 0) {
        // Its end, with held bytes still on their way to its queue (behind
        // the peer's bytes for it, in the kernel): kernel_tick reads them.
        kernel_end(sp, cn);
        return true;
    }
    cn.len += static_cast<std::size_t>(r);
    cn.read_total += static_cast<std::uint64_t>(r);
    ++sp.user_reads;
    return kernel_flush(sp, cn);
}

// Writes cn's held bytes to its peer once every byte the kernel
// redirected before them has reached the peer's send queue; tells the
// kernel what was written. false: the session ends.
bool relay::impl::kernel_flush(splice::loop& sp, splice::conn& cn) {
    auto it = sp.conns.find(cn.peer);
    if (it == sp.conns.end()) return false;
    if (cn.len > 0) {
        // The kernel may have redirected more since its queue was last seen
        // empty (released, then held again): those go first.
        const std::uint64_t r = kf_->redirected(cn.fd);
        cn.may_write = r == cn.drained_at;
        if (!cn.may_write) {
            if (!kf_->drained(cn.fd, cn.peer)) {  // kernel_tick looks again within 10 ms
                set_events(sp, it->second);
                return true;
            }
            cn.drained_at = r;
            cn.may_write = true;
        }
    }
    while (cn.len > 0) {
        ssize_t w = ::send(it->second.fd, cn.buf.data() + cn.off, cn.len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (w <= 0) return false;
        cn.off += static_cast<std::size_t>(w);
        cn.len -= static_cast<std::size_t>(w);
        sp.forwarded += static_cast<std::uint64_t>(w);
        kf_->wrote(cn.fd, static_cast<std::uint64_t>(w));
        cn.unpublished = true;
    }
    if (cn.len == 0) {
        cn.off = 0;
        // Released: the kernel redirects again once it knows every held
        // byte went (kernel_forward::release).
        if (!cn.held && cn.unpublished) {
            kf_->release(cn.fd);
            cn.unpublished = false;
        }
    }
    set_events(sp, cn);
    set_events(sp, it->second);
    return true;
}

void relay::impl::kernel_event(splice::loop& sp, splice::conn& cn, std::uint32_t events) {
    const int fd = cn.fd;
    if (events & EPOLLOUT) {  // the peer's held bytes may go on
        auto p = sp.conns.find(cn.peer);
        if (p != sp.conns.end() && p->second.len > 0 && !kernel_flush(sp, p->second)) {
            close_conn(sp, fd);
            return;
        }
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    if (cn.eof) {  // a hangup or error after its end: as in user space, the session ends
        if (events & (EPOLLHUP | EPOLLERR)) close_conn(sp, fd);
        return;
    }
    auto read_held = [&] {
        if (cn.off + cn.len >= splice::kBuf) {  // a full buffer: wait until it drains (TCP holds the sender)
            if (events & (EPOLLHUP | EPOLLERR)) close_conn(sp, fd);
            else set_events(sp, cn);
            return;
        }
        if (!kernel_read_held(sp, cn)) close_conn(sp, fd);
    };
    if (held_unread(cn) > 0) {  // bytes the kernel held for the relay
        read_held();
        return;
    }
    // A read that reads nothing: on Linux 6.3 and later it first hands bytes
    // waiting in the socket's receive queue to the program, under the
    // socket's lock (kernel_forward::kick).
    char b;
    ssize_t r = ::recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r > 0) {
        if (held_unread(cn) > 0) {  // held bytes came since the look above
            read_held();
            return;
        }
        // Bytes in the socket's own receive queue that the read did not hand
        // to the program (a kernel older than 6.3).
        kf_->kick(fd);
        return;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r < 0) {
        close_conn(sp, fd);
        return;
    }
    // Its end: what it sent is still delivered, then the session ends. The
    // read ran the program through its last byte: held bytes are all counted.
    if (cn.len == 0 && held_unread(cn) == 0 && kf_->drained(fd, cn.peer)) {
        close_conn(sp, fd);
        return;
    }
    kernel_end(sp, cn);
}

// cn's held bytes wait behind its peer's bytes for cn in cn's own kernel
// queue (its send queue was full), where TCP's window does not count them.
// Room in cn's TCP send queue for those (the peer is held: no more come)
// lets them leave that queue, after which cn's held bytes go to its
// receive queue, where they count against its window again. The relay may
// (it holds CAP_NET_ADMIN to forward in the kernel at all).
void relay::impl::kernel_unstick(splice::conn& cn) {
    if (!cn.held) return;  // the peer's bytes still come: room would let them grow without a hold
    const auto ahead = kf_->pending(cn.peer, cn.fd);
    int cur = 0, queued = 0;
    socklen_t l = sizeof cur;
    if (!ahead || *ahead == 0 || ::getsockopt(cn.fd, SOL_SOCKET, SO_SNDBUF, &cur, &l) != 0 || cur < 0 ||
        ::ioctl(cn.fd, SIOCOUTQ, &queued) != 0 || queued < 0)
        return;
    // Room for what is queued and what waits: the peer is held, so no more
    // comes, and those bytes are in the kernel's memory already.
    const std::uint64_t want = std::min<std::uint64_t>(static_cast<std::uint64_t>(queued) + *ahead + (1u << 20),
                                                       splice::kMaxUnstickSndbuf);
    if (want <= static_cast<std::uint64_t>(cur)) return;
    int v = static_cast<int>(want / 2);  // the kernel doubles it
    if (::setsockopt(cn.fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) == 0 && cn.sndbuf_before == 0)
        cn.sndbuf_before = cur;  // given back when the session is released
}

std::uint64_t relay::impl::held_unread(const splice::conn& cn) const {
    const std::uint64_t h = kf_->held_total(cn.fd);
    return h > cn.read_total ? h - cn.read_total : 0;
}

void relay::impl::kernel_end(splice::loop& sp, splice::conn& cn) {
    if (cn.eof) return;
    cn.eof = true;
    ++sp.draining;
    // A new end: looked at within 2 ms again, even if another ended side
    // whose peer does not read had backed the tick off to 100 ms (its last
    // bytes, a goodbye say, would otherwise wait up to 100 ms to be seen).
    sp.drain_tick = std::chrono::milliseconds(2);
    set_events(sp, cn);
}

void relay::impl::kernel_tick(splice::loop& sp) {
    std::vector<int> done;
    const auto now = clock::now();
    std::uint64_t forgiven = 0;  // of splice::kMaxStuckPile
    for (auto& [fd, cn] : sp.conns) forgiven += cn.piled;
    sp.kernel_busy = false;
    bool moved = false;  // an ended side's bytes went on towards its peer
    for (auto& [fd, cn] : sp.conns) {
        if (!cn.kernel) continue;
        const std::uint64_t before = cn.counted;
        kernel_count(sp, cn);
        // The kernel's queue towards the peer is unbounded: hold the session
        // while too much waits in it for either side (their bytes then stay
        // with them, the relay reads them as its buffers have room, and
        // TCP's window stops a sender while its buffer is full). Both sides
        // at once: a held side's bytes that arrive while its socket's own
        // kernel queue holds its peer's bytes wait behind those, where TCP's
        // window does not count them, and holding the peer stops that queue
        // from growing. Released once both sides' queues are short again.
        auto it = sp.conns.find(cn.peer);
        if (it != sp.conns.end() && it->second.kernel) {
            splice::conn& pe = it->second;
            const auto out = kf_->pending(fd, cn.peer);
            if (cn.held) {
                const auto in = kf_->pending(cn.peer, fd);
                if (fd < cn.peer && out && in && *out < splice::kPauseAbove / 4 && *in < splice::kPauseAbove / 4) {
                    for (splice::conn* x : {&cn, &pe}) {  // once a session (fd < peer)
                        x->held = false;
                        kf_->release(x->fd);
                        x->unpublished = false;
                        if (x->sndbuf_before > 0) {  // its send queue's room back (kernel_unstick)
                            int v = x->sndbuf_before / 2;
                            ::setsockopt(x->fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v);
                            x->sndbuf_before = 0;
                        }
                    }
                }
            } else if (!cn.eof && cn.counted > before && out && *out > splice::kPauseAbove) {
                for (splice::conn* x : {&cn, &pe}) {
                    kf_->hold(x->fd);
                    x->held = true;
                }
                std::lock_guard lk(mu);
                ++c.kernel_holds;
            }
        }
        const std::uint64_t unread = held_unread(cn);
        if ((unread > 0 && !kernel_read_held(sp, cn)) || (cn.len > 0 && !kernel_flush(sp, cn))) {
            done.push_back(fd);
            continue;
        }
        if (!forgive_pile(cn, unread, now, forgiven)) {
            // Its bytes wait behind the peer's in the kernel, where TCP's
            // window does not count them: a side that floods while neither
            // side reads, beyond a pile forgiven. The session ends rather
            // than the relay's memory.
            if (std::find(done.begin(), done.end(), cn.peer) == done.end()) {  // once a session
                std::lock_guard lk(mu);
                ++c.kernel_overflows;
            }
            done.push_back(fd);
            continue;
        }
        if (cn.eof) {
            const auto out = kf_->pending(fd, cn.peer);
            if (!out) continue;  // not known now: looked at again on the next tick
            const std::uint64_t left = *out + cn.len + held_unread(cn);
            if (left == 0) done.push_back(fd);
            moved = moved || left < cn.drain_left;
            cn.drain_left = left;
            continue;
        }
        // Every live session is looked at every 10 ms, a quiet one too: it
        // may start sending at any moment, and at loopback speed 100 ms
        // (the idle tick) put 300 MB in the kernel's queue before the first
        // look.
        sp.kernel_busy = true;
    }
    sp.drain_tick = moved ? std::chrono::milliseconds(2) : std::min(2 * sp.drain_tick, std::chrono::milliseconds(100));
    for (int fd : done) close_conn(sp, fd);
}

// false: cn's held bytes unread (`unread`) are more than its session may
// keep: held_bound, and a pile past it forgiven. A held side's bytes pile
// up behind the peer's (which still wait for cn's send queue, where TCP's
// window does not count cn's bytes) for as long as the room kernel_unstick
// makes has not taken effect: the relay's thread or the kernel's worker off
// the CPU on a busy machine (CI saw such a session ended). What passed the
// bound within kPileGrace of the relay's first seeing it past the bound is
// forgiven, from the relay-wide kMaxStuckPile (`forgiven`: what all
// sessions use of it), and given back as the pile is read; a new grace only
// once the pile is back within the bound. A pile still growing after that
// is a flood.
bool relay::impl::forgive_pile(splice::conn& cn, std::uint64_t unread, clock::time_point now,
                               std::uint64_t& forgiven) {
    const std::uint64_t before = cn.piled;
    // held_bound is above kPauseAbove: no need to ask the socket below it.
    const std::uint64_t bound = unread > splice::kPauseAbove ? held_bound(cn.fd) : unread;
    const std::uint64_t excess = unread > bound ? unread - bound : 0;
    cn.piled = std::min(cn.piled, excess);
    if (excess == 0) {
        cn.pile_since = {};  // back within the bound: the next pile starts afresh
        cn.pile_counted = false;
    } else {
        // Seen at the relay's first look after it passed the bound, when the
        // room may have taken effect already (the peer's bytes no longer
        // ahead): which bytes stuck behind them is not known then, only
        // how long the pile has been past the bound.
        if (cn.pile_since == clock::time_point{}) cn.pile_since = now;
        if (excess > cn.piled && now - cn.pile_since < splice::kPileGrace) {
            const std::uint64_t room = splice::kMaxStuckPile > forgiven ? splice::kMaxStuckPile - forgiven : 0;
            cn.piled += std::min(excess - cn.piled, room + (before - cn.piled));
        }
    }
    forgiven = forgiven - before + cn.piled;
    if (excess > cn.piled) return false;
    if (excess > 0 && !cn.pile_counted) {
        cn.pile_counted = true;
        std::lock_guard lk(mu);
        ++c.kernel_late_piles;
    }
    return true;
}

// What may wait held for the relay on fd before its session ends: twice
// its receive buffer (TCP's window bounds what a held side's own queue
// takes) and 4 kPauseAbove for what waits behind the peer's bytes while
// they drain (about kPauseAbove times the ratio of the side's upload to
// its download rate, for a side that sends and receives in bulk at once).
std::uint64_t relay::impl::held_bound(int fd) const {
    int rcv = 0;
    socklen_t l = sizeof rcv;
    if (::getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, &l) != 0 || rcv < 0) rcv = 0;
    return 2 * static_cast<std::uint64_t>(rcv) + 4 * splice::kPauseAbove;
}

}  // namespace kith
