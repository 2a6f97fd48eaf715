#include "cli.hpp"

#include <netdb.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <kith/platform.hpp>

#include "json_term.hpp"
#include "local.hpp"
#include "relay_host.hpp"

namespace kith::cli {

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, sep))
        if (!item.empty()) out.push_back(item);
    return out;
}

std::vector<std::string> args::list(const std::string& o) const {
    std::vector<std::string> out;
    auto it = opts.find(o);
    if (it == opts.end()) return out;
    for (auto& v : it->second)
        for (auto& s : split(v, ',')) out.push_back(s);
    return out;
}

args parse_args(const std::string& cmd, int argc, char** argv, const std::set<std::string>& value_opts,
                const std::set<std::string>& flag_opts) {
    args a;
    bool options_done = false;
    for (int i = 0; i < argc; ++i) {
        std::string s = argv[i];
        if (!options_done && s == "-h") s = "--help";  // as `kith -h`
        if (options_done || s.size() < 3 || s.compare(0, 2, "--") != 0) {
            // Negative numbers and "-" are values, not options.
            a.pos.push_back(s);
            continue;
        }
        if (s == "--") {
            options_done = true;
            continue;
        }
        std::string value;
        bool inline_value = false;
        if (auto eq = s.find('='); eq != std::string::npos) {
            value = s.substr(eq + 1);
            s = s.substr(0, eq);
            inline_value = true;
        }
        if (s == "--help" || flag_opts.count(s)) {
            if (inline_value) throw cli_error{cmd + ": option " + s + " takes no value", kUsage};
            a.flags.insert(s);
        } else if (value_opts.count(s)) {
            if (!inline_value) {
                if (i + 1 >= argc) throw cli_error{cmd + ": option " + s + " needs a value", kUsage};
                value = argv[++i];
            }
            a.opts[s].push_back(value);
        } else {
            throw cli_error{cmd + ": unknown option '" + s + "' (see kith " + cmd + " --help)", kUsage};
        }
    }
    return a;
}

std::string hostname() {
    char buf[256] = {0};
    if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
    std::string h(buf);
    // Node names allow [A-Za-z0-9_.-] in the host part.
    for (char& c : h)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')) c = '-';
    return h;
}

std::string full_node_name(const std::string& name) {
    return name.find('@') == std::string::npos ? name + "@" + hostname() : name;
}

std::chrono::milliseconds parse_seconds(const std::string& opt, const std::string& v, double max_s) {
    try {
        std::size_t used = 0;
        double s = std::stod(v, &used);
        if (used == v.size() && s >= 0 && s < max_s) return std::chrono::milliseconds(static_cast<long long>(s * 1000));
    } catch (...) {
    }
    throw cli_error{"option " + opt + " wants seconds, e.g. 5 or 0.5 (got '" + v + "')", kUsage};
}

std::uint16_t parse_port(const std::string& opt, const std::string& v, int lo) {
    int port = -1;
    try {
        std::size_t used = 0;
        port = std::stoi(v, &used);
        if (used != v.size()) port = -1;
    } catch (...) {
    }
    if (port < lo || port > 65535) throw cli_error{opt + " must be " + std::to_string(lo) + "..65535", kUsage};
    return static_cast<std::uint16_t>(port);
}

platform::tcp_endpoint parse_endpoint(const std::string& what, const std::string& v, platform::endpoint_use use) {
    auto e = platform::parse_tcp_endpoint(v, use);
    if (!e) throw cli_error{what + " " + e.err().detail, kUsage};
    return *e;
}

std::vector<std::string> parse_peers(const std::string& what, const args& a) {
    std::vector<std::string> out;
    for (auto& p : a.list("--peer"))
        out.push_back(parse_endpoint(what, p, platform::endpoint_use::dial_port_optional).host_port());
    return out;
}

