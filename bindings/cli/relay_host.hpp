// The relay parts of the command line (docs/relay.md), in cmd_relay.cpp:
//   kith relay [options]              a node that serves as a relay
//   kith node --serve-relay ...       any node that also serves as one
//   kith node --relay FILE            register at a relay and stay registered
//   kith nodes --relay FILE           a relay's directory
//   kith grant create ... --via FILE  relay routes in a grant file
//   kith call --grant FILE ...        direct endpoints first, then the routes
// FILE is a "relay grant": a grant for the relay's service "relay" that the
// relay's owner made (kith grant create LABEL --services relay, on the
// relay's machine). `kith nodes --relay` also takes a friend's grant file
// that carries relay routes (then as a visitor, or with --relay-grant).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "cli.hpp"
#include "kith/relay.hpp"

namespace kith::cli {

// Options of `kith node` for relays, and their help text.
const std::set<std::string>& relay_value_opts();
const std::set<std::string>& relay_flag_opts();
extern const char* kRelayNodeHelp;

// What `kith node` runs for relays: the relay itself (--serve-relay) and the
// registration at another (--relay FILE), which reconnects and registers
// again when the relay comes back. Prints its events on stdout, one line
// each, "relay: ...". Throws cli_error for bad options or a relay that cannot
// listen. Must be destroyed before the node stops.
class relay_host {
public:
    relay_host(kith::node& n, const args& a);
    ~relay_host();
    // Lines for the start-up banner ("" when no relay option was given).
    std::string describe() const;

private:
    void serve_loop();
    void register_loop();
    kith::node& n_;
    std::unique_ptr<kith::relay> relay_;
    std::optional<grant_file> reg_grant_;  // --relay FILE
    std::string reg_file_;
    bool listed_ = true;
    std::unique_ptr<kith::relay_client> client_;
    std::string describe_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread serve_thread_, reg_thread_;
};

// Loads a grant file (checking that only its owner can read it); cli_error
// naming `what` and the file otherwise.
grant_file load_grant_file(const std::string& file, const std::string& what);

// A relay route to the relay named by `file` (a grant for it).
std::vector<grant_file::relay_route> relay_routes_of(const grant_file& relay_grant);

// Connects `n` to a relay: with `relay_grant` when given (a grant for the
// relay), else as a visitor (the relay must be open: kith relay --open).
// Returns the relay's node name; cli_error saying what to do otherwise.
std::string connect_relay(kith::node& n, const grant_file::relay_route& r, const grant_file* relay_grant,
                          std::chrono::milliseconds timeout);

// The fallback of client::reach: `g.node` through each of g's relay routes
// in turn. The relay_client is kept in `keep` (it must outlive the calls).
// Returns the node's name, or nullopt with the reasons in `why`.
std::optional<std::string> reach_via_relays(kith::node& n, const grant_file& g, const grant_file* relay_grant,
                                            std::chrono::milliseconds timeout,
                                            std::unique_ptr<kith::relay_client>& keep, std::string& why);

// kith nodes --relay FILE: prints the relay's directory.
int relay_directory(const args& a);

}  // namespace kith::cli
