// transport.cpp — the ROUTER/DEALER + CURVE transport (see transport.hpp and
// docs/protocol.md, "Transport and security").
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
#include "transport/transport.hpp"

#include "transport/context.hpp"

#include <sodium.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

namespace kith::detail {

using clock = std::chrono::steady_clock;

namespace {

// Reads one socket-monitor event (two frames: 16-bit event + 32-bit value,
// then the endpoint) without blocking; nullopt when none is waiting.
std::optional<std::pair<std::uint16_t, std::uint32_t>> read_monitor_event(void* mon) {
    zmq_msg_t a, b;
    zmq_msg_init(&a);
    if (zmq_msg_recv(&a, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&a);
        return std::nullopt;
    }
    zmq_msg_init(&b);
    if (zmq_msg_more(&a)) (void)zmq_msg_recv(&b, mon, 0);
    std::uint16_t ev = 0;
    std::uint32_t val = 0;
    if (zmq_msg_size(&a) >= 6) {
        std::memcpy(&ev, zmq_msg_data(&a), 2);
        std::memcpy(&val, static_cast<char*>(zmq_msg_data(&a)) + 2, 4);
    }
    zmq_msg_close(&a);
    zmq_msg_close(&b);
    return std::make_pair(ev, val);
}

// ZAP metadata property carrying the client's key in Z85, so that each
// inbound message names its key as well as its User-Id.
constexpr const char* key_property = "X-Kith-Key";

// Maps a goodbye's reason to a nodedown reason.
std::string down_reason_of_goodbye(const std::string& r) {
    if (r == "shutdown" || r == "revoked") return r;
    if (r.starts_with("refused")) return "refused";
    return "connection_closed";
}

void set_int(void* s, int opt, int v) { zmq_setsockopt(s, opt, &v, sizeof v); }

// Heterogeneous lookup by string_view (post() looks a peer up per call).
struct name_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// The transport whose I/O thread this is, if any: post() from inside a
// callback needs no wake-up, since the loop flushes dirty queues after
// running the callbacks of the same turn.
thread_local const void* tl_io_owner = nullptr;
// The transport whose run_after_turn job this thread is running, if any.
thread_local const void* tl_job_owner = nullptr;
thread_local std::uint64_t tl_job_lead = 0;  // the `lead` value while that job holds the sockets

// How long a run_after_turn job may keep the sockets before the follower
// takes them over.
constexpr auto job_steal_after = std::chrono::microseconds(200);
// After a turn with activity the loop polls without blocking for this long
// (see io_loop).
constexpr auto io_spin = std::chrono::microseconds(50);

}  // namespace

// A frame queue shared between posting threads and the I/O thread.
struct peer_queue {
    explicit peer_queue(std::string n) : name(std::move(n)) {}
    std::string name;
    std::mutex mu;
    frame_builder cur;                // batch under construction
    std::deque<std::string> frames;   // finished batches, oldest first
    std::size_t bytes = 0;            // bytes in cur + frames + the I/O thread's unsent frames
    bool dirty = false;               // on the I/O thread's dirty list
    bool closed = false;              // the peer went down; post() answers nodedown
};

enum class lstate { connecting, handshaking, established };

struct link {
    bool outbound = false;
    lstate state = lstate::connecting;
    std::string peer;                  // node name once established
    std::uint64_t peer_creation = 0;
    clock::time_point last_rx{}, next_hb{}, hs_deadline{};
    peer_auth auth;
    std::string endpoint;
    std::string nonce;                 // outbound: the nonce our handshake sent (the server's proof covers it)
    // inbound
    std::string rid;
    int fd = -1;
    bool reset_sent = false;
    // outbound
    void* dealer = nullptr;
    void* mon = nullptr;
    public_key server_key;
    link_credentials creds;
    int silent_failures = 0;           // consecutive quick CURVE failures without detail
    clock::time_point connected_at{};  // last TCP connect of the socket
    bool zmq_ok = false;               // ZMQ (CURVE) handshake succeeded on this socket
    bool refused = false;              // terminal: closed after a refusal
    bool doomed = false;               // disconnected/replaced: erased at the end of the loop turn
};

struct session {
    std::string name;
    peer_info info;
    link* primary = nullptr;
    std::vector<link*> links;
    std::shared_ptr<peer_queue> q;
    std::deque<std::string> unsent;    // taken from q, not yet accepted by ZeroMQ
};

struct command {
    enum kind { connect, disconnect, end_sessions } k;
    std::string endpoint;
    public_key key;
    link_credentials creds;
    std::string reason;  // end_sessions (`endpoint` holds the User-Id)
};

struct transport::impl {
    transport& self;
    transport_options& o;
    transport_callbacks cb;
    keypair cluster;
    auth::proof_key proof_key;         // derive_cookie_key(cookie, "member-proof")
    zap_handler zap;
    // Our handshake, with the services exported now, a nonce and, for a
    // client that proved membership, our proof (auth::member_proof).
    std::string handshake(std::string nonce, std::string proof = {}) const {
        env_handshake hs;
        hs.node = o.node_name;
        hs.creation = o.creation;
        hs.services = o.live_services ? o.live_services() : o.services;
        hs.hidden = o.hidden;
        hs.key = self.key().z85();
        hs.nonce = std::move(nonce);
        hs.proof = std::move(proof);
        return encode_frame(envelope{std::move(hs)});
    }

    std::shared_ptr<shared_context> shared;  // the process's ZeroMQ context and ZAP thread
    void* ctx = nullptr;                     // shared->get()
    std::string zap_route;                   // this node's ZAP domain ("kith/<n>")
    std::mutex refused_mu;
    std::vector<zap_outcome> refused;        // ZAP refusals, reported by the loop
    std::atomic<bool> refused_pending{false};
    void* router = nullptr;
    void* router_mon = nullptr;
    int wake_fd = -1;
    std::string bound;
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
    std::function<void()> after_turn;         // leader's: run_after_turn's job
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
    std::mutex freeze_mu;
    std::condition_variable freeze_cv;
    bool frozen = false;                 // under freeze_mu
    std::atomic<bool> frozen_flag{false};  // mirrors `frozen`: the loop locks freeze_mu only when set

    // counters
    std::atomic<std::uint64_t> frames_in{0}, frames_out{0}, envelopes_in{0}, envelopes_out{0}, bytes_in{0},
        bytes_out{0}, refused_inbound{0}, refused_outbound{0}, decode_errors{0}, protocol_errors{0},
        overload_drops{0}, dropped_at_down{0}, heartbeat_timeouts{0}, peers_up{0}, peers_down{0};

    // I/O-thread state
    std::list<std::unique_ptr<link>> outs;
    std::unordered_map<std::string, std::unique_ptr<link>> ins;  // by routing id
    std::unordered_map<std::string, session> sessions;           // by node name
    std::vector<session*> blocked;                               // sessions with unsent frames
    bool items_dirty = true;
    std::vector<zmq_pollitem_t> items;
    std::vector<link*> item_links;                               // per DEALER/monitor pair
    std::vector<link*> loop_links;                               // io_loop's copy (reused, no allocation per turn)

