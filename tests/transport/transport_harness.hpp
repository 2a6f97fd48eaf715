// Test harness for the transport: a transport plus a recorder of its events,
// with waits that have deadlines (never fixed sleeps).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "transport/transport.hpp"

namespace kt {

using namespace std::chrono_literals;
using kith::detail::peer_auth;
using kith::detail::peer_info;
using kith::detail::refusal;
using kith::detail::transport;
using kith::detail::transport_callbacks;
using kith::detail::transport_options;

struct recorder {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::pair<std::string, peer_info>> ups;
    std::vector<std::pair<std::string, std::string>> downs;
    std::vector<refusal> refusals;
    std::vector<std::int64_t> values;      // ints of env_send messages, in arrival order
    std::vector<peer_auth> auths;          // auth of each on_envelopes batch
    std::vector<std::string> log;          // "up:<peer>", "down:<peer>:<reason>", "env:<peer>"
    int decode_errors = 0;

    transport_callbacks callbacks() {
        transport_callbacks c;
        c.on_peer_up = [this](const std::string& p, const peer_info& i) {
            std::lock_guard lk(mu);
            ups.emplace_back(p, i);
            log.push_back("up:" + p);
            cv.notify_all();
        };
        c.on_peer_down = [this](const std::string& p, const std::string& r) {
            std::lock_guard lk(mu);
            downs.emplace_back(p, r);
            log.push_back("down:" + p + ":" + r);
            cv.notify_all();
        };
        c.on_peer_refused = [this](const refusal& r) {
            std::lock_guard lk(mu);
            refusals.push_back(r);
            cv.notify_all();
        };
        c.on_envelopes = [this](const std::string& p, const peer_auth& a, std::vector<kith::envelope>&& es) {
            std::lock_guard lk(mu);
            auths.push_back(a);
            if (log.empty() || log.back() != "env:" + p) log.push_back("env:" + p);
            for (auto& e : es)
                if (auto* s = std::get_if<kith::env_send>(&e))
                    if (auto v = s->msg.as_int()) values.push_back(*v);
            cv.notify_all();
        };
        c.on_decode_error = [this](const std::string&, const kith::error&) {
            std::lock_guard lk(mu);
            decode_errors++;
            cv.notify_all();
        };
        return c;
    }

    // Waits until pred() (called under the lock) holds, at most `d`.
    template <class P>
    bool wait(P pred, std::chrono::milliseconds d = 10s) {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, d, pred);
    }
};

struct test_node {
    recorder rec;
    std::unique_ptr<transport> t;

    explicit test_node(const std::string& name, const std::string& cookie,
                       const std::function<void(transport_options&)>& tweak = {},
                       std::optional<kith::keypair> keys = std::nullopt) {
        transport_options o;
        o.node_name = name;
        o.cookie = cookie;
        o.node_keys = keys ? *keys : kith::keypair::generate();
        if (tweak) tweak(o);
        t = std::make_unique<transport>(std::move(o), rec.callbacks());
        t->start();
    }
    ~test_node() { t->stop(); }
    void connect_to(test_node& other) { t->connect(other.t->endpoint(), other.t->key()); }
};

// `owner` admits `key` as the grantee `label` and refuses every other key
// that is not a cluster member's.
inline void admit_grantee(transport& owner, const kith::public_key& key, const std::string& label) {
    owner.set_authorizer([key, label](const kith::public_key& k, std::string_view) {
        return k == key ? kith::detail::authz_decision::grant(label) : kith::detail::authz_decision::refuse("no grant");
    });
}

// Two nodes connected: `from` dials `to` at `ep` (as a member, or with
// `creds`: a grant it holds) and both see one more session up (`to_rec`:
// `to`'s recorder, if it has one). False at the deadline.
inline bool dial_up(test_node& from, transport& to, const std::string& ep, recorder* to_rec = nullptr,
                    kith::detail::link_credentials creds = {}) {
    std::size_t mine = 0, theirs = 0;
    {
        std::lock_guard lk(from.rec.mu);
        mine = from.rec.ups.size();
    }
    if (to_rec) {
        std::lock_guard lk(to_rec->mu);
        theirs = to_rec->ups.size();
    }
    from.t->connect(ep, to.key(), std::move(creds));
    return from.rec.wait([&] { return from.rec.ups.size() > mine; }) &&
           (!to_rec || to_rec->wait([&] { return to_rec->ups.size() > theirs; }));
}

// `holder` connected to `owner`'s public port as the grantee `label` of
// `grant` (owner's authorizer: admit_grantee).
inline bool dial_granted(test_node& holder, test_node& owner, const kith::keypair& grant, const std::string& label) {
    admit_grantee(*owner.t, grant.pub, label);
    return dial_up(holder, *owner.t, owner.t->bound_endpoint(), &owner.rec, kith::detail::link_credentials{grant});
}

inline kith::envelope send_int(std::int64_t v) { return kith::env_send{kith::pid{"x@y", 1}, kith::term(v)}; }

// A tiny read budget for all non-members of a node (64 KiB/s), none per key
// (a test_node tweak): a flood_past_budget pauses its public port.
inline void tiny_guests_budget(transport_options& o) {
    o.guest_bytes_per_s = 0;
    o.guests_bytes_per_s = 64u << 10;
    o.guests_burst_bytes = 64u << 10;
}

// `from`, connected to `to` with a grant, sends it 2 MiB in 8 KiB envelopes
// (32 s of a tiny_guests_budget); true once `to`'s public port has paused
// (within 10 s).
inline bool flood_past_budget(test_node& from, test_node& to, const std::string& to_name) {
    const std::string blob(8000, 'x');
    for (int i = 0; i < 256; ++i) (void)from.t->post(to_name, kith::env_send{kith::pid{"x@y", 1}, kith::term(blob)});
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (to.t->stats().public_pauses == 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling a counter, with a deadline
    return to.t->stats().public_pauses > 0;
}

}  // namespace kt
