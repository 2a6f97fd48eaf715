// sessions_guest.cpp — the guest decoder: frames of grantees and strangers
// are decoded and handed to the node on a thread of their own, so that a
// cluster member's frames never wait behind a guest's decode. See
// transport_impl.hpp ("the guest decoder") and docs/security.md.
#include "transport/transport_impl.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>

namespace kith::detail {

void transport::impl::start_guest_decoder() {
    guest_thread = std::thread([this] {
        // Below the I/O threads and the workers: under load, members' work
        // runs first (Linux: the nice value is per thread).
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), 10);
        ::pthread_setname_np(::pthread_self(), "kith-guest");  // top -H, perf, /proc/PID/task
        guest_decoder();
    });
}

void transport::impl::stop_guest_decoder() {
    {
        std::lock_guard lk(guest_mu);
        guest_stop = true;
    }
    guest_cv.notify_all();
    if (guest_thread.joinable()) guest_thread.join();
    std::lock_guard lk(guest_mu);
    guest_q.clear();
    guest_q_bytes = 0;
}

bool transport::impl::queue_guest_frame(const link& l, std::string_view frame, const peer_auth& auth,
                                        const std::shared_ptr<guest_session>& gs) {
    {
        std::lock_guard lk(guest_mu);
        const std::size_t cap = o.guests_burst_bytes ? o.guests_burst_bytes : std::size_t{64} << 20;
        if (guest_stop || guest_q_bytes + frame.size() > cap) return false;
        guest_q_bytes += frame.size();
        guest_q.push_back(guest_frame{l.peer, l.rid, auth, gs, std::string(frame)});
    }
    guest_cv.notify_one();
    return true;
}

void transport::impl::guest_decoder() {
    for (;;) {
        guest_frame f;
        {
            std::unique_lock lk(guest_mu);
            guest_cv.wait(lk, [&] { return guest_stop || !guest_q.empty(); });
            if (guest_stop) return;
            f = std::move(guest_q.front());
            guest_q.pop_front();
            guest_q_bytes -= std::min(guest_q_bytes, f.bytes.size());
        }
        decode_guest(f);
    }
}

void transport::impl::decode_guest(guest_frame& f) {
    {
        std::lock_guard lk(f.gs->mu);
        if (!f.gs->up) return;  // its session ended: nothing of it reaches the node
    }
    auto r = decode_frame(f.bytes, o.guest_limits);
    if (!r) {
        decode_errors++;
        call(cb.on_decode_error, f.peer, r.err());
        return;
    }
    std::vector<envelope>& envs = r.value();
    envelopes_in += envs.size();
    // As on_frame for an established link; a goodbye ends the session on
    // the I/O thread, after what came before it was delivered.
    auto goodbye = take_data(envs, 0);
    if (!envs.empty()) {
        std::lock_guard lk(f.gs->mu);
        if (f.gs->up) call(cb.on_envelopes, f.peer, f.auth, std::move(envs));
    }
    if (goodbye) {
        {
            std::lock_guard lk(cmd_mu);
            command c{command::goodbye, f.peer, {}, {}, std::move(*goodbye), {}, {}};
            c.rid = f.rid;
            c.gs = f.gs;
            cmds.push_back(std::move(c));
        }
        wake_pending = false;
        wake();
    }
}

}  // namespace kith::detail
