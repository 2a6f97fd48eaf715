// beacon_io.cpp — discovery's UDP sockets (see discovery_impl.hpp):
//   rx  bound to 0.0.0.0:<port> with SO_REUSEADDR/SO_REUSEPORT, so several
//       nodes on one host share the port; it receives broadcasts (every
//       socket of the group gets each one) and unicast queries from static
//       peers (only one socket of the group gets those);
//   tx  bound to an ephemeral port, SO_BROADCAST; everything this node sends
//       leaves from it, so unicast answers to our queries come back to us
//       and to nobody else on this host.
// Broadcast destinations come from the interfaces (kith/platform.hpp),
// re-enumerated every interval.
#include <arpa/inet.h>
#include <linux/filter.h>
#include <net/if.h>
#include <netdb.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "discovery_impl.hpp"
#include "kith/platform.hpp"

namespace kith {

using namespace detail;

namespace {

// A host that says nothing to others: a wildcard bind, or loopback (a
// beacon from 127.x comes from this host anyway). Such an endpoint is
// announced as "my source address" (E = 0).
bool anonymous_host(const std::string& h) {
    return h.empty() || h == "*" || h == "0.0.0.0" || h == "[::]" || h == "::" || h.rfind("127.", 0) == 0 ||
           h == "localhost";
}

// An IPv4 address from a numeric string or a host name (first A record).
std::optional<in_addr> resolve4(const std::string& host) {
    in_addr a{};
    if (inet_pton(AF_INET, host.c_str(), &a) == 1) return a;
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) return std::nullopt;
    a = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return a;
}

// A socket filter (classic BPF, run by the kernel as a datagram arrives,
// before it is queued): only datagrams that could be beacons, the magic and
// version first, at least a beacon header long and at most one beacon plus
// the byte that marks a longer one (which decode_beacon calls malformed),
// reach the socket's buffer. Anything else, a flood of random bytes, costs
// this thread nothing and cannot fill the buffer that members' beacons
// wait in; the kernel counts the drops (SO_MEMINFO, discovery_counters::
// dropped_by_kernel). Best effort: without it every datagram is read and
// checked as before. Offsets count from the UDP header (8 bytes).
void attach_beacon_filter(int fd) {
    const std::uint32_t magic = (std::uint32_t{beacon_magic[0]} << 24) | (std::uint32_t{beacon_magic[1]} << 16) |
                                (std::uint32_t{beacon_magic[2]} << 8) | beacon_magic[3];
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 8 + beacon_fixed_bytes, 0, 6),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, 8 + beacon_max_bytes + 1, 5, 0),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 8),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, magic, 0, 3),
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 12),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, beacon_version, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    ::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
}

sockaddr_in make_addr(in_addr a, std::uint16_t port) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_addr = a;
    s.sin_port = htons(port);
    return s;
}

}  // namespace

