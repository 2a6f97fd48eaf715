// avail.cpp — availability for Python (docs/availability.md): supervisors,
// process groups (kith.PgScope), global names (kith.GlobalNames) and
// failover services (kith.Failover). The friendly layer is kith/_avail.py.
//
// The servers belong to their node (py_node::attach): node.stop() ends them
// before the node; the Python objects hold weak references and raise
// Shutdown afterwards. None of their methods blocks, so they keep the GIL;
// the supervisor calls that wait (start, which_children, stop) release it.
#include <pybind11/stl.h>

#include "bind.hpp"
#include "kith/failover.hpp"
#include "kith/global.hpp"
#include "kith/pg.hpp"
#include "kith/supervisor.hpp"

namespace kith::python {

namespace {

using py_pg = attached_ref<pg_scope>;
using py_global = attached_ref<global_names>;
using py_failover = attached_ref<failover_service>;

std::chrono::milliseconds ms(double seconds) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_ns(seconds));
}

// Runs a Python factory returning (init or None, handler) with the GIL, on
// any thread; nullopt (after `on_error(text)`) if it raised or Python exits.
std::optional<std::pair<actor_init, behavior>> parts_from(const held_ptr& factory,
                                                          const std::function<void(term)>& on_error) {
    std::optional<py::gil_scoped_acquire> gil;
    if (!enter_python([&] { gil.emplace(); })) {
        on_error(term("shutdown"));
        return std::nullopt;
    }
    try {
        py::tuple t = factory->get()().cast<py::tuple>();
        return make_spawnable(t[0], t[1]);
    } catch (py::error_already_set& e) {
        on_error(term(traceback_text(e)));
    } catch (const std::exception& e) {
        on_error(term(std::string("error: ") + e.what()));
    }
    return std::nullopt;
}

// A local child's start: builds the actor from the factory inside the child.
actor_init child_start(held_ptr factory) {
    return [factory](actor& self) -> behavior {
        auto parts = parts_from(factory, [&](term why) { self.quit(std::move(why)); });
        if (!parts) return [](actor&, message&) {};
        if (parts->first) return parts->first(self);
        return std::move(parts->second);
    };
}

restart_kind restart_from(const std::string& s) {
    if (s == "permanent") return restart_kind::permanent;
    if (s == "transient") return restart_kind::transient;
    if (s == "temporary") return restart_kind::temporary;
    throw_error(error{errc::badarg, "restart must be \"permanent\", \"transient\" or \"temporary\", not \"" + s + "\""});
}

sup_strategy strategy_from(const std::string& s) {
    if (s == "one_for_one") return sup_strategy::one_for_one;
    if (s == "one_for_all") return sup_strategy::one_for_all;
    if (s == "rest_for_one") return sup_strategy::rest_for_one;
    throw_error(error{errc::badarg, "strategy must be \"one_for_one\", \"one_for_all\" or \"rest_for_one\", not \"" + s + "\""});
}

// A child dict from kith/_avail.py: id, restart, shutdown, start_timeout and
// either factory (local) or node, service, type, args (remote).
child_spec child_from(const py::dict& d) {
    child_spec c;
    c.id = d["id"].cast<std::string>();
    c.restart = restart_from(d["restart"].cast<std::string>());
    c.shutdown = ms(d["shutdown"].cast<double>());
    c.start_timeout = ms(d["start_timeout"].cast<double>());
    if (d.contains("factory") && !d["factory"].is_none()) {
        c.start = child_start(hold(py::reinterpret_borrow<py::object>(d["factory"])));
    } else {
        remote_child r;
        r.node = d["node"].cast<std::string>();
        r.service = d["service"].cast<std::string>();
        r.type = d["type"].cast<std::string>();
        r.args = to_term(d["args"]);
        c.remote = std::move(r);
    }
    return c;
}

template <class T>
T blocking(const std::shared_ptr<node_core>& core, const std::function<result<T>()>& f) {
    std::optional<result<T>> r;
    {
        gil_release rel;
        (void)core;  // kept alive by the caller's copy
        r.emplace(f());
    }
    return value_or_raise(std::move(*r));
}

}  // namespace

