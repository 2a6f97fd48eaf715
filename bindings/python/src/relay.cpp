// relay.cpp — relays for Python (docs/relay.md; kith/relay.hpp): a node
// serving as a relay (kith._Relay), a node registered at one or dialling
// through one (kith._RelayClient), and the relay routes of a grant
// (Grant.relays, Grant.with_relay). The friendly layer is kith/_relay.py.
//
// Both objects belong to their node (py_node::attach): node.stop() ends them
// before the node; the Python objects hold weak references and raise
// Shutdown afterwards. Calls that block (registering, dialling, the
// directory) release the GIL.
#include <pybind11/stl.h>

#include "bind.hpp"
#include "kith/relay.hpp"

namespace kith::python {

namespace {

using py_relay = attached_ref<relay>;
using py_relay_client = attached_ref<relay_client>;

py::list routes_to_py(const grant_file& g) {
    py::list out;
    for (auto& r : g.relays) {
        py::dict d;
        d["node"] = r.node;
        d["endpoint"] = r.endpoint;
        d["key"] = r.key.z85();
        out.append(d);
    }
    return out;
}

}  // namespace

void register_relay(py::module_& m) {
    py::class_<py_relay>(m, "_Relay")
        .def_property_readonly("endpoint", [](const py_relay& r) { return r.get()->endpoint(); })
        .def("counters", [](const py_relay& r) {
            auto c = r.get()->counters();
            py::dict d;
            d["registrations"] = c.registrations;
            d["sessions"] = c.sessions;
            d["sessions_total"] = c.sessions_total;
            d["refused"] = c.refused;
            d["timed_out"] = c.timed_out;
            d["bytes_forwarded"] = c.bytes_forwarded;
            d["port_pairs"] = c.port_pairs;
            d["kernel_sessions"] = c.kernel_sessions;
            d["user_reads"] = c.user_reads;
            d["kernel_holds"] = c.kernel_holds;
            d["kernel_overflows"] = c.kernel_overflows;
            d["kernel_late_piles"] = c.kernel_late_piles;
            return d;
        })
        .def_property_readonly("forwarding", [](const py_relay& r) { return r.get()->forwarding(); })
        .def("set_grant_limits", [](const py_relay& r, const std::string& label, std::vector<std::string> names,
                                    std::size_t sessions, std::uint64_t bytes_per_s) {
            ok_or_raise(r.get()->set_grant_limits(
                label, {.names = std::move(names), .max_sessions = sessions, .max_bytes_per_s = bytes_per_s}));
        }, py::arg("label"), py::arg("names"), py::arg("sessions"), py::arg("bytes_per_s") = 0);
    py::class_<py_relay_client>(m, "_RelayClient")
        .def("directory", [](const py_relay_client& c, double timeout) {
            auto rc = c.get();
            auto d = std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_ns(timeout));
            std::optional<result<term>> r;
            {
                gil_release rel;
                r.emplace(rc->directory(d));
            }
            return from_term(value_or_raise(std::move(*r)));
        }, py::arg("timeout") = 5.0)
        .def("connect_grant", [](const py_relay_client& c, const grant_file& g, double timeout) {
            auto rc = c.get();
            auto d = std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_ns(timeout));
            std::optional<result<std::string>> r;
            {
                gil_release rel;
                r.emplace(rc->connect(g, d));
            }
            return value_or_raise(std::move(*r));
        }, py::arg("grant"), py::arg("timeout") = 5.0)
        .def("connect_key", [](const py_relay_client& c, const std::string& target, const std::string& key,
                               double timeout) {
            auto k = public_key::from_z85(key);
            if (!k) throw_error(error{errc::badarg, "key must be 40 characters of Z85 (a node's public key)"});
            auto rc = c.get();
            auto d = std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_ns(timeout));
            std::optional<result<std::string>> r;
            {
                gil_release rel;
                r.emplace(rc->connect(target, *k, d));
            }
            return value_or_raise(std::move(*r));
        }, py::arg("target"), py::arg("key"), py::arg("timeout") = 5.0)
        .def("gave_up", [](const py_relay_client& c, const std::string& target) -> std::optional<std::string> {
            auto why = c.get()->gave_up(target);
            if (!why) return std::nullopt;
            return why->message();
        }, py::arg("target"))
        .def("registration_error", [](const py_relay_client& c) -> std::optional<std::string> {
            auto why = c.get()->registration_error();
            if (!why) return std::nullopt;
            return why->message();
        });

    // Grant.relays and Grant.with_relay (the Grant class is grants.cpp's).
    py::object grant_cls = m.attr("Grant");
    grant_cls.attr("relays") = py::module_::import("builtins").attr("property")(
        py::cpp_function([](const grant_file& g) { return routes_to_py(g); }),
        py::none(), py::none(),
        "Relay routes: [{node, endpoint, key}] (tried after the endpoints; docs/relay.md).");
    grant_cls.attr("with_relay") = py::cpp_function(
        [](const grant_file& g, const grant_file& relay_grant) {
            grant_file out = g;
            out.version = 2;  // as to_text() writes a file with relay routes
            for (auto& e : relay_grant.endpoints) {
                grant_file::relay_route r{relay_grant.node, e, relay_grant.server_key};
                if (std::find(out.relays.begin(), out.relays.end(), r) == out.relays.end()) out.relays.push_back(r);
            }
            if (out.relays.size() > 8) throw_error(error{errc::badarg, "a grant carries at most 8 relay routes"});
            return out;
        },
        py::is_method(grant_cls), py::name("with_relay"), py::arg("relay_grant"),
        "A copy of this grant that also names the relay of `relay_grant` (a grant for that relay's service "
        "\"relay\": only its node name, address and key are copied, never its secret).");
}

