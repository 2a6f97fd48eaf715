// A corpus of malformed input that the decoders must reject cleanly with
// errc::decode (no crash, no exception, no huge allocation), plus a
// deterministic mutation test. Run under ASan+UBSan too (KITH_SANITIZE=ON).
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <msgpack.hpp>

#include "kith/envelope.hpp"
#include "kith_catch.hpp"
#include "samples.hpp"

using namespace kith;
using namespace kith::test;

namespace {

const std::string header{'\xc1', '\x4b', static_cast<char>(protocol_version), '\0'};

void rejected(const result<std::vector<envelope>>& r, const std::string& want = {}) {
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == errc::decode);
    INFO(r.err().detail);
    CHECK_FALSE(r.err().detail.empty());
    if (!want.empty()) CHECK(r.err().detail.find(want) != std::string::npos);
}

void rejected(const result<term>& r, const std::string& want = {}) {
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == errc::decode);
    INFO(r.err().detail);
    if (!want.empty()) CHECK(r.err().detail.find(want) != std::string::npos);
}

std::string body_of(const envelope& e) {
    std::string b;
    encode_envelope(e, b);
    return b;
}

// A send envelope whose msg is the raw msgpack bytes `msg`.
std::string send_frame_with(const std::string& msg) {
    std::string b = body_of(env_send{pid{"a@h", 1}, term()});
    b.pop_back();  // drop the nil msg
    return header + b + msg;
}

std::string big_frame() {
    frame_builder b;
    for (auto& [n, e] : sample_envelopes()) b.add(e);
    b.add(env_send{pid{"gandalf@pi1", 77},
                   arr(map_of({{"k", arr(1, 2.5, binary("xyz", 3))}, {pid{"b@c", 2}, ref{"b@c", 3}}}), UINT64_MAX,
                       INT64_MIN, -33, std::string(40, 's'), binary(std::vector<std::uint8_t>(300, 1)))});
    return b.take();
}

}  // namespace

TEST_CASE("every proper prefix of a valid frame is rejected or a prefix of its envelopes", "[malformed]") {
    std::vector<std::string> frames;
    for (auto& [n, e] : sample_envelopes()) frames.push_back(encode_frame(e));
    frames.push_back(big_frame());
    for (const auto& f : frames) {
        auto full = decode_frame(f);
        REQUIRE(full.ok());
        for (std::size_t n = 0; n < f.size(); ++n) {
            auto r = decode_frame(std::string_view(f).substr(0, n));
            if (r.ok()) {
                // Cut exactly at an envelope boundary: a shorter valid frame.
                REQUIRE(r->size() < full->size());
                CHECK(std::equal(r->begin(), r->end(), full->begin()));
            } else {
                CHECK(r.code() == errc::decode);
            }
        }
    }
    // Single-envelope bodies and terms: every proper prefix is an error.
    for (auto& [name, e] : sample_envelopes()) {
        std::string b = body_of(e);
        for (std::size_t n = 0; n < b.size(); ++n) {
            INFO(name << " prefix " << n);
            CHECK(decode_envelope(std::string_view(b).substr(0, n)).code() == errc::decode);
            CHECK(decode(std::string_view(b).substr(0, n)).code() == errc::decode);
        }
    }
}

TEST_CASE("a wrong type in any field is rejected - naming the field", "[malformed]") {
    // Fields of type term accept anything; every other field rejects nil.
    const std::set<std::pair<int, std::size_t>> term_fields = {{2, 2}, {3, 2}, {4, 5}, {6, 5},
                                                               {7, 3}, {8, 3}, {11, 4}, {14, 3},
                                                               {17, 4}, {18, 4}};
    for (auto& [name, e] : sample_envelopes()) {
        const int type = static_cast<int>(type_of(e));
        auto as_term = decode(body_of(e));
        REQUIRE(as_term.ok());
        const term_array fields = *as_term->as_array();
        for (std::size_t i = 1; i < fields.size(); ++i) {
            INFO(name << " field " << i);
            for (const term& wrong : {term(), term(-1), term("s"), term(arr()), term(binary()), term(1.5),
                                      term(pid{"a@h", 1}), term(ref{"a@h", 1}), term(UINT64_MAX), term(true)}) {
                term_array m = fields;
                const bool same_kind =
                    m[i].value().index() == wrong.value().index() || (m[i].is_int() && wrong.is_int());
                m[i] = wrong;
                auto r = decode_frame(header + encode(term(m)));
                if (term_fields.count({type, i})) {
                    CHECK(r.ok());
                } else if (!same_kind && !r.ok()) {
                    CHECK(r.code() == errc::decode);
                    CHECK(r.err().detail.find("envelope " + name + ", field '") != std::string::npos);
                } else if (!same_kind) {
                    // Only a bool, an integer in range or the right ext fit a field.
                    FAIL("accepted " << wrong.to_string() << ": " << encode(term(m)).size());
                }
            }
            // One field too few and one too many.
            term_array shorter(fields.begin(), fields.end() - 1), longer = fields;
            longer.push_back(term());
            rejected(decode_frame(header + encode(term(shorter))), "fields, expected");
            rejected(decode_frame(header + encode(term(longer))), "fields, expected");
        }
    }
}

