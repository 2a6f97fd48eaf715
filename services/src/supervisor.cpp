// The supervisor actor (kith/supervisor.hpp). One state object per
// supervisor, owned by its behaviour; everything runs on the supervisor's own
// handler, one message at a time, so nothing here needs a lock.
//
// Stopping children is asynchronous (send "shutdown", wait for the EXIT, a
// timer sends "kill"): while a stop job runs, messages that are not about it
// are deferred and handled, in order, once it is done. Starting is
// synchronous (a local spawn_link cannot fail; a remote one blocks for at
// most start_timeout).
#include "kith/supervisor.hpp"

#include <deque>
#include <functional>
#include <memory>
#include <set>

#include "kith/mailbox.hpp"

namespace kith {
namespace {

const char* kRetry = "kith.sup.retry";
const char* kKill = "kith.sup.kill";
const char* kStarted = "kith.sup.started";

std::string reason_text(const term& t) { return t.as_string() ? *t.as_string() : t.to_string(); }

std::string validate(const supervisor_spec& s) {
    if (s.intensity < 0) return "intensity must be >= 0";
    if (s.period.count() <= 0) return "period must be > 0";
    if (s.retry_interval.count() <= 0) return "retry_interval must be > 0";
    std::set<std::string> ids;
    for (auto& c : s.children) {
        if (c.id.empty()) return "a child has an empty id";
        if (!ids.insert(c.id).second) return "duplicate child id \"" + c.id + "\"";
        if (bool(c.start) == c.remote.has_value())
            return "child \"" + c.id + "\" must set exactly one of start and remote";
        if (c.shutdown.count() < 0) return "child \"" + c.id + "\" has a negative shutdown timeout";
        if (c.remote && (c.remote->node.empty() || c.remote->service.empty() || c.remote->type.empty()))
            return "remote child \"" + c.id + "\" needs node, service and type";
    }
    return {};
}

enum class cstate { running, waiting, stopped };

struct child {
    child_spec spec;
    pid who;
    cstate st = cstate::stopped;
    int restarts = 0;
};

struct stop_job {
    std::vector<std::size_t> order;  // child indexes, in stop order
    std::size_t pos = 0;
    ref timer;
    std::uint64_t seq = 0;
    std::function<void(actor&)> then;
};

struct sup_state {
    node* n = nullptr;
    supervisor_spec spec;
    std::vector<child> kids;
    std::deque<std::chrono::steady_clock::time_point> restarts;
    std::optional<stop_job> job;
    std::uint64_t job_seq = 0;
    std::deque<message> deferred;
    bool finished = false;  // quit() was called
    pid notify;             // start_supervisor's mailbox, told once started
    bool retry_armed = false;
    bool watching_nodes = false;

    // Ends the supervisor (after its children are stopped). The node keeps
    // node-event subscribers until told otherwise, so say so first.
    void end(actor& self, term reason) {
        finished = true;
        if (watching_nodes) n->monitor_nodes(self.self(), false);
        self.quit(std::move(reason));
    }

    void log(log_level lv, const std::string& text) {
        log_to(spec.log, log_record{lv, "supervisor", text, n->name()});
    }

    // --- starting ---------------------------------------------------------------
    // Starts kids[i]; on failure marks it waiting and returns the error.
    result<void> start(actor& self, std::size_t i) {
        child& c = kids[i];
        if (!c.spec.remote) {
            c.who = self.spawn_link(c.spec.start);
            c.st = cstate::running;
            return {};
        }
        auto& r = *c.spec.remote;
        auto p = n->spawn_link(self.self(), r.node, r.service, r.type, r.args, c.spec.start_timeout);
        if (p.ok()) {
            c.who = *p;
            c.st = cstate::running;
            return {};
        }
        c.who = pid{};
        c.st = cstate::waiting;
        arm_retry(self);
        return p.err();
    }

    void arm_retry(actor& self) {
        if (retry_armed) return;
        retry_armed = true;
        self.send_after(spec.retry_interval, self.self(), arr(kRetry));
    }

