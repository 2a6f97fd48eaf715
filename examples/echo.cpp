// Actors in one node: an echo actor answers requests; a plain thread asks it
// through a blocking mailbox. Prints what it got.
#include <kith/mailbox.hpp>
#include <kith/node.hpp>

#include <cstdio>

int main() {
    kith::node n({.name = "gandalf@pi1"});
    kith::pid echo = n.spawn([](kith::actor& self, kith::message& m) {
        if (m.is_request()) self.reply(m, m.body);
    });
    kith::mailbox me(n);
    auto r = me.call(echo, "hello", std::chrono::seconds(1));  // kith::result<kith::term>
    if (!r) {
        std::printf("echo failed: %s\n", r.err().message().c_str());
        return 1;
    }
    std::printf("%s answered %s\n", echo.to_string().c_str(), r->to_string().c_str());
    return 0;
}
