// convert.cpp — values and errors between Python and kith (see kith_py.hpp).
#include <pybind11/operators.h>

#include <array>
#include <climits>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "kith_py.hpp"

namespace kith::python {

namespace {
std::atomic<bool> g_alive{true};
constexpr std::size_t kMaxDepth = 64;  // the decoder's bound (term.hpp decode_limits)

// Exception classes by errc (index = code value), set by register_values.
std::array<PyObject*, 16> g_error_classes{};
PyObject* g_error_base = nullptr;

term to_term_at(py::handle h, std::size_t depth) {
    if (depth > kMaxDepth) throw py::value_error("value nested too deeply to send (more than 64 levels)");
    if (h.is_none()) return term{};
    if (PyBool_Check(h.ptr())) return term(h.ptr() == Py_True);
    if (PyLong_Check(h.ptr())) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(h.ptr(), &overflow);
        if (!overflow) {
            if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
            return term(v);
        }
        if (overflow > 0) {
            unsigned long long u = PyLong_AsUnsignedLongLong(h.ptr());
            if (!(u == static_cast<unsigned long long>(-1) && PyErr_Occurred())) return term(u);
            PyErr_Clear();
        }
        PyErr_SetString(PyExc_OverflowError,
                        "int out of range for kith: integers must fit in -2**63 .. 2**64-1");
        throw py::error_already_set();
    }
    if (PyFloat_Check(h.ptr())) return term(PyFloat_AS_DOUBLE(h.ptr()));
    if (PyUnicode_Check(h.ptr())) {
        Py_ssize_t n = 0;
        const char* s = PyUnicode_AsUTF8AndSize(h.ptr(), &n);
        if (!s) throw py::error_already_set();
        return term(std::string(s, static_cast<std::size_t>(n)));
    }
    if (PyBytes_Check(h.ptr()))
        return term(binary(PyBytes_AS_STRING(h.ptr()), static_cast<std::size_t>(PyBytes_GET_SIZE(h.ptr()))));
    if (PyByteArray_Check(h.ptr()) || PyMemoryView_Check(h.ptr())) {
        auto b = py::reinterpret_steal<py::object>(PyBytes_FromObject(h.ptr()));
        if (!b) throw py::error_already_set();
        return to_term_at(b, depth);
    }
    if (PyList_Check(h.ptr()) || PyTuple_Check(h.ptr())) {
        term_array a;
        auto seq = py::reinterpret_borrow<py::sequence>(h);
        a.reserve(seq.size());
        for (auto x : seq) a.push_back(to_term_at(x, depth + 1));
        return term(std::move(a));
    }
    if (PyDict_Check(h.ptr())) {
        term_map mp;
        for (auto [k, v] : py::reinterpret_borrow<py::dict>(h))
            mp.emplace_back(to_term_at(k, depth + 1), to_term_at(v, depth + 1));
        return term(std::move(mp));
    }
    if (py::isinstance<pid>(h)) return term(h.cast<pid>());
    if (py::isinstance<ref>(h)) return term(h.cast<ref>());
    std::string type = py::str(py::type::handle_of(h).attr("__qualname__"));
    if (PyCallable_Check(h.ptr()))
        throw py::type_error("functions cannot be sent: " + type +
                             " is code, and only data crosses between nodes (export it in a service instead)");
    throw py::type_error("cannot send a value of type " + type +
                         ": kith sends None, bool, int, float, str, bytes, list, tuple, dict, Pid and Ref");
}

// A dict key from a term: unhashable lists become tuples, maps frozensets.
py::object key_from_term(const term& t) {
    if (auto* a = t.as_array()) {
        py::tuple out(a->size());
        for (std::size_t i = 0; i < a->size(); ++i) out[i] = key_from_term((*a)[i]);
        return out;
    }
    if (auto* mp = t.as_map()) {
        py::list pairs;
        for (auto& [k, v] : *mp) pairs.append(py::make_tuple(key_from_term(k), key_from_term(v)));
        return py::reinterpret_steal<py::object>(PyFrozenSet_New(pairs.ptr()));
    }
    return from_term(t);
}

std::string errc_class_name(errc c) {
    switch (c) {
        case errc::timeout: return "Timeout";
        case errc::nodedown: return "NodeDown";
        case errc::unauthorized: return "Unauthorized";
        case errc::revoked: return "Revoked";
        case errc::rate_limited: return "RateLimited";
        case errc::no_such_service: return "NoSuchService";
        case errc::no_such_function: return "NoSuchFunction";
        case errc::bad_args: return "BadArgs";
        case errc::exception: return "RemoteException";
        case errc::noproc: return "NoProc";
        case errc::bad_type: return "BadType";
        case errc::decode: return "DecodeError";
        case errc::overloaded: return "Overloaded";
        case errc::badarg: return "BadArg";
        case errc::shutdown: return "Shutdown";
        default: return "";
    }
}
const char* errc_doc(errc c) {
    switch (c) {
        case errc::timeout: return "The deadline passed before an answer came (also a builtin TimeoutError).";
        case errc::nodedown: return "The node is not connected, or went down.";
        case errc::unauthorized: return "The callee refused: no right to do this (e.g. a wrong cookie).";
        case errc::revoked: return "The grant used was revoked or has expired.";
        case errc::rate_limited: return "The grant used is over its rate.";
        case errc::no_such_service: return "The callee exports no service of that name.";
        case errc::no_such_function: return "The service has no function or actor type of that name.";
        case errc::bad_args: return "Wrong number or type of arguments.";
        case errc::exception: return "The remote function raised; detail holds its text.";
        case errc::noproc: return "No such (live) actor.";
        case errc::bad_type: return "A value did not have the type asked for.";
        case errc::decode: return "Malformed or oversized bytes.";
        case errc::overloaded: return "A bounded queue is full; the message was not sent.";
        case errc::badarg: return "A kith function was called with an invalid argument.";
        case errc::shutdown: return "The node is stopping or stopped.";
        default: return "";
    }
}
}  // namespace

