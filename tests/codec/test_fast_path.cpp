// The decoder's fast path (direct from bytes, used after the bounded scan)
// must give exactly what the msgpack path gives, for canonical and
// non-canonical encodings alike; and byte_buffer (binary's storage) must
// behave like the std::vector it replaced, inline and on the heap.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kith/envelope.hpp"
#include "kith/term.hpp"
#include "kith_catch.hpp"

using namespace kith;

namespace {

std::string bytes(std::initializer_list<int> v) {
    std::string s;
    for (int b : v) s.push_back(static_cast<char>(b));
    return s;
}

term decoded(const std::string& b) {
    auto r = decode(b);
    INFO((r.ok() ? std::string() : r.err().detail));
    REQUIRE(r.ok());
    return *r;
}

// A random term of bounded size and depth.
term random_term(std::mt19937& g, int depth) {
    std::uniform_int_distribution<int> kind(0, depth > 0 ? 11 : 8);
    std::uniform_int_distribution<int> len(0, 70);
    switch (kind(g)) {
        case 0: return term();
        case 1: return term(g() % 2 == 0);
        case 2: return term(static_cast<long long>(static_cast<std::int64_t>(g()) - (1ll << 31)));
        case 3: return term(static_cast<unsigned long long>(g()) << 33 | g());
        case 4: return term(static_cast<double>(g()) / 7.0);
        case 5: return term(std::string(static_cast<std::size_t>(len(g)), 'a' + static_cast<char>(g() % 26)));
        case 6: {
            std::vector<std::uint8_t> b(static_cast<std::size_t>(len(g)));
            for (auto& x : b) x = static_cast<std::uint8_t>(g());
            return term(binary(b));
        }
        case 7: return term(pid{"n" + std::to_string(g() % 3) + "@host", 1 + g() % 1000});
        case 8: return term(ref{"r@host", 1 + g() % 1000});
        case 9:
        case 10: {
            term_array a;
            for (int i = 0, n = len(g) % 6; i < n; ++i) a.push_back(random_term(g, depth - 1));
            return term(std::move(a));
        }
        default: {
            term_map m;
            for (int i = 0, n = len(g) % 4; i < n; ++i) m.emplace_back(random_term(g, depth - 1), random_term(g, depth - 1));
            return term(std::move(m));
        }
    }
}

}  // namespace

TEST_CASE("random terms round trip through decode and decode_frame", "[codec]") {
    std::mt19937 g(12345);
    frame_builder fb;
    std::vector<envelope> sent;
    for (int i = 0; i < 2000; ++i) {
        term t = random_term(g, 4);
        INFO(t.to_string());
        REQUIRE(decoded(encode(t)) == t);
        if (i < 200) {
            sent.push_back(env_send{pid{"a@host", 1 + static_cast<std::uint64_t>(i)}, t});
            fb.add(sent.back());
            sent.push_back(env_request{pid{"a@host", 2}, pid{"b@host", 3}, ref{"b@host", 4}, t});
            fb.add(sent.back());
            sent.push_back(env_reply{static_cast<std::uint64_t>(i), errc::ok, t});
            fb.add(sent.back());
        }
    }
    auto r = decode_frame(fb.take());
    REQUIRE(r.ok());
    REQUIRE(r->size() == sent.size());
    for (std::size_t i = 0; i < sent.size(); ++i) CHECK(encode_frame((*r)[i]) == encode_frame(sent[i]));
}

TEST_CASE("non-canonical encodings decode as the msgpack path decodes them", "[codec]") {
    CHECK(decoded(bytes({0xd0, 0x05})) == term(5));                      // int8, non-negative
    CHECK(decoded(bytes({0xd0, 0xfb})) == term(-5));                     // int8
    CHECK(decoded(bytes({0xd1, 0xff, 0x38})) == term(-200));             // int16
    CHECK(decoded(bytes({0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0})) == term(static_cast<long long>(INT64_MIN)));
    CHECK(decoded(bytes({0xcd, 0x00, 0x07})) == term(7));                // uint16 of a small value
    CHECK(decoded(bytes({0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})) == term(UINT64_MAX));
    CHECK(decoded(bytes({0xca, 0x3f, 0xc0, 0, 0})) == term(1.5));       // float32
    CHECK(decoded(bytes({0xdb, 0, 0, 0, 2, 'h', 'i'})) == term("hi"));  // str32
    CHECK(decoded(bytes({0xc6, 0, 0, 0, 1, 9})) == term(binary("\x09", 1)));
    CHECK(decoded(bytes({0xdd, 0, 0, 0, 1, 0xc0})) == term(arr(nil)));  // array32
    CHECK(decoded(bytes({0xdf, 0, 0, 0, 1, 1, 2})) == map_of({{1, 2}}));
    // A pid in ext8 instead of its fixext/ext form.
    std::string p = bytes({0xc7, 12, 1, 0, 0, 0, 0, 0, 0, 0, 42}) + "a@bc";
    CHECK(decoded(p) == term(pid{"a@bc", 42}));
    // Declined by the fast path, refused by the msgpack path: same errors.
    CHECK(!decode(bytes({0xd4, 7, 0})).ok());                            // unknown ext type
    CHECK(!decode(bytes({0xc7, 9, 1, 0, 0, 0, 0, 0, 0, 0, 1, '!'})).ok());  // bad node name
}

