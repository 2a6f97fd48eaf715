// Hostile grantees and strangers at the gate (issue 12, "Tests"). The victim
// (kith_adversary_victim) and the adversary (kith_adversary, raw libzmq +
// CURVE, its own handshakes and envelopes) are separate OS processes. Every
// attack asserts the exact code the contract gives it AND that nothing
// happened on the victim (kvs, grant table, sink mailbox, supervisor's
// monitor unchanged) AND that the refusal was counted.
//   - deputies: demo:rpc_server, echo:server, a user service (relay) that
//     re-dispatches with node::invoke_local;
//   - the admin services (grants, node): never granted, never public, never
//     callable by a grantee, even with a hand-edited grant table;
//   - forged `from`, pids in bodies and arguments, guessed pids;
//   - forged response / down / demonitor with guessed refs;
//   - monitors and links to pids that were not handed out;
//   - refusals take tokens.
#include "adversary_harness.hpp"

using namespace adv;

namespace {

const std::string kVictim = "victim@localhost";

struct scene : grant_scene {
    using grant_scene::grant_scene;
    victim& V() { return *v; }
    // [Handed, Worker] from box:get (the grant must allow box).
    std::pair<std::string, std::string> take_box(int req) {
        auto r = a.call("g", req, "box", "get", "[]");
        REQUIRE(r.size() == 4);
        REQUIRE(r[2] == "0");
        CHECK(r[3] == "[" + V()["handed"] + ", " + V()["worker"] + "]");
        return {V()["handed"], V()["worker"]};
    }
};

std::string ref_of(const std::string& node, long id) { return "#Ref<" + node + "." + std::to_string(id) + ">"; }

}  // namespace

TEST_CASE("adversary: the admin services are never granted, never public, never callable by a grantee",
          "[adversary][gate]") {
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "victim-cookie");
    const std::string file = (tmp.path / "x.grant").string();
    for (const char* scope : {"grants", "node", "kvs,grants:list", "node:info", "grants:create,kvs"}) {
        INFO(scope);
        CHECK(starts(v->ask(std::string("grant x ") + scope + " 10 20 " + file), "grant error badarg"));
    }
    CHECK(v->ask("grants") == "grants ");
    CHECK(starts(v->ask("public grants on 10 20"), "public error badarg"));
    CHECK(starts(v->ask("public node on 10 20"), "public error badarg"));

    // A grant for kvs, then its row hand-edited to name the admin services
    // (with a valid checksum): they stay refused at the gate.
    const std::string bob = (tmp.path / "bob.grant").string();
    REQUIRE(v->ask("grant bob kvs 100000 100000 " + bob) == "grant ok");
    hand_edit_grant_table(tmp.path / "victim" / "grants", "bob", "grants,kvs,node");
    adversary a;
    REQUIRE(a.dial("g", kMallory, "grant " + bob) == "dial g ok " + kVictim + " proof=empty");
    const long u0 = v->stat("unauthorized");
    CHECK(a.call_code("g", 1, "grants", "list", "[]") == "3");
    CHECK(a.call_code("g", 2, "grants", "create", R"(["evil", "kvs,grants,node", "unlimited", nil])") == "3");
    CHECK(a.call_code("g", 4, "node", "info", "[]") == "3");
    CHECK(a.call_code("g", 5, "kvs", "lookup", R"(["k"])") == "0");  // what the grant does give
    CHECK(v->ask("grants") == "grants bob");
    CHECK(a.call_code("g", 3, "grants", "revoke", R"(["bob"])") == "3");
    CHECK(a.call_code("g", 6, "kvs", "lookup", R"(["k"])") == "0");  // still granted
    CHECK(v->stat("unauthorized") >= u0 + 4);
}

