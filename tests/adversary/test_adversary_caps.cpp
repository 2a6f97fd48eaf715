// Per-principal caps on work a non-member causes (issue 13): calls, casts and
// spawns in flight, actors it spawned alive, queued bytes and handed pids,
// per key (auth::max_pending = 64, auth::max_spawned = 256, or a grant's own
// limits) and for all strangers together. The adversary is a
// grantee in its own process; the victim a real node. Refusals are
// `overloaded` (13) with a detail naming the limit, counted; the cap gives
// back what it took when the work ends; a cluster member is never capped.
#include "adversary_harness.hpp"

using namespace adv;

namespace {

const std::string kVictim = "victim@localhost";

// These caps are tested on their own: the byte budget that would otherwise
// drop a burst of 10 MB first is raised (64 MiB).
struct scene : grant_scene {
    explicit scene(const std::string& scope) : grant_scene(scope, "100000 100000", {"--guest-bytes", "67108864"}) {}
};

std::string spawn_env(long req) { return "[4, " + std::to_string(req) + ", " + kMe + ", \"echo\", \"server\", [], 0, #Ref<null>]"; }

}  // namespace

TEST_CASE("adversary: a grantee's calls in flight are capped at 64, refused overloaded, given back on reply",
          "[adversary][caps]") {
    scene s("relay:hold,relay:ping");
    auto& v = *s.v;
    const long o0 = v.stat("overloaded");
    // 70 calls to a function that answers only when the owner says so: 64
    // are in flight, the last 6 are refused at once, naming the limit.
    s.a.sendrange("g", 1, 70, "[6, $N, <null>, \"relay\", \"hold\", [], 60000]");
    auto hist = s.a.collect("g", 8, 6, 10000, 2);
    CHECK(hist == "collect 6 13:6");
    CHECK(v.stat("overloaded") == o0 + 6);
    // A cast is work in flight too: refused (no answer; counted).
    s.a.send("g", "[7, \"relay\", \"ping\", []]");
    CHECK(eventually([&] { return v.stat("overloaded") == o0 + 7; }));
    auto r = s.a.call("g", 71, "relay", "ping", "[]");
    REQUIRE(r.size() == 4);
    CHECK(r[2] == "13");
    CHECK(r[3].find("limit pending") != std::string::npos);
    // The replies give the slots back.
    CHECK(v.ask("release") == "released 64");
    CHECK(s.a.collect("g", 8, 64, 10000, 2) == "collect 64 0:64");
    CHECK(eventually([&] { return s.a.call_code("g", 72, "relay", "ping", "[]") == "0"; }));

    // The cap is the grantee's own, not the node's: while it is full again,
    // a cluster member's call goes through.
    auto member = start_victim("member@localhost", s.tmp.path / "member", "victim-cookie");
    REQUIRE(starts(member->ask("connect " + v["ep"] + " " + v["key"]), "connect ok"));
    const long o1 = v.stat("overloaded");
    s.a.sendrange("g", 100, 163, "[6, $N, <null>, \"relay\", \"hold\", [], 60000]");
    CHECK(s.a.call_code("g", 164, "relay", "ping", "[]") == "13");
    CHECK(member->ask("call " + kVictim + " relay ping") == "call ok \"pong\"");
    CHECK(v.stat("overloaded") == o1 + 1);
    CHECK(v.ask("release") == "released 64");
}

