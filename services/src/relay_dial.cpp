// relay_dial.cpp — the relay client's blocking socket steps (relay_dial.hpp).
#include "relay_dial.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace kith::detail {

namespace {

using clock = std::chrono::steady_clock;

// "tcp://HOST:PORT" or "HOST:PORT" -> IPv4 address; "*" and 0.0.0.0 mean loopback.
bool to_addr(std::string ep, sockaddr_in& sa) {
    if (ep.rfind("tcp://", 0) == 0) ep = ep.substr(6);
    auto c = ep.rfind(':');
    if (c == std::string::npos) return false;
    std::string host = ep.substr(0, c);
    if (host == "*" || host == "0.0.0.0") host = "127.0.0.1";
    std::memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    int port = std::atoi(ep.c_str() + c + 1);
    if (port <= 0 || port > 65535) return false;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    return ::inet_pton(AF_INET, host.c_str(), &sa.sin_addr) == 1;
}

int remaining_ms(clock::time_point deadline) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
    return ms < 0 ? 0 : static_cast<int>(ms);
}

}  // namespace

// Connects to `ep` within the deadline; -1 on failure.
int tcp_connect(const std::string& ep, clock::time_point deadline) {
    sockaddr_in sa{};
    if (!to_addr(ep, sa)) return -1;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
        ::close(fd);
        return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t el = sizeof err;
    if (::poll(&p, 1, remaining_ms(deadline)) != 1 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 ||
        err != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

namespace {

bool write_all(int fd, const std::uint8_t* p, std::size_t n, clock::time_point deadline) {
    while (n > 0) {
        ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= static_cast<std::size_t>(w);
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR) return false;
        pollfd pf{fd, POLLOUT, 0};
        if (::poll(&pf, 1, remaining_ms(deadline)) != 1) return false;
    }
    return true;
}

bool read_exact(int fd, std::uint8_t* p, std::size_t n, clock::time_point deadline) {
    while (n > 0) {
        ssize_t r = ::recv(fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= static_cast<std::size_t>(r);
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR)) return false;
        pollfd pf{fd, POLLIN, 0};
        if (::poll(&pf, 1, remaining_ms(deadline)) != 1) return false;
    }
    return true;
}

// Opens a data-plane connection to the relay for `name` ("d-..." or
// "a-..."): SOCKS5 greeting, CONNECT, and the relay's reply, all within
// the deadline. -1 when the relay refuses, is down or too slow; `*refusal`
// is then the relay's SOCKS reply code (0x02: unknown or used token), or -1
// when it gave none.
}  // namespace

int relay_connect(const std::string& relay_ep, const std::string& name, clock::time_point deadline,
                  int* refusal) {
    if (refusal) *refusal = -1;
    if (name.size() > 255) return -1;
    int fd = tcp_connect(relay_ep, deadline);
    if (fd < 0) return -1;
    const std::uint8_t greet[3] = {5, 1, 0};
    std::uint8_t choice[2];
    std::vector<std::uint8_t> req{5, 1, 0, 3, static_cast<std::uint8_t>(name.size())};
    req.insert(req.end(), name.begin(), name.end());
    req.push_back(0);
    req.push_back(1);
    std::uint8_t reply[10] = {};
    bool ok = write_all(fd, greet, 3, deadline) && read_exact(fd, choice, 2, deadline) && choice[0] == 5 &&
              choice[1] == 0 && write_all(fd, req.data(), req.size(), deadline) &&
              read_exact(fd, reply, 10, deadline) && reply[0] == 5 && reply[1] == 0 && reply[3] == 1;
    if (!ok) {
        if (refusal && reply[0] == 5 && reply[1] != 0) *refusal = reply[1];
        ::close(fd);
        return -1;
    }
    return fd;
}


}  // namespace kith::detail
