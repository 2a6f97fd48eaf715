// context.cpp — the process's ZeroMQ context and ZAP thread (context.hpp).
#include "transport/context.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <cstring>

#include "kith/error.hpp"
#include "kith/log.hpp"

namespace kith::detail {

namespace {
std::mutex instance_mu;
std::weak_ptr<shared_context> instance;  // under instance_mu
pid_t instance_pid = 0;                  // the process that made it
}  // namespace

fd_limit raise_open_file_limit() noexcept {
    static std::mutex mu;
    std::lock_guard lk(mu);
    fd_limit r;
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        r.raise_failed = true;
        return r;
    }
    constexpr rlim_t cap = rlim_t{1} << 20;  // the kernel's usual nr_open
    r.before = rl.rlim_cur;
    r.hard = rl.rlim_max;
    const rlim_t want = std::min(rl.rlim_max, cap);
    r.now = rl.rlim_cur;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (::setrlimit(RLIMIT_NOFILE, &rl) == 0) r.now = want;
        else r.raise_failed = true;
    }
    return r;
}

std::shared_ptr<shared_context> shared_context::acquire(int network_cpu) {
    std::lock_guard lk(instance_mu);
    // A child forked while its parent had nodes (Python's multiprocessing)
    // inherits the context without its threads: it makes its own for its
    // new nodes (ZeroMQ contexts do not survive a fork; nodes inherited from
    // the parent must not be used or stopped in the child).
    if (instance_pid == ::getpid())
        if (auto c = instance.lock()) return c;
    std::shared_ptr<shared_context> c(new shared_context(network_cpu));
    instance = c;
    instance_pid = ::getpid();
    return c;
}

shared_context::shared_context(int network_cpu) {
    std::map<pid_t, std::string> before;  // ZeroMQ I/O threads of other contexts
    try {
        // Every node of the process has its sockets here: a ROUTER and a
        // monitor pair, and a DEALER and a monitor pair per peer (a 32-node
        // mesh in one process needs about 2,000; the default limit is 1,023).
        ctx_.set(zmq::ctxopt::max_sockets, std::min(ctx_.get(zmq::ctxopt::socket_limit), 32768));
        // Two ZeroMQ I/O threads (before the first socket): one for the
        // member ports and links to members, one for the public ports
        // (io_affinity), so that decrypting a stranger's flood never runs
        // on the thread that carries members' frames.
        ctx_.set(zmq::ctxopt::io_threads, 2);
        // Before the first socket starts the I/O threads. A CPU this process
        // may not use leaves them unpinned (their start fails otherwise):
        // the transport warns.
        if (network_cpu >= 0 && network_cpu < CPU_SETSIZE) {
            cpu_set_t allowed;
            CPU_ZERO(&allowed);
            if (::sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_ISSET(network_cpu, &allowed) &&
                zmq_ctx_set(ctx_.handle(), ZMQ_THREAD_AFFINITY_CPU_ADD, network_cpu) == 0)
                network_cpu_ = network_cpu;
        }
        before = io_thread_ids();
        sock_ = zmq::socket_t(ctx_, zmq::socket_type::router);
        sock_.set(zmq::sockopt::linger, 0);
        sock_.bind("inproc://zeromq.zap.01");
    } catch (const zmq::error_t& e) {
        throw setup_error(std::string("kith: cannot set up the ZAP handler (") + e.what() +
                          "): another ZAP handler in this process's context, or ZeroMQ out of sockets");
    }
    find_io_threads(before);
    answers_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (answers_fd_ < 0)
        throw setup_error("kith: cannot create an eventfd for the ZAP handler (out of file descriptors?)");
    try {
        thread_ = std::thread([this] {
            ::pthread_setname_np(::pthread_self(), "kith-zap");
            serve();
        });
    } catch (const std::system_error& e) {
        ::close(answers_fd_);
        throw setup_error(std::string("kith: cannot start the ZAP thread: ") + e.what());
    }
}

// libzmq's I/O threads of this process, by thread id: it names them
// "ZMQbg/IO/<n>" as they start. Empty without /proc.
std::map<pid_t, std::string> shared_context::io_thread_ids() {
    std::map<pid_t, std::string> out;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        std::ifstream comm(task.path() / "comm");
        std::string name;
        std::getline(comm, name);
        if (name.rfind("ZMQbg/IO/", 0) != 0) continue;
        out[static_cast<pid_t>(std::stol(task.path().filename().string()))] = name;
    }
    return out;
}

