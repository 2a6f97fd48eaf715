// discovery.cpp — LAN discovery from Python: the options of
// Node(discovery={...}) (kith::discovery_options) and kith._Node's seen,
// find and _discovery_stats.
#include <algorithm>

#include "bind.hpp"

namespace kith::python {
namespace {

unsigned per_second(py::handle v, const char* what) {
    auto n = v.cast<long long>();
    if (n < 0 || n > 1000000)
        throw_error(error{errc::badarg, std::string(what) + " must be 0..1000000 (per second; 0 drops all)"});
    return static_cast<unsigned>(n);
}

py::dict seen_to_py(const seen_node& s) {
    py::dict d(from_term(s.to_term()));
    d["key"] = s.key.z85();
    d["cluster_id"] = s.cluster_id;
    d["age"] = std::chrono::duration<double>(clock::now() - s.last_seen).count();
    return d;
}

}  // namespace

// {"beacon_port": 4371, "interval": 1.0, "interface": "", "broadcast_address": "",
//  "peers": [], "announce": True, "auto_connect": True, "max_beacons_per_s": 500,
//  "max_stranger_beacons_per_s": 100, "max_answers_per_s": 20, "max_clock_skew": 30.0,
//  "log": callable}
discovery_options discovery_options_from(const py::dict& d, const log_sink& node_log,
                                         std::vector<log_target_ptr>& logs) {
    discovery_options o;
    o.log = node_log;
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
        else if (key == "max_beacons_per_s") o.max_beacons_per_s = per_second(v, "max_beacons_per_s");
        else if (key == "max_stranger_beacons_per_s")
            o.max_stranger_beacons_per_s = per_second(v, "max_stranger_beacons_per_s");
        else if (key == "max_answers_per_s") o.max_answers_per_s = per_second(v, "max_answers_per_s");
        else if (key == "max_clock_skew") {
            auto ns = seconds_to_ns(v.cast<double>());
            if (ns < 1ms) throw_error(error{errc::badarg, "max_clock_skew must be at least 0.001 s"});
            o.max_clock_skew = std::chrono::duration_cast<std::chrono::milliseconds>(ns);
        } else if (key == "log") {
            if (v.is_none()) o.log = node_log;
            else {
                logs.push_back(make_log_target(py::reinterpret_borrow<py::object>(v), "of the discovery"));
                o.log = sink_of(logs.back());
            }
        } else
            throw py::value_error("unknown discovery option '" + key +
                                  "' (beacon_port, interval, interface, broadcast_address, peers, announce, "
                                  "auto_connect, max_beacons_per_s, max_stranger_beacons_per_s, "
                                  "max_answers_per_s, max_clock_skew, log)");
    }
    return o;
}

void bind_node_discovery(node_class& c) {
    c.def_property_readonly("discovery", &py_node::has_discovery)
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
            auto s = n.disc().stats();
            py::dict d;
            d["beacons_sent"] = s.beacons_sent;
            d["beacons_received"] = s.beacons_received;
            d["bad_hmac"] = s.bad_hmac;
            d["malformed"] = s.malformed;
            d["rate_limited"] = s.rate_limited;
            d["key_conflicts"] = s.key_conflicts;
            d["spoofed_leaves"] = s.spoofed_leaves;
            d["queries_answered"] = s.queries_answered;
            d["replayed"] = s.replayed;
            d["duplicates"] = s.duplicates;
            d["stale"] = s.stale;
            d["answers_limited"] = s.answers_limited;
            d["connect_failures"] = s.connect_failures;
            d["dropped_by_kernel"] = s.dropped_by_kernel;
            return d;
        });
}

}  // namespace kith::python
