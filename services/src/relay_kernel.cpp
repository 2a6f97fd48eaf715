// relay_kernel.cpp — the relay's in-kernel forwarding (relay_kernel.hpp):
// loads services/bpf/relay_forward.bpf.c (embedded at build time) with
// libbpf and puts a session's two sockets in its maps.
#include "relay_kernel.hpp"

#include <cerrno>
#include <cstring>

#ifdef KITH_HAVE_LIBBPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>

#include <cstdarg>

#include "relay_forward_bpf.h"  // kith_embedded: the compiled program (cmake/embed_bytes.cmake)
#endif

namespace kith::splice {

#ifndef KITH_HAVE_LIBBPF

struct kernel_forward::impl {};
kernel_forward::kernel_forward(std::unique_ptr<impl> p) : p_(std::move(p)) {}
kernel_forward::~kernel_forward() = default;
std::unique_ptr<kernel_forward> kernel_forward::open(std::string& why) {
    why = "this kith was built without libbpf (install libbpf-dev and clang, then rebuild)";
    return nullptr;
}
bool kernel_forward::add(int, int, std::string& why) {
    why = "built without libbpf";
    return false;
}
void kernel_forward::remove(int) {}
void kernel_forward::kick(int) const {}
void kernel_forward::start(int) {}
std::uint64_t kernel_forward::redirected(int) const { return 0; }
std::optional<std::uint64_t> kernel_forward::pending(int, int) const { return 0; }
void kernel_forward::hold(int) {}
void kernel_forward::release(int) {}
void kernel_forward::wrote(int, std::uint64_t) {}
std::uint64_t kernel_forward::held_total(int) const { return 0; }

#else

namespace {

struct peer_entry {  // struct peer in relay_forward.bpf.c
    std::uint64_t to = 0;
    std::uint64_t bytes = 0;
    std::uint64_t passed = 0;
};

struct hold_entry {  // struct hold in relay_forward.bpf.c
    std::uint64_t on = 0;
    std::uint64_t consumed = 0;
};

std::uint64_t cookie_of(int fd) {
    std::uint64_t c = 0;
    socklen_t l = sizeof c;
    if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &l) != 0) return 0;
    return c;
}

// Bytes ever written into fd's TCP send queue: snd_una's advance
// (tcpi_bytes_acked) plus what is queued (SIOCOUTQ: write_seq - snd_una),
// read between two readings of the acked count that agree (an ack in
// between would make the sum wrong by what it acked; a base wrong by the
// 10 bytes of a SOCKS reply left a held side waiting for ever).
bool written(int fd, std::uint64_t& out) {
    for (int tries = 0; tries < 16; ++tries) {
        tcp_info t1{}, t2{};
        socklen_t l1 = sizeof t1, l2 = sizeof t2;
        int q = 0;
        if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &t1, &l1) != 0 ||
            l1 < offsetof(tcp_info, tcpi_bytes_acked) + sizeof t1.tcpi_bytes_acked || ::ioctl(fd, SIOCOUTQ, &q) != 0 ||
            ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &t2, &l2) != 0)
            return false;
        if (t1.tcpi_bytes_acked == t2.tcpi_bytes_acked && q >= 0) {
            out = t1.tcpi_bytes_acked + static_cast<std::uint64_t>(q);
            return true;
        }
    }
    return false;  // acks racing every time: the caller treats it as unknown
}

int quiet(enum libbpf_print_level, const char*, va_list) { return 0; }

}  // namespace

struct kernel_forward::impl {
    bpf_object* obj = nullptr;
    int prog = -1, sources = -1, targets = -1, peers = -1, holds = -1;
    bool read_kicks = true;  // a read hands waiting bytes to the program (Linux 6.3+)
    struct sock {
        std::uint64_t cookie = 0;
        std::uint64_t base = 0;      // written() when added
        std::uint64_t consumed = 0;  // of its held bytes, those the caller wrote to its peer
        bool held = false;
        bool hold_entry = false;     // it has an entry in `holds`
    };
    std::map<int, sock> socks;
    peer_entry peer_of(int fd) const {
        peer_entry e{};
        auto it = socks.find(fd);
        if (it != socks.end()) ::bpf_map_lookup_elem(peers, &it->second.cookie, &e);
        return e;
    }
    void publish(sock& s) {
        hold_entry h{s.held ? 1u : 0u, s.consumed};
        ::bpf_map_update_elem(holds, &s.cookie, &h, BPF_ANY);
        s.hold_entry = true;
    }

