// The term codec: every type round trips, integers are normalised and encoded
// in their smallest form, pids and refs print and parse.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "kith/term.hpp"
#include "kith_catch.hpp"

using namespace kith;

namespace {

std::string hex(const std::string& s) {
    static const char* d = "0123456789abcdef";
    std::string h;
    for (unsigned char c : s) {
        h += d[c >> 4];
        h += d[c & 15];
    }
    return h;
}

term round_trip(const term& t) {
    auto r = decode(encode(t));
    REQUIRE(r.ok());
    return *r;
}

}  // namespace

TEST_CASE("scalars round trip", "[term]") {
    for (const term& t : {term(), term(nil), term(true), term(false), term(0), term(1), term(-1), term(3.5),
                          term(-0.0), term(1e300), term("hello"), term(""), term(std::string(300, 'x')),
                          term(binary()), term(binary("\x01\x02\x03", 3)), term(pid{"gandalf@pi1", 42}),
                          term(ref{"gandalf@pi1", 7}), term(pid{}), term(ref{})}) {
        INFO(t.to_string());
        CHECK(round_trip(t) == t);
    }
}

TEST_CASE("integers are normalised and canonical", "[term]") {
    struct row {
        term t;
        const char* hex;
    };
    const row rows[] = {
        {term(0), "00"},
        {term(127), "7f"},
        {term(128), "cc80"},
        {term(255), "ccff"},
        {term(256), "cd0100"},
        {term(65535), "cdffff"},
        {term(65536), "ce00010000"},
        {term(4294967295ll), "ceffffffff"},
        {term(4294967296ll), "cf0000000100000000"},
        {term(-1), "ff"},
        {term(-32), "e0"},
        {term(-33), "d0df"},
        {term(-128), "d080"},
        {term(-129), "d1ff7f"},
        {term(-32768), "d18000"},
        {term(-32769), "d2ffff7fff"},
        {term(std::numeric_limits<std::int64_t>::min()), "d38000000000000000"},
        {term(std::numeric_limits<std::int64_t>::max()), "cf7fffffffffffffff"},
        {term(std::numeric_limits<std::uint64_t>::max()), "cfffffffffffffffff"},
    };
    for (const auto& r : rows) {
        INFO(r.t.to_string());
        CHECK(hex(encode(r.t)) == r.hex);
        CHECK(round_trip(r.t) == r.t);
    }
    // Normalisation: anything representable as int64 is held as int64.
    CHECK(term(5u).get_if<std::int64_t>());
    CHECK(term(static_cast<unsigned long long>(INT64_MAX)).get_if<std::int64_t>());
    CHECK(term(static_cast<unsigned long long>(INT64_MAX) + 1).get_if<std::uint64_t>());
    CHECK(term(UINT64_MAX).as_int() == std::nullopt);
    CHECK(term(-7).as_int() == -7);
    // A non-canonical encoding of a small value still decodes to the same term.
    auto r = decode(std::string("\xcf\x00\x00\x00\x00\x00\x00\x00\x05", 9));
    REQUIRE(r.ok());
    CHECK(*r == term(5));
    CHECK(r->get_if<std::int64_t>());
    auto neg = decode(std::string("\xd3\x00\x00\x00\x00\x00\x00\x00\x05", 9));  // int64 holding +5
    REQUIRE(neg.ok());
    CHECK(*neg == term(5));
}

TEST_CASE("floats: float64 encoded - float32 and float64 decoded", "[term]") {
    CHECK(hex(encode(term(1.5))) == "cb3ff8000000000000");
    CHECK(hex(encode(term(1.5f))) == "cb3ff8000000000000");  // floats widen to double
    // Integral doubles stay floats (msgpack-c's pack_double would write 2.0 as
    // the integer 2; kith always writes float64).
    CHECK(hex(encode(term(2.0))) == "cb4000000000000000");
    CHECK(hex(encode(term(-0.0))) == "cb8000000000000000");
    CHECK(round_trip(term(2.0)).is_float());
    CHECK(round_trip(term(18446744073709551616.0)).is_float());
    auto f32 = decode(std::string("\xca\x3f\xc0\x00\x00", 5));
    REQUIRE(f32.ok());
    CHECK(*f32 == term(1.5));
    auto inf = round_trip(term(std::numeric_limits<double>::infinity()));
    CHECK(std::isinf(*inf.as_float()));
    auto nan = round_trip(term(std::numeric_limits<double>::quiet_NaN()));
    REQUIRE(nan.is_float());
    CHECK(std::isnan(*nan.as_float()));
    CHECK(term(3).as_float() == 3.0);
}

