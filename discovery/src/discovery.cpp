// discovery.cpp — kith::discovery (kith/discovery.hpp): UDP beacons on the
// LAN, auto-connect to cluster members, a list of what was heard.
//
// One thread per discovery object. Two UDP sockets:
//   rx  bound to 0.0.0.0:<port> with SO_REUSEADDR/SO_REUSEPORT, so several
//       nodes on one host share the port; it receives broadcasts (every
//       socket of the group gets each one) and unicast queries from static
//       peers (only one socket of the group gets those);
//   tx  bound to an ephemeral port, SO_BROADCAST; everything this node sends
//       leaves from it, so unicast answers to our queries come back to us
//       and to nobody else on this host.
// The thread polls both plus an eventfd (wake-ups for query() and stop()),
// announces every interval, and re-enumerates the interfaces each time (an
// interface that comes back is queried at once).
#include "kith/discovery.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "beacon.hpp"

namespace kith {

using namespace detail;
using clock_type = std::chrono::steady_clock;

term seen_node::to_term() const {
    term_array svcs(services.begin(), services.end());
    return map_of({{"name", name},
                   {"endpoint", endpoint},
                   {"fingerprint", fingerprint},
                   {"trust", std::string(to_string(trust))},
                   {"services", term(std::move(svcs))},
                   {"connected", connected}});
}

namespace {

std::uint64_t wall_ms() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

std::string short_name(const std::string& full) { return full.substr(0, full.find('@')); }

// The first four bytes of a cluster id, as people compare them.
std::string id_hex(const std::uint8_t* id) {
    char buf[9];
    std::snprintf(buf, sizeof buf, "%02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
    return buf;
}

// "tcp://host:port" -> (host, port); port 0 if unparsable.
std::pair<std::string, std::uint16_t> split_endpoint(const std::string& ep) {
    auto rest = ep.rfind("tcp://", 0) == 0 ? ep.substr(6) : ep;
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) return {rest, 0};
    unsigned long p = std::strtoul(rest.c_str() + colon + 1, nullptr, 10);
    return {rest.substr(0, colon), p <= 65535 ? static_cast<std::uint16_t>(p) : std::uint16_t(0)};
}

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

sockaddr_in make_addr(in_addr a, std::uint16_t port) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_addr = a;
    s.sin_port = htons(port);
    return s;
}

struct fd_guard {
    int fd = -1;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

struct discovery::impl : std::enable_shared_from_this<discovery::impl> {
    struct entry {
        seen_node info;
        bool cluster = false;
        clock_type::time_point first_heard{};
        bool dialing = false;
        clock_type::time_point next_dial{};        // back-off after a failed dial
        int refusals = 0;                          // dials refused in a row (back-off doubles)
    };

    node& n;
    discovery_options o;
    std::string my_name;
    public_key my_key;
    std::uint16_t my_port = 0;
    std::string my_endpoint;  // advertised endpoint in beacons ("" = source address)
    std::optional<beacon_hmac_key> hkey;

    fd_guard rx, tx, wake;
    std::thread th;
    std::atomic<bool> stopping{false};
    std::atomic<bool> query_now{false};

    mutable std::mutex mu;  // seen, counters, dests
    std::condition_variable cv;
    std::map<std::string, entry> seen;
    discovery_counters c;

    static constexpr std::size_t max_seen = 4096;  // strangers beyond are not listed
    std::string my_cluster;                          // our cluster id, 8 hex ("" without a cookie)
    std::set<std::string> said;                      // hints said once (bounded)
    // Says a hint once (o.log, else the default sink); call without mu held.
    void hint(const std::string& once_key, const std::string& line) {
        {
            std::lock_guard lk(mu);
            if (said.size() >= 1024 || !said.insert(once_key).second) return;
        }
        log_record r;
        r.level = log_level::info;
        r.source = "discovery";
        r.text = line;
        r.node = my_name;
        log_to(o.log, r);
    }
    // The broadcast destinations of the last enumeration.
    std::set<std::uint32_t> bcast;

