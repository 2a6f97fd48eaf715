// The replicated kvs (kith/rkvs.hpp): the service's functions, the write and
// read rounds, and the anti-entropy actor. The CRDT map itself is in
// rkvs_table.cpp.
//
// Every piece shares one rkvs_state under a mutex. Service functions run on
// kith threads and never block: store/delete/lookup answer through a
// reply_to once the replicas' answers (call_async) are in. Whole-map pushes
// (nodeup, digest mismatch) are done by the anti-entropy actor, never on an
// I/O thread; a service function only asks it with a ["push", Node] message
// (a forged one is harmless: it only causes a push to a replica).
#include "kith/rkvs.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <mutex>
#include <set>

#include "kith/actor.hpp"
#include "kith/principal.hpp"
#include "rkvs_table.hpp"

namespace kith {
namespace detail {

struct rkvs_state : std::enable_shared_from_this<rkvs_state> {
    node* n = nullptr;
    rkvs_options o;
    std::size_t w = 0;
    pid actor;

    std::mutex mu;
    bool closed = false;
    hlc clock;
    rkvs_map map{o};
    std::atomic<std::uint64_t> refused{0};  // log records of refusals (the first 20 are logged)

    void say(log_level lv, const std::string& text) { log_to(o.log, log_record{lv, "rkvs", text, n->name()}); }

    // The other replicas this node is connected to as cluster members.
    std::vector<std::string> live_peers() const {
        std::vector<std::string> out;
        for (auto& r : o.replicas) {
            if (r == n->name()) continue;
            auto info = n->info(r);
            if (info && info->trust == trust_level::cluster) out.push_back(r);
        }
        return out;
    }
    bool listed(const std::string& node_name) const {
        return std::find(o.replicas.begin(), o.replicas.end(), node_name) != o.replicas.end();
    }
    // Replica-to-replica functions answer local code and listed members only.
    result<void> replica_caller() const {
        const principal& p = current_principal();
        if (p.what == principal::kind::local) return {};
        if (p.what == principal::kind::member && listed(p.node)) return {};
        return error{errc::unauthorized, "the replicated kvs's replica functions are for its replicas (" +
                                             std::to_string(o.replicas.size()) + " listed nodes); " + p.describe() +
                                             " may call store, lookup, delete and keys instead"};
    }
    error closed_error() const {
        return error{errc::shutdown, "the replicated kvs \"" + o.service + "\" on " + n->name() + " was stopped"};
    }

    // Merges wire entries (a [Entry...] array); returns the counts.
    merge_counts merge_wire(const term& entries, const std::string& from) {
        merge_counts c;
        const term_array* a = entries.as_array();
        std::lock_guard lk(mu);
        if (!a) {
            c.refused = 1;
            c.first_refusal = "entries that are not an array";
        } else {
            std::int64_t now = hlc::wall_ms();
            for (auto& t : *a) {
                std::string key, why;
                rkvs_entry e;
                if (!parse_entry(t, key, e, why)) {
                    if (c.refused++ == 0) c.first_refusal = why;
                    continue;
                }
                clock.observe(e.stamp);
                map.merge(key, e, c, now);
            }
        }
        if (c.refused && ++refused <= 20)
            say(log_level::warning, "refused " + std::to_string(c.refused) + " entries from " + from + ": " +
                                        escape_peer_text(c.first_refusal, 120) +
                                        " (check that every replica runs with the same limits)");
        return c;
    }