bool python_alive() noexcept { return g_alive.load(std::memory_order_acquire); }

namespace {
// enter_python's gate: g_alive changes and g_entering counts under g_gate_mu.
std::mutex g_gate_mu;
std::condition_variable g_gate_cv;
int g_entering = 0;
std::thread::id g_exiting_thread;
}  // namespace

namespace detail {
bool enter_begin() noexcept {
    std::lock_guard lk(g_gate_mu);
    if (!python_alive() && std::this_thread::get_id() != g_exiting_thread) return false;
    ++g_entering;
    return true;
}
void enter_end() noexcept {
    {
        std::lock_guard lk(g_gate_mu);
        --g_entering;
    }
    g_gate_cv.notify_all();
}
}  // namespace detail

void python_exiting() {
    {
        std::lock_guard lk(g_gate_mu);
        g_alive.store(false, std::memory_order_release);
        g_exiting_thread = std::this_thread::get_id();
    }
    // Admitted threads wait for the GIL: let them have it (the interpreter is
    // not finalizing yet, so they get it and carry on as Python threads).
    PyThreadState* st = PyEval_SaveThread();
    {
        std::unique_lock lk(g_gate_mu);
        g_gate_cv.wait(lk, [] { return g_entering == 0; });
    }
    PyEval_RestoreThread(st);  // this thread finalizes: CPython never ends it
}

