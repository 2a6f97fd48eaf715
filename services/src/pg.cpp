// Process groups (kith/pg.hpp).
//
// Two halves share one pg_table under a mutex:
//   * the API (any thread) reads it, and applies LOCAL joins and leaves at
//     once, queueing them in `outbox` and nudging the scope server ("kick");
//   * the scope server actor owns everything about peers: it monitors local
//     members and subscribers, broadcasts the outbox to peer servers, and
//     applies what peers send.
// The API never sends the server content, only a kick: a forged kick is
// harmless, so no local code can inject memberships by messaging the server.
// Subscriber events are sent while the table lock is held, so a subscriber's
// snapshot (monitor()) and its event stream never overlap or miss a change.
#include "kith/pg.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <set>

#include "kith/actor.hpp"
#include "kith/principal.hpp"
#include "table_server.hpp"

namespace kith {
namespace detail {

struct pg_event {
    bool join = true;
    std::string group;
    std::vector<pid> pids;
};

struct pg_table {
    node* n = nullptr;
    std::string scope, reg_name;
    log_sink log;
    pid server;

    std::mutex mu;
    std::map<std::string, std::vector<pid>> local;                         // group -> pids
    std::map<std::string, std::map<std::string, std::vector<pid>>> remote;  // node -> group -> pids
    std::vector<pid> subs;
    std::vector<pid> new_subs;    // for the server to monitor
    std::vector<pg_event> outbox;  // local changes not yet broadcast

    void notify_locked(bool join, const std::string& group, const std::vector<pid>& pids) {
        if (pids.empty()) return;
        term_array ps(pids.begin(), pids.end());
        term ev = arr("pg", scope, join ? "join" : "leave", group, term(std::move(ps)));
        for (auto& s : subs) n->send(s, ev);
    }
    void say(log_level lv, const std::string& text) { log_to(log, log_record{lv, "pg", text, n->name()}); }
};

}  // namespace detail

namespace {

using detail::pg_event;
using detail::pg_table;

constexpr std::size_t kMaxGroupName = 255;

bool valid_scope(const std::string& s) {
    if (s.empty() || s.size() > 64) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    });
}

error refused(const char* what) {
    return error{errc::unauthorized, std::string("process groups are for cluster members and local code; ") +
                                         current_principal().describe() + " may not " + what};
}

term pids_term(const std::vector<pid>& v) { return term(term_array(v.begin(), v.end())); }

// Removes from `have` one occurrence of each of `gone`; returns those found.
std::vector<pid> remove_some(std::vector<pid>& have, const std::vector<pid>& gone) {
    std::vector<pid> out;
    for (auto& p : gone) {
        auto it = std::find(have.begin(), have.end(), p);
        if (it != have.end()) {
            have.erase(it);
            out.push_back(p);
        }
    }
    return out;
}

// The scope server. Only its own handler touches this.
struct pg_server {
    std::shared_ptr<pg_table> t;
    std::map<std::string, pid> peers;  // node -> its scope server
    std::map<pid, ref> member_mons, sub_mons, peer_mons;
    std::uint64_t refusals = 0;

    void refuse(const std::string& why) {
        // Only members can reach us, but stay bounded anyway.
        if (++refusals <= 20) t->say(log_level::warning, "scope " + t->scope + ": ignored " + why);
    }

    void discover(actor& self, const std::string& node_name) {
        auto info = t->n->info(node_name);
        if (!info || info->trust != trust_level::cluster) return;
        self.send(t->reg_name, node_name, arr("kith.pg.discover", self.self()));
    }

