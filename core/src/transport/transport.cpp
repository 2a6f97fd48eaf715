// transport.cpp — the ROUTER/DEALER + CURVE transport: its public methods,
// helpers, start and stop (see transport.hpp, transport_impl.hpp and
// docs/protocol.md, "Transport and security").
#include "transport/transport_impl.hpp"

namespace kith::detail {


std::string transport::impl::handshake(std::string nonce, std::string proof, std::uint16_t member_port) const {
    env_handshake hs;
    hs.member_port = member_port;
    hs.port = port_of(o.advertised_endpoint.empty() ? pub.bound : o.advertised_endpoint);
    hs.node = o.node_name;
    hs.creation = o.creation;
    // Information only, and bounded as receivers require: names a receiver
    // would refuse are left out.
    for (auto& name : o.live_services ? o.live_services() : o.services)
        if (valid_service_name(name) && hs.services.size() < transport_options::max_handshake_services)
            hs.services.push_back(name);
    hs.hidden = o.hidden;
    hs.key = self.key().z85();
    hs.nonce = std::move(nonce);
    hs.proof = std::move(proof);
    return encode_frame(envelope{std::move(hs)});
}

bool transport::impl::cpu_allowed(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return false;
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    return ::sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_ISSET(cpu, &allowed);
}

void transport::impl::pin_network_thread(std::thread& t) const {
    if (o.network_cpu < 0 || !cpu_allowed(o.network_cpu)) return;  // said at start
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(o.network_cpu, &one);
    ::pthread_setaffinity_np(t.native_handle(), sizeof one, &one);
}

void transport::impl::start_placer() {
    if (o.network_cpu != net_options::network_cpu_auto) return;
    placer = cpu_placer::acquire();
    // Debug: placing and moving are routine now that auto is the default.
    placer->on_move(this, [this](const std::string& m, bool warning) {
        if (warning) log(log_level::warning, m);
        else log(log_level::debug, "network_cpu auto: " + m);
    });
    if (shared->network_cpu() < 0) placer->add_zmq_io(shared->io_threads());
    else
        log(log_level::warning, "ZeroMQ's I/O threads, shared by the nodes of this process, were pinned to CPU " +
                                    std::to_string(shared->network_cpu()) +
                                    " by an earlier node: only this node's own I/O threads are placed "
                                    "(network_cpu auto); give every node of the process the same network_cpu");
}

void transport::impl::stop_placer() {
    if (!placer) return;
    placer->on_move(this, {});
    placer.reset();
}

void transport::impl::run_placed(bool leading) {
    if (placer) placer->add_self();
    io_thread(leading);
    if (placer) placer->remove_self();
}

void transport::impl::wake() {
    if (!wake_pending.exchange(true)) {
        std::uint64_t one = 1;
        ssize_t n = ::write(wake_fd, &one, sizeof one);
        (void)n;
    }
}

void transport::impl::apply_common_options(zmq::socket_ref s) {
    s.set(zmq::sockopt::linger, static_cast<int>(o.linger.count()));
    s.set(zmq::sockopt::sndhwm, o.sndhwm);
    s.set(zmq::sockopt::rcvhwm, o.rcvhwm);
    s.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(o.limits.max_frame_bytes));
    // A connection that has not finished its ZMTP greeting and CURVE
    // handshake by then is closed (a raw TCP flood: context.hpp).
    s.set(zmq::sockopt::handshake_ivl, static_cast<int>(o.heartbeat_timeout.count()));
}

zmq::socket_t transport::impl::open_monitor(zmq::socket_ref s, int events) {
    std::string ep = "inproc://kith-monitor-" + std::to_string(shared->unique());
    if (zmq_socket_monitor(s.handle(), ep.c_str(), events) != 0) throw zmq::error_t();
    zmq::socket_t m(*ctx, zmq::socket_type::pair);
    m.set(zmq::sockopt::linger, 0);
    m.connect(ep);
    return m;
}

