// kith grant: create, list, revoke and re-rate the grants of this machine's
// node. With the node running they act on it at once (through its "grants"
// service, as a member of its cluster); with it stopped, on its stored table.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "cli.hpp"
#include "local.hpp"
#include "relay_host.hpp"
#include "commands.hpp"
#include "json_term.hpp"
#include "kith/builtin.hpp"
#include "kith/relay.hpp"
#include <algorithm>

namespace kith::cli {

namespace {

const char* kGrantUsage = R"(usage: kith grant create LABEL --services S[,S...] [--rate R/s] [--expires 30d] [--limits L]
                         [--via RELAYFILE] [--relay-names N[,N...]] [--relay-sessions N] [--relay-rate BYTES_PER_S]
                         --out FILE|- [--force]
       kith grant list [--json]
       kith grant revoke LABEL
       kith grant rate LABEL R/s
       kith grant limits LABEL [L] [--relay-names N,...] [--relay-sessions N] [--relay-rate B]
       kith grant show FILE [--json]

Grants let a friend use exactly the services you name on your node, at a
rate, until you revoke them. `create` writes a grant file (mode 0600) for the
friend: it holds a secret key, so hand it over privately. The friend then runs
  kith call --grant FILE YOURNODE SERVICE FUNCTION [ARG...]
and sees what it allows with
  kith grant show FILE
`rate` and `limits` change a grant after it was made (for its holder's next
request, on its live sessions too); `limits` replaces them all: a limit not
named goes back to its default ("default" resets every one). With
--relay-* options, `limits` replaces a relay grant's own limits at this
relay (from its holder's next register and dial).

  --services S,...  services, or SERVICE:NAME for one function or actor type
                    (kvs,echo:echo)
  --rate R/s        requests per second, "10/s", "10/s,burst=20" or "unlimited"
                    (default 10/s, burst 20)
  --expires T       lifetime: 45s, 30m, 12h or 30d (default: never)
  --limits L        what the friend may hold on your node at once, e.g.
                    pending=8,spawned=4: pending (calls in flight, default 64),
                    spawned (actors alive, default 256), queued (bytes waiting
                    in mailboxes, default 4194304), relations (monitors and
                    links, default 4096); any subset, each 1 to 16x its default
                    (default: all the defaults; see docs/security.md, "Bounds")
  --via RELAYFILE   the friend may also reach your node through this relay
                    (RELAYFILE: the relay grant you run kith node --relay
                    with; only its address and key go into the grant file,
                    never its secret); repeatable. The friend tries your
                    endpoints first, then the relay (docs/relay.md)
  --relay-names N,...  for a relay grant (--services relay, on a relay's
                    machine): the only node names its holder may register
                    there ("alice@home", or "alice@*" for any host); default:
                    any name not bound to another key
  --relay-sessions N   for a relay grant: relayed sessions at once to the
                    node registered with it, and from a dialler using it
                    (default: the relay's --max-sessions)
  --relay-rate B       for a relay grant: bytes per second each way of every
                    relayed session of its holder, at least 4096; it lowers
                    the relay's --bytes-per-s, never raises it (default: the
                    relay's)
  --out FILE        where to write the grant file: a new file (never anything
                    else); "-" writes it to standard output
  --force           replace FILE if it is an existing regular file of yours
  --json            list (or show) as JSON

These act on this machine's running node of the key directory (found by name
wherever it listens; --name N if several run, --port P to name its port) at
once. When none is running, list/revoke/rate/limits act on its stored grant table;
create then needs --name N (the node the grant is for: it takes effect when
that node starts) and announces this machine's addresses. --advertise
HOST:PORT: the grant file announces that instead, the node running or not.
  --port P --key-dir D --cookie-file F (or --cookie C) --name N --advertise HOST:PORT --timeout S
)";

std::chrono::seconds parse_expiry(const std::string& v) {
    try {
        std::size_t used = 0;
        long long n = std::stoll(v, &used);
        std::string unit = v.substr(used);
        long long mult = unit.empty() || unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : unit == "d" ? 86400 : 0;
        if (n > 0 && mult && n < 100LL * 365 * 86400 / mult) return std::chrono::seconds(n * mult);
    } catch (...) {
    }
    throw cli_error{"grant create: --expires wants 45s, 30m, 12h or 30d (got '" + v + "')", kUsage};
}

std::string format_time(std::chrono::system_clock::time_point t) {
    std::time_t tt = std::chrono::system_clock::to_time_t(t);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&tt));
    return buf;
}

