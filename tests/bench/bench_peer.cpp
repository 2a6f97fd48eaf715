// The two-process figures' callee node (bench_peer.hpp).
#include "bench_peer.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "../support/spawn_child.hpp"
#include "bench_nodes.hpp"
#include "kith/node.hpp"

namespace kith::bench {

kith::service bench_service() {
    kith::service svc("bench");
    svc.function("echo", [](kith::term x) { return x; });
    svc.actor_type("worker", []() {
        return [](kith::actor& self) -> kith::behavior {
            self.quit();
            return [](kith::actor&, kith::message&) {};
        };
    });
    return svc;
}

peer_process::~peer_process() {
    if (to_child >= 0) ::close(to_child);
    if (pid > 0) {
        int status = 0;
        // It stops its node within stop()'s 2 s bound; a child that hangs is killed.
        for (int i = 0; i < 100 && ::waitpid(pid, &status, WNOHANG) == 0; ++i) ::usleep(50000);
        if (::waitpid(pid, &status, WNOHANG) == 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
        }
    }
}

std::unique_ptr<peer_process> start_peer_process(const std::filesystem::path& dir) {
    std::filesystem::create_directories(dir);
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    auto close_all = [&] {
        for (int fd : {in[0], in[1], out[0], out[1]})
            if (fd >= 0) ::close(fd);
    };
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
        std::perror("bench: pipe for the peer process");
        close_all();
        return nullptr;
    }
    pid_t child = -1;
    try {
        // Killed with the bench (the tests' own fork/exec: PR_SET_PDEATHSIG).
        child = test_support::spawn_child({"/proc/self/exe", "--peer-node", dir.string()}, in[0], out[1], -1);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench: the peer process did not start: %s\n", e.what());
        close_all();
        return nullptr;
    }
    ::close(in[0]);
    ::close(out[1]);
    auto p = std::make_unique<peer_process>();
    p->pid = child;
    p->to_child = in[1];
    // Its one line: "<endpoint> <key>".
    std::string line;
    const auto deadline = clk::now() + std::chrono::seconds(20);
    char c;
    while (clk::now() < deadline) {
        pollfd pf{out[0], POLLIN, 0};
        if (::poll(&pf, 1, 100) <= 0) continue;
        if (::read(out[0], &c, 1) != 1 || c == '\n') break;
        line += c;
    }
    ::close(out[0]);
    const auto sp = line.find(' ');
    auto key = sp == std::string::npos ? std::nullopt : kith::public_key::from_z85(line.substr(sp + 1));
    if (!key) {
        std::fprintf(stderr, "bench: the peer process did not start (it said \"%s\"); two-process figures skipped\n",
                     line.c_str());
        return nullptr;
    }
    p->endpoint = line.substr(0, sp);
    p->key = *key;
    return p;
}

void start_peer_pair(peer_pair& p, const std::filesystem::path& dir, const char* group) {
    p.peer = start_peer_process(dir / "b2p");
    if (!p.peer) return;
    p.a.emplace(net_node(bench_name("a2p@bench"), dir / "a2p"));
    auto up = p.a->connect(p.peer->endpoint, p.peer->key);
    if (up.ok()) p.bn = *up;
    else std::fprintf(stderr, "bench %s: connect to the peer process failed: %s\n", group, up.err().detail.c_str());
}

int serve_peer_node(const char* dir) {
    ::signal(SIGPIPE, SIG_IGN);
    // Profiling: the peer's network threads placed apart from this
    // process's (KITH_BENCH_NETWORK_CPU is the parent's, inherited).
    if (const char* c = std::getenv("KITH_BENCH_PEER_NETWORK_CPU")) ::setenv("KITH_BENCH_NETWORK_CPU", c, 1);
    kith::node b(net_node(bench_name("b@bench"), dir));
    b.add_service(bench_service());
    std::printf("%s %s\n", b.endpoint().c_str(), b.key().z85().c_str());
    std::fflush(stdout);
    char buf[64];
    while (::read(0, buf, sizeof buf) > 0) {
    }
    return 0;
}

}  // namespace kith::bench
