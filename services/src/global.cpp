// Global names (kith/global.hpp). Built like pg.cpp: the API (any thread)
// reads the table and applies LOCAL registrations at once, queueing them in
// `outbox` and nudging the name server with a contentless "kick"; the name
// server actor owns everything about peers: it monitors local holders,
// broadcasts the outbox, applies what peers send and resolves conflicts.
// A forged kick is harmless, so no local code can inject names by messaging
// the server, and kith itself refuses messages to registered names from
// non-members.
#include "kith/global.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <set>

#include "kith/actor.hpp"
#include "kith/principal.hpp"
#include "table_server.hpp"

namespace kith {
namespace detail {

struct gentry {
    pid who;
    std::int64_t stamp = 0;
};

struct global_event {
    bool reg = true;
    std::string name;
    gentry e;
};

struct global_table {
    node* n = nullptr;
    log_sink log;
    pid server;

    std::mutex mu;
    std::map<std::string, gentry> local;                           // name -> this node's holder
    std::map<std::string, std::map<std::string, gentry>> remote;  // node -> name -> holder
    std::vector<global_event> outbox;                              // local changes not yet broadcast

    // THE RULE (see the header): smaller stamp, then smaller node name.
    static bool beats(const gentry& a, const gentry& b) {
        if (a.stamp != b.stamp) return a.stamp < b.stamp;
        return a.who.node < b.who.node;
    }
    // The winning entry for `name` among every entry known here (lock held).
    const gentry* winner_locked(const std::string& name) const {
        const gentry* best = nullptr;
        if (auto it = local.find(name); it != local.end()) best = &it->second;
        for (auto& [nn, names] : remote)
            if (auto it = names.find(name); it != names.end())
                if (!best || beats(it->second, *best)) best = &it->second;
        return best;
    }
    void say(log_level lv, const std::string& text) { log_to(log, log_record{lv, "global", text, n->name()}); }
};

}  // namespace detail

namespace {

using detail::gentry;
using detail::global_event;
using detail::global_table;

constexpr std::size_t kMaxName = 255;
const std::string kRegName = "kith.global";

error refused(const char* what) {
    return error{errc::unauthorized, std::string("global names are for cluster members and local code; ") +
                                         current_principal().describe() + " may not " + what};
}

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

term entry_term(const std::string& name, const gentry& e) { return arr(name, e.who, e.stamp); }

// The name server. Only its own handler touches this.
struct global_server {
    std::shared_ptr<global_table> t;
    std::map<std::string, pid> peers;  // node -> its name server
    std::map<pid, ref> holder_mons, peer_mons;
    std::uint64_t refusals = 0;

    void refuse(const std::string& why) {
        if (++refusals <= 20) t->say(log_level::warning, "ignored " + why);
    }

    // Broadcasts the outbox; monitors new holders, drops monitors of pids
    // that hold no name any more.
    void flush(actor& self) {
        std::vector<global_event> evs;
        std::set<pid> still;
        {
            std::lock_guard lk(t->mu);
            evs.swap(t->outbox);
            for (auto& [nm, e] : t->local) still.insert(e.who);
        }
        for (auto& ev : evs) {
            term msg = ev.reg ? arr("kith.global.reg", self.self(), entry_term(ev.name, ev.e))
                              : arr("kith.global.unreg", self.self(), entry_term(ev.name, ev.e));
            for (auto& [nn, p] : peers) self.send(p, msg);
        }
        for (auto& p : still)
            if (!holder_mons.count(p)) holder_mons[p] = self.monitor(p);
        for (auto it = holder_mons.begin(); it != holder_mons.end();) {
            if (still.count(it->first)) {
                ++it;
                continue;
            }
            self.demonitor(it->second);
            it = holder_mons.erase(it);
        }
    }

    // This node's table, after flushing, so that peers already sent the
    // outbox get it once and new peers get it in the snapshot.
    term snapshot(actor& self) {
        flush(self);
        term_array out;
        std::lock_guard lk(t->mu);
        for (auto& [nm, e] : t->local) out.push_back(entry_term(nm, e));
        return term(std::move(out));
    }

    void hello(actor& self, const std::string& node_name) {
        auto info = t->n->info(node_name);
        if (!info || info->trust != trust_level::cluster) return;
        self.send(kRegName, node_name, arr("kith.global.hello", self.self(), snapshot(self)));
    }