TEST_CASE("adversary: demo:rpc_server is no deputy - it acts for the grantee who spawned it", "[adversary][gate]") {
    scene s("demo");
    auto& v = s.V();
    s.a.send("g", "[4, 1, " + kMe + ", \"demo\", \"rpc_server\", [], 0, #Ref<null>]");
    auto sp = s.a.expect("g", 5, "1=1");
    REQUIRE(sp.size() == 5);
    REQUIRE(sp[2] == "0");
    const std::string rpc = sp[3];
    int tag = 0;
    // Sends a request to the rpc server; returns the response's {code, value}.
    auto req = [&](const std::string& msg) -> std::pair<std::string, std::string> {
        const std::string t = ref_of(kMallory, ++tag);
        s.a.send("g", "[17, " + rpc + ", " + kMe + ", " + t + ", " + msg + "]");
        auto r = s.a.expect("g", 18, "2=" + t);
        if (r.size() != 5) return {"none", ""};
        return {r[3], r[4]};
    };
    const long u0 = v.stat("unauthorized");
    CHECK(req(R"(["grants", "create", ["evil", "kvs,echo,demo,node", "unlimited", nil]])").first == "3");
    CHECK(req(R"(["grants", "list", []])").first == "3");
    CHECK(req(R"(["kvs", "store", ["k", "stolen"]])").first == "3");
    CHECK(req(R"(["node", "info", []])").first == "3");
    CHECK(req(R"(["echo", "echo", ["x"]])").first == "3");
    // Inside the grantee's scope it works.
    auto ok = req(R"(["demo", "node", []])");
    CHECK(ok.first == "0");
    CHECK(ok.second == "\"" + kVictim + "\"");
    // Nothing happened on the victim.
    CHECK(v.ask("grants") == "grants mallory");
    CHECK(v.kvs("k") == "kvs \"undefined\"");
    // The direct calls are refused as well.
    CHECK(s.a.call_code("g", 2, "grants", "create", R"(["evil2", "kvs", "unlimited", nil])") == "3");
    CHECK(v.ask("grants") == "grants mallory");
    CHECK(v.stat("unauthorized") >= u0 + 1);
    // Last (today it ends our own session): revoking through the deputy.
    CHECK(req(R"(["grants", "revoke", ["mallory"]])").first == "3");
    CHECK(s.a.call_code("g", 3, "demo", "node", "[]") == "0");
}

TEST_CASE("adversary: echo:server is no deputy - it only sends where its spawner may", "[adversary][gate]") {
    scene s("echo:server,box");
    auto& v = s.V();
    s.a.send("g", "[4, 1, " + kMe + ", \"echo\", \"server\", [], 0, #Ref<null>]");
    auto sp = s.a.expect("g", 5, "1=1");
    REQUIRE(sp.size() == 5);
    REQUIRE(sp[2] == "0");
    const std::string echo = sp[3];
    const long u0 = v.stat("unauthorized");
    // Pids it was never handed, as the echo's target: a local mailbox, a
    // pid of another cluster member, the same nested deeper.
    s.a.send("g", "[2, " + echo + ", [" + v["sink"] + ", \"x\"]]");
    s.a.send("g", "[2, " + echo + ", [<carol@localhost.5>, \"x\"]]");
    s.a.send("g", "[2, " + echo + ", [<mallory@localhost.7>, [[" + v["sink"] + "]]]]");
    s.a.send("g", "[2, " + echo + ", [<mallory@localhost.7>, {\"p\" => " + v["sink"] + "}]]");
    // Control: to our own pid it echoes (processed in order after the above).
    s.a.send("g", "[2, " + echo + ", [<mallory@localhost.7>, \"back\"]]");
    auto back = s.a.expect("g", 2, "1=<mallory@localhost.7>");
    REQUIRE(back.size() == 3);
    CHECK(back[2] == "\"back\"");
    CHECK(v.sink() == 0);
    CHECK(v.stat("unauthorized") >= u0 + 4);

    // A pid handed to the grantee is fine.
    auto [handed, worker] = s.take_box(2);
    s.a.send("g", "[2, " + echo + ", [" + handed + ", \"ok\"]]");
    CHECK(eventually([&] { return v.handed() == 1; }));
    // The echo server acts for the grantee for its whole life: it never
    // carries traffic on to a third node, even when a local process asks it
    // (counted as refused). Local targets a local process names are that
    // process's business, not the grantee's: delivered. The messages are
    // handled in order (one actor).
    const auto u1 = v.stat("unauthorized");
    CHECK(v.ask("local_send " + echo + " <carol@localhost.5> evil") == "sent");
    CHECK(v.ask("local_send " + echo + " sink local") == "sent");
    CHECK(v.ask("local_send " + echo + " handed after") == "sent");
    CHECK(eventually([&] { return v.handed() == 2; }));
    CHECK(v.sink() == 1);
    CHECK(v.stat("unauthorized") == u1 + 1);
}

