// relay_impl.hpp — the relay's state, shared by its control plane (the
// "relay" service, relay_service.cpp) and its data plane (SOCKS5 subset and
// splicing, relay_splice.cpp). See kith/relay.hpp for the design.
//
// Locking: `mu` guards the tables (registrations, tokens, pending pairings,
// per-node session counts). The data-plane thread alone owns the sockets
// and the connection table; the control plane reaches it only through the
// tables and `wake()` (an eventfd), e.g. to close the sessions of a node
// that went down (`doomed`).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "kith/node.hpp"
#include "kith/principal.hpp"
#include "kith/relay.hpp"
#include "relay_kernel.hpp"
#include "relay_names.hpp"

namespace kith {

namespace splice {  // the data plane loop's state (relay_splice.hpp)
struct conn;
struct held;
struct loop;
}  // namespace splice

struct relay::impl {
    using clock = std::chrono::steady_clock;

    struct registration {
        std::string key_z85;  // the key that registered the name
        std::string how;        // "member", "grant" or "stranger" (directory)
        pid agent;            // receives ["relay_open", SessionHex, Endpoint]
        bool listed = false;
        // The services its node named in its handshake with the relay (at
        // most kDirectoryServices, without the admin services), for the
        // directory.
        std::vector<std::string> services;
        // Whose sessions as a registrant it counts against: its relay grant's
        // ("grant LABEL": every name registered with it together), else its
        // key's ("key Z85": every name that key registers together).
        std::string account;
        std::size_t max_sessions = 0;  // its relay grant's limit, else max_sessions_per_node
        std::string grant;  // the label of the relay grant it registered with ("" for none)
    };
    struct dial_token {
        std::string dialler;      // the dialler's node name
        std::string dialler_key;  // z85
        std::string target;       // registered name
        clock::time_point expires;
        bool in_use = false;  // one session at a time per token
        std::string grant;    // the label of the dialler's relay grant ("" for none)
        // Whose sessions as a dialler it counts against: its relay grant's
        // (every node name using that grant together), else its node's.
        std::string account() const { return grant.empty() ? dialler : "grant " + grant; }
    };
    // A dialler's connection waiting for the target to connect back.
    struct pairing {
        int dialler_fd = -1;
        std::string token;
        clock::time_point deadline;
    };

    // What the service functions hold: they outlive the relay inside the
    // node (a node cannot remove a service), so they reach the relay only
    // through this, and answer "shutdown" once it is gone.
    struct guard {
        std::shared_mutex mu;
        impl* live = nullptr;
    };
    std::shared_ptr<guard> guard_ = std::make_shared<guard>();

    impl(node& n, relay_options o);
    ~impl();

    // ---- control plane (relay_service.cpp) ----
    void add_service();
    // The service functions (relay.hpp), for the calling principal.
    result<term> do_register(const pid& agent, bool listed);
    result<term> do_unregister();
    result<term> do_dial(const std::string& name);
    // dial_port(Name): as dial, and a port per side for the session
    // (relay_ports.cpp): [TokenHex, "HOST:Pd", KeyZ85]; Name's agent gets
    // ["relay_port", SessionHex, "HOST:Pa"].
    // `agent` (null, or a pid on the caller's node: dial_port_agent) gets
    // ["relay_port_closed", SessionHex, "HOST:Pd", Reason] when the pair
    // closes (Reason: "idle", "unreached" or "gone"), so that the dialler
    // moves a link it still wants to a new pair or the forwarders.
    result<term> do_dial_port(const std::string& name, const pid& agent = {});
    result<term> do_directory();
    void on_node_event(const node_event& ev);

    // ---- data plane (relay_splice.cpp) ----
    void bind_listener();  // throws setup_error
    // What nodes are told to dial (relay_options::advertise), given the
    // bound address; throws setup_error for an advertise that is not
    // IPV4[:PORT] (relay_service.cpp).
    std::string advertised_endpoint(const std::string& bound_ip, unsigned port) const;
    void run();            // the data-plane thread
    void wake();

