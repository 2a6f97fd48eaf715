// The envelope and frame codec: every envelope round trips, frames batch
// several envelopes, field types and counts are checked exactly.
#include <string>
#include <vector>

#include "kith/envelope.hpp"
#include "kith_catch.hpp"
#include "samples.hpp"

using namespace kith;
using namespace kith::test;

namespace {

// Builds an envelope body by hand: fixarray header + the given encoded parts.
std::string raw_envelope(std::initializer_list<term> parts) {
    std::string out;
    out += static_cast<char>(0x90 + parts.size());
    for (const term& t : parts) encode(t, out);
    return out;
}

std::string frame_of(const std::string& body) { return std::string{'\xc1', '\x4b', static_cast<char>(protocol_version), '\0'} + body; }

void expect_decode_error(const std::string& body, const std::string& want) {
    INFO("body " << to_hex(body) << " want '" << want << "'");
    auto r = decode_envelope(body);
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == errc::decode);
    CHECK(r.err().detail.find(want) != std::string::npos);
    auto f = decode_frame(frame_of(body));
    REQUIRE_FALSE(f.ok());
    CHECK(f.code() == errc::decode);
    CHECK(f.err().detail.find(want) != std::string::npos);
}

}  // namespace

TEST_CASE("every envelope type round trips alone and in a frame", "[envelope]") {
    auto samples = sample_envelopes();
    REQUIRE(samples.size() == std::variant_size_v<envelope>);
    for (std::size_t i = 0; i < samples.size(); ++i) {
        const auto& [name, e] = samples[i];
        INFO(name);
        CHECK(static_cast<std::size_t>(type_of(e)) == i + 1);
        std::string body;
        encode_envelope(e, body);
        auto back = decode_envelope(body);
        REQUIRE(back.ok());
        CHECK(*back == e);
        auto frame = encode_frame(e);
        auto fb = decode_frame(frame);
        REQUIRE(fb.ok());
        REQUIRE(fb->size() == 1);
        CHECK(fb->front() == e);
    }
}

TEST_CASE("frame_builder drops or splits off the envelope added last", "[envelope]") {
    frame_builder b;
    b.add(env_heartbeat{1, false});
    std::size_t before = b.size();
    b.add(env_heartbeat{2, false});
    b.drop_last(before);
    CHECK(b.count() == 1);
    before = b.size();
    b.add(env_heartbeat{3, true});
    CHECK(b.count() == 2);
    // The first frame holds every envelope but the last; the builder keeps
    // the last one alone, as a frame of its own.
    auto head = decode_frame(b.take_all_but_last(before));
    REQUIRE(head.ok());
    CHECK(*head == std::vector<envelope>{env_heartbeat{1, false}});
    CHECK(b.count() == 1);
    auto tail = decode_frame(b.take());
    REQUIRE(tail.ok());
    CHECK(*tail == std::vector<envelope>{env_heartbeat{3, true}});
}

TEST_CASE("frame_builder batches envelopes in order", "[envelope]") {
    frame_builder b;
    CHECK(b.empty());
    CHECK(b.size() == 4);
    auto samples = sample_envelopes();
    std::vector<envelope> sent;
    for (int round = 0; round < 3; ++round)
        for (auto& [n, e] : samples) {
            b.add(e);
            sent.push_back(e);
        }
    CHECK(b.count() == sent.size());
    std::string frame = b.take();
    CHECK(b.empty());
    CHECK(b.size() == 4);
    auto got = decode_frame(frame);
    REQUIRE(got.ok());
    CHECK(*got == sent);

    // The builder is reusable after take().
    b.add(env_heartbeat{1, false});
    auto again = decode_frame(b.take());
    REQUIRE(again.ok());
    CHECK(again->size() == 1);
}

TEST_CASE("large and edge values survive", "[envelope]") {
    env_send s{pid{"gandalf@pi1.lan", UINT64_MAX}, term(binary(std::vector<std::uint8_t>(100000, 7)))};
    env_call c{UINT64_MAX, pid{}, "", "", term(), UINT32_MAX};
    env_handshake h{UINT32_MAX, "x@y", UINT64_MAX, {}, true};
    env_spawn_reply r{1, static_cast<errc>(255), pid{}, std::string(1000, 'd')};
    env_spawn_request q{0, pid{}, "s", "t", arr(), spawn_link_flag | spawn_monitor_flag, ref{}};
    for (const envelope& e : std::vector<envelope>{s, c, h, r, q}) {
        auto back = decode_frame(encode_frame(e));
        REQUIRE(back.ok());
        CHECK(back->front() == e);
    }
}

