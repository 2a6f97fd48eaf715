// log.cpp — kith's log records (kith/log.hpp) delivered to Python callables:
// Node(log=...), Node(discovery={"log": ...}) and kith.set_log_sink.
//
// Why a queue and a thread: a kith thread may log while it holds one of its
// node's locks, and a Python thread holding the GIL may be waiting for that
// very lock (most node methods keep the GIL while they take it). A sink that
// waited for the GIL there could deadlock; so the sink only copies the
// record into a bounded queue (never blocking), and one dispatcher thread
// takes the GIL and calls the callables, in the order the records came.
//
// Failures: a callable that raises never reaches C++: for a node's callable
// the failure (with the record it was given) is logged through the default
// sink; for the default sink's own callable it goes to sys.unraisablehook
// (Python's "Exception ignored in ..."), as nothing else is left to tell.
// Records that do not fit the queue are counted and reported to the
// callable with the next record it gets.
//
// Lifetime: a node's callables are closed when it stops (after the records
// queued before are delivered, waiting at most 2 s); later records of that
// node go to the default sink. The atexit hook puts the default sink back to
// stderr and stops the dispatcher before the interpreter finalizes.
#include <pybind11/pybind11.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <pthread.h>

#include "bind.hpp"
#include "kith/log.hpp"

namespace kith::python {

class log_target {
public:
    log_target(held_ptr f, std::string w, bool is_default) : fn(std::move(f)), what(std::move(w)), dflt(is_default) {}

