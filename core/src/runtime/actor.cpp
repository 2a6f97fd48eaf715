// actor.cpp — the actor process (mailbox, turn loop, signals, requests) and
// the kith::actor context API.
#include "kith/actor.hpp"

#include <algorithm>
#include <optional>

#include "runtime/node_impl.hpp"

namespace kith::detail {

namespace {
using msg_pool = block_pool<sizeof(msg_node), alignof(msg_node)>;
using actor_pool = block_pool<sizeof(actor_proc), alignof(actor_proc)>;
}  // namespace

void* msg_node::operator new(std::size_t size) {
    return size == sizeof(msg_node) ? msg_pool::allocate() : ::operator new(size);
}
void msg_node::operator delete(void* p, std::size_t size) noexcept {
    if (size == sizeof(msg_node)) msg_pool::deallocate(p);
    else ::operator delete(p);
}

void* actor_proc::operator new(std::size_t size, std::align_val_t al) {
    if (size == sizeof(actor_proc) && static_cast<std::size_t>(al) == alignof(actor_proc)) return actor_pool::allocate();
    return ::operator new(size, al);
}
void actor_proc::operator delete(void* p, std::size_t size, std::align_val_t al) noexcept {
    if (size == sizeof(actor_proc) && static_cast<std::size_t>(al) == alignof(actor_proc)) actor_pool::deallocate(p);
    else ::operator delete(p, al);
}

actor_proc::~actor_proc() {
    while (mnode* n = q_.pop()) delete static_cast<msg_node*>(n);
}

void actor_proc::deliver(msg_node* n) noexcept {
    q_.push(n);
    // seq_cst load after the seq_cst exchange in push(): pairs with the
    // worker's "clear flag, then look at the queue" (see run_turn).
    if (!scheduled_.load(std::memory_order_seq_cst) && !scheduled_.exchange(true, std::memory_order_seq_cst))
        node_->schedule(this);
}

void actor_proc::run_turn(unsigned budget) {
    // An actor acting for a principal runs with it as the thread's authority.
    std::optional<acting_scope> scope;
    if (ex_ && ex_->acting) scope.emplace(ex_->acting.get());
    if (init_) {
        actor_init f = std::move(init_);
        init_ = nullptr;
        try {
            behavior b = f(*this);
            if (has_next_) {
                beh_ = std::move(next_beh_);
                next_beh_ = nullptr;
                has_next_ = false;
            } else {
                beh_ = std::move(b);
            }
            if (!beh_) die("normal");
        } catch (const std::exception& e) {
            die(e.what());
        } catch (...) {
            die("unknown exception");
        }
    }
    // Like Erlang's reductions: handling a message and sending one both use
    // the turn's budget, so a fast sender yields to its receivers instead of
    // filling their mailboxes without bound.
    unsigned n = 0;
    sends_ = 0;
    while (!exiting_ && n + sends_ < budget) {
        mnode* raw = q_.pop();
        if (raw == nullptr) break;
        ++n;
        std::unique_ptr<msg_node> m(static_cast<msg_node*>(raw));
        // An actor that throws exits with the exception's text as its
        // reason (links and monitors see it): an outcome, not a log line.
        try {
            handle(m->msg);
        } catch (const std::exception& e) {
            die(e.what());
        } catch (...) {
            die("unknown exception");
        }
    }
    if (exiting_) {
        finish();  // scheduled_ stays set: a dead actor is never run again
        return;
    }
    if (n + sends_ >= budget || !q_.consumer_idle()) {
        node_->schedule(this);  // more to do (or a push half done): stay scheduled
        return;
    }
    scheduled_.store(false, std::memory_order_seq_cst);
    // From here another worker may own the consumer side; only atomics.
    if (!q_.producer_empty() && !scheduled_.exchange(true, std::memory_order_seq_cst)) node_->schedule(this);
}

void actor_proc::invoke(message& m) {
    if (!beh_) return;
    beh_(*this, m);
    if (has_next_) {
        beh_ = std::move(next_beh_);
        next_beh_ = nullptr;
        has_next_ = false;
    }
}

bool actor_proc::forget_monitor(const ref& tag, pid* target) {
    if (!ex_) return false;
    auto& v = ex_->monitors;
    auto it = std::find_if(v.begin(), v.end(), [&](const auto& e) { return e.first == tag; });
    if (it == v.end()) return false;
    if (target) *target = std::move(it->second);
    *it = std::move(v.back());
    v.pop_back();
    return true;
}

void actor_proc::demonitor_outgoing(const ref& tag) {
    pid target;
    if (forget_monitor(tag, &target)) node_->demonitor(self_, target, tag);
}

void actor_proc::complete_request(const ref& tag, result<term> answer) {
    if (!ex_) return;
    auto& v = ex_->pending;
    auto it = std::find_if(v.begin(), v.end(), [&](const pending_request& p) { return p.tag == tag; });
    if (it == v.end()) return;
    reply_fn done = std::move(it->done);
    std::uint64_t timer = it->timer;
    v.erase(it);
    if (timer) node_->cancel_timer_id(timer);
    if (done) done(std::move(answer));
}

namespace {
bool has_pending(const std::unique_ptr<actor_extras>& ex, const ref& tag) {
    if (!ex) return false;
    return std::any_of(ex->pending.begin(), ex->pending.end(), [&](const pending_request& p) { return p.tag == tag; });
}

error error_from_reply(const term& body) {
    errc code = errc::exception;
    std::string detail;
    if (const term* c = body.at(0)) {
        if (auto i = c->as_int(); i && *i > 0 && *i <= 255) code = static_cast<errc>(*i);
    }
    if (const term* d = body.at(1)) {
        if (const std::string* s = d->as_string()) detail = *s;
    }
    return error(code, std::move(detail));
}

error error_from_down(const term& reason) {
    std::string text = reason.as_string() ? *reason.as_string() : std::string("noproc");
    return error(is_reason(reason, "noconnection") ? errc::nodedown : errc::noproc, std::move(text));
}
}  // namespace

void actor_proc::handle(message& m) {
    switch (m.kind) {
        case message_kind::down:
            if (!forget_monitor(m.tag)) return;  // demonitored meanwhile
            if (has_pending(ex_, m.tag)) {
                complete_request(m.tag, error_from_down(m.body));
                return;
            }
            invoke(m);
            return;
        case message_kind::reply:
            if (!has_pending(ex_, m.tag)) return;  // late reply
            demonitor_outgoing(m.tag);
            complete_request(m.tag, std::move(m.body));
            return;
        case message_kind::reply_error:
            if (!has_pending(ex_, m.tag)) return;
            demonitor_outgoing(m.tag);
            complete_request(m.tag, error_from_reply(m.body));
            return;
        case message_kind::request_timeout:
            if (!has_pending(ex_, m.tag)) return;
            demonitor_outgoing(m.tag);
            complete_request(m.tag, error(errc::timeout));
            return;
        case message_kind::exit_signal:
            if (is_reason(m.body, "kill")) {
                die("killed");
                return;
            }
            if (trap_) {
                m.kind = message_kind::exit;
                invoke(m);
                return;
            }
            if (is_reason(m.body, "normal")) {
                if (m.from == self_) die("normal");
                return;
            }
            die(std::move(m.body));
            return;
        case message_kind::link_exit:
            if (!remove_link(m.from)) return;  // unlinked meanwhile
            if (trap_) {
                m.kind = message_kind::exit;
                invoke(m);
                return;
            }
            if (!is_reason(m.body, "normal")) die(std::move(m.body));
            return;
        default:
            invoke(m);
            return;
    }
}

void actor_proc::finish() {
    if (ex_) {
        for (auto& p : ex_->pending)
            if (p.timer) node_->cancel_timer_id(p.timer);
        for (auto& [tag, target] : ex_->monitors) node_->demonitor(self_, target, tag);
        ex_.reset();
    }
    beh_ = nullptr;
    next_beh_ = nullptr;
    has_next_ = false;
    cache_.reset();
    cache_serial_ = 0;
    term reason = std::move(exit_reason_);
    node_->count_exit();
    node_->terminate(*this, reason);  // the worker still holds a reference
}

void actor_proc::drop_state() noexcept {
    dead_.store(true, std::memory_order_release);
    beh_ = nullptr;
    init_ = nullptr;
    next_beh_ = nullptr;
    cache_.reset();
    ex_.reset();
    std::lock_guard l(lk_);
    rel_.reset();
}

remote_port* actor_proc::cached_port() {
    actor_extras& x = ex();
    const std::uint64_t gen = node_->port_generation();  // before port(): a change in between refreshes again
    if (x.port_gen != gen) {
        x.port = node_->port();
        x.port_gen = gen;
    }
    return x.port.get();
}

void actor_proc::send_user(const pid& to, term&& msg) {
    ++sends_;
    if (ex_ && ex_->acting && !node_->acting_may_reach(to)) return;
    if (to.serial == cache_serial_ && cache_ && to.node == node_->name()) {
        if (!cache_->is_dead()) {
            cache_->deliver(new msg_node(std::move(msg)));
            return;
        }
        cache_.reset();
        cache_serial_ = 0;
        node_->count_dropped_unknown();
        return;
    }
    if (!node_->is_local(to)) {
        if (to.is_null()) {
            node_->send(to, message(std::move(msg)));  // counts it
            return;
        }
        remote_port* p = cached_port();
        if (!p || !p->send(to, message(std::move(msg)))) node_->count_dropped_remote();
        return;
    }
    proc_ref t = node_->lookup(to.serial);
    if (!t) {
        node_->count_dropped_unknown();
        return;
    }
    t->deliver(new msg_node(std::move(msg)));
    cache_ = std::move(t);
    cache_serial_ = to.serial;
}

}  // namespace kith::detail

