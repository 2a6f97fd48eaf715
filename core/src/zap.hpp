// zap.hpp — kith's ZAP handler (ZeroMQ RFC 27): who may open a CURVE
// connection to a node's ROUTER. Private to kith::core.
//
// The decision, for a CURVE client key K presenting itself in domain "kith":
//   1. K == the cluster client key derived from this node's cookie
//      -> 200, User-Id "cluster".
//   2. otherwise the authorizer hook, if any, decides:
//        grant    -> 200, User-Id "grant:<label>"
//        stranger -> 200, User-Id "stranger:<z85 of K>"
//        revoked  -> 200, User-Id "grant:<label>" — a grant's key that was
//                    revoked or has expired. ZAP cannot say "revoked" to the
//                    client (libzmq 4.3.4 shows it only 300/400/500, and
//                    drops a 300 silently), so the connection is admitted and
//                    the transport answers its kith handshake with goodbye
//                    "revoked" (the authorizer is asked again there).
//        refuse   -> 400
//   3. no authorizer -> 400 ("unknown key").
// Anything malformed (wrong version, domain, mechanism, key size) -> 400.
// The handler fails closed: transport binds it before the ROUTER and sets
// ZMQ_ZAP_ENFORCE_DOMAIN, so a connection is never accepted unanswered.
//
// Thread-safety: a zap_handler is used by the transport's I/O thread only;
// set_authorizer may be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kith/keys.hpp"

namespace kith::detail {

// The ZAP domain of every kith ROUTER. Used on the wire (inside libzmq).
inline constexpr std::string_view zap_domain = "kith";

// What the authorizer hook answers for a key that is not the cluster key.
struct authz_decision {
    enum class kind { refuse, grant, stranger, revoked };
    kind verdict = kind::refuse;
    std::string label;   // grant: the grant's id / label (becomes "grant:<label>")
    std::string reason;  // refuse: why (logged and counted; never secret)

    static authz_decision refuse(std::string why = "unknown key") { return {kind::refuse, {}, std::move(why)}; }
    static authz_decision grant(std::string label) { return {kind::grant, std::move(label), {}}; }
    static authz_decision stranger() { return {kind::stranger, {}, {}}; }
    static authz_decision revoked(std::string label, std::string why) {
        return {kind::revoked, std::move(label), std::move(why)};
    }
};

// Called on the I/O thread during a handshake; must be quick and must not
// throw (an exception counts as refuse). `address` is the client's IP.
using authorizer = std::function<authz_decision(const public_key& client, std::string_view address)>;

// A parsed ZAP request.
struct zap_request {
    std::string version, request_id, domain, address, identity, mechanism;
    std::vector<std::string> credentials;
};

// Outcome of one request, reported to the transport for counting/logging.
struct zap_outcome {
    bool accepted = false;
    bool revoked = false;                // admitted only to be told "revoked" at its handshake
    std::string user_id;                 // when accepted
    std::string reason;                  // when refused
    std::string address;                 // client IP
    std::optional<public_key> client;    // when the request carried a CURVE key
};

// Decides one request (pure; unit-tested).
zap_outcome zap_decide(const zap_request& req, const public_key& cluster_key, const authorizer& authz);

class zap_handler {
public:
    explicit zap_handler(public_key cluster_key) : cluster_key_(cluster_key) {}

    void set_authorizer(authorizer a) {
        std::lock_guard lk(mu_);
        authz_ = std::make_shared<authorizer>(std::move(a));
    }

    // The authorizer's verdict on `client` now (refuse if there is none).
    // The transport asks again when a granted or stranger connection
    // handshakes, so a grant revoked since its ZAP round is caught.
    authz_decision check(const public_key& client, std::string_view address) {
        std::shared_ptr<authorizer> a;
        {
            std::lock_guard lk(mu_);
            a = authz_;
        }
        if (!a || !*a) return authz_decision::refuse();
        try {
            return (*a)(client, address);
        } catch (...) {
            return authz_decision::refuse("authorizer failed");
        }
    }

    // Receives one request from the REP socket `rep` (ready for reading),
    // answers it, and returns the outcome. nullopt if nothing could be read.
    std::optional<zap_outcome> handle(void* rep);

private:
    public_key cluster_key_;
    std::mutex mu_;
    std::shared_ptr<authorizer> authz_;
};

}  // namespace kith::detail
