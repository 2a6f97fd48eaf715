// timers.cpp — the node's timer thread (timer_service): send_after's
// messages, and functions that infrastructure code runs there (dist's connect
// timeouts, completions kept from running inside the call that took them).
// See timers.hpp.
#include <algorithm>
#include <exception>

#include "runtime/node_impl.hpp"

namespace kith::detail {
// --- timers ------------------------------------------------------------------------

void timer_service::start() { th_ = std::thread([this] { loop(); }); }

void timer_service::stop() noexcept {
    {
        std::lock_guard l(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (th_.joinable()) th_.join();
    std::lock_guard l(mu_);
    by_time_.clear();
    by_id_.clear();
}

void timer_service::add(std::uint64_t id, clock::time_point when, pid to, message m) {
    bool wake;
    {
        std::lock_guard l(mu_);
        if (stop_) return;
        wake = by_time_.empty() || when < by_time_.begin()->first;
        auto pos = by_time_.emplace(when, id);
        by_id_.emplace(id, entry{std::move(to), std::move(m), nullptr, pos});
    }
    if (wake) cv_.notify_one();
}

bool timer_service::add_fn(std::uint64_t id, clock::time_point when, std::function<void()> fn) {
    bool wake;
    {
        std::lock_guard l(mu_);
        if (stop_) return false;
        wake = by_time_.empty() || when < by_time_.begin()->first;
        auto pos = by_time_.emplace(when, id);
        by_id_.emplace(id, entry{pid{}, message{}, std::move(fn), pos});
    }
    if (wake) cv_.notify_one();
    return true;
}

bool timer_service::cancel(std::uint64_t id) {
    std::lock_guard l(mu_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return false;
    by_time_.erase(it->second.pos);
    by_id_.erase(it);
    return true;
}

// Infrastructure code (dist's connect timeouts) runs here: what it throws
// must not end the timer thread, nor vanish.
void timer_service::run_fn(const std::function<void()>& fn) noexcept {
    try {
        fn();
    } catch (const std::exception& e) {
        log_to(node_.log(), log_record{log_level::error, "runtime",
                                       std::string("a timer task threw: ") + e.what() + "; the timer thread carries on",
                                       node_.name()});
    } catch (...) {
        log_to(node_.log(), log_record{log_level::error, "runtime",
                                       "a timer task threw a non-exception; the timer thread carries on", node_.name()});
    }
}

void timer_service::loop() {
    std::unique_lock l(mu_);
    while (!stop_) {
        if (by_time_.empty()) {
            cv_.wait(l);
            continue;
        }
        auto first = by_time_.begin();
        const clock::time_point when = first->first;  // a copy: cancel() may erase the entry meanwhile
        if (clock::now() < when) {
            cv_.wait_until(l, when);
            continue;
        }
        auto it = by_id_.find(first->second);
        by_time_.erase(first);
        if (it == by_id_.end()) continue;
        pid to = std::move(it->second.to);
        message m = std::move(it->second.msg);
        std::function<void()> fn = std::move(it->second.fn);
        by_id_.erase(it);
        l.unlock();
        if (fn)
            run_fn(fn);
        else
            node_.send(to, std::move(m));
        fn = nullptr;  // its captures go outside the lock too
        l.lock();
    }
}

// --- timers ------------------------------------------------------------------------------

std::uint64_t node_impl::add_timer(std::chrono::nanoseconds delay, const pid& to, message m) {
    std::uint64_t id = refid_.fetch_add(1, std::memory_order_relaxed);
    // Clamp: "forever" (nanoseconds::max) must not overflow the time point.
    constexpr std::chrono::nanoseconds max_delay = std::chrono::hours(24 * 365 * 100);
    delay = std::clamp(delay, std::chrono::nanoseconds(0), max_delay);
    timers_.add(id, clock::now() + delay, to, std::move(m));
    return id;
}

ref node_impl::send_after(std::chrono::nanoseconds delay, const pid& to, message m) {
    if (!acting_may_reach(to)) return ref{};
    return ref{name_, add_timer(delay, to, std::move(m))};
}

std::uint64_t node_impl::run_after(std::chrono::nanoseconds delay, std::function<void()> fn) {
    std::uint64_t id = refid_.fetch_add(1, std::memory_order_relaxed);
    constexpr std::chrono::nanoseconds max_delay = std::chrono::hours(24 * 365 * 100);
    delay = std::clamp(delay, std::chrono::nanoseconds(0), max_delay);
    timers_.add_fn(id, clock::now() + delay, std::move(fn));
    return id;
}

void node_impl::run_soon(std::function<void()> fn) {
    std::uint64_t id = refid_.fetch_add(1, std::memory_order_relaxed);
    if (timers_.add_fn(id, clock::now(), fn)) return;
    // Stopped: no kith thread is left, and the caller's is not an option.
    std::thread([fn = std::move(fn)] {
        try {
            fn();
        } catch (const std::exception& e) {
            kith::log(log_level::error, "runtime",
                      std::string("a completion run after the node stopped threw: ") + e.what());
        } catch (...) {
            kith::log(log_level::error, "runtime", "a completion run after the node stopped threw a non-exception");
        }
    }).detach();
}

no_reentry::no_reentry(node_impl& n, done_fn f) : st_(std::make_shared<state>()) {
    st_->node = &n;
    st_->f = std::move(f);
}

no_reentry::~no_reentry() { st_->returned.store(true, std::memory_order_release); }

no_reentry::done_fn no_reentry::done() const {
    return [st = st_](result<term> r) {
        if (st->returned.load(std::memory_order_acquire)) return st->f(std::move(r));
        // Maybe inside the call (or racing its return): never run it here.
        st->node->run_soon([st, r = std::move(r)]() mutable { st->f(std::move(r)); });
    };
}

bool node_impl::cancel_timer(const ref& r) {
    if (r.node != name_ || r.is_null()) return false;
    return timers_.cancel(r.id);
}
}  // namespace kith::detail
