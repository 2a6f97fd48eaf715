// bind.hpp — what the binding files of `kith._kith` share (private to
// bindings/python/src): blocking waits, destinations, Python actors, the
// mailbox and node wrappers, and the registration function of each file.
//
//   module.cpp     PYBIND11_MODULE: calls every register_* below, _shutdown
//   actors.cpp     Python actors (kith.Actor), spawning them
//   mailbox.cpp    kith.Mailbox
//   node.cpp       kith._Node: lifecycle, messages, names, local spawns, services
//   rpc.cpp        kith._Node: calls, remote spawns, ping, connect
//   grants.cpp     kith.Grant and kith._Node's grant methods
//   discovery.cpp  kith._Node's discovery methods and options
//   log.cpp        Python log callables (Node(log=...), set_log_sink)
//   avail.cpp      supervisors, process groups, global names, failovers
//   rkvs.cpp       the replicated kvs (kith.Rkvs)
//   relay.cpp      kith._Node's relays, Grant.relays (docs/relay.md)
//   convert.cpp    values, exceptions, the GIL/shutdown gate (kith_py.hpp)
//
// GIL rule for every file: what a gil_release section uses is copied out of
// Python-owned objects first (a shared_ptr to a py_node's core or to a
// mailbox, a pid). An argument stays alive for the call (its caller holds
// it), but another Python thread may change or close it while the GIL is
// released; only immutable ones (a Grant) are used in place. Never keep a
// raw pointer to a Python-owned object beyond the call that received it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kith/discovery.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_py.hpp"

namespace kith::python {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;
// Blocking waits wake this often to run PyErr_CheckSignals (Ctrl-C).
constexpr auto kSlice = 50ms;

// Seconds (>= 0, capped at 1e9) -> nanoseconds; ValueError otherwise.
std::chrono::nanoseconds seconds_to_ns(double s);

template <class T>
T value_or_raise(result<T> r) {
    if (!r.ok()) throw_error(r.err());
    return std::move(*r);
}
inline void ok_or_raise(const result<void>& r) {
    if (!r.ok()) throw_error(r.err());
}

// Runs `start(done)` (an asynchronous kith operation) and waits for `done`,
// with the GIL released, checking for signals between slices.
// `stopped()` is checked between slices (with the GIL): errc::shutdown once
// it is true (an operation in flight when its node stops may never
// complete). `deadline` (optional) bounds the wait: errc::timeout after it
// (for operations whose completion is not guaranteed by kith itself).
// `start` runs without the GIL: it must not touch Python objects.
template <class T, class Start, class Stopped>
result<T> wait_async(Start&& start, Stopped&& stopped, std::optional<clock::time_point> deadline = {}) {
    struct state {
        std::mutex mu;
        std::condition_variable cv;
        std::optional<result<T>> r;
    };
    auto st = std::make_shared<state>();
    {
        gil_release rel;
        start([st](result<T> r) {
            {
                std::lock_guard lk(st->mu);
                st->r.emplace(std::move(r));
            }
            st->cv.notify_all();
        });
    }
    for (;;) {
        {
            gil_release rel;
            std::unique_lock lk(st->mu);
            if (st->cv.wait_for(lk, kSlice, [&] { return st->r.has_value(); })) return std::move(*st->r);
        }
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
        if (stopped()) return error{errc::shutdown, "node stopped"};
        if (deadline && clock::now() >= *deadline) return error{errc::timeout, "no answer"};
    }
}

// --- destinations: Pid | "name" | ("name", "node") --------------------------
struct dest {
    std::optional<pid> p;
    std::string name, node;
};
dest parse_dest(py::handle to);
template <class Sender>
void send_to(Sender& s, py::handle to, py::handle msg) {
    dest d = parse_dest(to);
    term t = to_term(msg);
    if (d.p) s.send(*d.p, std::move(t));
    else if (d.node.empty()) s.send(d.name, std::move(t));
    else s.send(d.name, d.node, std::move(t));
}

// --- Python actors (actors.cpp) ----------------------------------------------
// Nonzero while this thread runs Python code for kith (an actor handler or a
// service function): such code must not stop its node (stop() joins the very
// thread it would run on).
extern thread_local int t_in_handler;
struct handler_scope {
    handler_scope() { ++t_in_handler; }
    ~handler_scope() { --t_in_handler; }
};

// (init or None, handler) from Python -> the pair kith spawns. Needs the GIL.
std::pair<actor_init, behavior> make_spawnable(py::object init, py::object handler);

// Spawns a Python actor from an actor or a mailbox (with link, or a monitor
// whose ref goes to *mon).
template <class Spawner>
pid spawn_py(Spawner& s, py::object init, py::object handler, bool link, ref* mon) {
    auto [i, b] = make_spawnable(std::move(init), std::move(handler));
    auto f = [i = std::move(i), b = std::move(b)](actor& self) -> behavior {
        if (i) return i(self);
        return b;
    };
    if (mon) {
        auto pr = s.spawn_monitor(std::move(f));
        *mon = pr.second;
        return pr.first;
    }
    return link ? s.spawn_link(std::move(f)) : s.spawn(std::move(f));
}

// --- mailbox (mailbox.cpp) ---------------------------------------------------
// A kith::mailbox plus the messages a selective receive skipped (kept in
// order, as Python objects; guarded by the GIL).
struct py_mailbox {
    // Shared so that close() from one thread cannot free it under another
    // thread blocked in receive() or call().
    std::shared_ptr<mailbox> mb;
    std::deque<py::object> saved;           // guarded by the GIL
    std::atomic<std::uint64_t> stashed{0};  // messages ever set aside (under pull_mu)
    std::timed_mutex pull_mu;

