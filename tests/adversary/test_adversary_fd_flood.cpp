// Raw TCP floods that never finish CURVE (issue 13, "Link-table
// exhaustion"): a stranger opens thousands of plain TCP connections to a
// node's port and holds them, sending nothing or a partial ZMTP greeting.
// Each costs the node a file descriptor from accept() until libzmq gives up
// on its handshake; ZAP never sees them. The victim is started with the soft
// RLIMIT_NOFILE most distributions give a process (here 512, below the
// flood), the hard limit untouched. Asserted while the flood runs (the
// attacker reopens every connection the victim drops, so it holds 2000 at
// all times):
//   - the node raised its soft limit to the hard one at start;
//   - a cluster member connects and its calls all succeed;
//   - every held connection is dropped after the handshake timeout (the
//     node's heartbeat_timeout, 2.5 s by default), not held for ever.
// All 2000 come from 127.0.0.1, so this victim does not ration connections
// per address (KITH_VICTIM_CONNS_PER_ADDRESS=0): it stands for a flood from
// many addresses. The second test floods a victim that does: one address is
// cut off after its burst, and the flood never holds more than that.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <mutex>

#include "adversary_harness.hpp"

using namespace adv;

namespace {

const std::string kVictim = "victim@localhost";
const std::string kMember = "member@localhost";

// "tcp://127.0.0.1:40123" -> 40123
int port_of(const std::string& ep) { return std::stoi(ep.substr(ep.rfind(':') + 1)); }

long field(const std::string& line, const std::string& key) {
    auto p = line.find(" " + key + "=");
    REQUIRE(p != std::string::npos);
    return std::stol(line.substr(p + key.size() + 2));
}

// The attacker: keeps `target` plain TCP connections open to 127.0.0.1:port,
// odd ones having sent the first 10 bytes of a ZMTP greeting, even ones
// nothing. A connection the victim closes is counted with how long it was
// held, and replaced at once.
class tcp_flood {
public:
    tcp_flood(int port, std::size_t target) : port_(port), target_(target), thread_([this] { run(); }) {}
    ~tcp_flood() {
        stop_ = true;
        thread_.join();
    }
    std::size_t established() const { return established_.load(); }
    // Hold times (seconds) of the connections the victim dropped so far.
    std::vector<double> holds() {
        std::lock_guard lk(mu_);
        return holds_;
    }

private:
    struct conn {
        int fd;
        bool up = false;
        std::chrono::steady_clock::time_point since;
    };
    void open_one(std::vector<conn>& cs) {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) return;
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port_));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
            ::close(fd);
            return;
        }
        cs.push_back({fd, false, std::chrono::steady_clock::now()});
    }
    void run() {
        std::vector<conn> cs;
        std::vector<pollfd> ps;
        std::size_t n = 0;
        char buf[512];
        while (!stop_) {
            while (cs.size() < target_ && !stop_) {
                std::size_t before = cs.size();
                open_one(cs);
                if (cs.size() == before) break;  // out of fds or ports: try again next round
            }
            ps.clear();
            for (auto& c : cs) ps.push_back({c.fd, static_cast<short>(c.up ? POLLIN | POLLRDHUP : POLLOUT), 0});
            ::poll(ps.data(), ps.size(), 50);
            const auto now = std::chrono::steady_clock::now();
            std::size_t up = 0;
            for (std::size_t i = 0; i < cs.size();) {
                conn& c = cs[i];
                bool gone = false;
                const short ev = ps[i].revents;
                if (!c.up) {
                    if (ev & (POLLERR | POLLHUP)) {
                        gone = true;  // refused before it was up: not a hold
                    } else if (ev & POLLOUT) {
                        c.up = true;
                        c.since = now;
                        if (++n % 2) {
                            static const unsigned char greeting[10] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f};
                            ssize_t w = ::send(c.fd, greeting, sizeof greeting, MSG_NOSIGNAL);
                            (void)w;
                        }
                    }
                } else if (ev & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) {
                    // The victim's own greeting is data; only EOF or an error is a drop.
                    for (;;) {
                        ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
                        if (r > 0) continue;
                        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                        gone = true;
                        std::lock_guard lk(mu_);
                        holds_.push_back(std::chrono::duration<double>(now - c.since).count());
                        break;
                    }
                }
                if (gone) {
                    ::close(c.fd);
                    c = cs.back();
                    cs.pop_back();
                    ps[i] = ps.back();
                    ps.pop_back();
                    continue;
                }
                up += c.up;
                ++i;
            }
            established_ = up;
        }
        for (auto& c : cs) ::close(c.fd);
    }

    int port_;
    std::size_t target_;
    std::atomic<bool> stop_{false};
    std::atomic<std::size_t> established_{0};
    std::mutex mu_;
    std::vector<double> holds_;
    std::thread thread_;
};

