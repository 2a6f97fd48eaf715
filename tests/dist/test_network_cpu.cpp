// net_options::network_cpu pins a node's network threads (its two I/O
// threads, and ZeroMQ's two I/O threads shared by the process) to one CPU,
// and nothing else; a CPU the process may not run on leaves them unpinned
// and says so. network_cpu_auto keeps them together on the least busy CPU
// (its rule is tested on given figures; a real node only for where the
// threads end up). Over real nodes (CURVE on loopback); each test case runs in
// a process of its own (ZeroMQ's threads start with the first node).
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "transport/cpu_placer.hpp"
#include "kith/node.hpp"
#include "kith/service.hpp"
#include "kith_catch.hpp"
#include "loopback_opts.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

struct thread_cpus {
    std::string comm;     // the thread's name
    std::string allowed;  // its Cpus_allowed_list, e.g. "0-1" or "1"
};

std::vector<thread_cpus> threads() {
    std::vector<thread_cpus> out;
    for (auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
        thread_cpus tc;
        std::ifstream(t.path() / "comm") >> tc.comm;
        std::ifstream st(t.path() / "status");
        for (std::string line; std::getline(st, line);)
            if (line.rfind("Cpus_allowed_list:", 0) == 0) tc.allowed = line.substr(line.find_first_not_of(" \t", 18));
        out.push_back(tc);
    }
    return out;
}

std::string process_cpus() {
    std::ifstream st("/proc/self/status");
    for (std::string line; std::getline(st, line);)
        if (line.rfind("Cpus_allowed_list:", 0) == 0) return line.substr(line.find_first_not_of(" \t", 18));
    return {};
}

// The highest CPU this process may run on, and how many it may.
std::pair<int, int> allowed_cpus() {
    cpu_set_t s;
    CPU_ZERO(&s);
    REQUIRE(sched_getaffinity(0, sizeof s, &s) == 0);
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &s)) last = c;
    return {last, CPU_COUNT(&s)};
}

struct log_lines {
    std::mutex mu;
    std::vector<std::string> lines;
    log_sink sink() {
        return [this](const log_record& r) {
            std::lock_guard lk(mu);
            lines.push_back(std::string(to_string(r.level)) + "|" + std::string(r.text));
        };
    }
    bool has(const std::string& part) {
        std::lock_guard lk(mu);
        for (auto& l : lines)
            if (l.find(part) != std::string::npos) return true;
        return false;
    }
};

// Two nodes with network_cpu_auto (a's log kept), b serving echo:echo: the
// default, left as it is (`off` sets network_cpu_off instead).
struct auto_pair {
    temp_dir da, db;
    log_lines log;
    std::optional<node> a, b;
    explicit auto_pair(bool off = false) {
        node_options oa = loopback_opts("a@test", da.path, "cpu-cookie");
        node_options ob = loopback_opts("b@test", db.path, "cpu-cookie");
        if (off) oa.net.network_cpu = ob.net.network_cpu = net_options::network_cpu_off;
        oa.net.log = log.sink();
        a.emplace(oa);
        b.emplace(ob);
        service s("echo");
        s.function("echo", [](term x) { return x; });
        // How many CPUs this thread may use, and a child forked from it.
        s.function("cpus", [](term) {
            cpu_set_t mine;
            CPU_ZERO(&mine);
            sched_getaffinity(0, sizeof mine, &mine);
            int fds[2];
            if (pipe(fds) != 0) return arr(CPU_COUNT(&mine), -1);
            const pid_t child = fork();
            if (child == 0) {
                cpu_set_t c;
                CPU_ZERO(&c);
                sched_getaffinity(0, sizeof c, &c);
                const char n = static_cast<char>(CPU_COUNT(&c));
                (void)!write(fds[1], &n, 1);
                _exit(0);
            }
            close(fds[1]);
            char n = -1;
            (void)!read(fds[0], &n, 1);
            close(fds[0]);
            int status = 0;
            waitpid(child, &status, 0);
            return arr(CPU_COUNT(&mine), static_cast<int>(n));
        });
        b->add_service(std::move(s));
    }
    std::string connect() {
        auto up = a->connect(b->endpoint(), b->key());
        REQUIRE(up.ok());
        return *up;
    }
};

}  // namespace

