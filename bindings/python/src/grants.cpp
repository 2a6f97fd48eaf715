// grants.cpp — grant files (kith.Grant, kith.load_grant, kith.parse_grant)
// and the conversions of grant arguments (scopes, rates, limits, expiry
// times) from Python, and kith._Node's methods that issue, list and revoke
// grants and open public services.
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "kith/grants.hpp"
#include "bind.hpp"

namespace kith::python {

grant_scope scope_from(py::handle allow) {
    if (py::isinstance<py::str>(allow)) {
        auto r = parse_grant_scope(allow.cast<std::string>());
        if (!r) throw_error(r.err());
        return std::move(*r);
    }
    // {"kvs": [], "echo": ["echo"]} or ["kvs", "echo:echo"]: checked by the
    // same parser as the text form, so the rules and messages are one.
    std::string text;
    auto add = [&](const std::string& item) {
        if (!text.empty()) text += ",";
        text += item;
    };
    if (py::isinstance<py::dict>(allow)) {
        for (auto [k, v] : allow.cast<py::dict>()) {
            auto svc = py::cast<std::string>(k);
            if (v.is_none() || py::len(v) == 0) add(svc);
            else
                for (auto name : v) add(svc + ":" + py::cast<std::string>(name));
        }
    } else if (py::isinstance<py::list>(allow) || py::isinstance<py::tuple>(allow) ||
               py::isinstance<py::set>(allow) || py::isinstance<py::frozenset>(allow)) {
        for (auto item : allow) add(py::cast<std::string>(item));
    } else {
        throw py::type_error(
            "allow is \"kvs,echo:echo\", a list of such items, or a dict {service: [names]} ([] = all of it)");
    }
    auto r = parse_grant_scope(text);
    if (!r) throw_error(r.err());
    return std::move(*r);
}

rate_limit rate_from(py::handle rate) {
    // Numbers are spelled as text and go through kith's own parser, so that
    // the rules (positive rate, burst at least 1, default burst) are one.
    auto number = [](py::handle x) -> std::string {
        if (py::isinstance<py::bool_>(x) || !(py::isinstance<py::int_>(x) || py::isinstance<py::float_>(x)))
            throw py::type_error("rate is \"10/s\", \"10/s,burst=20\", \"unlimited\", a number per second or "
                                 "a (per_second, burst) pair");
        return py::str(x).cast<std::string>();
    };
    std::string text;
    if (py::isinstance<py::str>(rate)) text = rate.cast<std::string>();
    else if ((py::isinstance<py::tuple>(rate) || py::isinstance<py::list>(rate)) && py::len(rate) == 2) {
        auto t = rate.cast<py::sequence>();
        text = number(t[0]) + "/s,burst=" + number(t[1]);
    } else
        text = number(rate) + "/s";
    auto r = rate_limit::parse(text);
    if (!r) throw_error(r.err());
    return *r;
}

// "pending=8,spawned=4" or {"pending": 8, "spawned": 4}: spelled as text
// and checked by kith's own parser, so the names, bounds and messages are
// one (a bad limit is BadArg naming it and its bounds).
grant_limits limits_from(py::handle limits) {
    std::string text;
    if (py::isinstance<py::str>(limits)) {
        text = limits.cast<std::string>();
    } else if (py::isinstance<py::dict>(limits)) {
        for (auto [k, v] : limits.cast<py::dict>()) {
            if (!py::isinstance<py::str>(k))
                throw py::type_error("limits: the keys are the limits' names (pending, spawned, queued, relations)");
            auto name = k.cast<std::string>();
            if (py::isinstance<py::bool_>(v) || !py::isinstance<py::int_>(v))
                throw py::type_error("limits: " + name + " must be a whole number, got " +
                                     py::repr(v).cast<std::string>());
            text += (text.empty() ? "" : ",") + name + "=" + py::str(v).cast<std::string>();
        }
        if (text.empty()) text = "default";
    } else {
        throw py::type_error("limits is \"pending=8,spawned=4\" or a dict {\"pending\": 8, \"spawned\": 4} "
                             "(pending, spawned, queued, relations), or None for the defaults");
    }
    auto r = grant_limits::parse(text);
    if (!r) throw_error(r.err());
    return *r;
}

std::optional<std::chrono::system_clock::time_point> expiry_from(std::optional<double> unix_seconds) {
    if (!unix_seconds) return std::nullopt;
    if (!std::isfinite(*unix_seconds)) throw_error(error{errc::badarg, "expires must be a finite time"});
    return std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
        std::chrono::duration<double>(*unix_seconds)));
}

namespace {

py::object expiry_to_py(const std::optional<std::chrono::system_clock::time_point>& t) {
    if (!t) return py::none();
    return py::float_(std::chrono::duration<double>(t->time_since_epoch()).count());
}

py::dict scope_to_py(const grant_scope& s) {
    py::dict d;
    for (auto& [svc, names] : s) d[py::str(svc)] = py::cast(names);
    return d;
}

grant_file value_or_raise_grant(result<grant_file> r) {
    if (!r) throw_error(r.err());
    return std::move(*r);
}

}  // namespace

