// mailbox.cpp — the blocking mailbox for plain threads.
#include "kith/mailbox.hpp"

#include <algorithm>

#include "kith/node.hpp"
#include "runtime/node_impl.hpp"

namespace kith::detail {

void mailbox_proc::deliver(msg_node* n) noexcept {
    std::unique_ptr<msg_node> h(n);
    message& m = n->msg;
    {
        std::lock_guard l(mu_);
        switch (m.kind) {
            case message_kind::reply:
            case message_kind::reply_error:
                // Only answers to a call() still waiting; late ones are discarded.
                if (std::find(calls_.begin(), calls_.end(), m.tag) == calls_.end()) return;
                break;
            case message_kind::down: {
                auto it = std::find_if(monitors_.begin(), monitors_.end(),
                                       [&](const auto& e) { return e.first == m.tag; });
                if (it == monitors_.end()) return;  // demonitored
                monitors_.erase(it);
                break;
            }
            case message_kind::exit_signal:
                m.kind = message_kind::exit;  // a mailbox always traps exits
                break;
            case message_kind::link_exit:
                if (!remove_link(m.from)) return;
                m.kind = message_kind::exit;
                break;
            case message_kind::request_timeout:
                return;
            default:
                break;
        }
        q_.push_back(std::move(m));
    }
    cv_.notify_all();
}

}  // namespace kith::detail

