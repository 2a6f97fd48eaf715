// Shared pieces of the `kith` command line: option parsing, errors, and the
// short-lived client node that the one-shot commands (call, cast, send,
// spawn, ping, nodes, grant) use to reach other nodes.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kith/discovery.hpp"
#include "kith/platform.hpp"
#include "kith/node.hpp"
#include "kith/relay.hpp"
#include "text.hpp"

namespace kith::cli {

// Exit codes: 0 success; 1 the operation failed (unknown node, a remote
// error, refused, timeout); 2 bad usage (unknown option, bad JSON).
constexpr int kFailed = 1;
constexpr int kUsage = 2;

// A usage or runtime error that ends the command: printed as one line on
// stderr, "kith: <message>", with its exit code.
struct cli_error {
    std::string message;
    int code = kFailed;
};

// Parsed command line of one subcommand.
struct args {
    std::vector<std::string> pos;
    std::map<std::string, std::vector<std::string>> opts;  // repeatable
    std::set<std::string> flags;

    bool has(const std::string& o) const { return opts.count(o) || flags.count(o); }
    std::string get(const std::string& o, const std::string& def = {}) const {
        auto it = opts.find(o);
        return it == opts.end() ? def : it->second.back();
    }
    // Every value of a repeatable option, comma lists split.
    std::vector<std::string> list(const std::string& o) const;
};

// `value_opts` take a value ("--name N"); `flag_opts` don't. "--help" is
// always a flag. Throws cli_error{kUsage} for an unknown option or a missing
// value.
args parse_args(const std::string& cmd, int argc, char** argv, const std::set<std::string>& value_opts,
                const std::set<std::string>& flag_opts = {});

std::vector<std::string> split(const std::string& s, char sep);
std::string hostname();
// "gandalf" -> "gandalf@<hostname>"; full names unchanged.
std::string full_node_name(const std::string& name);
// "5", "0.5" seconds (below `max_s`) -> duration; throws cli_error{kUsage}.
std::chrono::milliseconds parse_seconds(const std::string& opt, const std::string& v, double max_s = 1e6);
// A port number in lo..65535; throws cli_error{kUsage} naming the option.
std::uint16_t parse_port(const std::string& opt, const std::string& v, int lo);
// The value of an endpoint option (platform::parse_tcp_endpoint): HOST:PORT
// means tcp://HOST:PORT. `what` names the command and option ("node:
// --listen"). Throws cli_error{kUsage}: "<what> '<text>' <what is wrong>; e.g. ...".
platform::tcp_endpoint parse_endpoint(const std::string& what, const std::string& v, platform::endpoint_use use);
// Every --peer value (repeatable, comma lists), as HOST or HOST:PORT.
std::vector<std::string> parse_peers(const std::string& what, const args& a);
// Each argument a JSON value; throws cli_error{kUsage} naming the bad one.
term json_args(const std::vector<std::string>& v, std::size_t from);

// The public key of the node of key directory `dir` (its node.pub), if any.
std::optional<public_key> local_node_key(const std::filesystem::path& dir);

// Where the cookie of a command comes from, and how to set it; for hints.
struct cookie_info {
    std::string source;   // "--cookie", "--cookie-file F", "$KITH_COOKIE", "the cookie file D/cookie", or "none"
    std::string cluster;  // our cluster id (8 hex), "" if none
    bool none = false;    // neither --cookie nor a cookie file: a throwaway cookie
    // "your cookie: from ... (cluster id ...); set it with --cookie C or ..."
    std::string hint(const std::filesystem::path& key_dir) const;
};

// The cookie a command was given, in this order: --cookie C (with a
// warning on stderr if `warn`: it is visible to every user in `ps`), --cookie-file
// FILE (mode 0600 or stricter; its first line), $KITH_COOKIE. nullopt: none
// given (the key directory's cookie file is used). `source` says which.
// Throws cli_error for an unreadable, loose or empty cookie file.
std::optional<std::string> given_cookie(const args& a, std::string* source = nullptr, bool warn = true);
// Prints a warning on stderr when `cookie` is easy to guess
// (kith::weak_cookie_reason). `from` names where it came from.
void warn_if_weak(const std::string& cookie, const std::string& from);

// Options every client command accepts.
extern const char* kClientOptionsHelp;
const std::set<std::string>& client_value_opts();

// Options of the short-lived, hidden node a one-shot command runs as, named
// <prefix>-<pid>@<host>: one worker, loopback only, no diagnostics on stderr
// (failures come back as values), --cookie and --key-dir applied.
// Without --cookie and without a cookie file, a throwaway random cookie is
// used (never saved: a client never creates the key directory's cookie).
node_options hidden_client_options(const args& a, const std::string& prefix, cookie_info* ci = nullptr);

// The short-lived, hidden node a one-shot command runs as. It listens on
// loopback only (answers come back over the connection it opens), never
// announces itself, and finds nodes by asking for beacons (--peer for
// networks without broadcast), by a grant file (--grant), or, on this
// machine, at the local node of the same key directory.
class client {
public:
    // auto_connect: connect to cluster members as their beacons arrive (watch).
    explicit client(const args& a, bool auto_connect = false);
    ~client();
    kith::node& node() { return *node_; }
    kith::discovery* discovery() { return disc_.get(); }
    std::chrono::milliseconds timeout() const { return timeout_; }
    const cookie_info& cookie() const { return cookie_; }
    const std::filesystem::path& key_dir() const { return key_dir_; }
    // Connects to the node called `name` (full or short) and returns its
    // full name. With a grant file: its endpoints first, then its relay
    // routes (relay_host.hpp). Throws cli_error: unknown or ambiguous name (listing what it
    // can see), refused, revoked, timeout.
    std::string reach(const std::string& name);

private:
    std::optional<std::string> try_local(const std::string& name);
    std::unique_ptr<kith::node> node_;
    std::unique_ptr<kith::discovery> disc_;
    std::optional<grant_file> grant_;
    std::optional<grant_file> relay_grant_;            // --relay-grant FILE
    std::unique_ptr<kith::relay_client> relay_;        // when reached through a relay route
    std::filesystem::path key_dir_;
    std::chrono::milliseconds timeout_{5000};
    std::chrono::milliseconds lookup_{1500};  // waiting for beacons: --timeout when given
    int local_port_ = 4370;
    bool port_given_ = false;
    cookie_info cookie_;
};

// kith grant show FILE (cmd_grant_show.cpp): what a grant file says, never
// its secret key; `json` as one JSON object.
int grant_show(const std::string& file, bool json);
// "pending 8, spawned 256 (default), queued 4194304 bytes (default), ...":
// each limit in force, marked when it is the node's default.
std::string describe_limits(const grant_limits& l);

// --relay-names, --relay-sessions and --relay-rate (a relay grant's own
// limits, kith/relay.hpp), checked; nullopt when none is given. Throws
// cli_error{kUsage} naming `what` ("grant create") and the option.
std::optional<relay_grant_limits> relay_limits_of(const args& a, const std::string& what);

// Names match in full, or by their short part before '@'.
bool name_matches(const std::string& full, const std::string& asked);
// Throws cli_error{kFailed, "<what>: <error message>"}.
[[noreturn]] void fail(const std::string& what, const error& e);

}  // namespace kith::cli
