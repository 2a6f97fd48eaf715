// process_support.hpp — what the multi-process tests (test_dist_process*.cpp)
// share: a kith_test_node child with deadline waits on its output, an event
// log, node options, and small waits. Every wait has a deadline; children are
// killed and reaped at scope exit.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../transport/tmpdir.hpp"
#include "child_node.hpp"
#include "kith/envelope.hpp"
#include "kith/keys.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"
#include "loopback_opts.hpp"
#include "transport/transport.hpp"

#ifndef KITH_TEST_NODE
#error "KITH_TEST_NODE must name the kith_test_node binary"
#endif

using namespace kith;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

namespace process_test {

const std::string kCookie = "process-cookie-7";

double ms_since(clock_type::time_point t0, clock_type::time_point t1 = clock_type::now()) {
    return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

// Node events with the time each arrived, from node::subscribe_nodes.
struct event_log {
    struct entry {
        node_event ev;
        clock_type::time_point at;
    };
    std::mutex mu;
    std::condition_variable cv;
    std::vector<entry> v;

    void operator()(const node_event& e) {
        std::lock_guard lk(mu);
        v.push_back({e, clock_type::now()});
        cv.notify_all();
    }
    std::size_t size() {
        std::lock_guard lk(mu);
        return v.size();
    }
    // The first event at index >= from for `node` of kind `k`.
    std::optional<entry> wait(std::size_t from, const std::string& node, node_event::kind k,
                              std::chrono::milliseconds timeout) {
        std::unique_lock lk(mu);
        std::optional<entry> found;
        cv.wait_for(lk, timeout, [&] {
            for (std::size_t i = from; i < v.size(); ++i)
                if (v[i].ev.node == node && v[i].ev.what == k) {
                    found = v[i];
                    return true;
                }
            return false;
        });
        return found;
    }
};

node_options opts(const std::string& name, const std::filesystem::path& key_dir, const std::string& cookie = kCookie) {
    return loopback_opts(name, key_dir, cookie);
}

// Starts a child and waits for READY (fails the test with its stderr if not).
void require_ready(child_node& c) {
    bool ok = c.wait_ready(10s);
    INFO("child stderr:\n" << c.stderr_text());
    REQUIRE(ok);
}

// The usual cast: our node tester@localhost (its node events logged) and
// one ready child@localhost of the same cluster, not yet connected.
struct tester_and_child {
    temp_dir tmp;
    event_log events;
    node me{opts("tester@localhost", tmp.path / "me")};
    child_node child{"child@localhost", tmp.path / "child", kCookie};
    tester_and_child() {
        me.subscribe_nodes(std::ref(events));
        require_ready(child);
    }
};

message expect(mailbox& mb, const mailbox::predicate& pred, std::chrono::milliseconds timeout = 5000ms) {
    auto r = mb.receive(pred, timeout);
    REQUIRE(r.ok());
    return std::move(*r);
}

std::int64_t stat_of(const term& stats, const char* key) {
    const term* v = stats.lookup(term(key));
    REQUIRE(v != nullptr);
    REQUIRE(v->as_int().has_value());
    return *v->as_int();
}

// Joins a thread at scope exit (also when a REQUIRE throws), after running
// `first` (e.g. killing the child the thread is blocked on).
struct joiner {
    std::thread& t;
    std::function<void()> first;
    ~joiner() {
        if (!t.joinable()) return;
        if (first) first();
        t.join();
    }
};

}  // namespace process_test

using namespace process_test;

