// kith grant: create, list, revoke and re-rate the grants of this machine's
// node. With the node running they act on it at once (through its "grants"
// service, as a member of its cluster); with it stopped, on its stored table.

#include <cstdio>

#include "cli.hpp"
#include "commands.hpp"
#include "json_term.hpp"
#include "kith/builtin.hpp"

namespace kith::cli {

namespace {

const char* kGrantUsage = R"(usage: kith grant create LABEL --services S[,S...] [--rate R/s] [--expires 30d] --out FILE
       kith grant list [--json]
       kith grant revoke LABEL
       kith grant rate LABEL R/s

Grants let a friend use exactly the services you name on your node, at a
rate, until you revoke them. `create` writes a grant file (mode 0600) for the
friend: it holds a secret key, so hand it over privately. The friend then runs
  kith call --grant FILE YOURNODE SERVICE FUNCTION [ARG...]

  --services S,...  services, or SERVICE:NAME for one function or actor type
                    (kvs,echo:echo)
  --rate R/s        requests per second, "10/s" or "10/s,burst=20" (default 10/s, burst 20)
  --expires T       lifetime: 45s, 30m, 12h or 30d (default: never)
  --out FILE        where to write the grant file
  --json            list as JSON

These act on this machine's running node (--port, default 4370, and the key
directory) at once; when it is not running, on its stored grant table, used
at its next start (--name and --advertise then say what the file announces).
  --port P --key-dir D --cookie C --name N --advertise EP --timeout S
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
    throw cli_error{"grant: --expires wants 45s, 30m, 12h or 30d (got '" + v + "')", kUsage};
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
    explicit grant_admin(const args& a) {
        int port = a.has("--port") ? parse_port("grant: --port", a.get("--port"), 1) : 4370;
        if (a.has("--timeout")) timeout_ = parse_seconds("--timeout", a.get("--timeout"));
        node_options o = hidden_client_options(a, "kith-grant");
        std::filesystem::path dir = o.net.key_dir.empty() ? default_key_dir() : o.net.key_dir;
        std::optional<public_key> key = local_node_key(dir);
        if (key) {
            client_ = std::make_unique<kith::node>(o);
            auto r = client_->connect("tcp://127.0.0.1:" + std::to_string(port), *key, std::chrono::milliseconds(700));
            if (r) {
                remote_ = *r;
                return;
            }
            if (r.code() != errc::timeout)  // something is there, and it refused us
                fail("the node at 127.0.0.1:" + std::to_string(port) +
                         " refused us (is it started with another --cookie? pass the same one)",
                     r.err());
            client_->stop();
            client_.reset();
        }
        // Stopped: act on the stored table with the node's own identity.
        o.name = full_node_name(a.get("--name", "kith"));
        o.net.advertise = a.get("--advertise", "tcp://" + hostname() + ":" + std::to_string(port));
        local_ = std::make_unique<kith::node>(o);
        local_->add_service(services::make_grant_admin(*local_));
    }
    ~grant_admin() {
        if (client_) client_->stop();
        if (local_) local_->stop();
    }
    bool running() const { return !remote_.empty(); }
    std::string where() const {
        return running() ? "node " + remote_ : "the stored table of " + local_->name() + " (node not running)";
    }
    term call(const std::string& fn, term args) {
        auto r = running() ? client_->call(remote_, "grants", fn, std::move(args), timeout_)
                           : local_->call(local_->name(), "grants", fn, std::move(args), timeout_);
        if (!r) fail("grant " + fn + " on " + where(), r.err());
        return std::move(*r);
    }

private:
    std::unique_ptr<kith::node> client_, local_;
    std::string remote_;
    std::chrono::milliseconds timeout_{5000};
};

const std::set<std::string> kAdminOpts = {"--port", "--key-dir", "--cookie", "--name", "--advertise", "--timeout"};

}  // namespace

