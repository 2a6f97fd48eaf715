// Abuse figures (group "abuse", issue 13): a victim node and a cluster member
// calling it, each in its own process (kith_adversary_victim), and the
// hostile peer kith_adversary (tests/adversary/); the same attacks as the
// CTests in tests/adversary/test_adversary_load.cpp, 3 s each, run as they
// do: six pieces of 0.5 s, each after a quiet window as long, the member's
// calls of all quiet windows pooled and compared with those of all attack
// windows (the load of a shared machine changes from one second to the
// next: a quiet p99 measured once compared the attack with another moment),
// and the attacker at nice 19 (adversary_harness.hpp), or under SCHED_IDLE
// with KITH_BENCH_ATTACKER=idle, or on CPU N alone with
// KITH_BENCH_ATTACKER=cpu:N (the bench under `taskset -c M`: each side a
// CPU of its own, as on two machines).
//   abuse_quiet_rpc_p99_us             the member's sequential relay:ping p99 in the first scene's quiet windows
//   abuse_<attack>_quiet_rpc_p99_us    the same, in the quiet windows between the attack's pieces
//   abuse_<attack>_rpc_p99_us          the same during the attack's pieces (successful calls)
//   abuse_<attack>_rpc_p99_ratio       ... over that scene's quiet p99
//   abuse_<attack>_rpc_mean_ratio      the member's calls in the quiet windows over those under
//                                      attack: its mean latency under attack over quiet
//   abuse_<attack>_rss_growth_kb       the victim's peak RSS over its idle RSS
//   abuse_<attack>_rpc_errors          member calls that failed (should be 0)
// Attacks: decode_bomb_wide, decode_bomb_deep, call_flood (a grantee);
// link_flood_grant, link_flood_revoked, link_flood_stranger (connection churn);
// beacon_flood_garbage, beacon_flood_replay (in a network namespace of its
// own, kab<pid>b<n>, with discovery; root only, else skipped with a note).
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "../adversary/call_bombs.hpp"
#include "../adversary/loopback_netns.hpp"
#include "../grants/peer_process.hpp"
#include "../transport/tmpdir.hpp"
#include "bench.hpp"

// Built only with the programs of tests/adversary (KITH_ADVERSARY, KITH_VICTIM).
#if defined(KITH_ADVERSARY) && defined(KITH_VICTIM)

namespace {

using call_bombs::deep_bomb;
using call_bombs::wide_bomb;

using namespace std::chrono_literals;
// The attack: kPieces pieces of kPieceMs, each after a quiet window as long.
constexpr int kPieces = 6;
constexpr long kPieceMs = 500;

std::vector<std::string> split(const std::string& s) {
    std::istringstream in(s);
    std::vector<std::string> w;
    for (std::string t; in >> t;) w.push_back(t);
    return w;
}

long field(const std::string& line, const std::string& key) {
    auto p = line.find(" " + key + "=");
    return p == std::string::npos ? -1 : std::stol(line.substr(p + key.size() + 2));
}

struct node_proc {
    std::unique_ptr<peer_process> p;
    std::map<std::string, std::string> f;
    node_proc(const std::string& name, const std::filesystem::path& dir, std::vector<std::string> argv) {
        argv.insert(argv.end(), {KITH_VICTIM, "--name", name, "--key-dir", dir.string(), "--cookie",
                                 "abuse-bench-cookie"});
        p = std::make_unique<peer_process>(argv);
        auto ready = p->wait_line("READY ", 15s);
        if (!ready) throw std::runtime_error("victim did not start: " + p->all_output());
        for (auto& w : split(ready->substr(6)))
            if (auto eq = w.find('='); eq != std::string::npos) f[w.substr(0, eq)] = w.substr(eq + 1);
    }
    std::string ask(const std::string& cmd, std::chrono::milliseconds t = 15s) { return p->ask(cmd, "", t); }
};

// One scene: victim, member connected to it, adversary connected as grantee
// (with `ns`: all three in that namespace, the nodes running discovery).
struct scene {
    adv_netns::loopback_netns* ns;
    temp_dir tmp;
    std::unique_ptr<node_proc> v, m;
    std::unique_ptr<peer_process> a;
    std::string grant_file;
    long idle_kb = 0;
    bool ok = false;

