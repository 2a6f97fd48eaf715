// call_bombs.hpp — the decode-amplification call payloads that the load test
// (test_adversary_load.cpp) and the abuse benchmark (tests/bench/bench_abuse.cpp)
// send, as kith_adversary term text for a "call" to kvs:lookup.
#pragma once

#include <string>

namespace call_bombs {

// A call whose arguments are `arrays` arrays of `width` nils: at most the
// grantee's frame (256 KiB) and array (4096) limits, about 48 bytes of
// decoded term per byte.
inline std::string wide_bomb(int arrays, int width) {
    std::string inner = "[";
    for (int i = 0; i < width; ++i) inner += i ? ", nil" : "nil";
    inner += "]";
    std::string args = "[";
    for (int i = 0; i < arrays; ++i) args += (i ? ", " : "") + inner;
    return "[6, 1, <null>, \"kvs\", \"lookup\", " + args + "], 5000]";
}

// Arguments of `count` arrays nested `depth` deep (the grantee's nesting
// limit is 32, the envelope and args take two).
inline std::string deep_bomb(int count, int depth) {
    std::string one = std::string(depth, '[') + std::string(depth, ']');
    std::string args = "[";
    for (int i = 0; i < count; ++i) args += (i ? ", " : "") + one;
    return "[6, 1, <null>, \"kvs\", \"lookup\", " + args + "], 5000]";
}

}  // namespace call_bombs
