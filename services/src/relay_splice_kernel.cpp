// relay_splice_kernel.cpp — the data plane's in-kernel forwarding
// (relay_options::kernel_forward, docs/relay.md "Forwarding in the
// kernel"): which sessions go to the kernel, their ends, their byte counts.
// The BPF side is relay_kernel.cpp.
#include <sys/epoll.h>
#include <sys/socket.h>

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

void relay::impl::try_kernel(splice::loop& sp, splice::conn& a, splice::conn& b) {
    // A rate needs the user-space forwarder's throttle; bytes the relay
    // holds would be overtaken by those the kernel forwards.
    if (!kf_ || a.rate > 0 || b.rate > 0 || a.len || b.len || a.eof || b.eof) return;
    std::string why;
    if (!kf_->add(a.fd, b.fd, why)) return;  // user space for this one (why: a full map)
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
}

void relay::impl::kernel_count(splice::loop& sp, splice::conn& cn) {
    std::uint64_t r = kf_->redirected(cn.fd);
    if (r > cn.counted) sp.forwarded += r - cn.counted;
    cn.counted = std::max(cn.counted, r);
}

void relay::impl::kernel_event(splice::loop& sp, splice::conn& cn, std::uint32_t events) {
    if (cn.eof) {  // a hangup or error after its end: as in user space, the session ends
        if (events & (EPOLLHUP | EPOLLERR)) close_conn(sp, cn.fd);
        return;
    }
    char b;
    ssize_t r = ::recv(cn.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r > 0) {
        // Bytes in the socket's own queue: they came before the verdict
        // program was attached and were not handed to it yet. Run it again.
        splice::kernel_forward::kick(cn.fd);
        return;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r < 0) {
        close_conn(sp, cn.fd);
        return;
    }
    // Its end: what it sent is still delivered, then the session ends.
    if (kf_->drained(cn.fd, cn.peer)) {
        close_conn(sp, cn.fd);
        return;
    }
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
    sp.kernel_busy = false;
    bool moved = false;  // an ended side's bytes went on towards its peer
    for (auto& [fd, cn] : sp.conns) {
        if (!cn.kernel) continue;
        const std::uint64_t before = cn.counted;
        kernel_count(sp, cn);
        if (cn.eof) {
            const std::uint64_t left = kf_->pending(fd, cn.peer);
            if (left == 0) done.push_back(fd);
            moved = moved || left < cn.drain_left;
            cn.drain_left = left;
            continue;
        }
        // The kernel's queue towards the peer is unbounded: hold this side
        // back while too much waits in it (its bytes then wait in its own
        // receive queue, and TCP's window stops its sender).
        if (cn.paused) {
            if (kf_->pending(fd, cn.peer) < splice::kPauseAbove / 4) {
                kf_->resume(fd);
                cn.paused = false;
                set_events(sp, cn);
            }
        } else if (cn.counted > before && kf_->pending(fd, cn.peer) > splice::kPauseAbove) {
            kf_->pause(fd);
            cn.paused = true;
            set_events(sp, cn);
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

}  // namespace kith