// Either the running node (through its grants service) or the stored table
// (through a node of our own on the same key directory, not listening to
// anyone but loopback).
class grant_admin {
public:
    grant_admin(const args& a, bool need_name) {
        if (a.has("--timeout")) timeout_ = parse_seconds("--timeout", a.get("--timeout"));
        node_options o = hidden_client_options(a, "kith-grant");
        dir_ = o.net.key_dir.empty() ? default_key_dir() : o.net.key_dir;
        const std::string want = a.has("--name") ? a.get("--name") : "";
        // The running nodes of this key directory (its registry), or the one
        // at --port.
        std::vector<local_node> cands;
        if (!a.has("--port"))
            for (auto& l : running_nodes(dir_))
                if (want.empty() || name_matches(l.name, want)) cands.push_back(l);
        if (cands.size() > 1) {
            std::string d = "grant: several nodes of key directory " + dir_.string() + " run on this machine:";
            for (auto& l : cands) d += " " + l.name + " (port " + std::to_string(l.port) + ")";
            throw cli_error{d + "; say which with --name", kUsage};
        }
        std::optional<public_key> key = cands.empty() ? local_node_key(dir_) : std::optional(cands[0].key);
        std::string ep = cands.empty() ? "tcp://127.0.0.1:" + std::to_string(a.has("--port") ? parse_port(
                                                                  "grant: --port", a.get("--port"), 1)
                                                                                              : 4370)
                                       : cands[0].loopback();
        if (key && (!cands.empty() || a.has("--port") || running_nodes(dir_).empty())) {
            client_ = std::make_unique<kith::node>(o);
            auto r = client_->connect(ep, *key, std::chrono::milliseconds(cands.empty() ? 700 : 3000));
            if (r && (want.empty() || name_matches(*r, want))) {
                remote_ = *r;
                return;
            }
            if (!r && r.code() != errc::timeout)  // something is there, and it refused us
                fail("grant: the node at " + ep.substr(6) +
                         " refused us (is it started with another --cookie? pass the same one)",
                     r.err());
            client_->stop();
            client_.reset();
        }
        // Not running: act on the stored table with the node's own identity.
        if (need_name && want.empty()) {
            std::string d = "grant create: no node of key directory " + dir_.string() + " is running on this machine";
            auto others = running_nodes(dir_);
            for (auto& l : others) d += (&l == &others.front() ? "; running: " : ", ") + l.name;
            throw cli_error{d + "; start it (kith node --name N), or give --name N to store the grant for node N, "
                                "used when it starts",
                            kFailed};
        }
        port_ = a.has("--port") ? parse_port("grant: --port", a.get("--port"), 1) : 4370;
        o.name = full_node_name(want.empty() ? "kith-grant-table" : want);
        o.net.advertise = a.get("--advertise");
        local_ = std::make_unique<kith::node>(o);
        local_->add_service(services::make_grant_admin(*local_));
    }
    ~grant_admin() {
        if (client_) client_->stop();
        if (local_) local_->stop();
    }
    bool running() const { return !remote_.empty(); }
    std::uint16_t stored_port() const { return port_; }
    std::string where() const {
        return running() ? "node " + remote_
                         : "the stored table of key directory " + dir_.string() + " (no node of it is running)";
    }
    std::string node_name() const { return running() ? remote_ : local_->name(); }
    // The running node's services (from its handshake), empty if unknown.
    std::vector<std::string> services() const {
        if (!running()) return {};
        auto i = client_->info(remote_);
        return i ? i->services : std::vector<std::string>{};
    }
    term call(const std::string& fn, term args) {
        auto r = running() ? client_->call(remote_, "grants", fn, std::move(args), timeout_)
                           : local_->call(local_->name(), "grants", fn, std::move(args), timeout_);
        if (!r) {
            // One vocabulary: the docs say bad_args for a wrong argument.
            error e = r.err();
            throw cli_error{"grant " + (fn == "set_rate" ? std::string("rate") : fn == "set_limits" ? "limits" : fn) +
                                " on " + where() + ": " +
                                (e.code == errc::badarg ? "bad_args: " + e.detail : e.message()),
                            kFailed};
        }
        return std::move(*r);
    }

private:
    std::unique_ptr<kith::node> client_, local_;
    std::string remote_;
    std::filesystem::path dir_;
    std::uint16_t port_ = 4370;
    std::chrono::milliseconds timeout_{5000};
};

