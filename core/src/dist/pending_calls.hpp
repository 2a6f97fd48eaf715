// pending_calls.hpp (private) — this node's outstanding requests to other
// nodes (rpc calls and remote spawns), keyed by request id, and the one
// thread that keeps their deadlines (the "deadline thread").
//
// Contract:
//  - Every entry given to add() or fail_later() is completed exactly once,
//    with exactly one of: a reply (the caller of take() runs the completion
//    it took, on its own thread), the node going down (take_node(), same),
//    its deadline (errc::timeout "no reply from <node>"), an immediate error
//    (fail_later), or the node stopping (errc::shutdown "node stopping").
//  - Deadline, fail_later and shutdown completions run on the deadline
//    thread, in no particular order among themselves; never on the thread
//    that called add() / fail_later() while inside it, and never under the
//    table's mutex (a completion may call back into this table).
//  - A completion that throws is logged (source "dist", level error, to the
//    sink given at construction) and the thread carries on.
//  - shutdown() fails every entry still in the table, and every entry added
//    afterwards, with errc::shutdown, and returns once those already in the
//    table have been completed. The thread is joined by the destructor.
//
// Thread-safety: every method may be called from any thread, concurrently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kith/error.hpp"
#include "kith/log.hpp"
#include "kith/term.hpp"

namespace kith::detail {

class pending_calls {
public:
    using clock = std::chrono::steady_clock;
    using call_done = std::function<void(result<term>)>;
    using spawn_done = std::function<void(result<pid>)>;

    struct entry {
        std::string node;  // the node the request went to: only it may complete it
        clock::time_point deadline;
        call_done on_call;  // exactly one of these two is set
        spawn_done on_spawn;
        std::uint8_t flags = 0;  // spawns: spawn_flags (link / monitor the child to `from`)
        pid from;
        ref mref;
        // Runs the completion with `e` (whichever of the two is set).
        void fail(const error& e);
    };
    enum class kind { call, spawn };

    // Starts the deadline thread. `log` and `node_name` tag the records of
    // completions that threw.
    pending_calls(log_sink log, std::string node_name);
    // shutdown(), then joins the deadline thread (after it ran every
    // completion handed to it).
    ~pending_calls();
    pending_calls(const pending_calls&) = delete;
    pending_calls& operator=(const pending_calls&) = delete;

    // Adds an entry; returns its request id (never 0). After shutdown() the
    // entry is failed with errc::shutdown on the deadline thread (its id is
    // then unknown to take()).
    std::uint64_t add(entry e);
    // Completes `e` with `err` on the deadline thread, soon: for a request
    // that failed before it went out (the caller must not complete it on its
    // own thread: see node::call_async).
    void fail_later(entry e, error err);
    // Takes entry `id` out if it went to `from_node` and is of kind `k`
    // (a reply from another node, or of the wrong kind, completes nothing);
    // the caller completes it.
    std::optional<entry> take(std::uint64_t id, const std::string& from_node, kind k);
    // take() for a call's reply, which needs only the completion: true and
    // `out` set when entry `id` is a call that went to `from_node` (no
    // entry is moved: a reply is the most frequent completion).
    bool take_call(std::uint64_t id, const std::string& from_node, call_done& out);
    // Takes out every entry that went to `node` (the node went down); the
    // caller completes them.
    std::vector<entry> take_node(const std::string& node);
    // Moves entry `id` (if still in the table) to the deadline thread to be
    // completed with `err`.
    void fail_soon(std::uint64_t id, error err);
    // See the contract above. Idempotent; returns at once when called from a
    // completion running on the deadline thread.
    void shutdown();

    // Entries in the table now (tests, diagnostics).
    std::size_t size() const;
    bool on_deadline_thread() const noexcept;

private:
    // Everything the deadline thread touches; the thread holds it too, so
    // the last owner dropping this from a completion (on the deadline thread
    // itself) leaves the thread a valid state to finish in.
    struct state;
    std::shared_ptr<state> st_;
    std::thread thread_;
};

}  // namespace kith::detail