void transport::impl::start() {
    if (sodium_init() < 0) throw setup_error("kith: libsodium failed to initialise");
    if (!zmq_has("curve")) throw setup_error("kith: libzmq was built without CURVE; kith has no plaintext mode");
    wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    follow_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    job_timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (wake_fd < 0 || follow_fd < 0 || job_timer < 0) fail_start("kith: eventfd or timerfd failed");
    // Raw TCP connections cost a descriptor each before ZAP runs: take the
    // whole hard limit as the budget (context.hpp, "File descriptors").
    {
        const fd_limit fl = raise_open_file_limit();
        open_files = fl.now;
        if (fl.raise_failed)
            log(log_level::warning, "could not raise the open-file limit (soft " + std::to_string(fl.before) +
                                        ", hard " + std::to_string(fl.hard) +
                                        "); connection floods exhaust it sooner");
        else if (fl.now > fl.before)
            log(log_level::info, "raised the open-file limit from " + std::to_string(fl.before) + " to " +
                                     std::to_string(fl.now) + " (the hard limit)");
        if (!fl.raise_failed && fl.now < fd_limit_warn_below)
            log(log_level::warning, "the open-file limit is " + std::to_string(fl.now) +
                                        ": a flood of raw TCP connections can exhaust it and keep members out "
                                        "for a while; raise the hard limit to at least " +
                                        std::to_string(fd_limit_warn_below) +
                                        " (ulimit -Hn, or LimitNOFILE= for a systemd service)");
    }
    shared = shared_context::acquire(o.network_cpu);
    if (o.network_cpu >= 0) {
        if (!cpu_allowed(o.network_cpu))
            log(log_level::warning, "network_cpu " + std::to_string(o.network_cpu) +
                                        " is not a CPU this process may run on: the network threads are not "
                                        "pinned; choose one of the CPUs in `taskset -p` of this process, or -1");
        else if (shared->network_cpu() != o.network_cpu)
            log(log_level::warning,
                "ZeroMQ's I/O threads, shared by the nodes of this process, were started " +
                    (shared->network_cpu() < 0 ? std::string("unpinned")
                                               : "on CPU " + std::to_string(shared->network_cpu())) +
                    " by an earlier node: only this node's own I/O threads run on CPU " +
                    std::to_string(o.network_cpu) + "; give every node of the process the same network_cpu");
    }
    start_placer();
    ctx = &shared->context();
    open_listener(pub, o.bind_endpoint, zap);
    if (o.member_bind_endpoint != "off") {
        // Default: the public port's address, any free port (not a TCP
        // endpoint: no member port; members use the public one).
        std::string ep = o.member_bind_endpoint.empty() ? with_port(pub.bound, "0") : o.member_bind_endpoint;
        if (!ep.empty()) open_listener(mem, ep, member_zap);
    }
    next_tick = spin_until = clock::now();
    try {
        start_guest_decoder();
    } catch (const std::system_error& e) {
        fail_start(std::string("kith: cannot start the guest decoder thread: ") + e.what());
    }
    try {
        io = std::thread([this] { run_placed(true); });
        pin_network_thread(io);  // before start() returns: what runs on it next is network work
    } catch (const std::system_error& e) {
        fail_start(std::string("kith: cannot start the I/O thread: ") + e.what());
    }
    try {
        io2 = std::thread([this] { run_placed(false); });
        pin_network_thread(io2);
    } catch (const std::system_error& e) {
        // The leader runs alone: no jobs (no follower), and it shuts down
        // when stop() is called.
        (void)e;
    }
}

void transport::impl::close_fds() {
    for (int* fd : {&wake_fd, &follow_fd, &job_timer}) {
        if (*fd >= 0) ::close(*fd);
        *fd = -1;
    }
}

void transport::impl::cleanup_sockets() {
    for (auto& l : outs) close_dealer(*l, 0);
    outs.clear();
    close_listener(mem);
    close_listener(pub);
    ctx = nullptr;
}


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
    // Stretch the cookie once (Argon2id), cached in the key directory; the
    // cluster keypair and the proof key below then come from the memo.
    {
        auto master = stretch_cookie(cookie, dir);
        sodium_memzero(master.data(), master.size());
    }
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
    impl_->stop_placer();
    impl_->stop_guest_decoder();
    impl_->close_fds();
    {
        // The last stopped transport of the process ends the context, which
        // waits (at most `linger`) for the goodbyes to go out.
        std::lock_guard lk(impl_->freeze_mu);  // debug_freeze reads `shared`
        impl_->shared.reset();
    }
}

