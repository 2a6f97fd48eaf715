// node_impl.hpp (private) — the in-node actor runtime.
//
// Pieces:
//   * mpsc_queue (mpsc_queue.hpp): Vyukov's intrusive lock-free
//     multi-producer/single-consumer queue, one per actor (its mailbox), and
//     the spinlock used for short critical sections.
//   * timer_service and no_reentry (timers.hpp): the timer thread.
//   * process: what the pid table holds — an actor (actor_proc) or a blocking
//     mailbox (mailbox_proc). Reference counted (intrusive); links and
//     watchers (monitors on it) live under a small per-process spinlock so
//     that linking to / monitoring a process races correctly with its death.
//   * node_impl: the pid table (sharded), the registry of names, the run
//     queue and worker threads, the timer thread, counters, and the entry
//     points the network layer calls (marked "network entry point").
//
// Scheduling: an actor has an atomic `scheduled` flag. A sender pushes into
// the mailbox, then sets the flag if it was clear and, if so, puts the actor
// on the run queue. A worker runs up to turn_messages messages, then either
// requeues the actor or clears the flag and re-checks the mailbox (the push
// and the flag check are seq_cst on both sides, so no wake-up is lost).
// A dead actor keeps its flag set forever, so it is never scheduled again.
//
// Lifetimes: the pid table holds one reference to each live process; the run
// queue holds one per queued actor; senders hold one while delivering; an
// actor's one-entry send cache holds one to its last target. An actor's
// death releases its cache and behaviour (so closures holding handles do not
// form cycles), then removes it from the table.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kith/actor.hpp"
#include "kith/node.hpp"
#include "kith/term.hpp"
#include "auth/authority.hpp"
#include "runtime/block_pool.hpp"
#include "runtime/mpsc_queue.hpp"
#include "runtime/remote_port.hpp"
#include "runtime/timers.hpp"

namespace kith::detail {


// --- processes -------------------------------------------------------------------

class node_impl;

// Links and watchers of a process; allocated on first use.
struct relations {
    std::vector<pid> links;
    std::vector<std::pair<pid, ref>> watchers;  // (watcher, monitor ref)
    std::string reg_name;                       // registered name, if any
};

class process {
public:
    enum class type : std::uint8_t { actor, mailbox };

    process(node_impl* n, pid self, type t) noexcept : node_(n), self_(std::move(self)), type_(t) {}
    virtual ~process() = default;
    process(const process&) = delete;
    process& operator=(const process&) = delete;

    // Takes ownership of `n`. Any thread.
    virtual void deliver(msg_node* n) noexcept = 0;
    // Records an outgoing monitor (this process watches `target`). Called by
    // the owner or by spawn before the child is published.
    virtual void note_monitor(const ref& tag, const pid& target) = 0;

    void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
    void release() noexcept {
        if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }

    // Relations; all return false if the process is dead. Any thread.
    bool add_link(const pid& p);
    bool remove_link(const pid& p);  // true if it was linked
    bool add_watcher(const pid& w, const ref& tag);
    // Removes the watcher with `tag` (and, if given, that watcher pid only);
    // true if there was one.
    bool remove_watcher(const ref& tag, const pid* watcher = nullptr);
    bool has_watcher(const pid& w, const ref& tag);
    bool is_dead() const noexcept { return dead_.load(std::memory_order_acquire); }

