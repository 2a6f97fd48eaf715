// The discovery beacon codec: golden vectors read from docs/protocol.md
// ("Discovery beacon"), round trips, and hostile input (truncations, bit
// flips, random bytes, oversized lengths) that must be rejected without
// crashing or reading out of bounds (this test also runs under ASan).
#include <cctype>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "beacon.hpp"
#include "doc_blocks.hpp"
#include "kith_catch.hpp"

#ifndef KITH_SOURCE_DIR
#error "KITH_SOURCE_DIR must name the source tree (set by kith_test)"
#endif

using namespace kith;
using namespace kith::detail;

namespace {

std::vector<std::uint8_t> unhex(const std::string& h) {
    std::vector<std::uint8_t> out;
    int hi = -1;
    for (char c : h) {
        if (!std::isxdigit(static_cast<unsigned char>(c))) continue;
        int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : std::tolower(c) - 'a' + 10;
        if (hi < 0) {
            hi = v;
        } else {
            out.push_back(static_cast<std::uint8_t>(hi * 16 + v));
            hi = -1;
        }
    }
    return out;
}

std::string hex(const std::vector<std::uint8_t>& b) {
    static const char* d = "0123456789abcdef";
    std::string s;
    for (auto c : b) {
        s += d[c >> 4];
        s += d[c & 15];
    }
    return s;
}

public_key golden_key() {
    public_key k;
    for (int i = 0; i < 32; ++i) k.bytes[i] = static_cast<std::uint8_t>(i + 1);
    return k;
}

beacon_hmac_key golden_hmac() { return beacon_hmac_key::from_cookie("golden-cookie"); }

beacon base(beacon_type t, std::string name) {
    beacon b;
    b.type = t;
    b.timestamp_ms = 1700000000000ull;
    b.nonce = 0x0102030405060708ull;
    b.tcp_port = 4370;
    b.key = golden_key();
    b.name = std::move(name);
    return b;
}

// The inputs of the named golden vectors.
std::map<std::string, beacon> golden_beacons() {
    std::map<std::string, beacon> m;
    auto a = base(beacon_type::announce, "gandalf@pi1");
    a.cluster = true;
    a.services = {"echo", "kv"};
    m["announce_cluster"] = a;
    auto s = base(beacon_type::announce, "sauron@mordor");
    s.endpoint = "tcp://192.0.2.7:4370";
    s.public_services = {"echo"};
    m["announce_stranger"] = s;
    auto l = base(beacon_type::leaving, "gandalf@pi1");
    l.cluster = true;
    m["leaving_cluster"] = l;
    auto q = base(beacon_type::query, "frodo@shire");
    q.tcp_port = 0;
    m["query"] = q;
    q.cluster = true;  // a member's query: authenticated, answered directly
    m["query_cluster"] = q;
    return m;
}

struct golden_line {
    std::string kind, name;
    std::vector<std::uint8_t> bytes;
    int line;
};

std::vector<golden_line> read_golden() {
    std::vector<golden_line> out;
    auto lines = fenced_lines(std::string(KITH_SOURCE_DIR) + "/docs/protocol.md", "beacon-golden");
    REQUIRE_FALSE(lines.empty());  // the document is there and has the block
    for (auto& [n, line] : lines) {
        INFO("docs/protocol.md:" << n << ": " << line);
        auto sp = line.find(' '), colon = line.find(':');
        REQUIRE(sp != std::string::npos);
        REQUIRE(colon != std::string::npos);
        golden_line g{line.substr(0, sp), line.substr(sp + 1, colon - sp - 1), {}, n};
        std::string rest = line.substr(colon + 1);
        std::size_t pad = 0;
        if (auto p = rest.find(" pad "); p != std::string::npos) {
            pad = std::stoul(rest.substr(p + 5));
            rest = rest.substr(0, p);
        }
        g.bytes = unhex(rest);
        REQUIRE_FALSE(g.bytes.empty());
        if (pad) {
            REQUIRE(pad >= g.bytes.size());
            g.bytes.resize(pad, 0);
        }
        out.push_back(std::move(g));
    }
    return out;
}

}  // namespace