// Sets this process's soft RLIMIT_NOFILE (inherited by children started meanwhile).
void set_soft_nofile(rlim_t v) {
    rlimit rl{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = std::min(v, rl.rlim_max);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

}  // namespace

TEST_CASE("adversary: 2000 raw TCP connections that never finish CURVE do not lock a member out",
          "[adversary][flood]") {
    constexpr std::size_t kFlood = 2000;
    constexpr rlim_t kVictimSoft = 512;  // what the victim is started with: below the flood
    rlimit own{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &own) == 0);
    if (own.rlim_max < 3 * kFlood) {
        WARN("skipped: the hard RLIMIT_NOFILE (" << own.rlim_max << ") is too low for this test");
        return;
    }
    temp_dir tmp;
    set_soft_nofile(kVictimSoft);
    std::unique_ptr<victim> v;
    try {
        v = start_victim(kVictim, tmp.path / "victim", "flood-cookie",
                         {"/usr/bin/env", "KITH_VICTIM_CONNS_PER_ADDRESS=0"});
    } catch (...) {
        set_soft_nofile(own.rlim_max);
        throw;
    }
    set_soft_nofile(own.rlim_max);  // the attacker (this process) needs its 2000 and more
    const std::string ep = (*v)["ep"], key = (*v)["key"];
    const std::string before = v->ask("limits");
    INFO(before);
    // The defence's first step: the node took the hard limit as its budget.
    CHECK(field(before, "soft") == field(before, "hard"));
    CHECK(field(before, "hard") == static_cast<long>(own.rlim_max));

    auto m = start_victim(kMember, tmp.path / "member", "flood-cookie");
    tcp_flood flood(port_of(ep), kFlood);
    // The flood holds (nearly) all its connections at the victim.
    // The victim accepts them from its backlog at its own pace (slowly on a
    // loaded machine): wait for it with a deadline.
    const bool held = eventually([&] { return flood.established() >= kFlood * 95 / 100; }, 20s);
    std::string during;
    const bool accepted = eventually(
        [&] {
            during = v->ask("limits");
            return field(during, "fds") >= static_cast<long>(kFlood / 2);
        },
        20s);
    INFO(during << " established=" << flood.established());
    CHECK(held);
    CHECK(accepted);

    // A member connects and calls while the flood runs, through at least
    // one handshake timeout's worth of churn.
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(m->ask("connect " + ep + " " + key) == "connect ok " + kVictim);
    int ok = 0, calls = 0;
    while (std::chrono::steady_clock::now() - t0 < 4s) {
        ++calls;
        ok += m->ask("call " + kVictim + " relay ping") == "call ok \"pong\"";
    }
    CHECK(calls >= 10);
    CHECK(ok == calls);

    // Held connections are dropped after the handshake timeout (2.5 s), not
    // held for ever: most within a second of it, every one well within 10 s.
    REQUIRE(eventually([&] { return flood.holds().size() >= kFlood; }, 20s));
    auto h = flood.holds();
    std::sort(h.begin(), h.end());
    INFO("drops=" << h.size() << " min=" << h.front() << " median=" << h[h.size() / 2]
                  << " p90=" << h[h.size() * 9 / 10] << " max=" << h.back());
    CHECK(h[h.size() / 2] >= 2.0);
    CHECK(h[h.size() / 2] <= 3.5);
    CHECK(h[h.size() * 9 / 10] <= 6.0);
    // The victim is still a working node afterwards.
    CHECK(m->ask("call " + kVictim + " relay ping") == "call ok \"pong\"");
}

TEST_CASE("adversary: a raw TCP flood from one address is cut off after its burst, a member by the member port calls on",
          "[adversary][flood]") {
    constexpr std::size_t kFlood = 2000;
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "flood-cookie");  // 16 a second, burst 64
    auto m = start_victim(kMember, tmp.path / "member", "flood-cookie");
    const std::string ep = (*v)["ep"], mep = (*v)["mep"], key = (*v)["key"];
    REQUIRE_FALSE(mep.empty());
    const long idle_fds = field(v->ask("limits"), "fds");
    tcp_flood flood(port_of(ep), kFlood);
    // The victim sees the burst of connections held open (each fd is still
    // open when its ACCEPTED event is read) and blocks 127.0.0.1 at the
    // public port: the rest of the flood's SYNs are dropped by the kernel.
    std::string st;
    REQUIRE(eventually(
        [&] {
            st = v->ask("stats");
            return field(st, "blocks") >= 1;
        },
        20s));
    // The burst and what got in before the filter was installed (the
    // victim reads the accept events in batches: 117 here on an idle
    // machine), far from the 2000 the flood holds without the budget.
    long fds = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < 1500ms) {
        fds = std::max(fds, field(v->ask("limits"), "fds"));
        std::this_thread::sleep_for(50ms);
    }
    INFO(st << " idle fds=" << idle_fds << " peak fds=" << fds << " established=" << flood.established());
    CHECK(fds - idle_fds < 1000);
    CHECK(flood.established() < 1000);
    // A member by the member port: untouched by the public port's block.
    REQUIRE(m->ask("connect " + mep + " " + key) == "connect ok " + kVictim);
    for (int i = 0; i < 10; ++i) CHECK(m->ask("call " + kVictim + " relay ping") == "call ok \"pong\"");
}
