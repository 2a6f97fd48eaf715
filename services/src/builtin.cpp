#include "kith/builtin.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

namespace kith::services {

service make_kvs() {
    struct table {
        std::mutex mu;
        std::map<std::string, term> kv;
    };
    auto t = std::make_shared<table>();
    service s("kvs");
    s.function("store", [t](std::string key, term value) {
         std::lock_guard lk(t->mu);
         t->kv[std::move(key)] = std::move(value);
         return true;
     })
        .function("lookup", [t](std::string key) -> term {
            std::lock_guard lk(t->mu);
            auto it = t->kv.find(key);
            if (it == t->kv.end()) return term("undefined");
            return arr("ok", it->second);
        })
        .function("delete", [t](std::string key) {
            std::lock_guard lk(t->mu);
            return t->kv.erase(key) > 0;
        })
        .function("keys", [t]() {
            std::lock_guard lk(t->mu);
            std::vector<std::string> keys;
            for (auto& [k, _] : t->kv) keys.push_back(k);
            return keys;
        });
    return s;
}

service make_echo() {
    service s("echo");
    s.function("echo", [](term x) { return x; });
    // The seeds' echo server: receive {Client, M} -> Client ! M.
    s.actor_type("server", [] {
        return [](actor& self, message& m) {
            const term* client = m.body.at(0);
            const term* msg = m.body.at(1);
            const bool well_formed = m.body.size() == 2 && client->is_pid();
            if (m.is_request()) {
                // Asked directly (kith::mailbox::call, Python call_pid): say what it expects.
                if (well_formed) self.send(*client->as_pid(), *msg);
                self.reply(m, well_formed ? result<term>(term("sent"))
                                          : result<term>(error{errc::bad_args, "echo:server expects [Pid, Message], got " +
                                                                                   m.body.to_string()}));
                return;
            }
            // A bare message is ignored, as by the seeds' Erlang echo loop.
            if (m.is_user() && well_formed) self.send(*client->as_pid(), *msg);
        };
    });
    return s;
}

service make_demo(node& n) {
    service s("demo");
    node* np = &n;
    s.function("node", [np] { return np->name(); });
    s.actor_type("rpc_server", [np] {
        return [np](actor& self, message& m) {
            if (!m.is_request()) return;
            const term* svc = m.body.at(0);
            const term* fn = m.body.at(1);
            const term* args = m.body.at(2);
            reply_handle to(m);
            if (m.body.size() != 3 || !svc->is_string() || !fn->is_string()) {
                self.reply(to, result<term>(error{errc::bad_args, "expected [Service, Function, Args]"}));
                return;
            }
            np->invoke_local(*svc->as_string(), *fn->as_string(), *args,
                             reply_to([np, to](result<term> r) { np->reply(to, std::move(r)); }));
        };
    });
    return s;
}

}  // namespace kith::services