    impl(transport& t, transport_callbacks c, std::string cookie)
        : self(t), o(t.opts_), cb(std::move(c)), cluster(cluster_keypair(cookie)),
          proof_key(derive_cookie_key(cookie, auth::proof_purpose)), zap(cluster.pub) {}
    ~impl() {
        close_fds();
        sodium_memzero(proof_key.data(), proof_key.size());
    }

    // ---- helpers ------------------------------------------------------------

    void wake() {
        if (!wake_pending.exchange(true)) {
            std::uint64_t one = 1;
            ssize_t n = ::write(wake_fd, &one, sizeof one);
            (void)n;
        }
    }

    template <class F, class... A>
    void call(const F& f, A&&... a) {
        if (!f) return;
        try {
            f(std::forward<A>(a)...);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "kith transport: a callback threw: %s\n", e.what());
        } catch (...) {
            std::fprintf(stderr, "kith transport: a callback threw\n");
        }
    }

    void apply_common_options(void* s) {
        set_int(s, ZMQ_LINGER, static_cast<int>(o.linger.count()));
        set_int(s, ZMQ_SNDHWM, o.sndhwm);
        set_int(s, ZMQ_RCVHWM, o.rcvhwm);
        std::int64_t maxmsg = static_cast<std::int64_t>(o.limits.max_frame_bytes);
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        set_int(s, ZMQ_HANDSHAKE_IVL, static_cast<int>(o.heartbeat_timeout.count()));
    }

    void* open_monitor(void* s, int events) {
        std::string ep = "inproc://kith-monitor-" + std::to_string(shared->unique());
        if (zmq_socket_monitor(s, ep.c_str(), events) != 0) return nullptr;
        void* m = zmq_socket(ctx, ZMQ_PAIR);
        set_int(m, ZMQ_LINGER, 0);
        if (zmq_connect(m, ep.c_str()) != 0) {
            zmq_close(m);
            return nullptr;
        }
        return m;
    }

    // ---- start / stop ---------------------------------------------------------