TEST_CASE("adversary: a user service that re-dispatches with invoke_local applies the caller's scope",
          "[adversary][gate]") {
    scene s("relay");
    auto& v = s.V();
    CHECK(s.a.call_code("g", 1, "relay", "invoke", R"(["kvs", "store", ["k", "stolen"]])") == "3");
    CHECK(s.a.call_code("g", 2, "relay", "invoke", R"(["grants", "create", ["evil", "kvs", "unlimited", nil]])") ==
          "3");
    CHECK(s.a.call_code("g", 3, "relay", "invoke", R"(["node", "info", []])") == "3");
    CHECK(s.a.call_code("g", 4, "relay", "invoke", R"(["echo", "echo", ["x"]])") == "3");
    CHECK(v.kvs("k") == "kvs \"undefined\"");
    CHECK(v.ask("grants") == "grants mallory");
    // Within the scope, re-dispatch works.
    auto r = s.a.call("g", 5, "relay", "invoke", R"(["relay", "ping", []])");
    REQUIRE(r.size() == 4);
    CHECK(r[2] == "0");
    CHECK(r[3] == "\"pong\"");
    CHECK(s.a.call_code("g", 6, "kvs", "lookup", R"(["k"])") == "3");
}

TEST_CASE("adversary: forged from, pids in bodies and arguments, guessed pids", "[adversary][gate]") {
    scene s("box,echo:echo,kvs");
    auto& v = s.V();
    const std::string sink = v["sink"];
    const long u0 = v.stat("unauthorized");
    // A call whose `from` is not the caller's own pid is answered, refused.
    CHECK(s.a.call_code("g", 1, "echo", "echo", R"(["hi"])", sink) == "3");
    CHECK(s.a.call_code("g", 2, "echo", "echo", R"(["hi"])", "<carol@localhost.3>") == "3");
    CHECK(s.a.call_code("g", 3, "echo", "echo", R"(["hi"])", kMe) == "0");
    // Pids in arguments, nested too.
    CHECK(s.a.call_code("g", 4, "echo", "echo", "[" + sink + "]") == "3");
    CHECK(s.a.call_code("g", 5, "kvs", "store", "[\"k\", [{\"p\" => " + sink + "}]]") == "3");
    CHECK(s.a.call_code("g", 6, "kvs", "store", "[\"k\", [" + sink + "]]") == "3");
    CHECK(v.kvs("k") == "kvs \"undefined\"");
    CHECK(s.a.call_code("g", 7, "kvs", "store", "[\"k\", [" + kMe + "]]") == "0");  // our own pid: fine
    CHECK(v.kvs("k") == "kvs [\"ok\", [" + kMe + "]]");
    CHECK(v.stat("unauthorized") >= u0 + 5);

    // Guessed pids (nothing handed yet): sends dropped, requests answered 3.
    const long u1 = v.stat("unauthorized");
    s.a.sendrange("g", 1, 200, "[2, <" + kVictim + ".$N>, \"guess\"]");
    s.a.sendrange("g", 1, 200, "[17, <" + kVictim + ".$N>, " + kMe + ", #Ref<" + kMallory + ".$N>, \"guess\"]");
    CHECK(s.a.collect("g", 18, 200, 15000, 3) == "collect 200 3:200");
    CHECK(s.a.call_code("g", 8, "echo", "echo", "[1]") == "0");  // everything before it was gated
    CHECK(v.sink() == 0);
    CHECK(v.handed() == 0);
    CHECK(v.stat("unauthorized") >= u1 + 400);

    // Pids inside a message to a handed pid.
    auto [handed, worker] = s.take_box(9);
    s.a.send("g", "[2, " + handed + ", [\"x\", " + sink + "]]");
    s.a.send("g", "[2, " + handed + ", [{\"deep\" => [[" + sink + "]]}]]");
    s.a.send("g", "[2, " + handed + ", [\"x\", " + worker + "]]");  // handed too: fine
    CHECK(s.a.call_code("g", 10, "echo", "echo", "[1]") == "0");
    CHECK(v.handed() == 1);
    CHECK(v.sink() == 0);
}

