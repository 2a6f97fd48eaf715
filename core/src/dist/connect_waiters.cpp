// connect_waiters.cpp — see connect_waiters.hpp.
#include "dist/connect_waiters.hpp"

#include <algorithm>
#include <exception>

namespace kith::detail {

std::shared_ptr<connect_waiters::waiter> connect_waiters::add(const std::string& endpoint, done_fn&& done) {
    auto w = std::make_shared<waiter>();
    w->endpoint = endpoint;
    std::lock_guard lk(mu_);
    if (closed_) return nullptr;
    w->done = std::move(done);
    list_.push_back(w);
    return w;
}

result<std::string> connect_waiters::wait(const std::shared_ptr<waiter>& w, std::chrono::nanoseconds timeout) {
    std::unique_lock lk(mu_);
    const bool got = cv_.wait_for(lk, timeout, [&] { return w->outcome.has_value(); });
    std::erase(list_, w);
    if (!got) return error{errc::timeout, "no answer from " + w->endpoint};
    return std::move(*w->outcome);
}

void connect_waiters::settle_one(const std::shared_ptr<waiter>& w, result<std::string> r) {
    settled st;
    {
        std::lock_guard lk(mu_);
        if (w->outcome) return;
        w->outcome.emplace(std::move(r));
        if (w->done) {
            st.emplace_back(std::move(w->done), *w->outcome);
            std::erase(list_, w);
        }
    }
    cv_.notify_all();
    run(st);
}

void connect_waiters::settle(const std::string& endpoint, const result<std::string>& r) {
    settled st;
    {
        std::lock_guard lk(mu_);
        st = settle_locked(&endpoint, r);
    }
    cv_.notify_all();
    run(st);
}

void connect_waiters::close() {
    settled st;
    {
        std::lock_guard lk(mu_);
        closed_ = true;
        st = settle_locked(nullptr, error{errc::shutdown, "node stopping"});
    }
    cv_.notify_all();
    run(st);
}

std::size_t connect_waiters::size() const {
    std::lock_guard lk(mu_);
    return list_.size();
}

connect_waiters::settled connect_waiters::settle_locked(const std::string* endpoint, const result<std::string>& r) {
    settled out;
    for (auto it = list_.begin(); it != list_.end();) {
        auto& w = **it;
        if (!w.outcome && (!endpoint || w.endpoint == *endpoint)) {
            w.outcome.emplace(r);
            if (w.done) {
                out.emplace_back(std::move(w.done), r);
                it = list_.erase(it);
                continue;
            }
        }
        ++it;
    }
    return out;
}

void connect_waiters::run(settled& s) {
    for (auto& [f, r] : s) {
        try {
            f(std::move(r));
        } catch (const std::exception& e) {
            log_to(log_, log_record{log_level::error, "dist",
                                    std::string("a connect_async callback threw: ") + e.what() +
                                        "; callbacks must not throw (the node carries on)",
                                    node_});
        } catch (...) {
            log_to(log_, log_record{log_level::error, "dist",
                                    "a connect_async callback threw a non-exception; callbacks must not throw (the "
                                    "node carries on)",
                                    node_});
        }
    }
}

}  // namespace kith::detail
