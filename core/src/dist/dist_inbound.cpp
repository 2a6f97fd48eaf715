// dist_inbound.cpp — the distribution layer, receiving side: every envelope
// from a peer, through the gate (auth/gate.hpp) for non-members, to the
// runtime. Runs on the transport's I/O thread. See dist.hpp.
#include "dist/dist.hpp"

#include <cstdio>

#include "grants/grants_io.hpp"

namespace kith::detail {

namespace {

std::string_view kind_name(const envelope& e) {
    static constexpr std::string_view names[] = {"?",         "handshake", "send",      "send_named", "spawn_request",
                                                 "spawn_reply", "call",    "cast",      "reply",      "monitor",
                                                 "demonitor", "down",      "link",      "unlink",     "exit",
                                                 "heartbeat", "goodbye",   "request",   "response",   "fragment",
                                                 "credit",    "move",      "move_ack"};
    auto t = static_cast<std::size_t>(type_of(e));
    return t < std::size(names) ? names[t] : "?";
}

// The pseudo-pid that stands for a non-cluster peer's connection: actors
// spawned by such a peer are linked to it, so they get an exit
// "noconnection" when the peer goes away (lib_chan's "told when the client
// goes away"). Never a real actor; exits sent to it are not posted.
pid connection_pid(const std::string& peer) { return pid{peer, UINT64_MAX}; }

// Units of one of a non-member's counters (dist::load_counters: pending,
// spawned, queued), charged to its key and, for a stranger, to all
// strangers; given back when the last copy goes: after the reply was
// posted, or when an actor it spawned ends (its acting authority, which
// holds this, is dropped). Keeps the counters alive, so a late release
// after the session is gone is harmless. Null for members.
template <class Peer, class Field>
std::shared_ptr<void> charge(const std::shared_ptr<Peer>& rp, Field field, std::int64_t units = 1) {
    if (!rp) return nullptr;
    auto give = [field, units](auto* l, std::int64_t sign) {
        if (l) (l->*field).fetch_add(sign * units, std::memory_order_relaxed);
    };
    give(rp->key_load.get(), +1);
    give(rp->strangers_load.get(), +1);
    return std::shared_ptr<void>(static_cast<void*>(rp.get()), [keep = rp, give](void*) {
        give(keep->key_load.get(), -1);
        give(keep->strangers_load.get(), -1);
    });
}

// What a decoded term costs in memory, roughly: the decoder's ~48 bytes a
// value, plus text and binaries (bounded depth: the decoder's own limits).
std::int64_t term_bytes(const term& t, int depth = 0) {
    std::int64_t n = 48;
    if (depth > 64) return n;
    if (auto* s = t.as_string()) n += static_cast<std::int64_t>(s->size());
    else if (auto* b = t.get_if<binary>()) n += static_cast<std::int64_t>(b->size());
    else if (auto* a = t.as_array()) {
        for (auto& x : *a) n += term_bytes(x, depth + 1);
    } else if (auto* m = t.as_map()) {
        for (auto& [k, v] : *m) n += term_bytes(k, depth + 1) + term_bytes(v, depth + 1);
    }
    return n;
}

}  // namespace

// ---------------------------------------------------------------------------
// inbound envelopes (I/O thread; a grantee's or a stranger's on the
// transport's guest decoder)

void dist::restricted_peer::add_relations(std::int64_t delta) {
    std::int64_t cur = relations.load(std::memory_order_relaxed), next = 0;
    do {
        next = std::max<std::int64_t>(0, cur + delta);
    } while (!relations.compare_exchange_weak(cur, next, std::memory_order_relaxed));
    for (load_counters* l : {key_load.get(), strangers_load.get()})
        if (l) l->relations.fetch_add(next - cur, std::memory_order_relaxed);
}

// auth::gate_state for one non-member peer: what the gate reads of this node.
class dist::peer_gate_state final : public auth::gate_state {
public:
    peer_gate_state(dist& d, const std::string& peer, restricted_peer& rp) : d_(d), peer_(peer), rp_(rp) {}
    bool is_local(const pid& p) const override { return d_.rt_.is_local(p); }
    bool is_public(const std::string& svc) const override { return d_.grants_->is_public(svc); }
    bool any_public() const override { return d_.grants_->any_public(); }
    bool asked(const ref& tag) const override { return tag.node == d_.rt_.name() && rp_.take_asked(tag.id); }
    bool watching(const ref& mref) const override {
        std::lock_guard lk(d_.mu_);
        auto it = d_.peers_.find(peer_);
        return it != d_.peers_.end() && it->second.monitors.count(mref) != 0;
    }
    bool watched_by(const pid& target, const pid& watcher, const ref& mref) const override {
        return d_.rt_.has_remote_watcher(target, watcher, mref);
    }
    std::size_t relations() const override { return count(rp_.key_load->relations); }
    std::size_t pending() const override { return count(rp_.key_load->pending); }
    std::size_t spawned() const override { return count(rp_.key_load->spawned); }
    std::size_t queued_bytes() const override { return count(rp_.key_load->queued); }
    load strangers() const override {
        const auto* l = rp_.strangers_load.get();
        if (!l) return {};
        return {count(l->relations), count(l->pending), count(l->spawned), count(l->queued)};
    }

private:
    static std::size_t count(const std::atomic<std::int64_t>& c) {
        auto n = c.load(std::memory_order_relaxed);
        return n > 0 ? static_cast<std::size_t>(n) : 0;
    }
    dist& d_;
    const std::string& peer_;
    restricted_peer& rp_;
};

void dist::on_envelopes(const std::string& peer, const peer_auth& auth, std::vector<envelope>&& envs) {
    proc_ref target;
    if (auth.kind == trust_kind::cluster) {
        // Cluster members are fully trusted, as in distributed Erlang.
        for (auto& e : envs) handle(peer, auth, e, target, nullptr);
        return;
    }
    std::shared_ptr<restricted_peer> rp;
    {
        std::lock_guard lk(mu_);
        auto it = peers_.find(peer);
        if (it != peers_.end()) rp = it->second.restricted;
    }
    if (!rp) return;  // not up (cannot happen: up precedes every envelope)
    for (auto& e : envs)
        if (admit(peer, auth, *rp, e)) handle(peer, auth, e, target, rp);
}

void dist::refuse(const std::string& peer, const envelope& e, errc code, const std::string& detail) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    if (code == errc::unauthorized) refused_unauthorized_.fetch_add(1, std::memory_order_relaxed);
    if (code == errc::revoked) refused_revoked_.fetch_add(1, std::memory_order_relaxed);
    if (code == errc::rate_limited) refused_rate_limited_.fetch_add(1, std::memory_order_relaxed);
    if (code == errc::overloaded) refused_overloaded_.fetch_add(1, std::memory_order_relaxed);
    std::string reason(to_string(code));
    // Straight to the transport: a refusal names the refused target (a DOWN's
    // `who`, an exit's `from`) and must not hand it over as a capability.
    auto answer = [&](envelope&& a) {
        if (tr_->post(peer, a).code() == errc::overloaded) overload_drops_.fetch_add(1, std::memory_order_relaxed);
    };
    std::visit(
        [&](const auto& env) {
            using T = std::decay_t<decltype(env)>;
            if constexpr (std::is_same_v<T, env_call>)
                answer(env_reply{env.req_id, code, term(detail)});
            else if constexpr (std::is_same_v<T, env_spawn_request>)
                answer(env_spawn_reply{env.req_id, code, pid{}, detail});
            else if constexpr (std::is_same_v<T, env_request>)
                answer(env_response{env.from, env.tag, code, term(detail)});
            else if constexpr (std::is_same_v<T, env_monitor>)
                answer(env_down{env.mref, env.target, env.from, term(reason)});
            else if constexpr (std::is_same_v<T, env_link>)
                answer(env_exit{env.to, env.from, term(reason), true});
            // cast, send, exit, ...: no answer exists; counted.
        },
        e);
}

