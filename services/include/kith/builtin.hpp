// kith/builtin.hpp — the built-in services every `kith node` can host.
//
//   kvs   the seeds' name server (Armstrong's kvs module):
//           store(Key, Value) -> true
//           lookup(Key)       -> ["ok", Value] | "undefined"
//           delete(Key)       -> true if it was there, else false
//           keys()            -> [Key...] (sorted)
//         Keys are strings; values any term. Errors: bad_args.
//   echo  echo(X) -> X, and the spawnable actor type "server": the seeds'
//         echo server — it answers [Client, M] by sending M to Client; a
//         request (call) gets "sent", or bad_args naming what it expects;
//         a bare message is ignored, as in the seeds.
//   demo  the seeds' dist_demo: node() -> this node's name, and the
//         spawnable actor type "rpc_server": it answers a request
//         [Service, Function, Args] by invoking that exported function of
//         its own node (never arbitrary code) and replying with the result.
//   node  information about the node (an admin service: cluster members only):
//           whereis(Name) -> the pid registered as Name, or nil
//           info() -> {"name", "uptime_s", "services", "public", "peers",
//                      "messages_in", "messages_out", "refused", "counters"}
//         where "refused" counts refusals by reason (unauthorized, revoked,
//         rate_limited, other; connections; malformed; invalid; overloaded)
//         and "counters" holds
//         every network counter (kith/net.hpp net_counters).
//   grants the node owner's control of its grant table (kith/grants.hpp),
//         for `kith grant`. Host it only where every caller may manage
//         grants: it is never reachable through a grant or as a public
//         service (create refuses scopes that name it).
//           create(Label, Scope, Rate|nil, ExpiresInSeconds|nil[, Limits|nil])
//             -> GrantFileText
//             Scope as "kvs,echo:echo"; Rate as "10/s" or "10/s,burst=20";
//             Limits as "pending=8,spawned=4" (kith::grant_limits; optional,
//             nil or absent: the node's defaults).
//           list() -> [GrantInfo...]     revoke(Label) -> true
//           set_rate(Label, Rate) -> true
//           set_limits(Label, Limits) -> LimitsText   Limits as create's, or
//             "default"; replaces them all, in force for the holder's next
//             request (node::set_grant_limits)
//         Errors: badarg (bad label, scope, rate or limits; unknown or
//         revoked label).
//
// Each make_* returns a fresh, independent service. Thread-safe: the kvs
// table is guarded by its own mutex.
#pragma once

#include "kith/node.hpp"
#include "kith/service.hpp"

namespace kith::services {

service make_kvs();
service make_echo();
// `n` must outlive the service (it is the node the service is added to).
service make_demo(node& n);
// `n` must outlive the service.
service make_node_info(node& n);
service make_grant_admin(node& n);

}  // namespace kith::services