    ~impl() {
        if (prog >= 0 && sources >= 0) ::bpf_prog_detach2(prog, sources, BPF_SK_SKB_STREAM_VERDICT);
        if (obj) ::bpf_object__close(obj);
    }
};

kernel_forward::kernel_forward(std::unique_ptr<impl> p) : p_(std::move(p)) {}
kernel_forward::~kernel_forward() = default;

std::unique_ptr<kernel_forward> kernel_forward::open(std::string& why) {
    ::libbpf_set_print(quiet);
    auto p = std::make_unique<impl>();
    p->obj = ::bpf_object__open_mem(kith_embedded, sizeof kith_embedded, nullptr);
    if (!p->obj) {
        why = std::string("cannot open the embedded BPF program: ") + std::strerror(errno) +
              " (a bug in this build: report it)";
        return nullptr;
    }
    if (int e = ::bpf_object__load(p->obj); e != 0) {
        e = -e;
        why = std::string("cannot load its BPF program: ") + std::strerror(e) +
              (e == EPERM || e == EACCES
                   ? " (it needs root or CAP_BPF and CAP_NET_ADMIN: run the relay as root, or setcap "
                     "cap_bpf,cap_net_admin+ep on the kith binary)"
                   : " (the kernel needs BPF sockmap support: Linux 5.10 or later with CONFIG_BPF_SYSCALL and "
                     "CONFIG_NET_SOCK_MSG)");
        return nullptr;
    }
    bpf_program* pr = ::bpf_object__find_program_by_name(p->obj, "kith_relay_verdict");
    p->prog = pr ? ::bpf_program__fd(pr) : -1;
    p->sources = ::bpf_object__find_map_fd_by_name(p->obj, "sources");
    p->targets = ::bpf_object__find_map_fd_by_name(p->obj, "targets");
    p->peers = ::bpf_object__find_map_fd_by_name(p->obj, "peers");
    p->holds = ::bpf_object__find_map_fd_by_name(p->obj, "holds");
    if (p->prog < 0 || p->sources < 0 || p->targets < 0 || p->peers < 0 || p->holds < 0) {
        why = "the embedded BPF program lacks its maps (a bug in this build: report it)";
        return nullptr;
    }
    utsname u{};
    int major = 0, minor = 0;
    if (::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2)
        p->read_kicks = major > 6 || (major == 6 && minor >= 3);
    if (::bpf_prog_attach(p->prog, p->sources, BPF_SK_SKB_STREAM_VERDICT, 0) != 0) {
        int e = errno;
        why = std::string("cannot attach its stream verdict program to a sockhash: ") + std::strerror(e) +
              (e == EPERM ? " (it needs root or CAP_BPF and CAP_NET_ADMIN)"
                          : " (the kernel needs BPF sockmap support: Linux 5.10 or later, CONFIG_NET_SOCK_MSG)");
        p->prog = -1;  // nothing to detach
        return nullptr;
    }
    return std::unique_ptr<kernel_forward>(new kernel_forward(std::move(p)));
}