    void start() {
        if (sodium_init() < 0) throw setup_error("kith: libsodium failed to initialise");
        if (!zmq_has("curve")) throw setup_error("kith: libzmq was built without CURVE; kith has no plaintext mode");
        wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        follow_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        job_timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (wake_fd < 0 || follow_fd < 0 || job_timer < 0) fail_start("kith: eventfd or timerfd failed");
        shared = shared_context::acquire();
        ctx = shared->get();
        // Fail closed, step 1: this node's ZAP route exists before the ROUTER
        // does, and is removed only after the ROUTER is closed.
        zap_route = shared->add_route(zap, [this](const zap_outcome& out) {
            if (out.accepted) return;
            {
                std::lock_guard lk(refused_mu);
                if (refused.size() < 1024) refused.push_back(out);  // bounded: a flood is counted, not stored
                refused_inbound++;
            }
            refused_pending.store(true);
            wake();
        });
        router = zmq_socket(ctx, ZMQ_ROUTER);
        if (!router) fail_start("kith: cannot create the ROUTER socket: " + std::string(zmq_strerror(zmq_errno())));
        apply_common_options(router);
        set_int(router, ZMQ_CURVE_SERVER, 1);
        zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, self.keys_.sec.bytes().data(), 32);
        zmq_setsockopt(router, ZMQ_ZAP_DOMAIN, zap_route.data(), zap_route.size());
        // Fail closed, step 2: without a ZAP answer, refuse (libzmq accepts
        // every key when no handler answers unless this is set before bind).
        int one = 1;
        if (zmq_setsockopt(router, 93 /* ZMQ_ZAP_ENFORCE_DOMAIN */, &one, sizeof one) != 0)
            fail_start("kith: libzmq lacks ZMQ_ZAP_ENFORCE_DOMAIN; refusing to run without fail-closed ZAP");
        set_int(router, ZMQ_ROUTER_MANDATORY, 1);
        // ZMQ_ROUTER_HANDOVER stays 0: a client cannot take over another
        // connection's routing id; kith DEALERs use a fresh random id per socket.
        router_mon = open_monitor(router, ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED);
        int rc = zmq_bind(router, o.bind_endpoint.c_str());
        if (rc != 0) fail_start("kith: cannot bind " + o.bind_endpoint + ": " + zmq_strerror(zmq_errno()));
        char buf[256];
        size_t len = sizeof buf;
        zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, buf, &len);
        bound.assign(buf, len > 0 && buf[len - 1] == '\0' ? len - 1 : len);
        next_tick = spin_until = clock::now();
        try {
            io = std::thread([this] { io_thread(true); });
        } catch (const std::system_error& e) {
            fail_start(std::string("kith: cannot start the I/O thread: ") + e.what());
        }
        try {
            io2 = std::thread([this] { io_thread(false); });
        } catch (const std::system_error& e) {
            // The leader runs alone: no jobs (no follower), and it shuts down
            // when stop() is called.
            (void)e;
        }
    }

    // A failed start(): what was opened is closed again.
    [[noreturn]] void fail_start(const std::string& why) {
        cleanup_sockets();
        close_fds();
        throw setup_error(why);
    }

    void close_fds() {
        for (int* fd : {&wake_fd, &follow_fd, &job_timer}) {
            if (*fd >= 0) ::close(*fd);
            *fd = -1;
        }
    }

    void cleanup_sockets() {
        for (auto& l : outs) close_dealer(*l, 0);
        outs.clear();
        // The shared ZeroMQ context closes a listener in the background: unbind
        // and wait (at most a second) until it is closed, so that the port is
        // free when stop() returns (a node restarted on it can bind).
        if (router && router_mon && !bound.empty() && zmq_unbind(router, bound.c_str()) == 0) {
            const auto until = clock::now() + std::chrono::seconds(1);
            for (auto now = clock::now(); now < until; now = clock::now()) {
                zmq_pollitem_t it{router_mon, 0, ZMQ_POLLIN, 0};
                auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
                if (zmq_poll(&it, 1, static_cast<long>(left)) <= 0) break;
                auto ev = read_monitor_event(router_mon);
                if (ev && ev->first == ZMQ_EVENT_CLOSED) break;
            }
        }
        if (router_mon) {
            zmq_socket_monitor(router, nullptr, 0);
            zmq_close(router_mon);
            router_mon = nullptr;
        }
        if (router) zmq_close(router);
        router = nullptr;
        // After the ROUTER: never a ROUTER without its handler. (The context
        // itself ends with the last transport of the process, in stop().)
        if (shared) shared->remove_route(zap_route);
        ctx = nullptr;
    }

    // ---- outbound links -----------------------------------------------------------

    void open_dealer(link& l) {
        l.state = lstate::connecting;
        l.zmq_ok = false;
        l.peer.clear();
        l.dealer = zmq_socket(ctx, ZMQ_DEALER);
        apply_common_options(l.dealer);
        set_int(l.dealer, ZMQ_RECONNECT_IVL, static_cast<int>(o.reconnect_interval.count()));
        set_int(l.dealer, ZMQ_RECONNECT_IVL_MAX, static_cast<int>(o.reconnect_interval_max.count()));
        // Cluster credentials go only where the caller believes a member
        // listens; the link is cluster only once the server proves it.
        const keypair& kp = l.creds.client ? *l.creds.client : l.creds.own_key ? self.keys_ : cluster;
        zmq_setsockopt(l.dealer, ZMQ_CURVE_SERVERKEY, l.server_key.bytes.data(), 32);
        zmq_setsockopt(l.dealer, ZMQ_CURVE_PUBLICKEY, kp.pub.bytes.data(), 32);
        zmq_setsockopt(l.dealer, ZMQ_CURVE_SECRETKEY, kp.sec.bytes().data(), 32);
        // A fresh routing id per socket: one socket = one connection incarnation
        // as far as the server's ROUTER can tell (ids starting with 0 are reserved).
        unsigned char rid[16];
        randombytes_buf(rid, sizeof rid);
        rid[0] = static_cast<unsigned char>(0x80 | (rid[0] & 0x7f));
        zmq_setsockopt(l.dealer, ZMQ_ROUTING_ID, rid, sizeof rid);
        l.mon = open_monitor(l.dealer, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                           ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                           ZMQ_EVENT_DISCONNECTED);
        if (zmq_connect(l.dealer, l.endpoint.c_str()) != 0) {
            std::string why = "cannot connect to " + l.endpoint + ": " + zmq_strerror(zmq_errno());
            refuse_out(l, why);
            return;
        }
        // Our handshake is the first message on the connection: queued in the
        // pipe now, sent when the CURVE handshake completes.
        l.nonce = auth::fresh_nonce();
        auto hs = handshake(l.nonce);
        zmq_send(l.dealer, hs.data(), hs.size(), ZMQ_DONTWAIT);
        items_dirty = true;
    }

    void close_dealer(link& l, int linger_ms) {
        if (!l.dealer) return;
        if (l.mon) {
            zmq_socket_monitor(l.dealer, nullptr, 0);
            zmq_close(l.mon);
            l.mon = nullptr;
        }
        set_int(l.dealer, ZMQ_LINGER, linger_ms);
        zmq_close(l.dealer);
        l.dealer = nullptr;
        items_dirty = true;
    }

    void refuse_out(link& l, const std::string& reason, errc code = errc::unauthorized) {
        if (l.refused) return;
        l.refused = true;
        refused_outbound++;
        close_dealer(l, 0);
        refusal r;
        r.inbound = false;
        r.endpoint = l.endpoint;
        r.key = l.server_key;
        r.reason = reason;
        r.code = code;
        call(cb.on_peer_refused, r);
    }

    // Replace the socket of an outbound link by a fresh one (reconnect).
    void reopen(link& l) {
        close_dealer(l, 0);
        if (!l.refused && !stopping) open_dealer(l);
    }

    void handle_monitor(link& l) {
        for (int n = 0; n < 64 && l.mon; ++n) {
            auto event = read_monitor_event(l.mon);
            if (!event) return;
            auto [ev, val] = *event;
            switch (ev) {
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
                l.zmq_ok = true;
                l.silent_failures = 0;
                // The peer's kith handshake may have been read already.
                if (l.state == lstate::connecting) {
                    l.state = lstate::handshaking;
                    l.hs_deadline = clock::now() + o.heartbeat_timeout;
                    l.last_rx = clock::now();
                }
                break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                refuse_out(l, "authentication refused by " + l.endpoint + " (ZAP status " + std::to_string(val) +
                                  "): wrong cookie or unknown key");
                return;
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: {
                char code[16];
                std::snprintf(code, sizeof code, "0x%x", val);
                refuse_out(l, "CURVE handshake with " + l.endpoint + " failed with protocol error " + code +
                                  ": not a kith node, or not using CURVE");
                return;
            }
            case ZMQ_EVENT_CONNECTED:
                l.connected_at = clock::now();
                break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                // A wrong server key fails at once (the server cannot decrypt
                // HELLO and hangs up); a slow or frozen server fails only after
                // its handshake interval, and is not a refusal.
                if (clock::now() - l.connected_at > o.heartbeat_timeout / 2) {
                    l.silent_failures = 0;
                    break;
                }
                if (++l.silent_failures >= o.max_silent_handshake_failures) {
                    refuse_out(l, "CURVE handshake with " + l.endpoint + " failed " +
                                      std::to_string(l.silent_failures) +
                                      " times without detail: wrong server key, or the server refused us");
                    return;
                }
                break;
            case ZMQ_EVENT_DISCONNECTED:
                if (l.zmq_ok || l.state != lstate::connecting) {
                    // What the peer sent before closing (a goodbye, say) comes first.
                    void* sock = l.dealer;
                    while (l.dealer == sock && read_dealer(l) == read_batch) {}
                    if (l.dealer == sock) link_failed(l, "connection_closed");
                    return;  // l's socket was replaced
                }
                break;
            default: break;
            }
        }
    }

    // ---- sending ------------------------------------------------------------------------

    // 1: accepted by ZeroMQ; 0: would block; -1: the link is gone.
    int send_on(link& l, const void* data, std::size_t size) {
        if (l.outbound) {
            if (!l.dealer) return -1;
            if (zmq_send(l.dealer, data, size, ZMQ_DONTWAIT) >= 0) return 1;
            return zmq_errno() == EAGAIN ? 0 : -1;
        }
        if (zmq_send(router, l.rid.data(), l.rid.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            return zmq_errno() == EAGAIN ? 0 : -1;
        if (zmq_send(router, data, size, ZMQ_DONTWAIT) >= 0) return 1;
        return -1;
    }

    void send_control(link& l, const envelope& e) {
        std::string f = encode_frame(e);
        if (send_on(l, f.data(), f.size()) == 1) {
            frames_out++;
            bytes_out += f.size();
        }
    }

    // Moves what posting threads queued for `s` into s.unsent and hands as
    // much as ZeroMQ accepts to the session's send path.
    void flush(session& s) {
        {
            std::lock_guard lk(s.q->mu);
            while (!s.q->frames.empty()) {
                s.unsent.push_back(std::move(s.q->frames.front()));
                s.q->frames.pop_front();
            }
            if (!s.q->cur.empty()) s.unsent.push_back(s.q->cur.take());
            s.q->dirty = false;
        }
        std::size_t sent = 0;
        std::uint64_t nframes = 0;
        while (!s.unsent.empty()) {
            const std::string& f = s.unsent.front();
            int rc = send_on(*s.primary, f.data(), f.size());
            if (rc == 0) break;
            // rc == -1: the link is gone; the frame is lost, and the link's
            // failure (already detected or about to be) reports the peer down.
            sent += f.size();
            if (rc == 1) nframes++;
            s.unsent.pop_front();
        }
        frames_out += nframes;
        bytes_out += sent;
        if (sent) {
            std::lock_guard lk(s.q->mu);
            s.q->bytes -= std::min(sent, s.q->bytes);
        }
        if (!s.unsent.empty() && std::find(blocked.begin(), blocked.end(), &s) == blocked.end())
            blocked.push_back(&s);
    }

    // ---- sessions -----------------------------------------------------------------------

    void session_up(link& l, const env_handshake& hs) {
        session& s = sessions[hs.node];
        s.name = hs.node;
        s.primary = &l;
        s.links = {&l};
        s.unsent.clear();
        s.info = peer_info{};
        s.info.endpoint = l.endpoint;
        s.info.auth = l.auth;
        s.info.services = hs.services;
        s.info.hidden = hs.hidden;
        s.info.creation = hs.creation;
        s.info.outbound = l.outbound;
        if (!hs.key.empty()) s.info.node_key = public_key::from_z85(hs.key);
        s.q = std::make_shared<peer_queue>(hs.node);
        {
            std::unique_lock lk(peers_mu);
            queues[hs.node] = s.q;
        }
        peers_up++;
        call(cb.on_peer_up, s.name, s.info);
    }

    // Ends the session: reports down, discards its queue and resets every
    // other link it had (their peers will re-handshake). `cause` is the link
    // whose failure ended it (reset by the caller), or null.
    void session_down(const std::string& name, const std::string& reason, link* cause) {
        auto it = sessions.find(name);
        if (it == sessions.end()) return;
        blocked.erase(std::remove(blocked.begin(), blocked.end(), &it->second), blocked.end());
        session s = std::move(it->second);
        sessions.erase(it);
        {
            std::unique_lock lk(peers_mu);
            queues.erase(name);
        }
        std::size_t dropped = s.unsent.size();
        {
            std::lock_guard lk(s.q->mu);
            s.q->closed = true;
            dropped += s.q->frames.size() + (s.q->cur.empty() ? 0 : 1);
            s.q->frames.clear();
            s.q->cur.take();
            s.q->bytes = 0;
        }
        dropped_at_down += dropped;
        peers_down++;
        call(cb.on_peer_down, name, reason);
        for (link* l : s.links) {
            if (l == cause) continue;
            reset_link(*l, /*tell_peer=*/true);
        }
    }

    // Forgets a link's session state. Outbound: a fresh socket (reconnect).
    // Inbound: forgotten; the peer is told with a goodbye "reset" so that it
    // reconnects rather than talk into the void.
    void reset_link(link& l, bool tell_peer) {
        if (tell_peer && l.state == lstate::established) send_control(l, env_goodbye{"reset"});
        if (l.outbound) {
            reopen(l);
        } else {
            erase_in(l);
        }
    }

    std::vector<std::string> doomed_ins;
    void erase_in(link& l) {
        l.state = lstate::connecting;
        l.peer.clear();
        doomed_ins.push_back(l.rid);
    }

    void detach(link& l) {
        if (l.peer.empty()) return;
        auto it = sessions.find(l.peer);
        if (it == sessions.end()) return;
        auto& v = it->second.links;
        v.erase(std::remove(v.begin(), v.end(), &l), v.end());
    }

    // A link died (timeout, connection closed, goodbye).
    void link_failed(link& l, const std::string& reason) {
        bool was_primary = false;
        std::string name = l.peer;
        if (l.state == lstate::established && !name.empty()) {
            auto it = sessions.find(name);
            if (it != sessions.end()) was_primary = it->second.primary == &l;
        }
        if (was_primary) {
            session_down(name, reason, &l);
        } else {
            detach(l);
        }
        reset_link(l, /*tell_peer=*/reason == "timeout");
    }

    void on_handshake(link& l, env_handshake& hs) {
        auto bad = [&](const std::string& why) {
            protocol_errors++;
            if (l.outbound) {
                refuse_out(l, why);
            } else {
                if (!l.reset_sent) {
                    l.reset_sent = true;
                    send_control(l, env_goodbye{"refused: " + why});
                }
                erase_in(l);
            }
        };
        if (hs.version != protocol_version) return bad("protocol version " + std::to_string(hs.version) + " unsupported");
        if (hs.node.empty() || hs.node.size() > 255) return bad("bad node name in handshake");
        if (hs.node == o.node_name) {
            return bad(hs.creation == o.creation ? "connected to itself" : "peer uses our node name");
        }
        if (!l.outbound && (l.auth.kind == trust_kind::grant || l.auth.kind == trust_kind::stranger)) {
            // ZAP ran at the connection's start; the grant may have been
            // revoked since (a peer that ignores our goodbye and handshakes
            // again on the same connection is caught here).
            authz_decision d = zap.check(l.auth.key, {});
            bool same = l.auth.kind == trust_kind::grant
                            ? d.verdict == authz_decision::kind::grant && "grant:" + d.label == l.auth.user_id
                            : d.verdict == authz_decision::kind::stranger;
            if (!same) {
                const bool revoked = d.verdict == authz_decision::kind::revoked;
                if (!l.reset_sent) {
                    l.reset_sent = true;
                    send_control(l, env_goodbye{revoked ? "revoked" : "refused: " + d.reason});
                }
                refused_inbound++;
                refusal r;
                r.inbound = true;
                r.endpoint = l.endpoint;
                r.key = l.auth.key;
                r.reason = d.reason.empty() ? "refused at handshake" : d.reason;
                r.code = revoked ? errc::revoked : errc::unauthorized;
                call(cb.on_peer_refused, r);
                erase_in(l);
                return;
            }
        }
        if (l.outbound && l.creds.is_cluster() &&
            !auth::check_member_proof(proof_key, l.server_key, cluster.pub, l.nonce, hs.proof)) {
            // Dialling a node never makes it a member: it must prove the cookie.
            protocol_errors++;
            return refuse_out(l, l.endpoint + " (" + hs.node +
                                     ") did not prove membership of our cluster: it does not know our cookie "
                                     "(a different cookie, or not a member; use a grant or a visitor "
                                     "connection for a node outside the cluster)");
        }
        auto it = sessions.find(hs.node);
        auth::name_claim nc;
        nc.name = hs.node;
        nc.claimant = &l.auth;
        if (!hs.key.empty()) nc.claimant_key = public_key::from_z85(hs.key);
        if (it != sessions.end()) {
            nc.holder = &it->second.info.auth;
            nc.holder_key = it->second.info.node_key;
            nc.holder_endpoint = it->second.info.endpoint;
        }
        auth::claim_verdict claim = cb.on_name_claim ? cb.on_name_claim(nc) : auth::claim_name(nc);
        if (claim.what == auth::claim_verdict::refuse) return bad(claim.why);
        if (claim.what == auth::claim_verdict::evict) {
            end_session_told(hs.node, "refused: " + claim.why, "connection_closed");
            it = sessions.end();
        }
        l.peer = hs.node;
        l.peer_creation = hs.creation;
        l.state = lstate::established;
        l.last_rx = clock::now();
        l.next_hb = clock::now() + o.heartbeat_interval;
        if (!l.outbound) {
            std::string proof;
            if (l.auth.kind == trust_kind::cluster && hs.nonce.size() == auth::nonce_bytes)
                proof = auth::member_proof(proof_key, self.key(), l.auth.key, hs.nonce);
            auto ours = handshake(auth::fresh_nonce(), std::move(proof));
            send_on(l, ours.data(), ours.size());
        }
        if (it != sessions.end()) {
            session& s = it->second;
            if (s.info.creation != hs.creation) {
                // The peer restarted: the old session ends before the new one.
                session_down(hs.node, "connection_closed", nullptr);
                session_up(l, hs);
                return;
            }
            s.links.push_back(&l);
            return;
        }
        session_up(l, hs);
    }

    // Handles one received frame on link `l`; `auth` is the message's trust.
    void on_frame(link& l, std::string_view frame, const peer_auth& auth) {
        frames_in++;
        bytes_in += frame.size();
        l.last_rx = clock::now();
        auto r = decode_frame(frame, o.limits);
        if (!r) {
            if (l.state == lstate::established) {
                decode_errors++;
                call(cb.on_decode_error, l.peer, r.err());
            } else {
                protocol_errors++;
            }
            return;
        }
        std::vector<envelope>& envs = r.value();
        envelopes_in += envs.size();
        std::size_t i = 0;
        if (l.state != lstate::established) {
            if (l.outbound && !envs.empty() && std::holds_alternative<env_goodbye>(envs[0])) {
                // The server ended the link instead of answering our handshake.
                const std::string& why = std::get<env_goodbye>(envs[0]).reason;
                if (why == "revoked")
                    refuse_out(l, "revoked: " + l.endpoint + " refused our grant (revoked or expired)",
                               errc::revoked);
                else if (why.starts_with("refused"))
                    refuse_out(l, l.endpoint + " " + why);
                else
                    protocol_errors++;
                return;
            }
            if (envs.empty() || !std::holds_alternative<env_handshake>(envs[0])) {
                protocol_errors++;
                if (!l.outbound && !l.reset_sent) {
                    l.reset_sent = true;
                    send_control(l, env_goodbye{"reset"});
                }
                return;
            }
            on_handshake(l, std::get<env_handshake>(envs[0]));
            if (l.state != lstate::established) return;
            i = 1;
        }
        // Data envelopes are compacted in place (no second vector, no move
        // per envelope in the common case of a frame holding only data).
        const std::size_t first = i;
        std::size_t w = i;
        for (; i < envs.size(); ++i) {
            envelope& e = envs[i];
            if (std::holds_alternative<env_heartbeat>(e)) continue;
            if (std::holds_alternative<env_handshake>(e)) {
                protocol_errors++;
                continue;
            }
            if (auto* g = std::get_if<env_goodbye>(&e)) {
                std::string reason = down_reason_of_goodbye(g->reason);
                envs.resize(w);
                envs.erase(envs.begin(), envs.begin() + static_cast<std::ptrdiff_t>(first));
                deliver(l, auth, std::move(envs));
                std::string name = l.peer;
                if (sessions.count(name)) {
                    session_down(name, reason, &l);
                    // A server that refuses us now is not dialled again by itself.
                    if (l.outbound && reason == "refused") refuse_out(l, l.endpoint + " " + g->reason);
                    else reset_link(l, false);
                } else {
                    link_failed(l, reason);
                }
                return;
            }
            if (w != i) envs[w] = std::move(e);
            ++w;
        }
        envs.resize(w);
        if (first) envs.erase(envs.begin(), envs.begin() + static_cast<std::ptrdiff_t>(first));
        deliver(l, auth, std::move(envs));
    }

    void deliver(link& l, const peer_auth& auth, std::vector<envelope>&& data) {
        if (data.empty() || l.peer.empty() || !sessions.count(l.peer)) return;
        call(cb.on_envelopes, l.peer, auth, std::move(data));
    }

    // ---- receiving --------------------------------------------------------------------------

    static constexpr int read_batch = 256;  // messages read per socket per loop turn

    // Reads up to read_batch messages; returns how many it read.
    int read_router() {
        int n = 0;
        for (; n < read_batch; ++n) {
            zmq_msg_t id;
            zmq_msg_init(&id);
            if (zmq_msg_recv(&id, router, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&id);
                return n;
            }
            std::string rid(static_cast<const char*>(zmq_msg_data(&id)), zmq_msg_size(&id));
            zmq_msg_close(&id);
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, router, 0) < 0) {
                zmq_msg_close(&m);
                continue;
            }
            bool extra = zmq_msg_more(&m);
            while (extra) {  // a kith frame is one part: drop anything else
                zmq_msg_t x;
                zmq_msg_init(&x);
                (void)zmq_msg_recv(&x, router, 0);
                extra = zmq_msg_more(&x);
                zmq_msg_close(&x);
            }
            if (zmq_msg_more(&m)) {
                protocol_errors++;
                zmq_msg_close(&m);
                continue;
            }
            const char* uid = zmq_msg_gets(&m, "User-Id");
            auto it = ins.find(rid);
            if (it == ins.end()) {
                if (ins.size() >= o.max_inbound_links || !uid) {
                    protocol_errors++;
                    zmq_msg_close(&m);
                    continue;
                }
                auto l = std::make_unique<link>();
                l->outbound = false;
                l->state = lstate::handshaking;
                l->rid = rid;
                l->fd = zmq_msg_get(&m, ZMQ_SRCFD);
                l->hs_deadline = clock::now() + o.heartbeat_timeout;
                auto kind = auth::kind_of_user_id(uid);
                if (!kind) {  // fail closed: a User-Id our ZAP handler never issues
                    protocol_errors++;
                    zmq_msg_close(&m);
                    continue;
                }
                l->auth.user_id = uid;
                l->auth.kind = *kind;
                if (const char* k = zmq_msg_gets(&m, key_property))
                    if (auto pk = public_key::from_z85(k)) l->auth.key = *pk;
                const char* addr = zmq_msg_gets(&m, "Peer-Address");
                l->endpoint = std::string("tcp://") + (addr ? addr : "?");
                it = ins.emplace(rid, std::move(l)).first;
            }
            link& l = *it->second;
            // Authorization comes from this message's User-Id, set by our ZAP
            // handler for this connection: it must match the link's.
            if (!uid || l.auth.user_id != uid) {
                protocol_errors++;
                zmq_msg_close(&m);
                continue;
            }
            on_frame(l, std::string_view(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m)), l.auth);
            zmq_msg_close(&m);
        }
        return n;
    }

    // Reads up to read_batch messages; returns how many it read.
    int read_dealer(link& l) {
        void* sock = l.dealer;
        int n = 0;
        for (; n < read_batch && l.dealer == sock && sock; ++n) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, l.dealer, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                return n;
            }
            if (zmq_msg_more(&m)) {
                protocol_errors++;
                bool more = true;
                while (more) {
                    zmq_msg_t x;
                    zmq_msg_init(&x);
                    (void)zmq_msg_recv(&x, l.dealer, 0);
                    more = zmq_msg_more(&x);
                    zmq_msg_close(&x);
                }
                zmq_msg_close(&m);
                continue;
            }
            // Messages from a server we dialled carry no ZAP User-Id (the
            // server authenticated itself by its key); their trust is that of
            // the link: "cluster" for a cluster link, "server:<key>" otherwise.
            on_frame(l, std::string_view(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m)), l.auth);
            zmq_msg_close(&m);
        }
        return n;
    }

    void read_router_monitor() {
        for (int n = 0; n < 64; ++n) {
            auto event = read_monitor_event(router_mon);
            if (!event) return;
            auto [ev, val] = *event;
            if (ev == ZMQ_EVENT_DISCONNECTED) {
                // What the peer sent before closing (a goodbye, say) comes first.
                while (read_router() == read_batch) {}
                int fd = static_cast<int>(val);
                std::vector<link*> hit;
                for (auto& [rid, l] : ins)
                    if (l->fd == fd && l->state != lstate::connecting) hit.push_back(l.get());
                for (link* l : hit) {
                    if (l->state == lstate::established) link_failed(*l, "connection_closed");
                    else erase_in(*l);
                }
            }
        }
    }

    // Reports the ZAP refusals the process's ZAP thread passed on.
    void report_refusals() {
        std::vector<zap_outcome> got;
        {
            std::lock_guard lk(refused_mu);
            got.swap(refused);
            refused_pending.store(false);
        }
        for (const zap_outcome& out : got) {
            refusal r;
            r.inbound = true;
            r.endpoint = out.address;
            r.key = out.client;
            r.reason = out.reason;
            call(cb.on_peer_refused, r);
        }
    }

    // ---- timers -------------------------------------------------------------------------------

    void housekeeping() {
        const auto now = clock::now();
        for (auto& lp : outs) {
            link& l = *lp;
            if (!l.dealer) continue;
            if (l.state == lstate::established) {
                if (now - l.last_rx > o.heartbeat_timeout) {
                    heartbeat_timeouts++;
                    link_failed(l, "timeout");
                } else if (now >= l.next_hb) {
                    send_control(l, env_heartbeat{});
                    l.next_hb = now + o.heartbeat_interval;
                }
            } else if (l.state == lstate::handshaking && now > l.hs_deadline) {
                protocol_errors++;
                reopen(l);  // CURVE succeeded but no kith handshake came: start over
            }
        }
        std::vector<link*> failed;
        for (auto& [rid, lp] : ins) {
            link& l = *lp;
            if (l.state == lstate::established) {
                if (now - l.last_rx > o.heartbeat_timeout) {
                    failed.push_back(&l);
                } else if (now >= l.next_hb) {
                    send_control(l, env_heartbeat{});
                    l.next_hb = now + o.heartbeat_interval;
                }
            } else if (now > l.hs_deadline) {
                erase_in(l);
            }
        }
        for (link* l : failed) {
            heartbeat_timeouts++;
            link_failed(*l, "timeout");
        }
    }

    void reap_ins() {
        for (auto& rid : doomed_ins) {
            auto it = ins.find(rid);
            if (it != ins.end() && it->second->state == lstate::connecting) ins.erase(it);
        }
        doomed_ins.clear();
    }

    // ---- commands -------------------------------------------------------------------------------

    void run_commands() {
        std::vector<command> cs;
        {
            std::lock_guard lk(cmd_mu);
            cs.swap(cmds);
        }
        for (auto& c : cs) {
            if (c.k == command::end_sessions) {
                end_sessions(c.endpoint, c.reason);
                continue;
            }
            auto it = std::find_if(outs.begin(), outs.end(),
                                   [&](auto& l) { return !l->doomed && l->endpoint == c.endpoint; });
            if (c.k == command::connect && it != outs.end() && !(*it)->refused && (*it)->server_key == c.key &&
                (*it)->creds == c.creds)
                continue;  // already linked: nothing to do
            if (it != outs.end()) {
                link& l = **it;
                if (l.state == lstate::established) {
                    send_control(l, env_goodbye{"shutdown"});
                    if (sessions.count(l.peer) && sessions[l.peer].primary == &l)
                        session_down(l.peer, "shutdown", &l);
                    else
                        detach(l);
                }
                close_dealer(l, static_cast<int>(o.linger.count()));
                l.refused = true;  // no reopen
                l.doomed = true;   // erased after this loop turn (pointers to it may be in use)
            }
            if (c.k == command::connect) {
                auto l = std::make_unique<link>();
                l->outbound = true;
                l->endpoint = c.endpoint;
                l->server_key = c.key;
                l->creds = std::move(c.creds);
                if (!l->creds.is_cluster()) {
                    l->auth.kind = trust_kind::server;
                    l->auth.user_id = "server:" + c.key.z85();
                } else {
                    l->auth.kind = trust_kind::cluster;
                    l->auth.user_id = "cluster";
                }
                l->auth.key = c.key;
                outs.push_back(std::move(l));
                open_dealer(*outs.back());
            }
        }
    }

    // See transport::end_sessions.
    void end_sessions(const std::string& user_id, const std::string& reason) {
        const bool prefix = !user_id.empty() && user_id.back() == '*';
        const std::string_view want = prefix ? std::string_view(user_id).substr(0, user_id.size() - 1) : user_id;
        std::vector<std::string> names;
        for (auto& [name, s] : sessions)
            if (prefix ? s.info.auth.user_id.starts_with(want) : s.info.auth.user_id == want) names.push_back(name);
        for (auto& name : names) end_session_told(name, reason, down_reason_of_goodbye(reason));
    }

    // Ends session `name`: goodbye `told` on each of its links, peer down
    // (`reason`) here, and its links forgotten (outbound ones reconnect).
    void end_session_told(const std::string& name, const std::string& told, const std::string& reason) {
        auto it = sessions.find(name);
        if (it == sessions.end()) return;
        std::vector<link*> ls = std::move(it->second.links);
        it->second.links.clear();
        for (link* l : ls)
            if (l->state == lstate::established) send_control(*l, env_goodbye{told});
        session_down(name, reason, nullptr);
        for (link* l : ls) {
            if (l->outbound && told.starts_with("refused")) {
                refuse_out(*l, l->endpoint + " " + told);  // no silent reconnect
                continue;
            }
            reset_link(*l, /*tell_peer=*/false);
        }
    }

    void take_dirty() {
        std::vector<std::shared_ptr<peer_queue>> d;
        {
            std::lock_guard lk(dirty_mu);
            d.swap(dirty);
        }
        for (auto& q : d) {
            auto it = sessions.find(q->name);
            if (it == sessions.end() || it->second.q != q) continue;
            flush(it->second);
        }
    }

    // ---- the loop -----------------------------------------------------------------------------------

    void rebuild_items() {
        items.clear();
        item_links.clear();
        items.push_back({nullptr, wake_fd, ZMQ_POLLIN, 0});
        items.push_back({router, 0, ZMQ_POLLIN, 0});
        items.push_back({router_mon, router_mon ? 0 : -1, ZMQ_POLLIN, 0});
        for (auto& l : outs) {
            if (!l->dealer) continue;
            items.push_back({l->dealer, 0, ZMQ_POLLIN, 0});
            items.push_back({l->mon, l->mon ? 0 : -1, ZMQ_POLLIN, 0});
            item_links.push_back(l.get());
        }
        items_dirty = false;
    }

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
    void io_thread(bool leading) {
        for (;;) {
            if (!leading) {
                if (!follow()) return;
                take_dirty();  // what a job posted before the sockets changed hands
            }
            tl_io_owner = this;
            io_loop();
            tl_io_owner = nullptr;
            if (stopped_io) {
                std::uint64_t one = 1;
                ssize_t n = ::write(follow_fd, &one, sizeof one);  // the follower ends too
                (void)n;
                return;
            }
            leading = run_job();
        }
    }

    // Runs the job run_after_turn gave, the sockets lying still. True if this
    // thread still owns them afterwards; false if the follower took them.
    bool run_job() {
        auto job = std::move(after_turn);
        after_turn = nullptr;
        const std::uint64_t held = ((lead.load(std::memory_order_relaxed) >> 2) + 1) << 2 | in_job;
        job_started.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
        lead.store(held, std::memory_order_release);
        set_job_timer(job_steal_after);
        tl_job_owner = this;
        tl_job_lead = held;
        call(job);
        job = nullptr;  // its captures go now, not whenever this thread leads again
        tl_job_owner = nullptr;
        std::uint64_t expect = held;
        if (lead.compare_exchange_strong(expect, held & ~std::uint64_t{3}, std::memory_order_acq_rel)) {
            set_job_timer(std::chrono::microseconds(0));
            take_dirty();  // what the job posted (it woke no one)
            spin_until = clock::now() + io_spin;
            return true;
        }
        wake();  // stolen: the new leader must look at what the job posted
        return false;
    }

    // Waits until the leader's job has held the sockets for job_steal_after,
    // then takes them over (true), or until the transport has shut down
    // (false).
    bool follow() {
        follower_ready.store(true);
        pollfd fds[2] = {{job_timer, POLLIN, 0}, {follow_fd, POLLIN, 0}};
        for (;;) {
            if (stopped_io) return false;
            ::poll(fds, 2, -1);
            std::uint64_t v;
            if (fds[0].revents & POLLIN) {
                ssize_t n = ::read(job_timer, &v, sizeof v);
                (void)n;
            }
            if (fds[1].revents & POLLIN) {
                ssize_t n = ::read(follow_fd, &v, sizeof v);
                (void)n;
            }
            std::uint64_t l = lead.load(std::memory_order_acquire);
            if (mode_of(l) != in_job) continue;
            auto held = clock::now() - clock::time_point(clock::duration(job_started.load(std::memory_order_relaxed)));
            if (held < job_steal_after && !stopping) {
                set_job_timer(std::chrono::duration_cast<std::chrono::microseconds>(job_steal_after - held) +
                              std::chrono::microseconds(1));
                continue;
            }
            follower_ready.store(false);
            if (lead.compare_exchange_strong(l, (l & ~std::uint64_t{3}) | stolen, std::memory_order_acq_rel)) {
                spin_until = clock::now() + io_spin;
                return true;
            }
            follower_ready.store(true);
        }
    }

    bool take_after_turn(std::function<void()>& job) {
        if (tl_io_owner != this || after_turn || stopping || !follower_ready.load()) return false;
        after_turn = std::move(job);
        return true;
    }

    // Runs turns until stopping (then shuts down) or until a callback gave a
    // job for after the turn (then returns, still owning the sockets).
    void io_loop() {
        const auto tick = std::max(std::chrono::milliseconds(5),
                                   std::min(o.heartbeat_interval / 2, std::chrono::milliseconds(100)));
        // After a turn with activity the loop polls without blocking for a
        // short while (io_spin): the answer to what it just passed on (a
        // reply to a call, the next request of a sequential caller) usually
        // comes within tens of microseconds, and waking a sleeping thread
        // costs about as much. An idle loop blocks as before.
        // While spinning the loop yields between polls, so on a busy (or
        // 2-core) machine the threads it is waiting for get the CPU. 50 us
        // measured best: shorter misses the rpc round trip, longer starves
        // workers under many callers (issue 3 figures).
        while (!stopping) {
            if (frozen_flag.load(std::memory_order_acquire)) {
                std::unique_lock lk(freeze_mu);
                freeze_cv.wait(lk, [&] { return !frozen || stopping; });
            }
            if (items_dirty) rebuild_items();
            const auto now = clock::now();
            long timeout_ms = !blocked.empty() ? 1
                              : now < spin_until
                                  ? 0
                                  : std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                          next_tick - now).count() + 1);
            int rc = zmq_poll(items.data(), static_cast<int>(items.size()), timeout_ms);
            if (rc < 0 && zmq_errno() == ETERM) break;
            if (rc > 0) spin_until = clock::now() + io_spin;
            else if (timeout_ms == 0) std::this_thread::yield();
            if (stopping) break;
            if (items[0].revents & ZMQ_POLLIN) {
                std::uint64_t v;
                ssize_t n = ::read(wake_fd, &v, sizeof v);
                (void)n;
            }
            wake_pending.store(false);
            run_commands();
            if (refused_pending.load()) report_refusals();
            if (items[2].revents & ZMQ_POLLIN) read_router_monitor();
            // Monitors before data, so that a replaced connection is known
            // before its successor's messages are read.
            std::vector<link*>& ls = loop_links;  // a copy: links may be replaced below
            ls.assign(item_links.begin(), item_links.end());
            for (std::size_t i = 0; i < ls.size(); ++i) {
                if (items[3 + 2 * i + 1].revents & ZMQ_POLLIN) handle_monitor(*ls[i]);
            }
            if (items[1].revents & ZMQ_POLLIN) read_router();
            for (std::size_t i = 0; i < ls.size(); ++i) {
                if ((items[3 + 2 * i].revents & ZMQ_POLLIN) && ls[i]->dealer) read_dealer(*ls[i]);
            }
            if (clock::now() >= next_tick) {
                housekeeping();
                next_tick = clock::now() + tick;
            }
            reap_ins();
            outs.remove_if([](auto& l) { return l->doomed; });
            take_dirty();
            if (!blocked.empty()) {
                auto b = std::move(blocked);
                blocked.clear();
                for (session* s : b) flush(*s);
            }
            // The dealer sockets replaced above are closed; the poll set is
            // rebuilt on the next turn (items_dirty).
            if (after_turn) return;  // run_job, then on
        }
        shutdown_io();
    }

    void shutdown_io() {
        // Push out what was queued, then say goodbye on every link.
        take_dirty();
        for (auto& [name, s] : sessions) flush(s);
        for (auto& l : outs)
            if (l->state == lstate::established) send_control(*l, env_goodbye{"shutdown"});
        for (auto& [rid, l] : ins)
            if (l->state == lstate::established) send_control(*l, env_goodbye{"shutdown"});
        std::vector<std::string> names;
        for (auto& [name, s] : sessions) names.push_back(name);
        for (auto& n : names) {
            auto it = sessions.find(n);
            session s = std::move(it->second);
            sessions.erase(it);
            {
                std::unique_lock lk(peers_mu);
                queues.erase(n);
            }
            {
                std::lock_guard lk(s.q->mu);
                s.q->closed = true;
            }
            peers_down++;
            call(cb.on_peer_down, n, std::string("shutdown"));
        }
        blocked.clear();
        for (auto& l : outs) close_dealer(*l, static_cast<int>(o.linger.count()));
        outs.clear();
        ins.clear();
        cleanup_sockets();
        stopped_io = true;
    }
};

