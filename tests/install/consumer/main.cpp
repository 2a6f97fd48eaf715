// A program outside the kith tree, built against an installed kith
// (find_package(kith) + kith::core, kith::discovery, kith::services).
#include <kith/builtin.hpp>
#include <kith/discovery.hpp>
#include <kith/mailbox.hpp>
#include <kith/node.hpp>

#include <chrono>
#include <cstdio>

int main() {
    kith::node n({.name = "consumer@localhost", .workers = 1});
    n.add_service(kith::services::make_kvs());
    kith::pid echo = n.spawn([](kith::actor& self, kith::message& m) {
        if (m.is_request()) self.reply(m, m.body);
    });
    kith::mailbox me(n);
    auto r = me.call(echo, kith::arr("hello", 1), std::chrono::seconds(2));
    if (!r || !(*r == kith::arr("hello", 1))) {
        std::puts("consumer failed: echo request");
        return 1;
    }
    auto stored = n.call(n.name(), "kvs", "store", kith::arr("weather", "fine"));
    if (!stored || !(*stored == kith::term(true))) {
        std::puts("consumer failed: kvs");
        return 1;
    }
    try {
        kith::discovery d(n);  // a node without network: refused
        std::puts("consumer failed: discovery without network");
        return 1;
    } catch (const kith::setup_error&) {
    }
    std::puts("consumer ok");
    return 0;
}