TEST_CASE("network_cpu: the node's and ZeroMQ's I/O threads run on that CPU only - other threads do not") {
    const auto [cpu, count] = allowed_cpus();
    REQUIRE(cpu >= 0);
    const std::string before = process_cpus();
    temp_dir da, db;
    node_options oa = loopback_opts("a@test", da.path, "cpu-cookie");
    node_options ob = loopback_opts("b@test", db.path, "cpu-cookie");
    oa.net.network_cpu = ob.net.network_cpu = cpu;
    log_lines log;
    oa.net.log = log.sink();
    node a(oa);
    node b(ob);
    const std::string one = std::to_string(cpu);
    // ZeroMQ's threads pin and name themselves as they start (inside
    // libzmq): looked at until they have, within a deadline.
    int pinned = 0, zmq_io = 0, zmq_bg = 0, zmq_pinned = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    do {
        pinned = zmq_io = zmq_bg = zmq_pinned = 0;
        for (auto& t : threads()) {
            const bool on_it = t.allowed == one;
            if (t.comm.rfind("ZMQbg/", 0) == 0) {
                ++zmq_bg;  // its I/O threads and its reaper (idle)
                zmq_pinned += on_it;
            }
            if (t.comm.rfind("ZMQbg/IO/", 0) == 0) ++zmq_io;
            pinned += on_it;
        }
        // (libzmq names its threads as they start, too: until then they
        // look like any other thread of the process.)
        if (zmq_io == 2 && zmq_pinned == zmq_bg && (count == 1 || pinned == zmq_bg + 2 * 2)) break;
        std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < deadline);
    CHECK(zmq_io == 2);
    CHECK(zmq_pinned == zmq_bg);
    if (count > 1) {
        // ZeroMQ's, and each node's leader and follower: nothing more
        // (workers, the ZAP and guest decoder threads, this one keep theirs).
        CHECK(pinned == zmq_bg + 2 * 2);
        CHECK(process_cpus() == before);
    }
    CHECK_FALSE(log.has("warning|"));
    // Calls work as before.
    service s("echo");
    s.function("echo", [](term x) { return x; });
    b.add_service(std::move(s));
    auto up = a.connect(b.endpoint(), b.key());
    REQUIRE(up.ok());
    auto r = a.call(*up, "echo", "echo", arr(7), 5s);
    REQUIRE(r.ok());
    CHECK(r.value() == term(7));
}

TEST_CASE("network_cpu: a CPU the process may not run on - the node starts unpinned and says what to do") {
    const std::string before = process_cpus();
    temp_dir d;
    node_options o = loopback_opts("a@test", d.path, "cpu-cookie");
    o.net.network_cpu = CPU_SETSIZE + 3;
    log_lines log;
    o.net.log = log.sink();
    node a(o);
    CHECK(log.has("warning|network_cpu " + std::to_string(CPU_SETSIZE + 3) +
                  " is not a CPU this process may run on: the network threads are not pinned"));
    for (auto& t : threads()) CHECK(t.allowed == before);
}