    // Broadcasts the outbox, monitors new members and subscribers, and
    // drops monitors of pids that are no longer local members.
    void flush(actor& self) {
        std::vector<pg_event> evs;
        std::vector<pid> subs;
        std::set<pid> still;
        {
            std::lock_guard lk(t->mu);
            evs.swap(t->outbox);
            subs.swap(t->new_subs);
            for (auto& [g, ps] : t->local) still.insert(ps.begin(), ps.end());
        }
        for (auto& e : evs) {
            term msg = arr(e.join ? "kith.pg.join" : "kith.pg.leave", self.self(), e.group, pids_term(e.pids));
            for (auto& [nn, p] : peers) self.send(p, msg);
            if (e.join)
                for (auto& p : e.pids)
                    if (!member_mons.count(p) && still.count(p)) member_mons[p] = self.monitor(p);
        }
        for (auto it = member_mons.begin(); it != member_mons.end();) {
            if (still.count(it->first)) {
                ++it;
                continue;
            }
            self.demonitor(it->second);
            it = member_mons.erase(it);
        }
        for (auto& s : subs)
            if (!sub_mons.count(s)) sub_mons[s] = self.monitor(s);
    }

    void send_sync(actor& self, const pid& to) {
        flush(self);  // what the peer already has + the outbox = the snapshot below
        term_map m;
        {
            std::lock_guard lk(t->mu);
            for (auto& [g, ps] : t->local)
                if (!ps.empty()) m.emplace_back(term(g), pids_term(ps));
        }
        self.send(to, arr("kith.pg.sync", self.self(), term(std::move(m))));
    }

    void add_peer(actor& self, const pid& p) {
        auto it = peers.find(p.node);
        if (it != peers.end() && it->second == p) return;
        if (it != peers.end()) drop_peer(it->first);  // a restarted server replaces the old one
        peers[p.node] = p;
        peer_mons[p] = self.monitor(p);
    }

    void drop_peer(const std::string& node_name) {
        if (auto it = peers.find(node_name); it != peers.end()) {
            peer_mons.erase(it->second);
            peers.erase(it);
        }
        std::lock_guard lk(t->mu);
        auto it = t->remote.find(node_name);
        if (it == t->remote.end()) return;
        for (auto& [g, ps] : it->second) t->notify_locked(false, g, ps);
        t->remote.erase(it);
    }

    // The pids of `list` that live on `node_name` (others are dropped).
    std::vector<pid> own_pids(const term* list, const std::string& node_name) {
        std::vector<pid> out;
        if (!list || !list->as_array()) return out;
        for (auto& e : *list->as_array()) {
            const pid* p = e.as_pid();
            if (p && !p->is_null() && p->node == node_name) out.push_back(*p);
            else refuse("a pid of another node in a membership from " + node_name);
        }
        return out;
    }