    // Retries waiting children (all, or those on `only_node`).
    void retry(actor& self, const std::string& only_node) {
        for (std::size_t i = 0; i < kids.size() && !finished; ++i) {
            child& c = kids[i];
            if (c.st != cstate::waiting) continue;
            if (!only_node.empty() && c.spec.remote->node != only_node) continue;
            auto r = start(self, i);
            if (r.ok()) {
                log(log_level::info, "child \"" + c.spec.id + "\" started again on " + c.spec.remote->node);
            } else if (r.code() != errc::nodedown && r.code() != errc::timeout) {
                log(log_level::warning, "child \"" + c.spec.id + "\" could not be restarted: " +
                                            r.err().message() + "; counted as a restart");
                if (!charge(self)) return;
            }
        }
    }

    // Counts one restart; false (and the supervisor is giving up) if that
    // exceeds the intensity.
    bool charge(actor& self) {
        auto now = std::chrono::steady_clock::now();
        restarts.push_back(now);
        while (!restarts.empty() && now - restarts.front() > spec.period) restarts.pop_front();
        if (static_cast<int>(restarts.size()) <= spec.intensity) return true;
        log(log_level::error, "reached_max_restart_intensity: more than " + std::to_string(spec.intensity) +
                                  " restarts in " + std::to_string(spec.period.count()) +
                                  " ms; stopping every child and exiting with reason shutdown");
        shutdown_all(self, [this](actor& s) { end(s, "shutdown"); });
        return false;
    }

    // --- stopping ---------------------------------------------------------------
    void run_job(actor& self, std::vector<std::size_t> order, std::function<void(actor&)> then) {
        job = stop_job{std::move(order), 0, {}, ++job_seq, std::move(then)};
        advance(self);
    }

    void shutdown_all(actor& self, std::function<void(actor&)> then) {
        std::vector<std::size_t> order;
        for (std::size_t i = kids.size(); i-- > 0;) order.push_back(i);
        run_job(self, std::move(order), std::move(then));
    }

    // Sends the next "shutdown" of the job, or finishes it.
    void advance(actor& self) {
        while (job && job->pos < job->order.size()) {
            child& c = kids[job->order[job->pos]];
            if (c.st != cstate::running) {
                if (c.st == cstate::waiting) c.st = cstate::stopped;
                ++job->pos;
                continue;
            }
            if (c.spec.shutdown.count() == 0) {
                self.send_exit(c.who, "kill");
            } else {
                self.send_exit(c.who, "shutdown");
                job->timer = self.send_after(c.spec.shutdown, self.self(),
                                             arr(kKill, static_cast<std::int64_t>(job->seq),
                                                 static_cast<std::int64_t>(job->pos)));
            }
            return;  // wait for its EXIT
        }
        if (!job) return;
        auto then = std::move(job->then);
        job.reset();
        if (then) then(self);
        drain(self);
    }

    void drain(actor& self) {
        while (!job && !finished && !deferred.empty()) {
            message m = std::move(deferred.front());
            deferred.pop_front();
            handle(self, m);
        }
    }

    // --- restarting -------------------------------------------------------------
    bool wants_restart(const child& c, const term& reason) const {
        switch (c.spec.restart) {
        case restart_kind::permanent: return true;
        case restart_kind::temporary: return false;
        case restart_kind::transient: {
            auto* s = reason.as_string();
            return !(s && (*s == "normal" || *s == "shutdown"));
        }
        }
        return true;
    }

    // Starts kids[from..] in order that are stopped (skipping none but the
    // temporary ones, which are dropped).
    void restart_from(actor& self, std::size_t from, std::size_t only = SIZE_MAX) {
        for (std::size_t i = from; i < kids.size() && !finished; ++i) {
            if (only != SIZE_MAX && i != only) continue;
            child& c = kids[i];
            if (c.st != cstate::stopped || c.spec.restart == restart_kind::temporary) continue;
            ++c.restarts;
            auto r = start(self, i);
            if (!r.ok())
                log(log_level::warning, "child \"" + c.spec.id + "\" is waiting for its node: " + r.err().message());
        }
        drop_temporaries();
    }

    void drop_temporaries() {
        // Only between jobs: indexes in a job must stay valid.
        if (job) return;
        std::erase_if(kids, [](const child& c) {
            return c.spec.restart == restart_kind::temporary && c.st == cstate::stopped;
        });
    }

