// A node watcher: joins the LAN with discovery and prints node up and down
// events as they happen, as an actor would receive them (monitor_nodes).
//
//   node_watcher [--cookie C] [--broadcast ADDR] [--beacon-port P] [--demo]
//
// --demo starts a visitor node in this program that joins and then leaves,
// and exits once the watcher has seen both (the tests run it so, on
// loopback: --broadcast 127.255.255.255 --beacon-port P).
#include <kith/discovery.hpp>
#include <kith/mailbox.hpp>
#include <kith/node.hpp>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

int main(int argc, char** argv) {
    std::string cookie = "classroom-42";
    kith::discovery_options d;
    bool demo = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--demo") demo = true;
        else if (a == "--cookie" && i + 1 < argc) cookie = argv[++i];
        else if (a == "--broadcast" && i + 1 < argc) d.broadcast_address = argv[++i];
        else if (a == "--beacon-port" && i + 1 < argc) d.port = static_cast<std::uint16_t>(std::atoi(argv[++i]));
        else {
            std::fprintf(stderr, "usage: node_watcher [--cookie C] [--broadcast ADDR] [--beacon-port P] [--demo]\n");
            return 2;
        }
    }
    kith::node_options o;
    o.name = "watcher@localhost";
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.cookie = cookie;
    kith::node watcher(o);
    kith::discovery disc(watcher, d);
    kith::mailbox events(watcher);
    watcher.monitor_nodes(events.self());  // ["nodeup", Name, Info] / ["nodedown", Name, Reason]

    std::unique_ptr<kith::node> visitor;
    std::unique_ptr<kith::discovery> visitor_disc;
    if (demo) {
        o.name = "visitor@localhost";
        visitor = std::make_unique<kith::node>(o);
        visitor_disc = std::make_unique<kith::discovery>(*visitor, d);
    }
    bool saw_up = false, saw_down = false;
    while (!(demo && saw_up && saw_down)) {
        auto m = events.receive(std::chrono::seconds(demo ? 10 : 3600));
        if (!m) {
            std::printf("no event: %s\n", m.err().message().c_str());
            return 1;
        }
        const std::string& what = *m->body.at(0)->as_string();
        std::printf("%s %s %s\n", what.c_str(), m->body.at(1)->to_string().c_str(), m->body.at(2)->to_string().c_str());
        std::fflush(stdout);
        if (demo && what == "nodeup" && *m->body.at(1) == kith::term("visitor@localhost")) {
            saw_up = true;
            visitor_disc->stop();
            visitor->stop();  // a clean leave: seen at once (goodbye)
        }
        if (demo && what == "nodedown" && *m->body.at(1) == kith::term("visitor@localhost")) saw_down = true;
    }
    return 0;
}