namespace {

// serve_relay's keyword options beyond the first ones (kith/_relay.py):
// seconds for the deadlines, whole numbers for the counts; BadArg naming an
// unknown one, and relay_options::check's for a value out of its bounds.
void apply_relay_options(relay_options& o, const py::dict& extra) {
    using ms = std::chrono::milliseconds;
    auto seconds = [](const py::handle& v) {
        return std::chrono::duration_cast<ms>(seconds_to_ns(v.cast<double>()));
    };
    for (auto& [k, v] : extra) {
        const std::string key = k.cast<std::string>();
        if (key == "session_port_idle") o.session_port_idle = seconds(v);
        else if (key == "pair_timeout") o.pair_timeout = seconds(v);
        else if (key == "dead_peer_timeout") o.dead_peer_timeout = seconds(v);
        else if (key == "handshake_timeout") o.handshake_timeout = seconds(v);
        else if (key == "token_lifetime") o.token_lifetime = std::chrono::duration_cast<std::chrono::seconds>(seconds(v));
        else if (key == "name_lifetime") o.name_lifetime = std::chrono::duration_cast<std::chrono::hours>(seconds(v));
        else if (key == "max_connections") o.max_connections = v.cast<std::size_t>();
        else if (key == "max_dialler_sessions") o.max_sessions_per_dialler = v.cast<std::size_t>();
        else if (key == "max_tokens") o.max_tokens_per_dialler = v.cast<std::size_t>();
        else if (key == "max_names") o.max_names_per_key = v.cast<std::size_t>();
        else if (key == "session_ports") {
            // True (any free port), False (none: the forwarders), or (MIN, MAX).
            if (py::isinstance<py::bool_>(v)) {
                o.session_ports = v.cast<bool>();
            } else {
                auto r = v.cast<std::pair<int, int>>();
                if (r.first < 1 || r.second > 65535 || r.first > r.second)
                    throw_error(error{errc::badarg, "serve_relay: session_ports wants True, False or (MIN, MAX) with "
                                                    "1 <= MIN <= MAX <= 65535, e.g. (4381, 4480)"});
                o.session_port_min = static_cast<std::uint16_t>(r.first);
                o.session_port_max = static_cast<std::uint16_t>(r.second);
            }
        } else
            throw_error(error{errc::badarg, "serve_relay: no option " + key + " (see help(kith.Node.serve_relay))"});
    }
}

}  // namespace

void bind_node_relay(node_class& c) {
    c.def("serve_relay", [](py_node& n, const std::string& listen, const std::string& advertise,
                            std::size_t max_registrations, std::size_t max_sessions, std::uint64_t bytes_per_s,
                            bool open, const std::string& kernel_forward, const py::dict& extra) {
         relay_options o;
         if (kernel_forward == "auto") o.kernel_forward = relay_options::kernel_mode::automatic;
         else if (kernel_forward == "on") o.kernel_forward = relay_options::kernel_mode::on;
         else if (kernel_forward == "off") o.kernel_forward = relay_options::kernel_mode::off;
         else if (kernel_forward.empty()) o.kernel_forward = relay_options::kernel_mode::standard;
         else throw_error(error{errc::badarg, "serve_relay: kernel_forward is '" + kernel_forward +
                                                  "'; use \"auto\", \"on\" or \"off\""});
         o.listen = listen;
         o.advertise = advertise;
         if (max_registrations) o.max_registrations = max_registrations;
         if (max_sessions) {
             o.max_sessions_per_node = max_sessions;
             o.max_sessions_per_dialler = std::max<std::size_t>(1, max_sessions / 2);
         }
         o.max_bytes_per_s_per_session = bytes_per_s;
         o.strangers_may_register = false;
         apply_relay_options(o, extra);
         ok_or_raise(o.check());
         node& nd = n.get();
         std::shared_ptr<relay> r;
         try {
             r = std::make_shared<relay>(nd, o);
         } catch (const setup_error& e) {
             throw_error(error{errc::badarg, e.what()});
         }
         if (open) ok_or_raise(nd.set_public("relay"));
         return attach(n, std::move(r));
     }, py::arg("listen"), py::arg("advertise") = "", py::arg("max_registrations") = 0, py::arg("max_sessions") = 0,
        py::arg("bytes_per_s") = 0, py::arg("open") = false, py::arg("kernel_forward") = "",
        py::arg("options") = py::dict())
        .def("relay_client", [](py_node& n, const std::string& relay_node, bool do_register, bool listed,
                                double repair_timeout) {
            node& nd = n.get();
            relay_client_options o;
            o.repair_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_ns(repair_timeout));
            ok_or_raise(o.check());  // BadArg naming it
            std::shared_ptr<relay_client> rc;
            std::optional<error> failed;
            {
                gil_release rel;
                try {
                    rc = do_register ? std::make_shared<relay_client>(nd, relay_node, listed, o)
                                     : std::make_shared<relay_client>(nd, relay_node, nullptr, o);
                } catch (const relay_refused& e) {
                    // By the relay's error code, never by its wording.
                    failed = error{e.err().code, e.what()};
                }
            }
            if (failed) throw_error(*failed);
            return attach(n, std::move(rc));
        }, py::arg("relay_node"), py::arg("register") = true, py::arg("listed") = true,
        py::arg("repair_timeout") = 300.0);
}

}  // namespace kith::python
