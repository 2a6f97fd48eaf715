// zap.cpp — the ZAP handler (see zap.hpp).
#include "transport/zap.hpp"

#include <sodium.h>
#include <zmq.h>

#include <cstring>

namespace kith::detail {

bool is_kith_domain(std::string_view domain) noexcept {
    return domain.substr(0, zap_domain.size()) == zap_domain &&
           (domain.size() == zap_domain.size() || domain[zap_domain.size()] == '/');
}

zap_outcome zap_decide(const zap_request& req, const public_key& cluster_key, const authorizer& authz) {
    zap_outcome out;
    out.address = req.address;
    if (req.version != "1.0") {
        out.reason = "malformed ZAP request (version)";
        return out;
    }
    if (!is_kith_domain(req.domain)) {
        out.reason = "wrong ZAP domain";
        return out;
    }
    if (req.mechanism != "CURVE" || req.credentials.size() != 1 || req.credentials[0].size() != 32) {
        out.reason = "not a CURVE client";
        return out;
    }
    public_key k;
    std::memcpy(k.bytes.data(), req.credentials[0].data(), 32);
    out.client = k;
    if (sodium_memcmp(k.bytes.data(), cluster_key.bytes.data(), 32) == 0) {
        out.accepted = true;
        out.user_id = "cluster";
        return out;
    }
    if (!authz) {
        out.reason = "unknown key (wrong cookie, or no grant for this key)";
        return out;
    }
    authz_decision d;
    try {
        d = authz(k, req.address);
    } catch (...) {
        d = authz_decision::refuse("authorizer failed");
    }
    switch (d.verdict) {
    case authz_decision::kind::grant:
        out.accepted = true;
        out.user_id = "grant:" + d.label;
        break;
    case authz_decision::kind::stranger:
        out.accepted = true;
        out.user_id = "stranger:" + k.z85();
        break;
    case authz_decision::kind::revoked:
        out.accepted = true;
        out.revoked = true;
        out.user_id = "grant:" + d.label;
        out.reason = d.reason.empty() ? "grant revoked" : d.reason;
        break;
    case authz_decision::kind::refuse:
        out.reason = d.reason.empty() ? "refused by authorizer" : d.reason;
        break;
    }
    return out;
}

namespace {

bool send_part(void* s, std::string_view part, bool more) {
    return zmq_send(s, part.data(), part.size(), more ? ZMQ_SNDMORE : 0) >= 0;
}

}  // namespace

zap_request zap_parse(const std::vector<std::string>& parts) {
    zap_request req;
    if (parts.size() >= 6) {
        req.version = parts[0];
        req.request_id = parts[1];
        req.domain = parts[2];
        req.address = parts[3];
        req.identity = parts[4];
        req.mechanism = parts[5];
        req.credentials.assign(parts.begin() + 6, parts.end());
    }
    return req;
}

zap_outcome zap_handler::decide(const zap_request& req) {
    std::shared_ptr<authorizer> a;
    {
        std::lock_guard lk(mu_);
        a = authz_;
    }
    static const authorizer none;
    return zap_decide(req, cluster_key_, a ? *a : none);
}

void zap_reply(void* rep, const std::vector<std::string>& route, const zap_request& req, const zap_outcome& out) {
    for (const std::string& r : route) send_part(rep, r, true);
    // Reply: version, request id, status code, status text, user id, metadata.
    send_part(rep, "1.0", true);
    send_part(rep, req.request_id, true);
    send_part(rep, out.accepted ? "200" : "400", true);
    send_part(rep, out.accepted ? "OK" : "refused", true);
    send_part(rep, out.accepted ? out.user_id : std::string_view{}, true);
    // Metadata (ZMTP property list): the client key in Z85 as X-Kith-Key, so
    // that every message of the connection names its key beside its User-Id.
    std::string meta;
    if (out.accepted && out.client) {
        static constexpr std::string_view name = "X-Kith-Key";
        std::string value = out.client->z85();
        meta.push_back(static_cast<char>(name.size()));
        meta.append(name);
        const auto n = static_cast<std::uint32_t>(value.size());
        meta.push_back(static_cast<char>(n >> 24));
        meta.push_back(static_cast<char>(n >> 16));
        meta.push_back(static_cast<char>(n >> 8));
        meta.push_back(static_cast<char>(n));
        meta.append(value);
    }
    send_part(rep, meta, false);
}

}  // namespace kith::detail