void discovery::impl::setup() {
    if (sodium_init() < 0) throw setup_error("kith discovery: libsodium failed to initialise");
    if (n.endpoint().empty()) throw setup_error("kith discovery: the node has no network (net.listen is empty)");
    if (o.interface.empty())
        if (const char* e = std::getenv("KITH_INTERFACE"); e && *e) o.interface = e;
    if (!o.interface.empty() && if_nametoindex(o.interface.c_str()) == 0) {
        std::string names;
        for (auto& nm : platform::interface_names()) names += (names.empty() ? "" : ", ") + nm;
        throw setup_error("kith discovery: unknown interface \"" + o.interface + "\" (this machine has: " +
                          (names.empty() ? std::string("none") : names) + ")");
    }
    if (o.interval.count() <= 0) o.interval = std::chrono::milliseconds(1000);
    my_name = n.name();
    my_key = n.key();
    randombytes_buf(copy_key.data(), copy_key.size());
    auto [host, port] = disc::split_endpoint(n.endpoint());
    my_port = port;
    if (auto m = n.member_endpoint(); !m.empty()) my_member_port = disc::split_endpoint(m).second;
    // A concrete (or advertised, net.advertise) endpoint is announced as
    // is; a wildcard or loopback one as "my source address".
    if (!anonymous_host(host)) my_endpoint = n.endpoint();
    if (auto h = n.cookie_key("beacon-hmac")) {
        hkey = beacon_hmac_key::from_keys(*h, *n.cookie_key("beacon-cluster-id"));
        sodium_memzero(h->data(), h->size());
        my_cluster = disc::id_hex(hkey->id.data());
    }

    rx.fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    tx.fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    wake.fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (rx.fd < 0 || tx.fd < 0 || wake.fd < 0)
        throw setup_error(std::string("kith discovery: socket: ") + std::strerror(errno));
    int one = 1;
    ::setsockopt(rx.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(rx.fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    ::setsockopt(tx.fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    // The destination address of each datagram (broadcast or unicast query).
    ::setsockopt(rx.fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    ::setsockopt(tx.fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
    int rcvbuf = 1 << 20;  // best effort (capped by net.core.rmem_max): room to drain a burst
    ::setsockopt(rx.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    attach_beacon_filter(rx.fd);
    if (!o.interface.empty()) {
        // Best effort: receive only on that interface (needs CAP_NET_RAW
        // on old kernels); sending is restricted by the destinations.
        ::setsockopt(rx.fd, SOL_SOCKET, SO_BINDTODEVICE, o.interface.c_str(),
                     static_cast<socklen_t>(o.interface.size()));
    }
    auto any = make_addr(in_addr{htonl(INADDR_ANY)}, o.port);
    if (::bind(rx.fd, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0)
        throw setup_error("kith discovery: cannot bind UDP port " + std::to_string(o.port) + ": " +
                          std::strerror(errno));
    auto eph = make_addr(in_addr{htonl(INADDR_ANY)}, 0);
    if (::bind(tx.fd, reinterpret_cast<sockaddr*>(&eph), sizeof eph) != 0)
        throw setup_error(std::string("kith discovery: cannot bind a UDP socket: ") + std::strerror(errno));
}

void discovery::impl::wakeup() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(wake.fd, &one, sizeof one);
}

// --- sending -----------------------------------------------------------------

beacon discovery::impl::make(beacon_type t) {
    beacon b;
    b.type = t;
    // Strictly increasing per sender: receivers drop anything not newer.
    b.timestamp_ms = last_sent_ts = std::max(disc::wall_ms(), last_sent_ts + 1);
    randombytes_buf(&b.nonce, sizeof b.nonce);
    b.tcp_port = my_port;
    b.key = my_key;
    b.name = my_name;
    b.endpoint = my_endpoint;
    b.member_port = my_member_port;  // sent only in the cluster section (encode_beacon)
    // Public services (open to strangers) in clear; every service only
    // inside the authenticated cluster section.
    if (t != beacon_type::query) b.public_services = n.public_services();
    // Queries are authenticated too (answered directly, no budget for
    // strangers' queries needed), but carry no services.
    if (hkey) {
        b.cluster = true;
        if (t != beacon_type::query) b.services = n.services();
    }
    return b;
}

std::vector<std::uint8_t> discovery::impl::encode(const beacon& b) const {
    return encode_beacon(b, hkey ? &*hkey : nullptr);
}

void discovery::impl::send_to(const std::vector<std::uint8_t>& bytes, const sockaddr_in& to) {
    if (bytes.empty()) return;
    auto r = ::sendto(tx.fd, bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
    if (r == static_cast<ssize_t>(bytes.size())) {
        std::lock_guard lk(mu);
        ++c.beacons_sent;
    }
}

// Broadcast destinations now: the option's address, else the broadcast
// address of every up, running, broadcast-capable IPv4 interface (or the
// chosen one). Returns the destinations that are new since the last call.
std::vector<std::uint32_t> discovery::impl::enumerate() {
    std::set<std::uint32_t> now;
    if (!o.broadcast_address.empty()) {
        if (auto a = resolve4(o.broadcast_address)) now.insert(a->s_addr);
    } else {
        for (auto& i : platform::ipv4_interfaces()) {
            // Not running: no carrier (cable out, peer link down).
            if (!i.up || !i.running || i.loopback || !i.broadcast) continue;
            if (!o.interface.empty() && o.interface != i.name) continue;
            now.insert(*i.broadcast);
        }
    }
    std::vector<std::uint32_t> fresh;
    for (auto a : now)
        if (!bcast.count(a)) fresh.push_back(a);
    bcast = std::move(now);
    return fresh;
}

std::vector<sockaddr_in> discovery::impl::peer_addrs() const {
    std::vector<sockaddr_in> v;
    for (auto& p : o.peers) {
        auto [host, port] = disc::split_endpoint(p);
        (void)port;
        if (auto a = resolve4(host)) v.push_back(make_addr(*a, o.port));
    }
    return v;
}

// Sends a beacon of type t to every broadcast destination (or only `only`)
// and to the static peers.
void discovery::impl::broadcast(beacon_type t, const std::vector<std::uint32_t>* only, bool to_peers) {
    auto bytes = encode(make(t));
    for (auto a : only ? std::set<std::uint32_t>(only->begin(), only->end()) : bcast)
        send_to(bytes, make_addr(in_addr{a}, o.port));
    if (to_peers)
        for (auto& a : peer_addrs()) send_to(bytes, a);
}

void discovery::impl::send_query(const std::vector<std::uint32_t>* only, bool to_peers) {
    broadcast(beacon_type::query, only, to_peers);
}

// --- receiving ---------------------------------------------------------------

struct discovery::impl::rx_buffers {
    std::uint8_t buf[rx_batch][beacon_max_bytes + 1];
    sockaddr_in from[rx_batch];
    iovec iov[rx_batch];
    alignas(cmsghdr) char ctl[rx_batch][CMSG_SPACE(sizeof(in_pktinfo))];
    mmsghdr m[rx_batch];
};

discovery::impl::impl(node& nd, discovery_options opts)
    : n(nd), o(std::move(opts)), rxb(std::make_unique<rx_buffers>()) {}
discovery::impl::~impl() = default;

int discovery::impl::drain(int fd) {
    // Up to 256 datagrams a wake-up (poll comes back for the rest), read
    // rx_batch at a time: one system call for each batch, not each datagram.
    rx_buffers& x = *rxb;
    int total = 0;
    for (int round = 0; round < 8; ++round) {
        for (unsigned i = 0; i < rx_batch; ++i) {
            x.iov[i] = {x.buf[i], sizeof x.buf[i]};
            msghdr& m = x.m[i].msg_hdr;
            m = msghdr{};
            m.msg_name = &x.from[i];
            m.msg_namelen = sizeof x.from[i];
            m.msg_iov = &x.iov[i];
            m.msg_iovlen = 1;
            m.msg_control = x.ctl[i];
            m.msg_controllen = sizeof x.ctl[i];
        }
        const int got = ::recvmmsg(fd, x.m, rx_batch, MSG_DONTWAIT, nullptr);
        if (got <= 0) return total;
        total += got;
        for (int i = 0; i < got; ++i) {
            msghdr& m = x.m[i].msg_hdr;
            std::uint32_t dst = 0;
            for (auto* cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
                if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
                    in_pktinfo pi;
                    std::memcpy(&pi, CMSG_DATA(cm), sizeof pi);
                    dst = pi.ipi_addr.s_addr;
                }
            // (A datagram longer than a beacon is cut to 1201 bytes: malformed.)
            handle(std::span<const std::uint8_t>(x.buf[i], x.m[i].msg_len), x.from[i], is_broadcast(dst));
        }
        if (static_cast<unsigned>(got) < rx_batch) return total;
    }
    return total;
}

// Whether a datagram was sent to a broadcast (or multicast) address rather
// than to this host.
bool discovery::impl::is_broadcast(std::uint32_t dst) const {
    if (dst == 0) return false;
    if (dst == htonl(INADDR_BROADCAST) || bcast.count(dst)) return true;
    if ((ntohl(dst) & 0xf0000000u) == 0xe0000000u) return true;  // multicast
    return (ntohl(dst) & 0xffu) == 0xffu;  // the broadcast address of a /24 (or longer) subnet
}

// A query: answered only in ways that cannot amplify (see discovery.hpp).
void discovery::impl::answer(bool cluster, std::size_t query_size, const sockaddr_in& from, bool broadcast_dst,
                             clock_type::time_point now) {
    if (!o.announce) return;
    if (!cluster && broadcast_dst) {
        // Anyone may have sent it, with any source address: answer to
        // everyone, by broadcast, at most once per early_gap (run()).
        early_pending = true;
        return;
    }
    if (!cluster) {
        auto& src = budgets.source(from.sin_addr.s_addr, now);
        if (!src.answers.take(1, 3, now) || !budgets.answers.take(o.max_answers_per_s, o.max_answers_per_s, now)) {
            count(&discovery_counters::answers_limited);
            return;
        }
    }
    auto bytes = encode(make(beacon_type::announce));
    if (bytes.empty() || bytes.size() > query_size) return;
    send_to(bytes, from);
    count(&discovery_counters::queries_answered);
}

}  // namespace kith
