// What the network-namespace tests share: shell commands, the root/iproute2
// check, and a child program run inside a namespace whose output lines are
// awaited with deadlines.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kith_catch.hpp"

namespace netns_test {

// Runs `cmd` with its output discarded; true when it succeeded.
inline bool sh(const std::string& cmd) {
    int r = std::system((cmd + " >/dev/null 2>&1").c_str());
    return r == 0;
}

// Root and iproute2 (and `extra` commands, e.g. "nft --version"), or a
// warning that says why the namespace tests are not run.
inline bool can_run(const std::vector<std::string>& extra = {}) {
    if (::geteuid() != 0) {
        WARN("not root: the network-namespace tests are not run");
        return false;
    }
    if (!sh("ip -V")) {
        WARN("iproute2 (ip) missing: the network-namespace tests are not run");
        return false;
    }
    for (auto& e : extra)
        if (!sh(e)) {
            WARN("'" + e + "' failed (package missing? ./dev deps installs it): the network-namespace tests are not run");
            return false;
        }
    return true;
}

// Removes the namespaces an earlier run left when it was killed: names
// "<prefix><pid>x..." whose creating process <pid> is gone.
inline void remove_stale(const std::string& prefix) {
    FILE* f = ::popen("ip netns list 2>/dev/null", "r");
    if (!f) return;
    char line[256];
    std::vector<std::string> stale;
    while (std::fgets(line, sizeof line, f)) {
        std::string name(line);
        name = name.substr(0, name.find_first_of(" \n"));
        if (name.rfind(prefix, 0) != 0 || name.find('x', prefix.size()) == std::string::npos) continue;
        auto pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
        if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) stale.push_back(name);
    }
    ::pclose(f);
    for (auto& n : stale) sh("ip netns del " + n);
}

// A program run in a namespace (`ip netns exec NS PROGRAM ARGS...`); its
// stdout lines are collected, its stdin is write_line's. Killed (SIGKILL)
// and reaped at scope exit.
class netns_proc {
public:
    netns_proc(const std::string& ns, const std::string& program, std::vector<std::string> args) {
        int out[2], in[2];
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
        std::vector<std::string> full{"ip", "netns", "exec", ns, program};
        full.insert(full.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : full) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::dup2(out[1], 1);
            ::dup2(in[0], 0);
            ::execvp("ip", argv.data());
            ::_exit(127);
        }
        ::close(out[1]);
        ::close(in[0]);
        in_ = in[1];
        reader_ = std::thread([this, fd = out[0]] {
            std::string buf;
            char c[512];
            ssize_t r;
            while ((r = ::read(fd, c, sizeof c)) > 0) {
                buf.append(c, static_cast<std::size_t>(r));
                std::size_t nl;
                while ((nl = buf.find('\n')) != std::string::npos) {
                    std::lock_guard lk(mu_);
                    lines_.push_back(buf.substr(0, nl));
                    buf.erase(0, nl + 1);
                    cv_.notify_all();
                }
            }
            ::close(fd);
        });
    }
    ~netns_proc() {
        kill(SIGKILL);
        if (reader_.joinable()) reader_.join();
        ::close(in_);
    }
    netns_proc(const netns_proc&) = delete;
    netns_proc& operator=(const netns_proc&) = delete;

    void kill(int sig) {
        if (pid_ > 0) {
            ::kill(pid_, sig);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }
    void write_line(const std::string& s) { [[maybe_unused]] auto r = ::write(in_, (s + "\n").data(), s.size() + 1); }
    // Waits for a line containing every one of `parts` (from line `from` on).
    bool wait_for(const std::vector<std::string>& parts, std::chrono::milliseconds timeout, std::size_t from = 0) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, timeout, [&] { return find(parts, from) != std::string::npos; });
    }
    bool has(const std::vector<std::string>& parts, std::size_t from = 0) {
        std::lock_guard lk(mu_);
        return find(parts, from) != std::string::npos;
    }
    std::size_t mark() {
        std::lock_guard lk(mu_);
        return lines_.size();
    }
    std::string dump() {
        std::lock_guard lk(mu_);
        std::string s;
        for (auto& l : lines_) s += l + "\n";
        return s;
    }

private:
    std::size_t find(const std::vector<std::string>& parts, std::size_t from) const {
        for (std::size_t i = from; i < lines_.size(); ++i) {
            bool all = true;
            for (auto& p : parts) all = all && lines_[i].find(p) != std::string::npos;
            if (all) return i;
        }
        return std::string::npos;
    }
    pid_t pid_ = -1;
    int in_ = -1;
    std::thread reader_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::string> lines_;
};


}  // namespace netns_test