std::string transport::endpoint() const {
    return opts_.advertised_endpoint.empty() ? impl_->pub.bound : opts_.advertised_endpoint;
}

std::string transport::bound_endpoint() const { return impl_->pub.bound; }

std::string transport::member_endpoint() const { return impl_->mem.bound; }

void transport::set_authorizer(authorizer a) { impl_->zap.set_authorizer(std::move(a)); }

void transport::connect(const std::string& endpoint, const public_key& server_key, link_credentials creds) {
    if (impl_->stopping) return;
    {
        std::lock_guard lk(impl_->cmd_mu);
        impl_->cmds.push_back({command::connect, endpoint, server_key, std::move(creds), {}, {}, {}});
    }
    impl_->wake_pending = false;  // force a wake-up
    impl_->wake();
}

void transport::disconnect(const std::string& endpoint) {
    if (impl_->stopping) return;
    {
        std::lock_guard lk(impl_->cmd_mu);
        impl_->cmds.push_back({command::disconnect, endpoint, {}, {}, {}, {}, {}});
    }
    impl_->wake_pending = false;
    impl_->wake();
}

void transport::connect_listener(const std::string& endpoint, bool on) {
    if (impl_->stopping) return;
    {
        std::lock_guard lk(impl_->cmd_mu);
        impl_->cmds.push_back({on ? command::listen_out : command::unlisten_out, endpoint, {}, {}, {}, {}, {}});
    }
    impl_->wake_pending = false;
    impl_->wake();
}

void transport::end_sessions(const std::string& user_id, const std::string& reason) {
    if (impl_->stopping) return;
    {
        std::lock_guard lk(impl_->cmd_mu);
        impl_->cmds.push_back({command::end_sessions, user_id, {}, {}, reason, {}, {}});
    }
    impl_->wake_pending = false;
    impl_->wake();
}

result<void> transport::post(std::string_view peer, const envelope& e) { return post(peer, std::span(&e, 1)); }

namespace {
// The queue this thread posted to last, and of which transport: a caller
// posts to the same peer again and again (a frame of calls, their
// replies), and the table's shared lock, the name's hash and the
// shared_ptr's two atomic counts were a tenth of a post. Valid while the
// table's generation is unchanged (a session up or down bumps it); the
// queue it keeps alive is a closed, emptied one at worst.
// After this thread's thread-locals are destroyed (a post from a static's
// or another thread-local's destructor) posts look the queue up as before.
thread_local bool tl_last_queue_gone = false;
struct last_queue {
    std::uint64_t transport = 0, gen = 0;
    std::string peer;
    std::shared_ptr<peer_queue> q;
    ~last_queue() { tl_last_queue_gone = true; }
};
thread_local last_queue tl_last_queue;
}  // namespace

