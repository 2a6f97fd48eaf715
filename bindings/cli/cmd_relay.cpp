// kith relay, and the relay parts of kith node, nodes and call (relay_host.hpp).
#include <arpa/inet.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>

#include "commands.hpp"
#include "json_term.hpp"
#include "relay_host.hpp"

namespace kith::cli {

namespace {

const char* kRelayUsage = R"(usage: kith relay [options]

Runs a relay: a node that friends behind home routers both connect out to,
so that they can reach each other (docs/relay.md). Run it where it can be
reached: a small VPS, a teacher's server, a machine with a port forward.
It relays bytes it cannot read: CURVE, the membership proof and grants stay
end to end between the two nodes. It prints its events, one line each.

Who may use it is decided with grants, as for any service: on this machine
  kith grant create alice --services relay --out alice-relay.grant
gives Alice a "relay file" (register and dial; revoke it and her
registration and sessions end at once; its rate limits her relay calls).
Cluster members (same cookie) may always use it.

options (and every option of kith node; its services default to none):
  --data-listen HOST:PORT    where the data plane listens (default 0.0.0.0:4380;
                             tcp://HOST:PORT is the same)
  --data-advertise IP[:PORT] what nodes dial for it, when it differs (a port
                             forward); default: the host of --advertise with
                             the data port, else the address they reach this
                             node at
  --open                     anyone may dial through it and read its directory
                             (registering still needs a relay grant)
  --max-registrations N      nodes registered at once (default 4096)
  --max-sessions N           relayed sessions at once per registered node
                             (default 16) and per dialler (half of it, at least 1)
  --bytes-per-s N            each direction of a session at most N bytes a
                             second (default: unlimited)
  --max-names N              node names one key may bind here (default 4; a
                             relay grant's --relay-names may allow more)
  --session-ports MIN-MAX|off
                             the ports a session's two direct ports are taken
                             from (default: any free port; open the range in
                             the firewall); off: every session goes through
                             the data plane's port (one more hop each side)
  --kernel-forward auto|on|off
                             forward sessions' bytes in the kernel (BPF
                             sockmap; needs root or CAP_BPF+CAP_NET_ADMIN):
                             auto when possible, else user space (it says
                             why); on: fail to start without it; off
                             (default): user space only (on a relay whose
                             nodes share its cores it is slower; see
                             docs/relay.md). Sessions with a --bytes-per-s
                             limit are forwarded in user space
  --session-port-idle SECONDS
                             a session's ports are closed when its dialler was
                             not on them this long (default 30; 1 to 86400);
                             its client moves a link it still wants to new ones
  --dead-peer-timeout SECONDS
                             a session port connection whose bytes stay
                             unacknowledged this long (its node's network went
                             away) is closed (default 10; 1 to 900)
  --pair-timeout SECONDS     a dial waits this long for the registered node
                             to connect back; a session port it never reached
                             within it is closed (default 5; 0.1 to 300)
  --handshake-timeout SECONDS
                             a data-plane connection's SOCKS request must come
                             within it (default 3; 0.1 to 60)
  --max-connections N        data-plane connections held at once (default 1024)
  --max-dialler-sessions N   relayed sessions at once per dialler (default:
                             half of --max-sessions, at least 1)
  --max-tokens N             live dial tokens per dialler (default 64)
  --token-lifetime SECONDS   how long a dial token lives (default 3600; 60 to
                             2592000)
  --name-lifetime SECONDS    how long a name stays bound to its key unused,
                             when the relay is full (default 7776000, 90 days;
                             3600 to 315360000)
Open TCP ports: the node's (4370, or --port), the data plane's (4380) and,
on a firewalled host, the --session-ports range (blocked, nodes fall back to
the data plane's port after a short wait).
)";

// kith relay's own options -> kith node's.
const std::pair<const char*, const char*> kRelayAliases[] = {
    {"--data-listen", "--relay-listen"},       {"--data-advertise", "--relay-advertise"},
    {"--open", "--relay-open"},                {"--max-registrations", "--relay-max-registrations"},
    {"--max-sessions", "--relay-max-sessions"}, {"--bytes-per-s", "--relay-bytes-per-s"},
    {"--max-names", "--relay-max-names"},      {"--session-ports", "--relay-session-ports"},
    {"--kernel-forward", "--relay-kernel-forward"},
    {"--session-port-idle", "--relay-session-port-idle"}, {"--pair-timeout", "--relay-pair-timeout"},
    {"--dead-peer-timeout", "--relay-dead-peer-timeout"},
    {"--handshake-timeout", "--relay-handshake-timeout"}, {"--max-connections", "--relay-max-connections"},
    {"--max-dialler-sessions", "--relay-max-dialler-sessions"}, {"--max-tokens", "--relay-max-tokens"},
    {"--token-lifetime", "--relay-token-lifetime"}, {"--name-lifetime", "--relay-name-lifetime"},
};

// An endpoint of kith node's --relay-listen or --relay-advertise, named as
// typed: "relay: --data-listen (kith node --relay-listen) '...' has no port".
std::string relay_endpoint(const args& a, const std::string& opt, platform::endpoint_use use) {
    std::string what = "node: " + opt;
    for (auto& [mine, node] : kRelayAliases)
        if (opt == node) what = std::string("relay: ") + mine + " (kith node " + opt + ")";
    return parse_endpoint(what, a.get(opt), use).host_port();
}

std::size_t parse_count(const std::string& opt, const std::string& v) {
    try {
        std::size_t used = 0;
        long long n = std::stoll(v, &used);
        if (used == v.size() && n > 0 && n < (1LL << 40)) return static_cast<std::size_t>(n);
    } catch (...) {
    }
    throw cli_error{"node: " + opt + " wants a positive whole number (got '" + v + "')", kUsage};
}

// The relay's deadlines and the counts without options above (relay_options:
// session_port_idle, pair_timeout, ...); relay_options::check bounds them.
// Seconds ("30", "0.5") given to kith relay's `--X` (kith node's --relay-X).
std::chrono::milliseconds relay_seconds(const std::string& opt, const std::string& v) {
    try {
        return parse_seconds(opt, v, 1e9);  // relay_options::check says the bounds
    } catch (const cli_error&) {
    }
    throw cli_error{"relay: --" + opt.substr(8) + " (kith node " + opt + ") wants seconds, e.g. 30 or 0.5 (got '" + v +
                        "')",
                    kUsage};
}

void timing_and_counts(const args& a, relay_options& ro) {
    const std::pair<const char*, std::chrono::milliseconds*> times[] = {
        {"--relay-session-port-idle", &ro.session_port_idle},
        {"--relay-pair-timeout", &ro.pair_timeout},
        {"--relay-handshake-timeout", &ro.handshake_timeout},
        {"--relay-dead-peer-timeout", &ro.dead_peer_timeout},
    };
    for (auto& [opt, field] : times)
        if (a.has(opt)) *field = relay_seconds(opt, a.get(opt));
    if (a.has("--relay-token-lifetime"))
        ro.token_lifetime = std::chrono::duration_cast<std::chrono::seconds>(
            relay_seconds("--relay-token-lifetime", a.get("--relay-token-lifetime")));
    // Whole hours are kept (relay_options::name_lifetime); check() says its bounds.
    if (a.has("--relay-name-lifetime"))
        ro.name_lifetime = std::chrono::duration_cast<std::chrono::hours>(
            relay_seconds("--relay-name-lifetime", a.get("--relay-name-lifetime")));
    const std::pair<const char*, std::size_t*> counts[] = {
        {"--relay-max-connections", &ro.max_connections},
        {"--relay-max-dialler-sessions", &ro.max_sessions_per_dialler},
        {"--relay-max-tokens", &ro.max_tokens_per_dialler},
    };
    for (auto& [opt, field] : counts)
        if (a.has(opt)) *field = parse_count(opt, a.get(opt));
}

}  // namespace

const char* kRelayNodeHelp = R"(relays (docs/relay.md):
  --relay FILE      register at a relay and stay reachable through it (and
                    register again when it comes back); FILE is the relay
                    grant its owner gave you (kith grant create LABEL
                    --services relay, on the relay's machine)
  --relay-unlisted  registered, but not shown in the relay's directory
  --serve-relay     this node is also a relay (kith relay --help: its
                    options here are --relay-listen, --relay-advertise,
                    --relay-open, --relay-max-registrations,
                    --relay-max-sessions, --relay-bytes-per-s,
                    --relay-max-names, --relay-session-ports,
                    --relay-kernel-forward,
                    --relay-session-port-idle, --relay-pair-timeout,
                    --relay-dead-peer-timeout, --relay-handshake-timeout, --relay-max-connections,
                    --relay-max-dialler-sessions, --relay-max-tokens,
                    --relay-token-lifetime, --relay-name-lifetime)
)";

const std::set<std::string>& relay_value_opts() {
    static const std::set<std::string> o = {"--relay",         "--relay-listen",           "--relay-advertise",
                                            "--relay-max-sessions", "--relay-max-registrations", "--relay-bytes-per-s",
                                            "--relay-max-names", "--relay-session-ports", "--relay-kernel-forward",
                                            "--relay-session-port-idle", "--relay-pair-timeout",
                                            "--relay-dead-peer-timeout",
                                            "--relay-handshake-timeout", "--relay-max-connections",
                                            "--relay-max-dialler-sessions", "--relay-max-tokens",
                                            "--relay-token-lifetime", "--relay-name-lifetime"};
    return o;
}

const std::set<std::string>& relay_flag_opts() {
    static const std::set<std::string> o = {"--serve-relay", "--relay-open", "--relay-unlisted"};
    return o;
}

int cmd_relay(int argc, char** argv) {
    std::vector<std::string> v{"--serve-relay"};
    bool services = false, avail = false;
    for (int i = 0; i < argc; ++i) {
        std::string s = argv[i];
        if (s == "--help" || s == "-h") {
            std::fputs(kRelayUsage, stdout);
            return 0;
        }
        for (auto& [mine, node] : kRelayAliases) {
            std::string m = mine;
            if (s == m) s = node;
            else if (s.rfind(m + "=", 0) == 0) s = node + s.substr(m.size());
        }
        services = services || s.rfind("--services", 0) == 0;
        avail = avail || s.rfind("--scopes", 0) == 0 || s.rfind("--failover", 0) == 0 || s.rfind("--join", 0) == 0;
        v.push_back(s);
    }
    if (!services) v.push_back("--services=");
    if (!avail) v.push_back("--no-availability");
    std::vector<char*> p;
    for (auto& s : v) p.push_back(s.data());
    return cmd_node(static_cast<int>(p.size()), p.data());
}

grant_file load_grant_file(const std::string& file, const std::string& what) {
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0)
        throw cli_error{what + " " + file + ": " + std::strerror(errno) +
                            " (it is the relay grant the relay's owner gave you: kith grant create LABEL --services "
                            "relay --out FILE, on the relay's machine)",
                        kUsage};
    if (S_ISREG(st.st_mode) && (st.st_mode & 077))
        throw cli_error{what + " " + file + " can be read by others: it holds a secret key; make it private "
                            "first: chmod 600 " + file,
                        kFailed};
    auto g = grant_file::load(file);
    if (!g) throw cli_error{what + " " + file + ": " + g.err().detail, kFailed};
    return std::move(*g);
}

std::vector<grant_file::relay_route> relay_routes_of(const grant_file& g) {
    std::vector<grant_file::relay_route> out;
    for (auto& e : g.endpoints) out.push_back({g.node, e, g.server_key});
    return out;
}

std::string connect_relay(kith::node& n, const grant_file::relay_route& r, const grant_file* relay_grant,
                          std::chrono::milliseconds timeout) {
    result<std::string> up = relay_grant && relay_grant->node == r.node ? n.connect(*relay_grant, timeout)
                                                                        : n.connect_visitor(r.endpoint, r.key, timeout);
    if (up) return *up;
    std::string what = "cannot reach the relay " + r.node + " at " + r.endpoint + ": ";
    if (up.code() == errc::timeout || up.code() == errc::nodedown)
        throw cli_error{what + "timeout: nothing answered (is the relay running? is " + r.endpoint +
                            " the right address, its port open?)",
                        kFailed};
    if (up.code() == errc::revoked)
        throw cli_error{what + "revoked: your relay grant was revoked or has expired; ask the relay's owner for a new "
                               "one",
                        kFailed};
    throw cli_error{what + up.err().message() +
                        (relay_grant ? "" : " (this relay is not open to strangers: ask its owner for a relay grant "
                                            "and pass it with --relay-grant FILE)"),
                    kFailed};
}

std::optional<std::string> reach_via_relays(kith::node& n, const grant_file& g, const grant_file* relay_grant,
                                            std::chrono::milliseconds timeout,
                                            std::unique_ptr<kith::relay_client>& keep, std::string& why) {
    for (auto& r : g.relays) {
        try {
            std::string rn = connect_relay(n, r, relay_grant, timeout);
            keep.reset();
            keep = std::make_unique<kith::relay_client>(n, rn, nullptr);
            auto up = keep->connect(g, timeout);
            if (up) return *up;
            if (up.code() == errc::noproc)
                why += "; the relay " + rn + " has no node " + g.node + " registered (is its node running with --relay?)";
            else if (up.code() == errc::revoked)
                throw cli_error{"cannot reach " + g.node + " through the relay " + rn + ": revoked: " + up.err().detail +
                                    "; ask the owner of " + g.node + " for a new grant",
                                kFailed};
            else
                why += "; through the relay " + rn + ": " + up.err().message();
        } catch (const cli_error& e) {
            if (e.message.find("revoked") != std::string::npos && e.message.find("through the relay") != std::string::npos)
                throw;
            why += "; " + e.message;
        }
    }
    return std::nullopt;
}

// ---- relay_host --------------------------------------------------------------------

relay_host::relay_host(kith::node& n, const args& a) : n_(n) {
    bool serve = a.has("--serve-relay");
    for (auto& o : relay_value_opts())
        if (o != "--relay" && a.has(o) && !serve)
            throw cli_error{"node: " + o + " configures the relay this node serves: add --serve-relay", kUsage};
    if (a.has("--relay-open") && !serve)
        throw cli_error{"node: --relay-open configures the relay this node serves: add --serve-relay", kUsage};
    if (serve) {
        relay_options ro;
        if (a.has("--relay-listen")) ro.listen = relay_endpoint(a, "--relay-listen", platform::endpoint_use::listen);
        if (a.has("--relay-advertise"))
            ro.advertise = relay_endpoint(a, "--relay-advertise", platform::endpoint_use::dial_port_optional);
        if (ro.advertise.empty() && a.has("--advertise")) {
            // The data plane is where the node is: the host of its --advertise
            // (a public address, a port forward) with the data port, not the
            // address it is bound to, which remote nodes may not reach.
            std::string h = a.get("--advertise");
            if (h.rfind("tcp://", 0) == 0) h = h.substr(6);
            h = h.substr(0, h.rfind(':'));
            in_addr ip{};
            if (::inet_pton(AF_INET, h.c_str(), &ip) != 1)
                throw cli_error{"node: --advertise " + a.get("--advertise") +
                                    " is not an IPv4 address: the relay's data plane needs one; give it with "
                                    "--data-advertise IPV4:PORT",
                                kUsage};
            ro.advertise = h;
        }
        if (a.has("--relay-max-registrations"))
            ro.max_registrations = parse_count("--relay-max-registrations", a.get("--relay-max-registrations"));
        if (a.has("--relay-max-sessions")) {
            ro.max_sessions_per_node = parse_count("--relay-max-sessions", a.get("--relay-max-sessions"));
            ro.max_sessions_per_dialler = std::max<std::size_t>(1, ro.max_sessions_per_node / 2);
        }
        if (a.has("--relay-bytes-per-s"))
            ro.max_bytes_per_s_per_session = parse_count("--relay-bytes-per-s", a.get("--relay-bytes-per-s"));
        if (a.has("--relay-max-names"))
            ro.max_names_per_key = parse_count("--relay-max-names", a.get("--relay-max-names"));
        if (a.has("--relay-session-ports")) {
            const std::string r = a.get("--relay-session-ports");
            if (r == "off") {
                ro.session_ports = false;
            } else {
                auto dash = r.find('-');
                std::size_t lo = 0, hi = 0;
                if (dash != std::string::npos) {
                    try {
                        lo = parse_count("--relay-session-ports", r.substr(0, dash));
                        hi = parse_count("--relay-session-ports", r.substr(dash + 1));
                    } catch (const cli_error&) {
                        lo = hi = 0;
                    }
                }
                if (lo == 0 || hi < lo || hi > 65535)
                    throw cli_error{"node: --session-ports wants MIN-MAX (1..65535, MIN <= MAX, e.g. 4381-4480) or "
                                    "off (got '" + r + "')",
                                    kUsage};
                ro.session_port_min = static_cast<std::uint16_t>(lo);
                ro.session_port_max = static_cast<std::uint16_t>(hi);
            }
        }
        if (a.has("--relay-kernel-forward")) {
            const std::string k = a.get("--relay-kernel-forward");
            if (k == "auto") ro.kernel_forward = relay_options::kernel_mode::automatic;
            else if (k == "on") ro.kernel_forward = relay_options::kernel_mode::on;
            else if (k == "off") ro.kernel_forward = relay_options::kernel_mode::off;
            else throw cli_error{"node: --kernel-forward wants auto, on or off (got '" + k + "')", kUsage};
        }
        timing_and_counts(a, ro);
        if (auto ok = ro.check(); !ok.ok()) throw cli_error{"node: " + ok.err().detail, kUsage};
        const bool open = a.has("--relay-open");
        ro.strangers_may_register = false;
        try {
            relay_ = std::make_unique<kith::relay>(n_, ro);
        } catch (const setup_error& e) {
            std::string m = e.what();
            if (m.find("cannot listen") != std::string::npos) m += " (--relay-listen HOST:PORT chooses another)";
            throw cli_error{"node: " + m, kFailed};
        }
        if (open)
            if (auto r = n_.set_public("relay"); !r.ok())
                throw cli_error{"node: --relay-open: " + r.err().detail, kFailed};
        describe_ += "relay data plane " + relay_->endpoint() + " (listening on " + ro.listen + ")\n";
        describe_ += std::string("relay session ports ") +
                     (!ro.session_ports ? "off (every session through the data plane)"
                      : ro.session_port_min
                          ? std::to_string(ro.session_port_min) + "-" + std::to_string(ro.session_port_max)
                          : "any free port") +
                     "\n";
        describe_ += "relay forwarding: " + relay_->forwarding() + "\n";
        describe_ += std::string("relay users: cluster members and holders of a relay grant (kith grant create LABEL "
                                 "--services relay --out FILE)") +
                     (open ? "; anyone may dial and read the directory (--open)" : "") + "\n";
        serve_thread_ = std::thread([this] { serve_loop(); });
    }
    if (a.has("--relay")) {
        reg_file_ = a.get("--relay");
        reg_grant_ = load_grant_file(reg_file_, "node: --relay");
        listed_ = !a.has("--relay-unlisted");
        describe_ += "relay registering at " + reg_grant_->node + " (" + reg_file_ + ")" +
                     (listed_ ? "" : ", unlisted") + "\n";
        reg_thread_ = std::thread([this] { register_loop(); });
    } else if (a.has("--relay-unlisted")) {
        throw cli_error{"node: --relay-unlisted goes with --relay FILE", kUsage};
    }
}

relay_host::~relay_host() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (reg_thread_.joinable()) reg_thread_.join();
    if (serve_thread_.joinable()) serve_thread_.join();
    client_.reset();
    relay_.reset();
}

