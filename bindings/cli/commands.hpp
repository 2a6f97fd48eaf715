// The subcommands of `kith`. Each takes the arguments after its name and
// returns the exit code; errors are thrown as cli_error (cli.hpp).
#pragma once

namespace kith::cli {

struct cli_error;
// Prints "kith: <message>" on stderr; returns the error's exit code.
int report(const cli_error& e);

int cmd_node(int argc, char** argv);
int cmd_call(int argc, char** argv);
int cmd_cast(int argc, char** argv);
int cmd_send(int argc, char** argv);
int cmd_spawn(int argc, char** argv);
int cmd_nodes(int argc, char** argv);
int cmd_watch(int argc, char** argv);
int cmd_ping(int argc, char** argv);
int cmd_grant(int argc, char** argv);
int cmd_relay(int argc, char** argv);
int cmd_whereis(int argc, char** argv);  // cmd_global.cpp
int cmd_groups(int argc, char** argv);

}  // namespace kith::cli