result<void> transport::post(std::string_view peer, std::span<const envelope> es) {
    impl& m = *impl_;
    if (m.stopping) return result<void>(errc::shutdown, "transport stopped");
    std::shared_ptr<peer_queue> own;  // the queue when not cached; a replaced cached one, released unlocked
    std::shared_ptr<peer_queue>* held = &own;
    if (tl_last_queue_gone) {
        std::shared_lock lk(m.peers_mu);
        auto it = m.queues.find(peer);
        if (it == m.queues.end()) return result<void>(errc::nodedown, std::string(peer));
        own = it->second;
    } else {
        last_queue& last = tl_last_queue;
        if (last.transport != m.serial || last.gen != m.queues_gen.load(std::memory_order_acquire) ||
            last.peer != peer) {
            last.transport = 0;  // until complete: the assign below may throw
            own = std::move(last.q);
            std::shared_lock lk(m.peers_mu);
            auto it = m.queues.find(peer);
            if (it == m.queues.end()) return result<void>(errc::nodedown, std::string(peer));
            last.peer.assign(peer);
            last.q = it->second;
            last.gen = m.queues_gen.load(std::memory_order_relaxed);  // stable under the lock
            last.transport = m.serial;
        }
        held = &last.q;
    }
    peer_queue* const q = held->get();
    bool became_dirty = false;
    std::size_t too_large = 0, limit = 0, queued = 0;
    {
        std::lock_guard lk(q->mu);
        limit = q->max_envelope;
        if (q->closed) return result<void>(errc::nodedown, std::string(peer));
        if (q->bytes >= opts_.max_queue_bytes) {
            m.overload_drops++;
            return result<void>(errc::overloaded, "send queue to " + std::string(peer) + " is full");
        }
        for (const envelope& e : es) {
            // Envelopes queue behind a large one to the same destination
            // (dest_key); with none queued the key is needed only for a
            // large one.
            std::uint64_t key = 0;
            if (q->fragments && !q->bulk_keys.empty()) {
                key = dest_key(e);
                if (q->bulk_keys.count(key)) {
                    // Behind a large envelope to the same destination.
                    bulk_item it{key, {}, false};
                    encode_envelope(e, it.bytes);
                    if (it.bytes.size() > q->max_envelope) {
                        too_large = it.bytes.size();
                        break;
                    }
                    it.large = it.bytes.size() > fragment_threshold;
                    ++queued;
                    q->bytes += it.bytes.size();
                    ++q->bulk_keys[key];
                    q->bulk.push_back(std::move(it));
                    continue;
                }
            }
            const std::size_t before = q->cur.size();
            q->cur.add(e);
            const std::size_t added = q->cur.size() - before;
            if (added > q->max_envelope) {
                // The peer would drop it unread (and every envelope batched
                // with it): refused here, where the sender learns it.
                q->cur.drop_last(before);
                too_large = added;
                break;
            }
            ++queued;
            if (q->fragments && added > fragment_threshold) {
                // In fragments, so that envelopes to others pass it.
                if (q->bulk_keys.empty()) key = dest_key(e);
                bulk_item it{key, {}, true};
                it.bytes.reserve(added);
                encode_envelope(e, it.bytes);
                q->cur.drop_last(before);
                q->bytes += it.bytes.size();
                ++q->bulk_keys[key];
                q->bulk.push_back(std::move(it));
                continue;
            }
            q->bytes += q->cur.count() == 1 ? q->cur.size() : added;
            if (q->cur.size() > q->max_frame) q->frames.push_back(q->cur.take_all_but_last(before));
            if (q->cur.size() >= opts_.batch_bytes) q->frames.push_back(q->cur.take());
        }
        if (!q->dirty && (!too_large || !q->cur.empty() || !q->frames.empty() || !q->bulk.empty())) {
            q->dirty = true;
            became_dirty = true;
        }
    }
    m.envelopes_out += queued;
    if (became_dirty) {
        {
            std::lock_guard lk(m.dirty_mu);
            m.dirty.push_back(*held);
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
    if (too_large)
        return result<void>(errc::badarg, "a message of " + std::to_string(too_large) + " bytes encoded is over the " +
                                              std::to_string(limit) + "-byte limit of one message to " +
                                              std::string(peer) + "; send large data in pieces");
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
    s.handshakes_pending = m.handshakes_pending;
    s.handshake_failures = m.handshake_failures;
    s.socket_errors = m.socket_errors;
    s.rate_drops = m.rate_drops;
    s.public_pauses = m.public_pauses;
    s.address_blocks = m.address_blocks;
    s.credit_timeouts = m.credit_timeouts;
    s.paced_waits = m.paced_waits;
    s.stop_drain_turns = m.stop_drain_turns;
    s.member_moves = m.member_moves;
    s.member_moves_failed = m.member_moves_failed;
    return s;
}

void transport::debug_freeze(bool f) {
    {
        std::lock_guard lk(impl_->freeze_mu);
        impl_->frozen = f;
        impl_->frozen_flag.store(f, std::memory_order_release);
        // Its ZAP requests go unanswered too, as in a hung process.
        if (impl_->shared) {
            impl_->shared->pause_route(impl_->pub.zap_route, f);
            if (!impl_->mem.zap_route.empty()) impl_->shared->pause_route(impl_->mem.zap_route, f);
        }
    }
    impl_->freeze_cv.notify_all();
    if (!f) return;
    // Until the loop stands still (it may be in a turn, reading): at most
    // 2 s (a loop not running, or busy in a job, never gets there).
    impl_->wake();
    std::unique_lock lk(impl_->freeze_mu);
    impl_->freeze_cv.wait_for(lk, std::chrono::seconds(2),
                              [&] { return impl_->parked || !impl_->frozen || impl_->stopping; });
}

}  // namespace kith::detail

