// kith/relay.hpp — a relay: two nodes that cannot dial each other (both
// behind home routers) talk through a third that both can reach.
//
// Design (docs/relay.md has the argument): the relay splices TCP byte
// streams and never takes part in CurveZMQ. Both nodes connect OUT to the
// relay's data plane, a subset of SOCKS5 (RFC 1928: no authentication,
// CONNECT to a domain name):
//   - a dialler's relay_client opens a loopback forwarder; the node's own
//     connect() dials it (CURVE client, the target's key as the server key)
//     and the forwarder connects to the relay asking for "d-<dial token>.kith";
//   - the relay tells the registered target over its control link; the
//     target's relay_client connects to the relay asking for
//     "a-<session token>.kith" and to its own node's listening endpoint;
//   - the relay joins the two streams byte for byte.
// (libzmq speaks SOCKS5 itself, ZMQ_SOCKS_PROXY, but libzmq 4.3.4 — Debian
// 12's — aborts the process when a socket whose SOCKS connection failed is
// closed, e.g. after the relay was down: kith's own forwarders keep every
// SOCKS failure out of libzmq.)
// The CURVE handshake, ZAP, the membership proof, grants and every envelope
// then run end to end exactly as on a direct link: the relay sees
// ciphertext, cannot forge or replay a frame (CURVE's nonces and MACs), and
// a relay that changes a byte causes a failed connection, never a delivered
// message. What the relay does learn: who talks to whom, when and how much.
//
// The control plane is the kith service "relay" on the relay's node, under
// the same grant machinery as any service (a "relay grant" is a grant for
// service "relay"; cluster members may always use it; making a function
// public lets strangers use it):
//   register(Agent, Listed) -> Endpoint
//       makes the caller's node reachable through this relay under the node
//       name its handshake claimed (kith binds that name to the caller's
//       key: nobody can register another node's name). Agent: a pid on the
//       caller's node that receives ["relay_open", SessionHex, Endpoint]
//       when someone dials; it then connects its ROUTER as above. Listed:
//       whether directory() shows it. Errors: unauthorized (the name is
//       registered here by another key), overloaded (max_registrations),
//       bad_args.
//   dial_port(Name) -> [TokenHex, "HOST:Pd", KeyZ85]
//       as dial, with a port per side for the session (relay_options::
//       session_ports): the dialler's node connects straight to Pd, and
//       Name's agent receives ["relay_port", SessionHex, "HOST:Pa"], on which
//       its node's listening socket connects out to Pa
//       (node::connect_listener); the relay splices the two. One userspace
//       hop instead of three; everything end to end as with dial. Errors: as
//       dial; overloaded when Name or the caller is at its session limit;
//       bad_args when the relay has no session ports (or none free): use
//       dial. relay_client uses dial_port first and falls back to dial.
//   dial_port_agent(Name, Agent) -> as dial_port
//       and Agent (a pid of the caller's own node, else bad_args) gets
//       ["relay_port_closed", SessionHex, "HOST:Pd", Reason] when the pair
//       closes, Reason "idle", "unreached" or "gone" (relay_options::
//       session_port_idle; Name's registration ended): relay_client moves a
//       link it still wants to a new pair or the forwarders.
//   dial(Name) -> [TokenHex, Endpoint, KeyZ85]   (KeyZ85: as directory())
//       a token for connecting to the registered node Name, bound to the
//       caller's key, valid for token_lifetime and reusable for reconnects
//       (one session at a time per token). A caller that still holds a live
//       token for Name gets that token again (its expiry renewed), so
//       redialling never piles up tokens. Errors: noproc (not registered
//       here), overloaded (the caller holds max_tokens_per_dialler).
//   directory() -> [[Name, KeyZ85, Fingerprint, [Service...], How]...]
//       the listed nodes. How: "member" or "stranger": KeyZ85 is the node's
//       own key (the one its handshake with the relay proved, which is also
//       the key a dialler's end-to-end handshake demands); "grant": the node
//       registered with a relay grant, whose key the relay's owner issued
//       and nobody dialling the node checks: KeyZ85 and Fingerprint are ""
//       (showing it would mislead, and would link the names that share one
//       grant). The relay vouches for names and keys only as far as it is
//       trusted: diallers check the key from the node's own grant file.
//   unregister() -> true
//       ends the caller's own registration (a name another key registered
//       is left alone) and closes the port pairs to it, told as when its
//       node disconnects (Reason "gone"); forwarder sessions go on.
// A registration ends when its node disconnects from the relay; the
// sessions of a node that disconnects (registrant or dialler) are closed.
//
// Thread-safety: the relay object's methods may be called from any thread.
// Ownership: it hosts the service on `n` and runs one data-plane thread;
// the destructor closes every spliced connection and removes the service
// (sessions end; the nodes see the link drop and reconnect elsewhere).
// `n` must outlive the relay.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string_view>
#include <vector>
#include <memory>
#include <optional>
#include <string>

