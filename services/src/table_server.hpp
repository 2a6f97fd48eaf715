// table_server.hpp — internal to kith::services: how a cluster-wide table
// (pg_scope, global_names) starts its server actor. One copy, so both keep
// the same subscribe-then-greet order and the same cleanup on failure.
#pragma once

#include <memory>
#include <string>

#include "kith/node.hpp"

namespace kith::detail {

// Spawns the table's server into t->server: the actor makes a fresh Server
// (srv->t = t), subscribes to node events, then calls greet(*srv, self, name)
// for every node already up. Subscribing first means a node coming up in
// between is greeted twice, which the tables treat as harmless (the answer
// replaces what they hold), and never missed. Then registers the server as
// `reg_name`; if that fails the server is killed and the error returned.
template <class Server, class Table, class Greet>
result<void> start_table_server(node& n, const std::string& reg_name, const std::shared_ptr<Table>& t, Greet greet) {
    t->server = n.spawn([t, greet](actor& self) -> behavior {
        auto srv = std::make_shared<Server>();
        srv->t = t;
        t->n->monitor_nodes(self.self(), true);
        for (auto& nn : t->n->nodes()) greet(*srv, self, nn);
        return [srv](actor& s, message& m) { srv->handle(s, m); };
    });
    auto r = n.register_name(reg_name, t->server);
    if (!r.ok()) n.send_exit(t->server, "kill");
    return r;
}

}  // namespace kith::detail
