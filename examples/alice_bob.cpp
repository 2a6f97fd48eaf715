// Erlang WTD's Alice and Bob (seed 002): Alice lets Bob run exactly the
// software she chooses on her node, at a rate, until she revokes it; Bob's
// grant gives Alice nothing on Bob's node.
//
// Alice and Bob run in one program here; across machines, Alice writes the
// grant file (kith grant create bob --services kvs --out bob.grant) and Bob
// uses it (kith call --grant bob.grant alice kvs store ...).
#include <kith/builtin.hpp>
#include <kith/node.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

#include <unistd.h>

static std::string show(const kith::result<kith::term>& r) { return r ? r->to_string() : r.err().message(); }

int main() {
    kith::node_options o;
    o.net.listen = "tcp://127.0.0.1:0";
    o.name = "alice@localhost";
    o.net.cookie = "alices-cluster";
    kith::node alice(o);
    alice.add_service(kith::services::make_kvs());
    alice.add_service(kith::services::make_echo());

    // Alice: a keypair bound to the kvs "mission", 10 calls/s, for Bob.
    kith::grant_spec spec;
    spec.label = "bob";
    spec.allow = {{"kvs", {}}};
    spec.rate = {10, 20};
    auto g = alice.grant(spec);
    if (!g) return std::printf("grant: %s\n", g.err().message().c_str()), 1;
    auto file = std::filesystem::temp_directory_path() / ("bob-" + std::to_string(::getpid()) + ".grant");
    if (!g->save(file).ok()) return 1;  // mode 0600: hand it to Bob privately

    // Bob: his own node and cluster; the grant file is all he has of Alice's.
    o.name = "bob@localhost";
    o.net.cookie = "bobs-cluster";
    kith::node bob(o);
    bob.add_service(kith::services::make_kvs());
    auto held = kith::grant_file::load(file);
    std::filesystem::remove(file);
    if (!held) return std::printf("load: %s\n", held.err().message().c_str()), 1;
    auto a = bob.connect(*held);
    if (!a) return std::printf("connect: %s\n", a.err().message().c_str()), 1;

    auto stored = bob.call(*a, "kvs", "store", kith::arr("weather", "fine"));
    auto found = bob.call(*a, "kvs", "lookup", kith::arr("weather"));
    auto echo = bob.call(*a, "echo", "echo", kith::arr("hi"));            // not in the grant
    auto back = alice.call("bob@localhost", "kvs", "keys", kith::arr());  // not reciprocal
    std::printf("bob: kvs:store -> %s\nbob: kvs:lookup -> %s\nbob: echo:echo -> %s\nalice on bob: kvs:keys -> %s\n",
                show(stored).c_str(), show(found).c_str(), show(echo).c_str(), show(back).c_str());

    if (!alice.revoke_grant("bob").ok()) return 1;
    auto after = bob.call(*a, "kvs", "lookup", kith::arr("weather"));
    auto again = bob.connect(*held, std::chrono::seconds(2));
    std::printf("alice revokes; bob: kvs:lookup -> %s; reconnect -> %s\n", show(after).c_str(),
                again ? again->c_str() : again.err().message().c_str());

    bool ok = stored && found && *found == kith::arr("ok", "fine") && echo.code() == kith::errc::unauthorized &&
              !back && after.code() == kith::errc::revoked && !again;
    return ok ? 0 : 1;
}
