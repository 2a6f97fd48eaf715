// transport_impl.hpp (private to transport/) — the transport's state and the
// declarations of its parts, one file per seam:
//   transport.cpp  the public methods, helpers, start and stop
//   links.cpp      outbound links (DEALER sockets, socket monitors, refusals)
//                  and the commands other threads queue (connect, disconnect,
//                  end_sessions)
//   sessions.cpp   sending, and sessions: handshake, name claims, up/down
//   receiving.cpp  reading the sockets, frames, liveness timers
//   loop.cpp       the I/O loop and the leader/follower hand-off
//   moves.cpp      a member link dialled at a public port moves to the member port
// and the per-peer state (queues, links, sessions) in peer_state.hpp, the
// shared helpers and constants in transport_internal.hpp.
//
// Threads: callers of post()/connect() touch only the mutex-protected
// queues below and the wake-up eventfd. Everything else — sockets, links,
// sessions — belongs to the I/O thread (io_loop and the functions it calls).
// There are two I/O threads, leader and follower; one owns the sockets and
// runs the loop at a time. A callback may give the leader a job for after
// its turn (run_after_turn: an incoming call). The leader runs it itself, on
// the thread that read the request, so no other thread has to be woken
// between a request and its reply. Meanwhile the sockets lie still; if the
// job runs longer than job_steal_after, a timer wakes the follower, which
// takes the sockets over (a compare-and-swap on `lead`) and leads, and the
// old leader becomes the follower when its job ends. So a job may block or
// run long without stalling the network for more than that bound. The
// release/acquire pair on `lead` is the full memory barrier libzmq asks for
// when a socket moves between threads.
#pragma once

#include "transport/bulk.hpp"
#include "transport/context.hpp"
#include "transport/cpu_placer.hpp"
#include "transport/listener.hpp"
#include "transport/peer_state.hpp"
#include "transport/spin_window.hpp"
#include "transport/transport.hpp"
#include "transport/transport_internal.hpp"

#include <sodium.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <zmq.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <set>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <optional>
#include <unordered_map>
#include <unordered_set>

namespace kith::detail {

using clock = std::chrono::steady_clock;

// Helpers and constants: transport_internal.hpp.
using namespace transport_internal;

// peer_queue, link, guest_session and session: peer_state.hpp.

struct command {
    enum kind { connect, disconnect, end_sessions, goodbye, listen_out, unlisten_out } k;
    std::string endpoint;
    public_key key;
    link_credentials creds;
    std::string reason;  // end_sessions (`endpoint` holds the User-Id), goodbye
    // goodbye: a goodbye the guest decoder read from inbound link `rid` of
    // session `endpoint` (that session only: `gs`).
    std::string rid;
    std::shared_ptr<guest_session> gs;
};

struct transport::impl {
    transport& self;
    transport_options& o;
    transport_callbacks cb;
    keypair cluster;
    auth::proof_key proof_key;         // derive_cookie_key(cookie, "member-proof")
    zap_handler zap;
    // Our handshake, with the services exported now, a nonce and, for a
    // client that proved membership, our proof (auth::member_proof) and,
    // if it dialled our public port, our member port (moves.cpp).
    std::string handshake(std::string nonce, std::string proof = {}, std::uint16_t member_port = 0) const;