// Where a grant file goes: checked before the grant exists, written after.
// Never replaces anything but a regular file of ours, and that only with
// --force; never follows a symbolic link.
class out_file {
public:
    out_file(const std::string& path, bool force) : path_(path), force_(force) {
        if (path == "-") return;
        const std::string what = "grant create: --out " + path + ": ";
        struct stat st {};
        if (::lstat(path.c_str(), &st) == 0) {
            if (S_ISLNK(st.st_mode))
                throw cli_error{what + "is a symbolic link; kith writes grant files only to regular files (give "
                                       "the real path, or a new file name)",
                                kUsage};
            if (S_ISDIR(st.st_mode))
                throw cli_error{what + "is a directory; give a file name, e.g. " + path + "/bob.grant", kUsage};
            if (!S_ISREG(st.st_mode))
                throw cli_error{what + "is " +
                                    (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                                     : S_ISFIFO(st.st_mode)                     ? "a FIFO"
                                                                               : "not a regular file") +
                                    "; a grant file is written only to a regular file (use --out - for standard "
                                    "output)",
                                kUsage};
            if (!force)
                throw cli_error{what + "exists; pass --force to replace it, or choose another file", kUsage};
            if (st.st_uid != ::geteuid())
                throw cli_error{what + "belongs to another user; kith replaces only your own files", kUsage};
        } else if (errno != ENOENT) {
            throw cli_error{what + std::strerror(errno), kFailed};
        }
        // A temporary file next to it, made now: a directory we cannot write
        // is found before the grant is created.
        std::filesystem::path p(path);
        std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
        tmp_ = dir + "/." + p.filename().string() + ".XXXXXX";
        fd_ = ::mkostemp(tmp_.data(), O_CLOEXEC);
        if (fd_ < 0) throw cli_error{what + "cannot write in " + dir + ": " + std::strerror(errno), kFailed};
        ::fchmod(fd_, 0600);
    }
    ~out_file() {
        if (fd_ >= 0) ::close(fd_);
        if (!tmp_.empty() && !done_) ::unlink(tmp_.c_str());
    }
    bool to_stdout() const { return path_ == "-"; }
    // Writes and puts the file in place. An error message, or "".
    std::string commit(const std::string& text) {
        if (to_stdout()) {
            std::fwrite(text.data(), 1, text.size(), stdout);
            return std::fflush(stdout) == 0 ? "" : std::string("standard output: ") + std::strerror(errno);
        }
        std::size_t off = 0;
        while (off < text.size()) {
            auto w = ::write(fd_, text.data() + off, text.size() - off);
            if (w <= 0) return std::strerror(errno);
            off += static_cast<std::size_t>(w);
        }
        if (::fsync(fd_) != 0) return std::strerror(errno);
        ::close(fd_);
        fd_ = -1;
        if (force_) {
            struct stat st {};
            if (::lstat(path_.c_str(), &st) == 0 && (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid()))
                return "it changed into something else than a regular file of yours meanwhile";
            if (::rename(tmp_.c_str(), path_.c_str()) != 0) return std::strerror(errno);
        } else {
            // link(2) never replaces: something that appeared meanwhile stays.
            if (::link(tmp_.c_str(), path_.c_str()) != 0) return errno == EEXIST ? "it appeared meanwhile" : std::strerror(errno);
            ::unlink(tmp_.c_str());
        }
        done_ = true;
        return "";
    }

private:
    std::string path_, tmp_;
    bool force_;
    int fd_ = -1;
    bool done_ = false;
};

// No node has used key directory `dir`: it has neither a node key nor a
// grant table (then nothing may be created there by a read-only command).
bool no_grant_table(const std::filesystem::path& dir) {
    std::error_code ec;
    return !std::filesystem::exists(dir / "grants", ec) && !std::filesystem::exists(dir / "node.key", ec) &&
           !std::filesystem::exists(dir / "node.pub", ec);
}

std::string format_rate(const term& t) { return t.as_string() ? *t.as_string() : to_json(t); }

const std::set<std::string> kAdminOpts = {"--port", "--key-dir", "--cookie", "--cookie-file", "--name", "--advertise", "--timeout"};

}  // namespace

