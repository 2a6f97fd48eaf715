// kith_bench: the project's benchmark program. See README, "Benchmarks".
//   kith_bench              run every group
//   kith_bench local remote run the named groups only
#include "bench.hpp"
#include "bench_peer.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

namespace kith::bench {

static std::map<std::string, double>& figures() {
    static std::map<std::string, double> f;
    return f;
}

void report(const std::string& figure, double value, const std::string& unit) {
    figures()[figure] = value;
    std::printf("%s %.6g %s\n", figure.c_str(), value, unit.c_str());
    std::fflush(stdout);
}

double figure(const std::string& name) {
    auto it = figures().find(name);
    return it == figures().end() ? -1.0 : it->second;
}

std::vector<group>& groups() {
    static std::vector<group> g;
    return g;
}

}  // namespace kith::bench

int main(int argc, char** argv) {
    using namespace kith::bench;
    // The two-process figures' callee (bench_peer.hpp).
    if (argc == 3 && std::strcmp(argv[1], "--peer-node") == 0) return serve_peer_node(argv[2]);
    auto gs = groups();
    std::stable_sort(gs.begin(), gs.end(), [](const group& a, const group& b) { return a.order < b.order; });
    if (argc > 1 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
        std::printf("usage: kith_bench [GROUP...]\ngroups:");
        for (auto& g : gs) std::printf(" %s", g.name.c_str());
        std::printf("\n");
        return 0;
    }
    for (auto& g : gs) {
        bool wanted = argc <= 1;
        for (int i = 1; i < argc; ++i) wanted |= g.name == argv[i];
        if (wanted) g.run();
    }
    return 0;
}