namespace kith {

namespace {
using detail::clock;

clock::time_point deadline_after(mailbox::duration timeout) {
    constexpr auto year = std::chrono::hours(24 * 365);
    if (timeout > year) timeout = year;
    if (timeout < mailbox::duration::zero()) timeout = mailbox::duration::zero();
    return clock::now() + timeout;
}
}  // namespace

mailbox::mailbox(node& n) : node_(detail::node_access::impl_ptr(n)) {
    proc_ = node_->open_mailbox();
    if (proc_ == nullptr) throw setup_error("kith::mailbox: the node is stopped");
}

mailbox::~mailbox() { close(); }

mailbox::mailbox(mailbox&& other) noexcept
    : node_(std::move(other.node_)), proc_(std::exchange(other.proc_, nullptr)) {}

mailbox& mailbox::operator=(mailbox&& other) noexcept {
    if (this != &other) {
        close();
        node_ = std::move(other.node_);
        proc_ = std::exchange(other.proc_, nullptr);
    }
    return *this;
}

void mailbox::close() noexcept {
    if (proc_ == nullptr) return;
    std::vector<std::pair<ref, pid>> monitors;
    {
        std::lock_guard l(proc_->mu_);
        monitors.swap(proc_->monitors_);
    }
    for (auto& [tag, target] : monitors) node_->demonitor(proc_->self_, target, tag);
    node_->count_mailbox_closed();
    node_->terminate(*proc_, term("normal"));
    proc_->release();
    proc_ = nullptr;
}

const pid& mailbox::self() const noexcept {
    static const pid null_pid;
    return proc_ ? proc_->self_ : null_pid;
}

result<message> mailbox::receive(duration timeout) { return receive(predicate{}, timeout); }

result<message> mailbox::receive(const predicate& match, duration timeout) {
    if (proc_ == nullptr) return error(errc::shutdown);
    auto& p = *proc_;
    const auto deadline = deadline_after(timeout);
    std::unique_lock l(p.mu_);
    for (;;) {
        for (auto it = p.q_.begin(); it != p.q_.end(); ++it) {
            if (!match || match(*it)) {
                message m = std::move(*it);
                p.q_.erase(it);
                return m;
            }
        }
        if (p.stopped_) return error(errc::shutdown);
        if (clock::now() >= deadline) return error(errc::timeout);
        p.cv_.wait_until(l, deadline);
    }
}

std::size_t mailbox::size() const {
    if (proc_ == nullptr) return 0;
    std::lock_guard l(proc_->mu_);
    return proc_->q_.size();
}

void mailbox::send(const pid& to, term msg) { node_->send(to, message(std::move(msg))); }
void mailbox::send(const std::string& name, term msg) { node_->send_named(name, message(std::move(msg))); }
void mailbox::send(const std::string& name, const std::string& node, term msg) {
    node_->send_named(node, name, message(std::move(msg)));
}
void mailbox::send_exit(const pid& to, term reason) { node_->send_exit(self(), to, std::move(reason), false); }

result<term> mailbox::call(const pid& to, term msg, duration timeout) {
    if (proc_ == nullptr) return error(errc::shutdown);
    auto& p = *proc_;
    ref tag = node_->make_ref();
    {
        std::lock_guard l(p.mu_);
        p.calls_.push_back(tag);
        p.monitors_.emplace_back(tag, to);
    }
    node_->monitor(p, to, tag);
    node_->send(to, message(message_kind::request, std::move(msg), p.self_, tag));
    auto r = receive(
        [&](const message& m) {
            return (m.kind == message_kind::reply || m.kind == message_kind::reply_error ||
                    m.kind == message_kind::down) &&
                   m.tag == tag;
        },
        timeout);
    {
        std::lock_guard l(p.mu_);
        auto it = std::find(p.calls_.begin(), p.calls_.end(), tag);
        if (it != p.calls_.end()) p.calls_.erase(it);
    }
    if (r.ok() && r->kind == message_kind::down) {
        const term& reason = r->body;
        std::string text = reason.as_string() ? *reason.as_string() : std::string("noproc");
        return error(detail::is_reason(reason, "noconnection") ? errc::nodedown : errc::noproc, std::move(text));
    }
    (void)demonitor(tag);  // also drops a DOWN that raced with the reply
    if (!r.ok()) return r.err();
    if (r->kind == message_kind::reply) return std::move(r->body);
    errc code = errc::exception;
    std::string detail;
    if (const term* c = r->body.at(0))
        if (auto i = c->as_int(); i && *i > 0 && *i <= 255) code = static_cast<errc>(*i);
    if (const term* d = r->body.at(1))
        if (const std::string* s = d->as_string()) detail = *s;
    return error(code, std::move(detail));
}

void mailbox::reply(const message& request, result<term> answer) {
    if (!request.is_request()) return;
    node_->reply(reply_handle(request), self(), std::move(answer));
}

pid mailbox::spawn_impl(actor_init init, behavior b, bool link, ref* monitor_out) {
    return node_->spawn(std::move(init), std::move(b), proc_, link, monitor_out);
}

void mailbox::link(const pid& to) {
    if (proc_) node_->link(*proc_, to);
}
void mailbox::unlink(const pid& to) {
    if (proc_) node_->unlink(*proc_, to);
}

ref mailbox::monitor(const pid& to) {
    if (proc_ == nullptr) return {};
    ref tag = node_->make_ref();
    proc_->note_monitor(tag, to);
    node_->monitor(*proc_, to, tag);
    return tag;
}

bool mailbox::demonitor(const ref& monitor_ref) {
    if (proc_ == nullptr) return false;
    auto& p = *proc_;
    pid target;
    bool found = false, flushed = false;
    {
        std::lock_guard l(p.mu_);
        auto it = std::find_if(p.monitors_.begin(), p.monitors_.end(),
                               [&](const auto& e) { return e.first == monitor_ref; });
        if (it != p.monitors_.end()) {
            target = std::move(it->second);
            p.monitors_.erase(it);
            found = true;
        }
        auto q = std::find_if(p.q_.begin(), p.q_.end(), [&](const message& m) {
            return m.kind == message_kind::down && m.tag == monitor_ref;
        });
        if (q != p.q_.end()) {
            p.q_.erase(q);
            flushed = true;
        }
    }
    if (found) node_->demonitor(p.self_, target, monitor_ref);
    return found || flushed;
}

result<void> mailbox::register_name(const std::string& name) {
    if (proc_ == nullptr) return error(errc::shutdown);
    return node_->register_name(name, proc_->self_);
}

}  // namespace kith
