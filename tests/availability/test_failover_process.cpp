// Failover services across OS processes: three kith_avail_node children
// a, b, c run the failover service "fo" over [a, b, c] (delay 500 ms,
// heartbeat timeout 1 s); this test node watches by global name.
//   - it runs on a; kill -9 of a: calls by name answer again from b within
//     the delay (+ slack); a restarted a takes over (b stops first);
//   - SIGSTOP of a: answers again from b within heartbeat timeout + delay;
//     after SIGCONT a takes over and exactly one instance runs;
//   - throughout, sampled every few ms: never two instances running in the
//     connected majority.
// Every wait has a deadline; children are killed and reaped at scope exit.
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "avail_proc.hpp"
#include "kith/failover.hpp"
#include "kith/global.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace std::chrono_literals;
using namespace avail;

namespace {

const std::string kList = "a@localhost,b@localhost,c@localhost";
constexpr auto kHbTimeout = 1000ms;
constexpr auto kDelay = 500ms;

struct cluster {
    temp_dir tmp;
    node me{opts("hub@localhost", tmp.path / "me")};
    global_names g{me};
    std::map<std::string, std::unique_ptr<child_node>> kids;
    int max_running_seen = 0;  // in the majority, over every sample

    void start(const std::string& short_name) {
        auto name = short_name + "@localhost";
        kids[name] = start_child(name, tmp.path / short_name,
                                 {"--failover", kList, "--fo-delay-ms", "500"});
    }
    // Connects this node to `name` and `name` to each of `peers` (each pair
    // once: a second connect of a connected pair is not what we test here).
    void mesh(const std::string& name, const std::vector<std::string>& peers) {
        std::vector<child_node*> ps;
        for (auto& other : peers) ps.push_back(kids.at(other).get());
        mesh_child(me, *kids.at(name), ps);
    }
    // How many of `names` say their instance runs (unreachable ones: not counted).
    int running(const std::vector<std::string>& names) {
        int n = 0;
        for (auto& nn : names) {
            auto r = me.call(nn, "foctl", "running", arr(), 500ms);
            if (r.ok() && *r == term(true)) ++n;
        }
        max_running_seen = std::max(max_running_seen, n);
        return n;
    }
    // Which node answers a ping sent by global name (empty: none within 200 ms).
    std::string answer() {
        mailbox mb(me);
        if (!g.send("fo", arr("ping", mb.self())).ok()) return {};
        auto m = mb.receive([](const message& x) { return x.is_user(); }, 200ms);
        if (!m.ok() || !m->body.at(1) || !m->body.at(1)->as_string()) return {};
        return *m->body.at(1)->as_string();
    }
    // Polls until `node_name` answers by global name, sampling the majority
    // `watch` each round; returns the time taken, or -1 after `timeout`.
    double wait_answer(const std::string& node_name, const std::vector<std::string>& watch,
                       std::chrono::milliseconds timeout, clock_type::time_point t0) {
        auto end = clock_type::now() + timeout;
        while (clock_type::now() < end) {
            running(watch);
            if (answer() == node_name) return ms_since(t0);
            std::this_thread::sleep_for(5ms);  // polling interval
        }
        return -1;
    }
};

}  // namespace

TEST_CASE("process: a failover service moves on unplug, comes back on return, and never runs twice in the majority",
          "[availability][failover][process]") {
    cluster c;
    for (auto s : {"a", "b", "c"}) c.start(s);
    c.mesh("c@localhost", {});
    c.mesh("b@localhost", {"c@localhost"});
    c.mesh("a@localhost", {"b@localhost", "c@localhost"});
    const std::vector<std::string> all{"a@localhost", "b@localhost", "c@localhost"};
    const std::vector<std::string> bc{"b@localhost", "c@localhost"};

    auto t_start = clock_type::now();
    CHECK(c.wait_answer("a@localhost", all, 10s, t_start) >= 0);
    CHECK(c.running(all) == 1);

    // 1. kill -9 of the primary: the connection closes, b starts it after the delay.
    auto t_kill = clock_type::now();
    c.kids.at("a@localhost")->kill_now();
    c.kids.at("a@localhost")->reap();
    double fo_kill = c.wait_answer("b@localhost", bc, 5s, t_kill);
    std::printf("failover: answering again from b %.0f ms after kill -9 of a (delay %lld ms)\n", fo_kill,
                static_cast<long long>(kDelay.count()));
    CHECK(fo_kill >= 0);
    CHECK(fo_kill < static_cast<double>((kHbTimeout + kDelay + 500ms).count()));
    CHECK(c.running(bc) == 1);

    // 2. a comes back: b stops its instance, then a starts one (handover).
    c.start("a");
    auto t_back = clock_type::now();
    c.mesh("a@localhost", {"b@localhost", "c@localhost"});
    double takeover = c.wait_answer("a@localhost", all, 5s, t_back);
    std::printf("failover: a took over %.0f ms after it returned\n", takeover);
    CHECK(takeover >= 0);
    CHECK(c.running(all) == 1);

    // 3. SIGSTOP of the primary: silent, noticed after the heartbeat timeout.
    auto t_stop = clock_type::now();
    c.kids.at("a@localhost")->signal(SIGSTOP);
    double fo_stop = c.wait_answer("b@localhost", bc, 8s, t_stop);
    std::printf("failover: answering again from b %.0f ms after SIGSTOP of a (heartbeat timeout %lld ms + delay)\n",
                fo_stop, static_cast<long long>(kHbTimeout.count()));
    CHECK(fo_stop >= 0);
    CHECK(fo_stop < static_cast<double>((kHbTimeout + kDelay + 1000ms).count()));

    // 4. SIGCONT: a is back and first again; exactly one instance, on a.
    auto t_cont = clock_type::now();
    c.kids.at("a@localhost")->signal(SIGCONT);
    double back = c.wait_answer("a@localhost", bc, 10s, t_cont);
    std::printf("failover: a running it again %.0f ms after SIGCONT\n", back);
    CHECK(back >= 0);
    bool one = false;
    auto end = clock_type::now() + 5s;
    while (!one && clock_type::now() < end) {
        auto on_a = c.me.call("a@localhost", "foctl", "running", arr(), 1s);
        one = c.running(all) == 1 && on_a.ok() && *on_a == term(true);
        if (!one) std::this_thread::sleep_for(10ms);  // polling interval
    }
    CHECK(one);
    // Sampled throughout: at most one instance in the majority at any time.
    CHECK(c.max_running_seen <= 1);
}