// ---- transport ------------------------------------------------------------------------------

transport::transport(transport_options opts, transport_callbacks cbs) : opts_(std::move(opts)) {
    if (opts_.node_name.empty()) throw setup_error("kith transport: node_name is required");
    if (opts_.heartbeat_interval.count() <= 0 || opts_.heartbeat_timeout <= opts_.heartbeat_interval)
        throw setup_error("kith transport: heartbeat_timeout must exceed heartbeat_interval > 0");
    if (opts_.batch_bytes == 0 || opts_.batch_bytes > opts_.limits.max_frame_bytes / 2)
        opts_.batch_bytes = std::min<std::size_t>(64 * 1024, opts_.limits.max_frame_bytes / 2);
    if (opts_.creation == 0)
        opts_.creation = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
                .count());
    std::filesystem::path dir = opts_.key_dir.empty() && (!opts_.node_keys || !opts_.cookie) ? default_key_dir()
                                                                                              : opts_.key_dir;
    keys_ = opts_.node_keys ? *opts_.node_keys : load_or_create_keypair(dir);
    std::string cookie = opts_.cookie ? *opts_.cookie : load_or_create_cookie(dir);
    if (cookie.empty()) throw setup_error("kith transport: the cookie must not be empty");
    impl_ = std::make_unique<impl>(*this, std::move(cbs), std::move(cookie));
}