namespace {
// The service operation an envelope asks for (call, cast, spawn), if any.
void operation_of(const envelope& e, const std::string*& svc, const std::string*& name) {
    if (auto* c = std::get_if<env_call>(&e)) svc = &c->service, name = &c->function;
    else if (auto* k = std::get_if<env_cast>(&e)) svc = &k->service, name = &k->function;
    else if (auto* r = std::get_if<env_spawn_request>(&e)) svc = &r->service, name = &r->actor_type;
}

// "grant \"bob\" was revoked" / "grant \"bob\" expired at 2026-…Z"
std::string grant_state(const grant_entry* g, const std::string& label) {
    if (!g) return "grant \"" + label + "\" is unknown here (deleted, or never issued by this node)";
    if (g->revoked.load()) return "grant \"" + label + "\" was revoked by the node's owner";
    return "grant \"" + label + "\" expired at " + (g->expires ? format_utc(*g->expires) : std::string("?")) +
           ": ask the node's owner for a new one";
}
}  // namespace

// "over the rate of grant \"bob\" (10/s, burst 20): retry in 0.1 s"
std::string dist::rate_detail(const peer_auth& auth, restricted_peer& rp, const envelope& e) {
    const std::string* svc = nullptr;
    const std::string* name = nullptr;
    operation_of(e, svc, name);
    rate_limit rate;
    std::string whose;
    if (rp.who->grant && !(svc && !rp.who->grant->allows(*svc, *name) && grants_->is_public(*svc))) {
        rate = rp.who->grant->rate();
        whose = "grant \"" + rp.who->grant->label + "\"";
    } else {
        rate = svc ? grants_->public_rate(*svc).value_or(rate_limit{}) : rate_limit{};
        whose = svc && grants_->is_public(*svc) ? "public service " + *svc + " for key " + auth.key.fingerprint()
                                                : "key " + auth.key.fingerprint();
    }
    char retry[32];
    std::snprintf(retry, sizeof retry, "%.2g", rate.per_second > 0 ? 1.0 / rate.per_second : 0.0);
    return "over the rate of " + whose + " (" + rate.to_string() + "): retry in " + retry + " s";
}

