// kith_relay_node: a node for the relay's network-namespace test (run inside
// a namespace with `ip netns exec`), using kith::relay and kith::relay_client
// directly. Prints one line per event on stdout (flushed):
//   READY <endpoint> <key z85>
//   UP <name> <trust>                  node events (node::subscribe_nodes)
//   DOWN <name> <reason>
// and answers each command read on stdin with one line:
//   grant LABEL FILE RATE        grants kvs store/lookup at RATE ("2/s,burst=3"), saved to FILE
//                                -> GRANTED LABEL | ERR <code> <detail>
//   revoke LABEL                 -> REVOKED LABEL | ERR ...
//   direct FILE [ENDPOINT]       connects with the grant at its own endpoints, or at
//                                ENDPOINT instead (2 s)
//                                -> DIRECT ok <name> | DIRECT err <code>
//   via FILE                     connects with the grant through the relay
//                                -> VIA ok <name> | VIA err <code> <detail>
//   call NODE SVC FN [ARG...]    string arguments -> CALL ok <term> | CALL err <code>
//   burst N NODE SVC FN [ARG...] N calls at once -> BURST ok=<n> <code>=<n>...
//   register                     -> REGISTER ok | REGISTER err <detail>
//   directory                    -> DIRECTORY <term> | DIRECTORY err <code>
//   counters                     the relay's -> COUNTERS pairs=N sessions=N total=N refused=N
//
//   kith_relay_node --name N --key-dir D --cookie C --listen EP
//       [--relay-data HOST:PORT]          host a relay there (service "relay" public)
//       [--relay-ports MIN-MAX] [--relay-port-idle MS] [--relay-pair-timeout MS]
//                                         its session ports (relay_options)
//       [--relay NAME --relay-ep EP --relay-key Z85 [--register]]
//                                         visit that relay (and register at it)
//       [--kvs]                           host the kvs service
// Runs until stdin closes, SIGTERM or kill.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kith/builtin.hpp"
#include "kith/node.hpp"
#include "kith/relay.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

std::mutex out_mu;
void say(const std::string& s) {
    std::lock_guard lk(out_mu);
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
}

std::string code(const error& e) { return std::string(to_string(e.code)); }

std::vector<std::string> words(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> w;
    for (std::string s; in >> s;) w.push_back(s);
    return w;
}

term string_args(const std::vector<std::string>& w, std::size_t from) {
    term_array a;
    for (std::size_t i = from; i < w.size(); ++i) a.push_back(term(w[i]));
    return term(std::move(a));
}

}  // namespace

