// relay_dial.hpp — the relay client's blocking socket steps (relay_client.cpp):
// a TCP connect and a SOCKS5 request to the relay's data plane, each within
// a deadline. Thread-safe (no shared state); every fd returned is the
// caller's to close.
#pragma once

#include <chrono>
#include <string>

namespace kith::detail {

// Connects to "tcp://HOST:PORT" or "HOST:PORT" (IPv4; "*" and 0.0.0.0 mean
// loopback) within the deadline, TCP_NODELAY set; -1 on failure.
int tcp_connect(const std::string& ep, std::chrono::steady_clock::time_point deadline);
// Opens a data-plane connection to the relay for `name` ("d-..." or
// "a-..."): SOCKS5 greeting, CONNECT, and the relay's reply, all within
// the deadline. -1 when the relay refuses, is down or too slow; `*refusal`
// is then the relay's SOCKS reply code (0x02: unknown or used token), or -1
// when it gave none.
int relay_connect(const std::string& relay_ep, const std::string& name,
                  std::chrono::steady_clock::time_point deadline, int* refusal = nullptr);

}  // namespace kith::detail