    mailbox& get() {
        if (!mb) throw_error(error{errc::shutdown, "mailbox closed"});
        return *mb;
    }
    std::optional<py::object> take_saved(const std::function<bool(py::handle)>& matches);
    py::object receive(std::optional<double> timeout, py::object match);
    void close() {
        saved.clear();
        mb.reset();
    }
};

// --- log callables (log.cpp) -------------------------------------------------
// A Python callable receiving log records. Records are queued (bounded) by
// sink() on whatever kith thread logs them, never waiting for the GIL (a
// kith thread may log while holding a lock a GIL-holding Python thread
// waits for), and delivered in order by one dispatcher thread holding the
// GIL.
class log_target;
using log_target_ptr = std::shared_ptr<log_target>;
// `fn` must be callable (TypeError otherwise); `what` names it in the
// failure record when it raises ("of node a@b"). Needs the GIL.
log_target_ptr make_log_target(py::object fn, std::string what);
// A log_sink that queues records for `t`.
log_sink sink_of(const log_target_ptr& t);
// Waits (bounded, without the GIL) until the records queued before are
// delivered, then drops the callable: later records go to the default sink.
// Idempotent; call without the GIL.
void close_log_target(const log_target_ptr& t) noexcept;
// The atexit hook's part (with the GIL, after every node is stopped): the
// default sink back to stderr, the dispatcher thread stopped.
void stop_logging();

// --- node (node.cpp) ---------------------------------------------------------
// How a completion that may run after its node is gone reaches the node
// (node::spawn_async's `done` runs on a detached thread once the node has
// stopped): through this, which node_core::halt closes once the node is
// stopped. Shared by the node_core and every completion in flight.
struct node_gate {
    std::mutex mu;
    node* n = nullptr;  // under mu; nullptr once closed
    // Sends `msg` to the local `to`, or drops it once the node is stopped.
    // Never blocks on the GIL; called on kith threads.
    void send(const pid& to, term msg) {
        std::lock_guard lk(mu);
        if (n) n->send(to, std::move(msg));
    }
    void close() {
        std::lock_guard lk(mu);
        n = nullptr;
    }
};
// The node and its discovery, shared by the Python object and the registry
// of running nodes (the atexit hook stops them all), so neither can free it
// while the other uses it with the GIL released.
struct node_core {
    std::unique_ptr<node> n;
    std::unique_ptr<discovery> d;            // destroyed before n
    // Servers that need the node (avail.cpp: global names, pg scopes,
    // failovers), destroyed last-first by halt() before the node stops.
    std::vector<std::shared_ptr<void>> attached;  // under halt_mu
    std::vector<log_target_ptr> logs;        // Python log callables of n and d
    std::shared_ptr<node_gate> gate = std::make_shared<node_gate>();  // to n, until halted
    std::atomic<bool> stopped{false};
    std::mutex halt_mu;                      // held while halting: a second stop waits for the first
    bool halted = false;                     // under halt_mu