TEST_CASE("beacon golden vectors from docs/protocol.md encode and decode exactly") {
    auto lines = read_golden();
    auto inputs = golden_beacons();
    auto key = golden_hmac();
    std::size_t beacons = 0, rejects = 0, bad = 0;
    for (auto& g : lines) {
        INFO("docs/protocol.md:" << g.line << " " << g.kind << " " << g.name);
        if (g.kind == "beacon") {
            REQUIRE(inputs.count(g.name) == 1);
            const auto& b = inputs.at(g.name);
            auto enc = encode_beacon(b, &key);
            INFO("encoded: " << hex(enc));
            CHECK(enc == g.bytes);
            auto d = decode_beacon(g.bytes, &key);
            CHECK(d.status == (b.cluster ? beacon_status::ok_cluster : beacon_status::ok_stranger));
            CHECK(d.b == b);
            ++beacons;
        } else if (g.kind == "reject") {
            CHECK(decode_beacon(g.bytes, &key).status == beacon_status::malformed);
            ++rejects;
        } else if (g.kind == "stranger") {
            auto d = decode_beacon(g.bytes, &key);
            CHECK(d.status == beacon_status::ok_stranger);
            CHECK_FALSE(d.b.cluster);
            CHECK(d.b.services.empty());
        } else if (g.kind == "bad_hmac") {
            CHECK(decode_beacon(g.bytes, &key).status == beacon_status::bad_hmac);
            ++bad;
        } else {
            FAIL("unknown kind " << g.kind);
        }
    }
    CHECK(beacons == inputs.size());  // every named input has its vector
    CHECK(rejects >= 5);
    CHECK(bad >= 1);
}

TEST_CASE("beacon without the cookie key is a stranger and cluster services are not shown") {
    auto key = golden_hmac();
    auto b = golden_beacons().at("announce_cluster");
    auto enc = encode_beacon(b, &key);
    auto d = decode_beacon(enc, nullptr);
    CHECK(d.status == beacon_status::ok_stranger);
    CHECK_FALSE(d.b.cluster);
    CHECK(d.b.services.empty());
    // Another cluster's beacon: a stranger, its services not shown.
    auto other = beacon_hmac_key::from_cookie("another-cookie");
    auto o = decode_beacon(enc, &other);
    CHECK(o.status == beacon_status::ok_stranger);
    CHECK(o.b.services.empty());
    // Our cluster id with a wrong HMAC (a forgery: the id is public).
    auto forged = key;
    forged.hmac[0] ^= 1;
    CHECK(decode_beacon(encode_beacon(b, &forged), &key).status == beacon_status::bad_hmac);
}

// What discovery reads before the HMAC to drop copies of a beacon it took
// (seen.cpp, known_copy): the header of a cluster beacon, nothing else.
TEST_CASE("beacon header peek reads a cluster beacon's sender and time, nothing of a stranger's or a fragment") {
    auto key = golden_hmac();
    auto b = golden_beacons().at("announce_cluster");
    auto enc = encode_beacon(b, &key);
    auto h = peek_cluster_header(enc);
    REQUIRE(h.has_value());
    CHECK(h->type == b.type);
    CHECK(h->timestamp_ms == b.timestamp_ms);
    CHECK(h->nonce == b.nonce);
    CHECK(h->key == b.key);
    CHECK(h->name == b.name);
    auto plain = b;
    plain.cluster = false;
    CHECK_FALSE(peek_cluster_header(encode_beacon(plain, nullptr)).has_value());
    for (std::size_t n = 0; n < beacon_fixed_bytes + b.name.size(); ++n)
        CHECK_FALSE(peek_cluster_header(std::span<const std::uint8_t>(enc.data(), n)).has_value());
    auto bad = enc;
    bad[4] ^= 0x40;  // version
    CHECK_FALSE(peek_cluster_header(bad).has_value());
}

