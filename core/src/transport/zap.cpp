// zap.cpp — the ZAP handler (see zap.hpp).
#include "transport/zap.hpp"

#include <sodium.h>

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
    } catch (const std::exception& e) {
        d = authz_decision::refuse(std::string("authorizer failed: ") + e.what());
    } catch (...) {
        d = authz_decision::refuse("authorizer failed (non-standard exception)");
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

bool send_part(zmq::socket_ref s, std::string_view part, bool more) {
    // A ROUTER drops a reply to a requester that is gone: only a full pipe
    // (EAGAIN) or a closing context fails here.
    try {
        return s.send(zmq::buffer(part.data(), part.size()),
                      (more ? zmq::send_flags::sndmore : zmq::send_flags::none) | zmq::send_flags::dontwait)
            .has_value();
    } catch (const zmq::error_t&) {
        return false;
    }
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

authz_decision zap_handler::ask(const authorizer& a, const public_key& client, std::string_view address) {
    std::string why;
    try {
        return a(client, address);
    } catch (const std::exception& e) {
        why = std::string("authorizer failed: ") + e.what();
    } catch (...) {
        why = "authorizer failed (non-standard exception)";
    }
    log_record r;
    r.level = log_level::error;
    r.source = "transport";
    std::string text = why + " for key " + client.fingerprint() + "; the key is refused (fix the authorizer)";
    r.text = text;
    r.node = node_;
    log_to(sink_, r);
    return authz_decision::refuse(std::move(why));
}

zap_outcome zap_handler::decide_members_only(const zap_request& req) const {
    static const authorizer none;
    zap_outcome out = zap_decide(req, cluster_key_, none);
    if (!out.accepted && out.client) out.reason = std::string(member_port_refusal);
    return out;
}

authz_decision zap_handler::check(const public_key& client, std::string_view address) {
    if (members_only_) return authz_decision::refuse(std::string(member_port_refusal));
    std::shared_ptr<authorizer> a = current();
    if (!a || !*a) return authz_decision::refuse();
    return ask(*a, client, address);
}

std::optional<zap_outcome> zap_handler::decide_without_authorizer(const zap_request& req) {
    if (members_only_) return decide_members_only(req);
    std::shared_ptr<authorizer> a = current();
    static const authorizer none;
    zap_outcome out = zap_decide(req, cluster_key_, none);
    // Without an authorizer, a CURVE key other than the cluster key is
    // refused as unknown; with one, that key is the authorizer's to decide.
    if (!out.accepted && out.client && a && *a) return std::nullopt;
    return out;
}

zap_outcome zap_handler::decide(const zap_request& req) {
    if (members_only_) return decide_members_only(req);
    std::shared_ptr<authorizer> a = current();
    static const authorizer none;
    if (!a || !*a) return zap_decide(req, cluster_key_, none);
    return zap_decide(req, cluster_key_, [&](const public_key& k, std::string_view addr) { return ask(*a, k, addr); });
}

bool zap_reply(zmq::socket_ref rep, const std::vector<std::string>& route, const zap_request& req,
               const zap_outcome& out) {
    bool ok = true;
    for (const std::string& r : route) ok = ok && send_part(rep, r, true);
    // Reply: version, request id, status code, status text, user id, metadata.
    ok = ok && send_part(rep, "1.0", true);
    ok = ok && send_part(rep, req.request_id, true);
    ok = ok && send_part(rep, out.accepted ? "200" : "400", true);
    ok = ok && send_part(rep, out.accepted ? "OK" : "refused", true);
    ok = ok && send_part(rep, out.accepted ? out.user_id : std::string_view{}, true);
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
    // This ROUTER is not ROUTER_MANDATORY: a reply it cannot route or whose
    // pipe is full is dropped whole (that handshake times out); a send fails
    // only when the context is ending.
    return ok && send_part(rep, meta, false);
}

}  // namespace kith::detail