TEST_CASE("byte_buffer behaves like a byte vector, inline and on the heap", "[codec]") {
    byte_buffer b;
    CHECK(b.empty());
    for (int i = 0; i < 100; ++i) {
        b.push_back(static_cast<std::uint8_t>(i));
        REQUIRE(b.size() == static_cast<std::size_t>(i + 1));
    }
    for (int i = 0; i < 100; ++i) CHECK(b[i] == i);
    std::vector<std::uint8_t> v = b;
    CHECK(v.size() == 100);
    CHECK(b == v);
    byte_buffer c = b;  // deep copy
    c[0] = 200;
    CHECK(b[0] == 0);
    byte_buffer m = std::move(c);
    CHECK(c.empty());
    CHECK(m[0] == 200);
    m.resize(10);
    CHECK(m.size() == 10);
    m.insert(m.begin() + 1, v.begin(), v.begin() + 3);
    CHECK(std::vector<std::uint8_t>(m) == std::vector<std::uint8_t>{200, 0, 1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    m.erase(m.begin(), m.begin() + 4);
    CHECK(m.size() == 9);
    CHECK(m.front() == 1);
    m.assign(v.begin(), v.begin() + 5);
    CHECK(m == std::vector<std::uint8_t>{0, 1, 2, 3, 4});
    m = v;
    CHECK(m.size() == 100);
    m.clear();
    CHECK(m.empty());
    byte_buffer small(5, 7);
    CHECK(small == std::vector<std::uint8_t>{7, 7, 7, 7, 7});
    binary bin(v);
    CHECK(bin.size() == 100);
    CHECK(binary(bin.bytes.data(), bin.size()) == bin);
    CHECK(binary("ab", 2) != binary("ac", 2));
}

TEST_CASE("pids and refs in envelopes are encoded as in terms, for every ext size", "[codec]") {
    for (const std::string& node : std::vector<std::string>{"a@b", "abcd@efg", "abcdefgh@ijklmno", std::string(100, 'x') + "@h"}) {
        for (std::uint64_t serial : {0ull, 1ull, 300ull, 1ull << 40}) {
            pid p{serial ? node : std::string(), serial};
            ref r{serial ? node : std::string(), serial};
            INFO(node << " " << serial);
            // env_send: [2, to, msg]; env_request: [17, to, from, tag, msg]
            std::string want_send = std::string{'\xc1', '\x4b', static_cast<char>(protocol_version), '\0', '\x93', '\x02'} + encode(term(p)) + encode(term(nil));
            CHECK(encode_frame(env_send{p, nil}) == want_send);
            std::string want_req = std::string{'\xc1', '\x4b', static_cast<char>(protocol_version), '\0', '\x95', '\x11'} + encode(term(p)) + encode(term(p)) +
                                   encode(term(r)) + encode(term(nil));
            CHECK(encode_frame(env_request{p, p, r, nil}) == want_req);
        }
    }
}

// decode_frame decodes straight from the bytes first and falls back to the
// scanned path; decode_envelope always scans first. On any input, mutated
// or not, under default and under tight limits, both must agree.
TEST_CASE("decode_frame agrees with the scanned decode on mutated envelopes", "[codec]") {
    std::mt19937 g(777);
    frame_limits tight;
    tight.term.max_bytes = 60;
    tight.term.max_depth = 3;
    tight.term.max_array = 3;
    tight.term.max_map = 2;
    tight.term.max_str = 5;
    tight.term.max_bin = 5;
    tight.term.max_ext = 12;
    const std::string header{'\xc1', '\x4b', static_cast<char>(protocol_version), '\0'};
    int agreed_ok = 0;
    for (int i = 0; i < 4000; ++i) {
        term t = random_term(g, 3);
        envelope e;
        switch (g() % 4) {
            case 0: e = env_send{pid{"a@host", 1 + g() % 50}, t}; break;
            case 1: e = env_request{pid{"a@host", 2}, pid{"b@host", 3}, ref{"b@host", 4}, t}; break;
            case 2: e = env_reply{g() % 1000, errc::ok, t}; break;
            default: e = env_call{g() % 1000, pid{}, "svc", "fn", t, 5000}; break;
        }
        std::string body = encode_frame(e).substr(4);
        for (int m = 0, n = static_cast<int>(g() % 3); m < n && !body.empty(); ++m) {
            std::size_t at = g() % body.size();
            switch (g() % 3) {
                case 0: body[at] = static_cast<char>(g()); break;
                case 1: body.resize(at); break;
                default: body.insert(body.begin() + static_cast<std::ptrdiff_t>(at), static_cast<char>(g())); break;
            }
        }
        for (const frame_limits& fl : {frame_limits{}, tight}) {
            auto whole = decode_frame(header + body, fl);
            auto one = decode_envelope(body, fl.term);
            INFO("case " << i << " body " << body.size() << " bytes");
            REQUIRE(whole.ok() == one.ok());
            if (one.ok()) {
                REQUIRE(whole->size() == 1);
                CHECK(encode_frame((*whole)[0]) == encode_frame(*one));
                ++agreed_ok;
            }
        }
    }
    CHECK(agreed_ok > 1000);  // the comparison saw plenty of valid input
}
