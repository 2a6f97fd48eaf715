// module.cpp — the `kith._kith` extension: PYBIND11_MODULE, the atexit hook,
// and small helpers every binding file uses (bind.hpp lists the files). The
// friendly API (keyword options, decorators, iterators) is the pure-Python
// package kith/; the C++ side is the thin, careful part:
//
//  * blocking waits release the GIL and wake every 50 ms to run
//    PyErr_CheckSignals, so Ctrl-C interrupts them (KeyboardInterrupt);
//  * Python actors and service functions run on kith worker threads with the
//    GIL acquired for the duration of the Python code;
//  * node.stop() and the destructor release the GIL while joining kith's
//    threads (those may be waiting for it), the node's discovery (if any)
//    first, then the node; at interpreter exit an atexit hook stops every
//    node still running and kith's logging, then forbids kith threads and
//    GIL-released Python threads to take the GIL back (enter_python,
//    gil_release in kith_py.hpp: never py::gil_scoped_release here).
#include "kith/platform.hpp"
#include "bind.hpp"
#include "kith/principal.hpp"

namespace kith::python {

std::chrono::nanoseconds seconds_to_ns(double s) {
    if (!(s >= 0)) throw py::value_error("timeout must be a number of seconds >= 0");
    if (s > 1e9) s = 1e9;
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(s));
}

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

}  // namespace kith::python

using namespace kith;
using namespace kith::python;

PYBIND11_MODULE(_kith, m) {
    m.doc() = "kith's compiled core; use the `kith` package (kith/__init__.py).";
    register_values(m);
    register_grants(m);
    register_log(m);
    register_actors(m);
    register_mailbox(m);
    register_node(m);
    register_avail(m);
    register_rkvs(m);
    register_relay(m);

    m.def("_shutdown", [] {
        stop_all_nodes();
        stop_logging();
        python_exiting();
    }, "Stops every running node and kith's logging, and forbids kith threads to enter Python (the atexit hook).");
    m.def("current_principal", [] {
        const principal& p = current_principal();
        py::dict d;
        d["kind"] = std::string(to_string(p.what));
        d["node"] = p.node;
        d["label"] = p.label;
        d["fingerprint"] = p.what == principal::kind::local ? std::string() : p.key.fingerprint();
        return d;
    }, "Who the calling code acts for: {kind: local|member|grant|stranger|server, node, label, fingerprint}.");
    m.def("_error", [](const std::string& code, const std::string& detail) {
        auto c = errc_from_string(code);
        return error_object(error{c ? *c : errc::exception, detail});
    }, "The kith.Error subclass instance for an error code's name and detail (as kith raises it).");
    m.def("_endpoint", [](const std::string& what, const std::string& text, const std::string& use, bool tcp) {
        using platform::endpoint_use;
        const endpoint_use u = use == "listen" ? endpoint_use::listen
                               : use == "dial" ? endpoint_use::dial
                                               : endpoint_use::dial_port_optional;
        auto e = platform::parse_tcp_endpoint(text, u);
        if (!e) throw_error(error{errc::badarg, what + " " + e.err().detail});
        return tcp ? e->zmq() : e->host_port();
    }, "An endpoint as the command line takes it (platform::parse_tcp_endpoint): HOST:PORT is tcp://HOST:PORT; "
       "use: listen, dial or dial_port_optional; 'tcp://HOST:PORT' if tcp else 'HOST:PORT'. BadArg naming `what`.");
    m.def("_to_term_roundtrip", [](py::handle x) { return from_term(to_term(x)); },
          "Converts a value as sending would, and back (for tests).");
    m.def("_encode", [](py::handle x) { return py::bytes(encode(to_term(x))); }, "The msgpack bytes of a value.");
    m.def("_decode", [](py::bytes b) {
        auto r = decode(std::string(b));
        return from_term(value_or_raise(std::move(r)));
    }, "Decodes msgpack bytes (bounded as network input).");
}