    // Session accounting, under mu: may the holder of token `t` open one more
    // session to its target? Counts it (against t.account() and the target's
    // registration account, which it sets `registrant` to) when it may.
    bool admit_session_locked(const dial_token& t, std::string& registrant);
    // Releases what admit_session_locked counted: `dialler` (t.account()) and
    // `registrant` (whether or not that registration is still there).
    void release_session_locked(const std::string& dialler, const std::string& registrant);
    // The most sessions at once for the dialler of `t` (its relay grant's
    // limit, else max_sessions_per_dialler).
    std::size_t dialler_limit_locked(const dial_token& t);

    node& n_;
    relay_options o_;
    std::string endpoint_;
    int listen_fd_ = -1;
    int epoll_fd_ = -1;
    int wake_fd_ = -1;
    std::uint64_t sub_id_ = 0;
    std::atomic<bool> stop_{false};

    mutable std::mutex mu;
    std::map<std::string, registration> regs;      // by node name
    // Which key a name was first registered by: kept after the node leaves
    // and across restarts (<key dir>/relay-names, relay_names.hpp), so that
    // another key cannot take the name while its owner is away (first come,
    // first served; at most max_registrations names: when full, only a
    // binding unused for name_lifetime is released for a new one).
    relay_names::table owners;                      // name -> key, last seen
    std::filesystem::path names_file_;
    std::uint64_t names_version_ = 0;  // under mu: bumped by each change of owners
    std::mutex save_mu_;                // one writer at a time; waits outside mu
    std::uint64_t saved_version_ = 0;   // under save_mu_
    // Writes owners if `version` is not on disk yet (one write serves every
    // change made before it). Blocking (fsync).
    result<void> save_names(std::uint64_t version);
    // Limits per relay grant (<key dir>/relay-grants), re-read when the file
    // changes; a file that fails to parse later leaves the last good one in
    // force. Under mu.
    std::map<std::string, relay_grant_limits> grant_limits_;
    std::filesystem::file_time_type grant_limits_mtime_{};
    std::uintmax_t grant_limits_size_ = static_cast<std::uintmax_t>(-1);
    // Its inode: each write replaces the file (an atomic rename), so a
    // change within one tick of a coarse file clock, at the same size, is
    // seen too.
    std::uint64_t grant_limits_ino_ = 0;
    // Loads the file if it changed; `fatal`: throw setup_error on a bad file.
    void refresh_grant_limits_locked(bool fatal);
    // The limits of the caller's relay grant, or nullptr.
    const relay_grant_limits* limits_of_locked(const principal& p);
    // The bytes/s of a session from a dialler with relay grant `dialler_grant`
    // ("" for none) to the registration `r`: the
    // smallest of the relay's rate and the two ends' grant rates that are
    // set (0: unlimited), as the relay grants file says now (a rate set
    // after a node registered or dialled applies to its next session).
    // Under mu.
    std::uint64_t session_rate_locked(const std::string& dialler_grant, const registration& r);
    std::map<std::string, dial_token> tokens;       // by token hex
    std::map<std::string, pairing> pairings;        // by session hex
    std::map<std::string, std::size_t> dialler_sessions;  // by dial_token::account()
    std::map<std::string, std::size_t> registrant_sessions;  // by registration::account
    std::set<std::string> doomed;  // node names whose sessions the data plane must close
    // Session ports (relay_ports.cpp). A listening socket per side of a
    // port session, handed to the data plane (which owns them from then on).
    struct port_listener {
        int fd = -1;
        std::string session;
        bool dialler_side = false;
        std::string dialler, target;
        std::string pa;  // the dialler side's: its session's Pa (to ask the node again)
        std::string allow_ip;  // accept only from this IPv4 address (its node's control link); "": any
        dial_token tok;        // the dial it was opened for: whose sessions it counts against
    };
    std::vector<port_listener> new_ports;            // under mu: for the data plane to add
    struct port_session {
        std::string pd, pa;  // advertised HOST:PORT of each side
        std::string dialler, target, session;
        std::string dialler_account, registrant;  // whose port pairs these are (as the sessions)
        pid dialler_agent;  // null, or told when the pair closes (dial_port_agent)
    };
    std::map<std::string, port_session> token_ports;  // by dial token
    // ["relay_port", ...] to registered nodes' agents, sent by the data
    // plane: not from a service call, which acts for its caller (a stranger's
    // call may not make this node send to another node's pid).
    std::vector<std::pair<pid, term>> port_notices;  // under mu
    // Port pairs (by session hex) the data plane must close: their node
    // unregistered (token_ports forgot them, the notices are queued).
    std::vector<std::string> closing_pairs;  // under mu
    // Binds a listening socket on the data plane's address, any port:
    // {fd, advertised HOST:PORT}, or fd -1.
    std::pair<int, std::string> open_session_port();
    std::uint32_t next_port_ = 0;  // under mu: where open_session_port tries first in the range

