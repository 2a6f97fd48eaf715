// A grant_peer child process driven over its stdin/stdout (tests only).
// Every wait has a deadline; the destructor kills (SIGKILL) and reaps it.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../support/spawn_child.hpp"

class peer_process {
public:
    explicit peer_process(std::vector<std::string> args) {
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
        pid_ = test_support::spawn_child(std::move(args), in[0], out[1], -1);
        ::close(in[0]);
        ::close(out[1]);
        in_fd_ = in[1];
        out_fd_ = out[0];
        reader_ = std::thread([this] { read_loop(); });
    }
    ~peer_process() {
        kill_now();
        reap();
        if (reader_.joinable()) reader_.join();
        if (in_fd_ >= 0) ::close(in_fd_);
        if (out_fd_ >= 0) ::close(out_fd_);
    }
    peer_process(const peer_process&) = delete;
    peer_process& operator=(const peer_process&) = delete;

    void send(const std::string& line) {
        std::string l = line + "\n";
        ssize_t n = ::write(in_fd_, l.data(), l.size());
        (void)n;
    }
    // The next output line (in order) that starts with `prefix`; lines
    // before it are skipped. nullopt at the deadline or EOF.
    std::optional<std::string> wait_line(const std::string& prefix, std::chrono::milliseconds timeout) {
        std::unique_lock lk(mu_);
        std::optional<std::string> found;
        cv_.wait_for(lk, timeout, [&] {
            while (next_ < lines_.size()) {
                const std::string& l = lines_[next_++];
                if (l.rfind(prefix, 0) == 0) {
                    found = l;
                    return true;
                }
            }
            return eof_;
        });
        return found;
    }
    // Sends a command and returns the first answer line starting with `prefix`.
    std::string ask(const std::string& cmd, const std::string& prefix,
                    std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
        send(cmd);
        return wait_line(prefix, timeout).value_or("<no answer to: " + cmd + ">");
    }
    std::string all_output() {
        std::lock_guard lk(mu_);
        std::string s;
        for (auto& l : lines_) s += l + "\n";
        return s;
    }
    void kill_now() {
        if (pid_ > 0 && !reaped_) ::kill(pid_, SIGKILL);
    }
    void reap() {
        if (pid_ <= 0 || reaped_) return;
        int st = 0;
        while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {}
        reaped_ = true;
    }

private:
    void read_loop() {
        std::string partial;
        char buf[4096];
        for (;;) {
            ssize_t got = ::read(out_fd_, buf, sizeof buf);
            if (got < 0 && errno == EINTR) continue;
            std::lock_guard lk(mu_);
            if (got <= 0) {
                eof_ = true;
                cv_.notify_all();
                return;
            }
            partial.append(buf, static_cast<std::size_t>(got));
            for (auto nl = partial.find('\n'); nl != std::string::npos; nl = partial.find('\n')) {
                lines_.push_back(partial.substr(0, nl));
                partial.erase(0, nl + 1);
            }
            cv_.notify_all();
        }
    }
    pid_t pid_ = -1;
    bool reaped_ = false;
    int in_fd_ = -1, out_fd_ = -1;
    std::thread reader_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::string> lines_;
    std::size_t next_ = 0;
    bool eof_ = false;
};