void bind_node_avail(node_class& c) {
    c.def("_pg_scope", [](py_node& n, const std::string& scope) {
         std::shared_ptr<pg_scope> s;
         try {
             s = std::make_shared<pg_scope>(n.get(), scope);
         } catch (const setup_error& e) {
             throw_error(error{errc::badarg, e.what()});
         }
         return attach(n, std::move(s));
     })
        .def("_global_names", [](py_node& n) {
            std::shared_ptr<global_names> g;
            try {
                g = std::make_shared<global_names>(n.get());
            } catch (const setup_error& e) {
                throw_error(error{errc::badarg, e.what()});
            }
            return attach(n, std::move(g));
        })
        .def("_failover", [](py_node& n, const py_global& names, const std::string& name, std::vector<std::string> nodes,
                             py::object factory, double delay, double check_interval, double stop_timeout) {
            failover_spec fs;
            fs.name = name;
            fs.nodes = std::move(nodes);
            fs.delay = ms(delay);
            fs.check_interval = ms(check_interval);
            fs.stop_timeout = ms(stop_timeout);
            held_ptr f = hold(std::move(factory));
            // Runs on the controller (a kith worker): spawns the Python actor.
            fs.start = [f](node& nd) -> pid {
                auto parts = parts_from(f, [](term) {});
                if (!parts) return pid{};
                if (parts->first) return nd.spawn(std::move(parts->first));
                return nd.spawn(std::move(parts->second));
            };
            std::shared_ptr<failover_service> fo;
            auto g = names.get();
            try {
                fo = std::make_shared<failover_service>(n.get(), *g, std::move(fs));
            } catch (const setup_error& e) {
                throw_error(error{errc::badarg, e.what()});
            }
            return attach(n, std::move(fo));
        })
        .def("_start_supervisor", [](py_node& n, const std::string& strategy, int intensity, double period,
                                     double retry_interval, py::list children, double timeout) {
            supervisor_spec spec;
            spec.strategy = strategy_from(strategy);
            if (intensity < 0) throw_error(error{errc::badarg, "intensity must be >= 0"});
            spec.intensity = intensity;
            spec.period = ms(period);
            spec.retry_interval = ms(retry_interval);
            for (auto ch : children) spec.children.push_back(child_from(ch.cast<py::dict>()));
            node& nd = n.get();
            return blocking<pid>(n.core(), [&] { return start_supervisor(nd, std::move(spec), ms(timeout)); });
        })
        .def("_which_children", [](py_node& n, const pid& sup, double timeout) {
            node& nd = n.get();
            auto v = blocking<std::vector<child_info>>(n.core(), [&] { return which_children(nd, sup, ms(timeout)); });
            py::list out;
            for (auto& ci : v) {
                py::dict d;
                d["id"] = ci.id;
                d["pid"] = ci.who.is_null() ? py::none() : py::cast(ci.who);
                d["state"] = ci.state;
                d["node"] = ci.node;
                d["restarts"] = ci.restarts;
                out.append(d);
            }
            return out;
        })
        .def("_stop_supervisor", [](py_node& n, const pid& sup, double timeout) {
            node& nd = n.get();
            std::optional<result<void>> r;
            {
                gil_release rel;
                r.emplace(stop_supervisor(nd, sup, ms(timeout)));
            }
            ok_or_raise(*r);
        });
}

void register_avail(py::module_& m) {
    py::class_<py_pg>(m, "_PgScope")
        .def_property_readonly("scope", [](const py_pg& s) { return s.get()->scope(); })
        .def_property_readonly("server", [](const py_pg& s) { return s.get()->server(); })
        .def("join", [](const py_pg& s, const std::string& g, const pid& p) { ok_or_raise(s.get()->join(g, p)); })
        .def("leave", [](const py_pg& s, const std::string& g, const pid& p) { ok_or_raise(s.get()->leave(g, p)); })
        .def("members", [](const py_pg& s, const std::string& g) { return value_or_raise(s.get()->members(g)); })
        .def("local_members",
             [](const py_pg& s, const std::string& g) { return value_or_raise(s.get()->local_members(g)); })
        .def("groups", [](const py_pg& s) { return value_or_raise(s.get()->groups()); })
        .def("send_all", [](const py_pg& s, const std::string& g, py::handle msg) {
            return value_or_raise(s.get()->send_all(g, to_term(msg)));
        })
        .def("monitor", [](const py_pg& s, const pid& who, bool on) {
            return from_term(value_or_raise(s.get()->monitor(who, on)));
        });
    py::class_<py_global>(m, "_GlobalNames")
        .def_property_readonly("server", [](const py_global& g) { return g.get()->server(); })
        .def("register", [](const py_global& g, const std::string& name, const pid& p) {
            ok_or_raise(g.get()->register_name(name, p));
        })
        .def("unregister", [](const py_global& g, const std::string& name) { ok_or_raise(g.get()->unregister_name(name)); })
        .def("whereis", [](const py_global& g, const std::string& name) { return value_or_raise(g.get()->whereis(name)); })
        .def("send", [](const py_global& g, const std::string& name, py::handle msg) {
            ok_or_raise(g.get()->send(name, to_term(msg)));
        })
        .def("registered", [](const py_global& g) {
            py::list out;
            for (auto& e : value_or_raise(g.get()->registered())) out.append(py::make_tuple(e.name, e.who, e.stamp_ms));
            return out;
        });
    py::class_<py_failover>(m, "_Failover")
        .def_property_readonly("running_here", [](const py_failover& f) { return f.get()->running_here(); })
        .def_property_readonly("instance", [](const py_failover& f) -> py::object {
            pid p = f.get()->instance();
            return p.is_null() ? py::none() : py::cast(p);
        });
}

}  // namespace kith::python