TEST_CASE("frame header is checked", "[envelope]") {
    std::string good = encode_frame(env_heartbeat{1, false});
    CHECK(decode_frame(good).ok());
    auto fails = [](std::string f, std::string want) {
        auto r = decode_frame(f);
        INFO(want);
        REQUIRE_FALSE(r.ok());
        CHECK(r.code() == errc::decode);
        CHECK(r.err().detail.find(want) != std::string::npos);
    };
    fails("", "shorter than its 4-byte header");
    fails(good.substr(0, 3), "shorter than its 4-byte header");
    fails(good.substr(0, 4), "no envelopes");
    std::string bad = good;
    bad[0] = 'K';
    fails(bad, "bad frame magic");
    bad = good;
    bad[1] = 0;
    fails(bad, "bad frame magic");
    bad = good;
    bad[2] = 1;
    fails(bad, "unsupported protocol version 1");
    bad = good;
    bad[2] = 0;
    fails(bad, "unsupported protocol version 0");
    bad = good;
    bad[3] = 1;
    fails(bad, "unknown frame flags 1");
}

TEST_CASE("frame limits are enforced", "[envelope]") {
    frame_builder b;
    for (int i = 0; i < 10; ++i) b.add(env_heartbeat{static_cast<std::uint64_t>(i), false});
    std::string f = b.take();
    frame_limits l;
    l.max_envelopes = 9;
    auto r = decode_frame(f, l);
    REQUIRE_FALSE(r.ok());
    CHECK(r.err().detail == "frame holds more than 9 envelopes");
    l.max_envelopes = 10;
    CHECK(decode_frame(f, l).ok());
    l.max_frame_bytes = f.size() - 1;
    r = decode_frame(f, l);
    REQUIRE_FALSE(r.ok());
    CHECK(r.err().detail.find("exceeds limit") != std::string::npos);

    frame_limits small;
    small.term.max_bytes = 20;
    auto big = encode_frame(env_send{pid{"a@h", 1}, term(std::string(50, 'x'))});
    r = decode_frame(big, small);
    REQUIRE_FALSE(r.ok());
    CHECK(r.err().detail.find("exceeds limit 20") != std::string::npos);
    // All or nothing: one bad envelope among good ones yields no envelope.
    frame_builder m;
    m.add(env_heartbeat{1, false});
    m.add(env_send{pid{"a@h", 1}, term(std::string(50, 'x'))});
    m.add(env_heartbeat{2, false});
    r = decode_frame(m.take(), small);
    REQUIRE_FALSE(r.ok());
    CHECK(r.err().detail.find("envelope 1:") == 0);
}