TEST_CASE("adversary: forged response, down and demonitor with guessed refs", "[adversary][gate]") {
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "shared-cookie");
    auto carol = start_victim("carol@localhost", tmp.path / "carol", "shared-cookie");
    REQUIRE(v->ask("connect " + (*carol)["ep"] + " " + (*carol)["key"]) == "connect ok carol@localhost");
    const std::string file = (tmp.path / "m.grant").string();
    REQUIRE(v->ask("grant mallory box 100000 100000 " + file) == "grant ok");
    adversary a;
    REQUIRE(a.dial("g", kMallory, "grant " + file) == "dial g ok " + kVictim + " proof=empty");
    const std::string asker = (*v)["asker"], watcher = (*v)["watcher"], carol_sink = (*carol)["sink"];
    const std::string ours = "<" + kMallory + ".9>";

    // Responses: the asker waits on carol (who never answers) and on us.
    CHECK(v->ask("ask 0 " + carol_sink + " 3000") == "asking");
    CHECK(v->ask("ask 1 " + ours + " 3000") == "asking");
    auto rq = a.expect("g", 17, "1=" + ours);
    REQUIRE(rq.size() == 5);
    CHECK(rq[2] == asker);
    const long t = serial_of(rq[3]);
    const long u0 = v->stat("unauthorized");
    const std::string forged = "[18, " + asker + ", #Ref<" + kVictim + ".$N>, 0, \"forged\"]";
    if (t > 1) a.sendrange("g", std::max(1L, t - 100), t - 1, forged);
    a.sendrange("g", t + 1, t + 100, forged);
    a.send("g", "[18, " + asker + ", " + rq[3] + ", 0, \"real\"]");
    CHECK(v->ask("ask_result 1 5000") == "ask_result ok \"real\"");
    CHECK(v->ask("ask_result 0 8000") == "ask_result error timeout");
    const long n_resp = 100 + (t - std::max(1L, t - 100));
    CHECK(v->stat("unauthorized") >= u0 + n_resp);

    // DOWNs: the watcher monitors our pid and carol's sink.
    auto m1 = v->ask("monitor " + ours);
    REQUIRE(starts(m1, "monitor #Ref<"));
    const std::string mref1 = m1.substr(8);
    auto mon = a.expect("g", 9, "1=" + watcher + " 2=" + ours);  // not the asker's monitor
    REQUIRE(mon.size() == 4);
    CHECK(mon[1] == watcher);
    CHECK(mon[3] == mref1);
    auto m2 = v->ask("monitor " + carol_sink);
    REQUIRE(starts(m2, "monitor #Ref<"));
    const std::string mref2 = m2.substr(8);
    const long r1 = serial_of(mref1);
    const long u1 = v->stat("unauthorized");
    const std::string fake_down = "[11, #Ref<" + kVictim + ".$N>, " + ours + ", " + watcher + ", \"forged\"]";
    if (r1 > 1) a.sendrange("g", std::max(1L, r1 - 100), r1 - 1, fake_down);
    a.sendrange("g", r1 + 1, r1 + 100, fake_down);
    a.send("g", "[11, " + mref2 + ", " + ours + ", " + watcher + ", \"forged\"]");
    a.send("g", "[11, " + mref2 + ", " + carol_sink + ", " + watcher + ", \"forged\"]");
    CHECK(a.call_code("g", 1, "box", "get", "[]") == "0");  // all of the above was handled
    CHECK(v->ask("downs") == "downs 0");
    CHECK(v->stat("unauthorized") >= u1 + 100);
    // The real DOWN of our pid is accepted (control) ...
    a.send("g", "[11, " + mref1 + ", " + ours + ", " + watcher + ", \"gone\"]");
    CHECK(eventually([&] { return v->ask("downs") == "downs 1"; }));
    // ... and the monitor on carol is still in place: carol's death reaches it.
    carol->p->kill_now();
    CHECK(eventually([&] { return v->ask("downs") == "downs 2"; }, 15s));

    // Demonitor: guessing the ref of the supervisor's monitor on the (handed)
    // worker does not remove it.
    const std::string worker = (*v)["worker"];
    const long u2 = v->stat("unauthorized");
    a.sendrange("g", 1, 300, "[10, " + kMe + ", " + worker + ", #Ref<" + kVictim + ".$N>]");
    CHECK(a.call_code("g", 2, "box", "get", "[]") == "0");
    CHECK(v->stat("unauthorized") >= u2 + 300);
    CHECK(v->ask("kill_worker") == "killed");
    CHECK(v->ask("sup_down 5000") == "sup_down \"killed\"");
}