transport::~transport() { stop(); }

void transport::start() {
    if (impl_->io.joinable() || impl_->ctx) throw setup_error("kith transport: start() called twice");
    impl_->start();
}

void transport::stop() {
    if (!impl_ || !impl_->io.joinable()) return;
    impl_->stopping = true;
    {
        std::lock_guard lk(impl_->freeze_mu);
        impl_->frozen = false;
        impl_->frozen_flag.store(false, std::memory_order_release);
    }
    impl_->freeze_cv.notify_all();
    {
        std::uint64_t one = 1;
        ssize_t n = ::write(impl_->wake_fd, &one, sizeof one);
        (void)n;
    }
    {
        std::uint64_t one = 1;
        ssize_t n = ::write(impl_->follow_fd, &one, sizeof one);  // a follower steals a stuck job
        (void)n;
    }
    impl_->io.join();
    if (impl_->io2.joinable()) impl_->io2.join();
    impl_->close_fds();
    {
        // The last stopped transport of the process ends the context, which
        // waits (at most `linger`) for the goodbyes to go out.
        std::lock_guard lk(impl_->freeze_mu);  // debug_freeze reads `shared`
        impl_->shared.reset();
    }
}

std::string transport::endpoint() const {
    return opts_.advertised_endpoint.empty() ? impl_->bound : opts_.advertised_endpoint;
}

