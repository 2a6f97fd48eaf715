// relay_kernel.hpp (private to services/) — forwarding a spliced session's
// bytes in the kernel: a BPF sockhash and an SK_SKB stream-verdict program
// (services/bpf/relay_forward.bpf.c) redirect each byte a session's socket
// receives to its peer socket's send queue, so that they never wake the
// relay's data-plane thread. See docs/relay.md, "Forwarding in the kernel".
//
// Used by the data-plane thread only (not thread-safe). Built as a stub that
// always refuses when libbpf was missing at build time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace kith::splice {

class kernel_forward {
public:
    // Loads the embedded program and attaches it. nullptr, and `why` says
    // why not (no CAP_BPF/CAP_NET_ADMIN, a kernel without sockmap, built
    // without libbpf) and what to do.
    static std::unique_ptr<kernel_forward> open(std::string& why);
    ~kernel_forward();
    kernel_forward(const kernel_forward&) = delete;
    kernel_forward& operator=(const kernel_forward&) = delete;

    // From now on a's bytes go to b and b's to a in the kernel; start()
    // then hands those already waiting in either socket's receive queue to
    // the program, first. The caller must hold none of their bytes and
    // write nothing more of its own to either (its SOCKS replies went
    // before: the byte counts start here). false (why): nothing changed,
    // forward them in user space.
    bool add(int a, int b, std::string& why);
    void start(int fd);
    // Forgets fd and its peer's redirection to it: call before closing it.
    void remove(int fd);
    // Bytes redirected from fd to its peer so far.
    std::uint64_t redirected(int fd) const;
    // Bytes redirected from `from` that have not reached `to`'s TCP send
    // queue yet: they wait in the kernel's forwarding queue for `to`, which
    // a kernel worker empties as `to`'s send queue has room. Nothing bounds
    // that queue (a peer that does not read lets it grow until the machine
    // runs out of memory): the caller holds `from` when it grows. Closing
    // `to` while it is not 0 loses those bytes. Never too low.
    // Empty when it cannot be known now (acks raced every reading): decide
    // nothing on it.
    std::optional<std::uint64_t> pending(int from, int to) const;
    bool drained(int from, int to) const {
        auto p = pending(from, to);
        return p && *p == 0;
    }
    // Holds fd's bytes: from now on they stay with fd (its own queue, which
    // TCP's window bounds) for the caller to read (recv) and write to its
    // peer itself once pending(fd, peer) is 0 (those redirected before them
    // went first), telling wrote() each time. A hold never takes fd out of the verdict's
    // map: the kernel drops the bytes its verdict loop is reading on another
    // CPU when the program goes away under it (CI lost 53 bytes that way).
    void hold(int fd);
    // Ends the hold: fd's bytes are redirected again once every byte held
    // has been written (wrote()) and the kernel told so (call again
    // whenever more were written). Until then they are held still.
    void release(int fd);
    // The caller wrote n of fd's held bytes to its peer.
    void wrote(int fd, std::uint64_t n);
    // Bytes of fd held so far (read by the caller or waiting to be).
    std::uint64_t held_total(int fd) const;

    struct impl;

    // Hands bytes waiting in fd's receive queue to the program (they came
    // before it was attached). On Linux 6.3 and later a read that reads
    // nothing, which there first runs the program on them under the
    // socket's lock; on older kernels SO_RCVLOWAT, which runs the socket's
    // data-ready callback (not on current ones: their setsockopt runs it
    // without the socket's lock, and the program then read a segment that
    // another CPU was reading, and forwarded it twice).
    void kick(int fd) const;

private:
    explicit kernel_forward(std::unique_ptr<impl> p);
    std::unique_ptr<impl> p_;
};

}  // namespace kith::splice