TEST_CASE("adversary: a grantee's spawned actors alive are capped at 256, and an ended one frees its slot",
          "[adversary][caps]") {
    scene s("echo:server");
    auto& v = *s.v;
    // In batches under the in-flight cap: 256 echo servers start (the
    // histogram of the spawned pids: 32 distinct pids of the victim a batch).
    std::string some;
    for (long b = 0; b < 256; b += 32) {
        s.a.sendrange("g", b + 1, b + 32,
                      "[4, $N, " + kMe + ", \"echo\", \"server\", [], 0, #Ref<null>]");
        auto hist = s.a.collect("g", 5, 32, 15000, 3);
        INFO(hist);
        REQUIRE(starts(hist, "collect 32 <" + kVictim + "."));
        CHECK(hist.find("<null>") == std::string::npos);
        some = hist.substr(11, hist.find(':', 11) - 11);
    }
    long next = 2000;
    auto one = [&](long req) {
        s.a.send("g", spawn_env(req));
        return s.a.expect("g", 5, "1=" + std::to_string(req));
    };
    const long o0 = v.stat("overloaded");
    auto r = one(1000);
    REQUIRE(r.size() == 5);
    CHECK(r[2] == "13");
    CHECK(r[4].find("limit spawned") != std::string::npos);
    CHECK(v.stat("overloaded") == o0 + 1);
    // One of them ends (the owner kills it): its slot is free again, once.
    CHECK(v.ask("kill " + some) == "killed");
    CHECK(eventually([&] {
        auto x = one(next++);
        return x.size() == 5 && x[2] == "0";
    }));
    r = one(3001);
    REQUIRE(r.size() == 5);
    CHECK(r[2] == "13");
}

TEST_CASE("adversary: a grantee's messages queued in a slow actor's mailbox are capped at 4 MiB",
          "[adversary][caps]") {
    scene s("box");
    auto& v = *s.v;
    auto r = s.a.call("g", 1, "box", "slow", "[]");
    REQUIRE(r.size() == 4);
    REQUIRE(r[2] == "0");
    const std::string slow = r[3];
    // The actor stalls on our first message; then 100 messages of 100 kB
    // each (10 MB) wait in its mailbox: about 4 MiB are queued, the rest
    // dropped and counted, and a request is answered overloaded.
    s.a.send("g", "[2, " + slow + ", \"stall\"]");
    REQUIRE(eventually([&] { return v.ask("slow_seen") == "slow_seen 1"; }));
    const long o0 = v.stat("overloaded");
    const std::string big(100000, 'x');
    s.a.sendrange("g", 1, 100, "[2, " + slow + ", [$N, \"" + big + "\"]]");
    // A request after them (handled in order, so after every send): refused.
    s.a.send("g", "[17, " + slow + ", " + kMe + ", #Ref<" + kMallory + ".9>, \"q\"]");
    auto resp = s.a.expect("g", 18, "2=#Ref<" + kMallory + ".9>", 15000);
    REQUIRE(resp.size() == 5);
    CHECK(resp[3] == "13");
    CHECK(resp[4].find("limit queued") != std::string::npos);
    const long dropped = v.stat("overloaded") - o0 - 1;
    CHECK(dropped >= 55);  // 4 MiB / 100 kB: 41 or 42 queued
    CHECK(dropped <= 60);
    // Once the actor has handled them, the bytes are given back.
    CHECK(v.ask("unstall") == "unstalled");
    const long taken = 1 + 100 - dropped;
    CHECK(eventually([&] { return v.ask("slow_seen") == "slow_seen " + std::to_string(taken); }));
    s.a.sendrange("g", 200, 209, "[2, " + slow + ", [$N, \"" + big + "\"]]");
    CHECK(eventually([&] { return v.ask("slow_seen") == "slow_seen " + std::to_string(taken + 10); }));
    CHECK(v.stat("overloaded") == o0 + dropped + 1);
}

