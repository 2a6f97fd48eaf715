// context.hpp — the process's one ZeroMQ context, shared by every node in
// the process, and the ZAP handler thread that serves all of them. Private
// to kith::core.
//
// ZeroMQ asks for one context per process; with one, two nodes in a process
// share one ZeroMQ I/O thread (and a process with many nodes does not run
// one per node). ZAP is per context (one REP socket bound at
// inproc://zeromq.zap.01), so the handler is per process too: each node
// registers a route, gets a ZAP domain of its own ("kith/<n>") for its
// ROUTER, and the handler thread passes each request to the route of its
// domain. A request for any other domain is refused (400): still fail closed.
// The handler's socket is a ROUTER (not REP), so a request may also go
// unanswered (a paused route: the node's debug_freeze test hook), as it
// would in a hung process; libzmq then fails that handshake by its timeout.
//
// Thread-safety: all members are thread-safe. A route's handler and report
// function are called on the ZAP thread, one request at a time, and never
// after remove_route returns.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "transport/zap.hpp"

namespace kith::detail {

class shared_context {
public:
    // The process's context, created on first use (setup_error if ZeroMQ
    // cannot bind the ZAP handler). When the last holder lets go, the ZAP
    // thread stops and the context ends (waiting for sockets' linger).
    static std::shared_ptr<shared_context> acquire();
    ~shared_context();
    shared_context(const shared_context&) = delete;
    shared_context& operator=(const shared_context&) = delete;

    void* get() const noexcept { return ctx_; }

    // Serves ZAP requests for a new domain, returned, with `handler`; each
    // outcome is also passed to `report`. Both must outlive the route.
    std::string add_route(zap_handler& handler, std::function<void(const zap_outcome&)> report);
    // While paused, the route's requests get no answer at all.
    void pause_route(const std::string& domain, bool paused);
    // Ends a route; when this returns, its handler and report are not in use
    // and never will be again. Requests for the domain are refused from now.
    void remove_route(const std::string& domain);

    // A process-unique number (for inproc endpoint names).
    std::uint64_t unique() noexcept;

private:
    struct route {
        zap_handler* handler;
        std::function<void(const zap_outcome&)> report;
        bool paused = false;
    };
    shared_context();
    void serve();

    void* ctx_ = nullptr;
    void* sock_ = nullptr;  // ROUTER at inproc://zeromq.zap.01
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable idle_cv_;
    std::string busy_;  // the domain whose handler runs now, without mu_ (one ZAP thread)
    std::map<std::string, route, std::less<>> routes_;
    std::atomic<std::uint64_t> next_{0};  // domains and unique(): never reused
};

}  // namespace kith::detail
