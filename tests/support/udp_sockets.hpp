// udp_sockets.hpp — UDP helpers of the test programs that send or capture
// beacons (kith_adversary's udpflood, kith_disc_node's forger).
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace kith_test {

// A UDP socket that may broadcast and share its port with the nodes on the
// same host (SO_REUSEADDR, SO_REUSEPORT), as kith's discovery does. -1 if
// socket() failed.
inline int shared_udp_socket() {
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    return fd;
}

// `addr` (dotted IPv4, or empty for any) and `port` as a sockaddr; false if
// `addr` is not an IPv4 address.
inline bool ipv4_address(const std::string& addr, int port, sockaddr_in& out) {
    out = sockaddr_in{};
    out.sin_family = AF_INET;
    out.sin_port = htons(static_cast<std::uint16_t>(port));
    return addr.empty() || ::inet_pton(AF_INET, addr.c_str(), &out.sin_addr) == 1;
}

}  // namespace kith_test
