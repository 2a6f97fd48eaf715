// Ordering: per pair of sender and receiver, messages arrive in the order sent.
#include <atomic>
#include <thread>

#include "runtime_test_util.hpp"

using namespace kith;
using namespace kith::test;

namespace {
// An actor that checks that, per sender index, numbers arrive as 0,1,2,...
// and reports "ok"/"bad" to `me` once `total` messages arrived.
pid spawn_checker(node& n, const pid& me, int senders, std::int64_t total) {
    return n.spawn([me, senders, total](actor&) -> behavior {
        auto expect = std::make_shared<std::vector<std::int64_t>>(senders, 0);
        auto seen = std::make_shared<std::int64_t>(0);
        auto bad = std::make_shared<bool>(false);
        return [=](actor& self, message& m) {
            auto s = m.body.at(0)->as_int().value();
            auto i = m.body.at(1)->as_int().value();
            if ((*expect)[s] != i) *bad = true;
            (*expect)[s] = i + 1;
            if (++*seen == total) self.send(me, *bad ? "bad" : "ok");
        };
    });
}
}  // namespace

TEST_CASE("100k messages from one actor arrive in order", "[runtime][ordering]") {
    node n(opts());
    mailbox mb(n);
    static constexpr std::int64_t N = 100000;
    pid checker = spawn_checker(n, mb.self(), 1, N);
    pid sender = n.spawn([checker](actor& self, message&) {
        for (std::int64_t i = 0; i < N; ++i) self.send(checker, arr(0, i));
    });
    n.send(sender, "go");
    CHECK(is_str(next(mb).body, "ok"));
}

TEST_CASE("several senders, each in order, interleaved", "[runtime][ordering]") {
    node n(opts());
    mailbox mb(n);
    static constexpr int S = 4;
    static constexpr std::int64_t per = 25000;
    pid checker = spawn_checker(n, mb.self(), S + 1, S * per + per);
    for (int s = 0; s < S; ++s) {
        // Each sender sends in chunks, yielding between them, to interleave.
        pid sender = n.spawn([checker, s](actor& self, message& m) {
            auto from = m.body.as_int().value();
            std::int64_t to = std::min(from + 1000, per);
            for (std::int64_t i = from; i < to; ++i) self.send(checker, arr(s, i));
            if (to < per) self.send(self.self(), to);
        });
        n.send(sender, 0);
    }
    // Plus a plain thread through a mailbox.
    std::thread t([&] {
        mailbox tm(n);
        for (std::int64_t i = 0; i < per; ++i) tm.send(checker, arr(S, i));
    });
    t.join();
    CHECK(is_str(next(mb).body, "ok"));
}

TEST_CASE("ordering holds with one worker and with a short turn", "[runtime][ordering][one_worker]") {
    node_options o = opts(1);
    o.turn_messages = 3;
    node n(o);
    mailbox mb(n);
    static constexpr std::int64_t N = 20000;
    pid checker = spawn_checker(n, mb.self(), 2, 2 * N);
    for (int s = 0; s < 2; ++s) {
        pid sender = n.spawn([checker, s](actor& self, message&) {
            for (std::int64_t i = 0; i < N; ++i) self.send(checker, arr(s, i));
        });
        n.send(sender, "go");
    }
    CHECK(is_str(next(mb).body, "ok"));
}

TEST_CASE("a mailbox receives in order from many threads", "[runtime][ordering][mailbox]") {
    node n(opts());
    mailbox mb(n);
    static constexpr int T = 3;
    static constexpr std::int64_t N = 10000;
    std::vector<std::thread> ts;
    for (int t = 0; t < T; ++t)
        ts.emplace_back([&, t] {
            for (std::int64_t i = 0; i < N; ++i) n.send(mb.self(), arr(t, i));
        });
    std::vector<std::int64_t> expect(T, 0);
    bool ok = true;
    for (std::int64_t k = 0; k < T * N; ++k) {
        message m = next(mb);
        auto t = m.body.at(0)->as_int().value();
        auto i = m.body.at(1)->as_int().value();
        ok &= expect[t] == i;
        expect[t] = i + 1;
    }
    for (auto& t : ts) t.join();
    CHECK(ok);
}
