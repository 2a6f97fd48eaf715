// Typed service registration: argument marshalling, bad_args, exceptions,
// deferred replies.
#include "kith/service.hpp"

#include <atomic>
#include <map>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kith_catch.hpp"

using namespace kith;

namespace {
result<term> invoke(const service& s, const std::string& fn, const term& args) {
    std::optional<result<term>> got;
    s.invoke(fn, args, reply_to([&](result<term> r) { got.emplace(std::move(r)); }));
    REQUIRE(got.has_value());
    return std::move(*got);
}

struct point {
    int x = 0;
    int y = 0;
    MSGPACK_DEFINE(x, y);
};
}  // namespace

TEST_CASE("service: typed functions marshal arguments and results", "[service]") {
    std::map<std::string, term> store;
    service kvs("kvs");
    kvs.function("store", [&](std::string k, term v) { store[k] = v; return true; })
        .function("lookup", [&](std::string k) -> term {
            auto it = store.find(k);
            return it == store.end() ? term("undefined") : arr("ok", it->second);
        })
        .function("add", [](int a, double b) { return a + b; })
        .function("nothing", [] {})
        .function("norm1", [](point p) { return std::abs(p.x) + std::abs(p.y); });

    CHECK(invoke(kvs, "store", arr("weather", "fine")).value() == term(true));
    CHECK(invoke(kvs, "lookup", arr("weather")).value() == arr("ok", "fine"));
    CHECK(invoke(kvs, "lookup", arr("rain")).value() == term("undefined"));
    CHECK(invoke(kvs, "add", arr(2, 0.5)).value() == term(2.5));
    CHECK(invoke(kvs, "nothing", arr()).value() == term());
    CHECK(invoke(kvs, "nothing", term()).value() == term());
    CHECK(invoke(kvs, "norm1", arr(arr(3, -4))).value() == term(7));
}

TEST_CASE("service: wrong arguments are bad_args with a reason", "[service]") {
    service s("math");
    s.function("add", [](int a, int b) { return a + b; });

    auto few = invoke(s, "add", arr(1));
    CHECK(few.code() == errc::bad_args);
    CHECK(few.err().detail == "expected 2 arguments, got 1");

    auto many = invoke(s, "add", arr(1, 2, 3));
    CHECK(many.code() == errc::bad_args);

    auto wrong = invoke(s, "add", arr(1, "two"));
    CHECK(wrong.code() == errc::bad_args);
    CHECK(wrong.err().detail.find("argument 2: expected integer") == 0);

    auto notarray = invoke(s, "add", term(5));
    CHECK(notarray.code() == errc::bad_args);

    CHECK(invoke(s, "sub", arr(1, 2)).code() == errc::no_such_function);
}

TEST_CASE("service: exceptions become errc::exception with the text", "[service]") {
    service s("bad");
    s.function("boom", []() -> int { throw std::runtime_error("division by zero"); });
    s.function("fails", []() -> result<int> { return error{errc::noproc, "gone"}; });
    auto r = invoke(s, "boom", arr());
    CHECK(r.code() == errc::exception);
    CHECK(r.err().detail == "division by zero");
    CHECK(invoke(s, "fails", arr()).code() == errc::noproc);
}

TEST_CASE("service: deferred replies, and a dropped reply is reported", "[service]") {
    service s("later");
    std::optional<reply_to> parked;
    s.function("wait", [&](reply_to r, int x) { if (x > 0) parked.emplace(std::move(r)); });

    std::optional<result<term>> got;
    s.invoke("wait", arr(1), reply_to([&](result<term> r) { got.emplace(std::move(r)); }));
    CHECK_FALSE(got.has_value());
    parked->value(42);
    REQUIRE(got.has_value());
    CHECK(got->value() == term(42));
    parked->value(43);  // a second reply is ignored
    CHECK(got->value() == term(42));

    got.reset();
    s.invoke("wait", arr(0), reply_to([&](result<term> r) { got.emplace(std::move(r)); }));
    REQUIRE(got.has_value());  // the handler dropped its reply_to
    CHECK(got->code() == errc::exception);
    CHECK(got->err().detail == "no reply");
}

TEST_CASE("service: reply_to - moved it answers once, moved over or dropped unreplied it says no reply, racing threads answer once",
          "[service]") {
    std::vector<result<term>> got;
    auto sink = [&](result<term> r) { got.push_back(std::move(r)); };
    {
        reply_to a(sink);
        reply_to b(std::move(a));
        CHECK(a.replied());  // moved from: nothing left to answer
        CHECK_FALSE(b.replied());
        a.value(1);  // ignored
        CHECK(got.empty());
        b.value(2);
        CHECK(b.replied());
        reply_to c(std::move(b));  // answered already: stays answered
        CHECK(c.replied());
        c.value(3);
    }
    REQUIRE(got.size() == 1);
    CHECK(got[0].value() == term(2));
    got.clear();
    {
        reply_to a(sink), b(sink);
        b = std::move(a);  // b's own channel, unanswered, says "no reply" (as if dropped)
        REQUIRE(got.size() == 1);
        CHECK(got[0].code() == errc::exception);
        CHECK(got[0].err().detail == "no reply");
        b.value(4);  // a's channel now
    }
    REQUIRE(got.size() == 2);
    CHECK(got[1].value() == term(4));
    {
        reply_to empty{reply_to::sink{}};  // a channel to nowhere: unanswered until called, as before
        CHECK_FALSE(empty.replied());
        empty.value(5);
        CHECK(empty.replied());
        CHECK(reply_to().replied());  // no channel at all
    }
    std::atomic<int> answers{0};
    for (int round = 0; round < 50; ++round) {
        reply_to r([&](result<term>) { answers.fetch_add(1); });
        std::vector<std::thread> ts;
        for (int t = 0; t < 4; ++t) ts.emplace_back([&r, t] { r.value(t); });
        for (auto& t : ts) t.join();
    }
    CHECK(answers.load() == 50);
}

TEST_CASE("service: an actor type's factory - its arguments and exceptions answer with distinct errors", "[service]") {
    service s("shop");
    s.actor_type("counter", [](int start) {
        if (start < 0) throw std::runtime_error("start must not be negative");
        return [start](actor&, message&) { (void)start; };
    });
    const actor_factory* f = s.find_type("counter");
    REQUIRE(f != nullptr);
    CHECK(s.find_type("nothing") == nullptr);

    auto made = (*f)(arr(3));
    REQUIRE(made.ok());
    CHECK(!made->first);   // a behaviour, no init
    CHECK(made->second);

    auto none = (*f)(arr());
    REQUIRE(!none.ok());
    CHECK(none.code() == errc::bad_args);
    CHECK(none.err().detail == "expected 1 argument, got 0");

    auto not_array = (*f)(term("three"));
    REQUIRE(!not_array.ok());
    CHECK(not_array.code() == errc::bad_args);

    auto wrong_type = (*f)(arr("three"));
    REQUIRE(!wrong_type.ok());
    CHECK(wrong_type.code() == errc::bad_args);

    auto threw = (*f)(arr(-1));
    REQUIRE(!threw.ok());
    CHECK(threw.code() == errc::exception);
    CHECK(threw.err().detail == "start must not be negative");
}