void transport::set_authorizer(authorizer a) { impl_->zap.set_authorizer(std::move(a)); }

void transport::connect(const std::string& endpoint, const public_key& server_key, link_credentials creds) {
    if (impl_->stopping) return;
    {
        std::lock_guard lk(impl_->cmd_mu);
        impl_->cmds.push_back({command::connect, endpoint, server_key, std::move(creds), {}});
    }
    impl_->wake_pending = false;  // force a wake-up
    impl_->wake();
}

void transport::disconnect(const std::string& endpoint) {
    if (impl_->stopping) return;
    {
        std::lock_guard lk(impl_->cmd_mu);
        impl_->cmds.push_back({command::disconnect, endpoint, {}, {}, {}});
    }
    impl_->wake_pending = false;
    impl_->wake();
}

void transport::end_sessions(const std::string& user_id, const std::string& reason) {
    if (impl_->stopping) return;
    {
        std::lock_guard lk(impl_->cmd_mu);
        impl_->cmds.push_back({command::end_sessions, user_id, {}, {}, reason});
    }
    impl_->wake_pending = false;
    impl_->wake();
}

result<void> transport::post(std::string_view peer, const envelope& e) { return post(peer, std::span(&e, 1)); }

result<void> transport::post(std::string_view peer, std::span<const envelope> es) {
    impl& m = *impl_;
    if (m.stopping) return result<void>(errc::shutdown, "transport stopped");
    std::shared_ptr<peer_queue> q;
    {
        std::shared_lock lk(m.peers_mu);
        auto it = m.queues.find(peer);
        if (it == m.queues.end()) return result<void>(errc::nodedown, std::string(peer));
        q = it->second;
    }
    bool became_dirty = false;
    {
        std::lock_guard lk(q->mu);
        if (q->closed) return result<void>(errc::nodedown, std::string(peer));
        if (q->bytes >= opts_.max_queue_bytes) {
            m.overload_drops++;
            return result<void>(errc::overloaded, "send queue to " + std::string(peer) + " is full");
        }
        for (const envelope& e : es) {
            std::size_t before = q->cur.empty() ? 0 : q->cur.size();
            q->cur.add(e);
            q->bytes += q->cur.size() - before;
            if (q->cur.size() >= opts_.batch_bytes) q->frames.push_back(q->cur.take());
        }
        if (!q->dirty) {
            q->dirty = true;
            became_dirty = true;
        }
    }
    m.envelopes_out += es.size();
    if (became_dirty) {
        {
            std::lock_guard lk(m.dirty_mu);
            m.dirty.push_back(std::move(q));
        }
        if (tl_io_owner == &m) {
            // the loop flushes it at the end of this turn
        } else if (tl_job_owner == &m && m.lead.load(std::memory_order_acquire) == tl_job_lead) {
            // Our own job, still holding the sockets: flushed when it ends.
            // (Queued before this check, so a takeover after it is covered by
            // the new leader's first turn, which does not block.)
        } else {
            m.wake();
        }
    }
    return {};
}

