// relay_client_impl.hpp — relay_client::impl (kith/relay.hpp): the node
// side of a relay, its state and its threads; defined in
// relay_client_impl.cpp. Internal to services/src.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include <unistd.h>

#include "kith/relay.hpp"
#include "relay_loop.hpp"

namespace kith {

struct relay_client::impl : std::enable_shared_from_this<relay_client::impl> {
    node& n;
    std::string relay_node;
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::condition_variable cv;
    int threads = 0;      // connection-setup, registration and repair threads still running
    int setups = 0;       // of those, forwarder connection setups (at most kMaxSetups)
    int registering = 0;  // register calls of register_again in flight
    // Every spliced pair and forwarder listener: one epoll thread.
    detail::splice_loop loop;
    pid agent;
    struct forwarder {
        int listen_fd = -1;
        std::string endpoint;  // tcp://127.0.0.1:PORT
        std::string token, relay_ep;  // the current dial token and data plane (renewed by redial)
        int refusal = -1;  // the relay's SOCKS refusal of the last session asked for (-1: none)
    };
    std::uint64_t sub = 0;  // subscribe_nodes id (registrants: re-register when the relay is back)
    bool listed = false;
    std::map<std::string, forwarder> forwarders;  // by target name
    // Session ports our listener connects out to (registered side).
    std::set<std::string> listeners;
    // Links we dialled through a session port, by target: moved to the new
    // relay's ports when the relay comes back (its ports are gone).
    struct port_link {
        std::string pd;  // tcp://HOST:Pd
        public_key key;
        std::optional<grant_file> grant;
    };
    std::map<std::string, port_link> port_links;
    // Port links being moved (repair): the reason the relay gave last, still
    // to act on ("" when none), by target; a target is in `repairing` while
    // its thread runs.
    std::map<std::string, std::string> repair_pending;
    std::set<std::string> repairing;
    // Links repair gave up after repair_timeout, with why (gave_up()).
    std::map<std::string, error> given_up;
    bool registered = false;
    std::uint64_t link_gen = 0;  // relay_link_changed
    bool link_up = false;        // the link to the relay's node, as its events (and info()) said last
    std::optional<error> registration_error;  // relay_client::registration_error
    relay_client_options opts;

    impl(node& n_, std::string r, relay_client_options o) : n(n_), relay_node(std::move(r)), opts(o) {}

    // Runs `f` on its own thread, counted so that the destructor waits for it.
    // Nothing is started once the destructor began (stop): a node-event
    // callback may still run after unsubscribe_nodes returned.
    // `owned`: an fd the thread would close, closed here when it does not start.
    template <class F>
    void spawn_thread(F f, int owned = -1) {
        std::lock_guard lk(mu);
        if (stop.load()) {
            if (owned >= 0) ::close(owned);
            return;
        }
        ++threads;
        std::thread([self = shared_from_this(), f = std::move(f)]() mutable {
            f();
            std::lock_guard lk2(self->mu);
            --self->threads;
            self->cv.notify_all();
        }).detach();
    }

    // "relay_open" from the relay: connect back and splice to our own endpoint.
    void on_open(const std::string& session, const std::string& relay_ep);

    void start_agent();

    // Asks the relay for a dial token for `target`: {token, data-plane endpoint}.
    result<std::pair<std::string, std::string>> dial(const std::string& target, std::chrono::milliseconds timeout);

    // The relay's data-plane endpoint as this node can dial it: a relay
    // bound to 0.0.0.0 without an advertised address is reached at the host
    // of its control link (the address this node dialled).
    std::string data_endpoint(const std::string& ep);

    // One connection of the node to the forwarder for `target`: a relay
    // session, spliced. A token the relay no longer knows (it restarted, or
    // the token expired) is renewed with a fresh dial. While the relay
    // cannot take the session (down, the target not registered, a limit)
    // the connection is held and the relay asked again, backing off to
    // 1 s, until the node closes it (at most 5 min): a connection closed
    // at once would count against the link as a failed handshake.
    void forward(int c, const std::string& target);

    // The loopback endpoint whose connections become relay sessions to
    // `target`; opened (with a dial token) on first use.
    result<std::string> route(const std::string& target, std::chrono::milliseconds timeout);

    // Drops every session port our listener dials (the relay went down: its
    // ports are gone; a dialler gets new ones when it dials again).
    void drop_listeners();

    // A session port for `target`: "tcp://HOST:Pd", or the error to report;
    // nullopt: the relay has no session ports (use a forwarder).
    std::optional<result<std::string>> port_for(const std::string& target, std::chrono::milliseconds timeout);

    // A session port that did not answer: no more dialling it.
    void forget_port(const std::string& target, const std::string& pd);

    // The relay is back: each port link's pair is gone with it; move the
    // links to new ones (repair).
    void move_port_links();

    // The relay closed the pair of our link at `pd` (relay_port_closed):
    // "idle" (we were away from Pd for session_port_idle), "unreached" (the
    // node never reached Pa: a firewall) or "gone" (the node left the relay).
    void on_pd_closed(const std::string& pd, const std::string& why);

    void want_repair(const std::string& target, const std::string& why);

    // Sleeps `d` unless the client stops (or, with `gen`, the link to the
    // relay changes generation); false when it does.
    bool pause(std::chrono::milliseconds d, std::optional<std::uint64_t> gen = std::nullopt);

    // Connects the node to `target` at `ep` as the port link was made (its
    // grant, else its key); blocking, the result is not needed: libzmq keeps
    // dialling, and the relay tells us if this pair closes too.
    void link_to(const port_link& l, const std::string& ep);

    // Moves the link to `target` off a pair the relay closed, to a new pair
    // or (the node never reached its port: a firewall; or no ports for us)
    // to a forwarder, without the application doing anything: the new link
    // is made before the dead one is dropped, and a link that is up is never
    // dropped (no nodedown that the link itself did not cause). While the
    // relay cannot give a pair (the node has not registered again, the link
    // to the relay is down, a limit) it asks again, backing off to 5 s,
    // for opts.repair_timeout: then it leaves the link and says why
    // (given_up).
    void repair(const std::string& target);
    // repair's end after repair_timeout: leaves the link at `pd` (as
    // disconnect) and keeps why in given_up; `last`: the relay's last answer.
    void give_up(const std::string& target, const std::string& pd, const std::string& last);

    void forget_given_up(const std::string& target) {
        std::lock_guard lk(mu);
        given_up.erase(target);
    }

    // Registers (again: the relay forgets registrations when it restarts or
    // the link to it drops). Blocking.
    result<term> register_now() { return n.call(relay_node, "relay", "register", arr(agent, listed)); }

    // The link to the relay's node came up (`up`) or went down: a new
    // generation of it, returned; a registered client's registration is
    // lost until register_again succeeds (registration_error says so).
    // nullopt: no change (an event of the state already known).
    std::optional<std::uint64_t> relay_link_changed(bool up);
    // registration_error while the link is down (`up` false) or the
    // registration is being made again (nodedown).
    error not_registered_yet(bool up) const;
    // Registers again while the link of generation `gen` is up: the relay's
    // node may be up before its relay service is (no_such_service), or
    // answer with a limit; asks again, backing off to every 5 s, until it
    // registers, the link changes, or the client stops. Blocking.
    // `registering` counts its calls in flight.
    void register_again(std::uint64_t gen);
};

}  // namespace kith