    void add_peer(actor& self, const pid& p) {
        auto it = peers.find(p.node);
        if (it != peers.end() && it->second == p) return;
        if (it != peers.end()) drop_peer(self, it->first);  // a restarted server replaces the old one
        peers[p.node] = p;
        peer_mons[p] = self.monitor(p);
    }

    void drop_peer(actor& self, const std::string& node_name) {
        if (auto it = peers.find(node_name); it != peers.end()) {
            if (auto m = peer_mons.find(it->second); m != peer_mons.end()) {
                self.demonitor(m->second);
                peer_mons.erase(m);
            }
            peers.erase(it);
        }
        std::lock_guard lk(t->mu);
        t->remote.erase(node_name);
    }

    // Parses [Name, Pid, Stamp] from `from_node`; false (and a log line) if
    // malformed or not that node's pid.
    bool parse(const term* e, const std::string& from_node, std::string& name, gentry& out) {
        const term_array* a = e ? e->as_array() : nullptr;
        if (!a || a->size() != 3) return refuse("a malformed entry from " + from_node), false;
        const std::string* nm = (*a)[0].as_string();
        const pid* p = (*a)[1].as_pid();
        auto st = (*a)[2].as_int();
        if (!nm || nm->empty() || nm->size() > kMaxName || !p || !st) return refuse("a malformed entry from " + from_node), false;
        if (p->node != from_node) return refuse("a name for a pid of another node from " + from_node), false;
        name = *nm;
        out = gentry{*p, *st};
        return true;
    }

    // After remote entries changed: every local registration that now loses
    // to a remote one is removed here, announced, and its pid told.
    void resolve_locked(const std::vector<std::string>& names, std::vector<std::pair<pid, std::string>>& losers) {
        for (auto& nm : names) {
            auto it = t->local.find(nm);
            if (it == t->local.end()) continue;
            const gentry* w = t->winner_locked(nm);
            if (!w || w == &it->second) continue;
            t->say(log_level::warning, "global name \"" + escape_peer_text(nm, 80) + "\" was also held by " +
                                           w->who.to_string() + ", registered earlier: " + it->second.who.to_string() +
                                           " here loses it and gets exit global_name_conflict");
            losers.emplace_back(it->second.who, nm);
            t->outbox.push_back(global_event{false, nm, it->second});
            t->local.erase(it);
        }
    }

    void tell_losers(actor& self, const std::vector<std::pair<pid, std::string>>& losers) {
        for (auto& [p, nm] : losers) t->n->send_exit(p, arr("global_name_conflict", nm));
        if (!losers.empty()) flush(self);
    }

    void on_table(actor& self, const pid& from, const term* list) {
        if (!list || !list->as_array()) return refuse("a malformed table from " + from.node);
        std::map<std::string, gentry> fresh;
        for (auto& e : *list->as_array()) {
            std::string nm;
            gentry g;
            if (parse(&e, from.node, nm, g)) fresh[nm] = g;
        }
        std::vector<std::string> names;
        for (auto& [nm, _] : fresh) names.push_back(nm);
        std::vector<std::pair<pid, std::string>> losers;
        {
            std::lock_guard lk(t->mu);
            t->remote[from.node] = std::move(fresh);
            resolve_locked(names, losers);
        }
        tell_losers(self, losers);
    }

    void on_change(actor& self, bool reg, const pid& from, const term* e) {
        std::string nm;
        gentry g;
        if (!parse(e, from.node, nm, g)) return;
        std::vector<std::pair<pid, std::string>> losers;
        {
            std::lock_guard lk(t->mu);
            auto& names = t->remote[from.node];
            if (reg) {
                names[nm] = g;
                resolve_locked({nm}, losers);
            } else if (auto it = names.find(nm); it != names.end() && it->second.who == g.who) {
                names.erase(it);
            }
        }
        tell_losers(self, losers);
    }

    void on_down(actor& self, const message& m) {
        if (auto it = peer_mons.find(m.from); it != peer_mons.end()) {
            peer_mons.erase(it);
            if (peers.count(m.from.node) && peers[m.from.node] == m.from) drop_peer(self, m.from.node);
            return;
        }
        if (holder_mons.erase(m.from)) {
            std::lock_guard lk(t->mu);
            for (auto it = t->local.begin(); it != t->local.end();) {
                if (it->second.who != m.from) {
                    ++it;
                    continue;
                }
                t->outbox.push_back(global_event{false, it->first, it->second});
                it = t->local.erase(it);
            }
        }
        flush(self);
    }