    std::shared_ptr<shared_context> shared;  // the process's ZeroMQ context and ZAP thread
    std::shared_ptr<cpu_placer> placer;      // network_cpu_auto only
    zmq::context_t* ctx = nullptr;           // &shared->context()
    std::mutex refused_mu;
    std::vector<zap_outcome> refused;        // ZAP refusals, reported by the loop
    std::atomic<bool> refused_pending{false};
    // The public port and the member port (listener.hpp).
    listener pub{'p', public_io_affinity, {}, {}, {}, {}, -1, 0, {}, false};
    listener mem{'m', member_io_affinity, {}, {}, {}, {}, -1, 0, {}, false};
    clock::time_point block_warned{};       // the last warning about a block (at most one a second)
    std::uint64_t blocks_unwarned = 0;      // blocks since, not logged
    zap_handler member_zap;                  // the member port's: the cluster key or 400
    // While the non-members' read budget is spent, the public port is not
    // read (listener.hpp); I/O thread only.
    clock::time_point pub_paused_until{};
    bool pub_paused(clock::time_point now) const noexcept { return now < pub_paused_until; }
    std::atomic<std::uint64_t> public_pauses{0};
    std::atomic<std::uint64_t> address_blocks{0};
    // Addresses of handshakes seen at ZAP, for the listeners' guards (under
    // refused_mu; taken by report_refusals on the I/O thread).
    std::vector<std::pair<listener*, std::string>> zap_sources;
    int wake_fd = -1;
    std::thread io, io2;  // leader and follower; the roles swap
    // `lead`: (generation << 2) | lead_mode. Leading: the leader is in the
    // loop. In_job: the leader runs a job, the sockets lie still, and the
    // follower may steal them (-> stolen) once the job is older than
    // job_steal_after.
    enum lead_mode : std::uint64_t { leading = 0, in_job = 1, stolen = 2 };
    std::atomic<std::uint64_t> lead{leading};
    std::atomic<bool> follower_ready{false};  // the follower waits, able to steal
    std::atomic<clock::rep> job_started{0};   // of the current job (read after `lead`)
    int job_timer = -1;                       // timerfd: wakes the follower
    int follow_fd = -1;                       // eventfd: wakes the follower at stop
    // run_after_turn's jobs: the leader takes them in its turn and runs
    // them after it; the follower hands those not started on when it steals.
    std::mutex jobs_mu;
    std::deque<std::function<void()>> jobs;   // under jobs_mu
    spin_window spin;                         // leader's: spin_until's length
    clock::time_point next_tick, spin_until;  // leader's: the loop's timers
    std::atomic<bool> stopping{false};
    std::atomic<bool> stopped_io{false};

    // cross-thread state
    std::mutex cmd_mu;
    std::vector<command> cmds;
    std::mutex dirty_mu;
    std::vector<std::shared_ptr<peer_queue>> dirty;
    std::atomic<bool> wake_pending{false};
    mutable std::shared_mutex peers_mu;
    std::unordered_map<std::string, std::shared_ptr<peer_queue>, name_hash, std::equal_to<>> queues;  // up peers
    // Bumped under peers_mu (unique) with every change of `queues`: a
    // thread's last lookup (post, transport.cpp) stands while it is unchanged.
    std::atomic<std::uint64_t> queues_gen{1};
    // This transport among all of the process's, for those lookups (an
    // address may be reused by a later transport).
    const std::uint64_t serial = next_serial();
    static std::uint64_t next_serial() noexcept {
        static std::atomic<std::uint64_t> n{0};
        return ++n;
    }
    std::mutex freeze_mu;
    std::condition_variable freeze_cv;
    bool frozen = false;                 // under freeze_mu
    bool parked = false;                 // under freeze_mu: the loop waits while frozen
    std::atomic<bool> frozen_flag{false};  // mirrors `frozen`: the loop locks freeze_mu only when set

    // counters
    std::atomic<std::uint64_t> frames_in{0}, frames_out{0}, envelopes_in{0}, envelopes_out{0}, bytes_in{0},
        bytes_out{0}, refused_inbound{0}, refused_outbound{0}, decode_errors{0}, protocol_errors{0},
        overload_drops{0}, dropped_at_down{0}, heartbeat_timeouts{0}, peers_up{0}, peers_down{0},
        handshakes_pending{0}, handshake_failures{0}, socket_errors{0}, rate_drops{0}, credit_timeouts{0},
        paced_waits{0}, member_moves{0}, member_moves_failed{0};
    std::atomic<clock::rep> socket_error_logged{0};  // when the last socket_error record went out

