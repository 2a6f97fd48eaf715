// node.cpp — kith._Node (wrapped by kith.Node in kith/_node.py): starting and
// stopping a node, messages, names, local spawns and services. Calls and
// connections are in rpc.cpp, grants in grants.cpp, discovery in
// discovery.cpp.
//
// Lifetime: the node and its discovery live in a node_core shared by the
// Python object and the registry of running nodes, which the atexit hook
// stops. Whoever stops or destroys it holds its own reference with the GIL
// released, so a Python thread dropping the last reference meanwhile cannot
// free it under a stop in progress.
#include <map>

#include "bind.hpp"
#include "kith/builtin.hpp"

namespace kith::python {
namespace {

// Every node_core whose Python object is alive (weak: the registry owns none).
std::mutex g_nodes_mu;
std::map<node_core*, std::weak_ptr<node_core>> g_nodes;

}  // namespace

void node_core::halt() noexcept {
    std::lock_guard lk(halt_mu);
    stopped = true;
    if (halted) return;
    halted = true;
    while (!attached.empty()) attached.pop_back();  // failovers, then names and scopes
    if (d) d->stop();  // its "leaving" beacon goes out while the node still runs
    if (n) n->stop();
    gate->close();  // completions that run later (on detached threads) find no node
    for (auto& t : logs) close_log_target(t);
}

node_core::~node_core() {
    halt();
    d.reset();  // before its node
    n.reset();
}

py_node::py_node(const std::string& name, const std::string& listen, const std::string& advertise,
                 const std::string& key_dir, std::optional<std::string> cookie, unsigned workers,
                 double heartbeat_interval, double heartbeat_timeout, bool hidden, std::size_t max_queue_bytes,
                 const std::vector<std::string>& builtin, std::optional<py::dict> disc, py::object log,
                 const std::string& member_listen, unsigned guest_workers, int network_cpu,
                 double conns_per_address) {
    node_options o;
    if (conns_per_address >= 0) {  // net_options::conns_per_address_per_s, burst 4x (as kith node)
        o.net.conns_per_address_per_s = conns_per_address;
        o.net.conns_per_address_burst = 4 * conns_per_address;
    }
    o.name = name;
    o.workers = workers;
    o.guest_workers = guest_workers;
    o.net.network_cpu = network_cpu;
    o.net.listen = listen;
    o.net.advertise = advertise;
    o.net.member_listen = member_listen;
    o.net.key_dir = key_dir;
    o.net.cookie = std::move(cookie);
    o.net.hidden = hidden;
    if (max_queue_bytes) o.net.max_queue_bytes = max_queue_bytes;
    o.net.heartbeat_interval = std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_ns(heartbeat_interval));
    o.net.heartbeat_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_ns(heartbeat_timeout));
    if (!valid_node_name(name)) throw_error(error{errc::badarg, "invalid node name '" + name + "': use name@host"});
    auto c = std::make_shared<node_core>();
    // An exception destroys `c` (halting what was started) with the GIL
    // released: its node's threads may be waiting for the GIL.
    struct release_on_throw {
        std::shared_ptr<node_core>& c;
        ~release_on_throw() {
            if (!c) return;
            gil_release rel;
            c.reset();
        }
    } guard{c};
    if (!log.is_none()) {
        c->logs.push_back(make_log_target(std::move(log), "of node " + name));
        o.net.log = sink_of(c->logs.back());
    }
    std::optional<discovery_options> dopts;
    if (disc) {
        if (listen.empty()) throw_error(error{errc::badarg, "discovery needs a listening node (port= or listen=)"});
        dopts = discovery_options_from(*disc, o.net.log, c->logs);
    }
    {
        gil_release rel;
        c->n = std::make_unique<node>(o);
    }
    c->gate->n = c->n.get();  // no completion can be in flight yet
    for (auto& s : builtin) {
        if (s == "kvs") c->n->add_service(services::make_kvs());
        else if (s == "echo") c->n->add_service(services::make_echo());
        else if (s == "demo") c->n->add_service(services::make_demo(*c->n));
        else throw_error(error{errc::badarg, "unknown built-in service '" + s + "' (kvs, echo, demo)"});
    }
    if (dopts) {
        gil_release rel;
        // e.g. the beacon port cannot be bound: `guard` stops the node, so
        // none is left half-started.
        c->d = std::make_unique<discovery>(*c->n, *dopts);
    }
    {
        std::lock_guard lk(g_nodes_mu);
        g_nodes.emplace(c.get(), c);
    }
    c_ = std::move(c);
}

py_node::~py_node() {
    {
        std::lock_guard lk(g_nodes_mu);
        g_nodes.erase(c_.get());
    }
    // The last reference may be here or in a concurrent stop_all_nodes /
    // stop(): whichever drops it tears the node down without the GIL.
    if (PyGILState_Check()) {
        gil_release rel;
        c_.reset();
    } else {
        c_.reset();
    }
}