std::string relay_host::describe() const { return describe_; }

namespace {
void say(const std::string& line) {
    std::printf("relay: %s\n", line.c_str());
    std::fflush(stdout);
}
}  // namespace

// Prints the relay's counters when they change (at most once a second).
void relay_host::serve_loop() {
    relay_counters last{};
    std::unique_lock lk(mu_);
    while (!cv_.wait_for(lk, std::chrono::seconds(1), [&] { return stop_; })) {
        auto c = relay_->counters();
        if (c.registrations == last.registrations && c.sessions == last.sessions && c.refused == last.refused &&
            c.timed_out == last.timed_out && c.sessions_total == last.sessions_total)
            continue;
        last = c;
        say("registered " + std::to_string(c.registrations) + ", sessions " + std::to_string(c.sessions) + " (" +
            std::to_string(c.sessions_total) + " in all), refused " + std::to_string(c.refused) + ", timed out " +
            std::to_string(c.timed_out) + ", " + std::to_string(c.bytes_forwarded) + " bytes forwarded");
    }
}

// Connects to the relay and registers; when the link drops, says so and
// connects again (relay_client registers again on the relay's nodeup).
void relay_host::register_loop() {
    const grant_file& g = *reg_grant_;
    std::string last_error;
    bool up = false, linked_unregistered = false;
    auto wait = [&](std::chrono::milliseconds d) {
        std::unique_lock lk(mu_);
        return !cv_.wait_for(lk, d, [&] { return stop_; });
    };
    auto complain = [&](const std::string& e) {
        if (e != last_error) say(e);
        last_error = e;
    };
    // backoff: the wait before the next look; retry: the next wait after a
    // failed connect (1 s, doubling to 8 s; the message says the one it waits).
    std::chrono::milliseconds backoff{1000}, retry{1000};
    do {
        bool linked = n_.info(g.node).has_value();
        if (!linked) {
            if (up || linked_unregistered) say("lost the relay " + g.node + "; connecting again");
            if (up) retry = std::chrono::milliseconds(1000);
            if (up || linked_unregistered) last_error.clear();  // the same refusal after it is said again
            linked_unregistered = false;
            up = false;
            auto r = n_.connect(g, std::chrono::seconds(5));
            if (!r) {
                backoff = retry;
                retry = std::min(retry * 2, std::chrono::milliseconds(8000));
                const std::string in = std::to_string(backoff.count() / 1000) + " s";
                std::string why =
                    r.code() == errc::revoked
                        ? "revoked: the relay's owner revoked your relay grant (or it expired); ask for a new one"
                    : r.code() == errc::unauthorized
                        ? r.err().message() + " (the relay refused this node: if another node holds this name there, "
                                              "run yours under another with kith node --name; else ask the relay's "
                                              "owner; retrying in " + in + ")"
                        : r.err().message() + " (is the relay running? retrying in " + in + ")";
                complain("cannot reach " + g.node + ": " + why);
                continue;
            }
            retry = std::chrono::milliseconds(1000);
        }
        if (!client_) {
            try {
                client_ = std::make_unique<kith::relay_client>(n_, g.node, listed_);
            } catch (const relay_refused& e) {
                std::string m = e.what();
                if (e.err().code == errc::unauthorized && m.find("another key") != std::string::npos)
                    m += " (with kith node --name)";
                complain(m + "; retrying every 8 s");
                backoff = std::chrono::milliseconds(8000);
                continue;
            }
        }
        // The relay's node is back but has not taken the registration again
        // (being made; its relay not started; a limit): the client asks by
        // itself. A refusal is said; "registered" again once it is taken.
        if (auto e = client_->registration_error()) {
            if (e->code != errc::nodedown) {
                std::string m = printable(e->detail);
                if (e->code == errc::unauthorized && m.find("another key") != std::string::npos)
                    m += " (with kith node --name)";
                complain(m);
                linked_unregistered = true;
            }
            up = false;
            backoff = std::chrono::milliseconds(500);
            continue;
        }
        linked_unregistered = false;
        if (!up) {
            up = true;
            last_error.clear();
            say("registered at " + g.node + " as " + n_.name() + (listed_ ? " (listed)" : " (unlisted)") +
                "; friends with a grant that has this relay's route reach this node through it");
        }
        backoff = std::chrono::milliseconds(500);
    } while (wait(backoff));
}

