// dist.hpp (private) — the distribution layer: joins the in-node runtime
// (node_impl, through the remote_port seam) to the transport, and implements
// rpc (call/cast/multicall), remote spawn, remote links/monitors, node events
// and authorization of every inbound envelope.
//
// Trust: every decision is auth/'s (identity.hpp: who a peer is and which
// name it may hold; gate.hpp: what it may make this node do). dist carries
// the verdicts out and keeps the state they read (handed pids, requests and
// monitors per peer, names of members).
//
// Files: dist.cpp (lifecycle, connections, node events), dist_calls.cpp
// (caller side and remote_port), dist_inbound.cpp (receiving side);
// pending_calls.* (outstanding requests and their deadline thread),
// connect_waiters.* (who waits for a dialled link).
//
// Threads: transport callbacks run on the transport's I/O thread; service
// functions run there right after the turn or on the node's workers (one
// transient actor per call); deadlines of pending calls are kept by
// pending_calls' own thread (the "deadline thread"), timeouts of
// connect_async by the node's timer thread. Public methods are thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <deque>
#include <optional>
#include <unordered_map>
#include <vector>

#include "auth/gate.hpp"
#include "dist/connect_waiters.hpp"
#include "dist/pending_calls.hpp"
#include "grants/grants_table.hpp"
#include "kith/net.hpp"
#include "kith/service.hpp"
#include "runtime/node_impl.hpp"
#include "runtime/remote_port.hpp"
#include "transport/transport.hpp"

namespace kith::detail {

// The services a node exports; shared by the node and its dist layer.
class service_table {
public:
    void add(std::shared_ptr<const service> s) {
        std::unique_lock lk(mu_);
        map_[s->name()] = std::move(s);
    }
    std::shared_ptr<const service> find(const std::string& name) const {
        std::shared_lock lk(mu_);
        auto it = map_.find(name);
        return it == map_.end() ? nullptr : it->second;
    }
    std::vector<std::string> names() const {
        std::shared_lock lk(mu_);
        std::vector<std::string> v;
        for (auto& [k, _] : map_) v.push_back(k);
        return v;
    }

private:
    mutable std::shared_mutex mu_;
    std::map<std::string, std::shared_ptr<const service>> map_;
};

// What kith::node keeps for services and networking.
struct node_net {
    std::shared_ptr<service_table> services = std::make_shared<service_table>();
    std::shared_ptr<class dist> dist;  // null without network
};

class dist final : public remote_port, public std::enable_shared_from_this<dist> {
public:
    using clock = std::chrono::steady_clock;
    using duration = std::chrono::nanoseconds;
    using call_done = std::function<void(result<term>)>;
    using spawn_done = std::function<void(result<pid>)>;

    dist(node_impl& rt, const net_options& opts, std::shared_ptr<service_table> services);
    ~dist() override;

    // Starts the transport and installs this as the runtime's remote port.
    void start();
    // Sends goodbyes, fails pending calls with errc::shutdown, stops threads.
    void stop();

    std::string endpoint() const { return tr_->endpoint(); }
    std::string bound_endpoint() const { return tr_->bound_endpoint(); }
    std::string member_endpoint() const { return tr_->member_endpoint(); }
    void connect_listener(const std::string& ep, bool on) { tr_->connect_listener(ep, on); }
    void disconnect(const std::string& ep) { tr_->disconnect(ep); }
    const public_key& key() const { return tr_->key(); }
    const net_options& options() const { return opts_; }

    // Blocking connect: returns the peer's node name once it is up, or
    // errc::unauthorized (refused, with the reason) / errc::revoked (our
    // grant was revoked or expired) / errc::timeout.
    result<std::string> connect(const std::string& endpoint, const public_key& server_key, duration timeout,
                                link_credentials creds = link_credentials::cluster());
    // Non-blocking connect: `done` runs once: on the I/O thread (up or
    // refused), the node's timer thread (timeout), the thread stopping the
    // node, or — already connected, or stopping — on the caller's thread
    // before connect_async returns.
    void connect_async(const std::string& endpoint, const public_key& server_key, duration timeout,
                       std::function<void(result<std::string>)> done);
    // Connects with a grant file (its endpoints in order; see node.hpp).
    result<std::string> connect(const grant_file& g, duration timeout);
    // May code acting for `who` invoke svc:fn (an actor type if `spawn`)
    // here? The gate's rule for invoke_local and anything re-dispatching.
    auth::verdict check_invoke(const authority& who, const std::string& svc, const std::string& fn) const;
    // After a service stopped being public: with none left, every stranger
    // session ends (goodbye "refused: ...").
    void public_changed();