// The caps count per key, not per session: a grantee that opens a second
// session (another node name, same key) shares its 64 calls in flight.
TEST_CASE("adversary: a grantee's second session shares its key's cap on calls in flight",
          "[adversary][caps]") {
    scene s("relay:hold,relay:ping");
    auto& v = *s.v;
    REQUIRE(s.a.dial("h", "mallory2@localhost", "grant " + s.grant_file) == "dial h ok " + kVictim + " proof=empty");
    s.a.sendrange("g", 1, 40, "[6, $N, <null>, \"relay\", \"hold\", [], 60000]");
    REQUIRE(s.a.call_code("g", 41, "relay", "ping", "[]") == "0");  // after the 40, in order
    const long o0 = v.stat("overloaded");
    s.a.sendrange("h", 1, 40, "[6, $N, <null>, \"relay\", \"hold\", [], 60000]");
    CHECK(s.a.collect("h", 8, 16, 10000, 2) == "collect 16 13:16");
    auto r = s.a.call("h", 41, "relay", "ping", "[]");
    REQUIRE(r.size() == 4);
    CHECK(r[2] == "13");
    CHECK(r[3].find("limit pending") != std::string::npos);
    CHECK(r[3].find("key") != std::string::npos);
    CHECK(v.stat("overloaded") == o0 + 17);
    CHECK(v.ask("release") == "released 64");
    CHECK(eventually([&] { return s.a.call_code("h", 42, "relay", "ping", "[]") == "0"; }));
    // A guest's frames are decoded off the I/O thread; its goodbye still
    // ends its session (that one only), after what came before it.
    REQUIRE(v.ask("nodes").find("mallory2@localhost") != std::string::npos);
    s.a.send("h", "[6, 43, <null>, \"relay\", \"hold\", [], 60000]");
    s.a.send("h", "[16, \"shutdown\"]");
    CHECK(eventually([&] { return v.ask("nodes").find("mallory2@localhost") == std::string::npos; }));
    CHECK(v.ask("nodes").find(kMallory) != std::string::npos);
    CHECK(v.ask("release") == "released 1");
    CHECK(s.a.call_code("g", 44, "relay", "ping", "[]") == "0");
}

// Fresh stranger keys cost nothing: all strangers together have 256 calls in
// flight at most (auth::strangers_limits), while a member keeps calling.
TEST_CASE("adversary: strangers share one cap on calls in flight, whatever their number of keys",
          "[adversary][caps]") {
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "victim-cookie", {}, {"--guest-bytes", "67108864"});
    REQUIRE(v->ask("public relay on 1000 2000") == "public ok");
    adversary a;
    for (int i = 1; i <= 5; ++i) {
        const std::string id = "s" + std::to_string(i);
        REQUIRE(a.dial(id, "stranger" + std::to_string(i) + "@localhost",
                       "stranger " + (*v)["ep"] + " " + (*v)["key"]) == "dial " + id + " ok " + kVictim + " proof=empty");
    }
    for (int i = 1; i <= 4; ++i) {
        const std::string id = "s" + std::to_string(i);
        a.sendrange(id, 1, 60, "[6, $N, <null>, \"relay\", \"hold\", [], 60000]");
        REQUIRE(a.call_code(id, 61, "relay", "ping", "[]") == "0");
    }
    const long o0 = v->stat("overloaded");
    a.sendrange("s5", 1, 60, "[6, $N, <null>, \"relay\", \"hold\", [], 60000]");
    CHECK(a.collect("s5", 8, 44, 10000, 2) == "collect 44 13:44");
    auto r = a.call("s5", 61, "relay", "ping", "[]");
    REQUIRE(r.size() == 4);
    CHECK(r[2] == "13");
    CHECK(r[3].find("strangers") != std::string::npos);
    CHECK(v->stat("overloaded") == o0 + 45);
    auto member = start_victim("member@localhost", tmp.path / "member", "victim-cookie");
    REQUIRE(starts(member->ask("connect " + (*v)["ep"] + " " + (*v)["key"]), "connect ok"));
    CHECK(member->ask("call " + kVictim + " relay ping") == "call ok \"pong\"");
    CHECK(v->ask("release") == "released 256");
}