int main(int argc, char** argv) {
    std::map<std::string, std::string> opt;
    std::set<std::string> flags;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--register" || a == "--kvs") flags.insert(a);
        else if (i + 1 < argc) opt[a] = argv[++i];
        else {
            std::fprintf(stderr, "%s needs a value\n", a.c_str());
            return 2;
        }
    }
    std::signal(SIGPIPE, SIG_IGN);
    node_options o;
    o.name = opt["--name"];
    o.net.listen = opt["--listen"];
    o.net.key_dir = opt["--key-dir"];
    o.net.cookie = opt["--cookie"];
    o.net.log = [](const log_record&) {};
    try {
        node n(o);
        if (flags.count("--kvs")) n.add_service(services::make_kvs());
        n.subscribe_nodes([](const node_event& ev) {
            if (ev.what == node_event::kind::up) say("UP " + ev.node + " " + std::string(to_string(ev.info.trust)));
            else say("DOWN " + ev.node + " " + ev.reason);
        });
        std::unique_ptr<relay> rel;
        if (opt.count("--relay-data")) {
            relay_options ro;
            ro.listen = opt["--relay-data"];
            if (auto r = opt.find("--relay-ports"); r != opt.end()) {
                auto dash = r->second.find('-');
                ro.session_port_min = static_cast<std::uint16_t>(std::stoi(r->second.substr(0, dash)));
                ro.session_port_max = static_cast<std::uint16_t>(std::stoi(r->second.substr(dash + 1)));
            }
            if (opt.count("--relay-port-idle"))
                ro.session_port_idle = std::chrono::milliseconds(std::stoi(opt["--relay-port-idle"]));
            if (opt.count("--relay-pair-timeout"))
                ro.pair_timeout = std::chrono::milliseconds(std::stoi(opt["--relay-pair-timeout"]));
            rel = std::make_unique<relay>(n, ro);
            if (auto p = n.set_public("relay"); !p.ok()) throw setup_error(p.err().detail);
        }
        std::unique_ptr<relay_client> via;
        const std::string relay_name = opt["--relay"];
        if (!relay_name.empty()) {
            auto key = public_key::from_z85(opt["--relay-key"]);
            if (!key) throw setup_error("--relay-key is not a Z85 key");
            auto c = n.connect_visitor(opt["--relay-ep"], *key);
            if (!c.ok()) throw setup_error("cannot reach the relay: " + c.err().detail);
            if (flags.count("--register")) via = std::make_unique<relay_client>(n, relay_name, true);
            else via = std::make_unique<relay_client>(n, relay_name, nullptr);
        }
        say("READY " + n.endpoint() + " " + n.key().z85());

        for (std::string line; std::getline(std::cin, line);) {
            auto w = words(line);
            if (w.empty()) continue;
            const std::string& cmd = w[0];
            if (cmd == "grant" && w.size() == 4) {
                grant_spec gs;
                gs.label = w[1];
                gs.allow = {{"kvs", {"store", "lookup"}}};
                auto rate = rate_limit::parse(w[3]);
                if (!rate.ok()) {
                    say("ERR " + code(rate.err()) + " " + rate.err().detail);
                    continue;
                }
                gs.rate = *rate;
                auto g = n.grant(gs);
                auto s = g.ok() ? g->save(w[2]) : result<void>(g.err());
                say(s.ok() ? "GRANTED " + w[1] : "ERR " + code(s.err()) + " " + s.err().detail);
            } else if (cmd == "revoke" && w.size() == 2) {
                auto r = n.revoke_grant(w[1]);
                say(r.ok() ? "REVOKED " + w[1] : "ERR " + code(r.err()));
            } else if ((cmd == "direct" && (w.size() == 2 || w.size() == 3)) || (cmd == "via" && w.size() == 2)) {
                auto g = grant_file::load(w[1]);
                if (g.ok() && w.size() == 3) g->endpoints = {w[2]};
                std::string tag = cmd == "direct" ? "DIRECT" : "VIA";
                if (!g.ok()) {
                    say(tag + " err " + code(g.err()) + " " + g.err().detail);
                    continue;
                }
                auto r = cmd == "direct" ? n.connect(*g, 2s)
                         : via           ? via->connect(*g, 5s)
                                         : result<std::string>(error{errc::bad_args, "no --relay"});
                say(r.ok() ? tag + " ok " + *r : tag + " err " + code(r.err()) + " " + r.err().detail);
            } else if (cmd == "call" && w.size() >= 4) {
                auto r = n.call(w[1], w[2], w[3], string_args(w, 4), 3s);
                say(r.ok() ? "CALL ok " + r->to_string() : "CALL err " + code(r.err()));
            } else if (cmd == "burst" && w.size() >= 5) {
                int count = std::stoi(w[1]);
                std::map<std::string, int> by;
                std::mutex m;
                std::vector<std::thread> ts;
                for (int i = 0; i < count; ++i)
                    ts.emplace_back([&] {
                        auto r = n.call(w[2], w[3], w[4], string_args(w, 5), 3s);
                        std::lock_guard lk(m);
                        ++by[r.ok() ? std::string("ok") : code(r.err())];
                    });
                for (auto& t : ts) t.join();
                std::string s = "BURST";
                for (auto& [k, v] : by) s += " " + k + "=" + std::to_string(v);
                say(s);
            } else if (cmd == "register" && !relay_name.empty()) {
                try {
                    relay_client again(n, relay_name, true);
                    say("REGISTER ok");
                } catch (const setup_error& e) {
                    say(std::string("REGISTER err ") + e.what());
                }
            } else if (cmd == "directory" && via) {
                auto d = via->directory();
                say(d.ok() ? "DIRECTORY " + d->to_string() : "DIRECTORY err " + code(d.err()));
            } else if (cmd == "counters" && rel) {
                auto c = rel->counters();
                say("COUNTERS pairs=" + std::to_string(c.port_pairs) + " sessions=" + std::to_string(c.sessions) +
                    " total=" + std::to_string(c.sessions_total) + " refused=" + std::to_string(c.refused));
            } else {
                say("ERR bad_args unknown command: " + line);
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kith_relay_node: %s\n", e.what());
        say(std::string("FAILED ") + e.what());
        return 1;
    }
    return 0;
}
