// The seeds' kvs walkthrough with two nodes in one program:
//   gandalf hosts kvs; bilbo does
//   rpc:call(gandalf@localhost, kvs, store, [weather, fine]).  -> true
//   rpc:call(gandalf@localhost, kvs, lookup, [weather]).       -> {ok, fine}
// Keys and cookie live in $KITH_HOME (or ~/.kith).
#include <kith/builtin.hpp>
#include <kith/node.hpp>

#include <cstdio>

int main() {
    kith::node_options o;
    o.name = "gandalf@localhost";
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.cookie = "classroom-42";
    kith::node gandalf(o);
    gandalf.add_service(kith::services::make_kvs());

    o.name = "bilbo@localhost";
    kith::node bilbo(o);
    auto peer = bilbo.connect(gandalf.endpoint(), gandalf.key());  // -> "gandalf@localhost"
    if (!peer) {
        std::printf("connect failed: %s\n", peer.err().message().c_str());
        return 1;
    }
    auto stored = bilbo.call("gandalf@localhost", "kvs", "store", kith::arr("weather", "fine"));
    auto found = bilbo.call("gandalf@localhost", "kvs", "lookup", kith::arr("weather"));
    if (!stored || !found) {
        std::printf("call failed: %s\n", (stored ? found : stored).err().message().c_str());
        return 1;
    }
    std::printf("store -> %s\nlookup -> %s\n", stored->to_string().c_str(), found->to_string().c_str());
    return *found == kith::arr("ok", "fine") ? 0 : 1;
}
