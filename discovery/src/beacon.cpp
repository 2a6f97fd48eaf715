// beacon.cpp — the discovery beacon codec. See beacon.hpp and
// docs/protocol.md, "Discovery beacon".
#include "beacon.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace kith::detail {

namespace {

constexpr std::uint8_t flag_cluster = 0x01;
constexpr std::uint8_t flag_member_port = 0x02;  // the cluster section ends with a member port (2 bytes)

void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// A name, service or endpoint: printable, no control characters (bytes
// < 0x20 and 0x7f); other bytes (UTF-8) pass.
bool clean_text(std::string_view s) {
    return std::none_of(s.begin(), s.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

bool service_ok(const std::string& s) { return !s.empty() && s.size() <= beacon_max_service_len && clean_text(s); }

// Appends a service list (count, then length-prefixed names), leaving out
// entries that are invalid or would push the beacon past `budget` bytes.
void put_services(std::vector<std::uint8_t>& out, const std::vector<std::string>& list, std::size_t budget) {
    const std::size_t count_at = out.size();
    out.push_back(0);
    std::uint8_t n = 0;
    for (auto& s : list) {
        if (n == beacon_max_services) break;
        if (!service_ok(s) || out.size() + 1 + s.size() > budget) continue;
        out.push_back(static_cast<std::uint8_t>(s.size()));
        out.insert(out.end(), s.begin(), s.end());
        ++n;
    }
    out[count_at] = n;
}

void hmac(const std::uint8_t* data, std::size_t len, const beacon_hmac_key& key, std::uint8_t* mac) {
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key.hmac.data(), key.hmac.size());
    crypto_auth_hmacsha256_update(&st, data, len);
    crypto_auth_hmacsha256_final(&st, mac);
}

// A bounds-checked reader over the datagram.
struct reader {
    std::span<const std::uint8_t> d;
    std::size_t at = 0;
    bool ok = true;
    bool need(std::size_t n) {
        if (!ok || d.size() - at < n) ok = false;
        return ok;
    }
    std::uint8_t u8() { return need(1) ? d[at++] : 0; }
    std::uint64_t uint(int bytes) {
        if (!need(static_cast<std::size_t>(bytes))) return 0;
        std::uint64_t v = 0;
        for (int i = 0; i < bytes; ++i) v = (v << 8) | d[at++];
        return v;
    }
    std::string text(std::size_t n) {
        if (!need(n)) return {};
        std::string s(reinterpret_cast<const char*>(d.data() + at), n);
        at += n;
        if (!clean_text(s)) ok = false;
        return s;
    }
    std::vector<std::string> services() {
        std::size_t n = u8();
        if (n > beacon_max_services) ok = false;
        std::vector<std::string> v;
        for (std::size_t i = 0; ok && i < n; ++i) {
            std::size_t len = u8();
            if (len == 0 || len > beacon_max_service_len) ok = false;
            auto s = text(len);
            if (ok) v.push_back(std::move(s));
        }
        return v;
    }
};

}  // namespace

beacon_hmac_key beacon_hmac_key::from_keys(const std::array<std::uint8_t, 32>& hmac,
                                           const std::array<std::uint8_t, 32>& id) {
    beacon_hmac_key k;
    k.hmac = hmac;
    std::copy_n(id.begin(), k.id.size(), k.id.begin());
    return k;
}

beacon_hmac_key beacon_hmac_key::from_cookie(std::string_view cookie) {
    auto h = derive_cookie_key(cookie, "beacon-hmac");
    auto i = derive_cookie_key(cookie, "beacon-cluster-id");
    auto k = from_keys(h, i);
    sodium_memzero(h.data(), h.size());
    return k;
}

std::vector<std::uint8_t> encode_beacon(const beacon& b, const beacon_hmac_key* key) {
    if (b.name.size() > 255 || b.endpoint.size() > 255 || !clean_text(b.name) || !clean_text(b.endpoint))
        return {};
    if (b.type != beacon_type::query && b.name.empty()) return {};
    if (b.cluster && !key) return {};
    std::vector<std::uint8_t> out;
    out.reserve(beacon_max_bytes);
    out.insert(out.end(), beacon_magic.begin(), beacon_magic.end());
    out.push_back(beacon_version);
    out.push_back(static_cast<std::uint8_t>(b.type));
    const bool member = b.cluster && b.member_port != 0;
    out.push_back(static_cast<std::uint8_t>((b.cluster ? flag_cluster : 0) | (member ? flag_member_port : 0)));
    out.push_back(static_cast<std::uint8_t>(b.name.size()));
    put_u64(out, b.timestamp_ms);
    put_u64(out, b.nonce);
    out.push_back(static_cast<std::uint8_t>(b.tcp_port >> 8));
    out.push_back(static_cast<std::uint8_t>(b.tcp_port));
    out.insert(out.end(), b.key.bytes.begin(), b.key.bytes.end());
    out.insert(out.end(), b.name.begin(), b.name.end());
    out.push_back(static_cast<std::uint8_t>(b.endpoint.size()));
    out.insert(out.end(), b.endpoint.begin(), b.endpoint.end());
    // Room left for the lists: the cluster section needs its count byte and
    // the HMAC after the public list.
    const std::size_t tail = b.cluster ? beacon_cluster_id_bytes + 1 + beacon_hmac_bytes + (member ? 2 : 0) : 0;
    put_services(out, b.public_services, beacon_max_bytes - tail);
    if (b.cluster) {
        out.insert(out.end(), key->id.begin(), key->id.end());
        put_services(out, b.services, beacon_max_bytes - beacon_hmac_bytes - (member ? 2 : 0));
        if (member) {
            out.push_back(static_cast<std::uint8_t>(b.member_port >> 8));
            out.push_back(static_cast<std::uint8_t>(b.member_port));
        }
        std::uint8_t mac[beacon_hmac_bytes];
        hmac(out.data(), out.size(), *key, mac);
        out.insert(out.end(), mac, mac + beacon_hmac_bytes);
    }
    if (b.type == beacon_type::query) out.resize(beacon_query_bytes, 0);
    return out;
}

std::optional<beacon_header> peek_cluster_header(std::span<const std::uint8_t> data) {
    if (data.size() < beacon_fixed_bytes || data.size() > beacon_max_bytes) return std::nullopt;
    if (!std::equal(beacon_magic.begin(), beacon_magic.end(), data.begin())) return std::nullopt;
    reader r{data, 4};
    if (r.u8() != beacon_version) return std::nullopt;
    const std::uint8_t type = r.u8();
    const std::uint8_t flags = r.u8();
    if (type < 1 || type > 3 || !(flags & flag_cluster)) return std::nullopt;
    const std::size_t name_len = r.u8();
    beacon_header h;
    h.type = static_cast<beacon_type>(type);
    h.timestamp_ms = r.uint(8);
    h.nonce = r.uint(8);
    r.uint(2);  // the tcp port
    std::memcpy(h.key.bytes.data(), data.data() + r.at, 32);  // within beacon_fixed_bytes
    r.at += 32;
    if (!r.need(name_len)) return std::nullopt;
    h.name = std::string_view(reinterpret_cast<const char*>(data.data() + r.at), name_len);
    return h;
}

decoded_beacon decode_beacon(std::span<const std::uint8_t> data, const beacon_hmac_key* key) {
    decoded_beacon out;
    if (data.size() < beacon_fixed_bytes || data.size() > beacon_max_bytes) return out;
    if (!std::equal(beacon_magic.begin(), beacon_magic.end(), data.begin())) return out;
    reader r{data, 4};
    beacon& b = out.b;
    if (r.u8() != beacon_version) return out;
    const std::uint8_t type = r.u8();
    if (type < 1 || type > 3) return out;
    b.type = static_cast<beacon_type>(type);
    const std::uint8_t flags = r.u8();
    if (flags & ~(flag_cluster | flag_member_port)) return out;
    if ((flags & flag_member_port) && !(flags & flag_cluster)) return out;
    const std::size_t name_len = r.u8();
    b.timestamp_ms = r.uint(8);
    b.nonce = r.uint(8);
    b.tcp_port = static_cast<std::uint16_t>(r.uint(2));
    if (r.need(32)) {
        std::memcpy(b.key.bytes.data(), data.data() + r.at, 32);
        r.at += 32;
    }
    if (name_len == 0 && b.type != beacon_type::query) return out;
    b.name = r.text(name_len);
    b.endpoint = r.text(r.u8());
    if (r.ok && !b.endpoint.empty() && b.endpoint.rfind("tcp://", 0) != 0) return out;
    b.public_services = r.services();
    b.cluster = flags & flag_cluster;
    std::size_t mac_at = 0;
    std::array<std::uint8_t, beacon_cluster_id_bytes> id{};
    if (b.cluster) {
        if (r.need(id.size())) {
            std::memcpy(id.data(), data.data() + r.at, id.size());
            r.at += id.size();
        }
        b.services = r.services();
        if (flags & flag_member_port) {
            b.member_port = static_cast<std::uint16_t>(r.uint(2));
            if (b.member_port == 0) r.ok = false;
        }
        mac_at = r.at;
        r.need(beacon_hmac_bytes);
        r.at += r.ok ? beacon_hmac_bytes : 0;
    }
    if (!r.ok) return out;
    // Nothing may follow, except the zero padding of a query (which must be
    // exactly beacon_query_bytes long).
    if (b.type == beacon_type::query) {
        if (data.size() != beacon_query_bytes) return out;
        if (std::any_of(data.begin() + static_cast<std::ptrdiff_t>(r.at), data.end(), [](auto c) { return c != 0; }))
            return out;
    } else if (r.at != data.size()) {
        return out;
    }
    if (!b.cluster) {
        out.status = beacon_status::ok_stranger;
        return out;
    }
    out.cluster_id = id;
    if (!key || id != key->id) {  // another cluster (or we have none): a stranger
        b.cluster = false;
        b.services.clear();
        b.member_port = 0;
        out.status = beacon_status::ok_stranger;
        return out;
    }
    std::uint8_t mac[beacon_hmac_bytes];
    hmac(data.data(), mac_at, *key, mac);
    out.status = sodium_memcmp(mac, data.data() + mac_at, beacon_hmac_bytes) == 0 ? beacon_status::ok_cluster
                                                                                 : beacon_status::bad_hmac;
    return out;
}

}  // namespace kith::detail
