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
// Prints "READY <endpoint> <z85 key>" when up; runs until SIGTERM or kill.
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include "../support/node_args.hpp"
#include "kith/builtin.hpp"
#include "kith/global.hpp"
#include "kith/keys.hpp"
#include "kith/node.hpp"
#include "kith/pg.hpp"

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
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }
}  // namespace

int main(int argc, char** argv) {
    kith::node_options o;
    o.name = "avail@localhost";
    o.workers = 2;
    o.net.listen = "tcp://127.0.0.1:0";
    if (!parse_node_args("kith_avail_node", argc, argv, o)) return 2;
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
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
    std::printf("READY %s %s\n", n.endpoint().c_str(), n.key().z85().c_str());
    std::fflush(stdout);
    while (!g_stop) pause();
    gl.reset();
    pg.reset();
    n.stop();
    return 0;
}