    // This node's grant table (<key_dir>/grants) and public services.
    grant_table& grants() { return *grants_; }
    // Revokes `label` in the table and ends its sessions (goodbye "revoked").
    result<void> revoke_grant(const std::string& label);


    // `done` runs exactly once, never on the calling thread inside call():
    // the reply or a nodedown on the I/O thread; a timeout, an error known at
    // once (unauthorized, not connected, overloaded) or shutdown on the
    // deadline thread. spawn() likewise.
    void call(const std::string& node, const std::string& svc, const std::string& fn, term args, duration timeout,
              call_done done);
    result<void> cast(const std::string& node, const std::string& svc, const std::string& fn, term args);
    // flags: spawn_flags; `from` (may be null) is linked/monitored afterwards by the caller.
    // flags (spawn_flags): link the child to the local process `from`, or
    // make `from` monitor it under `mref`; set up on both nodes before the
    // reply is delivered, so no exit/DOWN can be missed.
    void spawn(const std::string& node, const std::string& svc, const std::string& type, term args,
               duration timeout, spawn_done done, std::uint8_t flags = spawn_plain, pid from = {},
               ref mref = {});

    bool is_up(const std::string& node) const { return tr_->is_up(node); }
    // True on the I/O threads and the deadline thread (completions run there).
    bool on_own_thread() const noexcept { return tr_->on_own_thread() || calls_.on_deadline_thread(); }
    std::vector<std::string> nodes(bool include_hidden) const;
    std::optional<node_info> info(const std::string& node) const;

    std::uint64_t subscribe(std::function<void(const node_event&)> cb);
    void unsubscribe(std::uint64_t id);
    void monitor_nodes(const pid& who, bool on);
    // Sends ["nodedown", node, reason] to `who` when `node` goes down (at
    // once, reason "noconnection", if it is not up).
    void monitor_node(const std::string& node, const pid& who);

    net_counters counters() const;

    // remote_port
    bool send(const pid& to, message&& m) override;
    bool send_named(const std::string& node, const std::string& name, message&& m) override;
    bool link(const pid& from, const pid& to) override;
    bool unlink(const pid& from, const pid& to) override;
    bool monitor(const pid& watcher, const pid& target, const ref& tag) override;
    bool demonitor(const pid& watcher, const pid& target, const ref& tag) override;
    bool exit(const pid& from, const pid& to, const term& reason, bool linked) override;

private:
    // One diagnostic record to opts_.log (or the default sink), source
    // "dist", rate-limited (20 a second).
    void diag(const std::string& line, log_level level = log_level::warning);
    std::mutex diag_mu_;
    // True the first time a name-claim refusal (name and reason) is seen: a
    // peer that keeps retrying is logged once (at most 1024 remembered).
    bool first_claim_refusal(const std::string& what);
    std::set<std::string> claim_logged_;  // under diag_mu_
    double diag_tokens_ = 20.0;
    clock::time_point diag_last_{};

    // What this node knows of a non-member peer, shared with the send path:
    // who it is, and the tags of the requests this node sent it (a response
    // counts only for one of those; bounded, oldest forgotten first).
    // What non-members hold here (auth/gate.hpp, the caps): per key, all its
    // sessions together, and for all strangers together.
    struct load_counters {
        // Monitors and links on local processes (auth::max_relations); calls,
        // casts and spawns in flight (auth::max_pending); actors spawned still
        // alive (auth::max_spawned); bytes in local mailboxes
        // (auth::max_queued_bytes).
        std::atomic<std::int64_t> relations{0}, pending{0}, spawned{0}, queued{0};
        // A stranger's or a server's key: the local pids handed to it, all
        // its sessions together (a grant's are the grant's own).
        std::shared_ptr<capability_set> caps;
    };
    struct restricted_peer {
        std::shared_ptr<authority> who;
        std::atomic<bool> starved{false};  // a server whose refusal budget is spent
        // Over-the-rate refusals are answered from this bucket (under mu):
        // beyond it they are dropped unanswered, so a flood past the rate
        // costs the node no reply each (docs/security.md, "Bounds").
        token_bucket rate_answers{rate_limit{1000, 1000}};
        // This session's monitors and links on local processes (given back
        // from its key's count when it ends).
        std::atomic<std::int64_t> relations{0};
        std::shared_ptr<load_counters> key_load;        // its key's, shared by the key's sessions
        std::shared_ptr<load_counters> strangers_load;  // strangers only: all strangers'
        // Counts `delta` relations (never below zero for the session) in the
        // session, its key and, for a stranger, all strangers.
        void add_relations(std::int64_t delta);
        mutable std::mutex mu;
        std::unordered_set<std::uint64_t> asked;
        std::deque<std::uint64_t> asked_order;
        static constexpr std::size_t max_asked = 4096;
        void note_asked(std::uint64_t id);
        bool take_asked(std::uint64_t id);
    };
    struct peer_state {
        node_info info;
        // Endpoints we dialled it at (the link that brought it up, or one that
        // joined its session later); an inbound node's info.endpoint is its claim.
        std::set<std::string> dialled;
        // Non-cluster peers: who they are and what they were given (for a
        // grant, the grant's own capability set, shared by its sessions).
        std::shared_ptr<restricted_peer> restricted;
        // Relations that must end with "noconnection" if the peer goes down.
        std::map<ref, std::pair<pid, pid>> monitors;   // tag -> (local watcher, remote target)
        std::set<std::pair<pid, pid>> links;            // (local, remote)
        std::vector<pid> node_watchers;                 // monitor_node
    };

