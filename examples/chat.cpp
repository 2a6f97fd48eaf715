// A small chat: a room on one node, people on others. The room is an actor
// registered as "room"; people join by sending it their pid, and every line
// said goes to everyone who joined. A person who goes away (their node lost)
// leaves the room by a monitor, as in Erlang.
#include <kith/mailbox.hpp>
#include <kith/node.hpp>

#include <cstdio>
#include <set>

int main() {
    kith::node_options o;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.cookie = "chat-42";
    o.name = "room@localhost";
    // Declared before the node: the room actor uses it until the node has
    // stopped (the DOWNs of alice and bob may arrive while main returns).
    std::set<kith::pid> members;
    kith::node server(o);
    kith::pid room = server.spawn([&members](kith::actor& self, kith::message& m) {
        if (m.is_down()) {  // someone went away
            members.erase(m.from);
            return;
        }
        auto* verb = m.body.at(0);
        if (!verb || !verb->is_string()) return;
        if (*verb->as_string() == "join" && m.body.at(1) && m.body.at(1)->is_pid()) {
            kith::pid who = *m.body.at(1)->as_pid();
            members.insert(who);
            self.monitor(who);
            self.send(who, kith::arr("joined"));
        } else if (*verb->as_string() == "say" && m.body.size() == 3) {
            for (auto& p : members) self.send(p, kith::arr("said", *m.body.at(1), *m.body.at(2)));
        }
    });
    if (!server.register_name("room", room).ok()) return 1;

    o.name = "alice@localhost";
    kith::node alice_node(o);
    o.name = "bob@localhost";
    kith::node bob_node(o);
    for (auto* n : {&alice_node, &bob_node})
        if (auto up = n->connect(server.endpoint(), server.key()); !up) {
            std::printf("connect failed: %s\n", up.err().message().c_str());
            return 1;
        }
    kith::mailbox alice(alice_node), bob(bob_node);
    alice.send("room", "room@localhost", kith::arr("join", alice.self()));
    bob.send("room", "room@localhost", kith::arr("join", bob.self()));
    // Say something once both have joined: each hears both lines.
    for (auto* who : {&alice, &bob})
        if (auto j = who->receive(std::chrono::seconds(5)); !j || *j->body.at(0) != kith::term("joined")) {
            std::printf("join failed\n");
            return 1;
        }
    alice.send("room", "room@localhost", kith::arr("say", "alice", "hi bob"));
    bob.send("room", "room@localhost", kith::arr("say", "bob", "hi alice"));
    int heard = 0;
    for (auto* who : {&alice, &bob})
        for (int i = 0; i < 2; ++i) {
            auto m = who->receive(std::chrono::seconds(5));
            if (!m) break;
            std::printf("%s hears %s: %s\n", who == &alice ? "alice" : "bob", m->body.at(1)->to_string().c_str(),
                        m->body.at(2)->to_string().c_str());
            ++heard;
        }
    return heard == 4 ? 0 : 1;
}