    // Flood limits (discovery thread only). A token bucket.
    struct bucket {
        double tokens = -1;  // < 0: new, starts full
        clock_type::time_point at{};
        bool take(double rate, double burst, clock_type::time_point now) {
            rate = std::max(rate, 0.001);
            if (tokens < 0) tokens = burst;
            else tokens = std::min(burst, tokens + rate * std::chrono::duration<double>(now - at).count());
            at = now;
            if (tokens < 1) return false;
            tokens -= 1;
            return true;
        }
    };
    struct source_budget {
        bucket cluster, answers;
        clock_type::time_point used{};
    };
    static constexpr std::size_t max_sources = 1024;  // beyond: new sources share `overflow`
    std::map<std::uint32_t, source_budget> sources;
    source_budget overflow;
    bucket strangers, answers;
    source_budget& source(std::uint32_t addr, clock_type::time_point now) {
        auto it = sources.find(addr);
        if (it == sources.end()) {
            if (sources.size() >= max_sources) return overflow;
            it = sources.emplace(addr, source_budget{}).first;
        }
        it->second.used = now;
        return it->second;
    }
    // Replay protection: the newest authenticated beacon of each sender key
    // (kept while it is within the skew: older ones are stale anyway).
    struct sender_state {
        std::uint64_t ts = 0, nonce = 0;
    };
    static constexpr std::size_t max_senders = 4096;
    std::map<public_key, sender_state> senders;
    std::uint64_t last_sent_ts = 0;  // our own timestamps strictly increase
    // Broadcast queries are answered by an early broadcast announce, at most
    // one per early_gap.
    clock_type::time_point last_early{};
    bool early_pending = false;
    clock_type::duration early_gap() const {
        return std::clamp<clock_type::duration>(o.interval / 4, std::chrono::milliseconds(20),
                                                std::chrono::milliseconds(250));
    }
    // Forgets senders whose newest beacon is outside the skew and sources
    // idle for 10 s.
    void prune(clock_type::time_point now) {
        const auto wall = wall_ms();
        const auto skew = static_cast<std::uint64_t>(std::max<long long>(0, o.max_clock_skew.count()));
        for (auto it = senders.begin(); it != senders.end();)
            it = it->second.ts + skew < wall ? senders.erase(it) : std::next(it);
        for (auto it = sources.begin(); it != sources.end();)
            it = now - it->second.used > std::chrono::seconds(10) ? sources.erase(it) : std::next(it);
    }

    impl(node& nd, discovery_options opts) : n(nd), o(std::move(opts)) {}