    void write(reply_to r, const std::string& key, std::optional<term> value);
    void read(reply_to r, const std::string& key);
    void push(const std::string& to);
};

namespace {

constexpr std::size_t kChunkBytes = 256 * 1024;  // well below kith's 1 MiB message limit

struct write_round {
    std::mutex mu;
    reply_to r;
    std::size_t pending = 0, stored = 1;  // the coordinator's own copy
    std::string failures;
    term answer;
};

struct read_round {
    std::mutex mu;
    reply_to r;
    std::size_t pending = 0;
    std::string key;
    std::optional<rkvs_entry> best;
    std::vector<std::pair<std::string, std::optional<rkvs_entry>>> answers;
};

}  // namespace

void rkvs_state::write(reply_to r, const std::string& key, std::optional<term> value) {
    auto peers = live_peers();
    if (peers.size() + 1 < w) {
        r.fail(errc::nodedown, "the replicated kvs on " + n->name() + " reaches " + std::to_string(peers.size() + 1) +
                                   " of its " + std::to_string(o.replicas.size()) + " replicas and needs " +
                                   std::to_string(w) + " to write; nothing was stored. Retry when the replicas "
                                   "are back, or write through a replica on the majority side");
        return;
    }
    rkvs_entry e;
    bool existed = false;
    {
        std::lock_guard lk(mu);
        if (closed) return r(closed_error());
        if (auto c = map.check_write(key, value); !c.ok()) return r(c.err());
        const rkvs_entry* old = map.find(key);
        existed = old && old->value;
        e.value = std::move(value);
        e.stamp = clock.now();
        e.node = n->name();
        merge_counts c;
        map.merge(key, e, c, hlc::wall_ms());
    }
    auto round = std::make_shared<write_round>();
    round->r = std::move(r);
    round->answer = e.value ? term(true) : term(existed);
    round->pending = peers.size();
    auto finish = [self = shared_from_this(), round] {  // round lock held
        auto w = self->w;
        auto& o = self->o;
        if (round->stored >= w) return round->r(result<term>(round->answer));
        round->r(error{errc::timeout, "stored on " + std::to_string(round->stored) + " of " +
                                          std::to_string(o.replicas.size()) + " replicas, " + std::to_string(w) +
                                          " needed (" + round->failures +
                                          "): NOT acknowledged, but it may still appear later where it was stored; "
                                          "retry, or look it up to see"});
    };
    if (peers.empty()) {
        std::lock_guard lk(round->mu);
        return finish();
    }
    term args = arr(term(term_array{entry_term(key, e)}));
    for (auto& p : peers) {
        n->call_async(p, o.service, "kith.merge", args, o.ack_timeout, [round, p, finish](result<term> res) {
            std::lock_guard lk(round->mu);
            if (res.ok()) ++round->stored;
            else round->failures += (round->failures.empty() ? "" : "; ") + p + ": " + res.err().message();
            if (--round->pending == 0) finish();
        });
    }
}

void rkvs_state::read(reply_to r, const std::string& key) {
    auto peers = live_peers();
    auto round = std::make_shared<read_round>();
    round->r = std::move(r);
    round->key = key;
    {
        std::lock_guard lk(mu);
        if (closed) return round->r(closed_error());
        if (auto* e = map.find(key)) round->best = *e;
    }
    auto finish = [self = shared_from_this(), round] {  // round lock held
        node* n = self->n;
        auto& o = self->o;
        if (round->best) {
            // Read repair: keep the newest here, and give it to stale replicas.
            self->merge_wire(term(term_array{entry_term(round->key, *round->best)}), n->name());
            term args = arr(term(term_array{entry_term(round->key, *round->best)}));
            for (auto& [p, had] : round->answers)
                if (!had || newer(*round->best, *had)) (void)n->cast(p, o.service, "kith.merge", args);
        }
        if (!round->best || !round->best->value) return round->r(result<term>(term("undefined")));
        round->r(result<term>(arr("ok", *round->best->value)));
    };
    round->pending = peers.size();
    if (peers.empty()) {
        std::lock_guard lk(round->mu);
        return finish();
    }
    for (auto& p : peers) {
        n->call_async(p, o.service, "kith.read", arr(key), o.read_timeout, [round, p, finish](result<term> res) {
            std::lock_guard lk(round->mu);
            if (res.ok()) {
                std::optional<rkvs_entry> had;
                std::string k, why;
                rkvs_entry e;
                if (!res->is_nil() && parse_entry(*res, k, e, why) && k == round->key) had = e;
                if (had && (!round->best || newer(*had, *round->best))) round->best = had;
                round->answers.emplace_back(p, had);
            }
            if (--round->pending == 0) finish();
        });
    }
}

void rkvs_state::push(const std::string& to) {
    std::vector<term> chunks;
    {
        std::lock_guard lk(mu);
        if (closed) return;
        chunks = map.chunks(kChunkBytes);
    }
    for (auto& c : chunks) {
        n->call_async(to, o.service, "kith.merge", arr(std::move(c)), o.ack_timeout,
                      [self = shared_from_this(), to](result<term> res) {
            if (!res.ok() && ++self->refused <= 20)
                self->say(log_level::info, "anti-entropy push to " + to + " failed: " + res.err().message() +
                                         " (the next digest round, every sync_interval, retries)");
        });
    }
}

namespace {

bool valid_service_name(const std::string& s) {
    if (s.empty() || s.size() > 64) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    });
}

service make_service(const std::shared_ptr<rkvs_state>& s) {
    service svc(s->o.service);
    svc.function("store", [s](reply_to r, std::string key, term value) { s->write(std::move(r), key, std::move(value)); })
        .function("delete", [s](reply_to r, std::string key) { s->write(std::move(r), key, std::nullopt); })
        .function("lookup", [s](reply_to r, std::string key) { s->read(std::move(r), key); })
        .function("keys", [s]() -> result<std::vector<std::string>> {
            std::lock_guard lk(s->mu);
            if (s->closed) return s->closed_error();
            return s->map.live_keys();
        })
        .function("kith.merge", [s](term entries) -> result<term> {
            if (auto ok = s->replica_caller(); !ok.ok()) return ok.err();
            {
                std::lock_guard lk(s->mu);
                if (s->closed) return s->closed_error();
            }
            const principal& p = current_principal();
            auto c = s->merge_wire(entries, p.node.empty() ? "local code" : p.node);
            if (c.refused)
                return error{errc::overloaded, "refused " + std::to_string(c.refused) + " entries: " + c.first_refusal};
            return term(true);
        })
        .function("kith.read", [s](std::string key) -> result<term> {
            if (auto ok = s->replica_caller(); !ok.ok()) return ok.err();
            std::lock_guard lk(s->mu);
            if (s->closed) return s->closed_error();
            const rkvs_entry* e = s->map.find(key);
            return e ? entry_term(key, *e) : term();
        })
        .function("kith.digest", [s](std::int64_t theirs) -> result<bool> {
            if (auto ok = s->replica_caller(); !ok.ok()) return ok.err();
            std::uint64_t mine;
            {
                std::lock_guard lk(s->mu);
                if (s->closed) return s->closed_error();
                mine = s->map.digest();
            }
            if (static_cast<std::uint64_t>(theirs) == mine) return true;
            const principal& p = current_principal();
            if (!p.node.empty()) s->n->send(s->actor, arr("push", p.node));
            return false;
        });
    return svc;
}

// The anti-entropy actor: a whole-map push to a replica that comes up, and
// every sync_interval a digest comparison with each connected replica (a
// push where they differ, by both sides), plus the tombstone purge.
behavior anti_entropy(actor& self, const std::shared_ptr<rkvs_state>& s) {
    s->n->monitor_nodes(self.self(), true);
    for (auto& p : s->live_peers()) s->push(p);
    self.send_after(s->o.sync_interval, self.self(), "tick");
    return [s](actor& me, message& m) {
        if (!m.is_user()) return;
        const std::string* tag = m.body.as_string();
        if (tag && *tag == "tick") {
            std::uint64_t d;
            {
                std::lock_guard lk(s->mu);
                if (s->closed) return;
                s->map.purge(hlc::wall_ms());
                d = s->map.digest();
            }
            for (auto& p : s->live_peers()) {
                pid self_pid = me.self();
                node* np = s->n;
                s->n->call_async(p, s->o.service, "kith.digest", arr(static_cast<std::int64_t>(d)), s->o.ack_timeout,
                                 [np, self_pid, p](result<term> res) {
                                     if (res.ok() && res->is_bool() && !*res->as<bool>()) np->send(self_pid, arr("push", p));
                                 });
            }
            me.send_after(s->o.sync_interval, me.self(), "tick");
            return;
        }
        tag = m.body.at(0) ? m.body.at(0)->as_string() : nullptr;
        const std::string* who = m.body.at(1) ? m.body.at(1)->as_string() : nullptr;
        if (!tag || !who || !s->listed(*who) || *who == s->n->name()) return;
        if (*tag == "nodeup" || *tag == "push") {
            auto info = s->n->info(*who);
            if (info && info->trust == trust_level::cluster) s->push(*who);
        }
    };
}

}  // namespace
}  // namespace detail