bool transport::run_after_turn(std::function<void()>& job) { return impl_->take_after_turn(job); }

bool transport::on_own_thread() const noexcept {
    return tl_io_owner == impl_.get() || tl_job_owner == impl_.get();
}

bool transport::is_up(std::string_view peer) const {
    std::shared_lock lk(impl_->peers_mu);
    return impl_->queues.find(peer) != impl_->queues.end();
}

transport_stats transport::stats() const {
    const impl& m = *impl_;
    transport_stats s;
    s.frames_in = m.frames_in;
    s.frames_out = m.frames_out;
    s.envelopes_in = m.envelopes_in;
    s.envelopes_out = m.envelopes_out;
    s.bytes_in = m.bytes_in;
    s.bytes_out = m.bytes_out;
    s.refused_inbound = m.refused_inbound;
    s.refused_outbound = m.refused_outbound;
    s.decode_errors = m.decode_errors;
    s.protocol_errors = m.protocol_errors;
    s.overload_drops = m.overload_drops;
    s.dropped_at_down = m.dropped_at_down;
    s.heartbeat_timeouts = m.heartbeat_timeouts;
    s.peers_up = m.peers_up;
    s.peers_down = m.peers_down;
    return s;
}

void transport::debug_freeze(bool f) {
    {
        std::lock_guard lk(impl_->freeze_mu);
        impl_->frozen = f;
        impl_->frozen_flag.store(f, std::memory_order_release);
        // Its ZAP requests go unanswered too, as in a hung process.
        if (impl_->shared) impl_->shared->pause_route(impl_->zap_route, f);
    }
    impl_->freeze_cv.notify_all();
}

}  // namespace kith::detail
