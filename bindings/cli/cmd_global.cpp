// Availability on the command line: what `kith node` runs (avail_host.hpp)
// and the commands whereis, groups, call --global and send --global.
#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "avail_host.hpp"
#include "cli.hpp"
#include "commands.hpp"
#include "json_term.hpp"
#include "kith/failover.hpp"
#include "kith/global.hpp"
#include "kith/mailbox.hpp"
#include "kith/pg.hpp"
#include "local.hpp"

namespace kith::cli {

// ---------------------------------------------------------------- node side

struct avail_host::state {
    std::unique_ptr<global_names> names;
    std::map<std::string, std::unique_ptr<pg_scope>> scopes;
    std::vector<std::unique_ptr<failover_service>> failovers;
    std::vector<failover_spec> specs;
    pid member;  // the --join actor
};

namespace {

// The actor of a failover instance and of --join: prints what it gets and
// answers every request M with {"node", "pid", "got": M}.
pid spawn_answerer(node& nd) {
    std::string me = nd.name();
    return nd.spawn([me](actor& self, message& m) {
        if (m.is_request()) self.reply(m, term(term_map{{"node", me}, {"pid", self.self()}, {"got", m.body}}));
        if (m.is_user()) {
            std::printf("%s got %s\n", self.self().to_string().c_str(), m.body.to_string().c_str());
            std::fflush(stdout);
        }
    });
}

// "NAME=N1,N2,..." -> a spec whose instance answers every request.
failover_spec parse_failover(const std::string& v, std::chrono::milliseconds delay) {
    auto eq = v.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == v.size())
        throw cli_error{"node: --failover wants NAME=NODE1,NODE2,... (priority order), got '" + v + "'", kUsage};
    failover_spec fs;
    fs.name = v.substr(0, eq);
    for (auto& n : split(v.substr(eq + 1), ','))
        if (!n.empty()) fs.nodes.push_back(full_node_name(n));
    fs.delay = delay;
    fs.start = spawn_answerer;
    return fs;
}

}  // namespace

avail_host::avail_host(kith::node& n, const avail_options& o) : s_(std::make_shared<state>()) {
    s_->names = std::make_unique<global_names>(n);
    for (auto& sc : o.scopes) {
        if (s_->scopes.count(sc)) continue;
        try {
            s_->scopes[sc] = std::make_unique<pg_scope>(n, sc);
        } catch (const setup_error& e) {
            throw cli_error{"node: --scopes " + sc + ": " + e.what(), kUsage};
        }
    }
    if (!o.join.empty()) {
        pg_scope& first = *s_->scopes.at(o.scopes.front());
        s_->member = spawn_answerer(n);
        for (auto& g : o.join)
            if (auto r = first.join(g, s_->member); !r.ok())
                throw cli_error{"node: --join " + g + ": " + r.err().message(), kUsage};
    }
    for (auto& f : o.failovers) {
        failover_spec fs = parse_failover(f, o.failover_delay);
        try {
            s_->failovers.push_back(std::make_unique<failover_service>(n, *s_->names, fs));
        } catch (const setup_error& e) {
            throw cli_error{"node: --failover " + f + ": " + e.what() + " (list this node, " + n.name() +
                                ", and give full names NAME@HOST for other machines)",
                            kUsage};
        }
        s_->specs.push_back(std::move(fs));
    }
}

avail_host::~avail_host() {
    // Failovers first (they use the names), then the servers.
    s_->failovers.clear();
    s_->scopes.clear();
    s_->names.reset();
}

std::string avail_host::describe() const {
    std::string out;
    if (!s_->member.node.empty()) out += "member " + s_->member.to_string() + "\n";
    for (auto& fs : s_->specs) {
        out += "failover " + fs.name + " on";
        for (auto& n : fs.nodes) out += " " + n;
        out += "\n";
    }
    return out;
}

void avail_host::export_to(service& s) {
    std::weak_ptr<state> w = s_;
    auto gone = [] { return error(errc::shutdown, "the node is stopping"); };
    s.function("global_whereis", [w, gone](std::string name) -> result<term> {
        auto st = w.lock();
        if (!st || !st->names) return gone();
        auto all = st->names->registered();
        if (!all) return all.err();
        for (auto& e : *all)
            if (e.name == name) return arr(e.who, e.stamp_ms);
        return term();
    });
    s.function("global_names", [w, gone]() -> result<term> {
        auto st = w.lock();
        if (!st || !st->names) return gone();
        auto all = st->names->registered();
        if (!all) return all.err();
        term_array out;
        for (auto& e : *all) out.push_back(arr(e.name, e.who, e.stamp_ms));
        return term(std::move(out));
    });
    s.function("pg_groups", [w, gone](std::string scope) -> result<term> {
        auto st = w.lock();
        if (!st) return gone();
        auto it = st->scopes.find(scope);
        if (it == st->scopes.end()) {
            std::string have;
            for (auto& [k, v] : st->scopes) have += (have.empty() ? "" : ", ") + k;
            return error(errc::badarg, "this node runs no process-group scope \"" + scope + "\" (it runs: " +
                                           (have.empty() ? "none" : have) + "; kith node --scopes adds scopes)");
        }
        auto groups = it->second->groups();
        if (!groups) return groups.err();
        term_map out;
        for (auto& g : *groups) {
            auto m = it->second->members(g);
            if (!m) return m.err();
            term_array pids;
            for (auto& p : *m) pids.push_back(p);
            out.emplace_back(term(g), term(std::move(pids)));
        }
        return term(std::move(out));
    });
    s.function("failovers", [w, gone]() -> result<term> {
        auto st = w.lock();
        if (!st) return gone();
        term_array out;
        for (std::size_t i = 0; i < st->failovers.size(); ++i) {
            term_array nodes;
            for (auto& n : st->specs[i].nodes) nodes.push_back(n);
            pid inst = st->failovers[i]->instance();
            out.push_back(term(term_map{{"name", st->specs[i].name},
                                        {"nodes", term(std::move(nodes))},
                                        {"running_here", st->failovers[i]->running_here()},
                                        {"instance", inst.node.empty() ? term() : term(inst)}}));
        }
        return term(std::move(out));
    });
}