    // I/O-thread state
    std::list<std::unique_ptr<link>> outs;
    std::unordered_map<std::string, std::unique_ptr<link>> ins;  // by routing id
    std::map<public_key, std::size_t> links_per_key;             // inbound links of each non-member key
    // Read budgets of non-members (transport_options::guest_bytes_per_s):
    // one bucket per key seen recently, one for them all. I/O thread only.
    struct byte_bucket {
        double tokens = -1;  // < 0: new, starts full
        clock::time_point last{};
        // Takes n bytes if the bucket holds them (refilled at `rate`, up to `burst`).
        bool take(double n, double rate, double burst, clock::time_point now);
    };
    std::map<public_key, byte_bucket> guest_rx;
    byte_bucket guests_rx;
    // True if a non-member's frame of `bytes` may be read now; charges it
    // (all non-members' bucket first, whatever the key's says). When all
    // non-members' bucket is spent and the frame came by the public port
    // (`public_port`), that port pauses until it refills.
    bool charge_guest(const public_key& key, std::size_t bytes, clock::time_point now, bool public_port);
    std::atomic<std::uint64_t> links_over_budget{0};
    // fd bookkeeping for ZMQ_EVENT_DISCONNECTED (matched to links by fd, and
    // fds are reused): `closing_fds` holds fds of inbound links forgotten
    // before their close was seen; `stale_fds` counts closes still to come
    // for fds that a newer connection already has (their links are gone).
    std::set<int> closing_fds;
    std::map<int, int> stale_fds;
    // Inbound connections accepted that have sent no kith message yet (by
    // fd: ACCEPTED adds, DISCONNECTED or the first message removes): what a
    // raw TCP flood holds (context.hpp, "File descriptors").
    std::unordered_set<int> hs_fds;
    std::unordered_set<int> hs_early_fds;    // first message read before the ACCEPTED event
    std::vector<int> fresh_accepts;          // fds of ACCEPTED events in the monitor batch being read
    std::uint64_t open_files = 0;            // the soft RLIMIT_NOFILE after start
    clock::time_point flood_warned{};        // last warning about hs_fds (at most one per 30 s)
    // A new inbound connection has `fd`: whatever had it before is closed,
    // even if its DISCONNECTED event is still on its way.
    void note_fd_reuse(int fd);
    void forget_key_link(const link& l) {
        if (l.outbound || l.auth.kind == trust_kind::cluster) return;
        auto it = links_per_key.find(l.auth.key);
        if (it != links_per_key.end() && --it->second == 0) links_per_key.erase(it);
    }
    std::unordered_map<std::string, session> sessions;           // by node name
    std::vector<session*> blocked;                               // sessions with unsent frames
    // Puts `s` on the blocked list (flushed at the end of the turn), once.
    void mark_blocked(session& s) {
        if (std::find(blocked.begin(), blocked.end(), &s) == blocked.end()) blocked.push_back(&s);
    }
    bool items_dirty = true;
    std::vector<zmq_pollitem_t> items;
    // wake, public ROUTER and monitor, member ROUTER and monitor, then a
    // DEALER/monitor pair per outbound link from items[first_link] on.
    static constexpr std::size_t first_link = 5;
    static constexpr std::size_t pub_item = 1, mem_item = 3;  // the ROUTERs' entries, each followed by its monitor
    std::vector<link*> item_links;                               // per DEALER/monitor pair
    // Which sockets the next poll asks for ZMQ_EVENTS (poll_sockets):
    // items' file descriptors (a socket's ZMQ_FD), per item whether it was
    // touched since ZMQ_EVENTS last said "no input" (`item_ask`), and
    // whether the next poll must ask every socket (`full_poll_next`).
    std::vector<pollfd> item_fds;
    std::vector<unsigned char> item_ask;
    bool full_poll_next = true;
    bool cheap_poll_ok = false;     // every socket's ZMQ_FD is known
    bool pub_was_paused = false;    // the public port's pause at the last poll
    clock::time_point last_full_poll{};
    static constexpr std::chrono::microseconds full_poll_every{2000};
    static constexpr std::chrono::milliseconds asked_block_max{5};  // the stop's drain turns wait as long (drain_output)
    // A send or a read on item `i` may take its socket's command in passing.
    void ask_item(std::size_t i) noexcept {
        if (i < item_ask.size()) item_ask[i] = 1;
    }
    // A receive on item `i` found nothing: nothing to ask until its ZMQ_FD says.
    void settle_item(std::size_t i) noexcept {
        if (i < item_ask.size() && i != 0) item_ask[i] = 0;
    }
    // Whether socket item `i` has input now: 1, 0, or -1 when the context ended.
    int item_has_input(std::size_t i);
    int poll_asked(long timeout_ms);
    std::vector<link*> loop_links;                               // io_loop's copy (reused, no allocation per turn)

