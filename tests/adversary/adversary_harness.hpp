// Helpers for the hostile-peer tests (issue 12): the victim and the
// adversary are child processes (kith_adversary_victim, kith_adversary)
// driven over stdin/stdout; every wait has a deadline.
#pragma once

#include <sodium.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../grants/peer_process.hpp"
#include "../transport/tmpdir.hpp"
#include "kith/keys.hpp"
#include "kith_catch.hpp"

#if !defined(KITH_ADVERSARY) || !defined(KITH_VICTIM)
#error "KITH_ADVERSARY and KITH_VICTIM must name the test binaries"
#endif

namespace adv {

using namespace std::chrono_literals;

// The adversary's node name: the pids it forges as its own carry it.
inline const std::string kMallory = "mallory@localhost";
inline const std::string kMe = "<" + kMallory + ".1>";  // "our" actor

inline bool starts(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

inline std::vector<std::string> words(const std::string& s) {
    std::istringstream in(s);
    std::vector<std::string> w;
    for (std::string t; in >> t;) w.push_back(t);
    return w;
}

// A victim (or cluster member) process.
struct victim {
    std::unique_ptr<peer_process> p;
    std::map<std::string, std::string> f;  // name, ep, key, sink, handed, worker, asker, watcher
    std::string cookie;
    std::filesystem::path dir;

    std::string ask(const std::string& cmd, std::chrono::milliseconds t = 15s) {
        return p->ask(cmd, "", t);  // one answer line per command
    }
    const std::string& operator[](const std::string& k) { return f.at(k); }
    long stat(const std::string& key) {
        auto line = ask("stats");
        auto pos = line.find(" " + key + "=");
        REQUIRE(pos != std::string::npos);
        return std::stol(line.substr(pos + key.size() + 2));
    }
    std::string kvs(const std::string& key) { return ask("kvs " + key); }
    long sink() { return std::stol(words(ask("sink")).at(1)); }
    long handed() { return std::stol(words(ask("sink")).at(2)); }
};

// `prefix`: a command the victim runs under (e.g. ip netns exec NS);
// `extra`: more options for it (tests/support/node_args.hpp).
inline std::unique_ptr<victim> start_victim(const std::string& name, const std::filesystem::path& dir,
                                            const std::string& cookie, std::vector<std::string> prefix = {},
                                            std::vector<std::string> extra = {}) {
    auto v = std::make_unique<victim>();
    v->cookie = cookie;
    v->dir = dir;
    std::vector<std::string> argv = std::move(prefix);
    for (auto a : {std::string(KITH_VICTIM), std::string("--name"), name, std::string("--key-dir"), dir.string(),
                   std::string("--cookie"), cookie})
        argv.push_back(std::move(a));
    for (auto& a : extra) argv.push_back(a);
    v->p = std::make_unique<peer_process>(argv);
    auto ready = v->p->wait_line("READY ", 15s);
    INFO(v->p->all_output());
    REQUIRE(ready.has_value());
    for (auto& w : words(ready->substr(6))) {
        auto eq = w.find('=');
        if (eq != std::string::npos) v->f[w.substr(0, eq)] = w.substr(eq + 1);
    }
    return v;
}

// The adversary process.
struct adversary {
    std::unique_ptr<peer_process> p;
    // `niced`: at the lowest CPU priority (nice 19), for the load tests: on
    // a small shared machine the attacker's own CPU would otherwise be
    // measured as the victim's slowness (a real attacker brings its own).
    // `prefix`: a command it runs under (e.g. ip netns exec NS).
    explicit adversary(bool niced = false, std::vector<std::string> prefix = {}) {
        std::vector<std::string> argv = std::move(prefix);
        if (niced) argv.insert(argv.end(), {"/usr/bin/nice", "-n", "19"});
        argv.push_back(KITH_ADVERSARY);
        p = std::make_unique<peer_process>(argv);
        REQUIRE(p->wait_line("READY", 10s).has_value());
    }
    std::string dial(const std::string& id, const std::string& name, const std::string& how) {
        return p->ask("dial " + id + " " + name + " " + how, "dial " + id, 15s);
    }
    void send(const std::string& id, const std::string& env) {
        REQUIRE(p->ask("send " + id + " " + env, "sen") == "sent");
    }
    void sendrange(const std::string& id, long from, long to, const std::string& tmpl) {
        REQUIRE(p->ask("sendrange " + id + " " + std::to_string(from) + " " + std::to_string(to) + " " + tmpl, "sen",
                       30s) == "sent " + std::to_string(to - from + 1));
    }
    // The fields of the next envelope of `type` matching the filters, or
    // empty at the deadline: "[8, 7, 3, \"x\"]" -> {"8", "7", "3", "\"x\""}.
    std::vector<std::string> expect(const std::string& id, int type, const std::string& filters = "",
                                    long ms = 5000) {
        auto line = p->ask("expect " + id + " " + std::to_string(type) + " " + std::to_string(ms) + " " + filters,
                           "got", std::chrono::milliseconds(ms + 10000));
        std::vector<std::string> out;
        if (line == "got timeout" || !starts(line, "got ")) return out;
        std::string s = line.substr(4);
        for (std::size_t pos = 0;;) {
            auto bar = s.find(" | ", pos);
            out.push_back(s.substr(pos, bar == std::string::npos ? std::string::npos : bar - pos));
            if (bar == std::string::npos) break;
            pos = bar + 3;
        }
        return out;
    }
    // A call [6, Req, From, Svc, Fn, Args, 5000] and its reply's fields.
    std::vector<std::string> call(const std::string& id, int req, const std::string& svc, const std::string& fn,
                                  const std::string& args, const std::string& from = "<null>") {
        send(id, "[6, " + std::to_string(req) + ", " + from + ", \"" + svc + "\", \"" + fn + "\", " + args +
                     ", 5000]");
        return expect(id, 8, "1=" + std::to_string(req));
    }
    // The reply code of a call, "none" without a reply.
    std::string call_code(const std::string& id, int req, const std::string& svc, const std::string& fn,
                          const std::string& args, const std::string& from = "<null>") {
        auto r = call(id, req, svc, fn, args, from);
        return r.size() == 4 ? r[2] : "none";
    }
    std::string collect(const std::string& id, int type, long n, long ms, int idx) {
        return p->ask("collect " + id + " " + std::to_string(type) + " " + std::to_string(n) + " " +
                          std::to_string(ms) + " " + std::to_string(idx),
                      "collect", std::chrono::milliseconds(ms + 10000));
    }
    long seen(const std::string& id, int type) {
        return std::stol(words(p->ask("seen " + id + " " + std::to_string(type), "seen")).at(1));
    }
};

// "<victim@localhost.42>" -> 42; "#Ref<victim@localhost.7>" -> 7.
inline long serial_of(const std::string& text) {
    auto dot = text.rfind('.');
    REQUIRE(dot != std::string::npos);
    return std::stol(text.substr(dot + 1));
}
inline std::string node_of(const std::string& text) {
    auto lt = text.find('<');
    auto dot = text.rfind('.');
    REQUIRE((lt != std::string::npos && dot != std::string::npos));
    return text.substr(lt + 1, dot - lt - 1);
}

// Makes `label`'s row of a grant table name `allow` and recomputes the
// table's checksum, as a person editing the file by hand would
// (docs/security.md, "The grant table").
inline void hand_edit_grant_table(const std::filesystem::path& file, const std::string& label,
                                  const std::string& allow) {
    std::ifstream in(file);
    REQUIRE(in.good());
    std::string line, body, end_count;
    while (std::getline(in, line)) {
        if (starts(line, "end ")) {
            end_count = words(line).at(1);
            break;
        }
        if (starts(line, "grant " + label + " ")) {
            auto a = line.find(" allow=");
            REQUIRE(a != std::string::npos);
            auto e = line.find(' ', a + 1);
            line = line.substr(0, a) + " allow=" + allow + line.substr(e);
        }
        body += line + "\n";
    }
    REQUIRE(!end_count.empty());
    unsigned char h[32];
    crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(body.data()), body.size(), nullptr, 0);
    static const char digits[] = "0123456789abcdef";
    std::string sum;
    for (int i = 0; i < 16; ++i) {
        sum.push_back(digits[h[i] >> 4]);
        sum.push_back(digits[h[i] & 15]);
    }
    std::string tmp = file.string() + ".edit";
    {
        std::ofstream o(tmp, std::ios::trunc);
        o << body << "end " << end_count << " " << sum << "\n";
    }
    std::filesystem::rename(tmp, file);
}

// A victim ("victim@localhost", started with `victim_args`) with a grant
// "mallory" for `scope` at `rate` ("PER_S BURST"), and the adversary
// connected under it as connection "g", claiming the node name
// mallory@localhost.
struct grant_scene {
    temp_dir tmp;
    std::unique_ptr<victim> v;
    adversary a;
    std::string grant_file;
    explicit grant_scene(const std::string& scope, const std::string& rate = "100000 100000",
                         const std::vector<std::string>& victim_args = {}) {
        v = start_victim("victim@localhost", tmp.path / "victim", "victim-cookie", {}, victim_args);
        grant_file = (tmp.path / "mallory.grant").string();
        REQUIRE(v->ask("grant mallory " + scope + " " + rate + " " + grant_file) == "grant ok");
        REQUIRE(a.dial("g", kMallory, "grant " + grant_file) == "dial g ok victim@localhost proof=empty");
    }
};

template <class F>
bool eventually(F f, std::chrono::milliseconds timeout = 10s) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
        if (f()) return true;
        std::this_thread::sleep_for(20ms);
    }
    return f();
}

}  // namespace adv
