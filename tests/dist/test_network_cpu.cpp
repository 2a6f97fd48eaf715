// net_options::network_cpu pins a node's network threads (its two I/O
// threads, and ZeroMQ's two I/O threads shared by the process) to one CPU,
// and nothing else; a CPU the process may not run on leaves them unpinned
// and says so. Over real nodes (CURVE on loopback); each test case runs in
// a process of its own (ZeroMQ's threads start with the first node).
#include <sched.h>

#include <chrono>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../transport/tmpdir.hpp"
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