TEST_CASE("field types and counts are checked exactly", "[envelope]") {
    const term P5 = pid{"a@h", 5}, R4 = ref{"a@h", 4};
    // Valid baseline built by hand equals the codec's own encoding.
    std::string good = raw_envelope({2, P5, "m"});
    std::string enc;
    encode_envelope(env_send{pid{"a@h", 5}, term("m")}, enc);
    CHECK(good == enc);

    expect_decode_error(raw_envelope({2, P5}), "envelope send has 1 fields, expected 2");
    expect_decode_error(raw_envelope({2, P5, "m", 1}), "envelope send has 3 fields, expected 2");
    expect_decode_error(raw_envelope({2, "to", "m"}), "envelope send, field 'to': expected pid, got str");
    expect_decode_error(raw_envelope({2, R4, "m"}), "envelope send, field 'to': expected pid, got ext type 2");
    expect_decode_error(raw_envelope({15, -1, true}), "envelope heartbeat, field 'seq': expected uint64, got negative integer");
    expect_decode_error(raw_envelope({15, 1, 1}), "envelope heartbeat, field 'ack': expected bool, got unsigned integer");
    expect_decode_error(raw_envelope({6, 1, P5, "s", "f", arr(), 4294967296ll}),
                        "envelope call, field 'timeout_ms': expected uint32, got 4294967296");
    expect_decode_error(raw_envelope({8, 1, 256, nil}), "envelope reply, field 'code': expected error code (uint8), got 256");
    expect_decode_error(raw_envelope({4, 1, P5, "s", "t", arr(), 4, R4}),
                        "envelope spawn_request, field 'flags': unknown flag bits 4");
    const term none = binary();
    expect_decode_error(raw_envelope({1, 2, "nonode", 0, arr(), false, "", none, none, 0, 0}),
                        "envelope handshake, field 'node': invalid node name");
    expect_decode_error(raw_envelope({1, 2, "a@h", 0, arr("x", 1), false, "", none, none, 0, 0}),
                        "envelope handshake, field 'services': expected array of str, got unsigned integer");
    expect_decode_error(raw_envelope({1, 2, "a@h", 0, arr(), false, "not-a-key", none, none, 0, 0}),
                        "envelope handshake, field 'key': not a Z85 public key");
    expect_decode_error(raw_envelope({1, 2, "a@h", 0, arr(), false, "", binary("12345", 5), none, 0, 0}),
                        "envelope handshake, field 'nonce': nonce of 5 bytes, expected 16 or none");
    expect_decode_error(raw_envelope({1, 2, "a@h", 0, arr(), false, "", none, binary("1234", 4), 0, 0}),
                        "envelope handshake, field 'proof': proof of 4 bytes, expected 32 or none");
    expect_decode_error(raw_envelope({1, 2, "a@h", 0, arr(), false, "", "0123456789abcdef", none, 0, 0}),
                        "envelope handshake, field 'nonce': expected bin, got str");
    expect_decode_error(raw_envelope({1, 2, "a@h", 0, arr(), false, ""}), "envelope handshake has 6 fields, expected 10");
    expect_decode_error(raw_envelope({1, 2, "a@h", 0, arr(), false, "", none, none}),
                        "envelope handshake has 8 fields, expected 10");  // a version-3 handshake
    expect_decode_error(raw_envelope({1, 2, "a@h", 0, arr(), false, "", none, none, 0}),
                        "envelope handshake has 9 fields, expected 10");  // a version-4 handshake
    expect_decode_error(raw_envelope({1, 2, "a@h", 0, arr(), false, "", none, none, 65536, 0}),
                        "envelope handshake, field 'port': expected uint16, got 65536");
    expect_decode_error(raw_envelope({1, 2, "a@h", 0, arr(), false, "", none, none, 0, 65536}),
                        "envelope handshake, field 'member_port': expected uint16, got 65536");
    expect_decode_error(raw_envelope({21, "0123456789abcdef"}), "envelope move, field 'link': expected bin, got str");
    expect_decode_error(raw_envelope({22, 1}), "envelope move_ack, field 'accepted': expected bool, got unsigned integer");
    expect_decode_error(raw_envelope({16, binary("x", 1)}), "envelope goodbye, field 'reason': expected str, got bin");
    expect_decode_error(raw_envelope({0}), "unknown envelope type 0");
    expect_decode_error(raw_envelope({23}), "unknown envelope type 23");
    expect_decode_error(raw_envelope({"send"}), "envelope type is not an unsigned integer (got str)");
    expect_decode_error(std::string("\x90", 1), "envelope is an empty array");
    expect_decode_error(encode(map_of({{2, 1}})), "envelope is not an array (got map)");
    expect_decode_error(encode(term(2)), "envelope is not an array");
    // Unknown ext type inside a message term.
    std::string unk = raw_envelope({2, P5});
    unk[0] = static_cast<char>(0x93);
    unk += std::string("\xd4\x07\x00", 3);
    expect_decode_error(unk, "envelope send, field 'msg': unknown ext type 7");
    // A pid with a bad node name.
    std::string badpid = std::string("\x93\x02\xc7\x0b\x01", 5) + std::string("\x00\x00\x00\x00\x00\x00\x00\x05", 8) + "a h" + "\xc0";
    expect_decode_error(badpid, "envelope send, field 'to': bad pid: invalid node name");
    // decode_envelope wants exactly one envelope (a frame may hold several).
    auto two = decode_envelope(good + good);
    REQUIRE_FALSE(two.ok());
    CHECK(two.err().detail == std::to_string(good.size()) + " trailing bytes after the envelope");
    CHECK(decode_frame(frame_of(good + good))->size() == 2);
}