    void on_sync(const pid& from, const term* groups) {
        if (!groups || !groups->as_map()) return refuse("a malformed sync from " + from.node);
        std::map<std::string, std::vector<pid>> fresh;
        for (auto& [k, v] : *groups->as_map()) {
            const std::string* g = k.as_string();
            if (!g || g->empty() || g->size() > kMaxGroupName) continue;
            auto ps = own_pids(&v, from.node);
            auto& slot = fresh[*g];
            slot.insert(slot.end(), ps.begin(), ps.end());
        }
        std::lock_guard lk(t->mu);
        auto& old = t->remote[from.node];
        std::set<std::string> names;
        for (auto& [g, _] : old) names.insert(g);
        for (auto& [g, _] : fresh) names.insert(g);
        for (auto& g : names) {
            std::vector<pid> a = old.count(g) ? old[g] : std::vector<pid>{};
            std::vector<pid> b = fresh.count(g) ? fresh[g] : std::vector<pid>{};
            std::sort(a.begin(), a.end());
            std::sort(b.begin(), b.end());
            std::vector<pid> gone, added;
            std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(gone));
            std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(added));
            t->notify_locked(false, g, gone);
            t->notify_locked(true, g, added);
        }
        old = std::move(fresh);
    }

    void on_change(bool join, const pid& from, const term* group, const term* list) {
        const std::string* g = group ? group->as_string() : nullptr;
        if (!g || g->empty() || g->size() > kMaxGroupName) return refuse("a malformed join/leave from " + from.node);
        auto ps = own_pids(list, from.node);
        std::lock_guard lk(t->mu);
        auto& slot = t->remote[from.node][*g];
        if (join) {
            slot.insert(slot.end(), ps.begin(), ps.end());
            t->notify_locked(true, *g, ps);
        } else {
            t->notify_locked(false, *g, remove_some(slot, ps));
        }
        if (slot.empty()) t->remote[from.node].erase(*g);
    }

    void on_down(actor& self, const message& m) {
        if (auto it = peer_mons.find(m.from); it != peer_mons.end()) {
            if (peers.count(m.from.node) && peers[m.from.node] == m.from) drop_peer(m.from.node);
            peer_mons.erase(m.from);
            return;
        }
        if (member_mons.erase(m.from)) {
            std::lock_guard lk(t->mu);
            for (auto& [g, ps] : t->local) {
                std::vector<pid> gone;
                std::erase_if(ps, [&](const pid& p) {
                    if (p != m.from) return false;
                    gone.push_back(p);
                    return true;
                });
                if (gone.empty()) continue;
                t->notify_locked(false, g, gone);
                t->outbox.push_back(pg_event{false, g, gone});
            }
            std::erase_if(t->local, [](auto& kv) { return kv.second.empty(); });
        }
        if (sub_mons.erase(m.from)) {
            std::lock_guard lk(t->mu);
            std::erase(t->subs, m.from);
        }
        flush(self);
    }

    void handle(actor& self, message& m) {
        auto pm = detail::route_table_message(
            *this, self, m, "kith.pg.kick", "scope server", [&](const std::string& nn) { discover(self, nn); },
            [&](const std::string& nn) { drop_peer(nn); });
        if (!pm) return;
        const std::string* tag = &pm->tag;
        const pid* from = &pm->from;
        if (*tag == "kith.pg.discover") {
            add_peer(self, *from);
            send_sync(self, *from);
        } else if (*tag == "kith.pg.sync") {
            add_peer(self, *from);
            on_sync(*from, m.body.at(2));
        } else if (*tag == "kith.pg.join" || *tag == "kith.pg.leave") {
            auto it = peers.find(from->node);
            if (it == peers.end() || it->second != *from) return refuse("a change from an unknown scope server " + from->to_string());
            on_change(*tag == "kith.pg.join", *from, m.body.at(2), m.body.at(3));
        }
    }
};

}  // namespace

pg_scope::pg_scope(node& n, std::string scope, log_sink log) : n_(&n), t_(std::make_shared<pg_table>()) {
    if (!valid_scope(scope))
        throw setup_error("pg scope name \"" + escape_peer_text(scope, 80) + "\" is invalid: use 1-64 of [A-Za-z0-9._-]");
    t_->n = &n;
    t_->scope = std::move(scope);
    t_->reg_name = "kith.pg." + t_->scope;
    t_->log = std::move(log);
    // A node discovered twice is harmless (sync replaces).
    auto r = detail::start_table_server<pg_server>(
        n, t_->reg_name, t_, [](pg_server& srv, actor& self, const std::string& nn) { srv.discover(self, nn); });
    if (!r.ok()) {
        throw setup_error("pg scope \"" + t_->scope + "\" cannot start on " + n.name() + ": " + r.err().message() +
                          " (is another pg_scope for it running?)");
    }
}

pg_scope::~pg_scope() {
    n_->monitor_nodes(t_->server, false);
    n_->send_exit(t_->server, "kill");
}

const std::string& pg_scope::scope() const noexcept { return t_->scope; }
const pid& pg_scope::server() const noexcept { return t_->server; }

