// Failover services (kith/failover.hpp). One controller actor per node
// evaluates the rule on every tick and node event; it is the only code that
// starts, registers or stops this node's instance, so there is no race
// between decisions on one node.
#include "kith/failover.hpp"

#include <algorithm>
#include <mutex>
#include <optional>
#include <set>

#include "kith/actor.hpp"

namespace kith {
namespace detail {

struct failover_state {
    node* n = nullptr;
    global_names* names = nullptr;
    failover_spec spec;
    pid controller;
    mutable std::mutex mu;
    pid inst;  // guarded by mu; written by the controller only
};

}  // namespace detail

namespace {

using detail::failover_state;
using clock_type = std::chrono::steady_clock;

struct failover_ctl {
    std::shared_ptr<failover_state> s;
    pid inst;
    ref inst_mon;
    std::optional<clock_type::time_point> want_since, stop_sent;

    void say(log_level lv, const std::string& text) {
        log_to(s->spec.log, log_record{lv, "failover", "\"" + s->spec.name + "\": " + text, s->n->name()});
    }

    void set_inst(const pid& p) {
        inst = p;
        std::lock_guard lk(s->mu);
        s->inst = p;
    }

    // Returns whether this node wants the instance, and why not in `why`.
    bool wants(std::string& why) {
        auto up = s->n->nodes();
        std::set<std::string> connected(up.begin(), up.end());
        std::size_t live = 0;
        std::string first;
        for (auto& nn : s->spec.nodes) {
            bool is_live = nn == s->n->name();
            if (!is_live && connected.count(nn)) {
                auto info = s->n->info(nn);
                is_live = info && info->trust == trust_level::cluster;
            }
            if (!is_live) continue;
            ++live;
            if (first.empty()) first = nn;
        }
        if (live * 2 <= s->spec.nodes.size()) {
            why = "sees " + std::to_string(live) + " of " + std::to_string(s->spec.nodes.size()) +
                  " listed nodes, no majority";
            return false;
        }
        if (first != s->n->name()) {
            why = first + " is live and comes first";
            return false;
        }
        return true;
    }

    void start() {
        pid p;
        try {
            p = s->spec.start(*s->n);
        } catch (const std::exception& e) {
            return say(log_level::error, std::string("start threw: ") + e.what() + "; retrying after the delay");
        }
        if (p.is_null() || p.node != s->n->name())
            return say(log_level::error, "start returned " + p.to_string() + ", not a local pid; retrying after the delay");
        auto r = s->names->register_name(s->spec.name, p);
        if (!r.ok()) {
            s->n->send_exit(p, "kill");
            return say(log_level::warning, "started but could not take the name (" + r.err().message() +
                                               "); stopped it, will retry");
        }
        say(log_level::info, "running here as " + p.to_string());
        set_inst(p);
        stop_sent.reset();
    }

    void evaluate(actor& self) {
        std::string why;
        bool want = wants(why);
        auto now = clock_type::now();
        if (!inst.is_null()) {
            if (want) return;
            if (!stop_sent) {
                say(log_level::info, "stopping the instance here: this node " + why);
                s->n->send_exit(inst, "shutdown");
                stop_sent = now;
            } else if (now - *stop_sent > s->spec.stop_timeout) {
                s->n->send_exit(inst, "kill");
            }
            return;
        }
        if (!want) {
            want_since.reset();
            return;
        }
        if (!want_since) want_since = now;
        if (now - *want_since < s->spec.delay) return;
        if (s->names->whereis(s->spec.name).ok()) return;  // the previous holder has not ended yet
        start();
        if (!inst.is_null()) inst_mon = self.monitor(inst);
    }

    void handle(actor& self, message& m) {
        if (m.is_down()) {
            if (m.tag == inst_mon) {
                say(log_level::info, "the instance " + inst.to_string() + " ended: " + m.body.to_string());
                set_inst(pid{});
                want_since = clock_type::now();  // a crashing instance restarts at most once per delay
            }
            return evaluate(self);
        }
        if (!m.is_user()) return;
        const std::string* tag = m.body.at(0) ? m.body.at(0)->as_string() : m.body.as_string();
        if (tag && *tag == "kith.failover.tick") {
            evaluate(self);
            self.send_after(s->spec.check_interval, self.self(), "kith.failover.tick");
        } else if (tag && (*tag == "nodeup" || *tag == "nodedown")) {
            evaluate(self);
        }
    }
};

}  // namespace

failover_service::failover_service(node& n, global_names& names, failover_spec spec)
    : n_(&n), s_(std::make_shared<failover_state>()) {
    if (spec.name.empty()) throw setup_error("failover service: the name is empty; give it the global name to use");
    if (!spec.start) throw setup_error("failover service \"" + spec.name + "\": no start function");
    if (std::find(spec.nodes.begin(), spec.nodes.end(), n.name()) == spec.nodes.end())
        throw setup_error("failover service \"" + spec.name + "\": this node (" + n.name() +
                          ") is not in its node list; run it only on the listed nodes");
    std::set<std::string> uniq(spec.nodes.begin(), spec.nodes.end());
    if (uniq.size() != spec.nodes.size())
        throw setup_error("failover service \"" + spec.name + "\": a node is listed twice");
    s_->n = &n;
    s_->names = &names;
    s_->spec = std::move(spec);
    auto s = s_;
    s_->controller = n.spawn([s](actor& self) -> behavior {
        auto ctl = std::make_shared<failover_ctl>();
        ctl->s = s;
        s->n->monitor_nodes(self.self(), true);
        self.send(self.self(), term("kith.failover.tick"));
        return [ctl](actor& a, message& m) { ctl->handle(a, m); };
    });
}

failover_service::~failover_service() {
    n_->monitor_nodes(s_->controller, false);
    n_->send_exit(s_->controller, "kill");
    pid p = instance();
    if (!p.is_null()) n_->send_exit(p, "shutdown");
}

bool failover_service::running_here() const { return !instance().is_null(); }

pid failover_service::instance() const {
    std::lock_guard lk(s_->mu);
    return s_->inst;
}

}  // namespace kith
