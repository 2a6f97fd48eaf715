// relay_loop.hpp — the relay client's data plane: one epoll thread that
// splices pairs of connected TCP sockets byte for byte (a dialler's loopback
// forwarder to the relay, the relay to the registered node's own listener)
// and accepts on the forwarders' loopback listeners. It replaces a thread
// per splice: one thread per relay_client, whatever the number of sessions.
//
// For TCP sockets (a peer's close is a FIN: what it sent before is still
// read and forwarded; a hangup while this side's buffer is full ends the
// pair at once).
// Thread-safety: add() and listen() may be called from any thread; the loop
// thread alone touches the sockets. Each direction of a pair holds at most
// 64 KiB: a side whose peer does not drain is not read (backpressure, as the
// relay's own splice). A pair ends when either side fails, or closes (once
// what that side sent was delivered); both fds are closed. stop() (and the destructor) closes every fd it holds and
// joins the thread; a callback never runs after stop() returned.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace kith::detail {

class splice_loop {
public:
    // Throws setup_error when epoll or eventfd cannot be created.
    splice_loop();
    ~splice_loop();
    splice_loop(const splice_loop&) = delete;
    splice_loop& operator=(const splice_loop&) = delete;

    // Splices the connected sockets `a` and `b` (owned from now on, made
    // non-blocking). false when the loop is stopping: both are closed.
    bool add(int a, int b);
    // Accepts on the listening socket `fd` (owned from now on) and hands
    // each new connection (non-blocking, TCP_NODELAY, owned by the callee)
    // to `on_accept`, on the loop thread: it must not block. false when
    // the loop is stopping: `fd` is closed.
    bool listen(int fd, std::function<void(int)> on_accept);
    // Stops the thread and closes every fd; idempotent. Not from a callback.
    void stop();

private:
    void run();
    void wake();

    int epoll_fd_ = -1, wake_fd_ = -1;
    std::atomic<bool> stop_{false};
    std::mutex mu_;  // guards the queues and `stopped_`
    bool stopped_ = false;
    std::vector<std::pair<int, int>> new_pairs_;
    std::vector<std::pair<int, std::function<void(int)>>> new_listeners_;
    std::thread thread_;
};

}  // namespace kith::detail