    explicit scene(adv_netns::loopback_netns* n = nullptr) : ns(n) {
        std::vector<std::string> in_ns, with_disc;
        if (ns) {
            in_ns = ns->exec();
            with_disc = ns->exec_with_discovery();
        }
        v = std::make_unique<node_proc>("victim@localhost", tmp.path / "victim", with_disc);
        m = std::make_unique<node_proc>("member@localhost", tmp.path / "member", with_disc);
        // The member by the victim's member port, as discovery and the local
        // registry have it dial (docs/security.md, "The member port").
        const std::string mep = v->f.count("mep") && !v->f["mep"].empty() ? v->f["mep"] : v->f["ep"];
        if (m->ask("connect " + mep + " " + v->f["key"]).rfind("connect ok", 0) != 0) return;
        grant_file = (tmp.path / "mallory.grant").string();
        if (v->ask("grant mallory kvs,relay:ping 1000 2000 " + grant_file) != "grant ok") return;
        // At nice 19: the attacker's own CPU is not the victim's slowness
        // (on a 2-core machine it still is, in part). With
        // KITH_BENCH_ATTACKER=idle, under SCHED_IDLE: it runs only on CPU
        // time nobody else wants; with KITH_BENCH_ATTACKER=cpu:N, on CPU N
        // only (run the bench itself under `taskset -c M`, M another CPU):
        // a CPU of its own, as on another machine (docs/security.md,
        // "Connections per address").
        std::vector<std::string> argv = in_ns;
        const char* how = std::getenv("KITH_BENCH_ATTACKER");
        if (how && std::string(how) == "idle") argv.insert(argv.end(), {"/usr/bin/chrt", "-i", "0", KITH_ADVERSARY});
        else if (how && std::string(how).rfind("cpu:", 0) == 0)  // pinned to that CPU (run the bench on another)
            argv.insert(argv.end(), {"/usr/bin/taskset", "-c", std::string(how).substr(4), KITH_ADVERSARY});
        else argv.insert(argv.end(), {"/usr/bin/nice", "-n", "19", KITH_ADVERSARY});
        a = std::make_unique<peer_process>(argv);
        if (!a->wait_line("READY", 10s)) return;
        if (a->ask("dial g mallory@localhost grant " + grant_file, "dial g", 15s).rfind("dial g ok", 0) != 0) return;
        ok = field(loop(500), "n") > 10;
        idle_kb = rss(true).first;
    }
    // The member's calls for `ms`; with `pool`, the figures of all its
    // loops into that pool so far.
    std::string loop(long ms, const std::string& pool = "") {
        return m->ask("callloop victim@localhost " + std::to_string(ms) + (pool.empty() ? "" : " pool=" + pool),
                      std::chrono::milliseconds(ms + 20000));
    }
    std::pair<long, long> rss(bool reset = false) {
        auto w = split(v->ask(reset ? "rss reset" : "rss"));
        return w.size() == 3 ? std::pair{std::stol(w[1]), std::stol(w[2])} : std::pair{0L, 0L};
    }
};

// Runs one attack in a fresh scene and reports its figures.
void measure(const std::string& name, const std::function<std::pair<std::string, std::string>(scene&)>& attack,
             bool in_netns = false) {
    std::optional<adv_netns::loopback_netns> ns;
    if (in_netns) {
        ns.emplace('b');
        if (!ns->ok) {
            std::printf("# abuse_%s: not measured (needs root and iproute2 for a network namespace)\n", name.c_str());
            return;
        }
    }
    scene s(ns ? &*ns : nullptr);
    if (!s.ok) {
        std::printf("# abuse_%s: setup failed\n", name.c_str());
        return;
    }
    // Each piece: a quiet window, then the attack (`cmd` runs kPieceMs and
    // says `done`) with the member calling meanwhile, then 100 ms of calls
    // not measured while the victim closes what the attacker left.
    auto [cmd, done] = attack(s);
    std::string quiet, under, said;
    for (int i = 0; i < kPieces; ++i) {
        quiet = s.loop(kPieceMs, "q");
        s.a->send(cmd);
        under = s.loop(kPieceMs, "a");
        auto result = s.a->wait_line(done, std::chrono::milliseconds(kPieceMs + 30000));
        said += (said.empty() ? "" : "; ") + (result ? *result : std::string("(no answer)"));
        s.loop(100);
    }
    const long quiet_p99 = field(quiet, "p99"), p99 = field(under, "p99");
    const long quiet_n = field(quiet, "n"), n = field(under, "n");
    static bool quiet_done = false;
    if (!quiet_done) {
        kith::bench::report("abuse_quiet_rpc_p99_us", double(quiet_p99), "us");
        quiet_done = true;
    }
    const auto [now_kb, peak_kb] = s.rss();
    (void)now_kb;
    kith::bench::report("abuse_" + name + "_quiet_rpc_p99_us", double(quiet_p99), "us");
    kith::bench::report("abuse_" + name + "_rpc_p99_us", double(p99), "us");
    kith::bench::report("abuse_" + name + "_rpc_p99_ratio", quiet_p99 > 0 ? double(p99) / double(quiet_p99) : 0.0, "x");
    kith::bench::report("abuse_" + name + "_rpc_mean_ratio", n > 0 ? double(quiet_n) / double(n) : 0.0, "x");
    kith::bench::report("abuse_" + name + "_rss_growth_kb", double(peak_kb - s.idle_kb), "kB");
    kith::bench::report("abuse_" + name + "_rpc_errors", double(field(under, "errors")), "calls");
    std::printf("# %s: quiet p99 %ld us (%ld calls), attack p99 %ld us (%ld calls); adversary: %s\n", name.c_str(),
                quiet_p99, quiet_n, p99, n, said.c_str());
}

}  // namespace