term json_args(const std::vector<std::string>& v, std::size_t from) {
    term_array out;
    for (std::size_t i = from; i < v.size(); ++i) {
        auto t = parse_json(v[i]);
        if (!t)
            throw cli_error{"argument " + std::to_string(i - from + 1) + ": " + t.err().detail +
                                " (values are JSON: strings need quotes, e.g. '\"weather\"')",
                            kUsage};
        out.push_back(std::move(*t));
    }
    return term(std::move(out));
}

const char* kClientOptionsHelp = R"(finding nodes:
  --peer HOST:PORT  a node to ask directly (networks without broadcast); repeatable
  --interface IF    network interface for beacons (default: all; or $KITH_INTERFACE)
  --grant FILE      reach the node through a grant file that its owner gave you
                    (its endpoints first, then the relays it names)
  --relay-grant F   your grant for the relay a grant file names, when that
                    relay is not open to everyone (docs/relay.md)
  --cookie-file F   file holding the cluster cookie (default: $KITH_COOKIE,
                    else the cookie file in the key dir)
  --cookie C        the cookie on the command line (visible in ps: prefer
                    --cookie-file or KITH_COOKIE)
  --key-dir D       key directory (default: $KITH_HOME or ~/.kith)
  --port P          port of this machine's own node (default: found by name in
                    the key dir's registry of running nodes, else 4370)
  --timeout S       seconds to wait for an answer, and for the node to be
                    found (default: 5 for answers, 1.5 for finding)
  --beacon-port P   UDP port of the beacons (default: 4371)
  --broadcast ADDR  where to send beacon queries instead of each interface's
                    broadcast address (e.g. 127.255.255.255 on one machine)
)";

const std::set<std::string>& client_value_opts() {
    static const std::set<std::string> o = {"--peer", "--interface", "--grant",       "--cookie",   "--cookie-file", "--key-dir",
                                            "--port", "--timeout",   "--beacon-port", "--broadcast", "--relay-grant"};
    return o;
}

void fail(const std::string& what, const error& e) { throw cli_error{what + ": " + e.message(), kFailed}; }

bool name_matches(const std::string& full, const std::string& asked) {
    if (full == asked) return true;
    return asked.find('@') == std::string::npos && full.substr(0, full.find('@')) == asked;
}

std::optional<std::string> given_cookie(const args& a, std::string* source, bool warn) {
    if (a.has("--cookie")) {
        if (warn)
            std::fprintf(stderr,
                     "kith: warning: --cookie is visible to every user of this machine (ps); prefer "
                         "--cookie-file FILE or KITH_COOKIE\n");
        if (source) *source = "--cookie";
        auto c = a.get("--cookie");
        if (c.empty()) throw cli_error{"--cookie must not be empty", kUsage};
        return c;
    }
    if (a.has("--cookie-file")) {
        std::string file = a.get("--cookie-file");
        // The same checks as every secret kith reads: the user's own regular
        // file, not a link, mode 0600 (kith/platform.hpp).
        auto text = platform::read_private_file(file, 4096, "cookie file");
        if (!text) throw cli_error{"--cookie-file: " + text.err().detail, kFailed};
        if (!*text) throw cli_error{"--cookie-file " + file + ": no such file; write the class's cookie there first: "
                                    "echo COOKIE > " + file + " && chmod 600 " + file, kFailed};
        std::istringstream f(**text);
        std::string c;
        if (!f || !std::getline(f, c)) throw cli_error{"--cookie-file " + file + ": cannot read it", kFailed};
        while (!c.empty() && (c.back() == '\r' || c.back() == ' ' || c.back() == '\n')) c.pop_back();
        if (c.empty()) throw cli_error{"--cookie-file " + file + ": the file is empty", kFailed};
        if (source) *source = "--cookie-file " + file;
        return c;
    }
    if (const char* e = std::getenv("KITH_COOKIE"); e && *e) {
        if (source) *source = "$KITH_COOKIE";
        return std::string(e);
    }
    return std::nullopt;
}