#include "kith/grants.hpp"
#include "kith/node.hpp"

namespace kith {

struct relay_options {
    // Where the data plane listens, "HOST:PORT" (IPv4): "0.0.0.0:4380", or
    // "127.0.0.1:0" for any free port on loopback.
    std::string listen = "0.0.0.0:4380";
    // What nodes should connect to when it differs from the bound address
    // (a relay behind a port forward, or on a machine whose public address
    // is not on an interface): "IPV4:PORT", or "IPV4" alone for that
    // address with the bound port. Empty: the bound address (for 0.0.0.0,
    // nodes use the host they dialled for the relay's node). The relay
    // throws setup_error for anything else (a host name is not resolved).
    std::string advertise;
    // Data-plane TCP connections held at once (spliced, waiting or still in
    // the SOCKS handshake). Beyond it new connections are closed at once.
    std::size_t max_connections = 1024;
    // Spliced sessions at once to one registrant (all the names one key
    // registers together), and from one dialler (one node, or all the node
    // names dialling with one relay grant).
    std::size_t max_sessions_per_node = 16;
    std::size_t max_sessions_per_dialler = 8;
    // Registrations and live dial tokens.
    std::size_t max_registrations = 4096;
    // Name bindings: the key that registered a node name first keeps it,
    // also while away and across restarts of the relay (saved in the node's
    // key directory, <key dir>/relay-names, before register answers). At
    // most max_registrations names; when full, a new name takes the place
    // of the binding unused longest only if that is older than this, else
    // register answers overloaded.
    std::chrono::hours name_lifetime{24 * 90};
    // Node names one key may bind here (a node registering under a new name
    // binds it to its key; a key that holds this many names already is
    // refused, unauthorized, saying which it holds). A relay grant that
    // lists more names (relay_grant_limits::names; "alice@*" counts as one)
    // may bind that many. Strangers (when they may register) make keys at
    // will: for them max_registrations is the bound.
    std::size_t max_names_per_key = 4;
    std::size_t max_tokens_per_dialler = 64;
    std::chrono::seconds token_lifetime{3600};
    // A connection must finish its SOCKS request within this; a dial waits
    // this long for the registered node to connect back.
    std::chrono::milliseconds handshake_timeout{3000};
    std::chrono::milliseconds pair_timeout{5000};
    // Each direction of a session forwards at most this many bytes a second
    // (0: unlimited; a relay grant may set a lower rate for its holder's
    // sessions, relay_grant_limits::max_bytes_per_s). A session's buffer is 64 KiB each way. The two nodes'
    // heartbeats queue behind whatever is in flight: a message that takes
    // longer than their heartbeat timeout (2.5 s by default) to pass ends
    // the link (connection_closed), so allow at least the largest message
    // the nodes send divided by that timeout.
    std::uint64_t max_bytes_per_s_per_session = 0;
    // Whether strangers (nodes outside the relay's cluster without a relay
    // grant) may register when the relay service is public
    // (node::set_public("relay")). false: a public relay lets anyone dial and
    // read the directory, but only members and relay-grant holders register
    // (register answers unauthorized to a stranger).
    bool strangers_may_register = true;
    // Session ports (docs/relay.md): dial_port opens a port per side of a
    // session, so that the dialler's DEALER and the registered node's
    // listening ROUTER connect to the relay directly (no SOCKS preamble, no
    // loopback forwarders: one userspace hop instead of three). Each port
    // accepts only from the IPv4 address of its node's control link (when
    // that is known), so a stranger elsewhere cannot take a session's place.
    // At most max_sessions_per_dialler port pairs per dialler and the node's
    // session limit per registered node. false: dial_port answers bad_args
    // and clients use the forwarders.
    bool session_ports = true;
    // The ports session ports are taken from (for a firewall), inclusive;
    // 0, 0: any free port. Full: dial_port answers overloaded.
    std::uint16_t session_port_min = 0, session_port_max = 0;
    // A port pair lives while it is used: it is closed (both ports, the
    // token forgets it: the next dial_port opens a new pair) when its
    // dialler has not been connected to Pd for session_port_idle (a dialler
    // that never came, or a session that ended: libzmq redials a dropped
    // link within a second, so one still wanted is not idle), or when its
    // node did not reach Pa within pair_timeout of the dial (a firewall
    // between them: the dialler falls back to the forwarders; a node that
    // reached it once and left is asked again when the dialler waits). Either
    // way the node is told
    // ["relay_port_closed", SessionHex, "HOST:Pa"] and stops dialling Pa,
    // and the dialler's agent (dial_port_agent) why, with Pd.
    std::chrono::milliseconds session_port_idle{30000};
    // A session port connection whose bytes stay unacknowledged this long
    // (its node's network went away without a FIN) is closed by the kernel
    // (TCP_USER_TIMEOUT), so it does not keep the pair in use for TCP's 15
    // minutes of retransmissions. Longer than the nodes' heartbeat timeout
    // (2.5 s), which ends the link itself first.
    std::chrono::milliseconds dead_peer_timeout{10000};
    // Forwarding in the kernel (docs/relay.md, "Forwarding in the kernel"):
    // a BPF sockhash and stream-verdict program move a session's bytes from
    // one socket to the other without waking the relay's thread. It needs
    // root (or CAP_BPF and CAP_NET_ADMIN), a kernel with BPF sockmap and a
    // kith built with libbpf. automatic: used when available, else user
    // space (the relay says why: relay::forwarding()); on: the relay throws
    // setup_error when it is unavailable; off: user space only. standard:
    // off, or what the environment variable KITH_RELAY_KERNEL_FORWARD
    // (auto, on, off) says. Off by default: with the nodes on the relay's
    // own cores (loopback) it made relayed calls slower (docs/relay.md).
    // Sessions with a rate limit (max_bytes_per_s_per_session or a relay
    // grant's) are forwarded in user space either way.
    enum class kernel_mode { standard, automatic, on, off };
    kernel_mode kernel_forward = kernel_mode::standard;

