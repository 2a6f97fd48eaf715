// source_guard.cpp — per-source rationing of accepted connections and the
// socket filter that drops a blocked source's SYNs (source_guard.hpp).
#include "transport/source_guard.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace kith::detail {

namespace {

constexpr auto forgive_after = std::chrono::minutes(5);  // a source quiet this long starts again at 2 s

std::uint32_t word(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

sock_filter stmt(std::uint16_t code, std::uint32_t k) { return sock_filter{code, 0, 0, k}; }
sock_filter jump(std::uint16_t code, std::uint32_t k, std::uint8_t jt, std::uint8_t jf) {
    return sock_filter{code, jt, jf, k};
}

}  // namespace

std::string source_addr::text() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (!v6) {
        ::inet_ntop(AF_INET, bytes.data(), buf, sizeof buf);
        return buf;
    }
    std::uint8_t full[16] = {};
    std::memcpy(full, bytes.data(), 8);
    ::inet_ntop(AF_INET6, full, buf, sizeof buf);
    return std::string(buf) + "/64";
}

bool source_addr::loopback() const noexcept {
    if (!v6) return bytes[0] == 127;
    for (std::uint8_t b : bytes)
        if (b != 0) return false;
    return true;  // ::/64 holds ::1 (and nothing else a host can connect from)
}

std::size_t source_guard::default_memory_budget() {
    std::size_t optmem = 20480;
    if (FILE* f = std::fopen("/proc/sys/net/core/optmem_max", "r")) {
        unsigned long v = 0;
        if (std::fscanf(f, "%lu", &v) == 1 && v >= 4096) optmem = v;
        std::fclose(f);
    }
    return optmem / 2;
}

void source_guard::end_soonest() {
    if (blocks_.empty()) return;
    auto soonest = std::min_element(blocks_.begin(), blocks_.end(),
                                    [](const auto& a, const auto& b) { return a.second.until < b.second.until; });
    (soonest->first.v6 ? v6_blocks_ : v4_blocks_)--;
    if (history_.size() < max_tracked) history_[soonest->first] = block{{}, soonest->second.length, clock::now()};
    blocks_.erase(soonest);
}

std::optional<source_addr> source_addr::of(const sockaddr_storage& sa) {
    source_addr s;
    if (sa.ss_family == AF_INET) {
        const auto& a = reinterpret_cast<const sockaddr_in&>(sa);
        std::memcpy(s.bytes.data(), &a.sin_addr, 4);
        return s;
    }
    if (sa.ss_family == AF_INET6) {
        const auto& a = reinterpret_cast<const sockaddr_in6&>(sa);
        const std::uint8_t* b = a.sin6_addr.s6_addr;
        static constexpr std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(b, mapped, 12) == 0) {
            std::memcpy(s.bytes.data(), b + 12, 4);
            return s;
        }
        s.v6 = true;
        std::memcpy(s.bytes.data(), b, 8);
        return s;
    }
    return std::nullopt;
}

std::size_t source_addr_hash::operator()(const source_addr& s) const noexcept {
    std::uint64_t v = 0;
    std::memcpy(&v, s.bytes.data(), 8);
    v ^= s.v6 ? 0x9e3779b97f4a7c15ull : 0;
    v *= 0xff51afd7ed558ccdull;
    return static_cast<std::size_t>(v ^ (v >> 33));
}

bool source_guard::buckets::full(double rate, double burst, clock::time_point now) const {
    for (const bucket& b : of)
        if (b.tokens + rate * std::chrono::duration<double>(now - b.last).count() < burst) return false;
    return true;
}

std::optional<source_guard::block_info> source_guard::accepted(const source_addr& s, clock::time_point now,
                                                               seen how) {
    if (rate_ <= 0 || blocks_.count(s)) return std::nullopt;  // a SYN that came before the filter
    auto it = buckets_.find(s);
    if (it == buckets_.end()) {
        // Full: any one is forgotten (it starts again with a full bucket:
        // at worst a source that shares the table with 8,191 others gets its
        // burst again). Buckets full again are swept by expire(), so this
        // stays O(1) per connection.
        if (buckets_.size() >= max_tracked) buckets_.erase(buckets_.begin());
        it = buckets_.emplace(s, buckets{{bucket{burst_, now}, bucket{burst_, now}}}).first;
    }
    bucket& b = it->second.of[how == seen::at_zap ? 1 : 0];
    b.tokens = std::min(burst_, b.tokens + rate_ * std::chrono::duration<double>(now - b.last).count());
    b.last = now;
    if (b.tokens >= 1) {
        b.tokens -= 1;
        return std::nullopt;
    }
    // Over budget: blocked, twice as long as last time if that was recent.
    std::chrono::milliseconds length = first_block;
    if (auto h = history_.find(s); h != history_.end()) {
        if (now - h->second.last_end < forgive_after)
            length = std::min<std::chrono::milliseconds>(h->second.length * 2, longest_block);
        history_.erase(h);
    }
    // The filter is full, or would not fit the kernel's option memory: the
    // blocks that end first make room.
    while (!blocks_.empty() && (blocks_.size() >= max_blocked ||
                                cost(v4_blocks_ + !s.v6, v6_blocks_ + s.v6) > budget_))
        end_soonest();
    if (cost(!s.v6, s.v6) > budget_) return std::nullopt;
    blocks_[s] = block{now + length, length, {}};
    (s.v6 ? v6_blocks_ : v4_blocks_)++;
    return block_info{s, length};
}