TEST_CASE("huge length headers are refused before any allocation", "[malformed]") {
    rejected(decode(std::string("\xdd\xff\xff\xff\xff", 5)), "array of 4294967295 elements exceeds limit 65536");
    rejected(decode_frame(header + std::string("\xdd\xff\xff\xff\xff", 5)),
             "array of 4294967295 elements exceeds limit 65536");
    rejected(decode_frame(send_frame_with(std::string("\xdf\xff\xff\xff\xff", 5))),
             "map of 4294967295 pairs exceeds limit 32768");
    rejected(decode_frame(send_frame_with(std::string("\xdb\xff\xff\xff\xff", 5))),
             "string of 4294967295 bytes exceeds limit 1048576");
    rejected(decode_frame(send_frame_with(std::string("\xc6\xff\xff\xff\xff", 5))),
             "binary of 4294967295 bytes exceeds limit 1048576");
    // ext 32 with length 0xffffffff: msgpack-c 4.1.3 would wrap its size
    // counter to 0 here; the pre-scan refuses it first.
    rejected(decode_frame(send_frame_with(std::string("\xc9\xff\xff\xff\xff\x01", 6))),
             "ext of 4294967295 bytes exceeds limit 1024");
    // Within the limit but longer than the input: truncated, no allocation.
    rejected(decode_frame(send_frame_with(std::string("\xdd\x00\x01\x00\x00", 5))), "truncated");
    rejected(decode_frame(send_frame_with(std::string("\xdb\x00\x0f\x00\x00xx", 7))), "truncated");
    // A chain of array16 headers each announcing 65535 elements: refused at
    // the first header, whose elements cannot fit in the bytes left.
    std::string chain;
    for (int i = 0; i < 60; ++i) chain += std::string("\xdc\xff\xff", 3);
    rejected(decode_frame(send_frame_with(chain)), "truncated: array of 65535 elements");
    rejected(decode(chain), "truncated: array of 65535 elements");
}

TEST_CASE("100 000-deep nesting is rejected without recursion", "[malformed]") {
    for (unsigned char opener : {0x91, 0xdc}) {
        std::string deep;
        for (int i = 0; i < 100000; ++i) {
            deep += static_cast<char>(opener);
            if (opener == 0xdc) deep += std::string("\x00\x01", 2);
        }
        deep += '\xc0';
        rejected(decode(deep), "nesting deeper than 64");
        rejected(decode_frame(send_frame_with(deep)), "nesting deeper than 64");
    }
    std::string maps;
    for (int i = 0; i < 100000; ++i) maps += std::string("\x81\x01", 2);
    maps += '\xc0';
    rejected(decode(maps), "nesting deeper than 64");
    rejected(decode_frame(send_frame_with(maps)), "nesting deeper than 64");
    // Exactly at the limit: the envelope array is level 1, so msg may nest 63.
    std::string ok;
    for (int i = 0; i < 63; ++i) ok += '\x91';
    ok += '\xc0';
    CHECK(decode_frame(send_frame_with(ok)).ok());
    rejected(decode_frame(send_frame_with('\x91' + ok)), "nesting deeper than 64");
    // A caller may raise the limit; the scan does not recurse either way.
    frame_limits deep_limits;
    deep_limits.term.max_depth = 200000;
    deep_limits.term.max_bytes = 1 << 20;
    std::string very;
    for (int i = 0; i < 1000; ++i) very += '\x91';
    very += '\xc0';
    CHECK(decode_frame(send_frame_with(very), deep_limits).ok());
}

// The library behind the pre-scan: msgpack-c 4.1.3's v2 parser keeps its
// container stack in a std::vector (no recursion) and create_object_visitor
// throws depth_size_overflow once unpack_limit's depth is passed, so kith's
// defence in depth holds even without the pre-scan.
TEST_CASE("msgpack-c enforces unpack_limit depth without recursion", "[malformed]") {
    std::string deep(100000, '\x91');
    deep += '\xc0';
    msgpack::unpack_limit lim(65536, 32768, 1 << 20, 1 << 20, 1025, 64);
    CHECK_THROWS_AS(msgpack::unpack(deep.data(), deep.size(), nullptr, nullptr, lim), msgpack::depth_size_overflow);
    std::string a32("\xdd\xff\xff\xff\xff", 5);
    CHECK_THROWS_AS(msgpack::unpack(a32.data(), a32.size(), nullptr, nullptr, lim), msgpack::array_size_overflow);
}

