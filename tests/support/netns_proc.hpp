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
#include <random>
#include <stdexcept>
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

// A program run in a namespace (`ip netns exec NS PROGRAM ARGS...`; NS ""
// runs it here, in this namespace); its stdout lines are collected, its
// stdin is write_line's. Killed (SIGKILL) and reaped at scope exit.
class netns_proc {
public:
    netns_proc(const std::string& ns, const std::string& program, std::vector<std::string> args) {
        int out[2], in[2];
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
        std::vector<std::string> full{"ip", "netns", "exec", ns, program};
        if (ns.empty()) full = {program};
        full.insert(full.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : full) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::dup2(out[1], 1);
            ::dup2(in[0], 0);
            ::execvp(argv[0], argv.data());
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

// A LAN of `n` hosts: namespaces <id>h<i>, each with eth0 =
// <subnet>.<i+1>/24, bridged in namespace <id>br, where id is
// "<prefix><pid>x<random>" (remove_stale(prefix) finds the ones a killed
// run left). attach_root() also plugs this (the root) namespace into the
// bridge at <subnet>.254, for a test that is itself a node of the LAN.
// Removed (with everything in it) at scope exit. Throws std::runtime_error
// if a step of the setup fails.
class lan {
public:
    std::string id;
    std::vector<std::string> hosts;
    lan(int n, std::string prefix, std::string subnet) : prefix_(std::move(prefix)), subnet_(std::move(subnet)) {
        remove_stale(prefix_);
        std::random_device rd;
        id = prefix_ + std::to_string(::getpid()) + "x" + std::to_string(rd() % 10000);
        ok(sh("ip netns add " + br()), "netns add");
        ok(sh("ip -n " + br() + " link add br0 type bridge") && sh("ip -n " + br() + " link set br0 up"), "bridge");
        for (int i = 0; i < n; ++i) {
            std::string h = id + "h" + std::to_string(i);
            ok(sh("ip netns add " + h), "netns add host");
            hosts.push_back(h);
            std::string v = "v" + std::to_string(i);
            ok(sh("ip -n " + br() + " link add " + v + " type veth peer name eth0 netns " + h), "veth");
            ok(sh("ip -n " + br() + " link set " + v + " master br0") && sh("ip -n " + br() + " link set " + v + " up"),
               "veth up");
            ok(sh("ip -n " + h + " addr add " + ip(i) + "/24 brd + dev eth0") && sh("ip -n " + h + " link set eth0 up") &&
                   sh("ip -n " + h + " link set lo up"),
               "host addr");
        }
    }
    ~lan() { cleanup(); }
    lan(const lan&) = delete;
    lan& operator=(const lan&) = delete;
    void cleanup() {
        for (auto& h : hosts) sh("ip netns del " + h);
        if (!root_if_.empty()) sh("ip link del " + root_if_);
        root_if_.clear();
        sh("ip netns del " + br());
        hosts.clear();
    }
    std::string br() const { return id + "br"; }
    std::string ip(int i) const { return subnet_ + "." + std::to_string(i + 1); }
    std::string root_ip() const { return subnet_ + ".254"; }
    // Plugs the root namespace into the bridge: interface "<prefix><pid>r"
    // (at most 15 characters) at root_ip().
    void attach_root() {
        std::string r = prefix_ + std::to_string(::getpid()) + "r";
        ok(r.size() <= 15, "root interface name over 15 characters");
        ok(sh("ip link add " + r + " type veth peer name vr netns " + br()), "root veth");
        root_if_ = r;
        ok(sh("ip -n " + br() + " link set vr master br0") && sh("ip -n " + br() + " link set vr up"), "root veth up");
        ok(sh("ip addr add " + root_ip() + "/24 dev " + r) && sh("ip link set " + r + " up"), "root addr");
    }
    // Cuts (or restores) host i's cable: the bridge side of its veth.
    void link(int i, bool up) {
        REQUIRE(sh("ip -n " + br() + " link set v" + std::to_string(i) + (up ? " up" : " down")));
    }

private:
    std::string prefix_, subnet_, root_if_;
    void ok(bool b, const char* what) {
        if (!b) {
            cleanup();
            throw std::runtime_error(std::string("network namespace setup failed: ") + what);
        }
    }
};

}  // namespace netns_test