void warn_if_weak(const std::string& cookie, const std::string& from) {
    auto why = weak_cookie_reason(cookie);
    if (why.empty()) return;
    std::fprintf(stderr,
                 "kith: warning: the cookie from %s is weak: %s. Anyone on the network can test guesses of it "
                 "offline; use a long random one (leave it out and kith creates one, or: head -c 24 /dev/urandom "
                 "| base64)\n",
                 from.c_str(), why.c_str());
}

std::string cookie_info::hint(const std::filesystem::path& key_dir) const {
    std::string file = (key_dir / "cookie").string();
    if (none)
        return "you gave no cookie: no --cookie and no cookie file " + file +
               "; give your class's cookie with --cookie C, or once: echo C > " + file + " && chmod 600 " + file;
    return "your cookie is from " + source + " (cluster id " + cluster + "); another one is --cookie C" +
           (source.rfind("the cookie file", 0) != 0 ? std::string() : ", or once: echo C > " + file + " && chmod 600 " + file);
}

node_options hidden_client_options(const args& a, const std::string& prefix, cookie_info* ci) {
    node_options o;
    o.name = prefix + "-" + std::to_string(getpid()) + "@" + hostname();
    o.workers = 1;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.hidden = true;
    // A one-shot command makes a call or two: no placer thread to start.
    o.net.network_cpu = kith::net_options::network_cpu_off;
    o.net.log = [](const kith::log_record&) {};
    if (a.has("--key-dir")) o.net.key_dir = a.get("--key-dir");
    std::filesystem::path dir = o.net.key_dir.empty() ? default_key_dir() : o.net.key_dir;
    cookie_info info;
    // One-shot commands warn only on a terminal: scripts read their stderr.
    const bool tty = ::isatty(2) == 1;
    if (auto c = given_cookie(a, &info.source, tty)) {
        o.net.cookie = *c;
        if (tty) warn_if_weak(*c, info.source);
    } else if (std::error_code ec; std::filesystem::exists(dir / "cookie", ec)) {
        info.source = "the cookie file " + (dir / "cookie").string();
    } else {
        // Never create a cookie file from a client: a random one would make
        // every classmate a stranger without a word. A throwaway one instead.
        o.net.cookie = "throwaway-" + keypair::generate().pub.z85();
        info.source = "none";
        info.none = true;
    }
    // (The cluster id is filled in from the node, client::client: computing
    // it costs the cookie's Argon2id.)
    if (ci) *ci = info;
    return o;
}

client::client(const args& a, bool auto_connect) {
    if (a.has("--timeout")) lookup_ = timeout_ = parse_seconds("--timeout", a.get("--timeout"));
    if (a.has("--port")) local_port_ = parse_port("--port", a.get("--port"), 1), port_given_ = true;
    const std::vector<std::string> peers = parse_peers("--peer", a);
    // A one-shot command asks its peers once: a name that does not resolve
    // would be asked nothing, without a word (a node retries it each interval).
    for (auto& p : peers) {
        const std::string host = p.substr(0, p.rfind(':') == std::string::npos ? p.size() : p.rfind(':'));
        addrinfo hints{}, *res = nullptr;
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_DGRAM;
        // Only "no such name" is the user's mistake; a resolver that is
        // down for now (EAI_AGAIN) leaves the peer to discovery's asking.
        const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
        if (rc == EAI_NONAME || rc == EAI_NODATA || rc == EAI_ADDRFAMILY || (rc == 0 && !res))
            throw cli_error{"--peer '" + p + "': '" + host + "' does not resolve to an IPv4 address (" +
                                ::gai_strerror(rc) + "); check the name, or give the node's IPv4 address",
                            kUsage};
        if (res) ::freeaddrinfo(res);
    }
    if (a.has("--grant")) {
        std::string file = a.get("--grant");
        // Refused before it is parsed, with the fix in the message.
        if (auto ok = platform::check_private_file(file, "grant file"); !ok) throw cli_error{ok.err().detail, kFailed};
        auto g = grant_file::load(file);
        if (!g) throw cli_error{"grant file " + file + ": " + g.err().detail, kFailed};
        grant_ = std::move(*g);
    }
    if (a.has("--relay-grant")) relay_grant_ = load_grant_file(a.get("--relay-grant"), "--relay-grant");
    node_options o = hidden_client_options(a, "kith-cli", &cookie_);
    key_dir_ = o.net.key_dir.empty() ? default_key_dir() : o.net.key_dir;
    node_ = std::make_unique<kith::node>(o);
    if (auto id = node_->cookie_key("beacon-cluster-id")) cookie_.cluster = cluster_id_hex(*id);
    if (!grant_) {
        discovery_options d;
        d.announce = false;
        d.auto_connect = auto_connect;
        d.interface = a.get("--interface");
        d.peers = peers;
        d.broadcast_address = a.get("--broadcast");
        if (a.has("--beacon-port")) d.port = parse_port("--beacon-port", a.get("--beacon-port"), 1);
        disc_ = std::make_unique<kith::discovery>(*node_, d);
    }
}