namespace kith {

detail::actor_proc& actor::proc() noexcept { return static_cast<detail::actor_proc&>(*this); }
const detail::actor_proc& actor::proc() const noexcept { return static_cast<const detail::actor_proc&>(*this); }

const pid& actor::self() const noexcept { return proc().self_; }
const std::string& actor::node_name() const noexcept { return proc().node_->name(); }

void actor::send(const pid& to, term msg) { proc().send_user(to, std::move(msg)); }
void actor::send(const std::string& name, term msg) { proc().node_->send_named(name, message(std::move(msg))); }
void actor::send(const std::string& name, const std::string& node, term msg) {
    proc().node_->send_named(node, name, message(std::move(msg)));
}

pid actor::spawn_impl(actor_init init, behavior b, bool link, ref* monitor_out) {
    return proc().node_->spawn(std::move(init), std::move(b), &proc(), link, monitor_out);
}

result<void> actor::register_name(const std::string& name) { return proc().node_->register_name(name, self()); }
result<void> actor::register_name(const std::string& name, const pid& who) {
    return proc().node_->register_name(name, who);
}
result<void> actor::unregister_name(const std::string& name) { return proc().node_->unregister_name(name); }
std::optional<pid> actor::whereis(const std::string& name) const { return proc().node_->whereis(name); }

void actor::link(const pid& to) { proc().node_->link(proc(), to); }
void actor::unlink(const pid& to) { proc().node_->unlink(proc(), to); }

ref actor::monitor(const pid& to) {
    auto& p = proc();
    ref tag = p.node_->make_ref();
    p.note_monitor(tag, to);
    p.node_->monitor(p, to, tag);
    return tag;
}

bool actor::demonitor(const ref& monitor_ref) {
    auto& p = proc();
    pid target;
    if (!p.forget_monitor(monitor_ref, &target)) return false;
    p.node_->demonitor(p.self_, target, monitor_ref);
    return true;
}

void actor::quit(term reason) { proc().die(std::move(reason)); }
void actor::send_exit(const pid& to, term reason) { proc().node_->send_exit(self(), to, std::move(reason), false); }
void actor::trap_exit(bool on) noexcept { proc().trap_ = on; }
bool actor::trapping_exit() const noexcept { return proc().trap_; }

void actor::become(behavior next) {
    auto& p = proc();
    p.next_beh_ = std::move(next);
    p.has_next_ = true;
}

ref actor::send_after(duration delay, const pid& to, term msg) {
    return proc().node_->send_after(delay, to, message(std::move(msg)));
}
bool actor::cancel_timer(const ref& timer) { return proc().node_->cancel_timer(timer); }

ref actor::request(const pid& to, term msg, duration timeout, reply_fn done) {
    auto& p = proc();
    auto* n = p.node_;
    ref tag = n->make_ref();
    auto& ex = p.ex();
    ex.pending.push_back(detail::pending_request{tag, std::move(done), 0});
    ex.pending.back().timer =
        n->add_timer(timeout, p.self_, message(message_kind::request_timeout, nil, pid{}, tag));
    p.note_monitor(tag, to);
    n->monitor(p, to, tag);
    n->send(to, message(message_kind::request, std::move(msg), p.self_, tag));
    return tag;
}

void actor::reply(const message& request, result<term> answer) {
    if (!request.is_request()) return;
    proc().node_->reply(reply_handle(request), self(), std::move(answer));
}

void actor::reply(const reply_handle& to, result<term> answer) { proc().node_->reply(to, self(), std::move(answer)); }

}  // namespace kith