    impl(transport& t, transport_callbacks c, std::string cookie)
        : self(t), o(t.opts_), cb(std::move(c)), cluster(cluster_keypair(cookie)),
          proof_key(derive_cookie_key(cookie, auth::proof_purpose)), zap(cluster.pub, t.opts_.log, t.opts_.node_name),
          member_zap(cluster.pub, t.opts_.log, t.opts_.node_name, true) {}
    ~impl() {
        stop_placer();  // a start() that threw elsewhere: the placer must not call into freed memory
        close_fds();
        sodium_memzero(proof_key.data(), proof_key.size());
    }

    // ---- helpers ------------------------------------------------------------

    void wake();

    // One record through the node's sink (transport_options::log).
    void log(log_level level, std::string_view text) const noexcept {
        log_record r;
        r.level = level;
        r.source = "transport";
        r.text = text;
        r.node = o.node_name;
        log_to(o.log, r);
    }

    // Runs a callback; one that throws is logged (level error) and the
    // transport carries on as if it had returned.
    template <class F, class... A>
    void call(const F& f, A&&... a) {
        if (!f) return;
        try {
            f(std::forward<A>(a)...);
        } catch (const std::exception& e) {
            log(log_level::error, std::string("a callback threw (ignored; fix the callback): ") + e.what());
        } catch (...) {
            log(log_level::error, "a callback threw a non-standard exception (ignored; fix the callback)");
        }
    }

    // A libzmq call failed at run time: counted, and logged (at most one
    // record a second, so a failing call in a loop cannot flood the sink).
    void socket_error(const std::string& what) noexcept {
        socket_errors++;
        const auto now = clock::now().time_since_epoch().count();
        auto last = socket_error_logged.load(std::memory_order_relaxed);
        if (now - last < std::chrono::duration_cast<clock::duration>(std::chrono::seconds(1)).count() && last != 0)
            return;
        if (!socket_error_logged.compare_exchange_strong(last, now)) return;
        log(log_level::error, what);
    }

    // Both throw zmq::error_t.
    void apply_common_options(zmq::socket_ref s);
    // Opens, secures and binds listener `L` at `endpoint` (listeners.cpp);
    // fail_start on failure. close_listener unbinds (waiting a moment for
    // the port to be free) and closes it; then its ZAP route goes.
    void open_listener(listener& L, const std::string& endpoint, zap_handler& h);
    void close_listener(listener& L);
    zmq::socket_t open_monitor(zmq::socket_ref s, int events);

    // ---- start / stop ---------------------------------------------------------

    void start();

    // A failed start(): what was opened is closed again, and the placer
    // (shared by the process) forgets this transport before it is freed.
    [[noreturn]] void fail_start(const std::string& why) {
        stop_placer();
        stop_guest_decoder();
        cleanup_sockets();
        close_fds();
        throw setup_error(why);
    }

    void close_fds();

    void cleanup_sockets();

    // ---- outbound links -----------------------------------------------------------

    void open_dealer(link& l);

