// relay_client.cpp — the node side of a relay (kith/relay.hpp): register and
// answer "relay_open" by splicing the relay to this node's own listening
// endpoint; dial a registered node through a loopback forwarder that the
// node's own connect() dials. The work is relay_client::impl's
// (relay_client_impl.hpp); here the public methods.
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kith/relay.hpp"
#include "kith/service.hpp"
#include "relay_client_impl.hpp"

namespace kith {

relay_client::relay_client(node& n, std::string relay_node, std::nullptr_t, relay_client_options o)
    : p_(std::make_shared<impl>(n, std::move(relay_node), o)) {
    if (auto c = o.check(); !c.ok()) throw setup_error(c.err().detail);
    // Our agent: told when a session port pair of ours closes (repair), and
    // when registered, of sessions to open.
    p_->start_agent();
    // When the link to the relay comes back (the relay restarted, or the
    // network came back): register again (the relay has forgotten us) and
    // move links dialled through session ports to new ones. When it goes
    // down: stop our listener dialling its session ports.
    std::weak_ptr<impl> w = p_;
    p_->sub = n.subscribe_nodes([w](const node_event& ev) {
        auto self = w.lock();
        if (!self || ev.node != self->relay_node) return;
        const auto gen = self->relay_link_changed(ev.what == node_event::kind::up);
        if (!gen) return;
        if (ev.what == node_event::kind::down) self->drop_listeners();
        if (ev.what != node_event::kind::up || self->stop.load()) return;
        // Not on the kith thread that reports the event: these block.
        self->spawn_thread([self, g = *gen] { self->register_again(g); });
        self->spawn_thread([self] { self->move_port_links(); });
    });
    // The link as it is now, read after subscribing and under mu (the node
    // updates what info() reads before it reports the event): an event for
    // this state still to come (the first link's nodeup) is ignored, any
    // later one is news.
    std::lock_guard lk(p_->mu);
    p_->link_up = n.info(p_->relay_node).has_value();
}

relay_client::relay_client(node& n, std::string relay_node, bool listed, relay_client_options o)
    : relay_client(n, std::move(relay_node), nullptr, o) {
    p_->listed = listed;
    std::uint64_t gen = 0;
    {
        std::lock_guard lk(p_->mu);
        gen = p_->link_gen;
    }
    auto r = p_->register_now();
    if (!r.ok()) {
        n.send_exit(p_->agent, term("kill"));
        throw relay_refused("relay: " + p_->relay_node + " refused the registration: " + r.err().detail, r.err());
    }
    bool flapped = false;
    {
        std::lock_guard lk(p_->mu);
        p_->registered = true;  // registered again each time the relay comes back
        // The link went down (and maybe up) while we registered: that
        // registration may be gone with it, and the events' threads did not
        // register (not registered yet then).
        flapped = p_->link_gen != gen;
        if (flapped) {
            gen = p_->link_gen;
            p_->registration_error = p_->not_registered_yet(n.info(p_->relay_node).has_value());
        }
    }
    if (flapped) p_->spawn_thread([self = p_, gen] { self->register_again(gen); });
}

std::optional<error> relay_client::registration_error() const {
    std::lock_guard lk(p_->mu);
    return p_->registration_error;
}

relay_client::~relay_client() {
    if (p_->sub) p_->n.unsubscribe_nodes(p_->sub);
    bool reg = false;
    {
        std::lock_guard lk(p_->mu);
        reg = p_->registered;
        p_->registered = false;  // no register_again calls register from here on
        ++p_->link_gen;
        p_->stop.store(true);  // no new thread from here on
    }
    p_->cv.notify_all();  // a thread waiting to register or move a port link gives up
    if (reg) {
        // A register call in flight would land after our unregister.
        {
            std::unique_lock lk(p_->mu);
            p_->cv.wait_for(lk, std::chrono::seconds(6), [&] { return p_->registering == 0; });
        }
        (void)p_->n.call(p_->relay_node, "relay", "unregister", arr(), std::chrono::seconds(1));
    }
    if (!p_->agent.is_null()) p_->n.send_exit(p_->agent, term("kill"));
    p_->drop_listeners();
    // Closes every splice and forwarder (not under mu: an accept callback takes it).
    p_->loop.stop();
    std::unique_lock lk(p_->mu);
    p_->cv.wait_for(lk, std::chrono::seconds(10), [&] { return p_->threads == 0; });
}

namespace {
// A failed connect through the relay, said as the relay said it: a session
// refused for its limits is overloaded (libzmq only saw closed connections).
result<std::string> as_relay_said(result<std::string> r, int refusal, const std::string& relay,
                                  const std::string& target) {
    if (r.ok() || refusal != 0x04) return r;
    return error{errc::overloaded, "relay: " + relay + " refused the session to " + target +
                                       ": it or you have the most relayed sessions at once that the relay allows; "
                                       "try later"};
}
}  // namespace

result<std::string> relay_client::connect(const std::string& target, const public_key& key,
                                          std::chrono::milliseconds timeout) {
    p_->forget_given_up(target);
    if (auto port = p_->port_for(target, timeout)) {
        if (!port->ok()) return port->err();
        {
            std::lock_guard lk(p_->mu);
            p_->port_links[target] = impl::port_link{**port, key, std::nullopt};
        }
        // Half the time: a session port the network does not let through
        // (a firewall) leaves the other half for the forwarders.
        auto r = p_->n.connect(**port, key, timeout / 2);
        if (r.ok() || r.err().code != errc::timeout) return r;
        p_->forget_port(target, **port);
        timeout -= timeout / 2;
    }
    auto ep = p_->route(target, timeout);
    if (!ep.ok()) return ep.err();
    auto r = p_->n.connect(*ep, key, timeout);
    int refusal = -1;
    {
        std::lock_guard lk(p_->mu);
        refusal = p_->forwarders[target].refusal;
    }
    auto said = as_relay_said(std::move(r), refusal, p_->relay_node, target);
    // Told to try later: the node stops dialling the forwarder, which would
    // otherwise ask the full relay again every second in the background
    // (connect(grant) leaves an endpoint that timed out too).
    if (!said.ok() && refusal == 0x04) p_->n.disconnect(*ep);
    return said;
}

result<std::string> relay_client::connect(const grant_file& grant, std::chrono::milliseconds timeout) {
    p_->forget_given_up(grant.node);
    if (auto port = p_->port_for(grant.node, timeout)) {
        if (!port->ok()) return port->err();
        grant_file direct = grant;
        direct.endpoints = {**port};
        direct.relays.clear();
        {
            std::lock_guard lk(p_->mu);
            p_->port_links[grant.node] = impl::port_link{**port, grant.server_key, grant};
        }
        auto r = p_->n.connect(direct, timeout / 2);  // as above
        if (r.ok() || r.err().code != errc::timeout) return r;
        p_->forget_port(grant.node, **port);
        timeout -= timeout / 2;
    }
    auto ep = p_->route(grant.node, timeout);
    if (!ep.ok()) return ep.err();
    grant_file via = grant;
    via.endpoints = {*ep};
    via.relays.clear();
    auto r = p_->n.connect(via, timeout);
    std::lock_guard lk(p_->mu);
    return as_relay_said(std::move(r), p_->forwarders[grant.node].refusal, p_->relay_node, grant.node);
}

void relay_client::disconnect(const std::string& target) {
    std::vector<std::string> eps;
    {
        std::lock_guard lk(p_->mu);
        if (auto pl = p_->port_links.find(target); pl != p_->port_links.end()) {
            eps.push_back(pl->second.pd);
            p_->port_links.erase(pl);
        }
        p_->repair_pending.erase(target);  // a repair running stops at its next look
        p_->given_up.erase(target);
        if (auto f = p_->forwarders.find(target); f != p_->forwarders.end()) eps.push_back(f->second.endpoint);
    }
    for (auto& ep : eps) p_->n.disconnect(ep);
}

std::optional<error> relay_client::gave_up(const std::string& target) const {
    std::lock_guard lk(p_->mu);
    if (auto g = p_->given_up.find(target); g != p_->given_up.end()) return g->second;
    return std::nullopt;
}

result<term> relay_client::directory(std::chrono::milliseconds timeout) {
    return p_->n.call(p_->relay_node, "relay", "directory", arr(), timeout);
}

}  // namespace kith