bool kernel_forward::add(int a, int b, std::string& why) {
    impl& m = *p_;
    impl::sock sa{.cookie = cookie_of(a)}, sb{.cookie = cookie_of(b)};
    if (!sa.cookie || !sb.cookie || !written(a, sa.base) || !written(b, sb.base)) {
        why = std::string("cannot read the sockets' cookie or TCP state: ") + std::strerror(errno);
        return false;
    }
    std::uint64_t fa = static_cast<std::uint64_t>(a), fb = static_cast<std::uint64_t>(b);
    peer_entry pa{sb.cookie, 0}, pb{sa.cookie, 0};
    // Targets and the peers' entries first: once a socket is in `sources`,
    // its bytes are redirected, and a redirection to a socket not in
    // `targets` would drop them.
    int step = 0;
    auto fail = [&] {
        why = std::string("cannot add the session's sockets to the BPF maps: ") + std::strerror(errno) +
              " (the relay holds too many kernel-forwarded sessions, or the kernel refused)";
        std::uint64_t ks[2] = {sa.cookie, sb.cookie};
        for (auto k : ks) {
            ::bpf_map_delete_elem(m.sources, &k);
            ::bpf_map_delete_elem(m.peers, &k);
            ::bpf_map_delete_elem(m.targets, &k);
            ::bpf_map_delete_elem(m.holds, &k);
        }
        (void)step;
        return false;
    };
    if (::bpf_map_update_elem(m.targets, &sa.cookie, &fa, BPF_ANY) != 0) return fail();
    if (::bpf_map_update_elem(m.targets, &sb.cookie, &fb, BPF_ANY) != 0) return fail();
    if (::bpf_map_update_elem(m.peers, &sa.cookie, &pa, BPF_ANY) != 0) return fail();
    if (::bpf_map_update_elem(m.peers, &sb.cookie, &pb, BPF_ANY) != 0) return fail();
    if (::bpf_map_update_elem(m.sources, &sa.cookie, &fa, BPF_ANY) != 0) return fail();
    if (::bpf_map_update_elem(m.sources, &sb.cookie, &fb, BPF_ANY) != 0) return fail();
    m.socks[a] = sa;
    m.socks[b] = sb;
    return true;
}

void kernel_forward::start(int fd) {
    if (p_->socks.count(fd)) kick(fd);  // bytes that came before: redirected first, in order
}

// Bytes that came before the verdict program was attached (relay_kernel.hpp).
void kernel_forward::kick(int fd) const {
    if (p_->read_kicks) {
        char b;
        (void)::recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    } else {
        int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
    }
}

void kernel_forward::hold(int fd) {
    auto it = p_->socks.find(fd);
    if (it == p_->socks.end()) return;
    it->second.held = true;
    p_->publish(it->second);
}

void kernel_forward::release(int fd) {
    auto it = p_->socks.find(fd);
    if (it == p_->socks.end() || !it->second.hold_entry) return;
    it->second.held = false;
    p_->publish(it->second);
}

void kernel_forward::wrote(int fd, std::uint64_t n) {
    if (auto it = p_->socks.find(fd); it != p_->socks.end()) it->second.consumed += n;
}

std::uint64_t kernel_forward::held_total(int fd) const {
    auto it = p_->socks.find(fd);
    if (it == p_->socks.end() || !it->second.hold_entry) return 0;  // never held: nothing passed
    return p_->peer_of(fd).passed;
}

void kernel_forward::remove(int fd) {
    impl& m = *p_;
    auto it = m.socks.find(fd);
    if (it == m.socks.end()) return;
    std::uint64_t k = it->second.cookie;
    ::bpf_map_delete_elem(m.sources, &k);
    ::bpf_map_delete_elem(m.peers, &k);
    ::bpf_map_delete_elem(m.targets, &k);
    ::bpf_map_delete_elem(m.holds, &k);
    m.socks.erase(it);
}

std::uint64_t kernel_forward::redirected(int fd) const { return p_->peer_of(fd).bytes; }

std::optional<std::uint64_t> kernel_forward::pending(int from, int to) const {
    auto t = p_->socks.find(to);
    auto f = p_->socks.find(from);
    if (t == p_->socks.end() || f == p_->socks.end()) return 0;
    std::uint64_t now = 0;
    if (!written(to, now)) return std::nullopt;  // acks raced every reading
    // What `to` took from the kernel: all it took, less what the caller
    // wrote to it itself (from's held bytes).
    const std::uint64_t all = now > t->second.base ? now - t->second.base : 0;
    const std::uint64_t took = all > f->second.consumed ? all - f->second.consumed : 0;
    const std::uint64_t r = redirected(from);
    return r > took ? r - took : 0;
}

#endif

}  // namespace kith::splice