    void close_dealer(link& l, int linger_ms);
    // stop(): waits (at most stop_drain, or heartbeat_timeout if shorter)
    // until ZeroMQ took every frame flushed and the peers credited every
    // fragment, then says goodbye behind them (loop.cpp).
    static constexpr std::chrono::milliseconds stop_drain{2000};
    bool output_pending() const;
    void drain_output(clock::time_point until);
    // After drain_output: a warning per peer still up that did not get
    // everything stop() waited for (frames ZeroMQ did not take, fragments
    // not credited), which is then dropped. What ZeroMQ took is not known
    // to be read (small envelopes are not acknowledged).
    void warn_undelivered(clock::duration bound);
    void say_goodbyes(clock::time_point until);
    void quiet_own_links(clock::time_point until);
    void await_closes(clock::time_point until);
    std::atomic<std::uint64_t> stop_drain_turns{0};

    void refuse_out(link& l, const std::string& reason, errc code = errc::unauthorized);

    // Replace the socket of an outbound link by a fresh one (reconnect).
    void reopen(link& l);
    // Closes an outbound link whose proven key failed quickly again and
    // again, and dials it again after a pause (housekeeping).
    void pause_redial(link& l);

    void handle_monitor(link& l);

    // ---- sending ------------------------------------------------------------------------

    // 1: accepted by ZeroMQ; 0: would block; -1: the link is gone.
    int send_on(link& l, const void* data, std::size_t size);

    void send_control(link& l, const envelope& e);

    // Moves what posting threads queued for `s` into s.unsent and hands as
    // much as ZeroMQ accepts to the session's send path.
    void flush(session& s);
    bool pace(session& s, std::size_t n, clock::time_point now);
    // Hands the session's large envelopes (and those queued behind them)
    // to ZeroMQ, fragments within the window (bulk.cpp). After flush sent
    // every frame in `unsent`.
    void send_bulk(session& s);
    // A fragment from cluster member session `s` on link `l`: the whole
    // envelope when it was the last one; nullopt otherwise, or if it broke
    // the rules (counted, reported, the partial envelope dropped).
    std::optional<envelope> on_fragment(session& s, link& l, env_fragment& f);
    void fragment_error(session& s, const std::string& what);
    // Sends the credit owed to the peer on `l`; if ZeroMQ would block it
    // stays owed and flush sends it (a lost credit would stall the peer).
    void send_credit(session& s, link& l);

    // ---- sessions -----------------------------------------------------------------------

    void session_up(link& l, const env_handshake& hs);

    // Ends the session: reports down, discards its queue and resets every
    // other link it had (their peers will re-handshake). `cause` is the link
    // whose failure ended it (reset by the caller), or null.
    void session_down(const std::string& name, const std::string& reason, link* cause);
    // session_down's first half: reports it down and discards its queue;
    // returns its links, untouched (stop() closes them itself).
    std::vector<link*> end_session(const std::string& name, const std::string& reason);

    // Forgets a link's session state. Outbound: a fresh socket (reconnect).
    // Inbound: forgotten; the peer is told with a goodbye "reset" so that it
    // reconnects rather than talk into the void.
    void reset_link(link& l, bool tell_peer);

    std::vector<std::string> doomed_ins;
    void erase_in(link& l);

    void detach(link& l);

    // A link died (timeout, connection closed, goodbye).
    void link_failed(link& l, const std::string& reason);

    void on_handshake(link& l, env_handshake& hs);

    // Handles one received frame on link `l`; `auth` is the message's trust.
    void on_frame(link& l, std::string_view frame, const peer_auth& auth);

    void deliver(link& l, const peer_auth& auth, std::vector<envelope>&& data);

    // The data envelopes of a decoded frame from envs[first] on, compacted in
    // place (heartbeats dropped, a second handshake counted as a protocol
    // error), up to a goodbye, whose reason is returned.
    // Fragments and credits are handled here for cluster member session `s`
    // (from `l`); with `s` null (any other peer) they are protocol errors.
    std::optional<std::string> take_data(std::vector<envelope>& envs, std::size_t first, session* s = nullptr,
                                         link* l = nullptr);

