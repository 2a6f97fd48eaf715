// interfaces.cpp — the one walk of getifaddrs(3) (kith/platform.hpp), used by
// the node's endpoint list and by discovery's broadcast destinations.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>

#include "kith/platform.hpp"

namespace kith::platform {

std::vector<ipv4_interface> ipv4_interfaces() {
    std::vector<ipv4_interface> out;
    ifaddrs* ifs = nullptr;
    if (::getifaddrs(&ifs) != 0) return out;
    for (ifaddrs* i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_name) continue;
        ipv4_interface f;
        f.name = i->ifa_name;
        f.address = reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr;
        f.up = (i->ifa_flags & IFF_UP) != 0;
        f.running = (i->ifa_flags & IFF_RUNNING) != 0;
        f.loopback = (i->ifa_flags & IFF_LOOPBACK) != 0;
        if ((i->ifa_flags & IFF_BROADCAST) && i->ifa_broadaddr)
            f.broadcast = reinterpret_cast<const sockaddr_in*>(i->ifa_broadaddr)->sin_addr.s_addr;
        out.push_back(std::move(f));
    }
    ::freeifaddrs(ifs);
    return out;
}

std::vector<std::string> interface_names() {
    std::vector<std::string> out;
    ifaddrs* ifs = nullptr;
    if (::getifaddrs(&ifs) != 0) return out;
    for (ifaddrs* i = ifs; i; i = i->ifa_next)
        if (i->ifa_name && std::find(out.begin(), out.end(), i->ifa_name) == out.end()) out.emplace_back(i->ifa_name);
    ::freeifaddrs(ifs);
    return out;
}

std::string ipv4_text(std::uint32_t address) {
    in_addr a{};
    a.s_addr = address;
    char buf[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &a, buf, sizeof buf);
    return buf;
}

}  // namespace kith::platform
