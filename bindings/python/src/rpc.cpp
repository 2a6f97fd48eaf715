// rpc.cpp — kith._Node's calls to other nodes and actors: call, cast,
// multicall, call_pid, remote spawns (spawn_async too), call_async, ping and connect. Every wait releases
// the GIL and is interruptible (Ctrl-C) and bounded.
#include "bind.hpp"

namespace kith::python {
namespace {

// A request from a transient actor (Erlang's gen:call from a helper
// process), so that the caller can wait for it with wait_async: `done` runs
// once with the reply, errc::timeout, or errc::noproc.
void request_async(node& nd, const pid& to, term msg, std::chrono::nanoseconds timeout,
                   std::function<void(result<term>)> done) {
    node* np = &nd;  // the C++ node: outlives its actors (stop joins them)
    nd.spawn([np, to, msg = std::move(msg), timeout, done = std::move(done)](actor& self) mutable -> behavior {
        term finished = arr("kith-python-request-done", self.self());
        self.request(to, std::move(msg), timeout, [np, me = self.self(), finished, done](result<term> r) {
            done(std::move(r));
            np->send(me, finished);
        });
        return [finished](actor& me, message& m) {
            if (m.is_user() && m.body == finished) me.quit();
        };
    });
}

// call_async's answers on their way to Python: kith threads append them
// (never waiting for the GIL) and send one kick to the current dispatcher
// actor (kith/_node.py) while none is pending; the dispatcher takes them
// all at once and names the next dispatcher in the same step, so that a
// done-callback it runs may wait for an answer that arrives meanwhile.
struct call_queue {
    std::mutex mu;
    std::vector<std::pair<std::uint64_t, result<term>>> items;  // under mu
    std::optional<pid> dispatcher;                               // under mu
    bool kicked = false;                                         // under mu
    std::shared_ptr<node_gate> gate;                             // set by the first call

