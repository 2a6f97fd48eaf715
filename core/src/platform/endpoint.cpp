// endpoint.cpp — endpoints as people type them (kith/platform.hpp): the CLI's
// --listen, --advertise, --peer and relay addresses, and the Python
// binding's listen=, advertise=, connect(endpoint).
#include <algorithm>
#include <cctype>

#include "kith/platform.hpp"

namespace kith::platform {

std::string tcp_endpoint::zmq() const { return "tcp://" + host_port(); }

std::string tcp_endpoint::host_port() const { return port ? host + ":" + std::to_string(*port) : host; }

namespace {

std::string example(endpoint_use use) {
    return use == endpoint_use::listen
               ? "e.g. 127.0.0.1:0 (any free port of this machine's loopback) or 0.0.0.0:4370 (every interface)"
               : "e.g. 192.0.2.7:4370 or tcp://192.0.2.7:4370";
}

// A host name, an interface name or an IPv4 address (a name is resolved
// where it is used), or "*".
bool plausible_host(std::string_view h) {
    if (h == "*") return true;
    if (h.empty() || h.size() > 253) return false;
    for (unsigned char c : h)
        if (!std::isalnum(c) && c != '.' && c != '-' && c != '_') return false;
    return true;
}

}  // namespace

result<tcp_endpoint> parse_tcp_endpoint(std::string_view text, endpoint_use use) {
    const std::string quoted = "'" + std::string(text) + "'";
    auto bad = [&](const std::string& why) -> result<tcp_endpoint> {
        return error{errc::badarg, quoted + " " + why + "; " + example(use)};
    };
    std::string_view rest = text;
    if (rest.empty()) return bad("is empty: an endpoint is HOST:PORT or tcp://HOST:PORT");
    if (auto s = rest.find("://"); s != std::string_view::npos) {
        if (rest.substr(0, s) != "tcp") return bad("is not a TCP endpoint: kith speaks tcp:// only");
        rest.remove_prefix(s + 3);
    }
    if (!rest.empty() && (rest.front() == '[' || std::count(rest.begin(), rest.end(), ':') > 1))
        return bad("is an IPv6 address: kith listens and dials over IPv4 only; give an IPv4 address or a host name");
    tcp_endpoint e;
    const auto colon = rest.rfind(':');
    e.host = std::string(rest.substr(0, colon));
    if (colon == std::string_view::npos && use != endpoint_use::dial_port_optional)
        return bad("has no port: an endpoint is HOST:PORT or tcp://HOST:PORT");
    if (e.host.empty()) return bad("has no host (0.0.0.0 is every interface, 127.0.0.1 this machine only)");
    if (!plausible_host(e.host)) return bad("does not start with a host name or IPv4 address ('" + e.host + "')");
    if (e.host == "*" && use != endpoint_use::listen)
        return bad("names every interface ('*'), which is for listening only: give the address others dial");
    if (colon == std::string_view::npos) return e;
    const std::string_view p = rest.substr(colon + 1);
    const unsigned lo = use == endpoint_use::listen ? 0 : 1;
    unsigned long n = 0;
    bool digits = !p.empty() && p.size() <= 5;
    for (char c : p) digits = digits && std::isdigit(static_cast<unsigned char>(c));
    if (digits) n = std::stoul(std::string(p));
    if (!digits || n < lo || n > 65535)
        return bad("has no valid port: the port is a number from " +
                   std::string(lo == 0 ? "0 (any free port)" : "1") + " to 65535");
    e.port = static_cast<std::uint16_t>(n);
    return e;
}

}  // namespace kith::platform
