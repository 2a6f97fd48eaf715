// module.cpp — the `kith._kith` extension: nodes, mailboxes, Python actors and
// services. The friendly API (keyword options, decorators, iterators) is the
// pure-Python layer in kith/__init__.py; this file is the thin, careful part:
//
//  * blocking waits release the GIL and wake every 50 ms to run
//    PyErr_CheckSignals, so Ctrl-C interrupts them (KeyboardInterrupt);
//  * Python actors and service functions run on kith worker threads with the
//    GIL acquired for the duration of the Python code;
//  * node.stop() and the destructor release the GIL while joining kith's
//    threads (those may be waiting for it), the node's discovery (if any)
//    first, then the node; at interpreter exit an atexit
//    hook stops every node still running, then forbids kith threads and
//    GIL-released Python threads to take the GIL back (enter_python,
//    gil_release in kith_py.hpp: never py::gil_scoped_release here).
#include <pybind11/chrono.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <chrono>
#include <condition_variable>
#include <algorithm>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "kith/builtin.hpp"
#include "kith/discovery.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith/principal.hpp"
#include "kith_py.hpp"

namespace kith::python {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;
constexpr auto kSlice = 50ms;

std::chrono::nanoseconds seconds_to_ns(double s) {
    if (!(s >= 0)) throw py::value_error("timeout must be a number of seconds >= 0");
    if (s > 1e9) s = 1e9;
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

// Runs `start(done)` (an asynchronous kith operation) and waits for `done`,
// with the GIL released, checking for signals between slices.
// `stopped()` is checked between slices: errc::shutdown once it is true (an
// operation in flight when its node stops may never complete).
// `deadline` (optional) bounds the wait: errc::timeout after it (for
// operations whose completion is not guaranteed by kith itself).
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

// A request from a transient actor (Erlang's gen:call from a helper
// process), so that the caller can wait for it with wait_async: `done` runs
// once with the reply, errc::timeout, or errc::noproc.
void request_async(node& nd, const pid& to, term msg, std::chrono::nanoseconds timeout,
                   std::function<void(result<term>)> done) {
    node* np = &nd;
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

template <class T>
T value_or_raise(result<T> r) {
    if (!r.ok()) throw_error(r.err());
    return std::move(*r);
}
inline void ok_or_raise(const result<void>& r) {
    if (!r.ok()) throw_error(r.err());
}

// --- destinations: Pid | "name" | ("name", "node") --------------------------
struct dest {
    std::optional<pid> p;
    std::string name, node;
};
dest parse_dest(py::handle to) {
    dest d;
    if (py::isinstance<pid>(to)) d.p = to.cast<pid>();
    else if (py::isinstance<py::str>(to)) d.name = to.cast<std::string>();
    else if (py::isinstance<py::tuple>(to) && py::len(to) == 2) {
        auto t = to.cast<py::tuple>();
        d.name = t[0].cast<std::string>();
        d.node = t[1].cast<std::string>();
    } else
        throw py::type_error("a destination is a Pid, a registered name, or a (name, node) tuple");
    return d;
}
template <class Sender>
void send_to(Sender& s, py::handle to, py::handle msg) {
    dest d = parse_dest(to);
    term t = to_term(msg);
    if (d.p) s.send(*d.p, std::move(t));
    else if (d.node.empty()) s.send(d.name, std::move(t));
    else s.send(d.name, d.node, std::move(t));
}

// --- Python actors -----------------------------------------------------------
// The actor context handed to Python handlers; valid only during the call.
struct actor_ctx {
    actor* a = nullptr;
    actor& self() const {
        if (!a) throw py::value_error("this Actor context is only valid inside its handler (store actor.self instead)");
        return *a;
    }
};

behavior make_behavior(held_ptr handler);

// Set while this thread runs Python code for kith (an actor handler or a
// service function): such code must not stop its node (stop() joins the
// very thread it would run on).
thread_local int t_in_handler = 0;
struct handler_scope {
    handler_scope() { ++t_in_handler; }
    ~handler_scope() { --t_in_handler; }
};

// Runs Python code for an actor with the GIL held; an exception ends the
// actor with the traceback text as its reason.
template <class F>
void run_in_actor(actor& self, F&& body) {
    handler_scope in_handler;
    std::optional<py::gil_scoped_acquire> gil;
    if (!enter_python([&] { gil.emplace(); })) {
        self.quit("shutdown");
        return;
    }
    auto ctx = py::cast(actor_ctx{&self});
    try {
        body(ctx);
    } catch (py::error_already_set& e) {
        self.quit(term(traceback_text(e)));
    } catch (const std::exception& e) {
        self.quit(term(std::string("error: ") + e.what()));
    }
    ctx.cast<actor_ctx&>().a = nullptr;
}

behavior make_behavior(held_ptr handler) {
    return [handler](actor& self, message& m) {
        run_in_actor(self, [&](py::object& ctx) { handler->get()(ctx, from_message(m)); });
    };
}

// (init or None, handler) from Python -> the pair kith spawns.
std::pair<actor_init, behavior> make_spawnable(py::object init, py::object handler) {
    auto h = hold(std::move(handler));
    if (init.is_none()) return {actor_init{}, make_behavior(h)};
    auto i = hold(std::move(init));
    return {actor_init([i, h](actor& self) -> behavior {
                run_in_actor(self, [&](py::object& ctx) { i->get()(ctx); });
                return make_behavior(h);
            }),
            behavior{}};
}

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

// --- mailbox -----------------------------------------------------------------
// A kith::mailbox plus the messages a selective receive skipped (kept in
// order, as Python objects; guarded by the GIL).
struct py_mailbox {
    // Shared so that close() from one thread cannot free it under another
    // thread blocked in receive().
    std::shared_ptr<mailbox> mb;
    std::deque<py::object> saved;          // guarded by the GIL
    std::atomic<std::uint64_t> stashed{0};  // messages ever set aside (under pull_mu)
    std::timed_mutex pull_mu;

    mailbox& get() {
        if (!mb) throw_error(error{errc::shutdown, "mailbox closed"});
        return *mb;
    }
    // Takes the first saved message that matches. The predicate is Python
    // code (other threads may run and change `saved` meanwhile), so the
    // candidate is looked up again by identity before it is taken.
    std::optional<py::object> take_saved(const std::function<bool(py::handle)>& matches) {
        for (std::size_t i = 0; i < saved.size(); ++i) {
            py::object x = saved[i];
            if (!matches(x)) continue;
            auto it = std::find_if(saved.begin(), saved.end(), [&](const py::object& o) { return o.is(x); });
            if (it == saved.end()) continue;  // another thread took it
            saved.erase(it);
            return x;
        }
        return std::nullopt;
    }
    // Selective receive with several receiving threads: pulling a message
    // from the kith mailbox and setting it aside happen under pull_mu, so a
    // receiver that pulls a message knows every older one is in `saved`.
    py::object receive(std::optional<double> timeout, py::object match) {
        std::function<bool(py::handle)> matches = [&](py::handle x) {
            return match.is_none() || py::bool_(match(x));
        };
        std::uint64_t seen = stashed.load();
        if (auto x = take_saved(matches)) return *x;
        if (!mb) throw_error(error{errc::shutdown, "mailbox closed"});
        std::shared_ptr<mailbox> m = mb;
        std::optional<clock::time_point> deadline;
        if (timeout) deadline = clock::now() + seconds_to_ns(*timeout);
        for (;;) {
            if (stashed.load() != seen) {  // another receiver set messages aside
                seen = stashed.load();
                if (auto x = take_saved(matches)) return *x;
            }
            auto slice = std::chrono::duration_cast<std::chrono::nanoseconds>(kSlice);
            if (deadline) slice = std::min(slice, std::max(std::chrono::nanoseconds(0), *deadline - clock::now()));
            std::optional<result<message>> r;
            std::unique_lock<std::timed_mutex> pulling(pull_mu, std::defer_lock);
            {
                gil_release rel;
                if (pulling.try_lock_for(slice) && stashed.load() == seen) r.emplace(m->receive(slice));
            }
            if (r && r->ok()) {
                py::object x = from_message(**r);
                bool hit = false;
                try {
                    hit = matches(x);
                } catch (...) {  // a raising predicate loses no message
                    saved.push_back(x);
                    ++stashed;
                    throw;
                }
                if (hit) return x;
                saved.push_back(std::move(x));
                seen = ++stashed;
                continue;
            }
            pulling = {};
            if (r && r->code() != errc::timeout) throw_error(r->err());
            if (deadline && clock::now() >= *deadline) throw_error(error{errc::timeout, "receive"});
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            if (!mb) throw_error(error{errc::shutdown, "mailbox closed"});
        }
    }
    void close() {
        saved.clear();
        mb.reset();
    }
};

// --- discovery options ---------------------------------------------------------
// {"beacon_port": 4371, "interval": 1.0, "interface": "", "broadcast_address": "",
//  "peers": [], "announce": True, "auto_connect": True, "max_beacons_per_s": 500}
discovery_options discovery_options_from(const py::dict& d) {
    discovery_options o;
    for (auto [k, v] : d) {
        auto key = py::cast<std::string>(k);
        if (key == "beacon_port") {
            auto p = v.cast<long long>();
            if (p < 1 || p > 65535) throw_error(error{errc::badarg, "beacon_port must be 1..65535"});
            o.port = static_cast<std::uint16_t>(p);
        } else if (key == "interval") {
            auto ns = seconds_to_ns(v.cast<double>());
            if (ns < 10ms) throw_error(error{errc::badarg, "discovery interval must be at least 0.01 s"});
            o.interval = std::chrono::duration_cast<std::chrono::milliseconds>(ns);
        } else if (key == "interface") o.interface = v.cast<std::string>();
        else if (key == "broadcast_address") o.broadcast_address = v.cast<std::string>();
        else if (key == "peers") {
            if (py::isinstance<py::str>(v)) throw py::type_error("peers is a list of 'host:port' strings");
            o.peers = v.cast<std::vector<std::string>>();
        } else if (key == "announce") o.announce = v.cast<bool>();
        else if (key == "auto_connect") o.auto_connect = v.cast<bool>();
        else if (key == "max_beacons_per_s") o.max_beacons_per_s = v.cast<unsigned>();
        else
            throw py::value_error("unknown discovery option '" + key +
                                  "' (beacon_port, interval, interface, broadcast_address, peers, announce, "
                                  "auto_connect, max_beacons_per_s)");
    }
    return o;
}

py::dict seen_to_py(const seen_node& s) {
    py::dict d(from_term(s.to_term()));
    d["key"] = s.key.z85();
    d["age"] = std::chrono::duration<double>(clock::now() - s.last_seen).count();
    return d;
}

// --- node --------------------------------------------------------------------
class py_node;
std::mutex g_nodes_mu;
std::set<py_node*> g_nodes;

class py_node {
public:
    py_node(const std::string& name, const std::string& listen, const std::string& advertise,
            const std::string& key_dir, std::optional<std::string> cookie, unsigned workers,
            double heartbeat_interval, double heartbeat_timeout, bool hidden, std::size_t max_queue_bytes,
            const std::vector<std::string>& builtin, std::optional<py::dict> disc) {
        node_options o;
        o.name = name;
        o.workers = workers;
        o.net.listen = listen;
        o.net.advertise = advertise;
        o.net.key_dir = key_dir;
        o.net.cookie = std::move(cookie);
        o.net.hidden = hidden;
        if (max_queue_bytes) o.net.max_queue_bytes = max_queue_bytes;
        o.net.heartbeat_interval = std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_ns(heartbeat_interval));
        o.net.heartbeat_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_ns(heartbeat_timeout));
        if (!valid_node_name(name)) throw_error(error{errc::badarg, "invalid node name '" + name + "': use name@host"});
        std::optional<discovery_options> dopts;
        if (disc) {
            if (listen.empty()) throw_error(error{errc::badarg, "discovery needs a listening node (port= or listen=)"});
            dopts = discovery_options_from(*disc);
        }
        {
            gil_release rel;
            n_ = std::make_unique<node>(o);
        }
        for (auto& s : builtin) {
            if (s == "kvs") n_->add_service(services::make_kvs());
            else if (s == "echo") n_->add_service(services::make_echo());
            else if (s == "demo") n_->add_service(services::make_demo(*n_));
            else throw_error(error{errc::badarg, "unknown built-in service '" + s + "' (kvs, echo, demo)"});
        }
        if (dopts) {
            gil_release rel;
            try {
                d_ = std::make_unique<discovery>(*n_, *dopts);
            } catch (...) {  // e.g. the beacon port cannot be bound: no half-started node
                n_->stop();
                throw;
            }
        }
        std::lock_guard lk(g_nodes_mu);
        g_nodes.insert(this);
    }
    ~py_node() {
        {
            std::lock_guard lk(g_nodes_mu);
            g_nodes.erase(this);
        }
        auto teardown = [this] {
            d_.reset();  // before its node
            n_.reset();
        };
        if (PyGILState_Check()) {
            gil_release rel;
            teardown();
        } else {
            teardown();
        }
    }

    node& get() {
        if (stopped_) throw_error(error{errc::shutdown, "node " + n_->name() + " is stopped"});
        return *n_;
    }
    node& raw() { return *n_; }
    bool stopped() const { return stopped_.load(); }
    // Stops with the GIL released (workers may be waiting for it).
    void stop() {
        if (t_in_handler)
            throw_error(error{errc::badarg, "a node cannot be stopped from its own actors or service functions"});
        if (stopped_.exchange(true)) return;
        auto halt = [this] {
            if (d_) d_->stop();  // its "leaving" beacon goes out while the node still runs
            n_->stop();
        };
        if (PyGILState_Check()) {
            gil_release rel;
            halt();
        } else {
            halt();
        }
    }
    bool has_discovery() const { return d_ != nullptr; }
    discovery& disc() {
        get();
        if (!d_)
            throw_error(error{errc::badarg, "discovery is off for node " + n_->name() +
                                                " (start it with Node(..., discovery=True) or options)"});
        return *d_;
    }

    void add_service(const std::string& name, py::dict functions, py::dict types) {
        service s(name);
        for (auto [k, v] : functions) {
            auto f = hold(py::reinterpret_borrow<py::object>(v));
            s.raw(k.cast<std::string>(), [f](const term& args, reply_to reply) {
                handler_scope in_handler;
                std::optional<py::gil_scoped_acquire> gil;
                if (!enter_python([&] { gil.emplace(); })) return reply.fail(errc::shutdown, "python is exiting");
                try {
                    reply(result<term>(to_term(f->get()(from_term(args.is_nil() ? term(term_array{}) : args)))));
                } catch (py::error_already_set& e) {
                    reply(result<term>(error_from(e)));
                } catch (py::builtin_exception& e) {  // e.g. TypeError from converting the result
                    e.set_error();
                    py::error_already_set pe;
                    reply(result<term>(error_from(pe)));
                } catch (const std::exception& e) {
                    reply.fail(errc::exception, e.what());
                }
            });
        }
        for (auto [k, v] : types) {
            auto f = hold(py::reinterpret_borrow<py::object>(v));
            s.raw_actor_type(k.cast<std::string>(), [f](const term& args) -> result<std::pair<actor_init, behavior>> {
                handler_scope in_handler;
                std::optional<py::gil_scoped_acquire> gil;
                if (!enter_python([&] { gil.emplace(); })) return error{errc::shutdown, "python is exiting"};
                try {
                    py::tuple pr = f->get()(from_term(args.is_nil() ? term(term_array{}) : args));
                    return make_spawnable(pr[0], pr[1]);
                } catch (py::error_already_set& e) {
                    return error_from(e);
                } catch (const std::exception& e) {
                    return error{errc::exception, e.what()};
                }
            });
        }
        get().add_service(std::move(s));
    }

    std::unique_ptr<node> n_;
    std::unique_ptr<discovery> d_;  // destroyed before n_
    std::atomic<bool> stopped_{false};
};

void stop_all_nodes() {
    std::vector<py_node*> all;
    {
        std::lock_guard lk(g_nodes_mu);
        all.assign(g_nodes.begin(), g_nodes.end());
    }
    for (auto* n : all) n->stop();
}

}  // namespace
}  // namespace kith::python