bool dist::take_token(const peer_auth& auth, restricted_peer& rp, const envelope& e) {
    const authority& who = *rp.who;
    const std::string* svc = nullptr;
    const std::string* name = nullptr;
    operation_of(e, svc, name);
    grant_entry* g = who.grant.get();
    // A grantee pays from its grant, except for a public service outside it.
    if (g && !(svc && !g->allows(*svc, *name) && grants_->is_public(*svc))) return g->take_token();
    static const std::string none;
    return grants_->take_public_token(auth.key, svc && grants_->is_public(*svc) ? *svc : none);
}

bool dist::admit(const std::string& peer, const peer_auth& auth, restricted_peer& rp, const envelope& e) {
    const authority& who = *rp.who;
    grant_entry* g = who.grant.get();
    if (g) grants_->refresh();  // at most a stat() per 100 ms: revocations by another process
    if (auth.kind == trust_kind::granted && (!g || g->dead())) {
        // Revoked or expired (or gone): refused, and the session is ended
        // once (goodbye "revoked"), whatever the envelope.
        if (g) g->refused.fetch_add(1, std::memory_order_relaxed);
        if (g && !g->kicked.exchange(true)) tr_->end_sessions(auth.user_id, "revoked");
        refuse(peer, e, errc::revoked, grant_state(g, auth.user_id.substr(6)));
        return false;
    }
    peer_gate_state st(*this, peer, rp);
    auth::verdict v;
    if (auth.kind == trust_kind::server) {
        // A node we dialled answers us and messages the pids we handed it
        // for free; its refusals cost tokens, and once they are spent
        // everything it sends is refused until the bucket refills.
        v = auth::admit(who, e, st);
        if (v.ok() && !rp.starved.load(std::memory_order_relaxed)) return true;
        const bool token = take_token(auth, rp, e);
        rp.starved.store(!token, std::memory_order_relaxed);
        if (!token) {
            refuse(peer, e, errc::rate_limited, "too many refused messages from a node we dialled: over the rate");
            return false;
        }
    } else {
        // Every envelope costs a token, refusals included: guessing is rate-limited.
        if (!take_token(auth, rp, e)) {
            if (g) g->rate_limited.fetch_add(1, std::memory_order_relaxed);
            bool answer;
            {
                std::lock_guard lk(rp.mu);
                answer = rp.rate_answers.take();
            }
            if (answer) {
                refuse(peer, e, errc::rate_limited, rate_detail(auth, rp, e));
            } else {  // past the answers' own budget: counted, not answered
                refused_.fetch_add(1, std::memory_order_relaxed);
                refused_rate_limited_.fetch_add(1, std::memory_order_relaxed);
                unanswered_.fetch_add(1, std::memory_order_relaxed);
            }
            return false;
        }
        v = auth::admit(who, e, st);
    }
    if (!v.ok()) {
        if (g) g->refused.fetch_add(1, std::memory_order_relaxed);
        diag("refused " + std::string(kind_name(e)) + " from " + peer + " (" + who.who.describe() + "): " + v.detail);
        refuse(peer, e, v.code, v.detail);
        return false;
    }
    if (g) g->accepted.fetch_add(1, std::memory_order_relaxed);
    return true;
}

