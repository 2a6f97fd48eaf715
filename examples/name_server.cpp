// lib_chan's nameServer (seeds 000 and 001) in kith: a service reachable only
// with a credential, whose server side is told when the client goes away.
//
//   lib_chan:start_server().                                  % server
//   {ok, Pid} = lib_chan:connect("localhost", 1234, nameServer, "ABXy45", "").
//   lib_chan:cast(Pid, {store, joe, "writing a book"}).
//   lib_chan:rpc(Pid, {lookup, joe}).   -> {ok, "writing a book"}
//   lib_chan:rpc(Pid, {lookup, jim}).   -> undefined
//   % server: {chan_closed, MM} when the client disconnects
//
// The password becomes a grant: a key of the client's own, for this service
// only. Connecting spawns a session actor (mod_name_server) on the server;
// casts are plain messages, rpcs are requests. When the client's connection
// ends, the session gets exit "noconnection" (lib_chan's chan_closed).
#include <kith/builtin.hpp>
#include <kith/mailbox.hpp>
#include <kith/node.hpp>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>

int main() {
    kith::node_options o;
    o.net.listen = "tcp://127.0.0.1:0";
    o.name = "server@localhost";
    o.net.cookie = "server-side-only";
    kith::node server(o);
    kith::mailbox log(server);  // the server's console

    // mod_name_server: one session per client, sharing one table.
    auto table = std::make_shared<std::map<std::string, kith::term>>();
    kith::service ns("nameServer");
    kith::pid console = log.self();
    ns.actor_type("session", [table, console] {
        return [table, console](kith::actor& self) -> kith::behavior {
            self.trap_exit(true);  // to be told when the client goes away
            return [table, console](kith::actor& self, kith::message& m) {
                if (m.is_exit()) {  // {chan_closed, MM}
                    self.send(console, kith::arr("chan_closed", m.body));
                    self.quit();
                    return;
                }
                const kith::term* verb = m.body.at(0);
                const kith::term* key = m.body.at(1);
                if (!verb || !key || !key->is_string()) return;
                if (*verb == kith::term("store") && m.body.size() == 3) (*table)[*key->as_string()] = *m.body.at(2);
                if (*verb == kith::term("lookup") && m.is_request()) {
                    auto it = table->find(*key->as_string());
                    self.reply(m, it == table->end() ? kith::term("undefined") : kith::arr("ok", it->second));
                }
            };
        };
    });
    server.add_service(std::move(ns));
    server.add_service(kith::services::make_kvs());  // not granted: out of reach

    // The credential: the server's owner issues it (kith grant create ...).
    kith::grant_spec spec;
    spec.label = "client-1";
    spec.allow = {{"nameServer", {"session"}}};
    auto credential = server.grant(spec);
    if (!credential) return std::printf("grant: %s\n", credential.err().message().c_str()), 1;

    // The client: another cluster, only the grant file in hand.
    o.name = "client@localhost";
    o.net.cookie = "client-side-only";
    auto client = std::make_unique<kith::node>(o);
    auto srv = client->connect(*credential);  // lib_chan:connect(...)
    if (!srv) return std::printf("connect: %s\n", srv.err().message().c_str()), 1;
    auto session = client->spawn(*srv, "nameServer", "session", kith::arr());
    if (!session) return std::printf("spawn: %s\n", session.err().message().c_str()), 1;
    kith::mailbox me(*client);
    me.send(*session, kith::arr("store", "joe", "writing a book"));                             // lib_chan:cast
    auto joe = me.call(*session, kith::arr("lookup", "joe"), std::chrono::seconds(5));         // lib_chan:rpc
    auto jim = me.call(*session, kith::arr("lookup", "jim"), std::chrono::seconds(5));
    auto other = client->call(*srv, "kvs", "keys", kith::arr());                                // not granted
    std::printf("rpc(lookup joe) -> %s\nrpc(lookup jim) -> %s\ncall kvs:keys -> %s\n",
                joe ? joe->to_string().c_str() : joe.err().message().c_str(),
                jim ? jim->to_string().c_str() : jim.err().message().c_str(),
                other ? other->to_string().c_str() : other.err().message().c_str());

    client->stop();  // the client goes away
    auto closed = log.receive(std::chrono::seconds(10));
    std::printf("server: %s\n", closed ? closed->body.to_string().c_str() : closed.err().message().c_str());
    bool ok = joe && *joe == kith::arr("ok", "writing a book") && jim && *jim == kith::term("undefined") &&
              other.code() == kith::errc::unauthorized && closed && *closed->body.at(0) == kith::term("chan_closed");
    return ok ? 0 : 1;
}
