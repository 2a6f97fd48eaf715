// kith — the command line. See docs/cli.md.
//
//   kith node [options]                     run a node in the foreground
//   kith call NODE SERVICE FUNCTION [ARG...] rpc; prints the result as JSON
//   kith cast NODE SERVICE FUNCTION [ARG...] rpc without an answer
//   kith send NAME@NODE|PID MESSAGE          send a message
//   kith spawn NODE SERVICE TYPE [ARG...]    spawn an actor; prints its pid
//   kith nodes | watch | ping NODE          what is there
//   kith grant create|list|revoke|rate ...  grants of this machine's node
//   kith whereis [NAME] | groups [SCOPE]    global names and process groups
//
// Exit codes: 0 success; 1 the operation failed; 2 bad usage. Errors are one
// line on stderr. Values on the command line and in output are JSON.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"
#include "json_term.hpp"

using namespace kith::cli;

namespace {

constexpr const char* kVersion = "0.2.0";

const char* kMainUsage = R"(usage: kith <command> [options]

commands:
  node      run a node in the foreground (Ctrl-C or SIGTERM stops it cleanly)
  call      call a function of a service on a node; prints the result as JSON
  cast      call without waiting for an answer
  send      send a message to a registered name (NAME@NODE) or to a pid
  spawn     spawn an actor of a service on a node; prints its pid
  nodes     list the nodes this machine can see
  watch     print node up/down events as they happen
  ping      pong if a node answers, pang if not
  grant     create, list and revoke grants for friends
  relay     run a relay: friends behind home routers reach each other through it
  whereis   which pid (and node) holds a global name; call/send --global NAME reach it
  groups    the process groups of a scope and their members

Every command has --help. Values are JSON: kith call gandalf kvs store '"weather"' '"sunny"'
Exit codes: 0 success, 1 failed, 2 bad usage.
)";

struct command {
    const char* name;
    int (*run)(int, char**);
};

const command kCommands[] = {
    {"node", cmd_node}, {"call", cmd_call},   {"cast", cmd_cast}, {"send", cmd_send},   {"spawn", cmd_spawn},
    {"nodes", cmd_nodes}, {"watch", cmd_watch}, {"ping", cmd_ping}, {"grant", cmd_grant},
    {"whereis", cmd_whereis}, {"groups", cmd_groups}, {"relay", cmd_relay},
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fputs(kMainUsage, stderr);
        return kith::cli::kUsage;
    }
    std::string cmd = argv[1];
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
        std::fputs(kMainUsage, stdout);
        return 0;
    }
    if (cmd == "--version") {
        std::printf("kith %s\n", kVersion);
        return 0;
    }
    std::signal(SIGPIPE, SIG_IGN);
    for (auto& c : kCommands) {
        if (cmd != c.name) continue;
        try {
            return c.run(argc - 2, argv + 2);
        } catch (const cli_error& e) {
            return report(e);
        } catch (const kith::setup_error& e) {
            return report(cli_error{cmd + ": " + e.what(), kFailed});
        } catch (const std::exception& e) {
            return report(cli_error{cmd + ": " + e.what(), kFailed});
        }
    }
    return report(cli_error{"unknown command '" + cmd + "' (see kith --help)", kith::cli::kUsage});
}
