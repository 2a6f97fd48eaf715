// zap.hpp — kith's ZAP handler (ZeroMQ RFC 27): who may open a CURVE
// connection to a node's ROUTER. Private to kith::core.
//
// The decision, for a CURVE client key K presenting itself in a kith domain
// ("kith/<n>": each node of a process has its own, see context.hpp):
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
// A members-only handler (the member port's, docs/security.md "The member
// port") stops after step 1: every other key -> 400 (member_port_refusal),
// and its authorizer is never asked.
// The handler fails closed: the transport registers its route before the
// ROUTER binds and sets ZMQ_ZAP_ENFORCE_DOMAIN, so a connection is never
// accepted unanswered.
//
// Thread-safety: zap_handler is thread-safe (decide runs on the process's
// ZAP thread, check on the transport's I/O thread, set_authorizer anywhere).
#pragma once

#include <zmq.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kith/keys.hpp"
#include "kith/log.hpp"

namespace kith::detail {

// The prefix of every kith ROUTER's ZAP domain ("kith/<n>"). Local to the
// process (libzmq passes it to the handler; it never goes on the wire).
inline constexpr std::string_view zap_domain = "kith";
bool is_kith_domain(std::string_view domain) noexcept;

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

// Called on the process's ZAP thread (address = the client's IP) and again on
// the transport's I/O thread at the kith handshake (address empty); should
// be quick. An exception counts as refuse ("authorizer failed: ...") and is
// logged through the node's sink.
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

// Parses the frames of one request (after any routing envelope); fewer than
// 6 frames leave it empty (refused as malformed). The caller bounds the
// number of frames (the ZAP thread keeps at most 20, envelope included).
zap_request zap_parse(const std::vector<std::string>& frames);
// Answers `req` with `out` on `sock`, after the routing frames `route` (status
// 200 with User-Id and the client key as metadata X-Kith-Key, or 400).
// False if ZeroMQ did not take the whole reply (the handshake then times out).
bool zap_reply(zmq::socket_ref sock, const std::vector<std::string>& route, const zap_request& req,
               const zap_outcome& out);

// Why the member port refused a key (logged and reported; never secret).
inline constexpr std::string_view member_port_refusal =
    "the member port admits only cluster members (the cookie's key): grantees and strangers dial the node's public "
    "endpoint, the one their grant file or the node's beacon names";

class zap_handler {
public:
    // `sink` and `node` say where a throwing authorizer is logged;
    // `members_only`: the member port's handler (the cluster key or 400).
    explicit zap_handler(public_key cluster_key, log_sink sink = {}, std::string node = {}, bool members_only = false)
        : cluster_key_(cluster_key), sink_(std::move(sink)), node_(std::move(node)), members_only_(members_only) {}

    void set_authorizer(authorizer a) {
        std::lock_guard lk(mu_);
        authz_ = std::make_shared<authorizer>(std::move(a));
    }

    // The authorizer's verdict on `client` now (refuse if there is none).
    // The transport asks again when a granted or stranger connection
    // handshakes, so a grant revoked since its ZAP round is caught.
    authz_decision check(const public_key& client, std::string_view address);

    // Decides one request with the current authorizer.
    zap_outcome decide(const zap_request& req);
    // The outcome when it needs no authorizer (malformed, the cluster key,
    // no authorizer set); nullopt when decide() must ask the authorizer.
    // Never blocks: the process's ZAP thread calls it for every node.
    std::optional<zap_outcome> decide_without_authorizer(const zap_request& req);

private:
    std::shared_ptr<authorizer> current() {
        std::lock_guard lk(mu_);
        return authz_;
    }
    // Runs `a`; an exception is logged and becomes a refusal.
    authz_decision ask(const authorizer& a, const public_key& client, std::string_view address);

    // The outcome for the member port: the cluster key or 400.
    zap_outcome decide_members_only(const zap_request& req) const;

    public_key cluster_key_;
    log_sink sink_;
    std::string node_;
    bool members_only_ = false;
    std::mutex mu_;
    std::shared_ptr<authorizer> authz_;
};

}  // namespace kith::detail
