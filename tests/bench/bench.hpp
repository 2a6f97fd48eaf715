// The benchmark program's registry. Each bench_*.cpp file registers groups of
// figures; kith_bench runs them in registration order (or those named on the
// command line) and prints one line per figure: "<figure> <value> <unit>".
// Benchmarks are never run by ctest: figures are measured, not asserted.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace kith::bench {

// Prints one figure line and remembers it (ratios can refer to earlier ones).
void report(const std::string& figure, double value, const std::string& unit);
// A figure reported earlier in this run, or a negative value when absent.
double figure(const std::string& name);

struct group {
    std::string name;   // e.g. "local", "zmq_baseline", "remote"
    int order;          // lower runs first (baselines first)
    std::function<void()> run;
};
std::vector<group>& groups();

struct registrar {
    registrar(std::string name, int order, std::function<void()> fn) {
        groups().push_back({std::move(name), order, std::move(fn)});
    }
};

}  // namespace kith::bench

#define KITH_BENCH_CAT2(a, b) a##b
#define KITH_BENCH_CAT(a, b) KITH_BENCH_CAT2(a, b)
// KITH_BENCH_GROUP("local", 10) { ... body ... }
#define KITH_BENCH_GROUP(name, order)                                                    \
    static void KITH_BENCH_CAT(kith_bench_fn_, __LINE__)();                              \
    static ::kith::bench::registrar KITH_BENCH_CAT(kith_bench_reg_, __LINE__){          \
        name, order, &KITH_BENCH_CAT(kith_bench_fn_, __LINE__)};                         \
    static void KITH_BENCH_CAT(kith_bench_fn_, __LINE__)()