TEST_CASE("bad ext payloads are rejected", "[malformed]") {
    const std::string z8("\x00\x00\x00\x00\x00\x00\x00\x00", 8), s5("\x00\x00\x00\x00\x00\x00\x00\x05", 8);
    struct bad {
        std::string bytes, want;
    };
    const bad cases[] = {
        {std::string("\xd4\x05\x00", 3), "unknown ext type 5"},
        {std::string("\xd6\xff\x00\x00\x00\x00", 6), "unknown ext type -1"},
        {std::string("\xd6\x01\x00\x00\x00\x01", 6), "shorter than 8 bytes"},
        {std::string("\xd4\x02\x00", 3), "shorter than 8 bytes"},
        {std::string("\xc7\x00\x01", 3), "shorter than 8 bytes"},
        {"\xd7\x01" + s5, "empty node name"},
        {"\xc7\x0b\x01" + z8 + "a@h", "null id with a non-empty node name"},
        {"\xc7\x0b\x01" + s5 + "a h", "invalid node name"},
        {"\xc7\x0b\x02" + s5 + "a@@", "invalid node name"},
        {"\xc7\x0a\x01" + s5 + "ah", "invalid node name"},
        {"\xc7\x0b\x01" + s5 + std::string("a@\xff", 3), "invalid node name"},
        {"\xc8\x01\x08\x01" + s5 + "a@" + std::string(254, 'h'), "invalid node name"},  // 256-byte name
    };
    for (const auto& c : cases) {
        INFO(to_hex(c.bytes));
        rejected(decode(c.bytes), c.want);
        rejected(decode_frame(send_frame_with(c.bytes)), c.want);
    }
}

TEST_CASE("over-limit sizes are rejected - at-limit sizes accepted", "[malformed]") {
    decode_limits l;
    l.max_str = 10;
    l.max_bin = 10;
    l.max_array = 10;
    l.max_map = 5;
    l.max_bytes = 200;
    CHECK(decode(encode(term(std::string(10, 'x'))), l).ok());
    rejected(decode(encode(term(std::string(11, 'x'))), l), "string of 11 bytes exceeds limit 10");
    CHECK(decode(encode(term(binary(std::vector<std::uint8_t>(10)))), l).ok());
    rejected(decode(encode(term(binary(std::vector<std::uint8_t>(11)))), l), "binary of 11 bytes exceeds limit 10");
    CHECK(decode(encode(term(term_array(10))), l).ok());
    rejected(decode(encode(term(term_array(11))), l), "array of 11 elements exceeds limit 10");
    term_map m;
    for (int i = 0; i < 6; ++i) m.emplace_back(i, i);
    rejected(decode(encode(term(m)), l), "map of 6 pairs exceeds limit 5");
    m.pop_back();
    CHECK(decode(encode(term(m)), l).ok());
    decode_limits tiny;
    tiny.max_bytes = 100;
    rejected(decode(encode(term(std::string(300, 'x'))), tiny), "input of 303 bytes exceeds limit 100");

    frame_limits fl;
    fl.max_frame_bytes = 100;
    rejected(decode_frame(encode_frame(env_goodbye{std::string(200, 'x')}), fl), "frame of 208 bytes exceeds limit 100");
}

TEST_CASE("deterministic mutation test never crashes", "[malformed][fuzz]") {
    std::vector<std::string> seeds;
    for (auto& [n, e] : sample_envelopes()) seeds.push_back(encode_frame(e));
    seeds.push_back(big_frame());
    std::mt19937_64 rng(0x6b697468);  // "kith"
    const unsigned char interesting[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xc0, 0xc1, 0xc7, 0xc9,
                                         0xd4, 0xd7, 0xd8, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xff};
    int ok = 0, bad = 0;
    for (int iter = 0; iter < 20000; ++iter) {
        std::string f = seeds[rng() % seeds.size()];
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < edits && !f.empty(); ++k) {
            const std::size_t at = rng() % f.size();
            switch (rng() % 7) {
                case 0: f[at] = static_cast<char>(f[at] ^ (1u << (rng() % 8))); break;
                case 1: f[at] = static_cast<char>(interesting[rng() % sizeof interesting]); break;
                case 2: f[at] = static_cast<char>(rng()); break;
                case 3: f.insert(at, 1, static_cast<char>(interesting[rng() % sizeof interesting])); break;
                case 4: f.erase(at, 1 + rng() % 8); break;
                case 5: f.resize(at); break;
                case 6: {
                    std::size_t n = 1 + rng() % 16;
                    f.insert(at, f.substr(at, n));
                    break;
                }
            }
        }
        // Keep the header valid half of the time so the envelopes get fuzzed.
        if ((iter & 1) && f.size() >= 4) f.replace(0, 4, header);
        auto r = decode_frame(f);
        if (r.ok()) {
            ++ok;
            // Whatever decodes re-encodes to bytes that decode to the same bytes again.
            frame_builder b;
            for (const auto& e : *r) b.add(e);
            std::string again = b.take();
            auto r2 = decode_frame(again);
            REQUIRE(r2.ok());
            frame_builder b2;
            for (const auto& e : *r2) b2.add(e);
            REQUIRE(b2.take() == again);
        } else {
            ++bad;
            REQUIRE(r.code() == errc::decode);
            REQUIRE_FALSE(r.err().detail.empty());
        }
        // The same bytes as a bare term.
        auto t = decode(std::string_view(f).substr(f.size() >= 4 ? 4 : 0));
        if (!t.ok()) REQUIRE(t.code() == errc::decode);
    }
    CHECK(ok > 100);
    CHECK(bad > 1000);
}
