// Unplugging a host for real: three hosts in network namespaces on one
// bridge (netns_test::lan, prefix "k17a"), each running kith_avail_node
// with the replicated kvs and a failover service over all three; this test
// is a fourth node, plugged into the bridge from the root namespace. Host
// a's cable is cut (`ip link set ... down` on the bridge side of its veth)
// and plugged back in:
//   - the failover service answers again by global name from b;
//   - every write the kvs acknowledged (a history) is readable through b
//     and c during the cut and through every host after it, and the three
//     replicas hold the same map after the heal.
// Needs root (CAP_NET_ADMIN) and iproute2; without them it says so and does
// nothing. Every wait has a deadline; namespaces and processes are removed
// at scope exit.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "avail_proc.hpp"
#include "kith/global.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"
#include "netns_proc.hpp"

using namespace kith;
using namespace std::chrono_literals;
using namespace avail;

namespace {

const std::vector<std::string> kNames{"a@hosta", "b@hostb", "c@hostc"};
const std::string kList = "a@hosta,b@hostb,c@hostc";

// The endpoint and key a child printed on its READY line.
std::pair<std::string, public_key> ready_line(netns_test::netns_proc& p) {
    std::istringstream in(p.dump().substr(p.dump().find("READY")));
    std::string word, ep, key;
    in >> word >> ep >> key;
    auto k = public_key::from_z85(key);
    REQUIRE(k);
    return {ep, *k};
}

}  // namespace

TEST_CASE("netns: a host's cable cut and plugged back: failover by name, no acknowledged kvs write lost, replicas converge",
          "[availability][rkvs][netns]") {
    if (!netns_test::can_run()) return;
    // A subnet of its own per run, so two runs never share a root route.
    netns_test::lan net(3, "k17a", "10.171." + std::to_string(::getpid() % 250));
    net.attach_root();
    temp_dir tmp;
    node_options mo = opts("hub@root", tmp.path / "me");
    mo.net.listen = "tcp://" + net.root_ip() + ":0";
    node me(mo);
    std::vector<std::unique_ptr<netns_test::netns_proc>> kids;
    std::vector<std::pair<std::string, public_key>> at;
    for (int i = 0; i < 3; ++i) {
        kids.push_back(std::make_unique<netns_test::netns_proc>(
            net.hosts[static_cast<std::size_t>(i)], KITH_AVAIL_NODE,
            std::vector<std::string>{"--name", kNames[static_cast<std::size_t>(i)], "--key-dir",
                                     (tmp.path / ("k" + std::to_string(i))).string(), "--cookie", kCookie, "--listen",
                                     "tcp://" + net.ip(i) + ":4370", "--hb-timeout-ms", "1000", "--rkvs", kList,
                                     "--failover", kList, "--fo-delay-ms", "500"}));
        REQUIRE(kids.back()->wait_for({"READY"}, 20s));
        at.push_back(ready_line(*kids.back()));
    }
    for (int i = 0; i < 3; ++i) {
        auto r = me.connect(at[static_cast<std::size_t>(i)].first, at[static_cast<std::size_t>(i)].second, 5s);
        INFO((r.ok() ? std::string() : r.err().message()));
        REQUIRE(r.ok());
    }
    for (auto [i, j] : {std::pair{0, 1}, std::pair{0, 2}, std::pair{1, 2}}) {
        auto& peer = at[static_cast<std::size_t>(j)];
        REQUIRE(me.call(kNames[static_cast<std::size_t>(i)], "glctl", "connect", arr(peer.first, peer.second.z85()), 8s)
                    .ok());
    }

    global_names g(me);
    auto answer = [&] {
        mailbox mb(me);
        if (!g.send("fo", arr("ping", mb.self())).ok()) return std::string();
        auto m = mb.receive([](const message& x) { return x.is_user(); }, 50ms);
        if (!m.ok() || !m->body.at(1) || !m->body.at(1)->as_string()) return std::string();
        return *m->body.at(1)->as_string();
    };
    std::map<std::string, term> acked;
    int writes = 0;
    auto put_ok = [&](const std::string& via, const std::string& key) {
        term v = arr(key, ++writes);
        auto r = me.call(via, "rkvs", "store", arr(key, v), 5s);
        INFO(via << " " << key << ": " << (r.ok() ? std::string() : r.err().message()));
        REQUIRE(r.ok());
        acked[key] = v;
    };
    auto misses = [&](const std::string& via) {
        int n = 0;
        for (auto& [k, v] : acked) {
            auto r = me.call(via, "rkvs", "lookup", arr(k), 5s);
            if (!r.ok() || !(*r == arr("ok", v))) ++n;
        }
        return n;
    };
    auto digest = [&](const std::string& via) -> std::optional<std::int64_t> {
        auto r = me.call(via, "rkctl", "digest", arr(), 1s);
        if (!r.ok()) return std::nullopt;
        return r->as_int();
    };

    REQUIRE(eventually([&] { return answer() == kNames[0]; }, 10000ms));
    for (int i = 0; i < 20; ++i) put_ok(kNames[static_cast<std::size_t>(i % 3)], "k" + std::to_string(i));

    // Cut a's cable.
    auto t_cut = clock_type::now();
    net.link(0, false);
    bool moved = eventually([&] { return answer() == kNames[1]; }, 10000ms);
    CHECK(moved);
    std::printf("netns: failover answering by global name from b %.0f ms after a's cable was cut "
                "(heartbeat timeout 1 s, delay 500 ms)\n", ms_since(t_cut));
    for (int i = 0; i < 20; ++i) put_ok(kNames[static_cast<std::size_t>(1 + i % 2)], "k" + std::to_string(i * 2));
    CHECK(misses(kNames[1]) == 0);
    CHECK(misses(kNames[2]) == 0);

    // Plug it back in: a reconnects by itself, takes the service back, and
    // the three maps become equal.
    auto t_plug = clock_type::now();
    net.link(0, true);
    double kvs_ms = -1, name_ms = -1;
    bool back = eventually([&] {
        if (kvs_ms < 0) {
            auto d = digest(kNames[0]);
            if (d && d == digest(kNames[1]) && d == digest(kNames[2])) kvs_ms = ms_since(t_plug);
        }
        if (name_ms < 0 && answer() == kNames[0]) name_ms = ms_since(t_plug);
        return kvs_ms >= 0 && name_ms >= 0;
    }, 20000ms);
    CHECK(back);
    std::printf("netns: after the cable was plugged back: kvs equal on all three after %.0f ms, the service back on a "
                "after %.0f ms\n", kvs_ms, name_ms);
    for (auto& n : kNames) CHECK(misses(n) == 0);
}