    // transport callbacks (I/O thread)
    void on_up(const std::string& peer, const peer_info& pi);
    void on_down(const std::string& peer, const std::string& reason);
    void on_refused(const refusal& r);
    void on_envelopes(const std::string& peer, const peer_auth& auth, std::vector<envelope>&& envs);

    class peer_gate_state;  // auth::gate_state for one peer (dist_inbound.cpp)
    // one inbound envelope, already known to come from `peer` under `auth`
    // `target` caches the local process the last send envelope of the batch
    // went to (a frame of sends to one pid looks it up once).
    // `who`: the principal of a non-member peer (null for members).
    void handle(const std::string& peer, const peer_auth& auth, envelope& e, proc_ref& target,
                const std::shared_ptr<restricted_peer>& rp);
    // The gate for every envelope from a non-cluster peer (grantee, stranger,
    // or a server we dialled): revocation, a token, then auth::admit. True if
    // `e` may be handled; otherwise it was refused (answered with the error
    // where the envelope has an answer) and counted.
    bool admit(const std::string& peer, const peer_auth& auth, restricted_peer& rp, const envelope& e);
    // Takes the token an envelope from `rp` costs (for a server we dialled,
    // asked only for its refusals).
    bool take_token(const peer_auth& auth, restricted_peer& rp, const envelope& e);
    // The refusal detail when no token was left: whose rate, what, when to retry.
    std::string rate_detail(const peer_auth& auth, restricted_peer& rp, const envelope& e);
    // A request of ours to `node` that must not go: the calling thread acts
    // for a grantee or a stranger (no deputies), or `node` is a grantee or a
    // stranger (it gives this node no right, and may hold a name a member
    // will claim). nullopt when the request may go.
    std::optional<error> not_a_server(const std::string& node) const;
    // The name-claim rule with this node's reservations (transport callback).
    auth::claim_verdict on_name_claim(auth::name_claim& c);
    // Sends the refusal answer for `e`, if it has one.
    void refuse(const std::string& peer, const envelope& e, errc code, const std::string& detail);
    // Records the local pids inside `e` as handed to `node` when `node` is a
    // non-cluster peer (pids are capabilities; see docs/security.md).
    void note_handed(const std::string& node, const envelope& e);
    // note_handed, then the transport's post.
    result<void> send_env(const std::string& node, const envelope& e);
    // A pid named in an envelope from `peer` that must be one of the peer's.
    bool from_peer(const std::string& peer, const pid& p) const { return p.is_null() || p.node == peer; }
    bool is_local(const pid& p) const { return rt_.is_local(p); }

