// The replicated kvs across OS processes (kith_avail_node children a, b, c
// with --rkvs a,b,c; real CURVE on loopback), checked with a history: the
// test records every write the kvs acknowledged, and afterwards every one
// of them must be readable, through every replica.
//   - a partition {c} | {a, b} (SIGSTOP of c past the heartbeat timeout):
//     the majority keeps acknowledging writes, c answers lookups from what
//     it holds; after the heal (SIGCONT) c converges to the others' map;
//   - kill -9 of a: b and c (still a majority) acknowledge writes; a
//     restarted empty a gets the whole map back;
//   - "unplug a Pi" with the DEFAULT timings (heartbeat timeout 2.5 s,
//     failover delay 750 ms): the failover service answers again by global
//     name, and after the replug the name, a group member and the kvs are
//     back everywhere. The times are printed (the figures of
//     docs/availability.md); the deadlines are generous bounds.
// Every wait has a deadline; children are killed and reaped at scope exit.
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "avail_proc.hpp"
#include "kith/global.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace std::chrono_literals;
using namespace avail;

namespace {

const std::string kList = "a@localhost,b@localhost,c@localhost";
const std::vector<std::string> kAll{"a@localhost", "b@localhost", "c@localhost"};

struct cluster {
    temp_dir tmp;
    node me{opts("hub@localhost", tmp.path / "me")};
    std::map<std::string, std::unique_ptr<child_node>> kids;
    std::map<std::string, term> acked;  // the history: key -> last acknowledged value
    int writes = 0;

    // `defaults`: the children keep kith's default heartbeat timings.
    void start(const std::string& name, const std::vector<std::string>& extra, bool defaults = false) {
        std::vector<std::string> args{"--rkvs", kList};
        args.insert(args.end(), extra.begin(), extra.end());
        if (!defaults) {
            kids[name] = start_child(name, tmp.path / name, args);
            return;
        }
        kids[name] = std::make_unique<child_node>(name, tmp.path / name, kCookie, "tcp://127.0.0.1:0", args);
        bool ok = kids[name]->wait_ready(10s);
        INFO("child stderr:\n" << kids[name]->stderr_text());
        REQUIRE(ok);
    }
    void mesh(const std::string& name, const std::vector<std::string>& peers) {
        std::vector<child_node*> ps;
        for (auto& other : peers) ps.push_back(kids.at(other).get());
        mesh_child(me, *kids.at(name), ps);
    }
    // A write through `at`; recorded in the history only if acknowledged.
    result<term> put(const std::string& at, const std::string& key) {
        term v = arr(key, ++writes);
        auto r = me.call(at, "rkvs", "store", arr(key, v), 5s);
        if (r.ok()) acked[key] = v;
        return r;
    }
    void put_ok(const std::string& at, const std::string& key) {
        auto r = put(at, key);
        INFO(at << " " << key << ": " << (r.ok() ? std::string() : r.err().message()));
        REQUIRE(r.ok());
    }
    // Every acknowledged write, read through `at`; returns the misses.
    int history_misses(const std::string& at) {
        int misses = 0;
        for (auto& [k, v] : acked) {
            auto r = me.call(at, "rkvs", "lookup", arr(k), 5s);
            if (!r.ok() || !(*r == arr("ok", v))) {
                if (++misses <= 3) UNSCOPED_INFO(at << " " << k << ": " << (r.ok() ? r->to_string() : r.err().message()));
            }
        }
        return misses;
    }
    std::optional<std::int64_t> digest(const std::string& at) {
        auto r = me.call(at, "rkctl", "digest", arr(), 1s);
        if (!r.ok()) return std::nullopt;
        return r->as_int();
    }
    bool converged(const std::vector<std::string>& names) {
        auto d0 = digest(names[0]);
        if (!d0) return false;
        for (auto& nn : names)
            if (digest(nn) != d0) return false;
        return true;
    }
};

}  // namespace