int cmd_grant(int argc, char** argv) {
    std::string sub = argc > 0 ? argv[0] : "";
    if (sub.empty() || sub == "--help" || sub == "-h") {
        std::fputs(kGrantUsage, sub.empty() ? stderr : stdout);
        return sub.empty() ? kUsage : 0;
    }
    std::set<std::string> value_opts = kAdminOpts;
    std::set<std::string> flags;
    if (sub == "create")
        value_opts.insert({"--services", "--rate", "--expires", "--limits", "--out", "--via", "--relay-names",
                           "--relay-sessions", "--relay-rate"}),
            flags.insert("--force");
    else if (sub == "list" || sub == "show") flags.insert("--json");
    else if (sub == "limits") value_opts.insert({"--relay-names", "--relay-sessions", "--relay-rate"});
    else if (sub != "revoke" && sub != "rate" && sub != "limits")
        throw cli_error{"grant: unknown subcommand '" + sub + "' (create, list, revoke, rate, limits, show)", kUsage};
    args a = parse_args("grant " + sub, argc - 1, argv + 1, value_opts, flags);
    if (a.has("--help")) {
        std::fputs(kGrantUsage, stdout);
        return 0;
    }
    // HOST:PORT is tcp://HOST:PORT; checked before any node or file is made.
    if (a.has("--advertise"))
        a.opts["--advertise"] = {
            parse_endpoint("grant " + sub + ": --advertise", a.get("--advertise"), platform::endpoint_use::dial).zmq()};
    std::size_t want = sub == "list" ? 0 : sub == "rate" || sub == "limits" ? 2 : 1;
    // A relay grant's own limits alone: kith grant limits LABEL --relay-sessions 2.
    const std::optional<relay_grant_limits> relay_limits = sub == "limits" ? relay_limits_of(a, "grant limits")
                                                                           : std::nullopt;
    if (relay_limits && a.pos.size() == 1) want = 1;
    if (a.pos.size() != want) {
        std::string extra;  // what was given, so that a stray word is seen
        for (auto& p : a.pos) extra += (extra.empty() ? "" : " ") + std::string("'") + p + "'";
        const char* what = sub == "create" ? "one LABEL, the name you give this grant (kith grant create bob "
                                             "--services kvs --out bob.grant)"
                           : sub == "revoke" ? "the LABEL of the grant to revoke (kith grant list shows them)"
                           : sub == "rate"   ? "a LABEL and a rate (kith grant rate bob 20/s)"
                           : sub == "limits" ? "a LABEL and limits (kith grant limits bob pending=8,spawned=4; "
                                               "for a relay grant's own: --relay-sessions N ...)"
                           : sub == "show"   ? "the grant FILE to show (kith grant show bob.grant)"
                                             : "no argument";
        throw cli_error{"grant " + sub + " takes " + what + "; got " +
                            (extra.empty() ? std::string("none") : extra) + " (see kith grant --help)",
                        kUsage};
    }
    if (sub == "create" && (a.pos[0].empty() || a.pos[0].size() > 64 ||
                            a.pos[0].find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
                                std::string::npos))
        throw cli_error{"grant create: bad label '" + a.pos[0] + "': use 1-64 of A-Z a-z 0-9 . _ - (e.g. bob)", kUsage};

    if (sub == "create") {
        if (!a.has("--services")) throw cli_error{"grant create: --services is required: what the friend may use (e.g. --services kvs, or kvs,echo:echo)", kUsage};
        if (!a.has("--out")) throw cli_error{"grant create: --out FILE is required: where to write the grant file for your friend (--out - prints it)", kUsage};
        std::string scope;
        for (auto& s : a.list("--services")) scope += (scope.empty() ? "" : ",") + s;
        if (auto sc = parse_grant_scope(scope); !sc) throw cli_error{"grant create: --services: " + sc.err().detail, kUsage};
        term rate = nil;
        if (a.has("--rate")) {
            if (auto r = rate_limit::parse(a.get("--rate")); !r)
                throw cli_error{"grant create: --rate: " + r.err().detail, kUsage};
            rate = a.get("--rate");
        }
        term limits_arg = nil;  // the grant's own limits (kith::grant_limits)
        if (a.has("--limits")) {
            auto l = grant_limits::parse(a.get("--limits"));
            if (!l) throw cli_error{"grant create: --limits: " + l.err().detail, kUsage};
            limits_arg = l->to_string();
        }
        term expires = nil;
        if (a.has("--expires")) expires = static_cast<long long>(parse_expiry(a.get("--expires")).count());
        std::vector<grant_file::relay_route> routes;  // --via: read before the grant exists
        if (auto it = a.opts.find("--via"); it != a.opts.end())
            for (auto& f : it->second)
                for (auto& r : relay_routes_of(load_grant_file(f, "grant create: --via"))) routes.push_back(r);
        // The relay grant's own limits (kith/relay.hpp), checked before the grant exists.
        std::optional<relay_grant_limits> limits = relay_limits_of(a, "grant create");
        if (limits && !parse_grant_scope(scope)->count("relay"))
            throw cli_error{"grant create: --relay-names, --relay-sessions and --relay-rate are for a relay grant: "
                            "add --services relay",
                            kUsage};
        out_file out(a.get("--out"), a.has("--force"));  // checked before the grant exists
        grant_admin admin(a, true);
        const grant_scope asked = *parse_grant_scope(scope);
        if (auto have = admin.services(); !have.empty())
            for (auto& [svc, names] : asked)
                if (std::find(have.begin(), have.end(), svc) == have.end()) {
                    std::string list;
                    for (auto& h : have)
                        if (h != "grants" && h != "node") list += (list.empty() ? "" : ", ") + h;
                    throw cli_error{"grant create: bad_args: node " + admin.node_name() + " has no service \"" + svc +
                                        "\" (it has: " + list + ")",
                                    kUsage};
                }
        // The limits go as a fifth argument only when given: a node of an
        // earlier release takes the four.
        term text = admin.call("create", limits_arg.is_nil() ? arr(a.pos[0], scope, rate, expires)
                                                             : arr(a.pos[0], scope, rate, expires, limits_arg));
        auto g = grant_file::parse(text.as_string() ? *text.as_string() : "");
        if (!g) throw cli_error{"grant create: the node returned a bad grant file: " + g.err().detail, kFailed};
        // Endpoints a friend can reach: --advertise when given (the node
        // running or not); else never loopback (their own machine) unless the
        // node listens nowhere else.
        std::vector<std::string> eps;
        if (a.has("--advertise")) {
            eps.push_back(a.get("--advertise"));  // tcp://HOST:PORT (checked above)
        } else if (!admin.running()) {
            for (auto& ip : lan_addresses()) eps.push_back("tcp://" + ip + ":" + std::to_string(admin.stored_port()));
        } else {
            for (auto& e : g->endpoints)
                if (!is_loopback_endpoint(e)) eps.push_back(e);
        }
        if (!eps.empty()) g->endpoints = eps;
        g->relays = routes;
        if (auto err = out.commit(g->to_text()); !err.empty()) {
            // Not handed out: take it back, and say so.
            bool revoked = true;
            try {
                admin.call("revoke", arr(a.pos[0]));
            } catch (const cli_error&) {
                revoked = false;
            }
            throw cli_error{"grant create: cannot write " + a.get("--out") + ": " + err +
                                (revoked ? "; the grant '" + a.pos[0] + "' was revoked at once (nothing was handed "
                                                                        "out); create it again under another label"
                                         : "; revoke the grant: kith grant revoke " + a.pos[0]),
                            kFailed};
        }
        if (limits) {
            std::filesystem::path dir = a.has("--key-dir") ? std::filesystem::path(a.get("--key-dir")) : default_key_dir();
            if (auto r = set_relay_grant_limits(dir, a.pos[0], *limits); !r.ok())
                throw cli_error{"grant create: the grant '" + a.pos[0] + "' was made, but its relay limits could not "
                                    "be saved (" + r.err().detail + "): revoke it (kith grant revoke " + a.pos[0] +
                                    ") and create it again",
                                kFailed};
        }
        FILE* info = out.to_stdout() ? stderr : stdout;
        std::string eplist;
        for (auto& e : g->endpoints) eplist += (eplist.empty() ? "" : " ") + e;
        std::fprintf(info, "grant '%s' on %s: %s; %s%s%s\n", g->label.c_str(), g->node.c_str(), scope.c_str(),
                     g->rate.to_string().c_str(), g->expires ? ("; expires " + format_time(*g->expires)).c_str() : "",
                     limits_arg.is_nil() ? "" : ("; limits " + *limits_arg.as_string()).c_str());
        std::fprintf(info, "endpoints %s\n", eplist.c_str());
        for (auto& r : g->relays) std::fprintf(info, "relay %s %s\n", r.node.c_str(), r.endpoint.c_str());
        if (limits) {
            std::string names;
            for (auto& n : limits->names) names += (names.empty() ? "" : ",") + n;
            std::fprintf(info, "at this relay: may register %s; %s relayed sessions at once; %s\n",
                         names.empty() ? "any free name" : names.c_str(),
                         limits->max_sessions ? std::to_string(limits->max_sessions).c_str() : "the relay's",
                         limits->max_bytes_per_s
                             ? ("at most " + std::to_string(limits->max_bytes_per_s) + " bytes/s each way").c_str()
                             : "the relay's bytes/s");
        }
        if (out.to_stdout())
            std::fprintf(info, "written to standard output (it holds a secret key: hand it over privately)\n");
        else
            std::fprintf(info, "written to %s (mode 0600; it holds a secret key: hand it over privately)\n",
                         a.get("--out").c_str());
        if (!admin.running())
            std::fprintf(info, "note: %s is not running; the grant is in %s and takes effect "
                               "when %s starts\n",
                         g->node.c_str(), admin.where().c_str(), g->node.c_str());
        return 0;
    }
    if (sub == "show") return grant_show(a.pos[0], a.has("--json"));
    if (sub == "limits" && a.pos.size() == 2)
        if (auto l = grant_limits::parse(a.pos[1]); !l) throw cli_error{"grant limits: " + l.err().detail, kUsage};
    // A key directory no node has used has no grant table: say so, without
    // making a node (which would create its key and cookie files there).
    if (std::filesystem::path dir = a.has("--key-dir") ? std::filesystem::path(a.get("--key-dir")) : default_key_dir();
        !a.has("--port") && no_grant_table(dir)) {
        const std::string why = "key directory " + dir.string() + " has no grant table: no node has run with it "
                                "and no grant was made there";
        if (sub == "list") {
            if (a.has("--json")) std::printf("[]\n");
            else std::printf("grants of key directory %s: none (%s; kith grant create makes one)\n",
                             dir.string().c_str(), "no node has run with it yet");
            return 0;
        }
        throw cli_error{"grant " + sub + ": no grant labelled \"" + a.pos[0] + "\": " + why +
                            " (a node's grants are in its own key directory: pass --key-dir DIR, or run this as "
                            "the node's user)",
                        kFailed};
    }
    grant_admin admin(a, false);
    if (sub == "list") {
        term list = admin.call("list", arr());
        if (a.has("--json")) {
            std::printf("%s\n", to_json(list).c_str());
            return 0;
        }
        std::printf("grants of %s\n", admin.where().c_str());
        if (list.size() == 0) {
            std::printf("(none)\n");
            return 0;
        }
        std::printf("%-12s %-20s %-16s %-20s %-8s %-9s %-30s %s\n", "LABEL", "ALLOW", "RATE", "EXPIRES", "STATE",
                    "CONNECTED", "USED (ok/refused/rate-limited)", "LIMITS");
        for (std::size_t i = 0; i < list.size(); ++i) {
            const term& g = *list.at(i);
            auto field = [&](const char* k) -> term {
                auto v = g.lookup(term(std::string(k)));
                return v ? *v : term();
            };
            auto str = [&](const char* k) {
                term v = field(k);
                return v.as_string() ? *v.as_string() : v.is_nil() ? std::string("never") : to_json(v);
            };
            auto yes = [&](const char* k) {
                term v = field(k);  // held here: get_if points into it
                const bool* b = v.get_if<bool>();
                return b && *b;
            };
            std::string state = yes("revoked") ? "revoked" : yes("expired") ? "expired" : "active";
            const std::string used = to_json(field("accepted")) + "/" + to_json(field("refused")) + "/" +
                                     to_json(field("rate_limited"));
            std::printf("%-12s %-20s %-16s %-20s %-8s %-9s %-30s %s\n", str("label").c_str(), str("scope").c_str(),
                        format_rate(field("rate")).c_str(), str("expires").c_str(), state.c_str(),
                        yes("connected") ? "yes" : "no", used.c_str(),
                        field("limits").is_nil() ? "default" : str("limits").c_str());
        }
        return 0;
    }
    if (sub == "revoke") {
        // Revoking twice changes nothing: say so rather than "revoked".
        std::string before;
        term list = admin.call("list", arr());
        for (std::size_t i = 0; i < list.size(); ++i) {
            const term& g = *list.at(i);
            auto is = [&](const char* k) {
                auto v = g.lookup(term(std::string(k)));
                return v && v->get_if<bool>() && *v->get_if<bool>();
            };
            auto label = g.lookup(term(std::string("label")));
            if (label && label->as_string() && *label->as_string() == a.pos[0])
                before = is("revoked") ? "revoked" : is("expired") ? "expired" : "";
        }
        admin.call("revoke", arr(a.pos[0]));
        if (before == "revoked")
            std::printf("'%s' was already revoked on %s; nothing changed\n", a.pos[0].c_str(), admin.where().c_str());
        else
            std::printf("revoked '%s' on %s%s\n", a.pos[0].c_str(), admin.where().c_str(),
                        before == "expired" ? " (it had expired already)" : "");
        return 0;
    }
    if (sub == "limits") {
        if (relay_limits) {  // checked first: a relay grant of this node, not revoked
            std::string scope, state;
            term list = admin.call("list", arr());
            for (std::size_t i = 0; i < list.size(); ++i) {
                const term& g = *list.at(i);
                auto label = g.lookup(term(std::string("label")));
                if (!label || !label->as_string() || *label->as_string() != a.pos[0]) continue;
                auto sc = g.lookup(term(std::string("scope")));
                auto rv = g.lookup(term(std::string("revoked")));
                scope = sc && sc->as_string() ? *sc->as_string() : "";
                state = rv && rv->get_if<bool>() && *rv->get_if<bool>() ? "revoked" : "ok";
            }
            if (state.empty() || state == "revoked")
                throw cli_error{"grant limits on " + admin.where() + ": bad_args: " +
                                    (state.empty() ? "no grant labelled \"" + a.pos[0] + "\" (kith grant list shows them)"
                                                   : "the grant \"" + a.pos[0] + "\" is revoked: it can never be used again, so its "
                                                     "limits cannot change; issue a new grant under another label"),
                                kFailed};
            if (!parse_grant_scope(scope) || !parse_grant_scope(scope)->count("relay"))
                throw cli_error{"grant limits: --relay-names, --relay-sessions and --relay-rate are for a relay grant; "
                                "'" + a.pos[0] + "' allows " + scope,
                                kUsage};
        }
        if (a.pos.size() == 2) {
            term now = admin.call("set_limits", arr(a.pos[0], a.pos[1]));
            auto l = grant_limits::parse(now.as_string() ? *now.as_string() : a.pos[1]);
            std::printf("limits of '%s' are now %s on %s: %s (from its holder's next request)\n", a.pos[0].c_str(),
                        now.as_string() ? now.as_string()->c_str() : a.pos[1].c_str(), admin.where().c_str(),
                        l ? describe_limits(*l).c_str() : "?");
        }
        if (relay_limits) {
            std::filesystem::path dir = a.has("--key-dir") ? std::filesystem::path(a.get("--key-dir")) : default_key_dir();
            if (auto r = set_relay_grant_limits(dir, a.pos[0], *relay_limits); !r.ok())
                throw cli_error{"grant limits: the relay limits of '" + a.pos[0] + "' could not be saved: " +
                                    r.err().detail,
                                kFailed};
            std::string names;
            for (auto& n : relay_limits->names) names += (names.empty() ? "" : ",") + n;
            std::printf("at this relay, '%s' may now register %s; %s relayed sessions at once; %s (from its next "
                        "register and dial; sessions open now keep theirs)\n",
                        a.pos[0].c_str(), names.empty() ? "any free name" : names.c_str(),
                        relay_limits->max_sessions ? std::to_string(relay_limits->max_sessions).c_str() : "the relay's",
                        relay_limits->max_bytes_per_s
                            ? ("at most " + std::to_string(relay_limits->max_bytes_per_s) + " bytes/s each way").c_str()
                            : "the relay's bytes/s");
        }
        return 0;
    }
    if (auto r = rate_limit::parse(a.pos[1]); !r) throw cli_error{"grant rate: " + r.err().detail, kUsage};
    admin.call("set_rate", arr(a.pos[0], a.pos[1]));
    std::printf("rate of '%s' is now %s on %s\n", a.pos[0].c_str(), a.pos[1].c_str(), admin.where().c_str());
    return 0;
}

}  // namespace kith::cli