    std::mutex mu;
    held_ptr fn;  // under mu; null once closed
    const std::string what;
    const bool dflt;                       // the callable of kith.set_log_sink
    std::atomic<bool> closed{false};
    std::atomic<std::uint64_t> dropped{0};  // records the full queue refused
    std::uint64_t last_posted = 0;         // under the dispatcher's mutex
};

namespace {

constexpr std::size_t kMaxQueued = 4096;
constexpr auto kFlushWait = std::chrono::seconds(2);

struct item {
    log_target_ptr t;
    log_level level;
    std::string source, node, text;
    std::uint64_t seq;
};

struct dispatcher {
    std::mutex mu;
    std::condition_variable work, delivered_cv;
    std::deque<item> q;
    std::uint64_t posted = 0, delivered = 0;
    bool running = false, stopping = false, finished = false;
    std::thread::id thread_id;
};
// Never destroyed: a detached dispatcher (a callable that would not return
// at exit) or a late kith thread may still touch it. A forked child gets a
// fresh one: the parent's thread does not exist there, and its mutex may
// have been held by another thread at the fork.
std::atomic<dispatcher*> g_disp{new dispatcher};
dispatcher& disp() { return *g_disp.load(); }
void fresh_dispatcher_in_child() { g_disp.store(new dispatcher); }

// The type records are handed to callables as (kith.LogRecord, set by the
// package); a plain tuple until it is set.
held_ptr g_record_type;  // guarded by the GIL

thread_local bool t_in_fallback = false;

// Where a record goes when its callable cannot take it (closed, or Python
// exiting): the default sink. A default-sink record that cannot reach its
// callable would come straight back here: it is dropped instead.
void fallback(const log_target& t, const log_record& r) noexcept {
    if (t.dflt || t_in_fallback) return;
    t_in_fallback = true;
    log_to(log_sink{}, r);
    t_in_fallback = false;
}

py::str text(std::string_view s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

// One line: "TypeError: message".
std::string one_line(py::error_already_set& e) {
    std::string out;
    try {
        out = py::str(e.type().attr("__name__")).cast<std::string>() + ": " + py::str(e.value()).cast<std::string>();
    } catch (...) {
        out = e.what();
    }
    for (auto& c : out)
        if (c == '\n' || c == '\r') c = ' ';
    return out;
}

// Calls t's callable with one record (GIL held). Never throws.
void call(log_target& t, const held_ptr& fn, log_level level, std::string_view source, std::string_view node,
          std::string_view body) {
    std::string failure;
    try {
        py::object rec;
        py::str lv = text(to_string(level)), src = text(source), nd = text(node), tx = text(body);
        if (g_record_type) rec = g_record_type->get()(lv, src, nd, tx);
        else rec = py::make_tuple(lv, src, nd, tx);
        fn->get()(rec);
        return;
    } catch (py::error_already_set& e) {
        if (t.dflt) {
            e.discard_as_unraisable("the kith log sink given to kith.set_log_sink");
            return;
        }
        failure = one_line(e);
    } catch (const std::exception& e) {
        failure = e.what();
    }
    if (t.dflt) return;  // a C++ exception here (bad_alloc): nothing sane left to tell
    std::string line = "the log callable " + t.what + " raised " + failure + "; fix it, or pass log=None. " +
                       "The record it was given: " + std::string(source) + ": " + std::string(to_string(level)) +
                       ": " + std::string(body);
    log_record r;
    r.level = log_level::error;
    r.source = "python";
    r.node = node;
    r.text = line;
    log_to(log_sink{}, r);
}

void mark_delivered(dispatcher& d, std::uint64_t seq) {
    {
        std::lock_guard lk(d.mu);
        d.delivered = seq;
    }
    d.delivered_cv.notify_all();
}

void run_dispatcher() {
    auto& d = disp();
    for (;;) {
        std::deque<item> batch;
        {
            std::unique_lock lk(d.mu);
            d.work.wait(lk, [&] { return d.stopping || !d.q.empty(); });
            if (d.q.empty()) break;  // stopping, and everything delivered
            batch.swap(d.q);
        }
        std::optional<py::gil_scoped_acquire> gil;
        const bool in_python = enter_python([&] { gil.emplace(); });
        for (auto& it : batch) {
            held_ptr fn;
            {
                std::lock_guard lk(it.t->mu);
                fn = it.t->fn;
            }
            if (!in_python || !fn) {
                log_record r;
                r.level = it.level;
                r.source = it.source;
                r.node = it.node;
                r.text = it.text;
                fallback(*it.t, r);
            } else {
                if (auto n = it.t->dropped.exchange(0))
                    call(*it.t, fn, log_level::warning, "python", it.node,
                         std::to_string(n) + " log records were dropped: the log callable did not keep up");
                call(*it.t, fn, it.level, it.source, it.node, it.text);
            }
            fn.reset();
            mark_delivered(d, it.seq);
        }
        batch.clear();  // drops target references with the GIL still held
        gil.reset();
    }
    {
        std::lock_guard lk(d.mu);
        d.finished = true;
    }
    d.delivered_cv.notify_all();
}

// Queues a record for t's callable; never blocks, never throws.
void post(const log_target_ptr& t, const log_record& r) noexcept {
    if (t->closed) return fallback(*t, r);
    auto& d = disp();
    try {
        std::unique_lock lk(d.mu);
        if (d.stopping) {
            lk.unlock();
            return fallback(*t, r);
        }
        if (d.q.size() >= kMaxQueued) {
            ++t->dropped;
            return;
        }
        if (!d.running) {
            std::thread th(run_dispatcher);
            d.thread_id = th.get_id();
            th.detach();  // joined by waiting for `finished` (stop_logging), bounded
            d.running = true;
        }
        d.q.push_back(item{t, r.level, std::string(r.source), std::string(r.node), std::string(r.text), ++d.posted});
        t->last_posted = d.posted;
        lk.unlock();
        d.work.notify_one();
    } catch (...) {  // no thread, no memory: the record still reaches a sink
        fallback(*t, r);
    }
}

log_level level_from(const std::string& s) {
    for (auto l : {log_level::debug, log_level::info, log_level::warning, log_level::error})
        if (s == to_string(l)) return l;
    throw py::value_error("unknown log level '" + s + "' (debug, info, warning, error)");
}

void check_callable(const py::object& fn) {
    if (!PyCallable_Check(fn.ptr()))
        throw py::type_error("a log sink is a callable taking one kith.LogRecord (level, source, node, text), "
                             "or None");
}

}  // namespace

log_target_ptr make_log_target(py::object fn, std::string what) {
    check_callable(fn);
    return std::make_shared<log_target>(hold(std::move(fn)), std::move(what), false);
}

log_sink sink_of(const log_target_ptr& t) {
    return [t](const log_record& r) { post(t, r); };
}

void close_log_target(const log_target_ptr& t) noexcept {
    if (!t || t->closed.exchange(true)) return;
    auto& d = disp();
    // Deliver what was queued before (not from the dispatcher itself, nor
    // with the GIL, which the dispatcher needs).
    if (!PyGILState_Check()) {
        std::unique_lock lk(d.mu);
        const auto want = t->last_posted;
        if (std::this_thread::get_id() != d.thread_id)
            d.delivered_cv.wait_for(lk, kFlushWait, [&] { return d.delivered >= want || d.finished || !d.running; });
    }
    held_ptr fn;
    {
        std::lock_guard lk(t->mu);
        fn.swap(t->fn);
    }
    fn.reset();  // takes the GIL itself (or leaks the callable once Python is exiting)
}

void stop_logging() {
    set_default_log_sink({});
    auto& d = disp();
    {
        std::lock_guard lk(d.mu);
        d.stopping = true;
    }
    d.work.notify_all();
    {
        gil_release rel;  // the dispatcher needs the GIL to finish
        std::unique_lock lk(d.mu);
        // Bounded: a callable that never returns must not hang the exit (the
        // thread is detached; Python refuses it the GIL once exiting).
        d.delivered_cv.wait_for(lk, kFlushWait, [&] { return d.finished || !d.running; });
    }
    g_record_type.reset();
}

void register_log(py::module_& m) {
    pthread_atfork(nullptr, nullptr, fresh_dispatcher_in_child);
    m.def("_set_log_record_type", [](py::object cls) { g_record_type = hold(std::move(cls)); },
          "The type log records are handed to callables as (kith.LogRecord).");
    m.def("_log", [](const std::string& level, const std::string& source, const std::string& node,
                     const std::string& text) {
        log_record r;
        r.level = level_from(level);
        r.source = source;
        r.node = node;
        r.text = text;
        log_to(log_sink{}, r);
    }, py::arg("level"), py::arg("source"), py::arg("node"), py::arg("text"),
          "Logs one record through the default sink (the package's own diagnostics).");
    m.def("set_log_sink", [](py::object fn, const std::string& level) {
        auto lv = level_from(level);
        {
            auto& d = disp();
            std::lock_guard lk(d.mu);
            if (d.stopping) throw_error(error{errc::shutdown, "Python is exiting: kith's logging is stopped"});
        }
        if (fn.is_none()) return set_default_log_sink({}, lv);
        check_callable(fn);
        auto t = std::make_shared<log_target>(hold(std::move(fn)), "given to kith.set_log_sink", true);
        set_default_log_sink(sink_of(t), lv);
    }, py::arg("sink"), py::arg("level") = "info",
          "Where kith's records go when no node or discovery callable takes them: sink(LogRecord) for records "
          "at `level` or above (debug, info, warning, error); None: stderr.");
}

}  // namespace kith::python