// ---------------------------------------------------------------- commands

namespace {

const char* kAskHelp =
    "  --at NODE         the node to ask (default: a node of your cluster on this\n"
    "                    machine, else the first one the beacons find); every\n"
    "                    node of the cluster knows every global name and group\n";

std::optional<args> global_args(const std::string& cmd, const char* usage, int argc, char** argv, std::size_t min_pos,
                                std::size_t max_pos, std::set<std::string> flags = {}) {
    auto vo = client_value_opts();
    vo.insert("--at");
    flags.insert("--json");
    args a = parse_args(cmd, argc, argv, vo, flags);
    if (a.has("--help")) {
        std::printf("%s\n%s%s", usage, kAskHelp, kClientOptionsHelp);
        return std::nullopt;
    }
    if (a.pos.size() < min_pos || a.pos.size() > max_pos)
        throw cli_error{cmd + ": wrong number of arguments (see kith " + cmd + " --help)", kUsage};
    return a;
}

void print_line(const std::string& s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

// The node to ask: --at, else a node of our cluster on this machine, else
// the first cluster member the beacons bring.
std::string node_to_ask(client& c, const args& a, const std::string& cmd) {
    if (a.has("--at")) return c.reach(a.get("--at"));
    if (!c.discovery()) throw cli_error{cmd + ": --grant is for call, cast, send, spawn and ping", kUsage};
    std::vector<std::string> here;
    for (auto& l : running_nodes(c.key_dir()))
        if (l.cluster == c.cookie().cluster) here.push_back(l.name);
    std::sort(here.begin(), here.end());
    if (!here.empty()) return c.reach(here.front());
    c.discovery()->query();
    auto end = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(c.timeout(), std::chrono::seconds(2));
    for (;;) {
        std::vector<std::string> members;
        for (auto& s : c.discovery()->seen())
            if (s.trust == trust_level::cluster) members.push_back(s.name);
        std::sort(members.begin(), members.end());
        if (!members.empty()) return c.reach(members.front());
        if (std::chrono::steady_clock::now() > end) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // polling beacons' arrival
    }
    throw cli_error{cmd + ": no node of your cluster found on this machine or the LAN; start one with `kith node`, "
                          "or name one with --at NODE; " + c.cookie().hint(c.key_dir()),
                    kFailed};
}

// Calls node:Fn on the asked node; an older node or one without the admin
// service gets a clear message.
term ask(client& c, const std::string& node, const std::string& cmd, const std::string& fn, term args) {
    auto r = c.node().call(node, "node", fn, std::move(args), c.timeout());
    if (r) return *r;
    if (r.code() == errc::no_such_service || r.code() == errc::no_such_function)
        throw cli_error{cmd + ": " + node + " does not serve global names and groups (it runs without the \"node\" "
                              "service, with --no-availability, or is an older kith); ask another with --at NODE",
                        kFailed};
    fail(cmd + " (asking " + node + ")", r.err());
}

// The pid holding `name`, as `node` knows it; noproc is a cli_error.
pid resolve(client& c, const std::string& node, const std::string& cmd, const std::string& name) {
    term w = ask(c, node, cmd, "global_whereis", arr(name));
    const term* p = w.at(0);
    if (w.is_nil() || !p || !p->is_pid())
        throw cli_error{cmd + " " + name + ": noproc: no process holds global name \"" + name + "\" (asked " + node +
                            "); run `kith whereis` to list the global names",
                        kFailed};
    return *p->as_pid();
}

}  // namespace

bool has_global_flag(int argc, char** argv) {
    for (int i = 0; i < argc; ++i)
        if (std::string(argv[i]) == "--global") return true;
    return false;
}

int cmd_whereis(int argc, char** argv) {
    auto a = global_args("whereis",
                         "usage: kith whereis [NAME] [--at NODE] [--json]\n\n"
                         "Prints the pid holding the global name NAME and its node, as a node of\n"
                         "your cluster knows it (kith/global.hpp); without NAME, every global name.\n"
                         "Exit 1 if nobody holds NAME.\n",
                         argc, argv, 0, 1);
    if (!a) return 0;
    client c(*a);
    std::string node = node_to_ask(c, *a, "whereis");
    if (a->pos.size() == 1) {
        const std::string& name = a->pos[0];
        pid p = resolve(c, node, "whereis", name);
        if (a->has("--json"))
            print_line(to_json(term(term_map{{"name", name}, {"pid", p}, {"node", p.node}})));
        else
            print_line(printable(name) + " " + p.to_string() + " on " + printable(p.node));
        return 0;
    }
    term all = ask(c, node, "whereis", "global_names", arr());
    if (a->has("--json")) {
        term_array out;
        if (auto* v = all.as_array())
            for (auto& e : *v)
                if (e.at(1) && e.at(1)->is_pid())
                    out.push_back(term(term_map{{"name", *e.at(0)}, {"pid", *e.at(1)}, {"node", e.at(1)->as_pid()->node}}));
        print_line(to_json(term(std::move(out))));
        return 0;
    }
    auto* v = all.as_array();
    if (!v || v->empty()) {
        print_line("no global names (asked " + node + ")");
        return 0;
    }
    for (auto& e : *v) {
        auto* n = e.at(0) ? e.at(0)->as_string() : nullptr;
        if (!n || !e.at(1) || !e.at(1)->is_pid()) continue;
        const pid& p = *e.at(1)->as_pid();
        print_line(printable(*n) + " " + p.to_string() + " on " + printable(p.node));
    }
    return 0;
}

int cmd_groups(int argc, char** argv) {
    auto a = global_args("groups",
                         "usage: kith groups [SCOPE] [--at NODE] [--json]\n\n"
                         "Lists the process groups of SCOPE (default: \"default\") with their\n"
                         "members across the cluster, as a node of your cluster knows them\n"
                         "(kith/pg.hpp). A pid is listed once per join.\n",
                         argc, argv, 0, 1);
    if (!a) return 0;
    std::string scope = a->pos.empty() ? "default" : a->pos[0];
    client c(*a);
    std::string node = node_to_ask(c, *a, "groups");
    term g = ask(c, node, "groups", "pg_groups", arr(scope));
    if (a->has("--json")) {
        print_line(to_json(g));
        return 0;
    }
    auto* m = g.as_map();
    if (!m || m->empty()) {
        print_line("no groups in scope " + printable(scope) + " (asked " + node + ")");
        return 0;
    }
    for (auto& [k, v] : *m) {
        std::string line = printable(k.as_string() ? *k.as_string() : k.to_string());
        if (auto* pids = v.as_array())
            for (auto& p : *pids) line += " " + (p.as_pid() ? p.as_pid()->to_string() : p.to_string());
        print_line(line);
    }
    return 0;
}

namespace {

// call/send --global NAME MESSAGE: the message parsed, the holder of NAME
// found and its node connected; nullopt after --help.
struct holder {
    std::unique_ptr<client> c;
    std::string name;
    term msg;
    pid to;
};

std::optional<holder> reach_holder(const std::string& cmd, const char* usage, int argc, char** argv) {
    auto a = global_args(cmd, usage, argc, argv, 2, 2, {"--global"});
    if (!a) return std::nullopt;
    auto msg = parse_json(a->pos[1]);
    if (!msg) throw cli_error{cmd + ": message: " + msg.err().detail, kUsage};
    holder h{std::make_unique<client>(*a), a->pos[0], std::move(*msg), pid{}};
    const std::string what = cmd + " --global";
    h.to = resolve(*h.c, node_to_ask(*h.c, *a, what), what, h.name);
    h.c->reach(h.to.node);
    return h;
}

}  // namespace

int call_global(int argc, char** argv) {
    auto h = reach_holder("call",
                          "usage: kith call --global NAME MESSAGE [--at NODE]\n\n"
                          "Sends MESSAGE (one JSON value) as a request to the process holding the\n"
                          "global name NAME, wherever it runs, and prints its reply as JSON. The\n"
                          "name is looked up at each call, so after a failover the call reaches\n"
                          "the new instance. The process must answer requests (an actor's reply).\n",
                          argc, argv);
    if (!h) return 0;
    mailbox mb(h->c->node());
    auto r = mb.call(h->to, std::move(h->msg), h->c->timeout());
    if (!r) {
        if (r.code() == errc::timeout)
            throw cli_error{"call --global " + h->name + ": timeout: " + h->to.to_string() + " did not answer within " +
                                std::to_string(h->c->timeout().count()) +
                                " ms (does it answer requests? kith send --global sends without waiting)",
                            kFailed};
        fail("call --global " + h->name + " (" + h->to.to_string() + ")", r.err());
    }
    print_line(to_json(*r));
    return 0;
}

int send_global(int argc, char** argv) {
    auto h = reach_holder("send",
                          "usage: kith send --global NAME MESSAGE [--at NODE]\n\n"
                          "Sends MESSAGE (one JSON value) to the process holding the global name\n"
                          "NAME, wherever it runs (at most once, as any send).\n",
                          argc, argv);
    if (!h) return 0;
    h->c->node().send(h->to, std::move(h->msg));
    return 0;
}

}  // namespace kith::cli