    void on_child_exit(actor& self, std::size_t i, const term& reason) {
        child& c = kids[i];
        c.who = pid{};
        c.st = cstate::stopped;
        if (!wants_restart(c, reason)) {
            drop_temporaries();
            return;
        }
        log(log_level::info, "child \"" + c.spec.id + "\" ended (" + escape_peer_text(reason_text(reason)) +
                                 "); restarting");
        if (!charge(self)) return;
        std::vector<std::size_t> order;
        std::size_t first = i;
        switch (spec.strategy) {
        case sup_strategy::one_for_one: restart_from(self, i, i); return;
        case sup_strategy::one_for_all: first = 0; break;
        case sup_strategy::rest_for_one: break;
        }
        for (std::size_t k = kids.size(); k-- > first;)
            if (k != i) order.push_back(k);
        run_job(self, std::move(order), [this, first](actor& s) { restart_from(s, first); });
    }

    // --- the behaviour ------------------------------------------------------------
    std::optional<std::size_t> find(const pid& p) const {
        if (p.is_null()) return std::nullopt;
        for (std::size_t i = 0; i < kids.size(); ++i)
            if (kids[i].st == cstate::running && kids[i].who == p) return i;
        return std::nullopt;
    }

    bool in_job(std::size_t i) const {
        if (!job) return false;
        for (std::size_t k = job->pos; k < job->order.size(); ++k)
            if (job->order[k] == i) return true;
        return false;
    }

