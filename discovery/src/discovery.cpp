// discovery.cpp — kith::discovery (kith/discovery.hpp): UDP beacons on the
// LAN, auto-connect to cluster members, a list of what was heard.
//
// One thread per discovery object runs run() below: it polls the two UDP
// sockets (beacon_io.cpp) plus an eventfd (wake-ups for query() and stop()),
// announces every interval, and re-enumerates the interfaces each time (an
// interface that comes back is queried at once). What is received is checked
// and applied in seen.cpp; members are dialled in auto_connect.cpp. The
// pieces and their shared state: discovery_impl.hpp.
#include <linux/sock_diag.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "discovery_impl.hpp"

namespace kith {

using namespace detail;
using clock_type = disc::clock_type;

term seen_node::to_term() const {
    // node_info's map (one shape for "a node" in every listing), with
    // "connected" where node_info has "hidden".
    term t = node_info{name, endpoint, fingerprint, trust, services, false}.to_term();
    term_map m = *t.as_map();
    for (auto& [k, v] : m)
        if (k == term("hidden")) k = term("connected"), v = term(connected);
    return term(std::move(m));
}

namespace disc {

std::uint64_t wall_ms() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

std::string id_hex(const std::uint8_t* id) {
    char buf[9];
    std::snprintf(buf, sizeof buf, "%02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
    return buf;
}

std::pair<std::string, std::uint16_t> split_endpoint(const std::string& ep) {
    auto rest = ep.rfind("tcp://", 0) == 0 ? ep.substr(6) : ep;
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) return {rest, 0};
    unsigned long p = std::strtoul(rest.c_str() + colon + 1, nullptr, 10);
    return {rest.substr(0, colon), p <= 65535 ? static_cast<std::uint16_t>(p) : std::uint16_t(0)};
}

fd_guard::~fd_guard() {
    if (fd >= 0) ::close(fd);
}

}  // namespace disc

namespace {
std::string short_name(const std::string& full) { return full.substr(0, full.find('@')); }
}  // namespace

void discovery::impl::hint(const std::string& once_key, const std::string& line) {
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

void discovery::impl::count(std::uint64_t discovery_counters::*field) {
    std::lock_guard lk(mu);
    ++(c.*field);
}

clock_type::duration discovery::impl::early_gap() const {
    return std::clamp<clock_type::duration>(o.interval / 4, std::chrono::milliseconds(20),
                                            std::chrono::milliseconds(250));
}

void discovery::impl::run() {
    // Below the node's I/O and worker threads (Linux: the nice value is per
    // thread): a flood of datagrams costs this thread's reads, and on a busy
    // machine those wait, members' calls do not. Beacons are once a second;
    // what waits is read a little later (the socket's buffer holds it).
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 10);
    ::pthread_setname_np(::pthread_self(), "kith-discovery");  // in top -H, perf, /proc/PID/task
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
        int got = 0;
        if (p[0].revents & POLLIN) got += drain(rx.fd);
        if (p[1].revents & POLLIN) got += drain(tx.fd);
        // A flood's datagrams arrive one by one: waking for each costs more
        // than reading it. After a turn that read several, a millisecond's
        // pause lets the next turn read what came meanwhile in batches (the
        // socket's buffer holds hundreds; beacons are a second apart).
        if (got > 1 && !stopping) std::this_thread::sleep_for(flood_coalesce);
    }
    if (o.announce) broadcast(beacon_type::leaving);
}


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
        auto grace = std::min<clock_type::time_point>(deadline, clock_type::now() + find_grace);
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
    discovery_counters c;
    {
        std::lock_guard lk(impl_->mu);
        c = impl_->c;
    }
    // The kernel's count for the receiving socket (filter and full buffer).
    std::uint32_t mem[SK_MEMINFO_VARS] = {};
    socklen_t len = sizeof mem;
    if (::getsockopt(impl_->rx.fd, SOL_SOCKET, SO_MEMINFO, mem, &len) == 0 && len > SK_MEMINFO_DROPS * sizeof mem[0])
        c.dropped_by_kernel = mem[SK_MEMINFO_DROPS];
    return c;
}

}  // namespace kith
