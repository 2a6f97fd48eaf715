// kith_py.hpp — shared pieces of the `kith._kith` extension (private to
// bindings/python): value conversion, exceptions, the Python message types and
// the GIL/shutdown rules.
//
// GIL rules: every function here that takes or returns py:: objects needs the
// GIL. Kith threads (workers) that call into Python go through
// python_call_guard, which refuses once the interpreter is exiting
// (python_alive() false) so no kith thread touches a finalizing interpreter.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <memory>
#include <string>

#include "kith/actor.hpp"
#include "kith/error.hpp"
#include "kith/grants.hpp"
#include "kith/term.hpp"

namespace py = pybind11;

namespace kith::python {

// True until the interpreter starts exiting (set false by the module's atexit
// hook after every node is stopped).
bool python_alive() noexcept;
// The atexit hook's second half (called with the GIL, after every node is
// stopped): python_alive() becomes false, so enter_python refuses from now
// on (except on this thread, which goes on to finalize the interpreter), and
// it waits, with the GIL released, until every take enter_python admitted
// before has finished.
void python_exiting();

// Every thread that takes the GIL back from C++ code (a kith worker, a
// Python thread ending a GIL-released wait) goes through enter_python: it
// calls `take` (PyEval_RestoreThread, PyGILState_Ensure, ...: blocks until
// this thread holds the GIL) and returns true, or returns false without
// calling `take` once the interpreter is exiting. Checking python_alive() and
// then taking the GIL is not enough: the atexit hook may run in between, and
// CPython then ends a thread that waits for the GIL during finalization with
// pthread_exit, whose forced unwinding through a noexcept C++ destructor
// (~gil_scoped_release, ~gil_scoped_acquire's callers) calls std::terminate.
namespace detail {
bool enter_begin() noexcept;
void enter_end() noexcept;
}  // namespace detail
template <class Take>
bool enter_python(Take&& take) {
    if (!detail::enter_begin()) return false;
    struct end {
        ~end() { detail::enter_end(); }
    } e;
    take();
    return true;
}

// Releases the GIL for a blocking section of a Python caller (use it instead
// of py::gil_scoped_release). Takes it back through enter_python; if the
// interpreter started exiting meanwhile (only daemon threads can still be
// waiting then), the thread parks forever instead of taking the GIL back
// (CPython would end it with pthread_exit, see enter_python).
class gil_release {
public:
    gil_release() : st_(PyEval_SaveThread()) {}
    ~gil_release();
    gil_release(const gil_release&) = delete;
    gil_release& operator=(const gil_release&) = delete;

private:
    PyThreadState* st_;
};

// A Python object owned from C++ code that may be destroyed on any thread,
// with or without the GIL: the reference is dropped under the GIL, or leaked
// once the interpreter is exiting (never touched after finalization).
class held {
public:
    explicit held(py::object o) : o_(o.release().ptr()) {}
    ~held();
    held(const held&) = delete;
    held& operator=(const held&) = delete;
    py::handle get() const noexcept { return o_; }

private:
    PyObject* o_;
};
using held_ptr = std::shared_ptr<held>;
inline held_ptr hold(py::object o) { return std::make_shared<held>(std::move(o)); }

// Python value -> term. None, bool, int (int64 / uint64 range, else
// OverflowError), float, str, bytes/bytearray/memoryview, list, tuple, dict,
// Pid, Ref. Anything else raises TypeError ("functions cannot be sent" for
// callables). Throws py::error_already_set / pybind11 builtin exceptions.
term to_term(py::handle h);
// term -> Python: arrays become lists, maps dicts (unhashable keys: lists
// become tuples, maps frozensets of pairs), binaries bytes.
py::object from_term(const term& t);
// A received message as Python sees it: the body of a user message, else a
// Down / Exit / Request object.
py::object from_message(const message& m);

// The exception class for an error code (all derive from kith.Error).
py::handle error_class(errc code);
// A kith.Error instance for `e` (attributes code, detail).
py::object error_object(const error& e);
// Raises `e` as its Python exception.
[[noreturn]] void throw_error(const error& e);
// The error to answer a caller with for the Python exception being handled:
// a kith.Error keeps its code and detail; any other exception becomes
// errc::exception with "Type: message". Needs the GIL.
error error_from(py::error_already_set& e);
// "Traceback (most recent call last): ..." text of the exception.
std::string traceback_text(py::error_already_set& e);

// Registers Pid, Ref, Down, Exit, Request and the exception classes.
void register_values(py::module_& m);

// Grants (grants.cpp). Argument conversions raise BadArg (kith's own
// parser's reason) or TypeError for a value of the wrong kind.
// allow: "kvs,echo:echo", a list of such items, or {service: [names]}.
grant_scope scope_from(py::handle allow);
// rate: "10/s", "10/s,burst=20", "unlimited", a number per second (> 0;
// burst twice it, at least 1) or a (per_second, burst) pair; checked by
// rate_limit::parse.
rate_limit rate_from(py::handle rate);
// Seconds since the Unix epoch (UTC) -> a time point; None -> no expiry.
std::optional<std::chrono::system_clock::time_point> expiry_from(std::optional<double> unix_seconds);
// Registers kith.Grant, load_grant and parse_grant.
void register_grants(py::module_& m);

// What Python receives for a DOWN / EXIT / request.
struct down_msg {
    ref tag;
    pid who;
    py::object reason;
};
struct exit_msg {
    pid who;
    py::object reason;
};
struct request_msg {
    pid sender;
    ref tag;
    py::object body;
};

}  // namespace kith::python
