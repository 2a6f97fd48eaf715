// loop.cpp — the I/O loop and the leader/follower hand-off (see the
// comment of transport_impl.hpp and docs/architecture.md, "Threads").
#include "transport/transport_impl.hpp"

#include <algorithm>
#include <cerrno>
#include <thread>

namespace kith::detail {

void transport::impl::rebuild_items() {
    items.clear();
    item_links.clear();
    items.push_back({nullptr, wake_fd, ZMQ_POLLIN, 0});
    items.push_back({pub.router.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({pub.mon.handle(), pub.mon ? 0 : -1, ZMQ_POLLIN, 0});
    // The member port (none: entries that poll nothing).
    items.push_back({mem.router.handle(), mem.router ? 0 : -1, static_cast<short>(mem.router ? ZMQ_POLLIN : 0), 0});
    items.push_back({mem.mon.handle(), mem.mon ? 0 : -1, static_cast<short>(mem.mon ? ZMQ_POLLIN : 0), 0});
    for (auto& l : outs) {
        l->item = 0;
        if (!l->dealer) continue;
        l->item = items.size();
        // A mover is not read while its move waits for the answer (moves.cpp).
        items.push_back({l->dealer.handle(), 0, static_cast<short>(l->awaiting_move() ? 0 : ZMQ_POLLIN), 0});
        items.push_back({l->mon.handle(), l->mon ? 0 : -1, ZMQ_POLLIN, 0});
        item_links.push_back(l.get());
    }
    item_fds.clear();
    cheap_poll_ok = true;
    for (const auto& it : items) {
        int fd = it.fd;
        std::size_t len = sizeof fd;
        if (it.socket && zmq_getsockopt(it.socket, ZMQ_FD, &fd, &len) != 0) fd = -1, cheap_poll_ok = false;
        item_fds.push_back({fd, POLLIN, 0});
    }
    item_ask.assign(items.size(), 1);
    full_poll_next = true;
    items_dirty = false;
}

void transport::impl::io_thread(bool leading) {
    ::pthread_setname_np(::pthread_self(), "kith-io");  // leader and follower alike
    for (;;) {
        if (!leading) {
            if (!follow()) return;
            full_poll_next = true;  // the sockets changed hands: ask them all
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

bool transport::impl::run_job() {
    const std::uint64_t held = ((lead.load(std::memory_order_relaxed) >> 2) + 1) << 2 | in_job;
    const auto started = clock::now();
    job_started.store(started.time_since_epoch().count(), std::memory_order_relaxed);
    lead.store(held, std::memory_order_release);
    set_job_timer(job_steal_after);
    tl_job_owner = this;
    tl_job_lead = held;
    // The turn's jobs one after the other, while the sockets are ours: once
    // the follower took them, the jobs not started are its to hand on. Past
    // job_steal_after this thread hands them on itself and goes back to the
    // sockets, so the bound holds when the follower is slow to get a CPU
    // (both I/O threads pinned to one, or the CPUs busy).
    while (lead.load(std::memory_order_acquire) == held) {
        std::function<void()> job;
        {
            std::lock_guard lk(jobs_mu);
            if (jobs.empty()) break;
            job = std::move(jobs.front());
            jobs.pop_front();
        }
        call(job);
        job = nullptr;  // its captures go now, not whenever this thread leads again
        if (clock::now() - started >= job_steal_after) {
            hand_on_jobs();
            break;
        }
    }
    tl_job_owner = nullptr;
    std::uint64_t expect = held;
    if (lead.compare_exchange_strong(expect, held & ~std::uint64_t{3}, std::memory_order_acq_rel)) {
        set_job_timer(std::chrono::microseconds(0));
        take_dirty();  // what the job posted (it woke no one)
        spin_until = spin.active(clock::now());
        return true;
    }
    wake();  // stolen: the new leader must look at what the job posted
    return false;
}

bool transport::impl::follow() {
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
            spin_until = spin.active(clock::now());
            // The old leader is held up in a job: the ones it has not
            // started run elsewhere (they may be what it waits for).
            hand_on_jobs();
            return true;
        }
        follower_ready.store(true);
    }
}

void transport::impl::hand_on_jobs() {
    std::deque<std::function<void()>> rest;
    {
        std::lock_guard lk(jobs_mu);
        rest.swap(jobs);
    }
    for (auto& j : rest) {
        if (cb.run_elsewhere) call(cb.run_elsewhere, std::move(j));
        else call(j);
    }
}

bool transport::impl::take_after_turn(std::function<void()>& job) {
    if (tl_io_owner != this || stopping || !follower_ready.load()) return false;
    std::lock_guard lk(jobs_mu);
    if (jobs.size() >= max_jobs_per_turn) return false;
    jobs.push_back(std::move(job));
    return true;
}

void transport::impl::io_loop() {
    const auto tick = std::max(std::chrono::milliseconds(5),
                               std::min(o.heartbeat_interval / 2, std::chrono::milliseconds(100)));
    // After a turn with activity the loop polls without blocking for a
    // short while (spin_window): the answer to what it just passed on (a
    // reply to a call, the next request of a sequential caller) usually
    // comes within tens of microseconds, and waking a sleeping thread
    // costs about as much. An idle loop blocks as before.
    // While spinning the loop yields between polls, so on a busy (or
    // 2-core) machine the threads it is waiting for get the CPU. A fixed
    // 50 us missed the answers of most chains on an idle 2-core VM (rpc
    // p50 about 100 us); 150-400 us caught them (rpc p50 -10 %, 32
    // concurrent callers and remote spawn +30-50 %, a relayed rpc -25 %),
    // but a fixed long spin costs CPU between sparse messages, hence the
    // window learnt from the gaps, long only while other processes leave
    // the CPUs idle (spin_window.hpp).
    // A job touches no socket (what it posts is flushed by take_dirty,
    // through send_on, which marks the socket it sent on): no full poll.
    while (!stopping) {
        if (frozen_flag.load(std::memory_order_acquire)) {
            std::unique_lock lk(freeze_mu);
            parked = true;
            freeze_cv.notify_all();  // debug_freeze(true) returns
            freeze_cv.wait(lk, [&] { return !frozen || stopping; });
            parked = false;
        }
        if (items_dirty) rebuild_items();
        const auto now = clock::now();
        long timeout_ms = !blocked.empty() ? 1
                          : now < spin_until
                              ? 0
                              : std::max<long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                      next_tick - now).count() + 1);
        int rc = poll_sockets(now, timeout_ms);
        if (rc < 0) break;  // the context ended
        if (rc > 0) spin_until = spin.active(clock::now());
        else if (timeout_ms == 0 && spin_window::yield_found_others()) spin_until = clock::now();
        if (stopping) break;
        read_wake();
        run_commands();
        if (refused_pending.load()) report_refusals();
        read_ready();
        if (clock::now() >= next_tick) {
            sample_others_busy(clock::now());
            housekeeping();
            full_poll_next = true;
            next_tick = clock::now() + tick;
        }
        reap_ins();
        reap_outs();
        take_dirty();
        if (!blocked.empty()) {
            auto b = std::move(blocked);
            blocked.clear();
            for (session* s : b) flush(*s);
        }
        // The dealer sockets replaced above are closed; the poll set is
        // rebuilt on the next turn (items_dirty).
        if (has_jobs()) return;  // run_job, then on
    }
    shutdown_io();
}

void transport::impl::shutdown_io() {
    // Push out what was queued (all of it, bounded: drain_output), then
    // say goodbye on every link, behind it.
    take_dirty();
    for (auto& [name, s] : sessions) flush(s);
    const auto bound = std::min<clock::duration>(o.heartbeat_timeout, stop_drain);
    const auto until = clock::now() + bound;
    drain_output(until);
    warn_undelivered(bound);
    say_goodbyes(until);
    std::vector<std::string> names;
    for (auto& [name, s] : sessions) names.push_back(name);
    for (auto& n : names) end_session(n, "shutdown");  // its links close below
    blocked.clear();
    // Our own connections first (a peer that stops too waits for them,
    // as we wait for its), then the peers' to our ports.
    quiet_own_links(until);
    for (auto& l : outs) close_dealer(*l, static_cast<int>(o.linger.count()));
    await_closes(until);
    outs.clear();
    ins.clear();
    links_per_key.clear();
    cleanup_sockets();
    stopped_io = true;
}

bool transport::impl::output_pending() const {
    for (auto& [name, s] : sessions) {
        if (s.in_flight > 0 || !s.bulk.empty() || !s.unsent.empty()) return true;
        if (!s.hold) continue;
        // A move waiting for its answer holds the queue (flush): it goes
        // on the mover once the answer comes.
        std::lock_guard lk(s.q->mu);
        if (!s.q->frames.empty() || !s.q->cur.empty() || !s.q->bulk.empty()) return true;
    }
    return false;
}

void transport::impl::drain_output(clock::time_point until) {
    // What stop() flushes may be more than ZeroMQ takes at once (a ROUTER
    // or DEALER pipe holds sndhwm frames; the rest waits in `unsent`), and
    // large envelopes go out as fragments past the peer's credit window;
    // closing at once would lose both: a peer reading slowly (its public
    // port reads 16 messages a connection at a time) has most of them still
    // in TCP buffers, and a reset when our socket closes discards those. So
    // the loop keeps sending and reading (credits, and whatever else
    // arrives, delivered as usual) until ZeroMQ took every frame and every
    // fragment is credited, the peer's link is gone (its frames are then
    // dropped by flush), or `until` has passed (a peer that stopped reading).
    // A move awaiting its answer holds its session's queue (flush): the loop
    // reads on until the answer, which sends it on the mover (or, declined,
    // on the first link); with no answer by `until` it is dropped with the
    // session, like a stopped reader's frames.
    // The public port keeps its flood pause meanwhile (poll_sockets): a
    // non-members' flood is not read, nor polled, past their budget while
    // the node stops (stop_drain_turns shows it: each turn waits for a
    // socket, at most 5 ms; a full pipe signals nothing when it empties).
    while (output_pending() && clock::now() < until) {
        if (items_dirty) rebuild_items();
        stop_drain_turns++;
        if (poll_sockets(clock::now(), 5) < 0) return;
        read_wake();
        read_ready();
        reap_outs();
        take_dirty();
        auto b = std::move(blocked);
        blocked.clear();
        for (session* x : b) flush(*x);
    }
}

void transport::impl::warn_undelivered(clock::duration bound) {
    // What ZeroMQ took is not counted (small envelopes are never
    // acknowledged): a peer that stopped reading may lose those unwarned.
    for (auto& [name, s] : sessions) {
        std::size_t frames = s.unsent.size(), large = 0, behind = 0;
        auto count_bulk = [&](const std::deque<bulk_item>& q) {
            for (const bulk_item& it : q) (it.large ? large : behind)++;
        };
        count_bulk(s.bulk);
        {
            std::lock_guard lk(s.q->mu);
            frames += s.q->frames.size() + (s.q->cur.empty() ? 0 : 1);
            count_bulk(s.q->bulk);
        }
        // The first large envelope may be partly sent: its fragments sent
        // are in in_flight, and it counts as not sent.
        if (frames == 0 && large == 0 && behind == 0 && s.in_flight == 0) continue;
        std::string what;
        auto part = [&](std::size_t n, const std::string& text) {
            if (n == 0) return;
            what += (what.empty() ? "" : ", ") + std::to_string(n) + " " + text;
        };
        part(frames, "frame(s) of envelopes not sent");
        part(large, "large envelope(s) not sent");
        part(behind, "envelope(s) queued behind them not sent");
        part(s.in_flight, "bytes of large envelopes sent but not acknowledged (maybe lost)");
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(bound).count();
        log(log_level::warning,
            "stop(): " + name + " did not get everything before this node closed: " + what + " after " +
                std::to_string(ms) + " ms (the stop's wait: heartbeat_timeout, at most 2 s). " +
                (s.hold ? name + " did not answer our move to its member port: it may run a broken kith; upgrade it"
                        : name + " read too slowly or stopped reading") +
                ". Stop once the peer has what matters (a call's reply says it has)");
    }
}

void transport::impl::quiet_own_links(clock::time_point until) {
    // A connection closed while the peer's bytes wait unread in it ends
    // with a reset, which discards on the peer's side what it has not read
    // of ours yet: our stream's tail and our goodbye (a peer streaming to a
    // dialler that stops saw connection_closed and lost the end of its
    // stream, CI under ASan). So what still comes on the links we dialled
    // is read and dropped (the sessions are gone) until each has been quiet
    // for a moment - the peer read our goodbye and stopped sending - or
    // `until` passes; ZeroMQ's I/O thread then has nothing left unread.
    // Every link stays polled until all are quiet at once (one that went
    // quiet and started again must not back up unread); a link already idle
    // counts from its last frame.
    constexpr auto quiet = std::chrono::milliseconds(30);
    std::vector<std::pair<link*, clock::time_point>> open;
    for (auto& l : outs)
        if (l->dealer) open.emplace_back(l.get(), std::max(l->last_rx, clock::now() - quiet + std::chrono::milliseconds(5)));
    std::vector<zmq_pollitem_t> items;
    for (auto& [l, last] : open) items.push_back({l->dealer.handle(), 0, ZMQ_POLLIN, 0});
    while (!open.empty() && clock::now() < until) {
        const auto now = clock::now();
        if (std::all_of(open.begin(), open.end(), [&](auto& x) { return now - x.second >= quiet; })) return;
        stop_drain_turns++;
        if (zmq_poll(items.data(), static_cast<int>(items.size()), 5) < 0 && zmq_errno() != EINTR) return;
        const auto read_at = clock::now();
        for (std::size_t i = 0; i < open.size(); ++i) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            zmq::message_t m;
            try {
                for (int n = 0; n < read_batch && open[i].first->dealer.recv(m, zmq::recv_flags::dontwait); ++n)
                    open[i].second = read_at;
            } catch (const zmq::error_t&) {
                open[i].second = read_at - quiet;  // this link is done: nothing more to read from it
            }
        }
    }
}

void transport::impl::await_closes(clock::time_point until) {
    // A peer that read our goodbye closes its connection to our port. Ours
    // is closed after that (at most until `until`): a TCP connection closed
    // while the peer's bytes (a heartbeat, a credit) wait unread in it ends
    // with a reset, and a reset discards what we sent that the peer has not
    // read yet (a listener stopping right after a stream lost most of it).
    // Only the ports' monitors are read meanwhile; the sessions are gone.
    auto open = [&] {
        for (auto& [rid, l] : ins)
            if (l->state == lstate::established) return true;
        return false;
    };
    while (open() && clock::now() < until) {
        stop_drain_turns++;
        zmq_pollitem_t mons[2];
        int n = 0;
        for (listener* L : {&mem, &pub})
            if (L->mon) mons[n++] = {L->mon.handle(), 0, ZMQ_POLLIN, 0};
        if (n == 0) return;
        if (zmq_poll(mons, n, 5) < 0 && zmq_errno() != EINTR) return;
        read_router_monitor(mem);
        read_router_monitor(pub);
        reap_ins();
    }
}

void transport::impl::say_goodbyes(clock::time_point until) {
    // One goodbye per established link (not a mover still waiting for its
    // answer: moves.cpp), behind everything drained. A goodbye that finds
    // its pipe full (the last frames just taken) is tried again, each 1 ms,
    // until `until`: without it the peer would see connection_closed.
    std::vector<link*> left;
    for (auto& l : outs)
        if (l->state == lstate::established && !l->pending_mover()) left.push_back(l.get());
    for (auto& [rid, l] : ins)
        if (l->state == lstate::established) left.push_back(l.get());
    const std::string f = encode_frame(env_goodbye{"shutdown"});
    for (;;) {
        std::erase_if(left, [&](link* l) {
            const int rc = send_on(*l, f.data(), f.size());
            if (rc == 1) {
                frames_out++;
                bytes_out += f.size();
            }
            return rc != 0;
        });
        if (left.empty() || clock::now() >= until) return;
        stop_drain_turns++;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

int transport::impl::poll_sockets(clock::time_point now, long timeout_ms) {
    // While paused the public port is not polled (its waiting messages
    // would wake every poll): the poll ends when the pause does.
    const bool paused = pub_paused(now);
    items[1].events = paused ? 0 : ZMQ_POLLIN;
    if (paused)
        timeout_ms = std::min<long>(
            timeout_ms, std::chrono::duration_cast<std::chrono::milliseconds>(pub_paused_until - now).count() + 1);
    // zmq_poll asks every socket for ZMQ_EVENTS, and each such question is
    // two system calls (libzmq's getpid fork check and a poll of the
    // socket's mailbox): a loop with a link or two made 13 calls a poll,
    // most of a 2-core machine's kernel time under 32 concurrent calls. A
    // socket's ZMQ_FD turns readable when a command reaches it (new input
    // on a pipe it found empty, among others), and once ZMQ_EVENTS said "no
    // input" its pipes are marked empty, so its next message comes with
    // such a command. Only a send or a receive on the socket (or a connect,
    // disconnect or bind) may take that command in passing. A new socket's
    // first input signals nothing (its pipes were never found empty), and
    // zmq_poll asks even the items it does not poll (events 0), taking their
    // input silently: a new poll set, and an item polled again (the public
    // port's pause ending, a mover's answer: a new poll set), ask every
    // socket (tests/transport/test_poll_contract.cpp). So a poll asks
    // ZMQ_EVENTS only of the sockets touched since (`item_ask`: send_on
    // marks the socket it sent on, a poll the ones it found input on, which
    // are read next) and of those whose ZMQ_FD is readable (poll_asked),
    // also before the loop blocks. Every socket is asked (zmq_poll) after
    // commands, housekeeping, a rebuilt poll set or a change of the public
    // port's pause (full_poll_next), and at least every `full_poll_every`:
    // a poll that asked only some blocks for at most `asked_block_max`, so
    // were a touch missed, nothing would wait longer than that.
    // When the public port's pause begins or ends its backlog may wait in
    // pipes that send no command (the paused polls took them): a full poll.
    if (paused != pub_was_paused) full_poll_next = true;
    pub_was_paused = paused;
    if (cheap_poll_ok && !full_poll_next && now - last_full_poll < full_poll_every)
        return poll_asked(std::min<long>(timeout_ms, asked_block_max.count()));
    full_poll_next = false;
    int rc = zmq_poll(items.data(), static_cast<int>(items.size()), timeout_ms);
    last_full_poll = clock::now();  // after a blocking poll: when it asked last
    if (rc < 0) {
        const int err = zmq_errno();
        if (err == ETERM) return -1;
        // EINTR is a signal; anything else (a socket closed under the
        // poll) is a fault: logged, and the poll set rebuilt.
        if (err != EINTR) {
            socket_error(std::string("polling the sockets failed: ") + zmq_strerror(err));
            items_dirty = true;
        }
        for (auto& it : items) it.revents = 0;
        full_poll_next = true;
        return 0;
    }
    // Read next, and the reads may stop before a socket is empty.
    for (std::size_t i = 0; i < items.size(); ++i) item_ask[i] = items[i].revents != 0;
    return rc;
}

int transport::impl::item_has_input(std::size_t i) {
    std::uint32_t ev = 0;
    std::size_t len = sizeof ev;
    if (zmq_getsockopt(items[i].socket, ZMQ_EVENTS, &ev, &len) == 0) return (ev & ZMQ_POLLIN) ? 1 : 0;
    if (zmq_errno() == ETERM) return -1;
    full_poll_next = true;  // zmq_poll reports the fault
    return 0;
}

int transport::impl::poll_asked(long timeout_ms) {
    int found = 0;
    // Asks socket i for ZMQ_EVENTS; -1 when the context ended.
    const auto ask = [&](std::size_t i) {
        const int in = item_has_input(i);
        if (in > 0) items[i].revents = ZMQ_POLLIN, ++found;
        item_ask[i] = in > 0;
        return in;
    };
    for (std::size_t i = 0; i < items.size(); ++i) {
        auto& it = items[i];
        it.revents = 0;
        item_fds[i].events = it.events ? POLLIN : 0;
        item_fds[i].revents = 0;
        if (it.socket && it.events && item_ask[i] && ask(i) < 0) return -1;
    }
    // The sockets not asked: their ZMQ_FD says whether a command came. A
    // command that is not input (room to write again, a pipe's end) ends
    // the wait with nothing found: on until the timeout, as zmq_poll does.
    // A spin turn's poll (timeout 0, or input found) reads no clock.
    const bool waits = timeout_ms > 0 && !found;
    const auto until = waits ? clock::now() + std::chrono::milliseconds(timeout_ms) : clock::time_point{};
    for (;;) {
        const long wait_ms =
            waits ? std::max<long>(0, std::chrono::ceil<std::chrono::milliseconds>(until - clock::now()).count()) : 0;
        const int r = ::poll(item_fds.data(), item_fds.size(), static_cast<int>(wait_ms));
        for (std::size_t i = 0; r > 0 && i < items.size(); ++i) {
            auto& it = items[i];
            if (!item_fds[i].revents || it.revents) continue;
            if (!it.socket) it.revents = ZMQ_POLLIN, ++found;  // the wake descriptor
            else if (ask(i) < 0) return -1;
        }
        if (found || r <= 0 || wait_ms == 0 || full_poll_next) return found;
        for (auto& f : item_fds) f.revents = 0;
    }
}

void transport::impl::read_wake() {
    if (items[0].revents & ZMQ_POLLIN) {
        std::uint64_t v;
        ssize_t n = ::read(wake_fd, &v, sizeof v);
        (void)n;
        // Commands that touch the sockets ask for a full poll (run_commands);
        // a flush marks what it sends on (send_on).
    }
    wake_pending.store(false);
}

void transport::impl::read_ready() {
    if (items[4].revents & ZMQ_POLLIN) read_router_monitor(mem);
    if (items[2].revents & ZMQ_POLLIN) read_router_monitor(pub);
    // Monitors before data, so that a replaced connection is known
    // before its successor's messages are read.
    std::vector<link*>& ls = loop_links;  // a copy: links may be replaced below
    ls.assign(item_links.begin(), item_links.end());
    for (std::size_t i = 0; i < ls.size(); ++i) {
        if (items[first_link + 2 * i + 1].revents & ZMQ_POLLIN) handle_monitor(*ls[i]);
    }
    // Members first: the member port, then the links we dialled; the
    // public port last, and only within non-members' budget.
    if (items[3].revents & ZMQ_POLLIN) read_router(mem);
    for (std::size_t i = 0; i < ls.size(); ++i) {
        if ((items[first_link + 2 * i].revents & ZMQ_POLLIN) && ls[i]->dealer) read_dealer(*ls[i]);
    }
    if (items[1].revents & ZMQ_POLLIN) read_router(pub);
}

}  // namespace kith::detail