replicated_kvs::replicated_kvs(node& n, rkvs_options opts) : n_(&n), s_(std::make_shared<detail::rkvs_state>()) {
    auto& o = opts;
    if (!detail::valid_service_name(o.service))
        throw setup_error("replicated kvs: service name \"" + escape_peer_text(o.service, 80) +
                          "\" is invalid: use 1-64 of [A-Za-z0-9._-]");
    if (std::find(o.replicas.begin(), o.replicas.end(), n.name()) == o.replicas.end())
        throw setup_error("replicated kvs: the replica list must include this node (" + n.name() +
                          "); run it only on the listed nodes");
    if (std::set<std::string>(o.replicas.begin(), o.replicas.end()).size() != o.replicas.size())
        throw setup_error("replicated kvs: the replica list names a node twice");
    std::size_t majority = o.replicas.size() / 2 + 1;
    if (o.write_quorum > o.replicas.size())
        throw setup_error("replicated kvs: write_quorum " + std::to_string(o.write_quorum) + " exceeds the " +
                          std::to_string(o.replicas.size()) + " replicas");
    s_->n = &n;
    s_->w = o.write_quorum ? o.write_quorum : majority;
    s_->o = std::move(opts);
    n.add_service(detail::make_service(s_));
    auto s = s_;
    s_->actor = n.spawn([s](actor& self) -> behavior { return detail::anti_entropy(self, s); });
}

replicated_kvs::~replicated_kvs() {
    {
        std::lock_guard lk(s_->mu);
        s_->closed = true;
    }
    n_->monitor_nodes(s_->actor, false);
    n_->send_exit(s_->actor, "kill");
}

const rkvs_options& replicated_kvs::options() const noexcept { return s_->o; }
std::size_t replicated_kvs::write_quorum() const noexcept { return s_->w; }

std::optional<rkvs_entry> replicated_kvs::local(const std::string& key) const {
    std::lock_guard lk(s_->mu);
    const rkvs_entry* e = s_->map.find(key);
    return e ? std::optional<rkvs_entry>(*e) : std::nullopt;
}

std::size_t replicated_kvs::size() const {
    std::lock_guard lk(s_->mu);
    return s_->map.size();
}

std::uint64_t replicated_kvs::digest() const {
    std::lock_guard lk(s_->mu);
    return s_->map.digest();
}

}  // namespace kith