TEST_CASE("adversary: monitors, links and exit signals to pids that were not handed", "[adversary][gate]") {
    scene s("box");
    auto& v = s.V();
    const std::string sink = v["sink"];
    const long u0 = v.stat("unauthorized");
    s.a.send("g", "[9, " + kMe + ", " + sink + ", " + ref_of(kMallory, 5) + "]");
    auto d = s.a.expect("g", 11, "1=" + ref_of(kMallory, 5));
    REQUIRE(d.size() == 5);
    CHECK(d[4] == "\"unauthorized\"");
    s.a.send("g", "[12, " + kMe + ", " + sink + "]");
    auto x = s.a.expect("g", 14, "1=" + sink);
    REQUIRE(x.size() == 5);
    CHECK(x[2] == kMe);
    CHECK(x[3] == "\"unauthorized\"");
    // Guessed pids.
    s.a.sendrange("g", 1, 200, "[9, " + kMe + ", <" + kVictim + ".$N>, #Ref<" + kMallory + ".1$N>]");
    CHECK(s.a.collect("g", 11, 200, 15000, 4) == "collect 200 \"unauthorized\":200");
    s.a.sendrange("g", 1, 200, "[12, <" + kMallory + ".2>, <" + kVictim + ".$N>]");
    CHECK(s.a.collect("g", 14, 200, 15000, 3) == "collect 200 \"unauthorized\":200");
    CHECK(v.stat("unauthorized") >= u0 + 402);

    // Exit signals: explicit ones never, linked ones only along a link.
    auto [handed, worker] = s.take_box(1);
    s.a.send("g", "[14, " + kMe + ", " + worker + ", \"kill\", false]");
    s.a.send("g", "[14, " + kMe + ", " + worker + ", \"kill\", true]");
    s.a.send("g", "[14, " + kMe + ", " + sink + ", \"kill\", true]");
    s.a.send("g", "[13, " + kMe + ", " + sink + "]");
    CHECK(s.a.call_code("g", 2, "box", "get", "[]") == "0");
    CHECK(v.ask("worker_alive") == "worker_alive true");
    CHECK(v.sink() == 0);
    // Control: a handed pid may be monitored.
    s.a.send("g", "[9, " + kMe + ", " + worker + ", " + ref_of(kMallory, 77) + "]");
    CHECK(s.a.call_code("g", 3, "box", "get", "[]") == "0");
    CHECK(v.ask("kill_worker") == "killed");
    auto dn = s.a.expect("g", 11, "1=" + ref_of(kMallory, 77));
    REQUIRE(dn.size() == 5);
    CHECK(dn[4] == "\"killed\"");
}

// Refusals are answered within a budget of their own (1000 a second per
// session, burst 1000): one frame can carry 1024 calls, so without it a
// grantee past its rate would make the node build and send a reply for every
// one of them (docs/security.md, "Bounds").
TEST_CASE("adversary: over-the-rate calls are answered at most 1000 a second, the rest counted unanswered",
          "[adversary][gate]") {
    scene s("demo", "0.05 5");  // 5 tokens, then one every 20 s
    auto& v = s.V();
    const long r0 = v.stat("rate_limited"), u0 = v.stat("unanswered");
    // 20 frames of 1000 calls, about 600 kB: within the key's byte budget
    // (1 MiB burst), so every call is decoded and priced.
    auto fl = s.a.p->ask("floodn g 20 *1000 [6, 1, <null>, \"demo\", \"node\", [], 5000]", "flood", 30s);
    INFO(fl);
    REQUIRE(starts(fl, "flood sent="));
    // Every refusal is counted; the answered ones (and the 5 within the rate)
    // are all that comes back.
    long limited = 0, unanswered = 0;
    REQUIRE(eventually([&] {  // the node has decoded the whole flood: the counts stand still
        const long before = v.stat("rate_limited");
        std::this_thread::sleep_for(300ms);
        limited = v.stat("rate_limited") - r0;
        unanswered = v.stat("unanswered") - u0;
        return limited > 0 && limited + r0 == before;
    }, 30s));
    REQUIRE(eventually([&] { return s.a.seen("g", 8) >= 5 + limited - unanswered; }));
    CHECK(s.a.seen("g", 8) == 5 + limited - unanswered);
    INFO("rate_limited " << limited << " unanswered " << unanswered);
    CHECK(limited == 20 * 1000 - 5);
    CHECK(unanswered >= 5000);
    CHECK(limited - unanswered <= 1000 + 1000 * 10);  // the burst, and 1000/s for the test's few seconds at most
    // Once the flood stops the answers' budget refills: a refusal is told again.
    REQUIRE(eventually([&] { return s.a.call_code("g", 7, "demo", "node", "[]") == "5"; }));
    CHECK(v.stat("unanswered") - u0 == unanswered);
}

