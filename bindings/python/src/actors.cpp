// actors.cpp — Python actors: the kith.Actor context handed to handlers, the
// behaviors that run Python code on kith worker threads (with the GIL, for
// the duration of the Python code), and spawning them.
#include "bind.hpp"

namespace kith::python {

thread_local int t_in_handler = 0;

namespace {

// The actor context handed to Python handlers; valid only during the call.
struct actor_ctx {
    actor* a = nullptr;
    actor& self() const {
        if (!a) throw py::value_error("this Actor context is only valid inside its handler (store actor.self instead)");
        return *a;
    }
};

// Runs Python code for an actor with the GIL held; an exception ends the
// actor with the traceback text as its reason.
template <class F>
void run_in_actor(actor& self, F&& body) {
    handler_scope in_handler;
    std::optional<py::gil_scoped_acquire> gil;
    if (!enter_python([&] { gil.emplace(); })) {
        self.quit("shutdown");
        return;
    }
    auto ctx = py::cast(actor_ctx{&self});
    try {
        body(ctx);
    } catch (py::error_already_set& e) {
        self.quit(term(traceback_text(e)));
    } catch (const std::exception& e) {
        self.quit(term(std::string("error: ") + e.what()));
    }
    ctx.cast<actor_ctx&>().a = nullptr;
}

behavior make_behavior(held_ptr handler) {
    return [handler](actor& self, message& m) {
        run_in_actor(self, [&](py::object& ctx) { handler->get()(ctx, from_message(m)); });
    };
}

}  // namespace

std::pair<actor_init, behavior> make_spawnable(py::object init, py::object handler) {
    auto h = hold(std::move(handler));
    if (init.is_none()) return {actor_init{}, make_behavior(h)};
    auto i = hold(std::move(init));
    return {actor_init([i, h](actor& self) -> behavior {
                run_in_actor(self, [&](py::object& ctx) { i->get()(ctx); });
                return make_behavior(h);
            }),
            behavior{}};
}

void register_actors(py::module_& m) {
    py::class_<actor_ctx>(m, "Actor", "The context of a running Python actor (valid only inside its handler).")
        .def_property_readonly("self", [](actor_ctx& c) { return c.self().self(); }, "This actor's pid.")
        .def_property_readonly("node", [](actor_ctx& c) { return c.self().node_name(); })
        .def("send", [](actor_ctx& c, py::handle to, py::handle msg) { send_to(c.self(), to, msg); },
             py::arg("to"), py::arg("msg"), "Sends msg to a Pid, a registered name or a (name, node) pair.")
        .def("reply", [](actor_ctx& c, const request_msg& r, py::handle value) {
            c.self().reply(reply_handle(r.sender, r.tag), to_term(value));
        }, py::arg("request"), py::arg("value"), "Answers a Request.")
        .def("reply_error", [](actor_ctx& c, const request_msg& r, const std::string& code, const std::string& detail) {
            auto e = errc_from_string(code);
            if (!e) throw py::value_error("unknown error code '" + code + "'");
            c.self().reply(reply_handle(r.sender, r.tag), result<term>(error{*e, detail}));
        }, py::arg("request"), py::arg("code"), py::arg("detail") = "")
        .def("quit", [](actor_ctx& c, py::handle reason) { c.self().quit(to_term(reason)); },
             py::arg("reason") = "normal", "Ends this actor after the handler returns.")
        .def("link", [](actor_ctx& c, const pid& p) { c.self().link(p); })
        .def("unlink", [](actor_ctx& c, const pid& p) { c.self().unlink(p); })
        .def("monitor", [](actor_ctx& c, const pid& p) { return c.self().monitor(p); })
        .def("demonitor", [](actor_ctx& c, const ref& r) { return c.self().demonitor(r); })
        .def("trap_exit", [](actor_ctx& c, bool on) { c.self().trap_exit(on); }, py::arg("on") = true)
        .def("exit", [](actor_ctx& c, const pid& p, py::handle reason) { c.self().send_exit(p, to_term(reason)); },
             py::arg("pid"), py::arg("reason"), "Sends an exit signal (Erlang exit/2).")
        .def("register", [](actor_ctx& c, const std::string& name) { ok_or_raise(c.self().register_name(name)); })
        .def("whereis", [](actor_ctx& c, const std::string& name) { return c.self().whereis(name); })
        .def("send_after", [](actor_ctx& c, double seconds, py::handle to, py::handle msg) {
            return c.self().send_after(seconds_to_ns(seconds), to.cast<pid>(), to_term(msg));
        }, py::arg("seconds"), py::arg("to"), py::arg("msg"))
        .def("cancel_timer", [](actor_ctx& c, const ref& r) { return c.self().cancel_timer(r); })
        .def("_spawn", [](actor_ctx& c, py::object init, py::object handler, bool link, bool monitor) -> py::object {
            ref r;
            pid p = spawn_py(c.self(), std::move(init), std::move(handler), link, monitor ? &r : nullptr);
            if (monitor) return py::make_tuple(p, r);
            return py::cast(p);
        });
}

}  // namespace kith::python