KITH_BENCH_GROUP("abuse", 90) {
    const std::string d = std::to_string(kPieceMs);  // each piece's
    measure("decode_bomb_wide", [&](scene&) { return std::pair{"flood g " + d + " " + wide_bomb(60, 4000), std::string("flood ")}; });
    measure("decode_bomb_deep", [&](scene&) { return std::pair{"flood g " + d + " " + deep_bomb(3000, 28), std::string("flood ")}; });
    measure("call_flood", [&](scene&) {
        return std::pair{"flood g " + d + " [6, 1, <null>, \"kvs\", \"lookup\", [\"k\"], 5000]", std::string("flood ")};
    });
    measure("call_flood_batched", [&](scene&) {
        return std::pair{"flood g " + d + " *1000 [6, 1, <null>, \"kvs\", \"lookup\", [\"k\"], 5000]",
                         std::string("flood ")};
    });
    measure("link_flood_grant",
            [&](scene& s) { return std::pair{"dialflood " + d + " 64 grant " + s.grant_file, std::string("dialflood ")}; });
    measure("link_flood_revoked", [&](scene& s) {
        s.v->ask("revoke mallory");
        return std::pair{"dialflood " + d + " 64 grant " + s.grant_file, std::string("dialflood ")};
    });
    measure("link_flood_stranger", [&](scene& s) {
        s.v->ask("public relay on 10 20");
        return std::pair{"dialflood " + d + " 256 stranger " + s.v->f["ep"] + " " + s.v->f["key"],
                         std::string("dialflood ")};
    });
    measure("beacon_flood_garbage", [&](scene&) {
        return std::pair{"udpflood " + d + " 127.255.255.255 4371 garbage", std::string("udpflood ")};
    }, true);
    measure("beacon_flood_replay", [&](scene& s) {
        // The member's beacon, captured before the first piece (as the test does).
        s.a->ask("udpflood 0 127.255.255.255 4371 replay member@localhost", "udpflood", 20s);
        return std::pair{"udpflood " + d + " 127.255.255.255 4371 replay member@localhost", std::string("udpflood ")};
    }, true);
}

#endif  // KITH_ADVERSARY && KITH_VICTIM
