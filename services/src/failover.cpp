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
#include "table_server.hpp"

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

constexpr auto kAskTimeout = std::chrono::milliseconds(1000);

struct failover_ctl {
    std::shared_ptr<failover_state> s;
    std::string reg;  // the controllers' registered name, "kith.failover.<name>"
    pid inst;
    ref inst_mon;
    std::optional<clock_type::time_point> want_since, stop_sent;
    // The confirmation round before a start: this node's own view is not
    // enough when links fail one at a time (a-b cut, both still see c): b
    // would see a majority without a. So b starts only when a strict
    // majority of the list (b included) answer that b is first for them too.
    std::int64_t round = 0;
    std::optional<clock_type::time_point> asked_at;
    std::set<std::string> votes;

    void say(log_level lv, const std::string& text) {
        log_to(s->spec.log, log_record{lv, "failover", "\"" + s->spec.name + "\": " + text, s->n->name()});
    }

    void set_inst(const pid& p) {
        inst = p;
        std::lock_guard lk(s->mu);
        s->inst = p;
    }

    // The first live node of the list as this node sees it, and how many are live.
    std::string first_live(std::size_t& live) {
        auto up = s->n->nodes();
        std::set<std::string> connected(up.begin(), up.end());
        live = 0;
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
        return first;
    }

    // Returns whether this node wants the instance, and why not in `why`.
    bool wants(std::string& why) {
        std::size_t live = 0;
        std::string first = first_live(live);
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
            asked_at.reset();
            return;
        }
        if (!want_since) want_since = now;
        if (now - *want_since < s->spec.delay) return;
        if (asked_at && now - *asked_at < kAskTimeout) return maybe_start(self);  // a round is under way
        if (s->names->whereis(s->spec.name).ok()) return;  // the previous holder has not ended yet
        ask(self, now);
    }

    void ask(actor& self, clock_type::time_point now) {
        ++round;
        asked_at = now;
        votes = {s->n->name()};
        for (auto& nn : s->spec.nodes)
            if (nn != s->n->name())
                self.send(reg, nn, arr("kith.failover.ask", self.self(), s->spec.name, round));
        maybe_start(self);
    }

    void maybe_start(actor& self) {
        if (votes.size() * 2 <= s->spec.nodes.size() || !inst.is_null()) return;
        std::string why;
        if (!wants(why) || s->names->whereis(s->spec.name).ok()) return;
        asked_at.reset();
        start();
        if (!inst.is_null()) inst_mon = self.monitor(inst);
    }

    bool member_node(const pid& p) const {
        return std::find(s->spec.nodes.begin(), s->spec.nodes.end(), p.node) != s->spec.nodes.end() &&
               detail::on_cluster_member(*s->n, p);
    }

    // ["kith.failover.ask", From, Name, Round] -> ["kith.failover.view", Self, Name, Round, FirstLive]
    // ["kith.failover.view", ...]: a vote when FirstLive is this node.
    void on_peer(actor& self, const std::string& tag, const message& m) {
        const pid* from = m.body.at(1) ? m.body.at(1)->as_pid() : nullptr;
        const term* nm = m.body.at(2);
        auto rnd = m.body.at(3) ? m.body.at(3)->as_int() : std::nullopt;
        if (!from || !member_node(*from) || !nm || !nm->as_string() || *nm->as_string() != s->spec.name || !rnd) {
            log_to(s->spec.log, log_record{log_level::warning, "failover", "ignored a malformed or foreign \"" +
                                           escape_peer_text(tag, 40) + "\"", s->n->name()});
            return;
        }
        if (tag == "kith.failover.ask") {
            std::size_t live = 0;
            self.send(*from, arr("kith.failover.view", self.self(), s->spec.name, *rnd, first_live(live)));
            return;
        }
        const term* first = m.body.at(4);
        if (*rnd != round || !asked_at || !first || !first->as_string() || *first->as_string() != s->n->name()) return;
        votes.insert(from->node);
        maybe_start(self);
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
        } else if (tag && (*tag == "kith.failover.ask" || *tag == "kith.failover.view")) {
            on_peer(self, *tag, m);
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
    std::string reg = "kith.failover." + s_->spec.name;
    s_->controller = n.spawn([s, reg](actor& self) -> behavior {
        auto ctl = std::make_shared<failover_ctl>();
        ctl->s = s;
        ctl->reg = reg;
        s->n->monitor_nodes(self.self(), true);
        self.send(self.self(), term("kith.failover.tick"));
        return [ctl](actor& a, message& m) { ctl->handle(a, m); };
    });
    if (auto r = n.register_name(reg, s_->controller); !r.ok()) {
        n.send_exit(s_->controller, "kill");
        throw setup_error("failover service \"" + s_->spec.name + "\" cannot start on " + n.name() + ": " +
                          r.err().message() + " (is another one with this name running here?)");
    }
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