void shared_context::find_io_threads(const std::map<pid_t, std::string>& before) {
    // libzmq starts its I/O threads with the first socket: this context's
    // are the two not there before, found by name, waiting at most 50 ms.
    for (int attempt = 0; attempt < 50; ++attempt) {
        std::vector<pid_t> ours;
        pid_t public_io = 0;
        for (auto& [tid, name] : io_thread_ids()) {
            if (before.count(tid)) continue;
            ours.push_back(tid);
            if (name == "ZMQbg/IO/1") public_io = tid;  // thread 1: public_io_affinity (context.hpp)
        }
        if (ours.size() < 2 || !public_io) {
            if (attempt == 0 && !std::filesystem::exists("/proc/self/task")) return;  // not Linux
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
            continue;
        }
        io_threads_ = std::move(ours);
        if (::setpriority(PRIO_PROCESS, static_cast<id_t>(public_io), public_io_nice) != 0)
            kith::log(log_level::warning, "transport", std::string("could not lower the public port's I/O thread to nice ") +
                                        std::to_string(public_io_nice) + ": " + std::strerror(errno) +
                                        "; members' calls may slow down under a flood of non-members' frames");
        return;
    }
}

shared_context::~shared_context() {
    ctx_.shutdown();  // the ZAP thread's poll ends with ETERM
    thread_.join();
    // Transports remove their routes before they let go; a route left over
    // (a holder that never removed it) still has its worker joined here, as
    // a std::thread must be.
    std::vector<std::string> left;
    for (auto& [domain, r] : routes_) left.push_back(domain);
    for (auto& d : left) remove_route(d);
    ::close(answers_fd_);
    // ctx_'s destructor ends the context, waiting for the last sockets' linger.
}

namespace {
// One multipart message, at most `max` frames kept (the rest read and
// dropped). Empty if nothing could be read.
std::vector<std::string> recv_frames(zmq::socket_ref sock, std::size_t max) {
    std::vector<std::string> frames;
    zmq::message_t m;
    for (;;) {
        if (!sock.recv(m, zmq::recv_flags::dontwait)) break;
        if (frames.size() < max) frames.emplace_back(m.data<char>(), m.size());
        if (!m.more()) break;
    }
    return frames;
}
}  // namespace

void shared_context::serve() {
    for (;;) {
        zmq::pollitem_t items[2] = {{sock_.handle(), 0, ZMQ_POLLIN, 0}, {nullptr, answers_fd_, ZMQ_POLLIN, 0}};
        try {
            zmq::poll(items, 2, std::chrono::milliseconds(-1));
            if (items[1].revents & ZMQ_POLLIN) send_answers();
            if (!(items[0].revents & ZMQ_POLLIN)) continue;
            // A ROUTER: the requester's envelope (its routing id, any further
            // frames, then an empty delimiter) comes first, then the request
            // (RFC 27). The reply goes back with the same envelope.
            std::vector<std::string> frames = recv_frames(sock_, 20);
            std::size_t d = 1;
            while (d < frames.size() && d < 4 && !frames[d].empty()) ++d;
            if (d >= frames.size() || !frames[d].empty()) continue;  // no envelope: nothing to answer
            const auto split = frames.begin() + static_cast<std::ptrdiff_t>(d) + 1;
            request r{std::vector<std::string>(frames.begin(), split),
                      zap_parse(std::vector<std::string>(split, frames.end()))};
            zap_outcome out;
            {
                std::lock_guard lk(mu_);
                auto it = routes_.find(r.req.domain);
                if (it == routes_.end() && was_issued(r.req.domain)) {
                    // A node that is stopping: its ROUTER is closed, but a
                    // handshake it accepted before may still ask. No answer
                    // (the connection ends with the ROUTER): a refusal would
                    // tell the peer its key is wrong, and a peer told that
                    // stops redialling, so it would never come back to the
                    // node's next start on that port.
                    continue;
                } else if (it == routes_.end()) {
                    // No node ever had this domain (not kith's): refuse, as
                    // libzmq would with no handler at all.
                    out.address = r.req.address;
                    out.reason = "wrong ZAP domain";
                } else if (it->second.paused) {
                    continue;  // no answer, as from a hung process
                } else if (auto fast = it->second.handler->decide_without_authorizer(r.req)) {
                    out = std::move(*fast);
                    if (it->second.report) it->second.report(out);
                } else {
                    // The authorizer may take its time: it runs on the
                    // route's worker, never on this thread (context.hpp).
                    route& rt = it->second;
                    if (!rt.w) {
                        rt.w = std::make_shared<worker>();
                        try {
                            rt.w->thread = std::thread([this, copy = rt] { work(copy); });
                        } catch (const std::system_error&) {
                            rt.w.reset();
                        }
                    }
                    bool queued = false;
                    if (rt.w) {
                        std::lock_guard wl(rt.w->mu);
                        if (rt.w->q.size() < max_route_backlog) {
                            rt.w->q.push_back(std::move(r));
                            queued = true;
                        }
                    }
                    if (queued) {
                        rt.w->cv.notify_one();
                        continue;
                    }
                    out.address = r.req.address;
                    out.reason = rt.w ? "authorizer busy: too many handshakes waiting for it"
                                      : "cannot start the authorizer's thread";
                    if (r.req.credentials.size() == 1 && r.req.credentials[0].size() == 32) {
                        public_key k;
                        std::memcpy(k.bytes.data(), r.req.credentials[0].data(), 32);
                        out.client = k;
                    }
                    if (rt.report) rt.report(out);
                }
            }
            if (!zap_reply(sock_, r.envelope, r.req, out))
                kith::log(log_level::warning, "transport", "could not send a ZAP reply; that handshake will time out");
        } catch (const zmq::error_t& e) {
            if (e.num() == ETERM) break;
            kith::log(log_level::error, "transport",
                      std::string("the ZAP thread hit a ZeroMQ error and carries on: ") + e.what());
        }
    }
    sock_.close();
}