using namespace kith;
using namespace kith::python;

PYBIND11_MODULE(_kith, m) {
    m.doc() = "kith's compiled core; use the `kith` package (kith/__init__.py).";
    register_values(m);
    register_grants(m);

    m.def("_shutdown", [] {
        stop_all_nodes();
        python_exiting();
    }, "Stops every running node and forbids kith threads to enter Python (the atexit hook).");
    m.def("current_principal", [] {
        const principal& p = current_principal();
        py::dict d;
        d["kind"] = std::string(to_string(p.what));
        d["node"] = p.node;
        d["label"] = p.label;
        d["fingerprint"] = p.what == principal::kind::local ? std::string() : p.key.fingerprint();
        return d;
    }, "Who the calling code acts for: {kind: local|member|grant|stranger|server, node, label, fingerprint}.");
    m.def("_to_term_roundtrip", [](py::handle x) { return from_term(to_term(x)); },
          "Converts a value as sending would, and back (for tests).");
    m.def("_encode", [](py::handle x) { return py::bytes(encode(to_term(x))); }, "The msgpack bytes of a value.");
    m.def("_decode", [](py::bytes b) {
        auto r = decode(std::string(b));
        return from_term(value_or_raise(std::move(r)));
    }, "Decodes msgpack bytes (bounded as network input).");

    py::class_<actor_ctx>(m, "Actor", "The context of a running Python actor (valid only inside its handler).")
        .def_property_readonly("self", [](actor_ctx& c) { return c.self().self(); }, "This actor's pid.")
        .def_property_readonly("node", [](actor_ctx& c) { return c.self().node_name(); })
        .def("send", [](actor_ctx& c, py::handle to, py::handle msg) { send_to(c.self(), to, msg); },
             py::arg("to"), py::arg("msg"), "Sends msg to a Pid, a registered name or a (name, node) pair.")
        .def("reply", [](actor_ctx& c, const request_msg& r, py::handle value) {
            c.self().reply(reply_handle(r.sender, r.tag), to_term(value));
        }, py::arg("request"), py::arg("value"), "Answers a Request.")
        .def("reply_error", [](actor_ctx& c, const request_msg& r, const std::string& code, const std::string& detail) {
            auto e = errc_from_string(code);
            if (!e) throw py::value_error("unknown error code '" + code + "'");
            c.self().reply(reply_handle(r.sender, r.tag), result<term>(error{*e, detail}));
        }, py::arg("request"), py::arg("code"), py::arg("detail") = "")
        .def("quit", [](actor_ctx& c, py::handle reason) { c.self().quit(to_term(reason)); },
             py::arg("reason") = "normal", "Ends this actor after the handler returns.")
        .def("link", [](actor_ctx& c, const pid& p) { c.self().link(p); })
        .def("unlink", [](actor_ctx& c, const pid& p) { c.self().unlink(p); })
        .def("monitor", [](actor_ctx& c, const pid& p) { return c.self().monitor(p); })
        .def("demonitor", [](actor_ctx& c, const ref& r) { return c.self().demonitor(r); })
        .def("trap_exit", [](actor_ctx& c, bool on) { c.self().trap_exit(on); }, py::arg("on") = true)
        .def("exit", [](actor_ctx& c, const pid& p, py::handle reason) { c.self().send_exit(p, to_term(reason)); },
             py::arg("pid"), py::arg("reason"), "Sends an exit signal (Erlang exit/2).")
        .def("register", [](actor_ctx& c, const std::string& name) { ok_or_raise(c.self().register_name(name)); })
        .def("whereis", [](actor_ctx& c, const std::string& name) { return c.self().whereis(name); })
        .def("send_after", [](actor_ctx& c, double seconds, py::handle to, py::handle msg) {
            return c.self().send_after(seconds_to_ns(seconds), to.cast<pid>(), to_term(msg));
        }, py::arg("seconds"), py::arg("to"), py::arg("msg"))
        .def("cancel_timer", [](actor_ctx& c, const ref& r) { return c.self().cancel_timer(r); })
        .def("_spawn", [](actor_ctx& c, py::object init, py::object handler, bool link, bool monitor) -> py::object {
            ref r;
            pid p = spawn_py(c.self(), std::move(init), std::move(handler), link, monitor ? &r : nullptr);
            if (monitor) return py::make_tuple(p, r);
            return py::cast(p);
        });

    py::class_<py_mailbox>(m, "Mailbox", "A pid for a plain thread: receive with a timeout, selective receive, "
                                         "blocking calls. Always traps exits (EXIT arrives as an Exit message).")
        .def_property_readonly("self", [](py_mailbox& b) { return b.get().self(); })
        .def("receive", &py_mailbox::receive, py::arg("timeout") = py::none(), py::arg("match") = py::none(),
             "Returns the first message (for which match(msg) is true). Raises kith.Timeout after timeout "
             "seconds (None: wait forever); Ctrl-C interrupts.")
        .def("__len__", [](py_mailbox& b) { return b.saved.size() + b.get().size(); })
        .def("send", [](py_mailbox& b, py::handle to, py::handle msg) { send_to(b.get(), to, msg); })
        .def("call", [](py_mailbox& b, const pid& to, py::handle msg, double timeout) {
            term t = to_term(msg);
            b.get();
            std::shared_ptr<mailbox> mb = b.mb;  // kept alive across a close() from another thread
            std::optional<result<term>> r;
            {
                gil_release rel;
                r.emplace(mb->call(to, std::move(t), seconds_to_ns(timeout)));
            }
            return from_term(value_or_raise(std::move(*r)));
        }, py::arg("to"), py::arg("msg"), py::arg("timeout") = 5.0, "Sends a request and waits for the reply.")
        .def("reply", [](py_mailbox& b, const request_msg& r, py::handle value) {
            b.get().reply(message(message_kind::request, term{}, r.sender, r.tag), to_term(value));
        })
        .def("link", [](py_mailbox& b, const pid& p) { b.get().link(p); })
        .def("unlink", [](py_mailbox& b, const pid& p) { b.get().unlink(p); })
        .def("monitor", [](py_mailbox& b, const pid& p) { return b.get().monitor(p); })
        .def("demonitor", [](py_mailbox& b, const ref& r) { return b.get().demonitor(r); })
        .def("exit", [](py_mailbox& b, const pid& p, py::handle reason) { b.get().send_exit(p, to_term(reason)); })
        .def("register", [](py_mailbox& b, const std::string& name) { ok_or_raise(b.get().register_name(name)); })
        .def("_spawn", [](py_mailbox& b, py::object init, py::object handler, bool link, bool monitor) -> py::object {
            ref r;
            pid p = spawn_py(b.get(), std::move(init), std::move(handler), link, monitor ? &r : nullptr);
            if (monitor) return py::make_tuple(p, r);
            return py::cast(p);
        })
        .def("close", &py_mailbox::close, "Ends the mailbox's process (reason normal).");

    py::class_<py_node>(m, "_Node")
        .def(py::init<const std::string&, const std::string&, const std::string&, const std::string&,
                      std::optional<std::string>, unsigned, double, double, bool, std::size_t,
                      const std::vector<std::string>&, std::optional<py::dict>>(),
             py::arg("name"), py::arg("listen"), py::arg("advertise"), py::arg("key_dir"), py::arg("cookie"),
             py::arg("workers"), py::arg("heartbeat_interval"), py::arg("heartbeat_timeout"), py::arg("hidden"),
             py::arg("max_queue_bytes"), py::arg("builtin"), py::arg("discovery"))
        .def_property_readonly("name", [](py_node& n) { return n.raw().name(); })
        .def_property_readonly("stopped", &py_node::stopped)
        .def_property_readonly("workers", [](py_node& n) { return n.raw().workers(); })
        .def_property_readonly("endpoint", [](py_node& n) { return n.get().endpoint(); })
        .def_property_readonly("key", [](py_node& n) { return n.get().key().z85(); })
        .def_property_readonly("fingerprint", [](py_node& n) { return n.get().key().fingerprint(); })
        .def("stop", &py_node::stop)
        .def("mailbox", [](py_node& n) {
            auto b = std::make_unique<py_mailbox>();
            b->mb = std::make_shared<mailbox>(n.get());
            return b;
        })
        .def("send", [](py_node& n, py::handle to, py::handle msg) { send_to(n.get(), to, msg); })
        .def("exit", [](py_node& n, const pid& p, py::handle reason) { n.get().send_exit(p, to_term(reason)); })
        .def("reply", [](py_node& n, const request_msg& r, py::handle value) {
            n.get().reply(reply_handle(r.sender, r.tag), to_term(value));
        })
        .def("register", [](py_node& n, const std::string& name, const pid& who) {
            ok_or_raise(n.get().register_name(name, who));
        })
        .def("unregister", [](py_node& n, const std::string& name) { ok_or_raise(n.get().unregister_name(name)); })
        .def("whereis", [](py_node& n, const std::string& name) { return n.get().whereis(name); })
        .def("alive", [](py_node& n, const pid& p) { return n.get().alive(p); })
        .def("services", [](py_node& n) { return n.get().services(); })
        .def("_spawn", [](py_node& n, py::object init, py::object handler) {
            auto [i, b] = make_spawnable(std::move(init), std::move(handler));
            return i ? n.get().spawn(std::move(i)) : n.get().spawn(std::move(b));
        })
        .def("_add_service", &py_node::add_service)
        .def("_monitor_nodes", [](py_node& n, const pid& who, bool on) { n.get().monitor_nodes(who, on); })
        .def("_monitor_node", [](py_node& n, const std::string& node_name, const pid& who) {
            n.get().monitor_node(node_name, who);
        })
        .def("call", [](py_node& n, const std::string& to, const std::string& svc, const std::string& fn,
                        py::list args, double timeout) {
            term a = to_term(args);
            node& nd = n.get();
            auto r = wait_async<term>(
                [&](auto done) { nd.call_async(to, svc, fn, std::move(a), seconds_to_ns(timeout), done); },
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
            if (watcher) {
                pid w = watcher->get().self();
                std::optional<result<std::pair<pid, ref>>> r;
                {
                    gil_release rel;
                    r.emplace(nd.spawn_monitor(w, to, svc, type, std::move(a), d));
                }
                auto pr = value_or_raise(std::move(*r));
                return py::make_tuple(pr.first, pr.second);
            }
            std::optional<result<pid>> r;
            {
                gil_release rel;
                if (linker) r.emplace(nd.spawn_link(linker->get().self(), to, svc, type, std::move(a), d));
                else r.emplace(nd.spawn(to, svc, type, std::move(a), d));
            }
            return py::cast(value_or_raise(std::move(*r)));
        })
        .def("ping", [](py_node& n, const std::string& to, double timeout) {
            node& nd = n.get();
            gil_release rel;
            return nd.ping(to, seconds_to_ns(timeout));
        }, py::arg("node"), py::arg("timeout") = 1.0)
        .def("nodes", [](py_node& n) { return n.get().nodes(); })
        .def("_info", [](py_node& n, const std::string& name) -> py::object {
            auto i = n.get().info(name);
            if (!i) return py::none();
            return from_term(i->to_term());
        })
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
            // Blocking (kith has no asynchronous form of it), bounded by
            // `timeout` per endpoint tried, with the GIL released.
            std::optional<result<std::string>> r;
            {
                gil_release rel;
                r.emplace(nd.connect(g, seconds_to_ns(timeout)));
            }
            if (PyErr_CheckSignals() != 0) throw py::error_already_set();
            return value_or_raise(std::move(*r));
        }, py::arg("grant"), py::arg("timeout") = 5.0)
        .def("grant", [](py_node& n, const std::string& label, py::handle allow, py::handle rate,
                         std::optional<double> expires) {
            grant_spec spec;
            spec.label = label;
            spec.allow = scope_from(allow);
            if (!rate.is_none()) spec.rate = rate_from(rate);
            spec.expires = expiry_from(expires);
            node& nd = n.get();
            std::optional<result<grant_file>> r;
            {
                gil_release rel;  // writes the table to disk
                r.emplace(nd.grant(spec));
            }
            return value_or_raise(std::move(*r));
        }, py::arg("label"), py::arg("allow"), py::arg("rate"), py::arg("expires"))
        .def("grants", [](py_node& n) {
            py::list out;
            for (auto& g : n.get().grants()) out.append(from_term(g.to_term()));
            return out;
        })
        .def("revoke_grant", [](py_node& n, const std::string& label) {
            node& nd = n.get();
            result<void> r;
            {
                gil_release rel;
                r = nd.revoke_grant(label);
            }
            ok_or_raise(r);
        }, py::arg("label"))
        .def("set_grant_rate", [](py_node& n, const std::string& label, py::handle rate) {
            auto rl = rate_from(rate);
            node& nd = n.get();
            result<void> r;
            {
                gil_release rel;
                r = nd.set_grant_rate(label, rl);
            }
            ok_or_raise(r);
        }, py::arg("label"), py::arg("rate"))
        .def("set_public", [](py_node& n, const std::string& svc, bool on, py::handle rate) {
            ok_or_raise(n.get().set_public(svc, on, rate.is_none() ? rate_limit{} : rate_from(rate)));
        }, py::arg("service"), py::arg("on") = true, py::arg("rate") = py::none())
        .def("public_services", [](py_node& n) { return n.get().public_services(); })
        .def_property_readonly("discovery", &py_node::has_discovery)
        .def("seen", [](py_node& n) {
            auto& d = n.disc();
            std::vector<seen_node> all;
            {
                gil_release rel;
                all = d.seen();
            }
            py::list out;
            for (auto& s : all) out.append(seen_to_py(s));
            return out;
        })
        .def("find", [](py_node& n, const std::string& name, double timeout) {
            auto& d = n.disc();
            auto deadline = clock::now() + seconds_to_ns(timeout);
            // In slices, so that Ctrl-C interrupts a long wait; each slice
            // queries again (nodes already there answer at once).
            for (;;) {
                auto left = std::max(clock::duration::zero(), deadline - clock::now());
                auto slice = std::min<std::chrono::nanoseconds>(left, 250ms);
                std::optional<result<seen_node>> r;
                {
                    gil_release rel;
                    r.emplace(d.find(name, slice));
                }
                if (r->ok()) return seen_to_py(**r);
                if (r->code() != errc::timeout || clock::now() >= deadline) throw_error(r->err());
                if (PyErr_CheckSignals() != 0) throw py::error_already_set();
                if (n.stopped()) throw_error(error{errc::shutdown, "node stopped"});
            }
        }, py::arg("name"), py::arg("timeout") = 1.0)
        .def("_discovery_stats", [](py_node& n) {
            auto c = n.disc().stats();
            py::dict d;
            d["beacons_sent"] = c.beacons_sent;
            d["beacons_received"] = c.beacons_received;
            d["bad_hmac"] = c.bad_hmac;
            d["malformed"] = c.malformed;
            d["rate_limited"] = c.rate_limited;
            d["key_conflicts"] = c.key_conflicts;
            d["spoofed_leaves"] = c.spoofed_leaves;
            d["queries_answered"] = c.queries_answered;
            d["replayed"] = c.replayed;
            d["connect_failures"] = c.connect_failures;
            return d;
        })
        .def("_net_stats", [](py_node& n) {
            auto c = n.get().net_stats();
            py::dict d;
            d["envelopes_in"] = c.envelopes_in;
            d["envelopes_out"] = c.envelopes_out;
            d["refused"] = c.refused;
            d["protocol_errors"] = c.protocol_errors;
            d["decode_errors"] = c.decode_errors;
            return d;
        });
}