node& py_node::get() {
    if (c_->stopped) throw_error(error{errc::shutdown, "node " + c_->n->name() + " is stopped"});
    return *c_->n;
}

void py_node::stop() {
    if (t_in_handler)
        throw_error(error{errc::badarg, "a node cannot be stopped from its own actors or service functions"});
    std::shared_ptr<node_core> c = c_;  // ours while the GIL is released
    c->stopped = true;
    if (PyGILState_Check()) {
        gil_release rel;
        c->halt();
    } else {
        c->halt();
    }
}

void py_node::attach(std::shared_ptr<void> obj) {
    get();
    std::lock_guard lk(c_->halt_mu);
    if (c_->halted) throw_error(error{errc::shutdown, "node " + c_->n->name() + " is stopped"});
    c_->attached.push_back(std::move(obj));
}

discovery& py_node::disc() {
    get();
    if (!c_->d)
        throw_error(error{errc::badarg, "discovery is off for node " + c_->n->name() +
                                            " (start it with Node(..., discovery=True) or options)"});
    return *c_->d;
}

void py_node::add_service(const std::string& name, py::dict functions, py::dict types) {
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

void stop_all_nodes() {
    // Strong references taken under the mutex: a node whose Python object is
    // dropped by another thread while this one waits without the GIL stays
    // alive until it is released below.
    std::vector<std::shared_ptr<node_core>> all;
    {
        std::lock_guard lk(g_nodes_mu);
        for (auto& [raw, weak] : g_nodes)
            if (auto c = weak.lock()) all.push_back(std::move(c));
    }
    for (auto& c : all) c->stopped = true;
    gil_release rel;
    for (auto& c : all) c->halt();
    all.clear();  // may be the last references: torn down here, without the GIL
}

void register_node(py::module_& m) {
    node_class c(m, "_Node");
    c.def(py::init<const std::string&, const std::string&, const std::string&, const std::string&,
                   std::optional<std::string>, unsigned, double, double, bool, std::size_t,
                   const std::vector<std::string>&, std::optional<py::dict>, py::object, const std::string&,
                   unsigned, int, double>(),
          py::arg("name"), py::arg("listen"), py::arg("advertise"), py::arg("key_dir"), py::arg("cookie"),
          py::arg("workers"), py::arg("heartbeat_interval"), py::arg("heartbeat_timeout"), py::arg("hidden"),
          py::arg("max_queue_bytes"), py::arg("builtin"), py::arg("discovery"), py::arg("log") = py::none(), py::arg("member_listen") = "",
          py::arg("guest_workers") = 0u, py::arg("network_cpu") = -2, py::arg("conns_per_address") = -1.0)
        .def_property_readonly("name", [](py_node& n) { return n.raw().name(); })
        .def_property_readonly("stopped", &py_node::stopped)
        .def_property_readonly("workers", [](py_node& n) { return n.raw().workers(); })
        .def_property_readonly("endpoint", [](py_node& n) { return n.get().endpoint(); })
        .def_property_readonly("member_endpoint", [](py_node& n) { return n.get().member_endpoint(); })
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
        .def("nodes", [](py_node& n) { return n.get().nodes(); })
        .def("_info", [](py_node& n, const std::string& name) -> py::object {
            auto i = n.get().info(name);
            if (!i) return py::none();
            return from_term(i->to_term());
        })
        .def("_net_stats", [](py_node& n) {
            auto s = n.get().net_stats();
            py::dict d;
            d["envelopes_in"] = s.envelopes_in;
            d["envelopes_out"] = s.envelopes_out;
            d["frames_in"] = s.frames_in;
            d["frames_out"] = s.frames_out;
            d["decode_errors"] = s.decode_errors;
            d["protocol_errors"] = s.protocol_errors;
            d["refused"] = s.refused;
            d["refused_unauthorized"] = s.refused_unauthorized;
            d["refused_revoked"] = s.refused_revoked;
            d["refused_rate_limited"] = s.refused_rate_limited;
            d["refused_overloaded"] = s.refused_overloaded;
            d["overload_drops"] = s.overload_drops;
            d["refused_connections"] = s.refused_connections;
            d["refused_unanswered"] = s.refused_unanswered;
            d["rate_drops"] = s.rate_drops;
            d["paced_waits"] = s.paced_waits;
            d["address_blocks"] = s.address_blocks;
            d["member_moves"] = s.member_moves;
            d["member_moves_failed"] = s.member_moves_failed;
            return d;
        });
    bind_node_rpc(c);
    bind_node_avail(c);
    bind_node_rkvs(c);
    bind_node_relay(c);
    bind_node_grants(c);
    bind_node_discovery(c);
}

}  // namespace kith::python