    // errc::badarg naming the option (its kith relay flag and Python keyword)
    // and its bounds, for the first one out of them: handshake_timeout
    // 100 ms..60 s, pair_timeout 100 ms..5 min, session_port_idle 1 s..24 h,
    // dead_peer_timeout 1 s..15 min,
    // token_lifetime 1 min..30 days, name_lifetime 1 h..10 years, every count
    // 1..1000000, session ports MIN <= MAX (both 0: any), listen set. The
    // relay's constructor throws setup_error with it.
    result<void> check() const;
};

// What one relay grant (a grant for service "relay", by its label) allows at
// the relay besides what every grant has (scope, rate, expiry, revocation:
// the node's grant table). Kept in <key dir>/relay-grants (mode 0600),
// which the relay re-reads when it changes (kith grant create ...
// --relay-names N --relay-sessions N --relay-rate N writes it). A grant without an entry
// has the relay's defaults.
struct relay_grant_limits {
    // Node names its holder may register ("alice@home", or "alice@*": alice
    // on any host); empty: any name not bound to another key.
    std::vector<std::string> names;
    // Relayed sessions at once to the nodes registered with it, and from the
    // nodes that dial with it (all its node names together, each way); 0: the relay's
    // (max_sessions_per_node, max_sessions_per_dialler).
    std::size_t max_sessions = 0;
    // Bytes a second each direction of such a session forwards at most; 0:
    // no limit of its own. A session's rate is the smallest of the relay's
    // (relay_options::max_bytes_per_s_per_session) and the rates of the
    // relay grants of its two ends that set one: a grant's rate lowers the
    // relay's, never raises it. Applies to sessions opened after it is set.
    // At least 4096 (heartbeats queue behind a large message: see
    // relay_options::max_bytes_per_s_per_session).
    std::uint64_t max_bytes_per_s = 0;
    bool may_register(std::string_view node) const;
    result<void> check() const;  // errc::badarg: a bad name, more than 64, a rate below 4096
};
// Reads <key_dir>/relay-grants (empty when missing): errc::decode naming
// the file and the line, errc::badarg for a file others can read.
result<std::map<std::string, relay_grant_limits>> load_relay_grant_limits(const std::filesystem::path& key_dir);
// Sets the limits of grant `label` in <key_dir>/relay-grants (under a file
// lock, atomically). A running relay of that key directory applies them to
// the next register and dial. errc::badarg with the reason.
result<void> set_relay_grant_limits(const std::filesystem::path& key_dir, const std::string& label,
                                    const relay_grant_limits& limits);
std::string relay_grant_limits_to_text(const std::map<std::string, relay_grant_limits>& t);
result<std::map<std::string, relay_grant_limits>> parse_relay_grant_limits(std::string_view text);

// What relay_client's registering constructor throws when the relay does
// not register this node: the relay's answer, its code kept (unauthorized:
// the name is another key's there, or strangers may not register;
// overloaded: the relay is full; timeout or nodedown: the relay did not
// answer, or the link to it is down). what() is "relay: R refused the
// registration: <detail>".
class relay_refused : public setup_error {
public:
    relay_refused(const std::string& what, error e) : setup_error(what), err_(std::move(e)) {}
    const error& err() const noexcept { return err_; }

private:
    error err_;
};

// How a relay_client behaves (its constructors take it; Python: the
// keywords of Node.use_relay).
struct relay_client_options {
    // How long the client keeps trying to move a link whose session port
    // pair the relay closed (relay_client::connect, "Reconnects" below)
    // before it gives up: the link is left (as disconnect) and gave_up(target)
    // says why. 1 s to 7 days.
    std::chrono::milliseconds repair_timeout{300000};
    // errc::badarg naming the option and its bounds; the relay_client
    // constructors throw setup_error with it.
    result<void> check() const;
};

// The node side of a relay. Thread-safety: every method may be called from
// any thread except the node's own actor handlers (connect blocks). The node
// must outlive the relay_client; the destructor unregisters and closes every
// forwarded connection (the links through it drop).
class relay_client {
public:
    // Registers `n` at the relay hosted by the node `relay_node` (already
    // connected: a cluster member, or dialled with a relay grant) and serves
    // its "relay_open" requests by splicing each to `n`'s own listening
    // endpoint. `listed`: shown in the relay's directory. Throws
    // relay_refused (a setup_error) with the relay's answer when it refuses.
    relay_client(node& n, std::string relay_node, bool listed = true, relay_client_options o = {});
    // Only dials through `relay_node` (no registration).
    relay_client(node& n, std::string relay_node, std::nullptr_t, relay_client_options o = {});
    ~relay_client();
    relay_client(const relay_client&) = delete;
    relay_client& operator=(const relay_client&) = delete;

