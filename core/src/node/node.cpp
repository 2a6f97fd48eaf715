// node.cpp — kith::node, the facade of kith/node.hpp: it delegates to the
// runtime (runtime/node_impl.hpp) and, for services and distribution, to
// node_net.cpp.
#include "kith/node.hpp"

#include "runtime/node_impl.hpp"

// --- kith::node ---------------------------------------------------------------------------

namespace kith {

node::node(node_options opts) : impl_(std::make_shared<detail::node_impl>(opts)) {
    impl_->start();
    try {
        start_net(opts.net);  // node_net.cpp
    } catch (...) {
        // Not swallowed: the workers are stopped and the error goes on to
        // the constructor's caller (setup_error, or whatever start_net threw).
        impl_->stop();
        throw;
    }
}

node::~node() { stop(); }

const std::string& node::name() const noexcept { return impl_->name(); }
unsigned node::workers() const noexcept { return impl_->workers(); }

pid node::spawn_impl(actor_init init, behavior b) { return impl_->spawn(std::move(init), std::move(b), nullptr, false, nullptr); }

void node::send(const pid& to, term msg) { impl_->send(to, message(std::move(msg))); }
void node::send(const std::string& name, term msg) { impl_->send_named(name, message(std::move(msg))); }
void node::send(const std::string& name, const std::string& node, term msg) {
    impl_->send_named(node, name, message(std::move(msg)));
}
void node::send_exit(const pid& to, term reason) { impl_->send_exit(pid{}, to, std::move(reason), false); }
void node::reply(const reply_handle& to, result<term> answer) { impl_->reply(to, pid{}, std::move(answer)); }

result<void> node::register_name(const std::string& name, const pid& who) { return impl_->register_name(name, who); }
result<void> node::unregister_name(const std::string& name) { return impl_->unregister_name(name); }
std::optional<pid> node::whereis(const std::string& name) const { return impl_->whereis(name); }

ref node::send_after(duration delay, const pid& to, term msg) { return impl_->send_after(delay, to, message(std::move(msg))); }
bool node::cancel_timer(const ref& timer) { return impl_->cancel_timer(timer); }

bool node::alive(const pid& p) const {
    if (!impl_->is_local(p)) return false;
    auto t = impl_->lookup(p.serial);
    return t && !t->is_dead();
}

node_counters node::counters() const { return impl_->counters(); }

void node::stop() {
    if (detail::current_worker_node() == impl_.get() || on_net_thread()) {
        // Joining our own worker (or I/O thread, where a service function
        // may run) would deadlock; this is a caller bug.
        std::terminate();
    }
    stop_net();  // node_net.cpp: goodbyes first, while actors still run
    impl_->stop();
}

}  // namespace kith
