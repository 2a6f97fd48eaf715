// The relay's in-kernel forwarding when its thread looks late: a side's
// bytes that the kernel holds for the relay behind its peer's (where TCP's
// window does not count them) pile up for as long as the relay's thread is
// off the CPU. CI once ended such a session on a busy machine (the relay
// took the pile for a flood it should end). Here the relay's forwarding
// thread is kept off the CPU on purpose: it shares one CPU with a sender
// running at a real-time priority. Needs root (BPF sockmap, SCHED_FIFO);
// elsewhere it says so and checks nothing.
#include <dirent.h>
#include <pthread.h>
#include <sched.h>

#include <fstream>

#include "relay_kernel_world.hpp"

namespace {

// The thread of this process named `name` (its tid), or -1.
pid_t thread_named(const std::string& name) {
    DIR* d = ::opendir("/proc/self/task");
    if (!d) return -1;
    pid_t found = -1;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/comm");
        std::string comm;
        if (std::getline(f, comm) && comm == name) found = static_cast<pid_t>(std::stoi(e->d_name));
    }
    ::closedir(d);
    return found;
}

// While alive: the calling thread runs at a real-time priority on one CPU,
// and thread `starved` is pinned to that CPU too, so that it runs only when
// the caller sleeps (or the kernel's real-time throttle steps in: 5 % of a
// second). Undone on destruction. ok false: not allowed here.
class starve {
public:
    explicit starve(pid_t starved) : starved_(starved) {
        const int cpu = ::sched_getcpu();
        if (cpu < 0 || ::sched_getaffinity(0, sizeof mine_, &mine_) != 0 ||
            ::sched_getaffinity(starved_, sizeof theirs_, &theirs_) != 0)
            return;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        if (::sched_setaffinity(0, sizeof one, &one) != 0) return;
        pinned_ = true;
        if (::sched_setaffinity(starved_, sizeof one, &one) != 0) return;
        moved_ = true;
        sched_param p{};
        p.sched_priority = 10;
        ok = ::pthread_setschedparam(::pthread_self(), SCHED_FIFO, &p) == 0;
    }
    ~starve() {
        sched_param p{};
        ::pthread_setschedparam(::pthread_self(), SCHED_OTHER, &p);
        if (moved_) ::sched_setaffinity(starved_, sizeof theirs_, &theirs_);
        if (pinned_) ::sched_setaffinity(0, sizeof mine_, &mine_);
    }
    starve(const starve&) = delete;
    starve& operator=(const starve&) = delete;
    bool ok = false;

private:
    pid_t starved_;
    cpu_set_t mine_{}, theirs_{};
    bool pinned_ = false, moved_ = false;
};

}  // namespace

// The dialler sends until held (the relay holds the session: the reader
// does not read), then the other side floods while the relay's thread is
// kept off the CPU: its bytes pile up behind the dialler's, far beyond what
// the relay allows to pile up once it has made room for them. The relay
// looks late, makes room, and the session lives: every byte arrives once
// both read.
TEST_CASE("relay kernel: held bytes that piled up behind the peer's while the relay's thread was off the CPU end "
          "no session, and all arrive once read",
          "[relay]") {
    kernel_session s;
    if (!s.ok) return;
    const pid_t fwd = thread_named("kith-relay-fwd");
    REQUIRE(fwd > 0);
    bool ended = false;
    const std::size_t from_d = send_until_held(s.d, 512u << 20, 10, &ended);
    REQUIRE(!ended);
    REQUIRE(s.w.rel.counters().kernel_holds >= 1);
    const std::size_t flood = 96u << 20;  // beyond what the relay lets pile up once it looked (tens of MiB)
    std::size_t from_a = 0;
    {
        starve st(fwd);
        if (!st.ok) {
            WARN("a real-time priority is not allowed here: the late relay is not checked");
            return;
        }
        from_a = send_until_held(s.a, flood, 11, &ended);
    }
    const auto c = s.w.rel.counters();  // after the relay's next look (a tick)
    INFO("the dialler got " << from_d << " bytes out, the other side " << from_a << " (of " << flood
                            << " it tried) while the relay was off the CPU; sessions ended for it: "
                            << c.kernel_overflows);
    REQUIRE(!ended);
    CHECK(c.kernel_overflows == 0);
    CHECK(c.sessions == 1);
    read_both_and_close(s, from_d, 10, from_a, 11);
    CHECK(s.w.rel.counters().kernel_overflows == 0);
}
