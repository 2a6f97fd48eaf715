// kith/actor.hpp — messages, behaviours and the actor context.
//
// An actor is a lightweight process living on a kith::node: a mailbox and a
// behaviour (a handler) that the node's worker threads run one message at a
// time (a turn woken by a remote reply or a remote spawn may run on the
// node's network I/O thread instead: docs/architecture.md, "Threads"; a
// handler must not assume which thread it is on). Actors are cheap (a few hundred bytes when idle); there is no thread
// per actor. See kith/node.hpp for how to start one.
//
// Handlers receive a kith::actor& ("self"): the actor's context. Its methods
// send, spawn, link, monitor, set timers, make requests and so on, on behalf
// of that actor.
//
// Thread-safety: an actor& is valid only inside a handler or init function of
// that actor, on the thread running it. Never store it, never use it from
// another thread (store self.self(), the pid, instead). Everything else in
// this header is a plain value.
//
// Errors: sending never fails visibly (delivery is at most once, as in Erlang);
// a send to an unknown local pid is dropped and counted (node::counters()).
// Loss is reported to whoever asked: monitors fire DOWN "noproc" or
// "noconnection", requests complete with errc::noproc / errc::timeout.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "kith/error.hpp"
#include "kith/term.hpp"

namespace kith {

// What a message is. Handlers see only the first four kinds; the others are
// runtime signals that the runtime consumes itself (they are listed because
// the network layer carries them between nodes). Values are stable.
enum class message_kind : std::uint8_t {
    user = 0,     // an ordinary message: body is the data; from/tag are null
    exit = 1,     // EXIT (only when trapping exits): from = the pid that ended or
                  // sent the exit signal, body = reason term
    down = 2,     // DOWN: from = the monitored pid, tag = the monitor ref,
                  // body = reason ("normal", "noproc", "noconnection", ...)
    request = 3,  // a request (see actor::request): from = requester,
                  // tag = request ref, body = payload; answer with reply()

    // Runtime signals, never passed to a behaviour:
    reply = 16,            // answer to a request: tag = request ref, body = value
    reply_error = 17,      // error answer: tag = request ref, body = [code, detail]
    exit_signal = 18,      // exit/2 from `from` with reason body
    link_exit = 19,        // a linked process `from` ended with reason body
    request_timeout = 20,  // internal deadline of the request `tag`
};

// One message. Plain value; cheap to move (moving never copies the body).
struct message {
    message_kind kind = message_kind::user;
    term body;
    pid from;  // null for user messages (Erlang's send carries no sender)
    ref tag;   // monitor ref (down) or request ref (request/reply); else null

    message() = default;
    explicit message(term b) : body(std::move(b)) {}
    message(message_kind k, term b, pid f = {}, ref t = {})
        : kind(k), body(std::move(b)), from(std::move(f)), tag(std::move(t)) {}

    bool is_user() const noexcept { return kind == message_kind::user; }
    bool is_exit() const noexcept { return kind == message_kind::exit; }
    bool is_down() const noexcept { return kind == message_kind::down; }
    bool is_request() const noexcept { return kind == message_kind::request; }
};

// Where to send the answer to a request. Take it from a request message
// (reply_handle{msg.from, msg.tag}) to answer later, from any thread, with
// node::reply. A plain value.
struct reply_handle {
    pid to;
    ref tag;
    reply_handle() = default;
    reply_handle(pid p, ref r) : to(std::move(p)), tag(std::move(r)) {}
    explicit reply_handle(const message& request) : to(request.from), tag(request.tag) {}
    bool is_null() const noexcept { return to.is_null(); }
};

class actor;

// A behaviour: called once per message, one at a time. Exceptions escaping
// it end the actor with the exception's what() as the exit reason.
using behavior = std::function<void(actor& self, message& msg)>;
// An init function: runs once, first, inside the new actor, and returns the
// behaviour for the following messages (it may also call self.quit()).
using actor_init = std::function<behavior(actor& self)>;
// Completion of a request: the reply value, or errc::timeout, errc::noproc,
// or the error the target replied with.
using reply_fn = std::function<void(result<term> answer)>;

// Anything that can be spawned: a behaviour, or an init function returning one.
template <class F>
concept spawnable = std::is_invocable_v<F&, actor&, message&> ||
                    std::is_invocable_r_v<behavior, F&, actor&>;

namespace detail {
class actor_proc;
// Splits a spawnable into (init, behaviour); exactly one is set.
template <spawnable F>
std::pair<actor_init, behavior> split_spawnable(F&& f) {
    if constexpr (std::is_invocable_v<F&, actor&, message&>)
        return {actor_init{}, behavior(std::forward<F>(f))};
    else
        return {actor_init(std::forward<F>(f)), behavior{}};
}
}  // namespace detail

// The actor context ("self"). Only valid inside the actor's own handler or
// init function (see the thread-safety note at the top). None of these
// methods block.
class actor {
public:
    using duration = std::chrono::nanoseconds;

    actor(const actor&) = delete;
    actor& operator=(const actor&) = delete;

