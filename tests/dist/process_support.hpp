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
#include "kith/envelope.hpp"
#include "kith/keys.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"
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

// ---------------------------------------------------------------------------
// A kith_test_node child process. Its stdout and stderr are read by a thread
// into buffers; waits on them have deadlines. The destructor kills (SIGKILL)
// and reaps the child whatever happened in the test.
class child_node {
public:
    std::string name, endpoint;
    public_key key;

    child_node(std::string node_name, const std::filesystem::path& key_dir, const std::string& cookie,
               const std::string& listen = {}, std::vector<std::string> extra = {})
        : name(std::move(node_name)) {
        std::vector<std::string> args{KITH_TEST_NODE, "--name", name, "--key-dir", key_dir.string(),
                                      "--cookie", cookie};
        if (!listen.empty()) {
            args.push_back("--listen");
            args.push_back(listen);
        }
        for (auto& e : extra) args.push_back(e);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);

        int out[2], err[2];
        if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
        if (pipe2(err, O_CLOEXEC) != 0) {
            ::close(out[0]);
            ::close(out[1]);
            throw std::runtime_error("pipe2 failed");
        }
        const pid_t parent = getpid();
        pid_ = fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            // Only async-signal-safe calls until exec (the parent has threads).
            prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
            if (getppid() != parent) _exit(127);
            dup2(out[1], 1);
            dup2(err[1], 2);
            execv(argv[0], argv.data());
            _exit(127);
        }
        ::close(out[1]);
        ::close(err[1]);
        out_fd_ = out[0];
        err_fd_ = err[0];
        reader_ = std::thread([this] { read_loop(); });
    }

    ~child_node() {
        kill_now();
        reap();
        stop_reader_ = true;
        if (reader_.joinable()) reader_.join();
        if (out_fd_ >= 0) ::close(out_fd_);
        if (err_fd_ >= 0) ::close(err_fd_);
    }
    child_node(const child_node&) = delete;
    child_node& operator=(const child_node&) = delete;

    pid_t os_pid() const { return pid_; }

    // Waits for "READY <endpoint> <z85 key>"; false if the child died or the
    // deadline passed first.
    bool wait_ready(std::chrono::milliseconds timeout = 10s) {
        std::unique_lock lk(mu_);
        auto line_ready = [&] {
            auto p = out_.find("READY ");
            return p != std::string::npos && out_.find('\n', p) != std::string::npos;
        };
        cv_.wait_for(lk, timeout, [&] { return line_ready() || out_eof_; });
        if (!line_ready()) return false;
        auto p = out_.find("READY ");
        std::istringstream in(out_.substr(p + 6, out_.find('\n', p) - p - 6));
        std::string z85;
        in >> endpoint >> z85;
        auto k = public_key::from_z85(z85);
        if (!k || endpoint.empty()) return false;
        key = *k;
        return true;
    }

    // Waits until the child's stderr contains `needle`.
    bool wait_stderr(const std::string& needle, std::chrono::milliseconds timeout = 5s) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] { return err_.find(needle) != std::string::npos || err_eof_; }) &&
               err_.find(needle) != std::string::npos;
    }
    std::string stderr_text() {
        std::lock_guard lk(mu_);
        return err_;
    }
    std::size_t count_stderr(const std::string& needle) {
        std::lock_guard lk(mu_);
        std::size_t n = 0;
        for (auto p = err_.find(needle); p != std::string::npos; p = err_.find(needle, p + 1)) ++n;
        return n;
    }

    void signal(int sig) {
        if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
    }
    void kill_now() { signal(SIGKILL); }

    // True while the process has not exited.
    bool running() {
        if (reaped_ || pid_ <= 0) return false;
        int st = 0;
        pid_t r = waitpid(pid_, &st, WNOHANG);
        if (r == pid_) {
            reaped_ = true;
            status_ = st;
            return false;
        }
        return true;
    }

    // Waits for the child to exit (its pipes reach EOF) at most `timeout`;
    // then kills it if needed and reaps it. Returns the wait status.
    int reap(std::chrono::milliseconds timeout = 5s) {
        if (pid_ <= 0 || reaped_) return status_;
        {
            std::unique_lock lk(mu_);
            cv_.wait_for(lk, timeout, [&] { return out_eof_ && err_eof_; });
        }
        if (running()) {
            ::kill(pid_, SIGKILL);
            int st = 0;
            while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {}
            reaped_ = true;
            status_ = st;
        }
        return status_;
    }

private:
    void read_loop() {
        char buf[4096];
        while (!stop_reader_) {
            pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
            bool open_out, open_err;
            {
                std::lock_guard lk(mu_);
                open_out = !out_eof_;
                open_err = !err_eof_;
            }
            if (!open_out && !open_err) return;
            if (!open_out) p[0].fd = -1;
            if (!open_err) p[1].fd = -1;
            int n = ::poll(p, 2, 50);
            if (n <= 0) continue;
            for (int i = 0; i < 2; ++i) {
                if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                ssize_t got = ::read(p[i].fd, buf, sizeof buf);
                std::lock_guard lk(mu_);
                if (got > 0) {
                    (i == 0 ? out_ : err_).append(buf, static_cast<std::size_t>(got));
                } else if (got == 0 || errno != EINTR) {
                    (i == 0 ? out_eof_ : err_eof_) = true;
                }
                cv_.notify_all();
            }
        }
    }

    pid_t pid_ = -1;
    bool reaped_ = false;
    int status_ = 0;
    int out_fd_ = -1, err_fd_ = -1;
    std::thread reader_;
    std::atomic<bool> stop_reader_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    std::string out_, err_;
    bool out_eof_ = false, err_eof_ = false;
};

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
    node_options o;
    o.name = name;
    o.workers = 2;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = key_dir;
    o.net.cookie = cookie;
    return o;
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