TEST_CASE("network_cpu auto: the rule - least busy CPU, moves only past the margin, never with one CPU") {
    using kith::detail::choose_network_cpu;
    const double m = kith::detail::cpu_placer::margin;
    CHECK(choose_network_cpu({0}, {0.0}, -1, m) == -1);              // one CPU: nothing pinned
    CHECK(choose_network_cpu({}, {}, -1, m) == -1);
    CHECK(choose_network_cpu({0, 1}, {0.9, 0.1}, -1, m) == 1);        // first placement: least busy
    CHECK(choose_network_cpu({0, 1}, {0.5, 0.4}, 0, m) == 0);         // within the margin: stays
    CHECK(choose_network_cpu({0, 1}, {0.4, 0.5}, 1, m) == 1);
    CHECK(choose_network_cpu({0, 1}, {1.0, 0.2}, 0, m) == 1);         // a hog on its CPU: moves
    CHECK(choose_network_cpu({0, 1, 2, 3}, {0.3, 0.9, 0.0, 0.6}, 1, m) == 2);
    CHECK(choose_network_cpu({2, 3}, {0.0, 0.0, 0.5, 0.1}, 0, m) == 3);  // its CPU no longer allowed
    // Waiting for its CPU (us per run) past the bound: to a CPU not tried, or
    // one where they waited under half as long; not between two alike.
    using kith::detail::escape_waiting_cpu;
    const double too_long = kith::detail::cpu_placer::too_long;
    CHECK(escape_waiting_cpu({0, 1}, {450, -1}, 0, 450, too_long) == 1);
    CHECK(escape_waiting_cpu({0, 1}, {450, 20}, 0, 450, too_long) == 1);
    CHECK(escape_waiting_cpu({0, 1}, {450, 300}, 0, 450, too_long) == -1);
    CHECK(escape_waiting_cpu({0, 1}, {20, 450}, 0, 20, too_long) == -1);   // under the bound: stays
    CHECK(escape_waiting_cpu({0}, {450}, 0, 450, too_long) == -1);
    CHECK(escape_waiting_cpu({0, 1}, {}, -1, 450, too_long) == -1);       // not placed yet
    // Waiting for each other (their CPU nearly theirs alone): a stream,
    // unpinned; beside other work it is the escape rule's case; a chain
    // waits 20-35 us a run (the figures of docs/performance.md).
    using kith::detail::waiting_for_each_other;
    const double margin = kith::detail::cpu_placer::margin;
    CHECK(waiting_for_each_other(400, 0.05, too_long, margin));    // remote_send, placed
    CHECK_FALSE(waiting_for_each_other(450, 0.9, too_long, margin));  // a CPU-bound thread beside them
    CHECK_FALSE(waiting_for_each_other(30, 0.0, too_long, margin));   // rpc, remote spawn
    // A move waits until the rules wanted to leave 2-4 looks in a row
    // (drawn when they start to): one look may straddle another process's
    // move (test_network_cpu_processes.cpp); a first placement is not held.
    using kith::detail::hold_then_move;
    using kith::detail::move_hold;
    for (unsigned draw : {0u, 1u, 2u, 7u}) {
        const int needed = 2 + static_cast<int>(draw % 3);
        move_hold h;
        for (int look = 1; look < needed; ++look) CHECK_FALSE(hold_then_move(h, 1, 0, draw));
        CHECK(hold_then_move(h, 1, 0, draw));
        CHECK_FALSE(hold_then_move(h, 1, 0, draw));  // counted again from there
    }
    move_hold h;
    CHECK_FALSE(hold_then_move(h, 1, 0, 0));
    CHECK_FALSE(hold_then_move(h, 0, 0, 0));  // a look that wants to stay: the count starts again
    CHECK_FALSE(hold_then_move(h, 1, 0, 0));
    CHECK(hold_then_move(h, 2, 0, 0));  // another CPU wanted: still leaving, to the last choice
    CHECK(h.want == -1);
    // On many CPUs alike the choice changes each look: the count goes on.
    move_hold many;
    CHECK_FALSE(hold_then_move(many, 3, 0, 2));  // needs 4
    CHECK_FALSE(hold_then_move(many, 1, 0, 2));
    CHECK_FALSE(hold_then_move(many, 2, 0, 2));
    CHECK(hold_then_move(many, 3, 0, 2));
    CHECK_FALSE(hold_then_move(h, -1, 0, 0));  // nothing wanted
    CHECK_FALSE(waiting_for_each_other(100, 0.0, too_long, margin));  // at the bound: stays
    // /proc/stat: busy = user nice system irq softirq steal; total adds idle, iowait.
    const auto t = kith::detail::parse_proc_stat(
        "cpu  10 0 10 100 0 0 0 0 0 0\n"
        "cpu0 1 2 3 100 5 6 7 8 0 0\n"
        "cpu2 10 0 0 30 0 0 0 0 0 0\n"
        "intr 5 6\n");
    REQUIRE(t.size() == 3);
    CHECK(t[0].busy == 1 + 2 + 3 + 6 + 7 + 8);
    CHECK(t[0].total == t[0].busy + 100 + 5);
    CHECK(t[1].total == 0);
    CHECK(t[2].busy == 10);
    CHECK(t[2].total == 40);
    CHECK(kith::detail::parse_proc_stat("garbage\ncpuX 1 2\n").empty());
}