bool source_guard::expire(clock::time_point now) {
    bool changed = false;
    for (auto it = blocks_.begin(); it != blocks_.end();) {
        if (it->second.until > now) {
            ++it;
            continue;
        }
        if (history_.size() < max_tracked) history_[it->first] = block{{}, it->second.length, now};
        (it->first.v6 ? v6_blocks_ : v4_blocks_)--;
        it = blocks_.erase(it);
        changed = true;
    }
    for (auto it = history_.begin(); it != history_.end();)
        it = now - it->second.last_end >= forgive_after ? history_.erase(it) : std::next(it);
    for (auto it = buckets_.begin(); it != buckets_.end();)
        it = it->second.full(rate_, burst_, now) && !blocks_.count(it->first) ? buckets_.erase(it) : std::next(it);
    return changed;
}

std::vector<sock_filter> source_guard::program() const {
    std::vector<sock_filter> p;
    if (blocks_.empty()) return p;
    constexpr std::uint32_t pass = 0xffffffffu, drop = 0;
    const std::uint32_t net = static_cast<std::uint32_t>(SKF_NET_OFF);
    std::vector<const source_addr*> v4, v6;
    for (const auto& [s, b] : blocks_) (s.v6 ? v6 : v4).push_back(&s);
    // A TCP socket's filter sees the packet from its TCP header on (offset
    // 0; the IP header at SKF_NET_OFF). Only a SYN without ACK (a new
    // connection) is looked at; everything else passes after 4 instructions.
    p.push_back(stmt(BPF_LD | BPF_B | BPF_ABS, 13));        // TCP flags
    p.push_back(stmt(BPF_ALU | BPF_AND | BPF_K, 0x12));    // SYN | ACK
    p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 0x02, 1, 0));
    p.push_back(stmt(BPF_RET | BPF_K, pass));
    p.push_back(stmt(BPF_LD | BPF_B | BPF_ABS, net));       // IP version
    p.push_back(stmt(BPF_ALU | BPF_RSH | BPF_K, 4));
    // Each list is jumped to with BPF_JA (a 32-bit offset): a conditional
    // jump reaches only 255 instructions.
    const std::uint32_t v4_len = v4.empty() ? 1 : 2 + 2 * static_cast<std::uint32_t>(v4.size());
    p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 4, 0, 1));
    p.push_back(stmt(BPF_JMP | BPF_JA, 3));                  // to the IPv4 list
    p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 1, 0));
    p.push_back(stmt(BPF_RET | BPF_K, pass));
    p.push_back(stmt(BPF_JMP | BPF_JA, v4_len));             // over the IPv4 list to the IPv6 one
    // IPv4: the source address at 12.
    if (v4.empty()) {
        p.push_back(stmt(BPF_RET | BPF_K, pass));
    } else {
        p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, net + 12));
        for (const source_addr* s : v4) {
            p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, word(s->bytes.data()), 0, 1));
            p.push_back(stmt(BPF_RET | BPF_K, drop));
        }
        p.push_back(stmt(BPF_RET | BPF_K, pass));
    }
    // IPv6: the source's /64 at 8, loaded once into scratch memory M[0]
    // and M[1] (a load from the packet at a negative offset is a helper
    // call in the kernel's translation, a load from M is not).
    if (!v6.empty()) {
        p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, net + 8));
        p.push_back(stmt(BPF_ST, 0));
        p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, net + 12));
        p.push_back(stmt(BPF_ST, 1));
    }
    for (const source_addr* s : v6) {
        p.push_back(stmt(BPF_LD | BPF_MEM, 0));
        p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, word(s->bytes.data()), 0, 3));
        p.push_back(stmt(BPF_LD | BPF_MEM, 1));
        p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, word(s->bytes.data() + 4), 0, 1));
        p.push_back(stmt(BPF_RET | BPF_K, drop));
    }
    p.push_back(stmt(BPF_RET | BPF_K, pass));
    return p;
}

std::string install_socket_filter(int fd, const std::vector<sock_filter>& prog) {
    // The old program first: while both are attached the kernel charges
    // both to the socket's option memory, and a replacement that does not
    // fit would fail and leave the old one (for a moment nothing is
    // blocked instead).
    int unused = 0;
    if (::setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof unused) != 0 && errno != ENOENT)
        return std::string("SO_DETACH_FILTER: ") + std::strerror(errno);
    if (prog.empty()) return {};
    sock_fprog fp{static_cast<unsigned short>(prog.size()), const_cast<sock_filter*>(prog.data())};
    if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp) != 0)
        return std::string("SO_ATTACH_FILTER: ") + std::strerror(errno);
    return {};
}

}  // namespace kith::detail