    node_impl* const node_;
    const pid self_;
    const type type_;
    std::atomic<bool> dead_{false};
    spinlock lk_;                      // guards rel_ and the dead_ transition
    std::unique_ptr<relations> rel_;   // under lk_

private:
    std::atomic<std::uint32_t> refs_{1};
};

// An owning reference to a process.
class proc_ref {
public:
    proc_ref() = default;
    explicit proc_ref(process* p, bool add = true) noexcept : p_(p) { if (p_ && add) p_->add_ref(); }
    proc_ref(const proc_ref& o) noexcept : p_(o.p_) { if (p_) p_->add_ref(); }
    proc_ref(proc_ref&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
    proc_ref& operator=(proc_ref o) noexcept { std::swap(p_, o.p_); return *this; }
    ~proc_ref() { if (p_) p_->release(); }
    process* get() const noexcept { return p_; }
    process* operator->() const noexcept { return p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    void reset() noexcept { if (p_) p_->release(); p_ = nullptr; }

private:
    process* p_ = nullptr;
};

struct pending_request {
    ref tag;
    reply_fn done;
    std::uint64_t timer = 0;
};

// Owner-only state of an actor that most actors never need.
struct actor_extras {
    std::vector<std::pair<ref, pid>> monitors;  // outgoing: (ref, target)
    std::vector<pending_request> pending;
    // The remote port as of node generation port_gen (actors that send to
    // remote pids skip node_impl::port()'s lock and reference count).
    std::shared_ptr<remote_port> port;
    // The principal this actor acts for (spawned for a grantee or a
    // stranger, or by such an actor): its handler runs with it as the
    // thread's authority (docs/security.md, "No ambient authority").
    std::shared_ptr<const authority> acting;
    std::uint64_t port_gen = 0;
};

class actor_proc final : public process, public actor {
public:
    actor_proc(node_impl* n, pid self) noexcept : process(n, std::move(self), type::actor) {}
    ~actor_proc() override;

    // Pooled (spawn/exit churn crosses threads): see block_pool.hpp.
    // Defined in actor.cpp, where the size is known.
    static void* operator new(std::size_t size, std::align_val_t al);
    static void operator delete(void* p, std::size_t size, std::align_val_t al) noexcept;

    void deliver(msg_node* n) noexcept override;
    void note_monitor(const ref& tag, const pid& target) override { ex().monitors.emplace_back(tag, target); }

    // Runs one scheduling turn on the calling worker.
    void run_turn(unsigned budget);
    // Fast path of actor::send for user messages.
    void send_user(const pid& to, term&& msg);
    // The node's remote port, cached in ex() while the node's port
    // generation is unchanged; nullptr without one.
    remote_port* cached_port();
    // Node stop: drop everything that could hold references.
    void drop_state() noexcept;

    actor_extras& ex() {
        if (!ex_) ex_ = std::make_unique<actor_extras>();
        return *ex_;
    }
    void die(term reason) {
        if (!exiting_) {
            exiting_ = true;
            exit_reason_ = std::move(reason);
        }
    }
    bool forget_monitor(const ref& tag, pid* target = nullptr);  // owner: remove outgoing
    void demonitor_outgoing(const ref& tag);

    // scheduling flag (producers read it right after pushing)
    alignas(64) std::atomic<bool> scheduled_{false};
    mpsc_queue q_;

    // consumer (owner) state
    behavior beh_;
    actor_init init_;
    behavior next_beh_;
    term exit_reason_;
    bool exiting_ = false;
    bool trap_ = false;
    // Acts for a grantee or a stranger (set before its first turn is
    // queued, never changed): its turns run within the non-members' share of
    // the workers (node_impl::enter_guest).
    bool guest_ = false;
    bool has_next_ = false;
    unsigned sends_ = 0;  // messages sent in the current turn (count against the budget)
    std::uint64_t cache_serial_ = 0;
    proc_ref cache_;
    std::unique_ptr<actor_extras> ex_;

private:
    void handle(message& m);
    void invoke(message& m);
    void finish();
    void complete_request(const ref& tag, result<term> answer);
};

class mailbox_proc final : public process {
public:
    mailbox_proc(node_impl* n, pid self) noexcept : process(n, std::move(self), type::mailbox) {}

    void deliver(msg_node* n) noexcept override;
    void note_monitor(const ref& tag, const pid& target) override {
        std::lock_guard l(mu_);
        monitors_.emplace_back(tag, target);
    }
    void close_for_stop() noexcept {
        {
            std::lock_guard l(mu_);
            stopped_ = true;
        }
        cv_.notify_all();
    }

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<message> q_;
    std::vector<std::pair<ref, pid>> monitors_;  // outgoing
    std::vector<ref> calls_;                    // pending call() tags
    bool stopped_ = false;
};


// --- the node runtime ------------------------------------------------------------

class node_impl {
public:
    explicit node_impl(node_options opts);
    ~node_impl();
    node_impl(const node_impl&) = delete;
    node_impl& operator=(const node_impl&) = delete;

    void start();
    void stop() noexcept;
    bool stopped() const noexcept { return stopping_.load(std::memory_order_acquire); }

    const std::string& name() const noexcept { return name_; }
    unsigned workers() const noexcept { return nworkers_; }
    bool is_local(const pid& p) const noexcept { return p.node == name_; }

    std::uint64_t next_serial() noexcept { return serial_.fetch_add(1, std::memory_order_relaxed); }
    ref make_ref() { return ref{name_, refid_.fetch_add(1, std::memory_order_relaxed)}; }

    // pid table
    proc_ref lookup(std::uint64_t serial) const;
    bool insert(process* p);  // takes the creator's reference; false (and releases) after stop
    void erase(std::uint64_t serial);

    // Spawns an actor; parent (a local process, may be null) gets a link or
    // monitor set up before the child is visible.
    pid spawn(actor_init init, behavior b, process* parent, bool link, ref* monitor_out);
    // As spawn without a parent, but the child's first turn (its init) is
    // not queued: the caller gets the actor back (its scheduled flag set, one
    // reference for the caller) and hands it on exactly once, to
    // run_first_turn (the calling thread runs the turn now) or
    // schedule_first_turn (the run queue). `self` gets its pid. Null after
    // stop (the actor never runs). Used by the network layer to run a
    // remotely spawned actor's init on the I/O thread that read the request
    // (no worker wake-up between request and reply).
    actor_proc* spawn_deferred(actor_init init, pid& self);
    void run_first_turn(actor_proc* a);       // releases the caller's reference
    void schedule_first_turn(actor_proc* a);  // likewise
    // The workers' share for non-members (node_options::guest_workers): a
    // worker about to run a turn of a guest_ actor takes one of the share's
    // slots (true), or, all taken, parks the actor (its queue reference with
    // it) until a slot is given back (false). leave_guest gives the slot back
    // and requeues the longest-parked actor, if any.
    bool enter_guest(actor_proc* a);
    void leave_guest();
    unsigned guest_workers() const noexcept { return guest_max_; }
    mailbox_proc* open_mailbox();  // returns with one reference for the caller

    // Sending (any thread). Routes local / remote; counts drops.
    void send(const pid& to, message&& m);
    void send_local(std::uint64_t serial, message&& m);
    void send_named(const std::string& name, message&& m);
    void send_named(const std::string& node, const std::string& name, message&& m);
    void send_exit(const pid& from, const pid& to, term reason, bool linked);
    void reply(const reply_handle& to, const pid& from, result<term> answer);

    // Relations on behalf of the local process `p` (its owner thread).
    void link(process& p, const pid& to);
    void unlink(process& p, const pid& to);
    // `p` must have recorded (tag, to) with note_monitor first.
    void monitor(process& p, const pid& to, const ref& tag);
    void demonitor(const pid& watcher, const pid& to, const ref& tag);
    // Ends `p`: marks it dead, fires links and monitors, unregisters its name,
    // removes it from the table (which may free it: touch nothing after).
    void terminate(process& p, const term& reason);

    // Registry.
    result<void> register_name(const std::string& name, const pid& who);
    result<void> unregister_name(const std::string& name);
    std::optional<pid> whereis(const std::string& name) const;

    // Timers.
    ref send_after(std::chrono::nanoseconds delay, const pid& to, message m);
    bool cancel_timer(const ref& r);
    std::uint64_t add_timer(std::chrono::nanoseconds delay, const pid& to, message m);
    bool cancel_timer_id(std::uint64_t id) { return timers_.cancel(id); }
    // Runs `fn` on the node's timer thread after `delay` (a kith thread; keep
    // it short). Dropped, never run, if the node stops first. Returns an id
    // for cancel_timer_id.
    std::uint64_t run_after(std::chrono::nanoseconds delay, std::function<void()> fn);
    // Runs `fn` soon on the timer thread; once the node has stopped, on a
    // short-lived thread of its own. Never on the calling thread, never
    // dropped.
    void run_soon(std::function<void()> fn);

    // The node's log sink (net_options::log; unset: the default sink).
    const log_sink& log() const noexcept { return log_; }

    // Scheduling: puts an actor whose scheduled_ flag the caller just set on
    // the run queue (takes a new reference) or, while a turn_deferral for
    // this node is installed on the calling thread, offers it that first.
    void schedule(actor_proc* a);

    node_counters counters() const;
    void count_dropped_unknown() noexcept { dropped_unknown_.fetch_add(1, std::memory_order_relaxed); }
    void count_dropped_remote() noexcept { dropped_remote_.fetch_add(1, std::memory_order_relaxed); }
    // False, and counted, when the calling thread acts for a restricted
    // principal that may not reach `to` (auth::may_reach: no remote pid but
    // the principal's own node's); true otherwise.
    bool acting_may_reach(const pid& to) noexcept;
    // Messages, exits and name sends refused that way (refused_unauthorized).
    std::uint64_t refused_acting() const noexcept { return refused_acting_.load(std::memory_order_relaxed); }
    void count_exit() noexcept { exited_.fetch_add(1, std::memory_order_relaxed); }
    void count_mailbox_closed() noexcept { mb_closed_.fetch_add(1, std::memory_order_relaxed); }

    // --- network layer seam -------------------------------------------------
    // Installs (or, with nullptr, removes) the port for non-local pids.
    void set_remote_port(std::shared_ptr<remote_port> port);
    std::shared_ptr<remote_port> port() const;
    // Changes (from 1 up) whenever set_remote_port() runs: a cached port()
    // is current while this is unchanged.
    std::uint64_t port_generation() const noexcept { return port_gen_.load(std::memory_order_acquire); }

    // Network entry point: a message from a peer for local pid `to`, any
    // kind (user, request, reply, reply_error, down, exit_signal, link_exit).
    // Unknown pids: dropped and counted.
    void deliver(const pid& to, message&& m) { send_local(to.serial, std::move(m)); }
    // The same for a run of messages: `cache` keeps the last live target, so
    // consecutive messages to one local pid skip the table lookup.
    void deliver(const pid& to, message&& m, proc_ref& cache);
    // The same for a user message: the mailbox node is built from the body
    // in place (no temporary message).
    void deliver_user(const pid& to, term&& body, proc_ref& cache);
    // deliver(to, m, cache), the message carrying `charge` until it is freed.
    void deliver_charged(const pid& to, message&& m, proc_ref& cache, std::shared_ptr<void> charge);
    // Network entry point: a message for the name registered here.
    void deliver_named(const std::string& name, message&& m) { send_named(name, std::move(m)); }
    // Network entry point: remote `from` links to local `to`. False if `to`
    // is dead or unknown (the caller answers with link_exit "noproc").
    bool remote_link(const pid& from, const pid& to);
    void remote_unlink(const pid& from, const pid& to);
    // Network entry point: remote `watcher` monitors local `target`. False if
    // `target` is dead or unknown (the caller answers DOWN "noproc").
    bool remote_monitor(const pid& watcher, const pid& target, const ref& tag);
    // Removes the monitor `tag` of `watcher` on the local `target`; true if
    // it existed (a demonitor names the watcher that made it).
    bool remote_demonitor(const pid& target, const ref& tag, const pid& watcher);
    bool has_remote_watcher(const pid& target, const pid& watcher, const ref& tag);

private:
    struct alignas(64) shard {
        mutable spinlock lk;
        std::unordered_map<std::uint64_t, process*> map;
        bool closed = false;
    };
    static constexpr std::size_t kShards = 64;
    static constexpr std::size_t kStealMin = 3;
    // Idle spin bound (adaptive, per worker): doubles when a spin finds work,
    // halves when it ends in sleep. Kept short: on a small machine a spinning
    // worker holds a core that the I/O thread or another node needs.
    static constexpr std::int64_t kSpinMinNs = 1000;
    static constexpr std::int64_t kSpinMaxNs = 16000;

    // A worker's local run queue. Actors scheduled by code running on a
    // worker go to that worker's queue (locality: a receiver runs on the
    // sender's core, its messages still in cache). Idle workers steal from a
    // queue holding two or more actors, or from one whose owner has been
    // stuck in a single turn for a whole idle period (see pop_ready).
    struct alignas(64) worker {
        spinlock lk;
        std::deque<actor_proc*> q;             // under lk
        std::atomic<std::size_t> size{0};
        std::atomic<std::uint64_t> turns{0};   // turns started; progress marker
        // Owner-only idle state (see pop_ready).
        std::int64_t spin_ns = 0;               // current spin bound before sleeping
        std::vector<std::uint64_t> seen_turns;  // others' turns when going to sleep
    };

    void worker_loop(unsigned index);
    actor_proc* pop_ready(unsigned index, bool& stop);
    actor_proc* try_pop_local(worker& w);
    actor_proc* try_pop_global();
    actor_proc* try_steal(unsigned self, std::size_t min_size, const std::uint64_t* stuck_turns);

    const std::string name_;
    const log_sink log_;
    const unsigned nworkers_;
    const unsigned turn_;
    const unsigned guest_max_;

    alignas(64) std::atomic<std::uint64_t> serial_{1};
    std::atomic<std::uint64_t> refid_{1};
    alignas(64) std::atomic<std::uint64_t> spawned_{0};
    std::atomic<std::uint64_t> exited_{0};
    std::atomic<std::uint64_t> mb_opened_{0};
    std::atomic<std::uint64_t> mb_closed_{0};
    std::atomic<std::uint64_t> dropped_unknown_{0};
    std::atomic<std::uint64_t> refused_acting_{0};
    std::atomic<std::uint64_t> dropped_remote_{0};

    std::array<shard, kShards> shards_;

    mutable std::mutex reg_mu_;
    std::unordered_map<std::string, std::uint64_t> names_;

    // run queue
    alignas(64) std::mutex rq_mu_;
    std::condition_variable rq_cv_;
    std::deque<actor_proc*> rq_;
    std::atomic<std::size_t> rq_size_{0};
    std::atomic<unsigned> sleepers_{0};  // changed under rq_mu_
    bool rq_stop_ = false;               // under rq_mu_

    // the non-members' share (enter_guest)
    std::mutex guest_mu_;
    std::deque<actor_proc*> guest_wait_;  // parked, oldest first; bounded by their principals' caps
    unsigned guest_running_ = 0;          // turns of guest_ actors running now, <= guest_max_

    std::unique_ptr<worker[]> workers_;
    std::atomic<bool> stopping_{false};
    std::vector<std::thread> threads_;
    timer_service timers_;

    mutable std::mutex port_mu_;
    std::shared_ptr<remote_port> port_;
    std::atomic<bool> has_port_{false};
    std::atomic<std::uint64_t> port_gen_{1};
};

// The node whose worker runs the calling thread, or nullptr.
node_impl* current_worker_node() noexcept;

// A thread that can run an actor's turn itself, soon, in place of the run
// queue: the network's I/O thread while it completes a remote request
// (dist::finish), so that an actor waiting for that reply runs right after
// the I/O thread's turn instead of waking a worker (one thread hand-off and
// futex wake fewer per reply). While a deferral_scope is alive on a thread,
// node_impl::schedule() on that thread, for that node, calls take() first.
class turn_deferral {
public:
    // True: `a` (its scheduled_ flag set, one reference added for it) is
    // now the deferral's, which runs its turn or, when it cannot, schedules
    // it as usual, exactly once, and releases that reference. False: nothing
    // was kept; the caller queues it.
    virtual bool take(actor_proc* a) noexcept = 0;

protected:
    ~turn_deferral() = default;
};

class deferral_scope {
public:
    deferral_scope(node_impl& n, turn_deferral& d) noexcept;
    ~deferral_scope();
    deferral_scope(const deferral_scope&) = delete;
    deferral_scope& operator=(const deferral_scope&) = delete;

private:
    node_impl* prev_node_;
    turn_deferral* prev_;
};

// The runtime behind a kith::node, for kith's own code (mailboxes, tests of
// the runtime seam); not part of the user API.
struct node_access {
    static node_impl& impl(node& n) noexcept { return *n.impl_; }
    static const std::shared_ptr<node_impl>& impl_ptr(const node& n) noexcept { return n.impl_; }
};

inline bool is_reason(const term& t, std::string_view s) noexcept {
    const std::string* p = t.as_string();
    return p && *p == s;
}

}  // namespace kith::detail
