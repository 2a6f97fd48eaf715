// What one userspace hop costs (group "relay" reports it): the round trip of
// a 100-byte TCP ping-pong on loopback, direct and through `hops` splices
// of the relay client's own loop (services/src/relay_loop.hpp, one epoll
// thread each), median of 20000 round trips. A relayed kith link has three
// such hops each way (the dialler's forwarder, the relay, the registered
// node's splice), so relay_rpc_p50_us - rpc_p50_us is about three of these
// plus what the extra thread wake-ups cost under load.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "relay_loop.hpp"

namespace kith::bench {

namespace {

int listen_any(int& port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 8) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &sl) != 0)
        return -1;
    port = ntohs(sa.sin_port);
    return fd;
}

int dial(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    int one = 1;
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        if (fd >= 0) ::close(fd);
        return -1;
    }
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

}  // namespace

// Median round trip in microseconds through `hops` splices; < 0 on failure.
double splice_hop_rtt_us(int hops) {
    int port = 0;
    int lf = listen_any(port);
    if (lf < 0) return -1;
    std::thread echo([lf] {  // the far end: echoes until the client closes
        int s = ::accept(lf, nullptr, nullptr);
        ::close(lf);
        if (s < 0) return;
        int one = 1;
        ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char b[256];
        for (;;) {
            ssize_t r = ::recv(s, b, sizeof b, 0);
            if (r <= 0 || ::send(s, b, static_cast<std::size_t>(r), MSG_NOSIGNAL) != r) break;
        }
        ::close(s);
    });
    std::vector<std::unique_ptr<kith::detail::splice_loop>> loops;
    for (int h = 0; h < hops; ++h) {
        int p = 0;
        int l = listen_any(p);
        auto loop = std::make_unique<kith::detail::splice_loop>();
        auto* lp = loop.get();
        lp->listen(l, [lp, next = port](int c) {
            int o = dial(next);
            if (o < 0) ::close(c);
            else lp->add(c, o);
        });
        loops.push_back(std::move(loop));
        port = p;
    }
    double median = -1;
    if (int c = dial(port); c >= 0) {
        char b[100] = {};
        std::vector<double> us;
        for (int i = 0; i < 22000; ++i) {
            auto t0 = std::chrono::steady_clock::now();
            if (::send(c, b, sizeof b, MSG_NOSIGNAL) != sizeof b) break;
            std::size_t got = 0;
            while (got < sizeof b) {
                ssize_t r = ::recv(c, b + got, sizeof b - got, 0);
                if (r <= 0) break;
                got += static_cast<std::size_t>(r);
            }
            if (got < sizeof b) break;
            if (i >= 2000) us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
        }
        ::close(c);
        if (us.size() == 20000) {
            std::sort(us.begin(), us.end());
            median = us[us.size() / 2];
        }
    }
    loops.clear();  // closes the splices: the echo thread sees its peer close
    echo.join();
    return median;
}

}  // namespace kith::bench
