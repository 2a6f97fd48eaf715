// context.cpp — the process's ZeroMQ context and ZAP thread (context.hpp).
#include "transport/context.hpp"

#include <unistd.h>
#include <zmq.h>

#include <algorithm>

#include "kith/error.hpp"

namespace kith::detail {

namespace {
std::mutex instance_mu;
std::weak_ptr<shared_context> instance;  // under instance_mu
pid_t instance_pid = 0;                  // the process that made it
}  // namespace

std::shared_ptr<shared_context> shared_context::acquire() {
    std::lock_guard lk(instance_mu);
    // A child forked while its parent had nodes (Python's multiprocessing)
    // inherits the context without its threads: it makes its own for its
    // new nodes (ZeroMQ contexts do not survive a fork; nodes inherited from
    // the parent must not be used or stopped in the child).
    if (instance_pid == ::getpid())
        if (auto c = instance.lock()) return c;
    std::shared_ptr<shared_context> c(new shared_context());
    instance = c;
    instance_pid = ::getpid();
    return c;
}

shared_context::shared_context() {
    ctx_ = zmq_ctx_new();
    if (!ctx_) throw setup_error("kith: cannot create a ZeroMQ context");
    // Every node of the process has its sockets here: a ROUTER and a monitor
    // pair, and a DEALER and a monitor pair per peer (a 32-node mesh in one
    // process needs about 2,000; the default limit is 1,023).
    zmq_ctx_set(ctx_, ZMQ_MAX_SOCKETS, std::min(zmq_ctx_get(ctx_, ZMQ_SOCKET_LIMIT), 32768));
    sock_ = zmq_socket(ctx_, ZMQ_ROUTER);
    int zero = 0;
    if (sock_) zmq_setsockopt(sock_, ZMQ_LINGER, &zero, sizeof zero);
    if (!sock_ || zmq_bind(sock_, "inproc://zeromq.zap.01") != 0) {
        std::string err = zmq_strerror(zmq_errno());
        if (sock_) zmq_close(sock_);
        zmq_ctx_term(ctx_);
        throw setup_error("kith: cannot bind the ZAP handler: " + err);
    }
    thread_ = std::thread([this] { serve(); });
}

shared_context::~shared_context() {
    zmq_ctx_shutdown(ctx_);  // the ZAP thread's poll ends with ETERM
    thread_.join();
    zmq_ctx_term(ctx_);  // waits for the last sockets' linger
}

namespace {
// One multipart message, at most `max` frames kept (the rest read and
// dropped). Empty if nothing could be read.
std::vector<std::string> recv_frames(void* sock, std::size_t max) {
    std::vector<std::string> frames;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        if (frames.size() < max) frames.emplace_back(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
        bool more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (!more) break;
    }
    return frames;
}
}  // namespace

void shared_context::serve() {
    for (;;) {
        zmq_pollitem_t item{sock_, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, -1) < 0) {
            if (zmq_errno() == ETERM) break;
            continue;
        }
        // A ROUTER: the requester's envelope (its routing id, any further
        // frames, then an empty delimiter) comes first, then the request
        // (RFC 27). The reply goes back with the same envelope.
        std::vector<std::string> frames = recv_frames(sock_, 20);
        std::size_t d = 1;
        while (d < frames.size() && d < 4 && !frames[d].empty()) ++d;
        if (d >= frames.size() || !frames[d].empty()) continue;  // no envelope: nothing to answer
        std::vector<std::string> route(frames.begin(), frames.begin() + static_cast<std::ptrdiff_t>(d) + 1);
        zap_request req = zap_parse(std::vector<std::string>(frames.begin() + static_cast<std::ptrdiff_t>(d) + 1, frames.end()));
        std::unique_lock lk(mu_);
        auto it = routes_.find(req.domain);
        if (it == routes_.end()) {
            // No node owns this domain (one that stopped, or not kith's):
            // refuse, as libzmq would with no handler at all.
            zap_outcome out;
            out.address = req.address;
            out.reason = "wrong ZAP domain";
            zap_reply(sock_, route, req, out);
            continue;
        }
        if (it->second.paused) continue;  // no answer, as from a hung process
        // The authorizer may take its time (it re-reads a grant table from
        // disk): it runs without mu_, so other nodes' routes are not held up;
        // remove_route waits for it instead.
        zap_handler* handler = it->second.handler;
        auto report = it->second.report;
        busy_ = req.domain;
        lk.unlock();
        zap_outcome out = handler->decide(req);
        zap_reply(sock_, route, req, out);
        if (report) report(out);
        lk.lock();
        busy_.clear();
        lk.unlock();
        idle_cv_.notify_all();
    }
    zmq_close(sock_);
}

std::string shared_context::add_route(zap_handler& handler, std::function<void(const zap_outcome&)> report) {
    std::string domain = std::string(zap_domain) + "/" + std::to_string(++next_);
    std::lock_guard lk(mu_);
    routes_.emplace(domain, route{&handler, std::move(report)});
    return domain;
}

void shared_context::pause_route(const std::string& domain, bool paused) {
    std::lock_guard lk(mu_);
    auto it = routes_.find(domain);
    if (it != routes_.end()) it->second.paused = paused;
}

void shared_context::remove_route(const std::string& domain) {
    std::unique_lock lk(mu_);
    routes_.erase(domain);
    idle_cv_.wait(lk, [&] { return busy_ != domain; });
}

std::uint64_t shared_context::unique() noexcept { return ++next_; }

}  // namespace kith::detail
