// table_server.hpp — internal to kith::services: how a cluster-wide table
// (pg_scope, global_names) starts its server actor. One copy, so both keep
// the same subscribe-then-greet order and the same cleanup on failure.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kith/actor.hpp"
#include "kith/log.hpp"
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

// A peer server's pid is acceptable if it lives on another node connected
// to us as a cluster member.
inline bool on_cluster_member(node& n, const pid& p) {
    if (p.is_null() || p.node == n.name()) return false;
    auto info = n.info(p.node);
    return info && info->trust == trust_level::cluster;
}

// A peer's message to a table server: ["<tag>", FromPid, ...].
struct peer_message {
    const std::string& tag;
    const pid& from;
};

// The start of both servers' handlers, one copy: a DOWN goes to
// srv.on_down(self, m), the `kick` tag to srv.flush(self), ["nodeup", Node]
// to up(Node) and ["nodedown", Node] to down(Node). A message ["<tag>",
// FromPid, ...] from a server on a connected cluster member is returned for
// the caller to handle; one from anywhere else is refused (srv.refuse, naming
// `what` the sender should have been), anything else ignored.
template <class Server, class Up, class Down>
std::optional<peer_message> route_table_message(Server& srv, actor& self, message& m, std::string_view kick,
                                                std::string_view what, Up up, Down down) {
    if (m.is_down()) {
        srv.on_down(self, m);
        return std::nullopt;
    }
    if (!m.is_user()) return std::nullopt;
    const std::string* tag = m.body.at(0) ? m.body.at(0)->as_string() : nullptr;
    if (!tag) return std::nullopt;
    if (*tag == kick) {
        srv.flush(self);
        return std::nullopt;
    }
    if (const std::string* nn = m.body.at(1) ? m.body.at(1)->as_string() : nullptr) {
        if (*tag == "nodeup") up(*nn);
        if (*tag == "nodedown") down(*nn);
        return std::nullopt;
    }
    const pid* from = m.body.at(1) ? m.body.at(1)->as_pid() : nullptr;
    if (!from) return std::nullopt;
    if (!on_cluster_member(*srv.t->n, *from)) {
        srv.refuse("a \"" + escape_peer_text(*tag, 40) + "\" from " + from->to_string() + ", which is not a " +
                   std::string(what) + " on a connected cluster member");
        return std::nullopt;
    }
    return peer_message{*tag, *from};
}

}  // namespace kith::detail