result<void> pg_scope::join(const std::string& group, const pid& who) {
    if (current_principal().restricted()) return refused("join a group");
    if (group.empty() || group.size() > kMaxGroupName) return error{errc::badarg, "group names are 1-255 bytes"};
    if (who.is_null() || who.node != n_->name())
        return error{errc::badarg, "only pids of this node (" + n_->name() + ") can join; got " + who.to_string() +
                                       " — join on the member's own node"};
    {
        std::lock_guard lk(t_->mu);
        t_->local[group].push_back(who);
        t_->outbox.push_back(pg_event{true, group, {who}});
        t_->notify_locked(true, group, {who});
    }
    n_->send(t_->server, arr("kith.pg.kick"));
    return {};
}

result<void> pg_scope::leave(const std::string& group, const pid& who) {
    if (current_principal().restricted()) return refused("leave a group");
    {
        std::lock_guard lk(t_->mu);
        auto it = t_->local.find(group);
        auto gone = it == t_->local.end() ? std::vector<pid>{} : remove_some(it->second, {who});
        if (gone.empty())
            return error{errc::badarg, who.to_string() + " is not a local member of \"" + group + "\" in scope " + t_->scope};
        if (it->second.empty()) t_->local.erase(it);
        t_->outbox.push_back(pg_event{false, group, gone});
        t_->notify_locked(false, group, gone);
    }
    n_->send(t_->server, arr("kith.pg.kick"));
    return {};
}

result<std::vector<pid>> pg_scope::members(const std::string& group) const {
    if (current_principal().restricted()) return refused("list group members");
    std::lock_guard lk(t_->mu);
    std::vector<pid> out;
    if (auto it = t_->local.find(group); it != t_->local.end()) out = it->second;
    for (auto& [nn, groups] : t_->remote)
        if (auto it = groups.find(group); it != groups.end()) out.insert(out.end(), it->second.begin(), it->second.end());
    return out;
}

result<std::vector<pid>> pg_scope::local_members(const std::string& group) const {
    if (current_principal().restricted()) return refused("list group members");
    std::lock_guard lk(t_->mu);
    auto it = t_->local.find(group);
    return it == t_->local.end() ? std::vector<pid>{} : it->second;
}

result<std::vector<std::string>> pg_scope::groups() const {
    if (current_principal().restricted()) return refused("list groups");
    std::lock_guard lk(t_->mu);
    std::set<std::string> gs;
    for (auto& [g, ps] : t_->local)
        if (!ps.empty()) gs.insert(g);
    for (auto& [nn, groups] : t_->remote)
        for (auto& [g, ps] : groups)
            if (!ps.empty()) gs.insert(g);
    return std::vector<std::string>(gs.begin(), gs.end());
}

result<std::size_t> pg_scope::send_all(const std::string& group, const term& msg) const {
    if (current_principal().restricted()) return refused("send to a group");
    auto ms = members(group);
    if (!ms.ok()) return ms.err();
    std::set<pid> once(ms->begin(), ms->end());
    for (auto& p : once) n_->send(p, msg);
    return once.size();
}

result<term> pg_scope::monitor(const pid& who, bool on) {
    if (current_principal().restricted()) return refused("watch a scope");
    if (who.is_null() || who.node != n_->name()) return error{errc::badarg, "only local pids can watch a scope"};
    term_map snapshot;
    {
        std::lock_guard lk(t_->mu);
        std::erase(t_->subs, who);
        if (!on) return term();
        t_->subs.push_back(who);
        t_->new_subs.push_back(who);
        std::map<std::string, std::vector<pid>> all = t_->local;
        for (auto& [nn, groups] : t_->remote)
            for (auto& [g, ps] : groups) all[g].insert(all[g].end(), ps.begin(), ps.end());
        for (auto& [g, ps] : all)
            if (!ps.empty()) snapshot.emplace_back(term(g), pids_term(ps));
    }
    n_->send(t_->server, arr("kith.pg.kick"));
    return term(std::move(snapshot));
}

}  // namespace kith