TEST_CASE("process: the replicated kvs loses no acknowledged write through a partition heal and a kill -9",
          "[availability][rkvs][process]") {
    cluster c;
    for (auto& n : kAll) c.start(n, {});
    c.mesh("c@localhost", {});
    c.mesh("b@localhost", {"c@localhost"});
    c.mesh("a@localhost", {"b@localhost", "c@localhost"});

    for (int i = 0; i < 30; ++i) c.put_ok(kAll[i % 3], "k" + std::to_string(i));

    // 1. Partition {c} | {a, b}: c is silent until both sides call it down.
    c.kids.at("c@localhost")->signal(SIGSTOP);
    REQUIRE(eventually([&] {
        auto r = c.me.call("a@localhost", "rkvs", "store", arr("probe", 0), 5s);  // waits for c until nodedown
        return r.ok() && !c.me.ping("c@localhost", 100ms);
    }, 10000ms));
    c.acked["probe"] = 0;
    for (int i = 0; i < 30; ++i) c.put_ok(i % 2 ? "a@localhost" : "b@localhost", "k" + std::to_string(i * 2));
    CHECK(c.history_misses("a@localhost") == 0);
    CHECK(c.history_misses("b@localhost") == 0);
    auto t_heal = clock_type::now();
    c.kids.at("c@localhost")->signal(SIGCONT);
    bool healed = eventually([&] { return c.converged(kAll); }, 10000ms);
    CHECK(healed);
    std::printf("rkvs: c held the majority's writes %.0f ms after the heal (SIGCONT, heartbeat timeout 1 s)\n",
                ms_since(t_heal));
    // c answers from its own map (every replica has it): checked through c.
    CHECK(c.history_misses("c@localhost") == 0);

    // 2. kill -9 of a: b and c are still a majority.
    c.kids.at("a@localhost")->kill_now();
    c.kids.at("a@localhost")->reap();
    for (int i = 0; i < 20; ++i) c.put_ok(i % 2 ? "b@localhost" : "c@localhost", "k" + std::to_string(i * 3));
    CHECK(c.history_misses("b@localhost") == 0);
    CHECK(c.history_misses("c@localhost") == 0);

    // 3. a returns empty and catches up.
    c.start("a@localhost", {});
    auto t_back = clock_type::now();
    c.mesh("a@localhost", {"b@localhost", "c@localhost"});
    bool back = eventually([&] { return c.converged(kAll); }, 10000ms);
    CHECK(back);
    std::printf("rkvs: a restarted empty held all %zu keys %.0f ms after it was connected\n", c.acked.size(),
                ms_since(t_back));
    for (auto& n : kAll) CHECK(c.history_misses(n) == 0);
    auto size = c.me.call("a@localhost", "rkctl", "size", arr(), 2s);
    REQUIRE(size.ok());
    CHECK(*size->as_int() == static_cast<std::int64_t>(c.acked.size()));
}

TEST_CASE("process: unplug a Pi with default timings: failover by name, then names, groups and kvs back after the replug",
          "[availability][rkvs][failover][process]") {
    cluster c;
    // Default heartbeat (interval 0.5 s, timeout 2.5 s) and failover delay (750 ms).
    for (auto& n : kAll) c.start(n, {"--failover", kList, "--fo-delay-ms", "750"}, true);
    c.mesh("c@localhost", {});
    c.mesh("b@localhost", {"c@localhost"});
    c.mesh("a@localhost", {"b@localhost", "c@localhost"});
    global_names g(c.me);
    mailbox rep(c.me);
    auto answer = [&] {
        mailbox mb(c.me);
        if (!g.send("fo", arr("ping", mb.self())).ok()) return std::string();
        auto m = mb.receive([](const message& x) { return x.is_user(); }, 50ms);  // a reply takes a few ms
        if (!m.ok() || !m->body.at(1) || !m->body.at(1)->as_string()) return std::string();
        return *m->body.at(1)->as_string();
    };
    auto members_on = [&](const std::string& at) {
        auto r = c.me.call(at, "pgctl", "members", arr("class"), 1s);
        return r.ok() && r->as_array() ? r->as_array()->size() : std::size_t{0};
    };
    REQUIRE(eventually([&] { return answer() == "a@localhost"; }, 10000ms));
    auto joined = c.me.call("a@localhost", "pgctl", "join", arr("class", rep.self()), 3s);
    REQUIRE(joined.ok());
    REQUIRE(eventually([&] { return members_on("b@localhost") == 1 && members_on("c@localhost") == 1; }));
    for (int i = 0; i < 10; ++i) c.put_ok(kAll[i % 3], "before" + std::to_string(i));

    // Unplug a: it goes silent (as a pulled cable); nobody is told.
    auto t_unplug = clock_type::now();
    c.kids.at("a@localhost")->signal(SIGSTOP);
    bool moved = eventually([&] { return answer() == "b@localhost"; }, 10000ms);
    double fo_ms = ms_since(t_unplug);
    CHECK(moved);
    std::printf("unplug: the failover service answered by global name from b %.0f ms after a went silent "
                "(defaults: heartbeat timeout 2.5 s + delay 750 ms)\n", fo_ms);
    CHECK(members_on("b@localhost") == 0);
    for (int i = 0; i < 10; ++i) c.put_ok(i % 2 ? "b@localhost" : "c@localhost", "during" + std::to_string(i));
    CHECK(c.history_misses("b@localhost") == 0);

    // Replug: a takes the service back, its group member and the kvs are back.
    auto t_replug = clock_type::now();
    c.kids.at("a@localhost")->signal(SIGCONT);
    double name_ms = -1, group_ms = -1, kvs_ms = -1;
    bool all_back = eventually([&] {
        if (group_ms < 0 && members_on("b@localhost") == 1 && members_on("c@localhost") == 1) group_ms = ms_since(t_replug);
        if (kvs_ms < 0 && c.converged(kAll)) kvs_ms = ms_since(t_replug);
        if (name_ms < 0 && answer() == "a@localhost") name_ms = ms_since(t_replug);
        return name_ms >= 0 && group_ms >= 0 && kvs_ms >= 0;
    }, 15000ms);
    CHECK(all_back);
    std::printf("replug: after SIGCONT of a: group member seen on b and c after %.0f ms, kvs converged after %.0f ms, "
                "the global name back on a after %.0f ms (handover from b)\n", group_ms, kvs_ms, name_ms);
    for (auto& n : kAll) CHECK(c.history_misses(n) == 0);
}