gil_release::~gil_release() {
    if (!enter_python([this] { PyEval_RestoreThread(st_); }))
        for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

held::~held() {
    if (!o_) return;
    if (!python_alive() || !Py_IsInitialized()) return;  // leaked on purpose at exit
    PyGILState_STATE st;
    if (!enter_python([&] { st = PyGILState_Ensure(); })) return;
    Py_DECREF(o_);
    PyGILState_Release(st);
}

term to_term(py::handle h) { return to_term_at(h, 0); }

py::object from_term(const term& t) {
    return std::visit(
        [](const auto& v) -> py::object {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, nil_t>) return py::none();
            else if constexpr (std::is_same_v<T, bool>) return py::bool_(v);
            else if constexpr (std::is_same_v<T, std::int64_t>) return py::int_(static_cast<long long>(v));
            else if constexpr (std::is_same_v<T, std::uint64_t>) return py::int_(static_cast<unsigned long long>(v));
            else if constexpr (std::is_same_v<T, double>) return py::float_(v);
            else if constexpr (std::is_same_v<T, std::string>) {
                PyObject* s = PyUnicode_DecodeUTF8(v.data(), static_cast<Py_ssize_t>(v.size()), "surrogateescape");
                if (!s) throw py::error_already_set();
                return py::reinterpret_steal<py::object>(s);
            } else if constexpr (std::is_same_v<T, binary>)
                return py::bytes(reinterpret_cast<const char*>(v.bytes.data()), v.bytes.size());
            else if constexpr (std::is_same_v<T, term_array>) {
                py::list out(v.size());
                for (std::size_t i = 0; i < v.size(); ++i) out[i] = from_term(v[i]);
                return out;
            } else if constexpr (std::is_same_v<T, term_map>) {
                py::dict out;
                for (auto& [k, x] : v) {
                    py::object key = key_from_term(k);
                    if (!out.contains(key)) out[key] = from_term(x);  // first match wins, as term::lookup
                }
                return out;
            } else if constexpr (std::is_same_v<T, pid>) return py::cast(v);
            else return py::cast(v);  // ref
        },
        t.value());
}

py::object from_message(const message& m) {
    switch (m.kind) {
        case message_kind::down: return py::cast(down_msg{m.tag, m.from, from_term(m.body)});
        case message_kind::exit: return py::cast(exit_msg{m.from, from_term(m.body)});
        case message_kind::request: return py::cast(request_msg{m.from, m.tag, from_term(m.body)});
        default: return from_term(m.body);
    }
}

py::handle error_class(errc code) {
    auto i = static_cast<std::size_t>(code);
    PyObject* c = i < g_error_classes.size() ? g_error_classes[i] : nullptr;
    return c ? c : g_error_base;
}

py::object error_object(const error& e) {
    py::object inst = error_class(e.code)(e.message());
    inst.attr("code") = std::string(to_string(e.code));
    inst.attr("detail") = e.detail;
    return inst;
}

void throw_error(const error& e) {
    py::object inst = error_object(e);
    PyErr_SetObject(error_class(e.code).ptr(), inst.ptr());
    throw py::error_already_set();
}

error error_from(py::error_already_set& e) {
    py::object v = e.value();
    if (g_error_base && PyObject_IsInstance(v.ptr(), g_error_base) == 1) {
        std::string code = py::str(v.attr("code"));
        auto c = errc_from_string(code);
        // detail: set by kith on its own errors; else the first argument of
        // a user's raise kith.BadArgs("text").
        py::object d = py::getattr(v, "__dict__", py::dict()).attr("get")("detail");
        py::tuple a = py::getattr(v, "args", py::tuple());
        std::string detail = !d.is_none() ? std::string(py::str(d)) : a.size() ? std::string(py::str(a[0])) : "";
        return error{c && *c != errc::ok ? *c : errc::exception, detail};
    }
    std::string type = py::str(py::type::handle_of(v).attr("__name__"));
    std::string text = py::str(v);
    return error{errc::exception, text.empty() ? type : type + ": " + text};
}

std::string traceback_text(py::error_already_set& e) {
    try {
        py::object fmt = py::module_::import("traceback").attr("format_exception");
        py::list lines = fmt(e.type(), e.value(), e.trace());
        std::string out;
        for (auto l : lines) out += py::str(l).cast<std::string>();
        while (!out.empty() && out.back() == '\n') out.pop_back();
        return out;
    } catch (...) {
        return e.what();
    }
}


// ==, !=, <, <=, >, >= from the C++ operators (pids and refs order as in C++).
template <class C>
void add_ordering(C& cls) {
    cls.def(py::self == py::self)
        .def(py::self != py::self)
        .def(py::self < py::self)
        .def(py::self <= py::self)
        .def(py::self > py::self)
        .def(py::self >= py::self);
}

