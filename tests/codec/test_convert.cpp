// Typed conversion: term::from(v) and t.as<T>() for std types and
// MSGPACK_DEFINE structs holding pids, refs, binaries and terms.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "kith/convert.hpp"
#include "kith_catch.hpp"

using namespace kith;

namespace {

struct job {
    std::string name;
    kith::pid owner;
    kith::term payload;
    std::vector<int> weights;
    kith::ref tag;
    kith::binary blob;
    std::optional<double> score;
    MSGPACK_DEFINE(name, owner, payload, weights, tag, blob, score);
    friend bool operator==(const job&, const job&) = default;
};

struct point {
    int x = 0;
    int y = 0;
    MSGPACK_DEFINE(x, y);
};

}  // namespace

TEST_CASE("std types convert both ways", "[convert]") {
    CHECK(term::from(42) == term(42));
    CHECK(term::from(std::string("hi")) == term("hi"));
    CHECK(term::from(std::vector<int>{1, 2, 3}) == arr(1, 2, 3));
    CHECK(term::from(std::vector<std::uint8_t>{1, 2}) == term(binary("\x01\x02", 2)));
    CHECK(term::from(std::map<std::string, int>{{"a", 1}, {"b", 2}}) == map_of({{"a", 1}, {"b", 2}}));
    CHECK(term::from(std::make_tuple(1, "x", true)) == arr(1, "x", true));
    CHECK(term::from(std::optional<int>{}) == term(nil));
    CHECK(term::from(UINT64_MAX) == term(UINT64_MAX));
    CHECK(term::from(-5) == term(-5));
    CHECK(term::from(2.5f) == term(2.5));

    CHECK(term(42).as<int>().value() == 42);
    CHECK(term(42).as<std::uint8_t>().value() == 42);
    CHECK(term(-1).as<std::int64_t>().value() == -1);
    CHECK(term(UINT64_MAX).as<std::uint64_t>().value() == UINT64_MAX);
    CHECK(term("hi").as<std::string>().value() == "hi");
    CHECK(arr(1, 2, 3).as<std::vector<int>>().value() == std::vector<int>{1, 2, 3});
    CHECK((map_of({{"a", 1}}).as<std::map<std::string, int>>().value() == std::map<std::string, int>{{"a", 1}}));
    CHECK((arr(1, "x").as<std::tuple<int, std::string>>().value() == std::make_tuple(1, std::string("x"))));
    CHECK(term(nil).as<std::optional<int>>().value() == std::nullopt);
    CHECK(term(3).as<std::optional<int>>().value() == 3);
    CHECK(term(2.5).as<double>().value() == 2.5);
    CHECK(term(pid{"a@b", 1}).as<pid>().value() == pid{"a@b", 1});
    CHECK(term(ref{"a@b", 2}).as<ref>().value() == ref{"a@b", 2});
    CHECK(term(binary("z", 1)).as<binary>().value() == binary("z", 1));
    CHECK(arr(1, 2).as<term>().value() == arr(1, 2));
}

TEST_CASE("MSGPACK_DEFINE structs with pid - ref - binary and term members", "[convert]") {
    job j{"weather", pid{"gandalf@pi1", 42}, arr("k", map_of({{"x", 1.5}}), pid{"frodo@shire", 3}),
          {1, 2}, ref{"gandalf@pi1", 9}, binary("\x00\xff", 2), 0.5};
    term t = term::from(j);
    CHECK(t == arr("weather", pid{"gandalf@pi1", 42}, arr("k", map_of({{"x", 1.5}}), pid{"frodo@shire", 3}),
                   arr(1, 2), ref{"gandalf@pi1", 9}, binary("\x00\xff", 2), 0.5));
    auto back = t.as<job>();
    REQUIRE(back.ok());
    CHECK(*back == j);

    // Through the wire too.
    auto decoded = decode(encode(t));
    REQUIRE(decoded.ok());
    CHECK(decoded->as<job>().value() == j);

    // A struct member that is itself a term holding anything.
    job k = j;
    k.payload = term(nil);
    CHECK(term::from(k).as<job>().value() == k);
}

TEST_CASE("a type mismatch is errc::bad_type - never UB", "[convert]") {
    auto r = term("x").as<int>();
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == errc::bad_type);
    CHECK(r.err().detail.find("cannot convert \"x\" to int") != std::string::npos);

    CHECK(term(300).as<std::uint8_t>().code() == errc::bad_type);  // out of range
    CHECK(term(-1).as<unsigned>().code() == errc::bad_type);
    CHECK(term(UINT64_MAX).as<std::int64_t>().code() == errc::bad_type);
    CHECK(arr(1, "x").as<std::vector<int>>().code() == errc::bad_type);
    CHECK(term(1).as<std::string>().code() == errc::bad_type);
    CHECK(term("s").as<pid>().code() == errc::bad_type);
    CHECK(term(ref{"a@b", 1}).as<pid>().code() == errc::bad_type);
    CHECK(term(pid{"a@b", 1}).as<binary>().code() == errc::bad_type);
    CHECK(term(5).as<point>().code() == errc::bad_type);
    CHECK(arr("a", 1).as<point>().code() == errc::bad_type);
    CHECK(arr(1, 2, 3).as<std::tuple<int, int>>().ok() == true);  // msgpack-c ignores extra elements
    // A struct whose pid member holds a string.
    auto bad = arr("weather", "not a pid", nil, arr(), ref{"a@b", 1}, binary(), nil).as<job>();
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.code() == errc::bad_type);
    INFO(bad.err().detail);
    CHECK(bad.err().detail.find("job") != std::string::npos);
    // A pid with a bad node name (only constructible by hand) is refused too.
    CHECK(term(pid{"no at sign", 1}).as<pid>().code() == errc::bad_type);
}

TEST_CASE("shorter arrays keep MSGPACK_DEFINE defaults", "[convert]") {
    auto p = arr(7).as<point>();
    REQUIRE(p.ok());
    CHECK(p->x == 7);
    CHECK(p->y == 0);
}