TEST_CASE("adversary: refusals take tokens, so guessing is rate-limited", "[adversary][gate]") {
    scene s("demo", "0.05 5");  // 5 tokens, then one every 20 s
    auto& v = s.V();
    const long r0 = v.stat("rate_limited");
    for (int i = 1; i <= 5; ++i) CHECK(s.a.call_code("g", i, "kvs", "store", R"(["k", "v"])") == "3");
    // The refusals spent the bucket: the next allowed call is rate-limited.
    CHECK(s.a.call_code("g", 6, "demo", "node", "[]") == "5");
    s.a.send("g", "[9, " + kMe + ", " + v["sink"] + ", " + ref_of(kMallory, 1) + "]");
    auto d = s.a.expect("g", 11, "1=" + ref_of(kMallory, 1));
    REQUIRE(d.size() == 5);
    CHECK(d[4] == "\"rate_limited\"");
    s.a.send("g", "[17, " + v["sink"] + ", " + kMe + ", " + ref_of(kMallory, 2) + ", \"x\"]");
    auto r = s.a.expect("g", 18, "2=" + ref_of(kMallory, 2));
    REQUIRE(r.size() == 5);
    CHECK(r[3] == "5");
    s.a.send("g", "[2, " + v["sink"] + ", \"x\"]");  // no answer: counted
    CHECK(s.a.call_code("g", 7, "demo", "node", "[]") == "5");
    CHECK(v.stat("rate_limited") >= r0 + 5);
    CHECK(v.kvs("k") == "kvs \"undefined\"");
    CHECK(v.sink() == 0);

    // A stranger's refused calls take tokens too: a flood of calls to a
    // service that is not public runs dry (whichever of the key's buckets
    // they are charged to: its default public bucket allows a burst of 20).
    CHECK(v.ask("public echo on 0.05 3") == "public ok");
    REQUIRE(starts(s.a.dial("s", "stranger@localhost", "stranger " + v["ep"] + " " + v["key"]),
                   "dial s ok " + kVictim));
    const long r1 = v.stat("rate_limited");
    s.a.sendrange("s", 1, 60, "[6, $N, <null>, \"kvs\", \"lookup\", [\"k\"], 5000]");
    auto hist = s.a.collect("s", 8, 60, 15000, 2);
    INFO(hist);
    REQUIRE(starts(hist, "collect 60 "));
    long limited = 0, refused = 0;
    for (auto& item : words(std::string(hist.begin() + hist.find(' ', 8) + 1, hist.end()) + ",")) {
        for (std::size_t p = 0, c; (c = item.find(',', p)) != std::string::npos; p = c + 1) {
            auto kv = item.substr(p, c - p);
            auto colon = kv.find(':');
            REQUIRE(colon != std::string::npos);
            const long n = std::stol(kv.substr(colon + 1));
            if (kv.substr(0, colon) == "5") limited += n;
            else if (kv.substr(0, colon) == "3") refused += n;
            else FAIL("unexpected reply code " << kv);
        }
    }
    CHECK(limited >= 10);  // guessing is rate-limited ...
    CHECK(refused >= 1);   // ... after the refusals spent the tokens
    CHECK(limited + refused == 60);
    CHECK(v.stat("rate_limited") >= r1 + limited);
    CHECK(v.kvs("k") == "kvs \"undefined\"");
}
