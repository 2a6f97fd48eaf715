// timers.hpp (private) — the node's timer thread (timer_service: send_after's
// messages and functions run there), and no_reentry (completions that must
// not run inside the call that took them). Implemented in timers.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "kith/actor.hpp"
#include "kith/error.hpp"
#include "kith/term.hpp"

namespace kith::detail {

class node_impl;

using clock = std::chrono::steady_clock;

// --- timers --------------------------------------------------------------------------

class timer_service {
public:
    explicit timer_service(node_impl& n) : node_(n) {}
    ~timer_service() { stop(); }
    void start();
    void stop() noexcept;
    void add(std::uint64_t id, clock::time_point when, pid to, message m);
    // Runs `fn` on the timer thread at `when` (dropped, not run, if the
    // service stops first). What it throws is logged.
    // False (fn dropped) once stopped.
    bool add_fn(std::uint64_t id, clock::time_point when, std::function<void()> fn);
    bool cancel(std::uint64_t id);

private:
    void loop();
    void run_fn(const std::function<void()>& fn) noexcept;
    struct entry {
        pid to;
        message msg;
        std::function<void()> fn;  // set: run this instead of sending msg
        std::multimap<clock::time_point, std::uint64_t>::iterator pos;
    };
    node_impl& node_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::multimap<clock::time_point, std::uint64_t> by_time_;
    std::unordered_map<std::uint64_t, entry> by_id_;
    std::thread th_;
};

// --- completions that must not run inside the call that took them ---------------

// node::call_async promises that `done` never runs on the caller's thread
// inside call_async. Local invocations and some errors answer at once: while
// the guard lives, a completion is moved to the node's timer thread
// (node_impl::run_soon); once it is gone (call_async returned), completions
// run where they happen. The completion runs exactly once either way.
class no_reentry {
public:
    using done_fn = std::function<void(result<term>)>;
    no_reentry(node_impl& n, done_fn f);
    ~no_reentry();
    no_reentry(const no_reentry&) = delete;
    no_reentry& operator=(const no_reentry&) = delete;
    // The completion to hand on in place of `f`.
    done_fn done() const;

private:
    struct state {
        std::atomic<bool> returned{false};
        node_impl* node;
        done_fn f;
    };
    std::shared_ptr<state> st_;
};
}  // namespace kith::detail