// ---- kith nodes --relay ------------------------------------------------------------

int relay_directory(const args& a) {
    std::string file = a.get("--relay");
    grant_file g = load_grant_file(file, "nodes: --relay");
    node_options o = hidden_client_options(a, "kith-cli");
    std::chrono::milliseconds timeout{5000};
    if (a.has("--timeout")) timeout = parse_seconds("--timeout", a.get("--timeout"));
    kith::node n(o);
    std::vector<grant_file::relay_route> routes = g.relays.empty() ? relay_routes_of(g) : g.relays;
    std::optional<grant_file> relay_grant;
    if (a.has("--relay-grant")) relay_grant = load_grant_file(a.get("--relay-grant"), "--relay-grant");
    std::string rn;
    std::string errors;
    for (auto& r : routes) {
        try {
            rn = connect_relay(n, r, g.relays.empty() ? &g : relay_grant ? &*relay_grant : nullptr, timeout);
            break;
        } catch (const cli_error& e) {
            errors += (errors.empty() ? "" : "; ") + e.message;
        }
    }
    if (rn.empty()) {
        n.stop();
        throw cli_error{"nodes: " + errors, kFailed};
    }
    auto d = n.call(rn, "relay", "directory", arr(), timeout);
    n.stop();
    if (!d) fail("nodes: the directory of the relay " + rn, d.err());
    if (a.has("--json")) {
        std::printf("%s\n", to_json(*d).c_str());
        return 0;
    }
    std::printf("nodes registered at the relay %s and listed there (as the relay %s, whose key you checked, "
                "says):\n",
                rn.c_str(), rn.c_str());
    if (d->size() == 0) std::printf("(none)\n");
    else std::printf("%-32s %-40s %s\n", "NAME", "FINGERPRINT (of its node key)", "SERVICES");
    bool by_grant = false;
    for (std::size_t i = 0; i < d->size(); ++i) {
        const term& row = *d->at(i);
        if (row.size() < 3 || !row.at(0)->is_string() || !row.at(2)->is_string()) continue;
        std::string svcs;
        if (row.size() >= 4)
            for (std::size_t j = 0; j < row.at(3)->size(); ++j)
                if (row.at(3)->at(j)->is_string())
                    svcs += (svcs.empty() ? "" : ",") + printable(*row.at(3)->at(j)->as_string());
        std::string fp = printable(*row.at(2)->as_string());
        if (fp.empty()) {  // registered with a relay grant: the relay does not know its node key
            fp = "(relay grant *)";
            by_grant = true;
        }
        std::printf("%-32s %-40s %s\n", printable(*row.at(0)->as_string()).c_str(), fp.c_str(),
                    svcs.empty() ? "-" : svcs.c_str());
    }
    if (by_grant)
        std::printf("* registered with a relay grant: the relay knows only the grant's key, not the node's; the node's "
                    "key is in the grant file its owner gives you\n");
    std::fflush(stdout);
    return 0;
}

}  // namespace kith::cli
