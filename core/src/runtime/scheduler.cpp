// scheduler.cpp — the node runtime's run queues and worker threads (see
// node_impl.hpp, "Scheduling").
#include "runtime/node_impl.hpp"

namespace kith::detail {

namespace {
thread_local node_impl* tl_worker_node = nullptr;
thread_local unsigned tl_worker_index = 0;
thread_local node_impl* tl_defer_node = nullptr;
thread_local turn_deferral* tl_defer = nullptr;
}

node_impl* current_worker_node() noexcept { return tl_worker_node; }

deferral_scope::deferral_scope(node_impl& n, turn_deferral& d) noexcept
    : prev_node_(tl_defer_node), prev_(tl_defer) {
    tl_defer_node = &n;
    tl_defer = &d;
}

deferral_scope::~deferral_scope() {
    tl_defer_node = prev_node_;
    tl_defer = prev_;
}

// --- scheduling -----------------------------------------------------------------------------

void node_impl::schedule(actor_proc* a) {
    a->add_ref();
    if (tl_defer_node == this && tl_defer->take(a)) return;
    if (tl_worker_node == this) {
        // On one of our workers: the local queue (no stop check needed: the
        // workers are joined before the local queues are emptied).
        worker& w = workers_[tl_worker_index];
        std::size_t before;
        {
            std::lock_guard l(w.lk);
            w.q.push_back(a);
            before = w.size.fetch_add(1, std::memory_order_relaxed);
        }
        // Enough local work to share: wake an idle worker to steal.
        if (before + 1 >= kStealMin && sleepers_.load(std::memory_order_relaxed) > 0) {
            std::lock_guard l(rq_mu_);  // pairs with the sleeper's check
            rq_cv_.notify_one();
        }
        return;
    }
    bool wake;
    {
        std::lock_guard l(rq_mu_);
        if (rq_stop_) {
            wake = false;  // stopping: the actor is dropped with the table
        } else {
            rq_.push_back(a);
            rq_size_.fetch_add(1, std::memory_order_relaxed);
            wake = sleepers_.load(std::memory_order_relaxed) > 0;
            a = nullptr;
        }
    }
    if (a) a->release();
    if (wake) rq_cv_.notify_one();
}

actor_proc* node_impl::try_pop_local(worker& w) {
    if (w.size.load(std::memory_order_relaxed) == 0) return nullptr;
    std::lock_guard l(w.lk);
    if (w.q.empty()) return nullptr;
    actor_proc* a = w.q.front();
    w.q.pop_front();
    w.size.fetch_sub(1, std::memory_order_relaxed);
    return a;
}

actor_proc* node_impl::try_pop_global() {
    if (rq_size_.load(std::memory_order_relaxed) == 0) return nullptr;
    std::lock_guard l(rq_mu_);
    if (rq_.empty()) return nullptr;
    actor_proc* a = rq_.front();
    rq_.pop_front();
    rq_size_.fetch_sub(1, std::memory_order_relaxed);
    return a;
}

actor_proc* node_impl::try_steal(unsigned self, std::size_t min_size, const std::uint64_t* stuck_turns) {
    for (unsigned k = 1; k < nworkers_; ++k) {
        unsigned v = (self + k) % nworkers_;
        worker& w = workers_[v];
        std::size_t sz = w.size.load(std::memory_order_relaxed);
        if (sz == 0) continue;
        bool stuck = stuck_turns && w.turns.load(std::memory_order_relaxed) == stuck_turns[v];
        if (sz < min_size && !stuck) continue;
        std::lock_guard l(w.lk);
        if (w.q.empty()) continue;
        actor_proc* a = w.q.front();
        w.q.pop_front();
        w.size.fetch_sub(1, std::memory_order_relaxed);
        return a;
    }
    return nullptr;
}

// Order: own queue, the global queue, stealing (from queues with at least
// kStealMin actors), then a short time-bounded spin over the same, then
// sleep. The spin bound adapts per worker between kSpinMinNs and kSpinMaxNs:
// it doubles when a spin finds work and halves when it ends in sleep, so a
// busy worker rides out short gaps while an idle one quickly stops burning a
// core (wake-ups then come through the condition variable: schedule()
// notifies a sleeper for global work and for a local queue reaching
// kStealMin actors). A sleeping worker also wakes on a timer (2 ms while
// some local queue is non-empty, else 50 ms) to steal from a worker that has
// been stuck in one long turn since it went to sleep.
actor_proc* node_impl::pop_ready(unsigned index, bool& stop) {
    worker& me = workers_[index];
    if (actor_proc* a = try_pop_local(me)) return a;
    for (;;) {
        if (actor_proc* a = try_pop_global()) return a;
        if (actor_proc* a = try_steal(index, kStealMin, nullptr)) return a;
        const clock::time_point spin_end = clock::now() + std::chrono::nanoseconds(me.spin_ns);
        for (unsigned spin = 1;; ++spin) {
            cpu_relax();
            if (stopping_.load(std::memory_order_relaxed)) break;
            actor_proc* a = try_pop_local(me);
            if (!a) a = try_pop_global();
            if (!a) a = try_steal(index, kStealMin, nullptr);
            if (a) {
                me.spin_ns = std::min(me.spin_ns * 2, kSpinMaxNs);
                return a;
            }
            if ((spin & 7) == 0 && clock::now() >= spin_end) break;
        }
        me.spin_ns = std::max(me.spin_ns / 2, kSpinMinNs);
        std::uint64_t* turns = me.seen_turns.data();
        bool local_work = false;
        for (unsigned v = 0; v < nworkers_; ++v) {
            turns[v] = workers_[v].turns.load(std::memory_order_relaxed);
            local_work |= v != index && workers_[v].size.load(std::memory_order_relaxed) > 0;
        }
        std::cv_status st = std::cv_status::no_timeout;
        {
            std::unique_lock l(rq_mu_);
            if (rq_stop_) {
                stop = true;
                return nullptr;
            }
            if (rq_.empty()) {
                sleepers_.fetch_add(1, std::memory_order_relaxed);
                // Never sleep for good: a worker stuck in one long turn may
                // hold queued actors that we must eventually steal.
                st = rq_cv_.wait_for(l, local_work ? std::chrono::milliseconds(2) : std::chrono::milliseconds(50));
                sleepers_.fetch_sub(1, std::memory_order_relaxed);
            }
            if (rq_stop_) {
                stop = true;
                return nullptr;
            }
            if (!rq_.empty()) {
                // Take global work while holding the lock we woke with.
                actor_proc* a = rq_.front();
                rq_.pop_front();
                rq_size_.fetch_sub(1, std::memory_order_relaxed);
                return a;
            }
        }
        if (st == std::cv_status::timeout)
            if (actor_proc* a = try_steal(index, kStealMin, turns)) return a;
        if (actor_proc* a = try_pop_local(me)) return a;
    }
}

void node_impl::worker_loop(unsigned index) {
    tl_worker_node = this;
    tl_worker_index = index;
    worker& me = workers_[index];
    for (;;) {
        bool stop = stopping_.load(std::memory_order_acquire);
        actor_proc* a = stop ? nullptr : pop_ready(index, stop);
        if (stop) {
            if (a) a->release();
            break;
        }
        const bool guest = a->guest_;
        if (guest && !enter_guest(a)) continue;  // parked: the share is full
        me.turns.fetch_add(1, std::memory_order_relaxed);
        a->run_turn(turn_);
        a->release();
        if (guest) leave_guest();
    }
    tl_worker_node = nullptr;
}

// --- the workers' share for non-members -------------------------------------------------------
//
// Every turn of an actor acting for a grantee or a stranger (its guest_
// flag: their calls' and casts' transient actors, the actors they spawned
// and those actors' children) takes one of guest_max_ slots while it runs.
// With the slots all taken, the actor is parked (not run, not dropped)
// and, when a slot is given back, requeued on the global run queue, oldest
// first, where any worker takes it (it asks for a slot again then: another
// non-member's actor may have taken it meanwhile, and it parks again at the
// back). So non-members' turns, all of them together, occupy at most
// guest_max_ workers at once, and the others stay free for members. The
// parked actors are bounded by what the principals may hold (calls in
// flight and actors spawned, auth/gate.hpp), each parked at most once (its
// scheduled flag).

bool node_impl::enter_guest(actor_proc* a) {
    std::lock_guard l(guest_mu_);
    if (guest_running_ < guest_max_) {
        ++guest_running_;
        return true;
    }
    guest_wait_.push_back(a);
    return false;
}

void node_impl::leave_guest() {
    actor_proc* next = nullptr;
    {
        std::lock_guard l(guest_mu_);
        --guest_running_;
        if (!guest_wait_.empty()) {
            next = guest_wait_.front();
            guest_wait_.pop_front();
        }
    }
    if (!next) return;
    bool wake;
    {
        std::lock_guard l(rq_mu_);
        if (rq_stop_) {
            wake = false;
        } else {
            rq_.push_back(next);  // with the reference it was parked with
            rq_size_.fetch_add(1, std::memory_order_relaxed);
            wake = sleepers_.load(std::memory_order_relaxed) > 0;
            next = nullptr;
        }
    }
    if (next) next->release();  // stopping: dropped with the table
    if (wake) rq_cv_.notify_one();
}

node_counters node_impl::counters() const {
    node_counters c;
    c.spawned = spawned_.load(std::memory_order_relaxed);
    c.exited = exited_.load(std::memory_order_relaxed);
    std::uint64_t opened = c.spawned + mb_opened_.load(std::memory_order_relaxed);
    std::uint64_t closed = c.exited + mb_closed_.load(std::memory_order_relaxed);
    c.live = opened > closed ? opened - closed : 0;
    c.dropped_unknown = dropped_unknown_.load(std::memory_order_relaxed);
    c.dropped_remote = dropped_remote_.load(std::memory_order_relaxed);
    return c;
}

}  // namespace kith::detail