    void handle(actor& self, message& m) {
        auto pm = detail::route_table_message(
            *this, self, m, "kith.global.kick", "name server", [&](const std::string& nn) { hello(self, nn); },
            [&](const std::string& nn) { drop_peer(self, nn); });
        if (!pm) return;
        const std::string* tag = &pm->tag;
        const pid* from = &pm->from;
        if (*tag == "kith.global.hello") {
            add_peer(self, *from);
            on_table(self, *from, m.body.at(2));
            self.send(*from, arr("kith.global.sync", self.self(), snapshot(self)));
        } else if (*tag == "kith.global.sync") {
            add_peer(self, *from);
            on_table(self, *from, m.body.at(2));
        } else if (*tag == "kith.global.reg" || *tag == "kith.global.unreg") {
            auto it = peers.find(from->node);
            if (it == peers.end() || it->second != *from)
                return refuse("a change from an unknown name server " + from->to_string());
            on_change(self, *tag == "kith.global.reg", *from, m.body.at(2));
        }
    }
};

}  // namespace

global_names::global_names(node& n, log_sink log) : n_(&n), t_(std::make_shared<global_table>()) {
    t_->n = &n;
    t_->log = std::move(log);
    // A node met twice gets two hellos, which is harmless (a table replaces
    // the previous one).
    auto r = detail::start_table_server<global_server>(
        n, kRegName, t_, [](global_server& srv, actor& self, const std::string& nn) { srv.hello(self, nn); });
    if (!r.ok()) {
        throw setup_error("global names cannot start on " + n.name() + ": " + r.err().message() +
                          " (is another global_names running on this node?)");
    }
}

global_names::~global_names() {
    n_->monitor_nodes(t_->server, false);
    n_->send_exit(t_->server, "kill");
}

const pid& global_names::server() const noexcept { return t_->server; }

result<void> global_names::register_name(const std::string& name, const pid& who) {
    if (current_principal().restricted()) return refused("register a global name");
    if (name.empty() || name.size() > kMaxName) return error{errc::badarg, "global names are 1-255 bytes"};
    if (who.is_null() || who.node != n_->name())
        return error{errc::badarg, "only pids of this node (" + n_->name() + ") can be registered here; got " +
                                       who.to_string() + " — register on the pid's own node"};
    if (!n_->alive(who)) return error{errc::noproc, who.to_string() + " is not alive; register a running actor"};
    {
        std::lock_guard lk(t_->mu);
        if (const gentry* w = t_->winner_locked(name))
            return error{errc::badarg, "global name \"" + name + "\" is held by " + w->who.to_string() +
                                           "; unregister it there (or wait until it ends) first"};
        gentry e{who, now_ms()};
        t_->local[name] = e;
        t_->outbox.push_back(global_event{true, name, e});
    }
    n_->send(t_->server, arr("kith.global.kick"));
    return {};
}

result<void> global_names::unregister_name(const std::string& name) {
    if (current_principal().restricted()) return refused("unregister a global name");
    {
        std::lock_guard lk(t_->mu);
        auto it = t_->local.find(name);
        if (it == t_->local.end())
            return error{errc::badarg, "global name \"" + name + "\" is not held by a pid of " + n_->name() +
                                           "; unregister it on its holder's node"};
        t_->outbox.push_back(global_event{false, name, it->second});
        t_->local.erase(it);
    }
    n_->send(t_->server, arr("kith.global.kick"));
    return {};
}

result<pid> global_names::whereis(const std::string& name) const {
    if (current_principal().restricted()) return refused("look up a global name");
    std::lock_guard lk(t_->mu);
    if (const gentry* w = t_->winner_locked(name)) return w->who;
    return error{errc::noproc, "no pid holds the global name \"" + name + "\" as far as " + n_->name() +
                                   " knows (not registered, ended, or its node is down)"};
}

result<void> global_names::send(const std::string& name, const term& msg) const {
    auto w = whereis(name);
    if (!w.ok()) return w.err();
    n_->send(*w, msg);
    return {};
}

result<std::vector<global_entry>> global_names::registered() const {
    if (current_principal().restricted()) return refused("list global names");
    std::lock_guard lk(t_->mu);
    std::set<std::string> names;
    for (auto& [nm, _] : t_->local) names.insert(nm);
    for (auto& [nn, m] : t_->remote)
        for (auto& [nm, _] : m) names.insert(nm);
    std::vector<global_entry> out;
    for (auto& nm : names)
        if (const gentry* w = t_->winner_locked(nm)) out.push_back(global_entry{nm, w->who, w->stamp});
    return out;
}

}  // namespace kith
