// Shared by the fuzz targets: a check that aborts with a message (so
// libFuzzer reports it as a crash and saves the input), and hex for it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#define FUZZ_CHECK(cond, what)                                                                  \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            std::fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n  %s\n", __FILE__, __LINE__, \
                         #cond, std::string(what).c_str());                                     \
            std::abort();                                                                       \
        }                                                                                       \
    } while (0)

inline std::string fuzz_hex(std::string_view s, std::size_t max = 256) {
    static const char* d = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < s.size() && i < max; ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        out += d[c >> 4];
        out += d[c & 15];
    }
    if (s.size() > max) out += "...";
    return out;
}

// Known open findings (tests/fuzz/regressions/README.md) can be masked while
// they await a fix, so that a long run explores past them:
// KITH_FUZZ_MASK=utc_overflow,z85_nul. Unset (as in `./dev test`), nothing is
// masked and the saved reproducers fail.
#include <cstdlib>
inline bool fuzz_masked(const char* finding) {
    static const std::string mask = [] {
        const char* m = std::getenv("KITH_FUZZ_MASK");
        return m ? "," + std::string(m) + "," : std::string();
    }();
    return mask.find("," + std::string(finding) + ",") != std::string::npos;
}
