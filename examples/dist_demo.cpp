// The seeds' dist_demo: spawn a server on another node, then rpc through it.
//   Pid = dist_demo:start('gandalf@...').
//   dist_demo:rpc(Pid, erlang, node, []).     -> 'gandalf@...'
// In kith the remote side runs only what it exported by name: the "demo"
// service's actor type "rpc_server" invokes exported functions of its own
// node ([Service, Function, Args]), never arbitrary code.
#include <kith/builtin.hpp>
#include <kith/mailbox.hpp>
#include <kith/node.hpp>

#include <cstdio>

int main() {
    kith::node_options o;
    o.name = "gandalf@localhost";
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.cookie = "abc";  // erl -setcookie abc, on both nodes
    kith::node gandalf(o);
    gandalf.add_service(kith::services::make_kvs());
    gandalf.add_service(kith::services::make_demo(gandalf));

    o.name = "bilbo@localhost";
    kith::node bilbo(o);
    if (auto up = bilbo.connect(gandalf.endpoint(), gandalf.key()); !up) {
        std::printf("connect failed: %s\n", up.err().message().c_str());
        return 1;
    }
    // Pid = dist_demo:start(gandalf)
    auto server = bilbo.spawn("gandalf@localhost", "demo", "rpc_server", kith::arr());
    if (!server) {
        std::printf("spawn failed: %s\n", server.err().message().c_str());
        return 1;
    }
    // dist_demo:rpc(Pid, M, F, A): a request to the remote actor.
    kith::mailbox me(bilbo);
    auto where = me.call(*server, kith::arr("demo", "node", kith::arr()), std::chrono::seconds(5));
    auto stored = me.call(*server, kith::arr("kvs", "store", kith::arr("weather", "fine")), std::chrono::seconds(5));
    auto refused = me.call(*server, kith::arr("erlang", "halt", kith::arr()), std::chrono::seconds(5));
    if (!where || !stored) {
        std::printf("rpc failed: %s\n", (where ? stored : where).err().message().c_str());
        return 1;
    }
    std::printf("server %s\nrpc(demo, node, []) -> %s\nrpc(kvs, store, [weather, fine]) -> %s\n",
                server->to_string().c_str(), where->to_string().c_str(), stored->to_string().c_str());
    std::printf("rpc(erlang, halt, []) -> %s (only exported functions run)\n",
                refused ? refused->to_string().c_str() : refused.err().message().c_str());
    return *where == kith::term("gandalf@localhost") && !refused && refused.code() == kith::errc::no_such_service ? 0 : 1;
}