void dist::handle(const std::string& peer, const peer_auth& auth, envelope& e, proc_ref& target,
                  const std::shared_ptr<restricted_peer>& rp) {
    const authority* who = rp ? rp->who.get() : nullptr;
    auto bad = [&](const char* why) {
        protocol_errors_.fetch_add(1, std::memory_order_relaxed);
        diag("refused " + std::string(kind_name(e)) + " envelope from " + peer + ": " + why);
    };
    const bool cluster = auth.kind == trust_kind::cluster;
    // Envelopes from non-cluster peers were admitted by admit() (scope,
    // capabilities, revocation, rate) before they get here.
    std::visit(
        [&](auto& env) {
            using T = std::decay_t<decltype(env)>;
            if constexpr (std::is_same_v<T, env_reply>) {
                if (env.code == errc::ok)
                    finish(env.req_id, peer, std::move(env.value));
                else
                    finish(env.req_id, peer,
                           error{env.code, env.value.as_string() ? *env.value.as_string() : env.value.to_string()});
            } else if constexpr (std::is_same_v<T, env_spawn_reply>) {
                if (env.code == errc::ok) {
                    if (env.spawned.node != peer) return bad("spawned pid of another node");
                    finish_spawn(env.req_id, peer, std::move(env.spawned));
                } else {
                    finish_spawn(env.req_id, peer, error{env.code, env.detail});
                }
            } else if constexpr (std::is_same_v<T, env_call>) {
                auto reply_err = [&](errc c, std::string d) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    post(peer, env_reply{env.req_id, c, term(std::move(d))});
                };
                // The caller, when named, must be one of the peer's own pids
                // (as for spawn_request); kith's own calls leave it null.
                if (!from_peer(peer, env.from)) return bad("forged caller pid");
                auto s = services_->find(env.service);
                if (!s) return reply_err(errc::no_such_service, env.service);
                // Lives as long as `s` (a registered service does not change).
                const auto* f = s->find(env.function);
                if (!f) return reply_err(errc::no_such_function, env.service + ":" + env.function);
                // The function runs for its caller's principal (kith::current_principal).
                std::shared_ptr<const authority> acting = who ? who->shared_from_this() : member_authority(peer);
                // In flight (auth::max_pending) until the reply is posted.
                auto busy = rp ? charge(rp, &load_counters::pending) : nullptr;
                run_job([s = std::move(s) /* keeps *f */, f, args = std::move(env.args), d = weak_from_this(), peer,
                         req = env.req_id, acting = std::move(acting), busy = std::move(busy)]() mutable {
                    acting_scope scope(acting.get());
                    // The job runs once: its captures move on into the reply.
                    (*f)(args, reply_to([d = std::move(d), peer = std::move(peer), req,
                                         busy = std::move(busy)](result<term> r) {
                                  auto self = d.lock();
                                  if (!self) return;
                                  if (r.ok())
                                      self->post(peer, env_reply{req, errc::ok, std::move(*r)});
                                  else
                                      self->post(peer, env_reply{req, r.code(), term(r.err().detail)});
                              }));
                }, who);
            } else if constexpr (std::is_same_v<T, env_cast>) {
                auto s = services_->find(env.service);
                if (!s) return bad("cast to an unknown service");
                std::shared_ptr<const authority> acting = who ? who->shared_from_this() : member_authority(peer);
                auto busy = rp ? charge(rp, &load_counters::pending) : nullptr;  // until it has run
                run_job([s = std::move(s), fn = std::move(env.function), args = std::move(env.args),
                         acting = std::move(acting), busy = std::move(busy)]() mutable {
                    acting_scope scope(acting.get());
                    s->invoke(fn, args, reply_to([busy = std::move(busy)](result<term>) {}));
                }, who);
            } else if constexpr (std::is_same_v<T, env_spawn_request>) {
                auto reply_err = [&](errc c, std::string d) {
                    refused_.fetch_add(1, std::memory_order_relaxed);
                    post(peer, env_spawn_reply{env.req_id, c, pid{}, std::move(d)});
                };
                if (!from_peer(peer, env.from)) return bad("forged requester pid");
                auto s = services_->find(env.service);
                if (!s) return reply_err(errc::no_such_service, env.service);
                const actor_factory* factory = s->find_type(env.actor_type);  // lives as long as `s`
                if (!factory) return reply_err(errc::no_such_function, env.service + ":" + env.actor_type);
                std::shared_ptr<const authority> acting = who ? who->shared_from_this() : member_authority(peer);
                // The factory runs in the child's own init, its first turn:
                // on this I/O thread right after the turn while the other I/O
                // thread stands by to take the sockets over (as a service
                // function runs; no worker is woken between request and
                // reply), else on a worker. User code (a Python factory holds
                // the GIL) never runs inside the I/O loop itself. The init
                // then sets up the requested link/monitor and
                // posts the reply before any user code of the actor runs: the
                // relation exists before the child can end, and the reply
                // reaches the requester before any exit or DOWN from the child.
                auto self = weak_from_this();
                std::uint8_t flags = env.from.is_null() ? std::uint8_t{spawn_plain} : env.flags;
                // In flight (auth::max_pending) until the reply is posted;
                // then, alive, one of its actors (auth::max_spawned).
                auto busy = rp ? charge(rp, &load_counters::pending) : nullptr;
                actor_init wrapped = [self, peer, req = env.req_id, flags, from = env.from, mref = env.monitor_ref,
                                      tie = !cluster, acting = std::move(acting), svc = std::move(s), factory,
                                      args = std::move(env.args),
                                      busy = std::move(busy), rp](actor& me) mutable -> behavior {
                    if (acting && acting->restricted()) {
                        // Spawned for a grantee or a stranger: it acts for
                        // that principal for its whole life (auth/gate.hpp).
                        // (For a member, fully trusted, only its init does.)
                        // Its acting authority also holds its unit of
                        // rp->spawned, given back when the actor ends.
                        struct alive_holder {
                            std::shared_ptr<const authority> acting;
                            std::shared_ptr<void> unit;
                        };
                        auto h = std::make_shared<alive_holder>(
                            alive_holder{acting, charge(rp, &load_counters::spawned)});
                        auto& proc = static_cast<actor_proc&>(me);
                        proc.ex().acting = std::shared_ptr<const authority>(h, acting.get());
                    }
                    std::optional<acting_scope> scope;
                    if (acting) scope.emplace(acting.get());  // the factory runs for the requester too
                    result<std::pair<actor_init, behavior>> made = error{errc::exception};
                    try {
                        made = (*factory)(args);
                    } catch (const std::exception& ex) {
                        made = error{errc::exception, ex.what()};
                    }
                    if (!made) {
                        if (auto d = self.lock()) {
                            d->refused_.fetch_add(1, std::memory_order_relaxed);
                            d->post(peer, env_spawn_reply{req, made.code(), pid{}, made.err().detail});
                        }
                        busy.reset();
                        return {};  // ends at once, before any relation exists
                    }
                    auto inner_init = std::move(made->first);
                    auto inner_b = std::move(made->second);
                    if (auto d = self.lock()) {
                        if (tie) {
                            // Spawned by a grantee or a stranger: linked to its
                            // connection, so it ends ("noconnection", or an
                            // exit message if it traps exits) when the peer
                            // goes away or its grant is revoked.
                            const pid conn = connection_pid(peer);
                            bool up = d->with_peer(peer, [&](peer_state& ps) { ps.links.emplace(me.self(), conn); });
                            d->rt_.remote_link(conn, me.self());
                            if (!up) d->rt_.deliver(me.self(), message(message_kind::link_exit, term("noconnection"), conn));
                        }
                        if (flags & spawn_link_flag) {
                            d->with_peer(peer, [&](peer_state& ps) { ps.links.emplace(me.self(), from); });
                            d->rt_.remote_link(from, me.self());
                        }
                        if (flags & spawn_monitor_flag) d->rt_.remote_monitor(from, me.self(), mref);
                        d->post(peer, env_spawn_reply{req, errc::ok, me.self(), {}});
                    }
                    busy.reset();
                    if (inner_init) return inner_init(me);
                    return inner_b;
                };
                start_spawned(std::move(wrapped), who);
            } else if constexpr (std::is_same_v<T, env_send>) {
                if (!is_local(env.to)) return bad("pid of another node");
                if (rp) {  // charged to the sender until handled (auth::max_queued_bytes)
                    auto bytes = charge(rp, &load_counters::queued, term_bytes(env.msg));
                    rt_.deliver_charged(env.to, message(std::move(env.msg)), target, std::move(bytes));
                } else {
                    rt_.deliver_user(env.to, std::move(env.msg), target);
                }
            } else if constexpr (std::is_same_v<T, env_send_named>) {
                rt_.deliver_named(env.name, message(std::move(env.msg)));
            } else if constexpr (std::is_same_v<T, env_request>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                std::shared_ptr<void> bytes = rp ? charge(rp, &load_counters::queued, term_bytes(env.msg)) : nullptr;
                message m(message_kind::request, std::move(env.msg), std::move(env.from), std::move(env.tag));
                if (rp) rt_.deliver_charged(env.to, std::move(m), target, std::move(bytes));
                else rt_.deliver(env.to, std::move(m));
            } else if constexpr (std::is_same_v<T, env_response>) {
                if (!is_local(env.to)) return bad("pid of another node");
                if (env.code == errc::ok)
                    rt_.deliver(env.to, message(message_kind::reply, std::move(env.value), pid{}, std::move(env.tag)));
                else
                    rt_.deliver(env.to, message(message_kind::reply_error,
                                                arr(static_cast<int>(env.code), std::move(env.value)), pid{},
                                                std::move(env.tag)));
            } else if constexpr (std::is_same_v<T, env_monitor>) {
                if (!is_local(env.target) || !from_peer(peer, env.from)) return bad("forged pid");
                if (!rt_.remote_monitor(env.from, env.target, env.mref))
                    post(peer, env_down{env.mref, env.target, env.from, term("noproc")});
                else if (who)
                    count_relation(peer, +1);
            } else if constexpr (std::is_same_v<T, env_demonitor>) {
                if (!is_local(env.target) || !from_peer(peer, env.from)) return bad("forged pid");
                if (rt_.remote_demonitor(env.target, env.mref, env.from) && who)  // only the watcher's own monitor
                    count_relation(peer, -1);
            } else if constexpr (std::is_same_v<T, env_down>) {
                if (!is_local(env.to) || !from_peer(peer, env.who)) return bad("forged pid");
                with_peer(peer, [&](peer_state& ps) { ps.monitors.erase(env.mref); });
                rt_.deliver(env.to, message(message_kind::down, std::move(env.reason), std::move(env.who),
                                            std::move(env.mref)));
            } else if constexpr (std::is_same_v<T, env_link>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                with_peer(peer, [&](peer_state& ps) { ps.links.emplace(env.to, env.from); });
                if (!rt_.remote_link(env.from, env.to)) post(peer, env_exit{env.to, env.from, term("noproc"), true});
                else if (who)
                    count_relation(peer, +1);
            } else if constexpr (std::is_same_v<T, env_unlink>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                with_peer(peer, [&](peer_state& ps) { ps.links.erase({env.to, env.from}); });
                rt_.remote_unlink(env.from, env.to);
                if (who) count_relation(peer, -1);
            } else if constexpr (std::is_same_v<T, env_exit>) {
                if (!is_local(env.to) || !from_peer(peer, env.from)) return bad("forged pid");
                if (env.linked) with_peer(peer, [&](peer_state& ps) { ps.links.erase({env.to, env.from}); });
                rt_.deliver(env.to, message(env.linked ? message_kind::link_exit : message_kind::exit_signal,
                                            std::move(env.reason), std::move(env.from)));
            } else {
                // handshake / heartbeat / goodbye are consumed by the transport
                bad("unexpected envelope");
            }
        },
        e);
}

}  // namespace kith::detail