    void handle(actor& self, message& m) {
        if (finished) return;
        if (m.is_exit()) {
            auto i = find(m.from);
            if (job && i) {
                const bool current = job->pos < job->order.size() && job->order[job->pos] == *i;
                if (current || in_job(*i)) {
                    kids[*i].who = pid{};
                    kids[*i].st = cstate::stopped;
                    if (current) {
                        if (!job->timer.is_null()) self.cancel_timer(job->timer);
                        job->timer = ref{};
                        ++job->pos;
                        advance(self);
                    }
                    return;
                }
            }
            if (job) {
                deferred.push_back(std::move(m));
                return;
            }
            if (i) {
                on_child_exit(self, *i, m.body);
                return;
            }
            // Not a child: our parent (or whoever linked to us) ended.
            if (reason_text(m.body) == "normal") return;
            term reason = m.body;
            shutdown_all(self, [this, reason](actor& s) { end(s, reason); });
            return;
        }
        if (m.is_user()) {
            const std::string* tag = m.body.at(0) ? m.body.at(0)->as_string() : nullptr;
            if (!tag) return;
            if (*tag == kKill) {
                auto seq = m.body.at(1) ? m.body.at(1)->as_int() : std::nullopt;
                auto pos = m.body.at(2) ? m.body.at(2)->as_int() : std::nullopt;
                if (job && seq && pos && static_cast<std::uint64_t>(*seq) == job->seq &&
                    static_cast<std::size_t>(*pos) == job->pos && job->pos < job->order.size()) {
                    child& c = kids[job->order[job->pos]];
                    log(log_level::warning, "child \"" + c.spec.id + "\" did not stop within " +
                                                std::to_string(c.spec.shutdown.count()) + " ms; killing it");
                    job->timer = ref{};
                    self.send_exit(c.who, "kill");
                }
                return;
            }
            if (job) {
                deferred.push_back(std::move(m));
                return;
            }
            if (*tag == kRetry) {
                retry_armed = false;
                retry(self, {});
                for (auto& c : kids)
                    if (c.st == cstate::waiting) arm_retry(self);
            } else if (*tag == "nodeup" && m.body.at(1) && m.body.at(1)->as_string()) {
                retry(self, *m.body.at(1)->as_string());
            }
            return;
        }
        if (m.is_request()) {
            if (job) {
                deferred.push_back(std::move(m));
                return;
            }
            const std::string* what = m.body.as_string();
            if (what && *what == "which_children") {
                term_array out;
                for (auto& c : kids) {
                    const char* st = c.st == cstate::running ? "running" : c.st == cstate::waiting ? "waiting" : "stopped";
                    std::string where = c.spec.remote ? c.spec.remote->node : n->name();
                    out.push_back(map_of({{"id", c.spec.id},
                                          {"pid", c.st == cstate::running ? term(c.who) : term()},
                                          {"state", st},
                                          {"node", where},
                                          {"restarts", c.restarts}}));
                }
                self.reply(m, term(std::move(out)));
            } else if (what && *what == "stop") {
                reply_handle to(m);
                shutdown_all(self, [this, to](actor& s) {
                    s.reply(to, term("ok"));
                    end(s, "normal");
                });
            } else {
                self.reply(m, result<term>(error{errc::bad_args, "a supervisor answers \"which_children\" or \"stop\", got " +
                                                                     m.body.to_string()}));
            }
        }
    }
};

// `notify` (may be null) is told ["kith.sup.started", Sup] once every child
// has started; on a failure it sees the supervisor's DOWN instead.
actor_init make_supervisor(node& n, supervisor_spec spec, pid notify) {
    node* np = &n;
    return [np, spec = std::move(spec), notify](actor& self) -> behavior {
        auto st = std::make_shared<sup_state>();
        st->n = np;
        st->spec = spec;
        if (auto bad = validate(st->spec); !bad.empty()) {
            self.quit("start_failed: " + bad);
            return [](actor&, message&) {};
        }
        self.trap_exit(true);
        bool any_remote = false;
        for (auto& c : st->spec.children) {
            st->kids.push_back(child{c, {}, cstate::stopped, 0});
            any_remote = any_remote || c.remote.has_value();
        }
        if (any_remote) {
            np->monitor_nodes(self.self(), true);
            st->watching_nodes = true;
        }
        for (std::size_t i = 0; i < st->kids.size(); ++i) {
            auto r = st->start(self, i);
            if (!r.ok()) {
                st->kids[i].st = cstate::stopped;
                std::string why = "start_failed: " + st->kids[i].spec.id + ": " + r.err().message();
                st->log(log_level::error, why + "; stopping the children already started");
                st->shutdown_all(self, [st, why](actor& s) { st->end(s, why); });
                return [st](actor& s, message& m) { st->handle(s, m); };
            }
        }
        if (!notify.is_null()) self.send(notify, arr(kStarted, self.self()));
        return [st](actor& s, message& m) { st->handle(s, m); };
    };
}

}  // namespace

actor_init supervisor(node& n, supervisor_spec spec) { return make_supervisor(n, std::move(spec), pid{}); }

result<pid> start_supervisor(node& n, supervisor_spec spec, std::chrono::milliseconds timeout) {
    if (auto bad = validate(spec); !bad.empty()) return error{errc::badarg, "supervisor spec: " + bad};
    mailbox mb(n);
    pid me = mb.self();
    auto [sup, mon] = mb.spawn_monitor(make_supervisor(n, std::move(spec), me));
    auto got = mb.receive(
        [&](const message& m) {
            if (m.is_down() && m.tag == mon) return true;
            return m.is_user() && m.body.at(0) && *m.body.at(0) == term(kStarted);
        },
        timeout);
    if (!got.ok()) {
        n.send_exit(sup, "shutdown");
        return error{errc::timeout, "the supervisor did not start its children within " +
                                        std::to_string(timeout.count()) + " ms; it was told to shut down"};
    }
    if (got->is_down()) return error{errc::exception, reason_text(got->body)};
    mb.demonitor(mon);
    return sup;
}

result<std::vector<child_info>> which_children(node& n, const pid& sup, std::chrono::milliseconds timeout) {
    mailbox mb(n);
    auto r = mb.call(sup, "which_children", timeout);
    if (!r.ok()) return r.err();
    std::vector<child_info> out;
    if (!r->is_array()) return error{errc::bad_type, "which_children answered " + r->to_string()};
    for (auto& e : *r->as_array()) {
        child_info ci;
        auto str = [&](const char* k) {
            const term* v = e.lookup(term(k));
            return v && v->as_string() ? *v->as_string() : std::string();
        };
        ci.id = str("id");
        ci.state = str("state");
        ci.node = str("node");
        if (const term* p = e.lookup(term("pid")); p && p->as_pid()) ci.who = *p->as_pid();
        if (const term* k = e.lookup(term("restarts")); k && k->as_int()) ci.restarts = static_cast<int>(*k->as_int());
        out.push_back(std::move(ci));
    }
    return out;
}

result<void> stop_supervisor(node& n, const pid& sup, std::chrono::milliseconds timeout) {
    mailbox mb(n);
    auto r = mb.call(sup, "stop", timeout);
    if (!r.ok()) return r.err();
    return {};
}

}  // namespace kith