    void push(std::uint64_t tag, result<term> r) {
        std::optional<pid> kick;
        {
            std::lock_guard lk(mu);
            items.emplace_back(tag, std::move(r));
            if (!kicked && dispatcher) {
                kicked = true;
                kick = dispatcher;
            }
        }
        if (kick) gate->send(*kick, arr("kith-call-async-kick"));
    }
};

// The pid of an optional mailbox argument, read with the GIL held (another
// thread may close the mailbox once the GIL is released).
std::optional<pid> self_of(py_mailbox* b) {
    if (!b) return std::nullopt;
    return b->get().self();
}

}  // namespace

void bind_node_rpc(node_class& c) {
    py::class_<call_queue, std::shared_ptr<call_queue>>(c, "_CallQueue")
        .def(py::init<>())
        // The answers so far, as [(Tag, True, Value) or (Tag, False, Code,
        // Detail)], and `next` as the dispatcher the next kick goes to.
        .def("take", [](call_queue& q, const pid& next) {
            std::vector<std::pair<std::uint64_t, result<term>>> got;
            {
                std::lock_guard lk(q.mu);
                got.swap(q.items);
                q.dispatcher = next;
                q.kicked = false;
            }
            py::list out;
            for (auto& [tag, r] : got) {
                if (r.ok()) out.append(py::make_tuple(tag, true, from_term(*r)));
                else out.append(py::make_tuple(tag, false, std::string(to_string(r.code())), r.err().detail));
            }
            if (!got.empty()) {
                // Answers that came in meanwhile were not kicked for: kick now.
                std::optional<pid> kick;
                {
                    std::lock_guard lk(q.mu);
                    if (!q.items.empty() && !q.kicked && q.gate) q.kicked = true, kick = q.dispatcher;
                }
                if (kick) q.gate->send(*kick, arr("kith-call-async-kick"));
            }
            return out;
        })
        .def("set_dispatcher", [](call_queue& q, const pid& p) {
            std::lock_guard lk(q.mu);
            q.dispatcher = p;
        });
    c.def("call", [](py_node& n, const std::string& to, const std::string& svc, const std::string& fn,
                     py::list args, double timeout) {
         term a = to_term(args);
         node& nd = n.get();
         auto d = seconds_to_ns(timeout);
         auto r = wait_async<term>([&](auto done) { nd.call_async(to, svc, fn, std::move(a), d, done); },
                                   [&] { return n.stopped(); });
         return from_term(value_or_raise(std::move(r)));
     })
        .def("cast", [](py_node& n, const std::string& to, const std::string& svc, const std::string& fn,
                        py::list args) { ok_or_raise(n.get().cast(to, svc, fn, to_term(args))); })
        .def("multicall", [](py_node& n, const std::vector<std::string>& nodes, const std::string& svc,
                             const std::string& fn, py::list args, double timeout) {
            // As node::multicall, but waited for in slices (Ctrl-C).
            struct state {
                std::mutex mu;
                std::size_t left = 0;
                multicall_result out;
                std::function<void(result<bool>)> done;
            };
            auto st = std::make_shared<state>();
            st->left = nodes.size();
            term a = to_term(args);
            node& nd = n.get();
            auto d = seconds_to_ns(timeout);
            (void)wait_async<bool>(
                [&](auto done) {
                    st->done = done;
                    if (nodes.empty()) done(true);
                    for (auto& name : nodes)
                        nd.call_async(name, svc, fn, a, d, [st, name](result<term> r) {
                            std::function<void(result<bool>)> fire;
                            {
                                std::lock_guard lk(st->mu);
                                if (r.ok()) st->out.results[name] = std::move(*r);
                                else st->out.bad_nodes[name] = r.err();
                                if (--st->left == 0) fire = st->done;
                            }
                            if (fire) fire(true);
                        });
                },
                [&] { return n.stopped(); }, clock::now() + d + 500ms);
            std::lock_guard lk(st->mu);
            py::dict good, bad;
            for (auto& name : nodes) {
                if (auto it = st->out.results.find(name); it != st->out.results.end())
                    good[py::str(name)] = from_term(it->second);
                else if (auto e = st->out.bad_nodes.find(name); e != st->out.bad_nodes.end())
                    bad[py::str(name)] = error_object(e->second);
                else
                    bad[py::str(name)] = error_object(error{errc::timeout, "no reply from " + name});
            }
            return py::make_tuple(good, bad);
        })
        .def("call_pid", [](py_node& n, const pid& to, py::handle msg, double timeout) {
            term t = to_term(msg);
            node& nd = n.get();
            auto d = seconds_to_ns(timeout);
            auto r = wait_async<term>([&](auto done) { request_async(nd, to, std::move(t), d, done); },
                                      [&] { return n.stopped(); }, clock::now() + d + 1s);
            return from_term(value_or_raise(std::move(r)));
        })
        .def("_spawn_remote", [](py_node& n, const std::string& to, const std::string& svc, const std::string& type,
                                 py::list args, double timeout, py_mailbox* linker, py_mailbox* watcher) -> py::object {
            term a = to_term(args);
            node& nd = n.get();
            auto d = seconds_to_ns(timeout);
            std::optional<pid> link_to = self_of(linker), watch_by = self_of(watcher);
            if (watch_by) {
                std::optional<result<std::pair<pid, ref>>> r;
                {
                    gil_release rel;
                    r.emplace(nd.spawn_monitor(*watch_by, to, svc, type, std::move(a), d));
                }
                auto pr = value_or_raise(std::move(*r));
                return py::make_tuple(pr.first, pr.second);
            }
            std::optional<result<pid>> r;
            {
                gil_release rel;
                if (link_to) r.emplace(nd.spawn_link(*link_to, to, svc, type, std::move(a), d));
                else r.emplace(nd.spawn(to, svc, type, std::move(a), d));
            }
            return py::cast(value_or_raise(std::move(*r)));
        })
        .def("_spawn_async", [](py_node& n, const std::string& to, const std::string& svc, const std::string& type,
                                py::list args, double timeout, const pid& notify, std::uint64_t tag) {
            // node::spawn_async; the answer goes to `notify` (kith/_node.py's
            // helper actor, which completes the Future) as a message, so no
            // kith thread waits for the GIL: ["kith-spawn-async", Tag, Pid] or
            // ["kith-spawn-async", Tag, Code, Detail].
            term a = to_term(args);
            node& nd = n.get();
            auto d = seconds_to_ns(timeout);
            std::shared_ptr<node_gate> gate = n.core()->gate;
            gil_release rel;  // a spawn on this node runs the actor type's factory here (Python's needs the GIL)
            nd.spawn_async(to, svc, type, std::move(a), d, [gate, notify, tag](result<pid> r) {
                term tag_t(static_cast<std::uint64_t>(tag));
                gate->send(notify, r.ok() ? arr("kith-spawn-async", tag_t, *r)
                                          : arr("kith-spawn-async", tag_t, std::string(to_string(r.code())),
                                                r.err().detail));
            });
        })
        .def("_call_async", [](py_node& n, const std::string& to, const std::string& svc, const std::string& fn,
                               py::list args, double timeout, const std::shared_ptr<call_queue>& q,
                               std::uint64_t tag) {
            // node::call_async; the answer goes into `q` (kith/_node.py's
            // dispatcher takes it with the GIL). No kith thread waits for
            // the GIL, and `done` never runs in here (node.hpp).
            term a = to_term(args);
            node& nd = n.get();
            auto d = seconds_to_ns(timeout);
            {
                std::lock_guard lk(q->mu);
                if (!q->gate) q->gate = n.core()->gate;
            }
            gil_release rel;  // a local service may run at once on a worker (a Python one needs the GIL)
            nd.call_async(to, svc, fn, std::move(a), d, [q, tag](result<term> r) { q->push(tag, std::move(r)); });
        })
        .def("ping", [](py_node& n, const std::string& to, double timeout) {
            node& nd = n.get();
            auto d = seconds_to_ns(timeout);
            gil_release rel;
            return nd.ping(to, d);
        }, py::arg("node"), py::arg("timeout") = 1.0)
        .def("connect", [](py_node& n, const std::string& endpoint, const std::string& key, double timeout,
                           bool visitor) {
            auto k = public_key::from_z85(key);
            if (!k) throw_error(error{errc::badarg, "key must be 40 characters of Z85 (a node's public key)"});
            node& nd = n.get();
            auto d = seconds_to_ns(timeout);
            if (visitor) {
                result<std::string> r = error{errc::shutdown};
                {
                    gil_release rel;
                    r = nd.connect_visitor(endpoint, *k, d);
                }
                return value_or_raise(std::move(r));
            }
            // connect_async answers within `d`; the deadline is a backstop.
            auto r = wait_async<std::string>([&](auto done) { nd.connect_async(endpoint, *k, d, done); },
                                             [&] { return n.stopped(); }, clock::now() + d + 2s);
            return value_or_raise(std::move(r));
        }, py::arg("endpoint"), py::arg("key"), py::arg("timeout") = 5.0, py::arg("visitor") = false)
        .def("connect_grant", [](py_node& n, const grant_file& g, double timeout) {
            node& nd = n.get();
            auto d = seconds_to_ns(timeout);
            // Blocking (kith has no asynchronous form of it), bounded by
            // `timeout` per endpoint tried, with the GIL released. `g` is
            // immutable from Python and held by the caller.
            std::optional<result<std::string>> r;
            {
                gil_release rel;
                r.emplace(nd.connect(g, d));
            }
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            return value_or_raise(std::move(*r));
        }, py::arg("grant"), py::arg("timeout") = 5.0);
}

}  // namespace kith::python
