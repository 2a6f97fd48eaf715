// The Erlang anchor (group "erlang"): runs erlang_anchor.escript (two
// distributed Erlang nodes on loopback, Debian's erlang-base) and reports its
// figures, so that kith's figures of the same run can be read as ratios to
// distributed Erlang on this machine (group "vs_erlang", which runs last).
// Without escript the group says so and the ratios are skipped.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "bench.hpp"

#ifndef KITH_BENCH_ERLANG_SCRIPT
#error "KITH_BENCH_ERLANG_SCRIPT must name erlang_anchor.escript"
#endif

namespace {

bool have_escript() { return std::system("command -v escript >/dev/null 2>&1") == 0; }

}  // namespace

KITH_BENCH_GROUP("erlang", 15) {
    if (!have_escript()) {
        std::printf("erlang_note: escript not found (apt-get install erlang-base, or ./dev bench installs it); "
                    "no Erlang anchor in this run\n");
        return;
    }
    // epmd (started by the script) listens on loopback only.
    std::string cmd = "ERL_EPMD_ADDRESS=127.0.0.1 escript '" KITH_BENCH_ERLANG_SCRIPT "' 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) {
        std::printf("erlang_note: could not start escript\n");
        return;
    }
    char line[512];
    int figures = 0;
    while (std::fgets(line, sizeof line, p)) {
        std::istringstream in(line);
        std::string name, unit;
        double value = 0;
        if (!(in >> name >> value) || name.rfind("erlang_", 0) != 0) {
            std::printf("erlang_note: %s", line);
            continue;
        }
        std::getline(in >> std::ws, unit);
        kith::bench::report(name, value, unit);
        ++figures;
    }
    int rc = ::pclose(p);
    if (rc != 0 || figures == 0) std::printf("erlang_note: the anchor failed (exit %d); ratios to Erlang skipped\n", rc);
}

KITH_BENCH_GROUP("vs_erlang", 90) {
    struct ratio {
        const char* kith;
        const char* erlang;
        const char* target;  // "" when the issue names none
    };
    // Throughputs: kith / Erlang (higher is better); latencies: kith / Erlang (lower is better).
    static const ratio ratios[] = {
        {"remote_send_msgs_per_s", "erlang_remote_send_msgs_per_s", ""},
        {"rpc_p50_us", "erlang_rpc_p50_us", " (latency: lower is better)"},
        {"rpc_32_callers_calls_per_s", "erlang_rpc_32_callers_calls_per_s", " (target >= 5)"},
        {"rpc_32_callers_pinned_calls_per_s", "erlang_rpc_32_callers_calls_per_s", " (target >= 5)"},
        {"rpc_32_callers_auto_calls_per_s", "erlang_rpc_32_callers_calls_per_s", " (target >= 5)"},
        {"rpc_32_callers_2proc_calls_per_s", "erlang_rpc_32_callers_calls_per_s", " (target >= 5)"},
        {"rpc_32_actor_callers_calls_per_s", "erlang_rpc_32_callers_calls_per_s", " (target >= 5)"},
        {"rpc_32_actor_callers_2proc_calls_per_s", "erlang_rpc_32_callers_calls_per_s", " (target >= 5)"},
        {"remote_spawn_per_s", "erlang_remote_spawn_per_s", " (target >= 5)"},
        {"remote_spawn_2proc_per_s", "erlang_remote_spawn_per_s", " (target >= 5)"},
        {"remote_spawn_32_threads_per_s", "erlang_remote_spawn_per_s", ""},
    };
    for (const auto& r : ratios) {
        double k = kith::bench::figure(r.kith), e = kith::bench::figure(r.erlang);
        if (k > 0 && e > 0)
            kith::bench::report(std::string(r.kith) + "_vs_erlang", k / e, std::string("x") + r.target);
    }
}
