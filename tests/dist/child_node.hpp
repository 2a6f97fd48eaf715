// child_node.hpp — a kith node child process for the multi-process tests
// (tests/dist via process_support.hpp, tests/availability via avail_proc.hpp):
// real fork/exec, stdout and stderr read by a thread, every wait with a
// deadline, killed and reaped at scope exit. It runs the binary KITH_TEST_NODE
// names; any binary with kith_test_node's command line will do.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kith/keys.hpp"
#include "../support/spawn_child.hpp"

#ifndef KITH_TEST_NODE
#error "KITH_TEST_NODE must name the child node binary (kith_test_node or kith_avail_node)"
#endif

namespace process_test {
using namespace std::chrono_literals;
using kith::public_key;

// ---------------------------------------------------------------------------
// A child node process. Its stdout and stderr are read by a thread
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
        int out[2], err[2];
        if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
        if (pipe2(err, O_CLOEXEC) != 0) {
            ::close(out[0]);
            ::close(out[1]);
            throw std::runtime_error("pipe2 failed");
        }
        pid_ = test_support::spawn_child(std::move(args), -1, out[1], err[1]);
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

    // SIGSTOP returns only once every thread of the child has stopped: kill()
    // wakes one thread to start the group stop, and on a busy machine the
    // others (the I/O thread among them) can answer for milliseconds more.
    void signal(int sig) {
        if (pid_ <= 0 || reaped_) return;
        ::kill(pid_, sig);
        if (sig == SIGSTOP && !wait_all_stopped(pid_, std::chrono::seconds(10)))
            throw std::runtime_error("child " + std::to_string(pid_) + ": not every thread stopped within 10 s of SIGSTOP");
    }
    // True once no thread of `pid` can run: each in state T (stopped), t
    // (traced), or Z/X (ended).
    static bool wait_all_stopped(pid_t pid, std::chrono::milliseconds within) {
        const auto deadline = std::chrono::steady_clock::now() + within;
        const std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
        for (;;) {
            bool all = true;
            std::error_code ec;
            for (const auto& t : std::filesystem::directory_iterator(tasks, ec)) {
                FILE* f = std::fopen((t.path() / "stat").c_str(), "r");
                if (!f) continue;  // the thread has just exited
                char buf[512];
                const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
                std::fclose(f);
                buf[n] = 0;
                const char* close = std::strrchr(buf, ')');  // "tid (comm) S ..."; comm may hold ')'
                // T stopped, t traced; Z and X: a thread that has ended runs no more either.
                if (!close || close[1] != ' ' || !close[2] || !std::strchr("TtZX", close[2])) { all = false; break; }
            }
            if (ec) return false;
            if (all) return true;
            if (std::chrono::steady_clock::now() > deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
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

}  // namespace process_test
