// rkvs.cpp — the replicated kvs for Python (kith/rkvs.hpp): Node._rkvs
// makes one, kith.Rkvs (kith/_rkvs.py) is the friendly layer.
//
// The replica belongs to its node (py_node::attach, in a slot): node.stop()
// destroys it before the node; Rkvs.stop() destroys it earlier (its service
// then answers errc::shutdown: kith cannot remove a service). The Python
// object holds a weak reference and raises Shutdown once either happened.
#include <pybind11/stl.h>

#include "bind.hpp"
#include "kith/rkvs.hpp"

namespace kith::python {

namespace {

struct rkvs_slot {
    std::mutex mu;
    std::unique_ptr<replicated_kvs> kv;  // under mu; null once stopped
};

struct py_rkvs {
    std::weak_ptr<rkvs_slot> w;
    std::shared_ptr<node_core> core;  // the node's memory outlives our last use
    // Runs f on the replica under the slot's lock; Shutdown if stopped.
    template <class F>
    auto with(F&& f) const {
        auto s = w.lock();
        if (!s) throw_error(error{errc::shutdown, "the replicated kvs is stopped: its node is stopped"});
        std::lock_guard lk(s->mu);
        if (!s->kv) throw_error(error{errc::shutdown, "the replicated kvs is stopped (Rkvs.stop())"});
        return f(*s->kv);
    }
};

std::chrono::milliseconds ms(double seconds) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(seconds_to_ns(seconds));
}

}  // namespace

void bind_node_rkvs(node_class& c) {
    c.def("_rkvs", [](py_node& n, std::vector<std::string> replicas, const std::string& service,
                      std::size_t write_quorum, double ack_timeout, double read_timeout, double sync_interval) {
        rkvs_options o;
        o.replicas = std::move(replicas);
        o.service = service;
        o.write_quorum = write_quorum;
        o.ack_timeout = ms(ack_timeout);
        o.read_timeout = ms(read_timeout);
        o.sync_interval = ms(sync_interval);
        if (o.ack_timeout.count() <= 0 || o.read_timeout.count() <= 0 || o.sync_interval.count() <= 0)
            throw_error(error{errc::badarg, "ack_timeout, read_timeout and sync_interval must be > 0 seconds"});
        auto slot = std::make_shared<rkvs_slot>();
        try {
            slot->kv = std::make_unique<replicated_kvs>(n.get(), std::move(o));
        } catch (const setup_error& e) {
            throw_error(error{errc::badarg, e.what()});
        }
        py_rkvs r{slot, n.core()};
        n.attach(std::move(slot));
        return r;
    });
}

void register_rkvs(py::module_& m) {
    py::class_<py_rkvs>(m, "_Rkvs")
        .def_property_readonly("write_quorum", [](const py_rkvs& r) { return r.with([](auto& kv) { return kv.write_quorum(); }); })
        .def_property_readonly("service", [](const py_rkvs& r) { return r.with([](auto& kv) { return kv.options().service; }); })
        .def_property_readonly("replicas", [](const py_rkvs& r) { return r.with([](auto& kv) { return kv.options().replicas; }); })
        .def_property_readonly("size", [](const py_rkvs& r) { return r.with([](auto& kv) { return kv.size(); }); })
        .def_property_readonly("digest", [](const py_rkvs& r) { return r.with([](auto& kv) { return kv.digest(); }); })
        .def("local", [](const py_rkvs& r, const std::string& key) -> py::object {
            auto e = r.with([&](auto& kv) { return kv.local(key); });
            if (!e || !e->value) return py::none();  // absent, or a tombstone
            return from_term(*e->value);
        })
        .def_property_readonly("stopped", [](const py_rkvs& r) {
            auto s = r.w.lock();
            if (!s) return true;
            std::lock_guard lk(s->mu);
            return !s->kv;
        })
        .def("stop", [](const py_rkvs& r) {
            std::unique_ptr<replicated_kvs> gone;
            if (auto s = r.w.lock()) {
                std::lock_guard lk(s->mu);
                gone = std::move(s->kv);
            }
            gil_release rel;  // destroying it may wait for kith threads, which may need the GIL
            gone.reset();
        });
}

}  // namespace kith::python