int cmd_grant(int argc, char** argv) {
    std::string sub = argc > 0 ? argv[0] : "";
    if (sub.empty() || sub == "--help" || sub == "-h") {
        std::fputs(kGrantUsage, sub.empty() ? stderr : stdout);
        return sub.empty() ? kUsage : 0;
    }
    std::set<std::string> value_opts = kAdminOpts;
    std::set<std::string> flags;
    if (sub == "create") value_opts.insert({"--services", "--rate", "--expires", "--out"});
    else if (sub == "list") flags.insert("--json");
    else if (sub != "revoke" && sub != "rate")
        throw cli_error{"grant: unknown subcommand '" + sub + "' (create, list, revoke, rate)", kUsage};
    args a = parse_args("grant " + sub, argc - 1, argv + 1, value_opts, flags);
    if (a.has("--help")) {
        std::fputs(kGrantUsage, stdout);
        return 0;
    }
    std::size_t want = sub == "list" ? 0 : sub == "rate" ? 2 : 1;
    if (a.pos.size() != want) throw cli_error{"grant " + sub + ": wrong number of arguments (see kith grant --help)", kUsage};

    if (sub == "create") {
        if (!a.has("--services")) throw cli_error{"grant create: --services is required", kUsage};
        if (!a.has("--out")) throw cli_error{"grant create: --out FILE is required", kUsage};
        std::string scope;
        for (auto& s : a.list("--services")) scope += (scope.empty() ? "" : ",") + s;
        if (auto sc = parse_grant_scope(scope); !sc) throw cli_error{"grant create: --services: " + sc.err().detail, kUsage};
        term rate = nil;
        if (a.has("--rate")) {
            if (auto r = rate_limit::parse(a.get("--rate")); !r)
                throw cli_error{"grant create: --rate: " + r.err().detail, kUsage};
            rate = a.get("--rate");
        }
        term expires = nil;
        if (a.has("--expires")) expires = static_cast<long long>(parse_expiry(a.get("--expires")).count());
        grant_admin admin(a);
        term text = admin.call("create", arr(a.pos[0], scope, rate, expires));
        auto g = grant_file::parse(text.as_string() ? *text.as_string() : "");
        if (!g) throw cli_error{"grant create: the node returned a bad grant file: " + g.err().detail, kFailed};
        if (auto w = g->save(a.get("--out")); !w.ok())
            throw cli_error{"grant create: cannot write " + a.get("--out") + ": " + w.err().detail, kFailed};
        std::printf("grant '%s' on %s: %s; %s%s\nwritten to %s (mode 0600; it holds a secret key: hand it over privately)\n",
                    g->label.c_str(), g->node.c_str(), scope.c_str(), g->rate.to_string().c_str(),
                    g->expires ? ("; expires " + format_time(*g->expires)).c_str() : "", a.get("--out").c_str());
        if (!admin.running()) std::printf("note: %s; it takes effect when the node starts\n", admin.where().c_str());
        return 0;
    }
    grant_admin admin(a);
    if (sub == "list") {
        term list = admin.call("list", arr());
        if (a.has("--json")) {
            std::printf("%s\n", to_json(list).c_str());
            return 0;
        }
        std::printf("grants of %s\n", admin.where().c_str());
        if (list.size() == 0) std::printf("(none)\n");
        for (std::size_t i = 0; i < list.size(); ++i) std::printf("%s\n", to_json(*list.at(i)).c_str());
        return 0;
    }
    if (sub == "revoke") {
        admin.call("revoke", arr(a.pos[0]));
        std::printf("revoked '%s' on %s\n", a.pos[0].c_str(), admin.where().c_str());
        return 0;
    }
    if (auto r = rate_limit::parse(a.pos[1]); !r) throw cli_error{"grant rate: " + r.err().detail, kUsage};
    admin.call("set_rate", arr(a.pos[0], a.pos[1]));
    std::printf("rate of '%s' is now %s on %s\n", a.pos[0].c_str(), a.pos[1].c_str(), admin.where().c_str());
    return 0;
}

}  // namespace kith::cli