    void setup() {
        if (sodium_init() < 0) throw setup_error("kith discovery: libsodium failed to initialise");
        if (n.endpoint().empty()) throw setup_error("kith discovery: the node has no network (net.listen is empty)");
        if (o.interface.empty())
            if (const char* e = std::getenv("KITH_INTERFACE"); e && *e) o.interface = e;
        if (!o.interface.empty() && if_nametoindex(o.interface.c_str()) == 0)
        {
            std::string names;
            ifaddrs* ifs = nullptr;
            std::set<std::string> seen_if;
            if (::getifaddrs(&ifs) == 0) {
                for (auto* i = ifs; i; i = i->ifa_next)
                    if (i->ifa_name && seen_if.insert(i->ifa_name).second) names += (names.empty() ? "" : ", ") + std::string(i->ifa_name);
                ::freeifaddrs(ifs);
            }
            throw setup_error("kith discovery: unknown interface \"" + o.interface + "\" (this machine has: " +
                              (names.empty() ? std::string("none") : names) + ")");
        }
        if (o.interval.count() <= 0) o.interval = std::chrono::milliseconds(1000);
        my_name = n.name();
        my_key = n.key();
        auto [host, port] = split_endpoint(n.endpoint());
        my_port = port;
        // A concrete (or advertised, net.advertise) endpoint is announced as
        // is; a wildcard or loopback one as "my source address".
        if (!anonymous_host(host)) my_endpoint = n.endpoint();
        if (auto h = n.cookie_key("beacon-hmac")) {
            hkey = beacon_hmac_key::from_keys(*h, *n.cookie_key("beacon-cluster-id"));
            sodium_memzero(h->data(), h->size());
            my_cluster = id_hex(hkey->id.data());
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

    void wakeup() {
        std::uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(wake.fd, &one, sizeof one);
    }

    // --- sending -------------------------------------------------------------

    beacon make(beacon_type t) {
        beacon b;
        b.type = t;
        // Strictly increasing per sender: receivers drop anything not newer.
        b.timestamp_ms = last_sent_ts = std::max(wall_ms(), last_sent_ts + 1);
        randombytes_buf(&b.nonce, sizeof b.nonce);
        b.tcp_port = my_port;
        b.key = my_key;
        b.name = my_name;
        b.endpoint = my_endpoint;
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

    std::vector<std::uint8_t> encode(const beacon& b) const { return encode_beacon(b, hkey ? &*hkey : nullptr); }

    void send_to(const std::vector<std::uint8_t>& bytes, const sockaddr_in& to) {
        if (bytes.empty()) return;
        auto r = ::sendto(tx.fd, bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
        if (r == static_cast<ssize_t>(bytes.size())) {
            std::lock_guard lk(mu);
            ++c.beacons_sent;
        }
    }

    // Broadcast destinations now: the option's address, else the broadcast
    // address of every up, broadcast-capable IPv4 interface (or the chosen
    // one). Returns the destinations that are new since the last call.
    std::vector<std::uint32_t> enumerate() {
        std::set<std::uint32_t> now;
        if (!o.broadcast_address.empty()) {
            if (auto a = resolve4(o.broadcast_address)) now.insert(a->s_addr);
        } else {
            ifaddrs* ifs = nullptr;
            if (::getifaddrs(&ifs) == 0) {
                for (auto* i = ifs; i; i = i->ifa_next) {
                    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
                    if (!(i->ifa_flags & IFF_UP) || !(i->ifa_flags & IFF_BROADCAST) || (i->ifa_flags & IFF_LOOPBACK))
                        continue;
                    if (!(i->ifa_flags & IFF_RUNNING)) continue;  // no carrier (cable out, peer link down)
                    if (!o.interface.empty() && o.interface != i->ifa_name) continue;
                    if (!i->ifa_broadaddr) continue;
                    now.insert(reinterpret_cast<sockaddr_in*>(i->ifa_broadaddr)->sin_addr.s_addr);
                }
                ::freeifaddrs(ifs);
            }
        }
        std::vector<std::uint32_t> fresh;
        for (auto a : now)
            if (!bcast.count(a)) fresh.push_back(a);
        bcast = std::move(now);
        return fresh;
    }

    std::vector<sockaddr_in> peer_addrs() const {
        std::vector<sockaddr_in> v;
        for (auto& p : o.peers) {
            auto [host, port] = split_endpoint(p);
            (void)port;
            if (auto a = resolve4(host)) v.push_back(make_addr(*a, o.port));
        }
        return v;
    }

    // Sends a beacon of type t to every broadcast destination (or only
    // `only`) and to the static peers.
    void broadcast(beacon_type t, const std::vector<std::uint32_t>* only = nullptr, bool to_peers = true) {
        auto bytes = encode(make(t));
        for (auto a : only ? std::set<std::uint32_t>(only->begin(), only->end()) : bcast)
            send_to(bytes, make_addr(in_addr{a}, o.port));
        if (to_peers)
            for (auto& a : peer_addrs()) send_to(bytes, a);
    }

    // --- receiving -----------------------------------------------------------

    void drain(int fd) {
        std::uint8_t buf[beacon_max_bytes + 1];
        for (int i = 0; i < 256; ++i) {  // bounded per wake-up; poll comes back for the rest
            sockaddr_in from{};
            iovec iov{buf, sizeof buf};
            alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(in_pktinfo))];
            msghdr m{};
            m.msg_name = &from;
            m.msg_namelen = sizeof from;
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            m.msg_control = ctl;
            m.msg_controllen = sizeof ctl;
            auto r = ::recvmsg(fd, &m, 0);
            if (r < 0) return;
            std::uint32_t dst = 0;
            for (auto* cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
                if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
                    in_pktinfo pi;
                    std::memcpy(&pi, CMSG_DATA(cm), sizeof pi);
                    dst = pi.ipi_addr.s_addr;
                }
            // (A datagram longer than a beacon is cut to 1201 bytes: malformed.)
            handle(std::span<const std::uint8_t>(buf, static_cast<std::size_t>(r)), from, is_broadcast(dst));
        }
    }

    // Whether a datagram was sent to a broadcast (or multicast) address
    // rather than to this host.
    bool is_broadcast(std::uint32_t dst) const {
        if (dst == 0) return false;
        if (dst == htonl(INADDR_BROADCAST) || bcast.count(dst)) return true;
        if ((ntohl(dst) & 0xf0000000u) == 0xe0000000u) return true;  // multicast
        return (ntohl(dst) & 0xffu) == 0xffu;  // the broadcast address of a /24 (or longer) subnet
    }

    void count(std::uint64_t discovery_counters::*field) {
        std::lock_guard lk(mu);
        ++(c.*field);
    }

    // A query: answered only in ways that cannot amplify (see discovery.hpp).
    void answer(bool cluster, std::size_t query_size, const sockaddr_in& from, bool broadcast_dst,
                clock_type::time_point now) {
        if (!o.announce) return;
        if (!cluster && broadcast_dst) {
            // Anyone may have sent it, with any source address: answer to
            // everyone, by broadcast, at most once per early_gap (run()).
            early_pending = true;
            return;
        }
        if (!cluster) {
            auto& src = source(from.sin_addr.s_addr, now);
            if (!src.answers.take(1, 3, now) || !answers.take(o.max_answers_per_s, o.max_answers_per_s, now)) {
                count(&discovery_counters::answers_limited);
                return;
            }
        }
        auto bytes = encode(make(beacon_type::announce));
        if (bytes.empty() || bytes.size() > query_size) return;
        send_to(bytes, from);
        count(&discovery_counters::queries_answered);
    }

    void handle(std::span<const std::uint8_t> data, const sockaddr_in& from, bool broadcast_dst = false) {
        auto d = decode_beacon(data, hkey ? &*hkey : nullptr);
        {
            std::lock_guard lk(mu);
            ++c.beacons_received;
            if (d.status == beacon_status::malformed) {
                ++c.malformed;
                return;
            }
            if (d.status == beacon_status::bad_hmac) {
                ++c.bad_hmac;
                return;
            }
        }
        beacon& b = d.b;
        if (b.key == my_key && (b.name == my_name || b.type == beacon_type::query)) return;  // our own
        const bool cluster = d.status == beacon_status::ok_cluster;
        auto now = clock_type::now();
        if (cluster) {
            // Freshness against our clock, then strictly newer than the
            // sender's newest accepted beacon (the timestamp is MAC'd).
            const auto wall = wall_ms();
            const auto skew = static_cast<std::uint64_t>(std::max<long long>(0, o.max_clock_skew.count()));
            if (b.timestamp_ms + skew < wall || b.timestamp_ms > wall + skew) {
                count(&discovery_counters::stale);
                long long off = static_cast<long long>(b.timestamp_ms) - static_cast<long long>(wall);
                hint("clock " + b.key.z85(),
                     "clock: the beacons of " + b.name + " (key " + b.key.fingerprint() + ") are " +
                         std::to_string(std::llabs(off) / 1000) + " s " + (off < 0 ? "behind" : "ahead of") +
                         " our clock (more than " + std::to_string(skew / 1000) +
                         " s allowed) and are ignored; set both clocks (NTP, or date -s)");
                return;
            }
            auto it = senders.find(b.key);
            if (it != senders.end() && b.timestamp_ms <= it->second.ts) {
                if (b.timestamp_ms == it->second.ts && b.nonce == it->second.nonce && b.type == beacon_type::announce) {
                    // The same beacon again (a second path): only a sign of
                    // life; nothing in it (nor its source address) is used.
                    std::lock_guard lk(mu);
                    if (auto e = seen.find(b.name); e != seen.end() && e->second.info.key == b.key && e->second.cluster) {
                        e->second.info.last_seen = now;
                        return;
                    }
                }
                count(&discovery_counters::replayed);
                return;
            }
            if (!source(from.sin_addr.s_addr, now).cluster.take(o.max_beacons_per_s, o.max_beacons_per_s, now)) {
                count(&discovery_counters::rate_limited);
                return;
            }
            if (it == senders.end()) {
                if (senders.size() >= max_senders) prune(now);
                if (senders.size() >= max_senders) {
                    count(&discovery_counters::rate_limited);
                    return;
                }
                it = senders.emplace(b.key, sender_state{}).first;
            }
            it->second = {b.timestamp_ms, b.nonce};
        } else if (!strangers.take(o.max_stranger_beacons_per_s, o.max_stranger_beacons_per_s, now)) {
            count(&discovery_counters::rate_limited);
            return;
        }
        if (b.type == beacon_type::query) {
            answer(cluster, data.size(), from, broadcast_dst, now);
            return;
        }
        char ip[INET_ADDRSTRLEN] = {};
        ::inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
        // E = 0: the MAC covers the tcp port; the source address is only a
        // hint (a dial elsewhere reaches a host that cannot complete CURVE
        // with this node key), and a copy of an accepted beacon from another
        // source changes nothing (above).
        const std::string endpoint =
            !b.endpoint.empty() ? b.endpoint : "tcp://" + std::string(ip) + ":" + std::to_string(b.tcp_port);
        if (b.name == my_name) {
            // Another node using our name (the transport refuses it as a
            // member): say so once per key.
            if (b.key != my_key && b.type == beacon_type::announce)
                hint("clash " + b.key.z85(), "name clash: another node calls itself " + my_name + " (key " +
                                                 b.key.fingerprint() + " at " + endpoint +
                                                 "); one of you should choose another name: kith node --name NAME");
            return;
        }
        const bool zero_id = std::all_of(d.cluster_id.begin(), d.cluster_id.end(), [](auto c) { return c == 0; });
        const std::string their_cluster = zero_id ? std::string() : id_hex(d.cluster_id.data());
        if (b.endpoint.empty() && b.tcp_port == 0) {
            std::lock_guard lk(mu);
            ++c.malformed;
            return;
        }
        const bool connected = n.info(b.name).has_value();
        std::unique_lock lk(mu);
        auto it = seen.find(b.name);
        if (b.type == beacon_type::leaving) {
            if (it == seen.end() || it->second.info.key != b.key) return;
            if (cluster && connected) {
                // The connection says it is alive; its goodbye (or its
                // heartbeats) decide, never a datagram.
                ++c.spoofed_leaves;
                return;
            }
            if (!cluster && it->second.cluster) return;  // a stranger cannot remove a member
            seen.erase(it);
            return;
        }
        // announce
        if (it != seen.end()) {
            entry& e = it->second;
            if (!cluster && e.cluster) {
                // A stranger never takes a member's name, nor downgrades its
                // entry (not even with the member's own public key).
                ++c.key_conflicts;
                return;
            }
            if (e.info.key != b.key) {
                // The name is pinned to the first key while that node is
                // connected.
                if (connected) {
                    ++c.key_conflicts;
                    return;
                }
                if (e.cluster && cluster) {
                    // a member restarted with another key: start afresh
                    seen.erase(it);
                    it = seen.end();
                } else if (!cluster) {
                    ++c.key_conflicts;  // two strangers: the first keeps the name until it expires
                    return;
                } else {
                    seen.erase(it);  // a member replaces a stranger that used its name
                    it = seen.end();
                }
            }
        } else if (!cluster && connected) {
            ++c.key_conflicts;  // a stranger using the name of a connected node
            return;
        }
        if (it == seen.end()) {
            if (seen.size() >= max_seen && !cluster) return;  // bounded: a flood of invented strangers
            it = seen.emplace(b.name, entry{}).first;
            it->second.first_heard = now;
        }
        entry& e = it->second;
        e.cluster = cluster;
        e.info.name = b.name;
        e.info.endpoint = endpoint;
        e.info.key = b.key;
        e.info.fingerprint = b.key.fingerprint();
        e.info.trust = cluster ? trust_level::cluster : trust_level::stranger;
        e.info.services = cluster ? b.services : b.public_services;
        e.info.last_seen = now;
        e.info.cluster_id = their_cluster;
        const bool fresh_stranger = !cluster && e.first_heard == now;
        cv.notify_all();
        if (cluster && o.auto_connect && !connected) maybe_dial(e, now, lk);
        if (fresh_stranger && o.announce && b.type == beacon_type::announce) {
            lk.unlock();
            hint("stranger " + b.name,
                 "stranger " + b.name + " at " + endpoint + ": another cookie (its cluster id " +
                     (their_cluster.empty() ? std::string("none") : their_cluster) + ", ours " + my_cluster +
                     "); to work together, start both nodes with the same --cookie");
        }
    }

    // One side dials: the node with the smaller name at once, the other only
    // if no connection came within two intervals (e.g. the smaller one does
    // not auto-connect, or knows us only as a static peer).
    void maybe_dial(entry& e, clock_type::time_point now, std::unique_lock<std::mutex>& lk) {
        if (e.dialing || now < e.next_dial) return;
        if (!(my_name < e.info.name) && now - e.first_heard < 2 * o.interval) return;
        e.dialing = true;
        std::string name = e.info.name, endpoint = e.info.endpoint;
        public_key key = e.info.key;
        lk.unlock();
        std::weak_ptr<impl> self = weak_from_this();
        auto timeout = std::max<std::chrono::nanoseconds>(3 * o.interval, std::chrono::seconds(3));
        n.connect_async(endpoint, key, timeout, [self, name, endpoint](result<std::string> r) {
            auto me = self.lock();
            if (!me) return;
            const bool refused = !r && r.code() != errc::timeout;
            {
                std::lock_guard lk2(me->mu);
                auto it = me->seen.find(name);
                if (!r) ++me->c.connect_failures;
                if (it == me->seen.end()) return;
                auto& e = it->second;
                e.dialing = false;
                e.refusals = refused ? std::min(e.refusals + 1, 6) : 0;
                // A refusal is not retried at once: 2, 4, 8 ... up to 64 intervals.
                if (!r) e.next_dial = clock_type::now() + (2 << (refused ? e.refusals - 1 : 0)) * me->o.interval;
            }
            if (refused) me->hint("refused " + name + " " + r.err().detail,
                                  "refused: cannot connect to " + name + " at " + endpoint + ": " + r.err().message());
        });
        lk.lock();
    }

    void expire(clock_type::time_point now) {
        auto ttl = std::max<clock_type::duration>(3 * o.interval, std::chrono::seconds(3));
        std::vector<std::string> names;
        {
            std::lock_guard lk(mu);
            for (auto& [k, e] : seen)
                if (now - e.info.last_seen > ttl) names.push_back(k);
        }
        for (auto& k : names) {
            if (n.info(k)) continue;  // connected: the connection decides
            std::lock_guard lk(mu);
            if (auto it = seen.find(k); it != seen.end() && now - it->second.info.last_seen > ttl && !it->second.dialing)
                seen.erase(it);
        }
    }

    // Re-dials members heard recently but not connected (after a failed dial
    // or a lost connection whose link gave up).
    void redial(clock_type::time_point now) {
        if (!o.auto_connect) return;
        std::vector<std::string> names;
        {
            std::lock_guard lk(mu);
            for (auto& [k, e] : seen)
                if (e.cluster && !e.dialing) names.push_back(k);
        }
        for (auto& k : names) {
            if (n.info(k)) continue;
            std::unique_lock lk(mu);
            if (auto it = seen.find(k); it != seen.end()) maybe_dial(it->second, now, lk);
        }
    }

    void send_query(const std::vector<std::uint32_t>* only = nullptr, bool to_peers = true) {
        broadcast(beacon_type::query, only, to_peers);
    }

    void run() {
        enumerate();
        send_query();
        if (o.announce) broadcast(beacon_type::announce);
        auto next = clock_type::now() + o.interval;
        while (!stopping) {
            auto now = clock_type::now();
            if (now >= next) {
                auto fresh = enumerate();
                if (!fresh.empty()) send_query(&fresh, false);  // an interface (re)appeared
                if (!o.peers.empty()) {
                    // Static peers answer queries only: ask them every interval.
                    std::vector<std::uint32_t> none;
                    send_query(&none, true);
                }
                if (o.announce) broadcast(beacon_type::announce);
                expire(now);
                redial(now);
                prune(now);
                next = now + o.interval;
            }
            if (query_now.exchange(false)) send_query();
            auto early_at = last_early + early_gap();
            if (early_pending && clock_type::now() >= early_at) {
                // Answer to the broadcast queries heard since the last one.
                early_pending = false;
                last_early = clock_type::now();
                broadcast(beacon_type::announce, nullptr, false);
            }
            pollfd p[3] = {{rx.fd, POLLIN, 0}, {tx.fd, POLLIN, 0}, {wake.fd, POLLIN, 0}};
            auto wake_at = early_pending ? std::min(next, last_early + early_gap()) : next;
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wake_at - clock_type::now()).count();
            ::poll(p, 3, static_cast<int>(std::clamp<long long>(ms + 1, 0, 1000)));
            if (p[2].revents & POLLIN) {
                std::uint64_t v;
                [[maybe_unused]] auto r = ::read(wake.fd, &v, sizeof v);
            }
            if (p[0].revents & POLLIN) drain(rx.fd);
            if (p[1].revents & POLLIN) drain(tx.fd);
        }
        if (o.announce) broadcast(beacon_type::leaving);
    }

    std::vector<seen_node> list() const {
        std::vector<seen_node> v;
        {
            std::lock_guard lk(mu);
            for (auto& [k, e] : seen) v.push_back(e.info);
        }
        for (auto& s : v) s.connected = n.info(s.name).has_value();
        return v;
    }
};

discovery::discovery(node& n, discovery_options o) : impl_(std::make_shared<impl>(n, std::move(o))) {
    impl_->setup();
    impl_->th = std::thread([i = impl_.get()] { i->run(); });
}

discovery::~discovery() { stop(); }

void discovery::stop() {
    if (!impl_ || impl_->stopping.exchange(true)) return;
    impl_->wakeup();
    if (impl_->th.joinable()) impl_->th.join();
}

void discovery::query() {
    impl_->query_now = true;
    impl_->wakeup();
}

std::vector<seen_node> discovery::seen() const { return impl_->list(); }

result<seen_node> discovery::find(const std::string& name, std::chrono::nanoseconds timeout) {
    const bool full = name.find('@') != std::string::npos;
    auto matches = [&] {
        std::vector<seen_node> m;
        for (auto& s : impl_->list())
            if (full ? s.name == name : short_name(s.name) == name) m.push_back(s);
        return m;
    };
    auto deadline = clock_type::now() + timeout;
    auto m = matches();
    if (m.empty()) {
        query();
        std::unique_lock lk(impl_->mu);
        while (clock_type::now() < deadline) {
            impl_->cv.wait_until(lk, deadline);
            lk.unlock();
            m = matches();
            lk.lock();
            if (!m.empty()) break;
        }
    }
    if (!m.empty() && !full) {
        // Answers to one query arrive within milliseconds: give the others a
        // moment so an ambiguous short name is noticed.
        auto grace = std::min<clock_type::time_point>(deadline, clock_type::now() + std::chrono::milliseconds(200));
        std::unique_lock lk(impl_->mu);
        while (clock_type::now() < grace) impl_->cv.wait_until(lk, grace);
        lk.unlock();
        m = matches();
    }
    if (m.size() == 1) return m.front();
    if (m.size() > 1) {
        std::string d = "\"" + name + "\" is ambiguous:";
        for (auto& s : m) d += " " + s.name;
        return error{errc::badarg, d};
    }
    std::string d = "no node named \"" + name + "\" answered; seen:";
    auto all = seen();
    if (all.empty()) d += " nothing";
    for (auto& s : all) d += " " + s.name;
    return error{errc::timeout, d};
}

discovery_counters discovery::stats() const {
    std::lock_guard lk(impl_->mu);
    return impl_->c;
}

}  // namespace kith