    // Stops discovery, then the node, then closes the log callables. Call
    // without the GIL (kith threads may be waiting for it).
    void halt() noexcept;
    // Halts, then destroys d and n: call without the GIL.
    ~node_core();
};

class py_node {
public:
    py_node(const std::string& name, const std::string& listen, const std::string& advertise,
            const std::string& key_dir, std::optional<std::string> cookie, unsigned workers,
            double heartbeat_interval, double heartbeat_timeout, bool hidden, std::size_t max_queue_bytes,
            const std::vector<std::string>& builtin, std::optional<py::dict> disc, py::object log,
            const std::string& member_listen, unsigned guest_workers, int network_cpu,
            double conns_per_address = -1);
    ~py_node();
    py_node(const py_node&) = delete;
    py_node& operator=(const py_node&) = delete;

    // The node; errc::shutdown once stopped.
    node& get();
    node& raw() { return *c_->n; }
    bool stopped() const { return c_->stopped.load(); }
    // Stops with the GIL released; returns once the node is stopped, also
    // when another thread's stop() is still running.
    void stop();
    bool has_discovery() const { return c_->d != nullptr; }
    // The discovery object; errc::shutdown once stopped, errc::badarg if off.
    discovery& disc();
    void add_service(const std::string& name, py::dict functions, py::dict types);
    // Keeps `obj` until the node stops (destroyed before it); Shutdown if
    // it is stopped already. The core, for objects that must outlive it.
    void attach(std::shared_ptr<void> obj);
    std::shared_ptr<node_core> core() const { return c_; }

private:
    std::shared_ptr<node_core> c_;
};

// A Python handle on a server that belongs to its node (avail.cpp,
// relay.cpp): a weak reference, so node.stop() ends the server and get()
// raises Shutdown afterwards; `core` keeps the node's memory alive while
// the handle is in use.
template <class T>
struct attached_ref {
    std::weak_ptr<T> w;
    std::shared_ptr<node_core> core;
    std::shared_ptr<T> get() const {
        auto p = w.lock();
        if (!p) throw_error(error{errc::shutdown, "its node is stopped"});
        return p;
    }
};

// Hands `obj` to its node (py_node::attach) and returns the handle on it.
template <class T>
attached_ref<T> attach(py_node& n, std::shared_ptr<T> obj) {
    attached_ref<T> r{obj, n.core()};
    n.attach(std::move(obj));
    return r;
}

// Stops every running node (the atexit hook; with the GIL).
void stop_all_nodes();

// discovery.cpp: the options dict of Node(discovery=...); `node_log` is the
// node's log sink, used when the dict names none.
discovery_options discovery_options_from(const py::dict& d, const log_sink& node_log,
                                         std::vector<log_target_ptr>& logs);

// --- registration ------------------------------------------------------------
void register_actors(py::module_& m);
void register_mailbox(py::module_& m);
void register_log(py::module_& m);
void register_node(py::module_& m);
using node_class = py::class_<py_node>;
void bind_node_rpc(node_class& c);
void bind_node_grants(node_class& c);
void bind_node_discovery(node_class& c);
void bind_node_avail(node_class& c);  // avail.cpp
void register_avail(py::module_& m);
void bind_node_rkvs(node_class& c);  // rkvs.cpp
void register_rkvs(py::module_& m);
void bind_node_relay(node_class& c);  // relay.cpp
void register_relay(py::module_& m);

}  // namespace kith::python
