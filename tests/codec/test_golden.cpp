// Golden vectors: reads docs/protocol.md itself and checks that every vector in
// its ```golden blocks encodes and decodes exactly, and that every envelope
// type has one, so the document and the code cannot drift apart.
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <cctype>
#include <set>
#include <sstream>
#include <string>

#include "kith/envelope.hpp"
#include "doc_blocks.hpp"
#include "kith_catch.hpp"
#include "samples.hpp"

#ifndef KITH_SOURCE_DIR
#error "KITH_SOURCE_DIR must name the source tree (set by kith_test)"
#endif

using namespace kith;
using namespace kith::test;

namespace {

struct vector_line {
    std::string kind, name, bytes;
    int line;
};

std::vector<vector_line> read_golden() {
    std::vector<vector_line> out;
    bool closed = false;
    auto lines = fenced_lines(std::string(KITH_SOURCE_DIR) + "/docs/protocol.md", "golden", &closed);
    REQUIRE_FALSE(lines.empty());  // the document is there and has the block
    for (auto& [n, line] : lines) {
        // "<kind> <name>: <hex>" with only hex digits, spaces and '|' after the colon.
        INFO("docs/protocol.md:" << n << ": " << line);
        const auto sp = line.find(' '), colon = line.find(':');
        REQUIRE(sp != std::string::npos);
        REQUIRE(colon != std::string::npos);
        REQUIRE(sp < colon);
        const std::string kind = line.substr(0, sp), name = line.substr(sp + 1, colon - sp - 1),
                          hex = line.substr(colon + 1);
        REQUIRE((kind == "term" || kind == "envelope" || kind == "frame" || kind == "reject"));
        REQUIRE_FALSE(name.empty());
        REQUIRE(name.find(' ') == std::string::npos);
        std::size_t digits = 0;
        for (char c : hex) {
            REQUIRE((std::isxdigit(static_cast<unsigned char>(c)) || c == ' ' || c == '|'));
            digits += std::isxdigit(static_cast<unsigned char>(c)) ? 1 : 0;
        }
        REQUIRE(digits > 0);
        REQUIRE(digits % 2 == 0);
        out.push_back({kind, name, from_hex(hex), n});
    }
    REQUIRE(closed);
    return out;
}

std::map<std::string, term> golden_terms() {
    return {
        {"nil", term()},
        {"true", term(true)},
        {"int_0", term(0)},
        {"int_127", term(127)},
        {"int_128", term(128)},
        {"int_-1", term(-1)},
        {"int_-32", term(-32)},
        {"int_-33", term(-33)},
        {"int_65536", term(65536)},
        {"int64_min", term(std::numeric_limits<std::int64_t>::min())},
        {"uint64_max", term(std::numeric_limits<std::uint64_t>::max())},
        {"float_1.5", term(1.5)},
        {"float_2.0", term(2.0)},
        {"str_abc", term("abc")},
        {"bin_010203", term(binary("\x01\x02\x03", 3))},
        {"array_1_x", arr(1, "x")},
        {"map_a_1", map_of({{"a", 1}})},
        {"pid", term(pid{"gandalf@pi1", 42})},
        {"null_pid", term(pid{})},
        {"ref", term(ref{"gandalf@pi1", 7})},
    };
}

}  // namespace

TEST_CASE("golden vectors in docs/protocol.md encode and decode exactly", "[golden]") {
    auto vectors = read_golden();
    auto terms = golden_terms();
    std::map<std::string, envelope> envs;
    for (auto& [n, e] : sample_envelopes()) envs.emplace(n, e);

    std::set<std::string> seen_terms, seen_envs;
    int frames = 0, rejects = 0, multi = 0;
    for (const auto& v : vectors) {
        INFO("docs/protocol.md:" << v.line << ": " << v.kind << " " << v.name << " = " << to_hex(v.bytes));
        if (v.kind == "term") {
            auto it = terms.find(v.name);
            REQUIRE(it != terms.end());
            seen_terms.insert(v.name);
            CHECK(to_hex(encode(it->second)) == to_hex(v.bytes));
            auto d = decode(v.bytes);
            REQUIRE(d.ok());
            CHECK(*d == it->second);
        } else if (v.kind == "envelope") {
            auto it = envs.find(v.name);
            REQUIRE(it != envs.end());
            seen_envs.insert(v.name);
            std::string body;
            encode_envelope(it->second, body);
            CHECK(to_hex(body) == to_hex(v.bytes));
            auto d = decode_envelope(v.bytes);
            REQUIRE(d.ok());
            CHECK(*d == it->second);
        } else if (v.kind == "frame") {
            ++frames;
            std::vector<envelope> want;
            std::stringstream names(v.name);
            std::string part;
            frame_builder b;
            while (std::getline(names, part, '+')) {
                auto it = envs.find(part);
                REQUIRE(it != envs.end());
                want.push_back(it->second);
                b.add(it->second);
            }
            if (want.size() > 1) ++multi;
            if (want.size() == 1) CHECK(to_hex(encode_frame(want[0])) == to_hex(v.bytes));
            CHECK(to_hex(b.take()) == to_hex(v.bytes));
            auto d = decode_frame(v.bytes);
            REQUIRE(d.ok());
            CHECK(*d == want);
        } else {
            ++rejects;
            auto d = decode_frame(v.bytes);
            REQUIRE_FALSE(d.ok());
            CHECK(d.code() == errc::decode);
            CHECK_FALSE(d.err().detail.empty());
        }
    }
    // Every sample has its vector: the document covers every envelope type.
    CHECK(seen_envs.size() == envs.size());
    CHECK(seen_envs.size() == std::variant_size_v<envelope>);
    CHECK(seen_terms.size() == terms.size());
    CHECK(multi >= 1);
    CHECK(frames >= 2);
    CHECK(rejects >= 10);
}