    // The peer said goodbye on `l` (reason as it said it): its session ends.
    void on_goodbye(link& l, const std::string& said);

    // ---- moving to the member port (moves.cpp) -------------------------------------------
    // docs/protocol.md, "Moving to the member port". A member link we
    // dialled at a node's public port moves to its member port, stated in
    // the node's handshake: a second link (the mover) dialled there joins
    // the session, `move` on the first asks the node to take it, and its
    // `move_ack` (the last envelope it sends on the first) makes the mover
    // the link we send on. Meanwhile nothing is sent to the node
    // (session::hold) and the mover is not read, so each direction stays
    // one ordered stream.
    // The member port a cluster member that dialled inbound link `l` may
    // move to (0: none, or it is not reachable where the public port is).
    std::uint16_t member_port_for(const link& l) const;
    // Outbound cluster link `l1` reached a node whose member port is
    // `port` and whose public port is `public_port` (only a link dialled at
    // that port moves: not a relay's splice or a forwarded port).
    void start_move(link& l1, std::uint16_t port, std::uint16_t public_port);
    // The mover's handshake joined its session: asks for the move.
    void move_joined(link& l2);
    // Inbound `move` / outbound `move_ack` on link `l` of member session `s`.
    void on_move(session& s, link& l, const env_move& m);
    void on_move_ack(session& s, link& l, const env_move_ack& a);
    // The mover `l2` is closed, never dialled again (`why`, logged at debug
    // if the move did not complete): its first link carries on, or is
    // dialled again if it was parked. The session ends with it if it was
    // the link we send on, or if it failed (`failed`) while the node may
    // already have moved to it (its move awaited the answer).
    void abandon_move(link& l2, const std::string& why, bool failed = false);
    // L1 after the node's answer: closed silently, dialled again when the
    // mover ends (called once the answer's frame was delivered).
    void park(link& l1);
    // Housekeeping: movers past their deadline are abandoned.
    void check_moves(clock::time_point now);
    // Erases the outbound links marked doomed (their movers with them).
    void reap_outs();

    // ---- the guest decoder (sessions_guest.cpp) ---------------------------------------------
    // Frames of grantees and strangers are decoded and handed to the node on
    // a thread of their own, at a lower CPU priority, so that a cluster
    // member's frames are never read behind a guest's decode (a 256 KiB
    // frame of nils is 262,144 terms: milliseconds). The queue is bounded in
    // bytes (guests_burst_bytes); a frame over it is dropped unread and
    // counted in rate_drops, like one over the senders' byte budget.
    std::thread guest_thread;
    std::mutex guest_mu;
    std::condition_variable guest_cv;
    std::deque<guest_frame> guest_q;     // under guest_mu
    std::size_t guest_q_bytes = 0;       // under guest_mu
    bool guest_stop = false;             // under guest_mu
    void start_guest_decoder();
    void stop_guest_decoder();
    // Queues a frame of an established inbound non-member link; false if the
    // queue is full (the frame is then dropped by the caller).
    bool queue_guest_frame(const link& l, std::string_view frame, const peer_auth& auth,
                           const std::shared_ptr<guest_session>& gs);
    void guest_decoder();
    // Decodes one queued frame and hands its envelopes to the node.
    void decode_guest(guest_frame& f);

    // ---- receiving --------------------------------------------------------------------------

    static constexpr int read_batch = 256;  // messages read per socket per loop turn

    // Reads up to read_batch messages of listener `L` (the public one stops
    // when it pauses); returns how many it read.
    int read_router(listener& L);

    // Reads up to read_batch messages; returns how many it read.
    int read_dealer(link& l);

    void read_router_monitor(listener& L);

