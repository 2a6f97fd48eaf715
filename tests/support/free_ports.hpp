// free_ports.hpp — ports for tests that bind, let go, and bind again (a
// relay or a node restarted on its old address): `count` adjacent TCP ports
// on 127.0.0.1 that were free a moment ago, below Linux's ephemeral range
// (32768-60999). A port bound with port 0 is in that range, and while the
// test is away from it any connection on the machine (the nodes' own
// redials, a parallel test's flood) can take it as its local port: the
// restart then fails to bind (seen 1 run in 6 under load). The search
// starts at an offset from the pid, so that tests running in parallel
// rarely probe the same ports, and goes on from there in later calls, so
// that two calls never return the same port (nothing is bound between).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>

namespace kith_test {

inline int free_ports_below_ephemeral(int count = 1) {
    static std::atomic<int> cursor{static_cast<int>(::getpid() % 1400) * 16};
    for (int i = 0; i < 400; ++i) {
        const int base = 10000 + cursor.fetch_add(count) % (32768 - 10000 - count);
        bool ok = true;
        for (int p = base; ok && p < base + count; ++p) {
            int fd = ::socket(AF_INET, SOCK_STREAM, 0);
            int one = 1;
            ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            sockaddr_in sa{};
            sa.sin_family = AF_INET;
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            sa.sin_port = htons(static_cast<std::uint16_t>(p));
            ok = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
            ::close(fd);
        }
        if (ok) return base;
    }
    throw std::runtime_error("no free ports below 32768 on 127.0.0.1 after 400 tries");
}

}  // namespace kith_test