TEST_CASE("strings and binaries use their smallest form", "[term]") {
    CHECK(hex(encode(term("abc"))) == "a3616263");
    CHECK(hex(encode(term(std::string(31, 'a')))).substr(0, 2) == "bf");
    CHECK(hex(encode(term(std::string(32, 'a')))).substr(0, 4) == "d920");
    CHECK(hex(encode(term(std::string(256, 'a')))).substr(0, 6) == "da0100");
    CHECK(hex(encode(term(binary("\x01\x02", 2)))) == "c4020102");
    CHECK(hex(encode(term(binary(std::vector<std::uint8_t>(256))))).substr(0, 6) == "c50100");
    std::string big(70000, 'z');
    CHECK(hex(encode(term(big))).substr(0, 10) == "db00011170");
    CHECK(round_trip(term(big)) == term(big));
}

TEST_CASE("nested arrays and maps round trip", "[term]") {
    term t = arr("store", "weather", pid{"gandalf@pi1", 42}, binary("abc", 3),
                 map_of({{"k", 1}, {"j", "v"}, {2, arr()}, {nil, map_of({})}}),
                 arr(arr(arr(1, 2.5, false), ref{"frodo@shire.local", 9})), UINT64_MAX, INT64_MIN);
    CHECK(round_trip(t) == t);
    CHECK(hex(encode(arr())) == "90");
    CHECK(hex(encode(map_of({}))) == "80");
    CHECK(hex(encode(map_of({{"a", 1}}))) == "81a16101");
    // Duplicate keys are kept in order; lookup finds the first.
    auto m = decode(std::string("\x82\xa1k\x01\xa1k\x02", 7));
    REQUIRE(m.ok());
    CHECK(m->size() == 2);
    CHECK(*m->lookup("k") == term(1));
    CHECK(m->lookup("zz") == nullptr);
    CHECK(*t.at(1) == term("weather"));
    CHECK(t.at(99) == nullptr);
    CHECK(term(5).size() == 0);
}

TEST_CASE("deep nesting within the limit decodes", "[term]") {
    term t = arr();
    for (int i = 0; i < 63; ++i) t = arr(t);  // 64 levels
    CHECK(round_trip(t) == t);
    term deeper = arr(t);  // 65 levels
    auto r = decode(encode(deeper));
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == errc::decode);
    CHECK(r.err().detail == "nesting deeper than 64");
}

TEST_CASE("pid and ref ext layout", "[term]") {
    // fixext/ext8 carrying an 8-byte big-endian serial then the node name.
    CHECK(hex(encode(term(pid{"gandalf@pi1", 42}))) == "c713" "01" "000000000000002a" + hex("gandalf@pi1"));
    CHECK(hex(encode(term(ref{"gandalf@pi1", 7}))) == "c713" "02" "0000000000000007" + hex("gandalf@pi1"));
    CHECK(hex(encode(term(pid{}))) == "d7010000000000000000");
    CHECK(hex(encode(term(pid{"ab@cdefg", 1}))) == "d801" "0000000000000001" + hex("ab@cdefg"));  // fixext16
}

TEST_CASE("pid and ref print and parse", "[term][pid]") {
    pid p{"gandalf@pi1", 42};
    CHECK(p.to_string() == "<gandalf@pi1.42>");
    CHECK(pid::parse("<gandalf@pi1.42>") == p);
    CHECK(pid::parse("<gandalf@pi1.lan.18446744073709551615>") == pid{"gandalf@pi1.lan", UINT64_MAX});
    CHECK(pid{}.to_string() == "<null>");
    CHECK(pid::parse("<null>") == pid{});
    ref r{"gandalf@pi1", 7};
    CHECK(r.to_string() == "#Ref<gandalf@pi1.7>");
    CHECK(ref::parse("#Ref<gandalf@pi1.7>") == r);
    CHECK(ref::parse("#Ref<null>") == ref{});
    for (const char* bad : {"", "<", "<>", "gandalf@pi1.42", "<gandalf@pi1.42", "gandalf@pi1.42>", "<gandalf@pi1>",
                            "<gandalf@pi1.>", "<gandalf@pi1.0>", "<gandalf@pi1.042>", "<gandalf@pi1.-1>",
                            "<gandalf@pi1.+1>", "<gandalf@pi1.4x>", "<gandalf.42>", "<@pi1.42>", "<gandalf@.42>",
                            "<gan dalf@pi1.42>", "<a@b@c.1>", "<gandalf@pi1.18446744073709551616>", "< gandalf@pi1.42>",
                            "#Ref<gandalf@pi1.7>", "<gandalf@pi1.42> "}) {
        INFO(bad);
        CHECK_FALSE(pid::parse(bad));
    }
    for (const char* bad : {"#Ref<>", "#ref<gandalf@pi1.7>", "<gandalf@pi1.7>", "#Ref<gandalf@pi1.0>", "#Ref<x.7>"}) {
        INFO(bad);
        CHECK_FALSE(ref::parse(bad));
    }
}