    // Reports the ZAP refusals the process's ZAP thread passed on.
    void report_refusals();

    // ---- timers -------------------------------------------------------------------------------

    void housekeeping();
    // A connection `fd` was accepted by `L`: counted against its source
    // address's budget, which blocks the address when it is over (listener.hpp).
    void ration_accepted(listener& L, int fd);
    // A connection from `src` seen by `L` (`how`): charged, and blocked when over.
    void ration(listener& L, const source_addr& src, source_guard::seen how);
    // Installs `L`'s guard's filter on its listening socket.
    void install_guard(listener& L);
    // net_options::network_cpu: whether this process may run on `cpu`;
    // thread `t` pinned to o.network_cpu (if set and such a CPU).
    static bool cpu_allowed(int cpu);
    void pin_network_thread(std::thread& t) const;
    // network_cpu_auto: the placer (cpu_placer.hpp) for this node's I/O
    // threads and, unless an earlier node pinned them, ZeroMQ's.
    void start_placer();
    void stop_placer();
    // Runs an I/O thread's body, placed while it runs (network_cpu_auto).
    void run_placed(bool leading);
    // Ends the sessions whose fragments waited for credit longer than
    // heartbeat_timeout (bulk.cpp): a member that keeps its link alive but
    // withholds credit would otherwise hold its large envelopes, and post()
    // once the queue is full, forever.
    void end_credit_stalls(clock::time_point now);

    void reap_ins();

    // ---- commands -------------------------------------------------------------------------------

    void run_commands();

    // See transport::end_sessions.
    void end_sessions(const std::string& user_id, const std::string& reason);

    // Ends session `name`: goodbye `told` on each of its links, peer down
    // (`reason`) here, and its links forgotten (outbound ones reconnect).
    void end_session_told(const std::string& name, const std::string& told, const std::string& reason);

    void take_dirty();

    // ---- the loop -----------------------------------------------------------------------------------

    void rebuild_items();

    static std::uint64_t mode_of(std::uint64_t l) { return l & 3; }

    void set_job_timer(std::chrono::microseconds after) {
        itimerspec t{};
        t.it_value.tv_sec = static_cast<time_t>(after.count() / 1000000);
        t.it_value.tv_nsec = static_cast<long>(after.count() % 1000000) * 1000;
        ::timerfd_settime(job_timer, 0, &t, nullptr);  // zero disarms
    }

    // Each of the two I/O threads. Leads (runs the loop) until a callback
    // gives it a job, runs the job, and leads on unless the follower stole
    // the sockets meanwhile; then it follows until it steals them back.
    void io_thread(bool leading);

    // Runs the job run_after_turn gave, the sockets lying still. True if this
    // thread still owns them afterwards; false if the follower took them.
    bool run_job();

    // Waits until the leader's job has held the sockets for job_steal_after,
    // then takes them over (true), or until the transport has shut down
    // (false).
    bool follow();

    bool take_after_turn(std::function<void()>& job);
    // The jobs not started, to callbacks.run_elsewhere (in order), from
    // the thread that holds the sockets.
    void hand_on_jobs();
    bool has_jobs() {
        std::lock_guard lk(jobs_mu);
        return !jobs.empty();
    }

    // Runs turns until stopping (then shuts down) or until a callback gave a
    // job for after the turn (then returns, still owning the sockets).
    void io_loop();
    // One poll of the sockets, at most timeout_ms; the public port is left
    // out while paused (and the poll ends when the pause does). -1: the
    // context ended; otherwise zmq_poll's count (0 after a failed poll).
    int poll_sockets(clock::time_point now, long timeout_ms);
    // Clears the wake-up eventfd if the poll found it set (posting threads
    // set it; the loop flushes what they queued in the same turn).
    void read_wake();
    // Reads what the poll found ready: monitors, then the member port, the
    // links we dialled, the public port last (io_loop and drain_output).
    void read_ready();

    void shutdown_io();
};

}  // namespace kith::detail