void register_values(py::module_& m) {
    auto pid_class = py::class_<pid>(m, "Pid", "A process identifier: the node's name and a serial. Prints as <name@host.42>.")
        .def(py::init([](std::string node, std::uint64_t serial) { return pid{std::move(node), serial}; }),
             py::arg("node"), py::arg("serial"))
        .def_readonly("node", &pid::node, "The full name of the node the process lives on.")
        .def_readonly("serial", &pid::serial)
        .def_static("parse", [](const std::string& s) -> std::optional<pid> { return pid::parse(s); },
                    "Reads the <name@host.42> form; None if malformed.")
        .def("__repr__", &pid::to_string)
        .def("__hash__", [](const pid& p) { return py::hash(py::make_tuple("pid", p.node, p.serial)); });
    add_ordering(pid_class);
    auto ref_class = py::class_<ref>(m, "Ref", "A unique reference (monitors, requests, timers). Prints as #Ref<name@host.7>.")
        .def(py::init([](std::string node, std::uint64_t id) { return ref{std::move(node), id}; }), py::arg("node"),
             py::arg("id"))
        .def_readonly("node", &ref::node)
        .def_readonly("id", &ref::id)
        .def_static("parse", [](const std::string& s) -> std::optional<ref> { return ref::parse(s); })
        .def("__repr__", &ref::to_string)
        .def("__hash__", [](const ref& r) { return py::hash(py::make_tuple("ref", r.node, r.id)); });
    add_ordering(ref_class);

    py::class_<down_msg>(m, "Down", "A monitored process ended: ref (the monitor), pid, reason.")
        .def_readonly("ref", &down_msg::tag)
        .def_readonly("pid", &down_msg::who)
        .def_readonly("reason", &down_msg::reason)
        .def("__repr__", [](const down_msg& d) {
            return "Down(ref=" + d.tag.to_string() + ", pid=" + d.who.to_string() +
                   ", reason=" + std::string(py::repr(d.reason)) + ")";
        });
    py::class_<exit_msg>(m, "Exit", "A linked process ended, or an exit signal arrived: pid, reason.")
        .def_readonly("pid", &exit_msg::who)
        .def_readonly("reason", &exit_msg::reason)
        .def("__repr__", [](const exit_msg& x) {
            return "Exit(pid=" + x.who.to_string() + ", reason=" + std::string(py::repr(x.reason)) + ")";
        });
    py::class_<request_msg>(m, "Request", "A request (a call) to answer with reply(request, value): sender, ref, body.")
        .def_readonly("sender", &request_msg::sender)
        .def_readonly("ref", &request_msg::tag)
        .def_readonly("body", &request_msg::body)
        .def("__repr__", [](const request_msg& r) {
            return "Request(sender=" + r.sender.to_string() + ", body=" + std::string(py::repr(r.body)) + ")";
        });

    // Exceptions: kith.Error and one subclass per error code.
    g_error_base = PyErr_NewExceptionWithDoc(
        "kith.Error", "Base of every kith error. Attributes: code (e.g. 'timeout') and detail (text).",
        PyExc_Exception, nullptr);
    py::handle base(g_error_base);
    base.attr("code") = "error";
    base.attr("detail") = "";
    m.attr("Error") = base;
    for (std::size_t i = 1; i < g_error_classes.size(); ++i) {
        auto c = static_cast<errc>(i);
        std::string name = errc_class_name(c);
        if (name.empty()) continue;
        py::object bases = c == errc::timeout ? py::make_tuple(base, py::handle(PyExc_TimeoutError))
                                              : py::reinterpret_borrow<py::object>(base);
        PyObject* cls = PyErr_NewExceptionWithDoc(("kith." + name).c_str(), errc_doc(c), bases.ptr(), nullptr);
        if (!cls) throw py::error_already_set();
        py::handle(cls).attr("code") = std::string(to_string(c));
        g_error_classes[i] = cls;
        m.attr(name.c_str()) = py::handle(cls);
    }
    PyObject* setup = PyErr_NewExceptionWithDoc("kith.SetupError",
                                                "A node could not be started (bad key file, port in use, bad option).",
                                                g_error_base, nullptr);
    py::handle(setup).attr("code") = "setup";
    m.attr("SetupError") = py::handle(setup);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const setup_error& e) {
            py::object cls = py::module_::import("kith._kith").attr("SetupError");
            PyErr_SetString(cls.ptr(), e.what());
        }
    });
}

}  // namespace kith::python