    // send_env; false if not sent (overload counted, a message too large
    // handled by not_sent_too_large).
    bool post(const std::string& node, const envelope& e);
    void not_sent_too_large(const std::string& node, const envelope& e, const error& why);
    // Runs f(peer_state&) under mu_ if `node` is up; false if it is not.
    template <class F>
    bool with_peer(const std::string& node, F&& f) {
        std::lock_guard lk(mu_);
        auto it = peers_.find(node);
        if (it == peers_.end()) return false;
        f(it->second);
        return true;
    }
    void finish(std::uint64_t req_id, const std::string& from_node, result<term> r);
    void run_job(std::function<void()> job);
    // As run_job, for the principal `acting` (may be null): a non-member's
    // job always goes to a worker, within the non-members' share of them
    // (node_options::guest_workers).
    void run_job(std::function<void()> job, const authority* acting);
    // Runs `job` on a worker, in a transient actor. (A job of
    // start_spawned is queued as the actor it is instead.)
    void run_on_worker(std::function<void()> job);
    // Starts an actor spawned for a peer: its first turn (`init`) runs on
    // this I/O thread right after the turn, as run_job's jobs do, or in the
    // run queue when that is not possible.
    // For a non-member `acting` (may be null), always in the run queue,
    // marked to run within the non-members' share of the workers.
    void start_spawned(actor_init init, const authority* acting);
    struct first_turn;
    // While a reply completes a request (finish, finish_spawn, on the I/O
    // thread): an actor that the completion wakes (the caller waiting for
    // this reply, typically) runs its turn on this I/O thread right after
    // the turn, as start_spawned's actors do, instead of waking a worker.
    struct resume_here final : turn_deferral {
        dist* d;
        explicit resume_here(dist* owner) : d(owner) {}
        bool take(actor_proc* a) noexcept override;
    };
    resume_here resume_{this};
    void finish_spawn(std::uint64_t req_id, const std::string& from_node, result<pid> r);
    void emit(const node_event& ev);
    // The name of the up peer we reached at `endpoint`, if any (under mu_).
    std::optional<std::string> up_at(const std::string& endpoint) const;

    node_impl& rt_;
    net_options opts_;
    std::unique_ptr<transport> tr_;

    std::shared_ptr<service_table> services_;

    mutable std::mutex mu_;  // peers_, subscribers, the maps below
    std::map<std::string, peer_state> peers_;
    std::map<std::uint64_t, std::function<void(const node_event&)>> callbacks_;
    std::uint64_t next_sub_ = 1;
    std::vector<pid> node_monitors_;  // monitor_nodes subscribers
    bool stopping_ = false;  // under mu_

    std::atomic<std::uint64_t> protocol_errors_{0}, refused_{0}, overload_drops_{0}, unanswered_{0};
    std::atomic<std::uint64_t> refused_unauthorized_{0}, refused_revoked_{0}, refused_rate_limited_{0};
    std::atomic<std::uint64_t> refused_overloaded_{0};

    std::shared_ptr<grant_table> grants_;
    // Blocking connects and connect_async callbacks (shared: a connect
    // timeout on the timer thread holds it weakly).
    std::shared_ptr<connect_waiters> waiters_;
    // Last: its thread is joined first when this goes away, while the rest
    // (the transport) still exists for completions that call back in.
    pending_calls calls_;
    // Nodes whose session ended with "revoked" (our grant on them was
    // revoked), until they are up again: calls to them fail with
    // errc::revoked rather than nodedown. Under mu_; at most 256 entries.
    // (Also nodes whose session ended with "refused": true = revoked, false
    // = refused; calls then fail with errc::unauthorized.)
    std::map<std::string, bool> revoked_by_;
    // The error for an operation on `node` that is not up.
    error not_connected(const std::string& node);
    // Names of every cluster member that was up here (at most 4096, the
    // oldest forgotten first): no non-member may take one. Under mu_.
    std::set<std::string> member_names_;
    std::deque<std::string> member_order_;
    // Names of the servers this node dialled (grant or visitor links), with
    // the key dialled: no inbound non-member may take one (at most 4096).
    std::map<std::string, public_key> server_names_;
    std::deque<std::string> server_order_;
    // Remembers `name` in a bounded FIFO set (refreshed when seen again).
    template <class Set>
    static void remember(Set& set, std::deque<std::string>& order, const std::string& name);
    // The up non-cluster peers, for the send path (restricted_count_ == 0:
    // every peer is a cluster member; no lookup).
    // The counters of each non-member key with something here (expired
    // ones swept at on_up), and of all strangers. Under mu_.
    std::map<public_key, std::weak_ptr<load_counters>> key_loads_;
    std::shared_ptr<load_counters> strangers_load_ = std::make_shared<load_counters>();
    // All strangers' handed pids together (4 keys' worth).
    std::shared_ptr<capability_pool> strangers_caps_ =
        std::make_shared<capability_pool>(4 * capability_set::default_capacity);
    mutable std::shared_mutex restricted_mu_;
    std::unordered_map<std::string, std::shared_ptr<restricted_peer>> restricted_;
    std::shared_ptr<restricted_peer> find_restricted(const std::string& node) const;
    // A non-member's count of monitors and links on local processes changes.
    void count_relation(const std::string& node, int delta);
    // The principal of an up cluster member (who an invocation acts for:
    // kith::current_principal); null if it is not up. Under restricted_mu_.
    std::unordered_map<std::string, std::shared_ptr<const authority>> members_;
    std::shared_ptr<const authority> member_authority(const std::string& node) const;
    std::atomic<std::size_t> restricted_count_{0};
};

}  // namespace kith::detail