TEST_CASE("network_cpu auto (the default): both nodes' and ZeroMQ's I/O threads end up together on one allowed CPU") {
    CHECK(net_options{}.network_cpu == net_options::network_cpu_auto);
    const auto [last, count] = allowed_cpus();
    const std::string before = process_cpus();
    auto_pair p;
    node& a = *p.a;
    log_lines& log = p.log;
    const std::string up = p.connect();
    if (count < 2) {
        // Nothing to choose between: nothing pinned, nothing said.
        for (auto& t : threads()) CHECK(t.allowed == before);
        CHECK_FALSE(log.has("network_cpu auto"));
        return;
    }
    // The placer's first look is 200 ms after it starts: waited for, within a deadline.
    std::vector<std::string> single;
    int zmq_io = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    do {
        single.clear();
        zmq_io = 0;
        for (auto& t : threads()) {
            if (t.allowed == before) continue;
            single.push_back(t.allowed);
            if (t.comm.rfind("ZMQbg/IO/", 0) == 0) ++zmq_io;
        }
        if (zmq_io == 2 && single.size() == 2 + 2 * 2) break;
        std::this_thread::sleep_for(10ms);
    } while (std::chrono::steady_clock::now() < deadline);
    CHECK(zmq_io == 2);
    // ZeroMQ's two I/O threads and each node's leader and follower, on one
    // and the same CPU; nothing else (workers, ZeroMQ's reaper, this thread).
    REQUIRE(single.size() == 2 + 2 * 2);
    for (auto& c : single) CHECK(c == single.front());
    CHECK(single.front().find_first_of(",-") == std::string::npos);
    CHECK(process_cpus() == before);
    CHECK(log.has("debug|network_cpu auto: network threads placed on CPU " + single.front()));
    CHECK_FALSE(log.has("warning|"));
    auto r = a.call(up, "echo", "echo", arr(7), 5s);
    REQUIRE(r.ok());
    CHECK(r.value() == term(7));
    // A service function runs on b's (pinned) I/O thread; a child it forks
    // gets every CPU of the process back (pthread_atfork), not that one.
    auto c = a.call(up, "echo", "cpus", arr(0), 5s);
    REQUIRE(c.ok());
    const term_array* got = c.value().as_array();
    REQUIRE((got && got->size() == 2));
    CHECK((*got)[1].as_int() == count);
}

TEST_CASE("network_cpu off: nothing is pinned, nothing placed") {
    const std::string before = process_cpus();
    auto_pair p(true);
    node& a = *p.a;
    const std::string up = p.connect();
    REQUIRE(a.call(up, "echo", "echo", arr(7), 5s).ok());
    // A placer would have looked 200 ms after the nodes started: past that
    // (a bounded wait for something that must not happen), every thread
    // still has the process's CPUs and nothing was said.
    std::this_thread::sleep_for(600ms);
    for (auto& t : threads()) CHECK(t.allowed == before);
    CHECK_FALSE(p.log.has("network_cpu auto"));
}

TEST_CASE("network_cpu auto: a process with one CPU pins nothing") {
    cpu_set_t was;
    CPU_ZERO(&was);
    REQUIRE(sched_getaffinity(0, sizeof was, &was) == 0);
    int first = 0;
    while (!CPU_ISSET(first, &was)) ++first;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);  // this thread, and those it starts
    struct restore {
        cpu_set_t s;
        ~restore() { sched_setaffinity(0, sizeof s, &s); }
    } back{was};
    auto_pair p;
    node& a = *p.a;
    log_lines& log = p.log;
    const std::string up = p.connect();
    auto r = a.call(up, "echo", "echo", arr(7), 5s);
    REQUIRE(r.ok());
    CHECK(kith::detail::cpu_placer::acquire()->cpu() == -1);
    CHECK_FALSE(log.has("network_cpu auto"));
}

// A node whose start fails (its port is taken) after it joined the
// process's placer must leave it: the placer outlives it (another auto node
// holds it) and tells every registered owner of each move, on its own
// thread. Before, the failed node's callback stayed registered with a
// pointer to its freed transport: the first placement called into freed
// memory (review, session 25; this test saw the freed node's log sink
// called, or crashed).
TEST_CASE("network_cpu auto: a node that failed to start is never told of a move (its transport is gone)") {
    const auto [last, count] = allowed_cpus();
    if (count < 2) return;  // no placer thread: nothing to tell anyone
    temp_dir da, db;
    node_options oa = loopback_opts("a@test", da.path, "cpu-cookie");
    oa.net.network_cpu = net_options::network_cpu_auto;
    log_lines la, lb;
    oa.net.log = la.sink();
    node a(oa);
    node_options ob = loopback_opts("b@test", db.path, "cpu-cookie");
    ob.net.network_cpu = net_options::network_cpu_auto;
    ob.net.listen = a.endpoint();  // taken: b's start fails
    ob.net.log = lb.sink();
    CHECK_THROWS_AS(node(ob), setup_error);
    // The placer's first look places the threads and tells its owners.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!la.has("network_cpu auto: network threads placed") && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(10ms);  // polling a log, with a deadline
    REQUIRE(la.has("network_cpu auto: network threads placed"));
    CHECK_FALSE(lb.has("network_cpu auto"));
}