void register_grants(py::module_& m) {
    py::class_<grant_file>(m, "Grant",
                           "A grant file: what a node's owner hands to a friend so that the friend's node may use "
                           "exactly the granted services, nothing more. It contains a secret key: save() writes it "
                           "with mode 0600; hand it over privately.")
        .def_readonly("version", &grant_file::version)
        .def_readonly("node", &grant_file::node, "The granting node's name, 'alice@pi1'.")
        .def_readonly("endpoints", &grant_file::endpoints, "Where to dial the granting node.")
        .def_property_readonly("server_key", [](const grant_file& g) { return g.server_key.z85(); },
                               "The granting node's public key (Z85).")
        .def_property_readonly("fingerprint", [](const grant_file& g) { return g.client.pub.fingerprint(); },
                               "Fingerprint of the grant's own public key (as node.grants() lists it).")
        .def_readonly("label", &grant_file::label)
        .def_property_readonly("allow", [](const grant_file& g) { return scope_to_py(g.allow); },
                               "{service: [names]} ([] = the whole service). For information: the granting node "
                               "enforces its own table.")
        .def_property_readonly("scope", [](const grant_file& g) { return format_grant_scope(g.allow); },
                               "The scope as text, 'echo:echo,kvs'.")
        .def_property_readonly("rate", [](const grant_file& g) { return g.rate.to_string(); })
        .def_property_readonly("limits", [](const grant_file& g) { return g.limits.to_string(); },
                               "What the grant's key may hold on the node at once when the file was issued: "
                               "'pending=8,spawned=4' (only those set) or 'default'. The owner may change them "
                               "later; a refusal names the limit in force.")
        .def_property_readonly("limits_in_force", [](const grant_file& g) {
            py::dict d;
            d["pending"] = g.limits.max_pending();
            d["spawned"] = g.limits.max_spawned();
            d["queued"] = g.limits.max_queued_bytes();
            d["relations"] = g.limits.max_relations();
            return d;
        }, "Each limit as issued, the default filled in: {'pending': 64, 'spawned': 256, ...}.")
        .def_property_readonly("_expires_ts", [](const grant_file& g) { return expiry_to_py(g.expires); })
        .def("to_text", &grant_file::to_text, "The file's text (contains the grant's secret key).")
        .def("save", [](const grant_file& g, const py::object& path) {
            std::filesystem::path p = py::str(path).cast<std::string>();
            result<void> r;
            {
                gil_release rel;
                r = g.save(p);
            }
            if (!r) throw_error(r.err());
        }, py::arg("path"), "Writes the file atomically with mode 0600 (BadArg with the OS error).")
        .def("__repr__", [](const grant_file& g) {
            return "<kith.Grant " + g.label + " for " + g.node + ": " + format_grant_scope(g.allow) + " at " +
                   g.rate.to_string() + ">";
        });

    m.def("load_grant", [](const py::object& path) {
        std::filesystem::path p = py::str(path).cast<std::string>();
        return value_or_raise_grant(grant_file::load(p));
    }, py::arg("path"), "Reads a grant file; DecodeError saying what is wrong with it.");
    m.def("parse_grant", [](const std::string& text) { return value_or_raise_grant(grant_file::parse(text)); },
          py::arg("text"), "Parses a grant file's text; DecodeError saying what is wrong with it.");
    m.def("_parse_rate", [](py::handle rate) { return rate_from(rate).to_string(); },
          "Normalizes a rate argument to kith's text form (for tests).");
    m.def("_parse_limits", [](py::handle limits) { return limits_from(limits).to_string(); },
          "Normalizes a limits argument to kith's text form (for tests).");
}

void bind_node_grants(node_class& c) {
    c.def("grant", [](py_node& n, const std::string& label, py::handle allow, py::handle rate,
                      std::optional<double> expires, py::handle limits) {
         grant_spec spec;
         spec.label = label;
         spec.allow = scope_from(allow);
         if (!rate.is_none()) spec.rate = rate_from(rate);
         spec.expires = expiry_from(expires);
         if (!limits.is_none()) spec.limits = limits_from(limits);
         node& nd = n.get();
         std::optional<result<grant_file>> r;
         {
             gil_release rel;  // writes the table to disk
             r.emplace(nd.grant(spec));
         }
         return value_or_raise(std::move(*r));
     }, py::arg("label"), py::arg("allow"), py::arg("rate"), py::arg("expires"), py::arg("limits") = py::none())
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
        .def("set_grant_limits", [](py_node& n, const std::string& label, py::handle limits) {
            grant_limits gl = limits.is_none() ? grant_limits{} : limits_from(limits);
            node& nd = n.get();
            result<void> r;
            {
                gil_release rel;  // writes the table to disk
                r = nd.set_grant_limits(label, gl);
            }
            ok_or_raise(r);
            return gl.to_string();
        }, py::arg("label"), py::arg("limits"))
        .def("set_public", [](py_node& n, const std::string& svc, bool on, py::handle rate) {
            ok_or_raise(n.get().set_public(svc, on, rate.is_none() ? rate_limit{} : rate_from(rate)));
        }, py::arg("service"), py::arg("on") = true, py::arg("rate") = py::none())
        .def("public_services", [](py_node& n) { return n.get().public_services(); });
}

}  // namespace kith::python
