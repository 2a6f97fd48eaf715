// runtime.cpp — the node runtime: process relations, the pid table,
// spawning, sending, links and monitors, the registry. Scheduling (run
// queues and workers) is in scheduler.cpp, timers in timers.cpp. See
// node_impl.hpp for the design.
#include <algorithm>

#include "auth/gate.hpp"
#include "runtime/node_impl.hpp"

namespace kith::detail {

// --- process relations --------------------------------------------------------------

bool process::add_link(const pid& p) {
    std::lock_guard l(lk_);
    if (dead_.load(std::memory_order_relaxed)) return false;
    if (!rel_) rel_ = std::make_unique<relations>();
    auto& v = rel_->links;
    if (std::find(v.begin(), v.end(), p) == v.end()) v.push_back(p);
    return true;
}

bool process::remove_link(const pid& p) {
    std::lock_guard l(lk_);
    if (!rel_) return false;
    auto& v = rel_->links;
    auto it = std::find(v.begin(), v.end(), p);
    if (it == v.end()) return false;
    *it = std::move(v.back());
    v.pop_back();
    return true;
}

bool process::add_watcher(const pid& w, const ref& tag) {
    std::lock_guard l(lk_);
    if (dead_.load(std::memory_order_relaxed)) return false;
    if (!rel_) rel_ = std::make_unique<relations>();
    rel_->watchers.emplace_back(w, tag);
    return true;
}

bool process::remove_watcher(const ref& tag, const pid* watcher) {
    std::lock_guard l(lk_);
    if (!rel_) return false;
    auto& v = rel_->watchers;
    auto it = std::find_if(v.begin(), v.end(),
                           [&](const auto& e) { return e.second == tag && (!watcher || e.first == *watcher); });
    if (it == v.end()) return false;
    *it = std::move(v.back());
    v.pop_back();
    return true;
}

bool process::has_watcher(const pid& w, const ref& tag) {
    std::lock_guard l(lk_);
    if (!rel_) return false;
    auto& v = rel_->watchers;
    return std::any_of(v.begin(), v.end(), [&](const auto& e) { return e.second == tag && e.first == w; });
}

// --- node_impl -----------------------------------------------------------------------

node_impl::node_impl(node_options opts)
    : name_(std::move(opts.name)),
      log_(opts.net.log),
      nworkers_(opts.workers ? opts.workers : std::max(1u, std::thread::hardware_concurrency())),
      turn_(std::max(1u, opts.turn_messages)),
      guest_max_(opts.guest_workers ? std::min(opts.guest_workers, nworkers_) : std::max(1u, nworkers_ / 2)),
      workers_(new worker[nworkers_]),
      timers_(*this) {
    if (name_.empty()) throw setup_error("kith::node: the node name must not be empty");
    for (unsigned i = 0; i < nworkers_; ++i) {
        workers_[i].spin_ns = kSpinMaxNs / 2;
        workers_[i].seen_turns.resize(nworkers_);
    }
}

node_impl::~node_impl() { stop(); }

void node_impl::start() {
    try {
        timers_.start();
        threads_.reserve(nworkers_);
        for (unsigned i = 0; i < nworkers_; ++i) threads_.emplace_back([this, i] { worker_loop(i); });
    } catch (const std::system_error& e) {
        stop();
        throw setup_error(std::string("kith::node: cannot start threads: ") + e.what());
    }
}

void node_impl::stop() noexcept {
    if (stopping_.exchange(true, std::memory_order_acq_rel)) return;
    timers_.stop();
    {
        std::lock_guard l(rq_mu_);
        rq_stop_ = true;
    }
    rq_cv_.notify_all();
    for (auto& t : threads_)
        if (t.joinable()) t.join();
    threads_.clear();
    std::deque<actor_proc*> ready;
    {
        std::lock_guard l(rq_mu_);
        ready.swap(rq_);
        rq_size_.store(0, std::memory_order_relaxed);
    }
    {
        std::lock_guard l(guest_mu_);
        for (actor_proc* a : guest_wait_) ready.push_back(a);
        guest_wait_.clear();
    }
    for (actor_proc* a : ready) a->release();
    for (unsigned i = 0; i < nworkers_; ++i) {
        for (actor_proc* a : workers_[i].q) a->release();
        workers_[i].q.clear();
        workers_[i].size.store(0, std::memory_order_relaxed);
    }

    // Drop every process still in the table. First collect (and close the
    // shards so nothing new is inserted), then clear state that may hold
    // references to other processes, then release.
    std::vector<process*> procs;
    for (auto& s : shards_) {
        std::lock_guard l(s.lk);
        s.closed = true;
        for (auto& [serial, p] : s.map) procs.push_back(p);
        s.map.clear();
    }
    for (process* p : procs) {
        if (p->type_ == process::type::actor) static_cast<actor_proc*>(p)->drop_state();
        else static_cast<mailbox_proc*>(p)->close_for_stop();
    }
    for (process* p : procs) p->release();
    {
        std::lock_guard l(reg_mu_);
        names_.clear();
    }
    set_remote_port(nullptr);
}

// --- pid table ------------------------------------------------------------------------

proc_ref node_impl::lookup(std::uint64_t serial) const {
    const shard& s = shards_[serial % kShards];
    std::lock_guard l(s.lk);
    auto it = s.map.find(serial);
    return it == s.map.end() ? proc_ref{} : proc_ref{it->second};
}

bool node_impl::insert(process* p) {
    shard& s = shards_[p->self_.serial % kShards];
    {
        std::lock_guard l(s.lk);
        if (!s.closed) {
            s.map.emplace(p->self_.serial, p);
            return true;
        }
    }
    p->release();
    return false;
}

void node_impl::erase(std::uint64_t serial) {
    shard& s = shards_[serial % kShards];
    process* p = nullptr;
    {
        std::lock_guard l(s.lk);
        auto it = s.map.find(serial);
        if (it == s.map.end()) return;
        p = it->second;
        s.map.erase(it);
    }
    p->release();
}

// --- spawning ------------------------------------------------------------------------

pid node_impl::spawn(actor_init init, behavior b, process* parent, bool link, ref* monitor_out) {
    pid self{name_, next_serial()};
    auto* a = new actor_proc(this, self);
    a->beh_ = std::move(b);
    a->init_ = std::move(init);
    if (parent) {
        if (link) {
            // If the parent is already ending, add_link fails and the child
            // keeps a link to a dead pid, which is harmless.
            a->add_link(parent->self_);
            (void)parent->add_link(self);
        }
        if (monitor_out) {
            ref tag = make_ref();
            a->add_watcher(parent->self_, tag);
            parent->note_monitor(tag, self);
            *monitor_out = std::move(tag);
        }
    }
    if (const authority* acting_for = acting(); acting_for && acting_for->restricted()) {
        a->ex().acting = acting_for->shared_from_this();  // an agent's children act for the same principal
        a->guest_ = true;                                 // and run in the non-members' share
    }
    spawned_.fetch_add(1, std::memory_order_relaxed);
    const bool run_init = static_cast<bool>(a->init_);
    if (run_init) a->scheduled_.store(true, std::memory_order_relaxed);
    if (!insert(a)) return self;  // stopped: the actor never runs
    if (run_init) schedule(a);
    return self;
}

actor_proc* node_impl::spawn_deferred(actor_init init, pid& self) {
    self = pid{name_, next_serial()};
    auto* a = new actor_proc(this, self);
    a->init_ = std::move(init);
    if (const authority* acting_for = acting(); acting_for && acting_for->restricted()) {
        a->ex().acting = acting_for->shared_from_this();
        a->guest_ = true;
    }
    spawned_.fetch_add(1, std::memory_order_relaxed);
    a->scheduled_.store(true, std::memory_order_relaxed);  // its first turn is the caller's to hand on
    a->add_ref();                                          // the caller's
    if (!insert(a)) {
        a->release();
        return nullptr;
    }
    return a;
}

void node_impl::run_first_turn(actor_proc* a) {
    if (a->guest_) return schedule_first_turn(a);  // within the non-members' share, on a worker
    a->run_turn(turn_);
    a->release();
}

void node_impl::schedule_first_turn(actor_proc* a) {
    schedule(a);  // its own reference
    a->release();
}

mailbox_proc* node_impl::open_mailbox() {
    auto* m = new mailbox_proc(this, pid{name_, next_serial()});
    m->add_ref();  // the caller's reference; insert takes the other
    if (!insert(m)) {
        m->release();
        return nullptr;
    }
    mb_opened_.fetch_add(1, std::memory_order_relaxed);
    return m;
}

// --- sending --------------------------------------------------------------------------

void node_impl::send(const pid& to, message&& m) {
    if ((m.kind == message_kind::user || m.kind == message_kind::request) && !acting_may_reach(to)) return;
    if (is_local(to)) {
        send_local(to.serial, std::move(m));
        return;
    }
    if (to.is_null()) {
        count_dropped_unknown();
        return;
    }
    if (auto p = port(); p && p->send(to, std::move(m))) return;
    count_dropped_remote();
}

void node_impl::send_local(std::uint64_t serial, message&& m) {
    proc_ref t = lookup(serial);
    if (!t) {
        count_dropped_unknown();
        return;
    }
    t->deliver(new msg_node(std::move(m)));
}

namespace {
// The live local process `to` names: `cache` if it still is, else looked up
// (and cached). False (counted as dropped) if there is none.
bool cached_target(node_impl& n, const pid& to, proc_ref& cache) {
    if (!cache || cache->self_.serial != to.serial || cache->is_dead()) {
        cache = n.lookup(to.serial);
        if (!cache) {
            n.count_dropped_unknown();
            return false;
        }
    }
    return true;
}
}  // namespace

void node_impl::deliver(const pid& to, message&& m, proc_ref& cache) {
    if (cached_target(*this, to, cache)) cache->deliver(new msg_node(std::move(m)));
}

void node_impl::deliver_charged(const pid& to, message&& m, proc_ref& cache, std::shared_ptr<void> charge) {
    if (!cached_target(*this, to, cache)) return;
    auto* n = new msg_node(std::move(m));
    n->charge = std::move(charge);
    cache->deliver(n);
}

void node_impl::deliver_user(const pid& to, term&& body, proc_ref& cache) {
    if (cached_target(*this, to, cache)) cache->deliver(new msg_node(std::move(body)));
}

void node_impl::send_named(const std::string& name, message&& m) {
    std::uint64_t serial = 0;
    {
        std::lock_guard l(reg_mu_);
        auto it = names_.find(name);
        if (it != names_.end()) serial = it->second;
    }
    if (serial == 0) {
        count_dropped_unknown();
        return;
    }
    send_local(serial, std::move(m));
}

void node_impl::send_named(const std::string& node, const std::string& name, message&& m) {
    if (node == name_) {
        send_named(name, std::move(m));
        return;
    }
    if (!acting_may_reach(pid{node, 1})) return;
    if (auto p = port(); p && p->send_named(node, name, std::move(m))) return;
    count_dropped_remote();
}

void node_impl::send_exit(const pid& from, const pid& to, term reason, bool linked) {
    if (!linked && !acting_may_reach(to)) return;
    if (is_local(to)) {
        send_local(to.serial,
                   message(linked ? message_kind::link_exit : message_kind::exit_signal, std::move(reason), from));
        return;
    }
    if (auto p = port(); p && p->exit(from, to, reason, linked)) return;
    count_dropped_remote();
}

void node_impl::reply(const reply_handle& to, const pid& from, result<term> answer) {
    if (to.is_null() || to.tag.is_null()) return;
    if (answer.ok()) {
        send(to.to, message(message_kind::reply, std::move(answer).value(), from, to.tag));
    } else {
        error e = answer.err();
        send(to.to, message(message_kind::reply_error,
                            arr(static_cast<std::int64_t>(e.code), std::move(e.detail)), from, to.tag));
    }
}

// --- relations ---------------------------------------------------------------------------

void node_impl::link(process& p, const pid& to) {
    if (to == p.self_ || to.is_null()) return;
    if (!p.add_link(to)) return;
    if (is_local(to)) {
        proc_ref t = lookup(to.serial);
        if (!t || !t->add_link(p.self_))
            p.deliver(new msg_node(message(message_kind::link_exit, "noproc", to)));
        return;
    }
    if (!acting_may_reach(to)) {  // code acting for a non-member links to no other node
        p.remove_link(to);
        p.deliver(new msg_node(message(message_kind::link_exit, "unauthorized", to)));
        return;
    }
    if (auto port_ = port(); port_ && port_->link(p.self_, to)) return;
    p.deliver(new msg_node(message(message_kind::link_exit, "noconnection", to)));
}

void node_impl::unlink(process& p, const pid& to) {
    p.remove_link(to);
    if (is_local(to)) {
        if (proc_ref t = lookup(to.serial)) t->remove_link(p.self_);
        return;
    }
    if (auto port_ = port()) port_->unlink(p.self_, to);
}

void node_impl::monitor(process& p, const pid& to, const ref& tag) {
    if (is_local(to)) {
        proc_ref t = lookup(to.serial);
        if (!t || !t->add_watcher(p.self_, tag))
            p.deliver(new msg_node(message(message_kind::down, "noproc", to, tag)));
        return;
    }
    if (!to.is_null() && !acting_may_reach(to)) {  // nor monitors one
        p.deliver(new msg_node(message(message_kind::down, "unauthorized", to, tag)));
        return;
    }
    if (auto port_ = port(); port_ && !to.is_null() && port_->monitor(p.self_, to, tag)) return;
    p.deliver(new msg_node(message(message_kind::down, to.is_null() ? "noproc" : "noconnection", to, tag)));
}

void node_impl::demonitor(const pid& watcher, const pid& to, const ref& tag) {
    if (is_local(to)) {
        if (proc_ref t = lookup(to.serial)) t->remove_watcher(tag);
        return;
    }
    if (auto port_ = port()) port_->demonitor(watcher, to, tag);
}

void node_impl::terminate(process& p, const term& reason) {
    std::unique_ptr<relations> rel;
    {
        std::lock_guard l(p.lk_);
        p.dead_.store(true, std::memory_order_release);
        rel = std::move(p.rel_);
    }
    if (rel) {
        for (const pid& l : rel->links) send_exit(p.self_, l, reason, true);
        for (auto& [w, tag] : rel->watchers) {
            if (is_local(w)) {
                send_local(w.serial, message(message_kind::down, reason, p.self_, tag));
            } else if (auto port_ = port(); !port_ || !port_->send(w, message(message_kind::down, reason, p.self_, tag))) {
                count_dropped_remote();
            }
        }
        if (!rel->reg_name.empty()) {
            std::lock_guard l(reg_mu_);
            auto it = names_.find(rel->reg_name);
            if (it != names_.end() && it->second == p.self_.serial) names_.erase(it);
        }
    }
    erase(p.self_.serial);  // may free p
}

bool node_impl::remote_link(const pid& from, const pid& to) {
    if (!is_local(to)) return false;
    proc_ref t = lookup(to.serial);
    return t && t->add_link(from);
}

void node_impl::remote_unlink(const pid& from, const pid& to) {
    if (!is_local(to)) return;
    if (proc_ref t = lookup(to.serial)) t->remove_link(from);
}

bool node_impl::remote_monitor(const pid& watcher, const pid& target, const ref& tag) {
    if (!is_local(target)) return false;
    proc_ref t = lookup(target.serial);
    return t && t->add_watcher(watcher, tag);
}

bool node_impl::remote_demonitor(const pid& target, const ref& tag, const pid& watcher) {
    if (!is_local(target)) return false;
    proc_ref t = lookup(target.serial);
    return t && t->remove_watcher(tag, &watcher);
}

bool node_impl::has_remote_watcher(const pid& target, const pid& watcher, const ref& tag) {
    if (!is_local(target)) return false;
    proc_ref t = lookup(target.serial);
    return t && t->has_watcher(watcher, tag);
}

bool node_impl::acting_may_reach(const pid& to) noexcept {
    const authority* a = acting();
    if (!a || !a->restricted() || auth::may_reach(*a, to.node, to.is_null() || is_local(to))) return true;
    refused_acting_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

void node_impl::set_remote_port(std::shared_ptr<remote_port> p) {
    std::lock_guard l(port_mu_);
    port_ = std::move(p);
    has_port_.store(port_ != nullptr, std::memory_order_release);
    port_gen_.fetch_add(1, std::memory_order_acq_rel);
}

std::shared_ptr<remote_port> node_impl::port() const {
    if (!has_port_.load(std::memory_order_acquire)) return nullptr;
    std::lock_guard l(port_mu_);
    return port_;
}

// --- registry ----------------------------------------------------------------------------

result<void> node_impl::register_name(const std::string& name, const pid& who) {
    if (name.empty()) return error(errc::badarg, "empty name");
    if (!is_local(who)) return error(errc::badarg, "not a local pid");
    std::lock_guard l(reg_mu_);
    if (names_.count(name)) return error(errc::badarg, "name already registered: " + name);
    proc_ref t = lookup(who.serial);
    if (!t) return error(errc::badarg, "no such process");
    {
        std::lock_guard pl(t->lk_);
        if (t->dead_.load(std::memory_order_relaxed)) return error(errc::badarg, "no such process");
        if (!t->rel_) t->rel_ = std::make_unique<relations>();
        if (!t->rel_->reg_name.empty()) return error(errc::badarg, "process already registered");
        t->rel_->reg_name = name;
    }
    names_.emplace(name, who.serial);
    return {};
}

result<void> node_impl::unregister_name(const std::string& name) {
    std::lock_guard l(reg_mu_);
    auto it = names_.find(name);
    if (it == names_.end()) return error(errc::badarg, "name not registered: " + name);
    std::uint64_t serial = it->second;
    names_.erase(it);
    if (proc_ref t = lookup(serial)) {
        std::lock_guard pl(t->lk_);
        if (t->rel_ && t->rel_->reg_name == name) t->rel_->reg_name.clear();
    }
    return {};
}

std::optional<pid> node_impl::whereis(const std::string& name) const {
    std::lock_guard l(reg_mu_);
    auto it = names_.find(name);
    if (it == names_.end()) return std::nullopt;
    return pid{name_, it->second};
}

}  // namespace kith::detail