    // This actor's pid.
    const pid& self() const noexcept;
    // The full name of the node ("name@host").
    const std::string& node_name() const noexcept;

    // --- sending (never blocks; at most once) ---------------------------------
    // Sends a user message. Local unknown pids: dropped and counted. Remote
    // pids go through the network layer (dropped and counted without one).
    void send(const pid& to, term msg);
    // Sends to a name registered on this node; dropped and counted if unknown.
    void send(const std::string& name, term msg);
    // Sends to a name registered on `node` (this node or a remote one).
    void send(const std::string& name, const std::string& node, term msg);

    // --- spawning ---------------------------------------------------------------
    // F is a behaviour `void(actor&, message&)` or an init `behavior(actor&)`.
    template <spawnable F>
    pid spawn(F&& f) { auto [i, b] = detail::split_spawnable(std::forward<F>(f)); return spawn_impl(std::move(i), std::move(b), false, nullptr); }
    // Spawns and links atomically (the child cannot end before the link exists).
    template <spawnable F>
    pid spawn_link(F&& f) { auto [i, b] = detail::split_spawnable(std::forward<F>(f)); return spawn_impl(std::move(i), std::move(b), true, nullptr); }
    // Spawns and monitors atomically; returns the child and the monitor ref.
    template <spawnable F>
    std::pair<pid, ref> spawn_monitor(F&& f) {
        auto [i, b] = detail::split_spawnable(std::forward<F>(f));
        ref r;
        pid p = spawn_impl(std::move(i), std::move(b), false, &r);
        return {std::move(p), std::move(r)};
    }

    // --- registered names (per node) ------------------------------------------
    // Binds `name` to `who` (default: this actor). errc::badarg if the name is
    // taken, `who` already has a name, or `who` is not a live local actor.
    result<void> register_name(const std::string& name);
    result<void> register_name(const std::string& name, const pid& who);
    // errc::badarg if the name is not registered.
    result<void> unregister_name(const std::string& name);
    std::optional<pid> whereis(const std::string& name) const;

    // --- links, monitors, exits -----------------------------------------------
    // Links this actor with `to` (idempotent). If `to` is dead or unknown this
    // actor receives an exit signal "noproc" (remote without a connection:
    // "noconnection"), which kills it unless it traps exits.
    void link(const pid& to);
    // Removes the link; no EXIT from `to` arrives afterwards.
    void unlink(const pid& to);
    // Monitors `to`; a DOWN message with the returned ref arrives when it ends
    // (at once, reason "noproc", if it is dead or unknown; "noconnection" for
    // a remote pid with no connection).
    ref monitor(const pid& to);
    // Removes the monitor; no DOWN for it is delivered afterwards. False if
    // the ref was not an active monitor of this actor.
    bool demonitor(const ref& monitor_ref);
    // Ends this actor with `reason` once the current handler returns. Reason
    // "normal" does not kill linked actors; any other reason does (unless they
    // trap exits).
    void quit(term reason = "normal");
    // Sends an exit signal to `to` (Erlang exit/2): reason "kill" ends it
    // with reason "killed" even if it traps exits; "normal" is ignored unless
    // it traps exits; any other reason ends it unless it traps exits (then it
    // gets an EXIT message). Signals are processed in mailbox order.
    void send_exit(const pid& to, term reason);
    // When on, exit signals (except "kill") become EXIT messages.
    void trap_exit(bool on) noexcept;
    bool trapping_exit() const noexcept;

    // Replaces the behaviour for the next messages (after the current handler
    // returns).
    void become(behavior next);

    // --- timers ---------------------------------------------------------------
    // Sends `msg` as a user message to `to` after `delay`. Returns a timer ref
    // for cancel_timer.
    ref send_after(duration delay, const pid& to, term msg);
    // True if the timer was pending and is now cancelled (the message will not
    // be sent); false if it already fired or the ref is unknown.
    bool cancel_timer(const ref& timer);

    // --- request / response ---------------------------------------------------
    // Sends `msg` as a request to `to` and calls `done` (inside this actor,
    // later) with the reply, or errc::timeout after `timeout`, or errc::noproc
    // if `to` is dead or ends before replying (errc::nodedown if the remote
    // node has no connection). `done` runs exactly once, unless this actor
    // ends first. Returns the request ref.
    ref request(const pid& to, term msg, duration timeout, reply_fn done);
    // Answers a request message (kind request). A no-op for other messages.
    void reply(const message& request, result<term> answer);
    void reply(const reply_handle& to, result<term> answer);
    void reply(const message& request, term value) { reply(request, result<term>(std::move(value))); }
    void reply(const reply_handle& to, term value) { reply(to, result<term>(std::move(value))); }

protected:
    actor() = default;
    ~actor() = default;

private:
    pid spawn_impl(actor_init init, behavior b, bool link, ref* monitor_out);
    detail::actor_proc& proc() noexcept;
    const detail::actor_proc& proc() const noexcept;
};

}  // namespace kith