// A grant may carry limits of its own (grant_spec::limits, the table's
// limits= field): here 4 calls in flight and 2 spawned actors instead of 64
// and 256; the refusal names the grant's figure.
TEST_CASE("adversary: a grant's own limits - 4 calls in flight, 2 actors - replace the defaults",
          "[adversary][caps]") {
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "victim-cookie", {}, {"--guest-bytes", "67108864"});
    const std::string file = (tmp.path / "mallory.grant").string();
    CHECK(starts(v->ask("grant mallory relay:hold 1000 2000 " + file + " pending=0"), "grant error badarg bad limits"));
    REQUIRE(v->ask("grant mallory relay:hold,relay:ping,echo:server 1000 2000 " + file + " pending=4,spawned=2") ==
            "grant ok");
    adversary a;
    REQUIRE(a.dial("g", kMallory, "grant " + file) == "dial g ok " + kVictim + " proof=empty");
    const long o0 = v->stat("overloaded");
    a.sendrange("g", 1, 6, "[6, $N, <null>, \"relay\", \"hold\", [], 60000]");
    CHECK(a.collect("g", 8, 2, 10000, 2) == "collect 2 13:2");
    auto r = a.call("g", 7, "relay", "ping", "[]");
    REQUIRE(r.size() == 4);
    CHECK(r[2] == "13");
    CHECK(r[3].find("limit pending: you have 4 calls") != std::string::npos);
    CHECK(v->stat("overloaded") == o0 + 3);
    CHECK(v->ask("release") == "released 4");
    CHECK(a.collect("g", 8, 4, 10000, 2) == "collect 4 0:4");
    // Spawns: 2 alive, the third refused naming the grant's figure.
    for (long req : {100, 101}) {
        a.send("g", spawn_env(req));
        auto x = a.expect("g", 5, "1=" + std::to_string(req));
        REQUIRE(x.size() == 5);
        CHECK(x[2] == "0");
    }
    a.send("g", spawn_env(102));
    auto x = a.expect("g", 5, "1=102");
    REQUIRE(x.size() == 5);
    CHECK(x[2] == "13");
    CHECK(x[4].find("limit spawned: 2 actors") != std::string::npos);
}

// Handed pids belong to the key, all its sessions together: an actor a
// stranger key spawned on one session is reachable from its second session
// (another node name), never from another stranger key.
TEST_CASE("adversary: pids handed to a stranger key are its key's, shared by its sessions, not another key's",
          "[adversary][caps]") {
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "victim-cookie");
    REQUIRE(v->ask("public echo on 1000 2000") == "public ok");
    adversary a;
    const std::string ep = (*v)["ep"], key = (*v)["key"];
    REQUIRE(a.dial("s1", "eve1@localhost", "stranger " + ep + " " + key) == "dial s1 ok " + kVictim + " proof=empty");
    REQUIRE(a.dial("s2", "eve2@localhost", "stranger " + ep + " " + key + " s1") ==
            "dial s2 ok " + kVictim + " proof=empty");
    REQUIRE(a.dial("s3", "oscar@localhost", "stranger " + ep + " " + key) == "dial s3 ok " + kVictim + " proof=empty");
    a.send("s1", "[4, 1, <eve1@localhost.1>, \"echo\", \"server\", [], 0, #Ref<null>]");
    auto sp = a.expect("s1", 5, "1=1");
    REQUIRE(sp.size() == 5);
    REQUIRE(sp[2] == "0");
    const std::string echo = sp[3];
    // From the key's second session: admitted (a session's envelopes are
    // handled in order: the call after it answers once it was).
    const long u0 = v->stat("unauthorized");
    a.send("s2", "[2, " + echo + ", \"hello\"]");
    CHECK(a.call_code("s2", 5, "echo", "echo", "[\"x\"]") == "0");
    CHECK(v->stat("unauthorized") == u0);
    // From another key: refused, as a guessed pid.
    a.send("s3", "[2, " + echo + ", \"hello\"]");
    CHECK(a.call_code("s3", 5, "echo", "echo", "[\"x\"]") == "0");
    CHECK(v->stat("unauthorized") == u0 + 1);
}
