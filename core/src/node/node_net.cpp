// node_net.cpp — kith::node's services and distribution methods
// (kith/node.hpp), on top of the dist layer (dist.hpp).
#include <algorithm>
#include <climits>
#include <cstdint>
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sodium.h>

#include "dist/dist.hpp"
#include "auth/gate.hpp"
#include "kith/node.hpp"
#include "kith/platform.hpp"

namespace kith {

namespace {
error no_network() { return error{errc::nodedown, "this node has no network (net.listen is empty)"}; }
}  // namespace

void node::start_net(const net_options& o) {
    net_ = std::make_shared<detail::node_net>();
    if (o.listen.empty()) return;
    net_->dist = std::make_shared<detail::dist>(*impl_, o, net_->services);
    net_->dist->start();
}

bool node::on_net_thread() const noexcept { return net_ && net_->dist && net_->dist->on_own_thread(); }

void node::stop_net() {
    if (net_ && net_->dist) net_->dist->stop();
}

void node::add_service(service s) { net_->services->add(std::make_shared<const service>(std::move(s))); }

std::vector<std::string> node::services() const { return net_->services->names(); }

void node::invoke_local(const std::string& svc, const std::string& fn, const term& args, reply_to reply) const {
    // Code acting for a grantee or a stranger re-dispatches only within
    // what that principal may invoke itself (no deputies).
    if (const detail::authority* who = detail::acting(); who && who->restricted()) {
        auto v = net_->dist ? net_->dist->check_invoke(*who, svc, fn)
                            : detail::auth::verdict{errc::unauthorized, svc + ":" + fn + " is not allowed"};
        if (!v.ok()) {
            reply.fail(v.code, v.detail + " (for " + who->who.describe() + ")");
            return;
        }
    }
    auto s = net_->services->find(svc);
    if (!s) {
        reply.fail(errc::no_such_service, svc);
        return;
    }
    s->invoke(fn, args, std::move(reply));
}

std::vector<std::string> node::endpoints() const {
    if (!net_->dist) return {};
    std::string ep = net_->dist->endpoint();  // the advertised one, else the bound one
    const std::string wildcard = "tcp://0.0.0.0:";
    if (!net_->dist->options().advertise.empty() || ep.rfind(wildcard, 0) != 0) return {ep};
    std::string port = ep.substr(wildcard.size());
    std::vector<std::string> out, loop;
    for (auto& i : platform::ipv4_interfaces()) {
        if (!i.up) continue;
        std::string e = "tcp://" + platform::ipv4_text(i.address) + ":" + port;
        auto& list = i.loopback ? loop : out;
        if (std::find(list.begin(), list.end(), e) == list.end()) list.push_back(e);
    }
    // Loopback only when there is nothing else: a friend's own machine is
    // never where this node is (a grant file that lists it sends them there).
    if (out.empty()) out = loop;
    if (out.empty()) out.push_back("tcp://127.0.0.1:" + port);
    return out;
}

void node::connect_listener(const std::string& endpoint) {
    if (net_->dist) net_->dist->connect_listener(endpoint, true);
}
void node::disconnect(const std::string& endpoint) {
    if (net_->dist) net_->dist->disconnect(endpoint);
}
void node::disconnect_listener(const std::string& endpoint) {
    if (net_->dist) net_->dist->connect_listener(endpoint, false);
}

std::string node::bound_endpoint() const { return net_->dist ? net_->dist->bound_endpoint() : std::string(); }

std::string node::member_endpoint() const {
    if (!net_->dist) return {};
    const std::string bound = net_->dist->member_endpoint();
    if (bound.empty()) return {};
    // Behind an advertised endpoint (NAT) the member port is reachable only
    // if it was chosen (and forwarded) on purpose.
    if (!net_->dist->options().advertise.empty() && net_->dist->options().member_listen.empty()) return {};
    const std::string pub = endpoint();
    const auto pc = pub.rfind(':'), mc = bound.rfind(':');
    if (pc == std::string::npos || mc == std::string::npos || pub.rfind("tcp://", 0) != 0) return {};
    return pub.substr(0, pc + 1) + bound.substr(mc + 1);
}

std::filesystem::path node::key_dir() const {
    if (!net_->dist) return {};
    auto& d = net_->dist->options().key_dir;
    return d.empty() ? default_key_dir() : d;
}

std::string node::endpoint() const {
    auto all = endpoints();
    return all.empty() ? std::string() : all.front();
}

public_key node::key() const { return net_->dist ? net_->dist->key() : public_key{}; }

result<std::string> node::connect(const std::string& endpoint, const public_key& key, duration timeout) {
    if (!net_->dist) return no_network();
    return net_->dist->connect(endpoint, key, timeout);
}

result<std::string> node::connect_visitor(const std::string& endpoint, const public_key& key, duration timeout) {
    if (!net_->dist) return no_network();
    return net_->dist->connect(endpoint, key, timeout, detail::link_credentials::visitor());
}

void node::connect_async(const std::string& endpoint, const public_key& key, duration timeout,
                         std::function<void(result<std::string>)> done) {
    if (!net_->dist) {
        done(no_network());
        return;
    }
    net_->dist->connect_async(endpoint, key, timeout, std::move(done));
}

result<std::string> node::connect(const grant_file& grant, duration timeout) {
    if (!net_->dist) return no_network();
    return net_->dist->connect(grant, timeout);
}

// --- grants and public services ----------------------------------------------

result<grant_file> node::grant(const grant_spec& spec) {
    if (!net_->dist) return no_network();
    for (auto& [svc, names] : spec.allow)
        if (detail::auth::is_admin_service(svc))
            return error{errc::badarg, "\"" + svc + "\" is an admin service: it can never be granted (only cluster "
                                       "members may use it); grant other services"};
    grant_file f;
    f.client = keypair::generate();
    auto e = net_->dist->grants().create(spec, f.client.pub);
    if (!e) return e.err();
    f.node = name();
    f.endpoints = endpoints();
    f.server_key = key();
    f.label = spec.label;
    f.allow = spec.allow;
    f.rate = spec.rate;
    f.expires = spec.expires;
    f.limits = spec.limits;
    f.version = spec.limits.is_default() ? 1 : 3;  // as to_text() writes it
    return f;
}

std::vector<grant_info> node::grants() const {
    return net_->dist ? net_->dist->grants().list() : std::vector<grant_info>{};
}

result<void> node::revoke_grant(const std::string& label) {
    if (!net_->dist) return no_network();
    return net_->dist->revoke_grant(label);
}

result<void> node::set_grant_rate(const std::string& label, rate_limit rate) {
    if (!net_->dist) return no_network();
    return net_->dist->grants().set_rate(label, rate);
}

result<void> node::set_grant_limits(const std::string& label, const grant_limits& limits) {
    if (!net_->dist) return no_network();
    return net_->dist->grants().set_limits(label, limits);
}

result<void> node::set_public(const std::string& svc, bool on, rate_limit rate) {
    if (on && detail::auth::is_admin_service(svc))
        return error{errc::badarg, "\"" + svc + "\" is an admin service: it can never be public (only cluster "
                                   "members may use it)"};
    if (!net_->dist) return no_network();
    net_->dist->grants().set_public(svc, on, rate);
    if (!on) net_->dist->public_changed();
    return {};
}

std::vector<std::string> node::public_services() const {
    return net_->dist ? net_->dist->grants().public_services() : std::vector<std::string>{};
}

void node::call_async(const std::string& node, const std::string& svc, const std::string& fn, term args,
                      duration timeout, std::function<void(result<term>)> done) {
    // `done` never runs in here (node.hpp): a local invocation may answer at
    // once, so it answers through the guard; dist::call never completes inline.
    if (node == name()) {
        detail::no_reentry guard(*impl_, std::move(done));
        invoke_local(svc, fn, args, reply_to(guard.done()));
        return;
    }
    if (!net_->dist) {
        impl_->run_soon([done = std::move(done)] { done(no_network()); });
        return;
    }
    net_->dist->call(node, svc, fn, std::move(args), timeout, std::move(done));
}

namespace {
// A one-shot slot a blocking caller waits on. The untimed wait sleeps on a
// futex at once (no spin: the answer comes from another node, tens of
// microseconds at best, and spinning or yielding many blocked callers only
// takes the CPU from the threads that carry the answers); setting it makes
// no system call unless the caller already sleeps, and takes no lock the
// caller could hold.
inline void futex_wait(std::atomic<int>& a, int expected) {
    ::syscall(SYS_futex, reinterpret_cast<int*>(&a), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}
inline void futex_wake_all(std::atomic<int>& a) {
    ::syscall(SYS_futex, reinterpret_cast<int*>(&a), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

template <class T>
struct waiter {
    static_assert(sizeof(std::atomic<int>) == sizeof(int) && std::atomic<int>::is_always_lock_free);
    std::atomic_flag claimed = ATOMIC_FLAG_INIT;
    // 0: no value yet; 1: set; 2: no value yet, and wait() sleeps (or is about to) on the futex.
    std::atomic<int> ready{0};
    std::optional<result<T>> value;
    std::mutex mu;  // for wait_for only
    std::condition_variable cv;
    void set(result<T> r) {
        if (claimed.test_and_set(std::memory_order_acq_rel)) return;
        value.emplace(std::move(r));
        int was;
        {
            std::lock_guard lk(mu);
            was = ready.exchange(1, std::memory_order_acq_rel);
        }
        if (was == 2) futex_wake_all(ready);
        cv.notify_all();
    }
    result<T> wait() {
        int s = 0;
        if (ready.compare_exchange_strong(s, 2, std::memory_order_acq_rel)) s = 2;
        while (s == 2) {
            futex_wait(ready, 2);  // returns at once if it is no longer 2 (or on a signal)
            s = ready.load(std::memory_order_acquire);
        }
        return std::move(*value);
    }
    std::optional<result<T>> wait_for(std::chrono::nanoseconds d) {
        std::unique_lock lk(mu);
        if (!cv.wait_for(lk, d, [&] { return ready.load(std::memory_order_acquire) == 1; })) return std::nullopt;
        return std::move(*value);
    }
};
}  // namespace

result<term> node::call(const std::string& node, const std::string& svc, const std::string& fn, term args,
                        duration timeout) {
    auto w = std::make_shared<waiter<term>>();
    call_async(node, svc, fn, std::move(args), timeout, [w](result<term> r) { w->set(std::move(r)); });
    // The dist layer guarantees completion (reply, nodedown, timeout or
    // shutdown); a local invoke may complete later from another thread.
    if (node == name()) {
        auto r = w->wait_for(timeout);
        if (!r) return error{errc::timeout, "no reply from " + node};
        return std::move(*r);
    }
    return w->wait();
}

result<void> node::cast(const std::string& node, const std::string& svc, const std::string& fn, term args) {
    if (node == name()) {
        invoke_local(svc, fn, args, reply_to([](result<term>) {}));
        return {};
    }
    if (!net_->dist) return no_network();
    return net_->dist->cast(node, svc, fn, std::move(args));
}

multicall_result node::multicall(const std::vector<std::string>& nodes, const std::string& svc,
                                 const std::string& fn, term args, duration timeout) {
    struct state {
        std::mutex mu;
        std::condition_variable cv;
        std::size_t left;
        multicall_result out;
    };
    auto st = std::make_shared<state>();
    st->left = nodes.size();
    for (auto& n : nodes) {
        call_async(n, svc, fn, args, timeout, [st, n](result<term> r) {
            std::lock_guard lk(st->mu);
            if (r.ok())
                st->out.results[n] = std::move(*r);
            else
                st->out.bad_nodes[n] = r.err();
            if (--st->left == 0) st->cv.notify_all();
        });
    }
    std::unique_lock lk(st->mu);
    // Remote calls always complete by their deadline; local ones might not.
    if (!st->cv.wait_for(lk, timeout + std::chrono::milliseconds(500), [&] { return st->left == 0; })) {
        for (auto& n : nodes)
            if (!st->out.results.count(n) && !st->out.bad_nodes.count(n))
                st->out.bad_nodes[n] = error{errc::timeout, "no reply from " + n};
    }
    return st->out;
}

void node::spawn_async(const std::string& node, const std::string& svc, const std::string& type, term args,
                       duration timeout, std::function<void(result<pid>)> done) {
    if (node == name() || !net_->dist) {
        // Answered here at once (spawn's own checks), handed to the timer
        // thread: `done` never runs on the calling thread (node.hpp).
        auto r = spawn(node, svc, type, std::move(args), timeout);
        impl_->run_soon([done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
        return;
    }
    net_->dist->spawn(node, svc, type, std::move(args), timeout, std::move(done));
}

result<pid> node::spawn(const std::string& node, const std::string& svc, const std::string& type, term args,
                        duration timeout) {
    if (node == name()) {
        // As invoke_local: code acting for a grantee or a stranger spawns
        // only what that principal may spawn itself.
        if (const detail::authority* who = detail::acting(); who && who->restricted()) {
            auto v = net_->dist ? net_->dist->check_invoke(*who, svc, type)
                                : detail::auth::verdict{errc::unauthorized, svc + ":" + type + " is not allowed"};
            if (!v.ok()) return error{v.code, v.detail + " (for " + who->who.describe() + ")"};
        }
        auto s = net_->services->find(svc);
        if (!s) return error{errc::no_such_service, svc};
        auto* f = s->find_type(type);
        if (!f) return error{errc::no_such_function, svc + ":" + type};
        auto made = (*f)(args);
        if (!made) return made.err();
        return impl_->spawn(std::move(made->first), std::move(made->second), nullptr, false, nullptr);
    }
    if (!net_->dist) return no_network();
    auto w = std::make_shared<waiter<pid>>();
    net_->dist->spawn(node, svc, type, std::move(args), timeout, [w](result<pid> r) { w->set(std::move(r)); });
    return w->wait();
}

result<pid> node::spawn_link(const pid& linker, const std::string& node, const std::string& svc,
                             const std::string& type, term args, duration timeout) {
    if (!net_->dist) return no_network();
    if (!impl_->is_local(linker)) return error{errc::badarg, "the linker must be a local pid"};
    auto w = std::make_shared<waiter<pid>>();
    net_->dist->spawn(
        node, svc, type, std::move(args), timeout, [w](result<pid> r) { w->set(std::move(r)); }, spawn_link_flag,
        linker);
    return w->wait();
}

result<std::pair<pid, ref>> node::spawn_monitor(const pid& watcher, const std::string& node, const std::string& svc,
                                                const std::string& type, term args, duration timeout) {
    if (!net_->dist) return no_network();
    if (!impl_->is_local(watcher)) return error{errc::badarg, "the watcher must be a local pid"};
    ref mref = impl_->make_ref();
    // The watcher accepts a DOWN only for a monitor it knows; the target's
    // pid is not known yet (the DOWN is matched by its ref).
    if (auto p = impl_->lookup(watcher.serial)) p->note_monitor(mref, pid{node, 0});
    auto w = std::make_shared<waiter<pid>>();
    net_->dist->spawn(
        node, svc, type, std::move(args), timeout, [w](result<pid> r) { w->set(std::move(r)); },
        spawn_monitor_flag, watcher, mref);
    auto r = w->wait();
    if (!r) return r.err();
    return std::make_pair(std::move(*r), std::move(mref));
}

bool node::ping(const std::string& node, duration timeout) {
    if (node == name()) return true;
    if (!net_->dist || !net_->dist->is_up(node)) return false;
    // A round trip through the peer's dispatcher: an unknown service answers
    // no_such_service, which proves the node is alive and serving.
    auto r = call(node, "", "", arr(), timeout);
    return r.ok() || r.code() == errc::no_such_service || r.code() == errc::unauthorized;
}

std::vector<std::string> node::nodes() const {
    return net_->dist ? net_->dist->nodes(false) : std::vector<std::string>{};
}

std::optional<node_info> node::info(const std::string& node) const {
    return net_->dist ? net_->dist->info(node) : std::nullopt;
}

std::uint64_t node::subscribe_nodes(std::function<void(const node_event&)> cb) {
    return net_->dist ? net_->dist->subscribe(std::move(cb)) : 0;
}

void node::unsubscribe_nodes(std::uint64_t id) {
    if (net_->dist) net_->dist->unsubscribe(id);
}

void node::monitor_nodes(const pid& who, bool on) {
    if (net_->dist) net_->dist->monitor_nodes(who, on);
}

void node::monitor_node(const std::string& node, const pid& who) {
    if (net_->dist)
        net_->dist->monitor_node(node, who);
    else
        impl_->send(who, message(arr("nodedown", node, "noconnection")));
}

std::optional<std::array<std::uint8_t, 32>> node::cookie_key(std::string_view purpose) const {
    if (!net_->dist) return std::nullopt;
    const auto& o = net_->dist->options();
    // The same cookie the transport uses (transport.cpp: the option, else the
    // key directory's cookie file).
    std::string cookie = o.cookie ? *o.cookie : load_or_create_cookie(o.key_dir.empty() ? default_key_dir() : o.key_dir);
    auto k = derive_cookie_key(cookie, purpose);
    sodium_memzero(cookie.data(), cookie.size());
    return k;
}

net_counters node::net_stats() const { return net_->dist ? net_->dist->counters() : net_counters{}; }

}  // namespace kith