TEST_CASE("node names", "[term]") {
    CHECK(valid_node_name("gandalf@pi1"));
    CHECK(valid_node_name("a@b"));
    CHECK(valid_node_name("node_1-x@10.0.0.7"));
    CHECK_FALSE(valid_node_name(""));
    CHECK_FALSE(valid_node_name("gandalf"));
    CHECK_FALSE(valid_node_name("@pi1"));
    CHECK_FALSE(valid_node_name("gandalf@"));
    CHECK_FALSE(valid_node_name("a@b@c"));
    CHECK_FALSE(valid_node_name("a.b@c"));
    CHECK_FALSE(valid_node_name("a@b c"));
    CHECK_FALSE(valid_node_name("a@b\n"));
    CHECK_FALSE(valid_node_name("a@" + std::string(254, 'h')));  // 256 bytes
    CHECK(valid_node_name("a@" + std::string(253, 'h')));        // 255 bytes
}

TEST_CASE("to_string renders Erlang-like text", "[term]") {
    term t = arr("store", "weather", pid{"gandalf@pi1", 42}, binary("\x01\x02\x03", 3),
                 binary(std::vector<std::uint8_t>(40)), map_of({{"k", 1}}), nil, true, 2.0, -1.25,
                 "q\"uote\n", ref{"a@b", 3}, arr(), map_of({}));
    CHECK(t.to_string() ==
          "[\"store\", \"weather\", <gandalf@pi1.42>, <<1,2,3>>, #bin[40], {\"k\" => 1}, nil, true, 2.0, -1.25, "
          "\"q\\\"uote\\n\", #Ref<a@b.3>, [], {}]");
    CHECK(term(UINT64_MAX).to_string() == "18446744073709551615");
    CHECK(term(binary()).to_string() == "<<>>");
}

TEST_CASE("decode errors are values", "[term]") {
    auto check = [](std::string bytes, std::string want) {
        auto r = decode(bytes);
        INFO(want);
        REQUIRE_FALSE(r.ok());
        CHECK(r.code() == errc::decode);
        CHECK(r.err().detail.find(want) != std::string::npos);
    };
    check("", "empty");
    check(std::string("\x01\x02", 2), "1 trailing bytes");
    check(std::string("\xdd\xff\xff\xff\xff", 5), "array of 4294967295 elements exceeds limit 65536");
    check(std::string("\xdf\xff\xff\xff\xff", 5), "map of 4294967295 pairs exceeds limit 32768");
    check(std::string("\xdb\xff\xff\xff\xff", 5), "string of 4294967295 bytes exceeds limit 1048576");
    check(std::string("\xc6\xff\xff\xff\xff", 5), "binary of 4294967295 bytes exceeds limit 1048576");
    check(std::string("\xc9\xff\xff\xff\xff\x01", 6), "ext of 4294967295 bytes exceeds limit 1024");
    check(std::string("\xc1", 1), "reserved byte 0xc1");
    check(std::string("\x93\x01\x02", 3), "truncated");
    check(std::string("\xd4\x05\x00", 3), "unknown ext type 5");
    check(std::string("\xd4\xff\x00", 3), "unknown ext type -1");
    decode_limits small;
    small.max_bytes = 4;
    auto r = decode(encode(term("hello")), small);
    REQUIRE_FALSE(r.ok());
    CHECK(r.err().detail == "input of 6 bytes exceeds limit 4");
    CHECK(r.err().message() == "decode: input of 6 bytes exceeds limit 4");
}

TEST_CASE("error codes have stable names", "[error]") {
    CHECK(to_string(errc::ok) == "ok");
    CHECK(to_string(errc::rate_limited) == "rate_limited");
    CHECK(to_string(errc::shutdown) == "shutdown");
    CHECK(to_string(static_cast<errc>(200)) == "unknown");
    for (int i = 0; i <= 15; ++i) CHECK(errc_from_string(to_string(static_cast<errc>(i))) == static_cast<errc>(i));
    CHECK(errc_from_string("nope") == std::nullopt);
    CHECK(error{errc::timeout}.message() == "timeout");
    CHECK(error{errc::exception, "division by zero"}.message() == "exception: division by zero");
}
