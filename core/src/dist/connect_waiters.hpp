// connect_waiters.hpp (private) — who waits for a link this node dialled to
// come up: blocking connect() callers and connect_async callbacks, by
// endpoint.
//
// Contract:
//  - A waiter is settled exactly once, by the first of: the link to its
//    endpoint coming up (settle: the peer's name), the endpoint refusing us
//    (settle: the refusal), settle_one (its own timeout, or an answer known
//    before it was registered), or close() (errc::shutdown "node stopping").
//  - A blocking waiter learns its outcome in wait(), on its own thread. An
//    async waiter's `done` runs on the thread that settled it, after this
//    structure's mutex is released (so `done` may call back into it). A
//    `done` that throws is logged (source "dist", level error) and the
//    settling thread carries on.
//  - After close(), add() registers nothing and returns null.
//
// Timeouts are not kept here: a blocking waiter times out in wait(); an
// async one is timed out by whoever registered it (dist: the node's timer
// thread) through settle_one, which is a no-op once the waiter is settled.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kith/error.hpp"
#include "kith/log.hpp"

namespace kith::detail {

class connect_waiters {
public:
    using done_fn = std::function<void(result<std::string>)>;
    struct waiter {
        std::string endpoint;
        std::optional<result<std::string>> outcome;  // under the structure's mutex
        done_fn done;                                 // async waiters only
    };

    // `log` and `node` tag the records of a `done` that threw.
    explicit connect_waiters(log_sink log = {}, std::string node = {}) : log_(std::move(log)), node_(std::move(node)) {}

    // Registers a waiter for `endpoint`: async if `done` is set, else
    // blocking (then call wait()). Null after close(); `done` is then left
    // to the caller (not moved from).
    std::shared_ptr<waiter> add(const std::string& endpoint, done_fn&& done = done_fn{});
    // A blocking waiter: waits up to `timeout` for its outcome, then forgets
    // it. errc::timeout "no answer from <endpoint>" if none came in time.
    result<std::string> wait(const std::shared_ptr<waiter>& w, std::chrono::nanoseconds timeout);
    // Settles `w` alone with `r`, if it is not settled yet.
    void settle_one(const std::shared_ptr<waiter>& w, result<std::string> r);
    // Settles every unsettled waiter for `endpoint` with `r`.
    void settle(const std::string& endpoint, const result<std::string>& r);
    // Settles every waiter with errc::shutdown; later add()s return null.
    void close();
    // Waiters registered now (tests).
    std::size_t size() const;

private:
    using settled = std::vector<std::pair<done_fn, result<std::string>>>;
    // Under mu_: gives `r` to the waiters for `endpoint` (all if null) with
    // no outcome yet; async ones are removed and returned, to be run by
    // run() after mu_ is released.
    settled settle_locked(const std::string* endpoint, const result<std::string>& r);
    void run(settled& s);

    log_sink log_;
    std::string node_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::shared_ptr<waiter>> list_;
    bool closed_ = false;
};

}  // namespace kith::detail