void shared_context::send_answers() {
    std::uint64_t v;
    ssize_t n = ::read(answers_fd_, &v, sizeof v);
    (void)n;  // EAGAIN: another round took them already
    std::vector<answer> got;
    {
        std::lock_guard lk(mu_);
        got.swap(answers_);
    }
    for (const answer& a : got)
        if (!zap_reply(sock_, a.envelope, a.req, a.out))
            kith::log(log_level::warning, "transport", "could not send a ZAP reply; that handshake will time out");
}

void shared_context::work(route r) {
    worker& w = *r.w;
    for (;;) {
        request q;
        {
            std::unique_lock lk(w.mu);
            w.cv.wait(lk, [&] { return w.stop || !w.q.empty(); });
            if (w.stop) return;
            q = std::move(w.q.front());
            w.q.pop_front();
        }
        zap_outcome out = r.handler->decide(q.req);
        if (r.report) r.report(out);
        {
            std::lock_guard lk(mu_);
            answers_.push_back({std::move(q.envelope), std::move(q.req), std::move(out)});
        }
        std::uint64_t one = 1;
        ssize_t n = ::write(answers_fd_, &one, sizeof one);
        (void)n;  // EAGAIN only when the counter is full: the ZAP thread is awake anyway
    }
}

std::string shared_context::add_route(zap_handler& handler, std::function<void(const zap_outcome&)> report) {
    std::string domain = std::string(zap_domain) + "/" + std::to_string(++next_);
    std::lock_guard lk(mu_);
    routes_.emplace(domain, route{&handler, std::move(report), false, nullptr});
    return domain;
}

void shared_context::pause_route(const std::string& domain, bool paused) {
    std::lock_guard lk(mu_);
    auto it = routes_.find(domain);
    if (it != routes_.end()) it->second.paused = paused;
}

void shared_context::remove_route(const std::string& domain) {
    std::shared_ptr<worker> w;
    {
        std::lock_guard lk(mu_);
        auto it = routes_.find(domain);
        if (it == routes_.end()) return;
        w = std::move(it->second.w);
        routes_.erase(it);
    }
    if (!w) return;
    {
        std::lock_guard lk(w->mu);
        w->stop = true;  // what is still queued goes unanswered: its ROUTER is closed already
    }
    w->cv.notify_all();
    if (w->thread.joinable()) w->thread.join();  // after an authorizer running now returns
}

std::uint64_t shared_context::unique() noexcept { return ++next_; }

bool shared_context::was_issued(std::string_view domain) const noexcept {
    const std::string_view prefix = zap_domain;
    if (domain.size() <= prefix.size() + 1 || domain.substr(0, prefix.size()) != prefix ||
        domain[prefix.size()] != '/')
        return false;
    const std::string_view digits = domain.substr(prefix.size() + 1);
    std::uint64_t n = 0;
    for (char ch : digits) {
        if (ch < '0' || ch > '9' || n > (UINT64_MAX - 9) / 10) return false;
        n = n * 10 + static_cast<std::uint64_t>(ch - '0');
    }
    // Exactly as add_route writes it ("kith/01" is not "kith/1"); unique()
    // shares the counter, so a number it gave out counts too: unanswered,
    // which still admits nobody (only kith's own sockets name a domain).
    return n >= 1 && n <= next_.load() && std::to_string(n) == digits;
}

}  // namespace kith::detail