    // ---- the data plane's loop, on its thread (run): SOCKS and splicing
    // (relay_splice.cpp), session ports (relay_ports.cpp) ----
    void set_events(splice::loop& sp, splice::conn& c);      // epoll interest from its state
    void close_conn(splice::loop& sp, int fd);                // closes fd and its peer; releases them
    bool flush_to_peer(splice::loop& sp, splice::conn& from);  // false: the session ended
    bool on_socks(splice::loop& sp, splice::conn& cn);        // false: close it
    bool on_request(splice::loop& sp, splice::conn& cn, const std::string& name);
    void pair_ports(splice::loop& sp, splice::held& h, int newest);
    void accept_port(splice::loop& sp, const port_listener& L);
    void ports_tick(splice::loop& sp, const std::set<std::string>& gone, std::vector<port_listener>& np);
    // Closes the port pair of `session` (its listeners and connections),
    // forgets it in token_ports, tells its node to stop dialling Pa and its
    // dialler's agent (if it gave one) why: `reason` "idle" or "unreached".
    void close_port_pair(splice::loop& sp, const std::string& session, const char* reason);
    void ask_port_again(splice::conn& cn, clock::time_point now);
    // In-kernel forwarding (relay_splice_kernel.cpp): kf_ when available
    // (relay_options::kernel_forward), else kf_why_ says why not.
    std::unique_ptr<splice::kernel_forward> kf_;
    std::string kf_why_;
    void open_kernel_forward();  // throws setup_error (kernel_forward on, unavailable)
    // Moves a freshly spliced session to the kernel when it may (no rate,
    // nothing buffered, the SOCKS replies out); else (false) it stays in
    // user space. kernel_start, at once, hands bytes already waiting over.
    bool try_kernel(splice::loop& sp, splice::conn& a, splice::conn& b);
    void kernel_start(splice::conn& a, splice::conn& b);
    // An epoll event on a kernel-forwarded connection: its end (EOF) or
    // error, bytes held for the relay, room for the peer's held bytes.
    void kernel_event(splice::loop& sp, splice::conn& cn, std::uint32_t events);
    // Held bytes (kernel_forward::hold): read into buf, written to the
    // peer in order. false: the session ends.
    bool kernel_read_held(splice::loop& sp, splice::conn& cn);
    bool kernel_flush(splice::loop& sp, splice::conn& cn);
    void kernel_end(splice::loop& sp, splice::conn& cn);  // its end: delivered, then the session ends
    std::uint64_t held_bound(int fd) const;
    std::uint64_t held_unread(const splice::conn& cn) const;  // held for the relay, not read yet
    void kernel_unstick(splice::conn& cn);
    // false: cn's held bytes unread are more than its session may keep
    // (relay_splice_kernel.cpp). `forgiven`: the relay-wide pile forgiven.
    bool forgive_pile(splice::conn& cn, std::uint64_t unread, clock::time_point now, std::uint64_t& forgiven);
    // Per tick: byte counts, and sessions whose end waited for the kernel
    // to hand the last bytes over.
    void kernel_tick(splice::loop& sp);
    void kernel_count(splice::loop& sp, splice::conn& cn);  // adds its new bytes to sp.forwarded
    // counters() while sessions are in the kernel: asks the data plane for
    // their byte counts (counts_asked_), which it adds to c and answers
    // (counts_done_ = counts_asked_) on its next wake-up. Under mu.
    std::uint64_t counts_asked_ = 0, counts_done_ = 0;
    std::condition_variable counts_cv_;
    relay_counters c;

    std::thread thread_;
};

// 16 random bytes as 32 lowercase hex digits (getrandom(2)).
std::string relay_random_hex();

}  // namespace kith
