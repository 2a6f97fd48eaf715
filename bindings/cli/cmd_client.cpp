// The one-shot commands: call, cast, send, spawn, nodes, watch, ping.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <algorithm>
#include <mutex>
#include <thread>

#include "cli.hpp"
#include "commands.hpp"
#include "avail_host.hpp"
#include "json_term.hpp"
#include "kith/mailbox.hpp"
#include "local.hpp"
#include "relay_host.hpp"

namespace kith::cli {

namespace {

// Parses a client command's options; prints help and returns nullopt for --help.
std::optional<args> client_args(const std::string& cmd, const char* usage, int argc, char** argv,
                                std::size_t min_pos, std::size_t max_pos, std::set<std::string> flags = {}) {
    args a = parse_args(cmd, argc, argv, client_value_opts(), flags);
    if (a.has("--help")) {
        std::printf("%s\n%s", usage, kClientOptionsHelp);
        return std::nullopt;
    }
    if (a.pos.size() < min_pos || a.pos.size() > max_pos)
        throw cli_error{cmd + ": wrong number of arguments (see kith " + cmd + " --help)", kUsage};
    return a;
}

constexpr std::size_t kAny = static_cast<std::size_t>(-1);

void print_line(const std::string& s) {
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

}  // namespace

// call, cast and spawn: NODE SERVICE NAME [ARG...]. Runs `op(client, node,
// args)` against the node named first, ARGs parsed as JSON before anything
// is started; `op` returns what to print ("" for nothing).
template <class Op>
int service_command(const std::string& cmd, const char* usage, int argc, char** argv, Op op) {
    auto a = client_args(cmd, usage, argc, argv, 3, kAny);
    if (!a) return 0;
    term args = json_args(a->pos, 3);
    client c(*a);
    std::string node = c.reach(a->pos[0]);
    auto out = op(c, node, a->pos[1], a->pos[2], std::move(args));
    if (!out) fail(cmd + " " + a->pos[1] + ":" + a->pos[2] + " on " + node, out.err());
    if (!out->empty()) print_line(*out);
    return 0;
}

int cmd_call(int argc, char** argv) {
    if (has_global_flag(argc, argv)) return call_global(argc, argv);
    return service_command(
        "call",
        "usage: kith call NODE SERVICE FUNCTION [ARG...]\n"
        "       kith call --global NAME MESSAGE   (see kith call --global --help)\n\n"
        "Calls SERVICE:FUNCTION(ARG...) on NODE and prints the result as JSON.\n"
        "Each ARG is one JSON value: kith call gandalf kvs store '\"weather\"' '\"sunny\"'\n",
        argc, argv, [](client& c, const std::string& node, const std::string& svc, const std::string& fn, term args) {
            auto r = c.node().call(node, svc, fn, std::move(args), c.timeout());
            return r ? result<std::string>(to_json(*r)) : result<std::string>(r.err());
        });
}

int cmd_cast(int argc, char** argv) {
    // The connection's goodbye at exit flushes what was queued before it.
    return service_command(
        "cast",
        "usage: kith cast NODE SERVICE FUNCTION [ARG...]\n\n"
        "Calls SERVICE:FUNCTION(ARG...) on NODE without waiting for the result\n"
        "(delivered at most once; errors of the function are not reported).\n",
        argc, argv, [](client& c, const std::string& node, const std::string& svc, const std::string& fn, term args) {
            auto r = c.node().cast(node, svc, fn, std::move(args));
            return r.ok() ? result<std::string>(std::string()) : result<std::string>(r.err());
        });
}

int cmd_send(int argc, char** argv) {
    if (has_global_flag(argc, argv)) return send_global(argc, argv);
    auto a = client_args("send",
                         "usage: kith send NAME@NODE MESSAGE\n"
                         "       kith send PID MESSAGE\n"
                         "       kith send --global NAME MESSAGE\n\n"
                         "Sends MESSAGE (one JSON value) to the actor registered as NAME on NODE,\n"
                         "or to a pid (\"<gandalf@pi1.42>\", as spawn prints it). Delivery is at most\n"
                         "once, as in Erlang. A pid that is not alive, or a name that nobody has\n"
                         "registered there, is an error (exit 1: nothing was sent). The name is\n"
                         "checked with the node's admin service node:whereis (cluster members only;\n"
                         "a node without it, or one reached with a grant, is sent to unchecked).\n",
                         argc, argv, 2, 2);
    if (!a) return 0;
    auto msg = parse_json(a->pos[1]);
    if (!msg) throw cli_error{"send: message: " + msg.err().detail, kUsage};
    std::string target = a->pos[0];
    // A pid, bare or as JSON {"$pid": ...}.
    std::optional<pid> to = pid::parse(target);
    if (!to)
        if (auto t = parse_json(target); t && t->is_pid()) to = *t->as_pid();
    client c(*a);
    if (to) {
        c.reach(to->node);
        // A monitor answers at once with noproc for a pid that is not alive.
        mailbox mb(c.node());
        ref r = mb.monitor(*to);
        auto down = mb.receive([&](const message& m) { return m.is_down(); }, std::chrono::milliseconds(300));
        mb.demonitor(r);
        if (down)
            throw cli_error{"send to " + to->to_string() + ": no_proc: no such process on " + to->node + " (reason " +
                                down->body.to_string() + "); nothing was sent (kith spawn prints a live pid)",
                            kFailed};
        c.node().send(*to, std::move(*msg));
        return 0;
    }
    auto at = target.find('@');
    if (at == std::string::npos || at == 0 || at + 1 == target.size())
        throw cli_error{"send: target must be NAME@NODE or a pid, got '" + target + "'", kUsage};
    std::string node = c.reach(target.substr(at + 1));
    const std::string name = target.substr(0, at);
    auto where = c.node().call(node, "node", "whereis", arr(name), std::chrono::seconds(2));
    if (where && where->is_nil())
        throw cli_error{"send to " + name + "@" + node + ": no_proc: nothing is registered as \"" + name + "\" on " +
                            node + "; nothing was sent (kith node registers \"echo\"; an actor registers itself)",
                        kFailed};
    c.node().send(name, node, std::move(*msg));
    return 0;
}

int cmd_spawn(int argc, char** argv) {
    return service_command(
        "spawn",
        "usage: kith spawn NODE SERVICE TYPE [ARG...]\n\n"
        "Spawns an actor of type TYPE exported by SERVICE on NODE and prints its\n"
        "pid as JSON ({\"$pid\": \"<gandalf@pi1.42>\"}); kith send takes it.\n",
        argc, argv, [](client& c, const std::string& node, const std::string& svc, const std::string& type, term args) {
            auto r = c.node().spawn(node, svc, type, std::move(args), c.timeout());
            return r ? result<std::string>(to_json(term(*r))) : result<std::string>(r.err());
        });
}

int cmd_ping(int argc, char** argv) {
    auto a = client_args("ping",
                         "usage: kith ping NODE\n\n"
                         "Prints pong and exits 0 if NODE answers, pang and exits 1 if not.\n",
                         argc, argv, 1, 1);
    if (!a) return 0;
    client c(*a);
    std::string node;
    try {
        node = c.reach(a->pos[0]);
    } catch (const cli_error& e) {
        print_line("pang");
        throw;
    }
    bool pong = c.node().ping(node, c.timeout());
    print_line(pong ? "pong" : "pang");
    return pong ? 0 : kFailed;
}

int cmd_nodes(int argc, char** argv) {
    std::set<std::string> with_relay = client_value_opts();  // kith nodes --relay FILE (cmd_relay.cpp)
    with_relay.insert("--relay");
    if (args r = parse_args("nodes", argc, argv, with_relay, {"--json"}); r.has("--relay") && !r.has("--help"))
        return relay_directory(r);
    auto a = client_args("nodes",
                         "usage: kith nodes [--json]\n"
                         "       kith nodes --relay FILE [--json]\n\n"
                         "Lists the nodes this machine can see on the LAN (and --peer ones): name,\n"
                         "trust (cluster: same cookie; stranger: another cluster, never trusted),\n"
                         "address, key fingerprint and services (a stranger's: its public ones).\n"
                         "With --relay FILE: the nodes listed at that relay (FILE: your relay grant,\n"
                         "or a friend's grant file that names the relay; docs/relay.md).\n",
                         argc, argv, 0, 0, {"--json"});
    if (!a) return 0;
    client c(*a);
    if (!c.discovery()) throw cli_error{"nodes: --grant is for call, cast, send, spawn and ping", kUsage};
    // Ask, then listen for about one beacon interval.
    c.discovery()->query();
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(c.timeout(), std::chrono::milliseconds(1000)));
    auto seen = c.discovery()->seen();
    // Nodes of this machine that beacons did not bring (no network, or
    // another interface): the registry of the key directory.
    for (auto& l : running_nodes(c.key_dir())) {
        bool listed = false;
        for (auto& s : seen) listed = listed || s.name == l.name;
        if (listed) continue;
        seen_node s;
        s.name = l.name;
        s.endpoint = l.loopback();
        s.key = l.key;
        s.fingerprint = l.key.fingerprint();
        s.cluster_id = l.cluster;
        s.trust = l.cluster == c.cookie().cluster ? trust_level::cluster : trust_level::stranger;
        s.connected = c.node().info(l.name).has_value();
        seen.push_back(s);
    }
    std::sort(seen.begin(), seen.end(), [](auto& x, auto& y) { return x.name < y.name; });
    // Strangers with our own class in view: say which cookie was used.
    std::size_t strangers = 0;
    for (auto& s : seen) strangers += s.trust == trust_level::stranger;
    if (c.cookie().none || strangers)
        std::fprintf(stderr, "kith: nodes: %s%s\n",
                     strangers ? (std::to_string(strangers) + " node(s) listed as stranger use another cookie; ").c_str()
                               : "",
                     c.cookie().hint(c.key_dir()).c_str());
    if (a->has("--json")) {
        term_array out;
        for (auto& s : seen) out.push_back(s.to_term());
        print_line(to_json(term(std::move(out))));
        return 0;
    }
    if (seen.empty()) {
        std::printf("no nodes seen (see docs/tutorial.md, \"When discovery finds nothing\")\n");
        return 0;
    }
    std::size_t w = 28;
    for (auto& s : seen) w = std::max(w, printable(s.name).size());
    int iw = static_cast<int>(w);
    std::printf("%-*s %-8s %-28s %-19s %s\n", iw, "NAME", "TRUST", "ADDRESS", "FINGERPRINT", "SERVICES");
    for (auto& s : seen) {
        std::string svcs;
        for (auto& x : s.services) svcs += (svcs.empty() ? "" : ",") + printable(x);
        std::printf("%-*s %-8s %-28s %-19s %s\n", iw, printable(s.name).c_str(), std::string(to_string(s.trust)).c_str(),
                    printable(s.endpoint).c_str(), s.fingerprint.c_str(), svcs.c_str());
    }
    std::fflush(stdout);
    return 0;
}

int cmd_watch(int argc, char** argv) {
    auto a = client_args("watch",
                         "usage: kith watch [--json]\n\n"
                         "Connects to the nodes of this cluster as they appear and prints node up\n"
                         "and down events until Ctrl-C; strangers are printed once when first seen.\n"
                         "--json prints one JSON object per line: {\"event\": \"nodeup\", \"node\": ...}.\n",
                         argc, argv, 0, 0, {"--json"});
    if (!a) return 0;
    bool json = a->has("--json");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    client c(*a, true);
    if (!c.discovery()) throw cli_error{"watch: --grant is for call, cast, send, spawn and ping", kUsage};
    std::mutex mu;
    bool stopping = false;  // our own stop ends every connection: those are not events
    auto emit = [&](const std::string& event, const std::string& node, const term& detail) {
        std::lock_guard lk(mu);
        if (stopping) return;
        if (json)
            print_line(to_json(term(term_map{{"event", event}, {"node", node}, {"detail", detail}})));
        else
            print_line(event + " " + printable(node) + " " + to_json(detail));
    };
    auto sub = c.node().subscribe_nodes([&](const node_event& e) {
        if (e.what == node_event::kind::up) emit("nodeup", e.node, e.info.to_term());
        else emit("nodedown", e.node, term(e.reason));
    });
    // The client connects to cluster members as their beacons arrive; list
    // strangers once.
    std::set<std::string> strangers;
    timespec tick{0, 250'000'000};
    c.discovery()->query();
    for (;;) {
        for (auto& s : c.discovery()->seen())
            if (s.trust == trust_level::stranger && strangers.insert(s.name).second) emit("stranger", s.name, s.to_term());
        if (sigtimedwait(&set, nullptr, &tick) > 0) break;
    }
    {
        std::lock_guard lk(mu);
        stopping = true;
    }
    c.node().unsubscribe_nodes(sub);
    return 0;
}

}  // namespace kith::cli