client::~client() {
    relay_.reset();
    if (disc_) disc_->stop();
    disc_.reset();
    if (node_) node_->stop();
}

std::optional<public_key> local_node_key(const std::filesystem::path& dir) {
    std::ifstream f(dir / "node.pub");
    std::string z85;
    if (!(f >> z85)) return std::nullopt;
    return public_key::from_z85(z85);
}

std::optional<std::string> client::try_local(const std::string& name) {
    // The node of this key directory on this machine, at --port (or 4370).
    auto key = local_node_key(key_dir_);
    if (!key) return std::nullopt;
    auto r = node_->connect("tcp://127.0.0.1:" + std::to_string(local_port_), *key, std::chrono::milliseconds(500));
    if (!r || !name_matches(*r, name)) return std::nullopt;
    return *r;
}

namespace {

// "revoked: revoked: x" -> "revoked: x".
std::string once(std::string m) {
    for (const char* p : {"revoked: ", "unauthorized: ", "timeout: "})
        for (std::string twice = std::string(p) + p; m.find(twice) != std::string::npos;)
            m.replace(m.find(twice), twice.size(), p);
    return m;
}

}  // namespace

std::string client::reach(const std::string& name) {
    if (grant_) {
        if (!name_matches(grant_->node, name))
            throw cli_error{"the grant file is for node " + grant_->node + ", not " + name, kFailed};
        // Direct endpoints first (half the time when there is a relay to
        // fall back to), then the relay routes.
        const bool relays = !grant_->relays.empty();
        result<std::string> r = error{errc::timeout, "no direct endpoint"};
        if (!grant_->endpoints.empty())
            r = node_->connect(*grant_, relays ? std::max(timeout_ / 2, std::chrono::milliseconds(1000)) : timeout_);
        if (r) return *r;
        const std::string what = "cannot reach " + grant_->node + " with the grant '" + grant_->label + "'";
        std::string where;
        for (auto& e : grant_->endpoints) where += (where.empty() ? "" : ", ") + e;
        if (relays && r.code() != errc::revoked) {
            std::string why;
            if (auto v = reach_via_relays(*node_, *grant_, relay_grant_ ? &*relay_grant_ : nullptr, timeout_, relay_, why))
                return *v;
            throw cli_error{what + ": " + (where.empty() ? why.substr(2) : "timeout: not answering at " + where + why),
                            kFailed};
        }
        if (r.code() == errc::revoked) {
            if (grant_->expires && std::chrono::system_clock::now() >= *grant_->expires)
                throw cli_error{what + ": revoked: it expired on " + format_utc(*grant_->expires) +
                                    "; ask the owner of " + grant_->node + " for a new grant",
                                kFailed};
            throw cli_error{what + ": revoked: its owner revoked it; ask the owner of " + grant_->node +
                                " for a new grant",
                            kFailed};
        }
        const std::string& d = r.err().detail;
        if (r.code() == errc::timeout || r.code() == errc::nodedown ||
            (r.code() == errc::unauthorized && (d.find("CURVE handshake") != std::string::npos ||
                                                d.find("wrong server key") != std::string::npos)))
            throw cli_error{what + ": timeout: " + grant_->node + " is not answering at " + where +
                                " (is its node running? those addresses come from the grant file; ask its owner)",
                            kFailed};
        throw cli_error{once(what + ": " + r.err().message()), kFailed};
    }
    // 1. This machine's nodes of our key directory (the registry kith node
    //    keeps), wherever they listen.
    std::vector<local_node> mine;
    for (auto& l : running_nodes(key_dir_))
        if (name_matches(l.name, name)) mine.push_back(l);
    if (mine.size() > 1) {
        std::string d = "\"" + name + "\" is ambiguous on this machine:";
        for (auto& l : mine) d += " " + l.name;
        throw cli_error{d + " (give the full name)", kFailed};
    }
    if (mine.size() == 1) {
        auto& l = mine.front();
        if (!l.cluster.empty() && !cookie_.cluster.empty() && l.cluster != cookie_.cluster)
            throw cli_error{"cannot reach " + l.name + ": unauthorized: it runs on this machine with another cookie "
                                "(cluster id " + l.cluster + "); " + cookie_.hint(key_dir_),
                            kFailed};
        // A node of this key directory: a member, by its member port.
        auto r = node_->connect(l.member_loopback(), l.key, timeout_);
        if (!r) fail("cannot reach " + l.name + " at " + l.member_loopback(), r.err());
        return *r;
    }
    // 2. Beacons (the LAN, --peer).
    auto seen = disc_->find(name, lookup_);
    if (seen) {
        if (seen->trust == trust_level::stranger && seen->services.empty())
            throw cli_error{"cannot reach " + seen->name + ": unauthorized: it is not in your cluster (its cookie "
                                "is another one: cluster id " + (seen->cluster_id.empty() ? "none" : seen->cluster_id) +
                                ") and it has no public service; " + cookie_.hint(key_dir_),
                            kFailed};
        // A stranger (another cluster's node) is used as a visitor, with this
        // node's own key: cluster credentials go only to members.
        // A member by its member port, if its beacon announced one.
        const std::string& ep = seen->trust == trust_level::cluster && !seen->member_endpoint.empty()
                                    ? seen->member_endpoint
                                    : seen->endpoint;
        auto r = seen->trust == trust_level::stranger ? node_->connect_visitor(ep, seen->key, timeout_)
                                                      : node_->connect(ep, seen->key, timeout_);
        if (!r) fail("cannot reach " + seen->name + " at " + ep, r.err());
        return *r;
    }
    if (seen.code() == errc::timeout)
        if (auto local = try_local(name)) return *local;
    if (seen.code() == errc::badarg) throw cli_error{seen.err().detail + " (give the full name)", kFailed};
    std::string d = "unknown node " + name + ": no node of that name answered";
    auto all = disc_->seen();
    if (all.empty()) {
        d += " and no node was seen at all (is it running? same network? docs/tutorial.md, \"When discovery finds "
             "nothing\")";
    } else {
        d += "; seen:";
        for (auto& s : all) d += " " + s.name + (s.trust == trust_level::stranger ? " (stranger)" : "");
        d += " (use one of these names, full or short)";
    }
    throw cli_error{d, kFailed};
}

}  // namespace kith::cli

#include <cstdio>

#include "commands.hpp"

namespace kith::cli {

int report(const cli_error& e) {
    std::string msg = e.message;
    // Library errors already say "kith: "; say it once.
    for (auto p = msg.find("kith: "); p != std::string::npos; p = msg.find("kith: ")) msg.erase(p, 6);
    std::fprintf(stderr, "kith: %s\n", msg.c_str());
    return e.code;
}

}  // namespace kith::cli
