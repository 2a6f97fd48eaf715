// kith/mailbox.hpp — a blocking mailbox for plain threads.
//
// A mailbox gives a thread that is not an actor (main, a script, a test) a
// pid of its own on a node: others can send to it, link to it and monitor
// it; it can send, spawn, link, monitor, make blocking calls, and receive with
// a timeout, optionally selecting the first message matching a predicate
// (Erlang's `receive ... after`: unmatched messages stay, in order).
//
// A mailbox always traps exits: exit signals and EXITs of linked processes
// arrive as messages of kind exit; it is never killed. Destroying it ends its
// process with reason "normal" (links and monitors on it fire).
//
// Thread-safety: all methods may be called from any thread; concurrent
// receives compete (each message is received once). Sends *to* a mailbox
// come from anywhere. Ownership: move-only handle; it keeps the node's
// runtime alive, so it may outlive the kith::node (operations then fail
// with errc::shutdown or time out). Blocking: only receive() and call().
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "kith/actor.hpp"
#include "kith/error.hpp"
#include "kith/term.hpp"

namespace kith {

class node;
namespace detail {
class node_impl;
class mailbox_proc;
}  // namespace detail

class mailbox {
public:
    using duration = std::chrono::nanoseconds;
    using predicate = std::function<bool(const message&)>;

    // Creates a process on `n`. Throws setup_error if the node is stopped.
    explicit mailbox(node& n);
    ~mailbox();
    mailbox(mailbox&& other) noexcept;
    mailbox& operator=(mailbox&& other) noexcept;
    mailbox(const mailbox&) = delete;
    mailbox& operator=(const mailbox&) = delete;

    const pid& self() const noexcept;

    // Blocks until a message arrives or `timeout` passes (errc::timeout), or
    // the node stops while the mailbox is empty (errc::shutdown). Never
    // throws for these outcomes.
    result<message> receive(duration timeout);
    // Returns the first queued message for which `match` is true (checked
    // oldest first; unmatched messages stay in order). Blocks up to `timeout`.
    // `match` runs under the mailbox's lock: it must not call this mailbox.
    result<message> receive(const predicate& match, duration timeout);
    // Messages currently queued.
    std::size_t size() const;

    // Sends; see actor::send.
    void send(const pid& to, term msg);
    void send(const std::string& name, term msg);
    void send(const std::string& name, const std::string& node, term msg);
    void send_exit(const pid& to, term reason);

    // Blocking request: sends `msg` as a request to `to` and waits for the
    // reply. errc::timeout after `timeout` (a late reply is discarded),
    // errc::noproc if `to` is dead or ends first, or the error the target
    // replied with. Other messages arriving meanwhile stay queued.
    result<term> call(const pid& to, term msg, duration timeout);
    // Answers a request this mailbox received.
    void reply(const message& request, result<term> answer);
    void reply(const message& request, term value) { reply(request, result<term>(std::move(value))); }

    // Spawning with link / monitor set up atomically; see actor::spawn.
    template <spawnable F>
    pid spawn(F&& f) { auto [i, b] = detail::split_spawnable(std::forward<F>(f)); return spawn_impl(std::move(i), std::move(b), false, nullptr); }
    template <spawnable F>
    pid spawn_link(F&& f) { auto [i, b] = detail::split_spawnable(std::forward<F>(f)); return spawn_impl(std::move(i), std::move(b), true, nullptr); }
    template <spawnable F>
    std::pair<pid, ref> spawn_monitor(F&& f) {
        auto [i, b] = detail::split_spawnable(std::forward<F>(f));
        ref r;
        pid p = spawn_impl(std::move(i), std::move(b), false, &r);
        return {std::move(p), std::move(r)};
    }

    // Links / monitors; see actor::link etc. A DOWN or EXIT arrives as a
    // message. demonitor also removes an already queued DOWN for that ref.
    void link(const pid& to);
    void unlink(const pid& to);
    ref monitor(const pid& to);
    bool demonitor(const ref& monitor_ref);

    // Registers this mailbox under `name`; see actor::register_name.
    result<void> register_name(const std::string& name);

private:
    pid spawn_impl(actor_init init, behavior b, bool link, ref* monitor_out);
    void close() noexcept;
    std::shared_ptr<detail::node_impl> node_;
    detail::mailbox_proc* proc_ = nullptr;  // owns one reference
};

}  // namespace kith
