// kith_avail_node: a node in its own OS process for the availability tests.
//   kith_avail_node --name N --key-dir D --cookie C [--listen EP] [--hb-timeout-ms T]
// Hosts echo (its "server" actor type is the remote supervisor child) and a
// pg scope "default" with a test service:
//   pgctl:join(Group, ReportTo)  -> the pid of a new local actor, joined to
//        Group; it answers every user message M with ["got", Self, M] to
//        ReportTo, and ends on "quit".
//   pgctl:members(Group)         -> [Pid...] (cluster-wide view of this node)
//   pgctl:send_all(Group, Msg)   -> how many pids it was sent to
// and global names with a test service:
//   glctl:register(Name, ReportTo) -> the pid of a new local actor (as
//        pgctl:join's) registered globally under Name
//   glctl:whereis(Name)            -> the pid, or the error (noproc)
//   glctl:send(Name, Msg)          -> nil, or the error
//   glctl:connect(Endpoint, KeyZ85)-> nil: connect to another node (meshes
//        the test's children)
// With --failover N1,N2,... [--fo-delay-ms D] it also runs a failover
// service "fo" over those nodes whose instance answers ["ping", ReplyTo]
// with ["pong", NodeName, Self]; foctl:running() -> whether it runs here.
// With --rkvs N1,N2,... it also runs the replicated kvs "rkvs" over those
// nodes (kith/rkvs.hpp; sync_interval 500 ms) and rkctl:digest() -> its map's
// digest, rkctl:size() -> its entry count.
// Prints "READY <endpoint> <z85 key>" when up; runs until SIGTERM or kill.
#include <csignal>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "../support/node_args.hpp"
#include "kith/builtin.hpp"
#include "kith/failover.hpp"
#include "kith/global.hpp"
#include "kith/keys.hpp"
#include "kith/node.hpp"
#include "kith/pg.hpp"
#include "kith/rkvs.hpp"

namespace {
// An actor that reports every user message M as ["got", Self, M] to
// `report` and ends on "quit".
kith::pid spawn_reporter(kith::node& n, kith::pid report) {
    return n.spawn([report](kith::actor& self, kith::message& m) {
        if (!m.is_user()) return;
        if (m.body.as_string() && *m.body.as_string() == "quit") {
            self.quit("normal");
            return;
        }
        self.send(report, kith::arr("got", self.self(), m.body));
    });
}
}  // namespace

int main(int argc, char** argv) {
    kith::node_options o;
    o.name = "avail@localhost";
    o.workers = 2;
    o.net.listen = "tcp://127.0.0.1:0";
    // Our own options first; the rest are the common node options.
    std::vector<std::string> fo_nodes, rkvs_nodes;
    int fo_delay_ms = 500;
    std::vector<char*> rest{argv[0]};
    for (int i = 1; i < argc; ++i) {
        std::string k = argv[i];
        if ((k == "--failover" || k == "--fo-delay-ms" || k == "--rkvs") && i + 1 < argc) {
            std::string v = argv[++i];
            if (k == "--fo-delay-ms") {
                fo_delay_ms = std::stoi(v);
            } else {
                std::stringstream ss(v);
                for (std::string item; std::getline(ss, item, ',');) (k == "--rkvs" ? rkvs_nodes : fo_nodes).push_back(item);
            }
        } else {
            rest.push_back(argv[i]);
        }
    }
    if (!parse_node_args("kith_avail_node", static_cast<int>(rest.size()), rest.data(), o)) return 2;
    stop_on_signals();
    kith::node n(o);
    n.add_service(kith::services::make_echo());
    auto pg = std::make_shared<kith::pg_scope>(n);
    kith::node* np = &n;
    n.add_service(kith::service("pgctl")
                      .function("join",
                                [np, pg](std::string group, kith::pid report) -> kith::result<kith::pid> {
                                    kith::pid p = np->spawn([report](kith::actor& self, kith::message& m) {
                                        if (!m.is_user()) return;
                                        if (m.body.as_string() && *m.body.as_string() == "quit") {
                                            self.quit("normal");
                                            return;
                                        }
                                        self.send(report, kith::arr("got", self.self(), m.body));
                                    });
                                    auto r = pg->join(group, p);
                                    if (!r.ok()) return r.err();
                                    return p;
                                })
                      .function("members", [pg](std::string group) { return pg->members(group); })
                      .function("send_all",
                                [pg](std::string group, kith::term msg) -> kith::result<std::int64_t> {
                                    auto r = pg->send_all(group, msg);
                                    if (!r.ok()) return r.err();
                                    return static_cast<std::int64_t>(*r);
                                }));
    auto gl = std::make_shared<kith::global_names>(n);
    n.add_service(kith::service("glctl")
                      .function("register",
                                [np, gl](std::string name, kith::pid report) -> kith::result<kith::pid> {
                                    kith::pid p = spawn_reporter(*np, report);
                                    auto r = gl->register_name(name, p);
                                    if (!r.ok()) return r.err();
                                    return p;
                                })
                      .function("whereis", [gl](std::string name) { return gl->whereis(name); })
                      .function("send", [gl](std::string name, kith::term msg) -> kith::result<kith::term> {
                          auto r = gl->send(name, msg);
                          if (!r.ok()) return r.err();
                          return kith::term();
                      })
                      .function("connect",
                                [np](std::string endpoint, std::string key) -> kith::result<kith::term> {
                                    auto k = kith::public_key::from_z85(key);
                                    if (!k) return kith::error{kith::errc::badarg, "not a z85 public key"};
                                    auto r = np->connect(endpoint, *k, std::chrono::seconds(5));
                                    if (!r.ok()) return r.err();
                                    return kith::term();
                                }));
    std::shared_ptr<kith::failover_service> fo;
    if (!fo_nodes.empty()) {
        kith::failover_spec fs;
        fs.name = "fo";
        fs.nodes = fo_nodes;
        fs.delay = std::chrono::milliseconds(fo_delay_ms);
        fs.start = [](kith::node& nd) {
            std::string me = nd.name();
            return nd.spawn([me](kith::actor& self, kith::message& m) {
                const kith::term* tag = m.body.at(0);
                const kith::term* to = m.body.at(1);
                if (m.is_user() && tag && to && to->as_pid() && tag->as_string() && *tag->as_string() == "ping")
                    self.send(*to->as_pid(), kith::arr("pong", me, self.self()));
            });
        };
        fo = std::make_shared<kith::failover_service>(n, *gl, fs);
        n.add_service(kith::service("foctl").function("running", [fo] { return fo->running_here(); }));
    }
    std::shared_ptr<kith::replicated_kvs> rkvs;
    if (!rkvs_nodes.empty()) {
        kith::rkvs_options ro;
        ro.replicas = rkvs_nodes;
        ro.sync_interval = std::chrono::milliseconds(500);
        rkvs = std::make_shared<kith::replicated_kvs>(n, ro);
        n.add_service(kith::service("rkctl")
                          .function("digest", [rkvs] { return static_cast<std::int64_t>(rkvs->digest()); })
                          .function("size", [rkvs] { return static_cast<std::int64_t>(rkvs->size()); }));
    }
    std::printf("READY %s %s\n", n.endpoint().c_str(), n.key().z85().c_str());
    std::fflush(stdout);
    wait_for_stop();
    rkvs.reset();
    fo.reset();
    gl.reset();
    pg.reset();
    n.stop();
    return 0;
}
