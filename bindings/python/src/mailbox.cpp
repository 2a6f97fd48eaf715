// mailbox.cpp — kith.Mailbox: a pid for a plain Python thread, with receive
// timeouts, selective receive (several receiving threads), blocking calls.
#include <algorithm>

#include "bind.hpp"

namespace kith::python {

// Takes the first saved message that matches. The predicate is Python code
// (other threads may run and change `saved` meanwhile), so the candidate is
// looked up again by identity before it is taken.
std::optional<py::object> py_mailbox::take_saved(const std::function<bool(py::handle)>& matches) {
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
py::object py_mailbox::receive(std::optional<double> timeout, py::object match) {
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

void register_mailbox(py::module_& m) {
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
            auto d = seconds_to_ns(timeout);
            std::optional<result<term>> r;
            {
                gil_release rel;
                r.emplace(mb->call(to, std::move(t), d));
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
}

}  // namespace kith::python