    // Connects `n` to the node `target` registered at the relay, as
    // node::connect would, through a loopback forwarder: `key` is the key
    // `target` must prove (from its grant file or the directory: the relay
    // is never trusted with it). Errors: as node::connect, noproc when
    // `target` is not registered there, overloaded when the relay refused
    // the session for its limits (sessions per node, per dialler, per relay
    // grant; after `timeout`, and the node then stops dialling: connect
    // again later).
    result<std::string> connect(const std::string& target, const public_key& key,
                                std::chrono::milliseconds timeout = std::chrono::seconds(5));
    // As node::connect(grant): connects with a grant that `grant.node`
    // issued us, through the relay instead of the grant's endpoints (the
    // grant's key, scope and rate apply end to end exactly as on a direct
    // link). Errors: as node::connect(grant), and noproc when grant.node is
    // not registered there.
    result<std::string> connect(const grant_file& grant,
                                std::chrono::milliseconds timeout = std::chrono::seconds(5));
    // Leaves the link to `target` made by connect (its session port or its
    // forwarder): the node closes it (nodedown if it was up) and this client
    // no longer moves it to a new pair. Use it rather than node::disconnect
    // of a session port: a pair the relay closes for a link this client made
    // is otherwise replaced (below). Non-blocking; nothing for a target it
    // did not connect.
    void disconnect(const std::string& target);
    // Reconnects: a link through the relay that drops (the relay restarted,
    // the network failed) is redialled by libzmq as any outbound link; the
    // forwarder renews its dial token with a fresh `dial` when the relay no
    // longer knows it. A registered client registers again each time its
    // link to the relay comes back up (nodeup of the relay's node), until
    // the relay takes it (registration_error below). A link
    // through a session port pair that the relay closes while the link is
    // wanted (the target left the relay and comes back, this node was away
    // from its port for session_port_idle, the relay restarted) is moved to
    // a new pair; one whose target never reached its port (a firewall) to
    // the forwarders. The new link is made before the old one is dropped,
    // and a link that is up is never dropped for it. While the relay cannot
    // give a pair (the target has not registered again, no link to the
    // relay, a session limit) the client asks again, backing off to every
    // 5 s, until disconnect, its destructor, or repair_timeout
    // (relay_client_options) after it started asking: then it leaves the
    // link (the node stops dialling the closed port) and gave_up says why.
    //
    // Why the client gave up moving the link to `target` (errc::timeout, the
    // detail the relay's last answer, e.g. "no node named T is registered at
    // this relay"); nullopt while it did not. connect and disconnect of
    // `target` clear it. Non-blocking.
    std::optional<error> gave_up(const std::string& target) const;
    // Why a registered client is not registered at the relay now, or
    // nullopt (registered, or a dial-only client). errc::nodedown: the link
    // to the relay's node is down, or it just came back and the client is
    // registering again; otherwise the relay's answer to that (its relay
    // service not started again: no_such_service; a limit: overloaded; the
    // name now bound to another key: unauthorized): the client asks again,
    // backing off to every 5 s, while the link is up. Non-blocking.
    std::optional<error> registration_error() const;
    // The relay's directory: [[Name, KeyZ85, Fingerprint, [Service...], How]...]
    // (the relay service's directory() above).
    result<term> directory(std::chrono::milliseconds timeout = std::chrono::seconds(5));