TEST_CASE("beacon encoder leaves out services that do not fit and stays within 1200 bytes") {
    auto key = golden_hmac();
    auto b = base(beacon_type::announce, std::string(255, 'n'));
    b.endpoint = "tcp://" + std::string(240, 'h') + ":1";
    b.cluster = true;
    for (int i = 0; i < 40; ++i) {
        b.public_services.push_back(std::string(60, static_cast<char>('a' + i % 26)) + std::to_string(i));
        b.services.push_back(std::string(60, 's') + std::to_string(i));
    }
    b.services.push_back("");                      // invalid: empty
    b.services.push_back(std::string(65, 'x'));    // invalid: too long
    auto enc = encode_beacon(b, &key);
    REQUIRE_FALSE(enc.empty());
    CHECK(enc.size() <= beacon_max_bytes);
    auto d = decode_beacon(enc, &key);
    REQUIRE(d.status == beacon_status::ok_cluster);
    CHECK(d.b.name == b.name);
    CHECK(d.b.endpoint == b.endpoint);
    CHECK(d.b.public_services.size() < 40);
    CHECK(d.b.public_services.size() + d.b.services.size() > 0);
    // A name that cannot be encoded is refused, not truncated.
    b.name = std::string(256, 'n');
    CHECK(encode_beacon(b, &key).empty());
    b.name = "bad\nname";
    CHECK(encode_beacon(b, &key).empty());
}

TEST_CASE("beacon queries are padded to the maximum so an answer is never bigger") {
    auto key = golden_hmac();
    auto q = encode_beacon(golden_beacons().at("query"), &key);
    CHECK(q.size() == beacon_query_bytes);
    auto shorter = q;
    shorter.pop_back();
    CHECK(decode_beacon(shorter, &key).status == beacon_status::malformed);
    auto dirty = q;
    dirty.back() = 1;
    CHECK(decode_beacon(dirty, &key).status == beacon_status::malformed);
}

TEST_CASE("beacon decoder survives hostile input: truncations, bit flips, random bytes") {
    auto key = golden_hmac();
    std::vector<std::vector<std::uint8_t>> good;
    for (auto& [name, b] : golden_beacons()) good.push_back(encode_beacon(b, &key));
    std::size_t malformed = 0;
    for (auto& g : good) {
        // every truncation
        for (std::size_t n = 0; n < g.size(); ++n) {
            auto d = decode_beacon(std::span(g.data(), n), &key);
            CHECK(d.status == beacon_status::malformed);
        }
        // one appended byte
        auto longer = g;
        longer.push_back(0);
        CHECK(decode_beacon(longer, &key).status == beacon_status::malformed);
        // every single-bit flip: malformed, bad HMAC, or (in unauthenticated
        // fields of a stranger beacon) another well-formed beacon; never a crash
        for (std::size_t i = 0; i < std::min<std::size_t>(g.size(), 200); ++i)
            for (int bit = 0; bit < 8; ++bit) {
                auto f = g;
                f[i] ^= static_cast<std::uint8_t>(1u << bit);
                auto d = decode_beacon(f, &key);
                if (d.status == beacon_status::malformed) ++malformed;
                if (d.status == beacon_status::ok_cluster) CHECK(f == g);  // impossible: HMAC covers all
            }
    }
    CHECK(malformed > 0);
    // random datagrams, with and without a valid header prefix
    std::mt19937_64 rng(42);
    for (int i = 0; i < 20000; ++i) {
        std::vector<std::uint8_t> d(rng() % (beacon_max_bytes + 50));
        for (auto& c : d) c = static_cast<std::uint8_t>(rng());
        if (i % 2 && d.size() >= 8) {
            std::copy(beacon_magic.begin(), beacon_magic.end(), d.begin());
            d[4] = beacon_version;
            d[5] = static_cast<std::uint8_t>(1 + rng() % 3);
            d[6] = static_cast<std::uint8_t>(rng() % 2);
        }
        auto r = decode_beacon(d, &key);
        CHECK(r.status != beacon_status::ok_cluster);
    }
    // lengths that claim more than the datagram holds
    auto g = good.front();
    for (std::size_t i = 0; i < g.size(); ++i) {
        auto f = g;
        f[i] = 0xff;
        (void)decode_beacon(f, &key);
        (void)decode_beacon(f, nullptr);
    }
}
