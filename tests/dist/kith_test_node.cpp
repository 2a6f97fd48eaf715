// kith_test_node: a node in its own OS process, for multi-process tests.
//   kith_test_node --name N --key-dir D [--cookie C] [--listen EP] [--hb-timeout-ms T]
// Hosts kvs, echo (with the spawnable "server" actor type) and "demo"
// (dist_demo's rpc server), plus two services for the tests:
//   slow:wait()    parks its reply and never answers (a call that stays pending)
//   slow:parked()  how many slow:wait calls are parked
//   test:stats()   {"protocol_errors", "decode_errors", "refused", "refused_connections"}
//                  from node::net_stats() Prints one line "READY <endpoint> <z85 key>" when
// it is up, then runs until SIGTERM/SIGINT (clean stop, goodbye sent) or kill.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kith/builtin.hpp"
#include "kith/node.hpp"
#include "../support/node_args.hpp"

int main(int argc, char** argv) {
    kith::node_options o;
    o.name = "test@localhost";
    o.net.listen = "tcp://127.0.0.1:0";
    if (!parse_node_args("kith_test_node", argc, argv, o)) return 2;
    stop_on_signals();
    kith::node n(o);
    n.add_service(kith::services::make_kvs());
    n.add_service(kith::services::make_echo());
    n.add_service(kith::services::make_demo(n));
    struct parking {
        std::mutex mu;
        std::vector<kith::reply_to> held;
    };
    auto park = std::make_shared<parking>();
    n.add_service(kith::service("slow")
                      .function("wait",
                                [park](kith::reply_to r) {
                                    std::lock_guard lk(park->mu);
                                    park->held.push_back(std::move(r));
                                })
                      .function("parked", [park] {
                          std::lock_guard lk(park->mu);
                          return static_cast<std::int64_t>(park->held.size());
                      }));
    kith::node* np = &n;
    n.add_service(kith::service("test").function("stats", [np] {
        auto c = np->net_stats();
        return kith::map_of({{"protocol_errors", kith::term(static_cast<std::int64_t>(c.protocol_errors))},
                                {"decode_errors", kith::term(static_cast<std::int64_t>(c.decode_errors))},
                                {"refused", kith::term(static_cast<std::int64_t>(c.refused))},
                                {"refused_connections",
                                 kith::term(static_cast<std::int64_t>(c.refused_connections))}});
    }));
    std::printf("READY %s %s\n", n.endpoint().c_str(), n.key().z85().c_str());
    std::fflush(stdout);
    wait_for_stop();
    n.stop();
    return 0;
}