    struct impl;

private:
    std::shared_ptr<impl> p_;
};

struct relay_counters {
    std::uint64_t registrations = 0;      // live
    std::uint64_t sessions = 0;           // spliced now
    std::uint64_t sessions_total = 0;     // ever spliced
    std::uint64_t refused = 0;            // data-plane connections refused (bad request, unknown token, limits)
    std::uint64_t timed_out = 0;          // handshakes or pairings that ran out of time
    std::uint64_t bytes_forwarded = 0;    // both directions
    std::uint64_t port_pairs = 0;         // session port pairs open now (relay_options::session_port_idle)
    std::uint64_t kernel_sessions = 0;    // of `sessions`, those forwarded in the kernel now
    std::uint64_t user_reads = 0;         // reads of session bytes by the relay's thread (user-space forwarding)
    std::uint64_t kernel_holds = 0;       // times a kernel-forwarded session was held (a reader too slow): docs/relay.md
    std::uint64_t kernel_overflows = 0;   // sessions ended: a held side kept sending while neither side read
    std::uint64_t kernel_late_piles = 0;  // held bytes past a session's bound kept: their room came late (docs/relay.md)
};

class relay {
public:
    // Starts the data plane and adds service "relay" to `n` (which must be
    // networked). Throws setup_error when the address cannot be bound or the
    // service exists.
    relay(node& n, relay_options o = {});
    ~relay();
    relay(const relay&) = delete;
    relay& operator=(const relay&) = delete;

    // "HOST:PORT" nodes connect to (advertise, else the bound address).
    std::string endpoint() const;
    // While sessions are forwarded in the kernel it waits for the data
    // plane to read their byte counts (a wake-up; at most 200 ms).
    relay_counters counters() const;
    // How sessions are forwarded: "kernel (BPF sockmap)", or "user space: "
    // and why (relay_options::kernel_forward). Fixed at construction.
    std::string forwarding() const;
    // set_relay_grant_limits in this relay's key directory (the node's):
    // applied from the next register and dial on. errc::badarg.
    result<void> set_grant_limits(const std::string& label, const relay_grant_limits& limits);

    struct impl;

private:
    std::unique_ptr<impl> p_;
};

}  // namespace kith
