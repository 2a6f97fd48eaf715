// Hostile peers and identity (issue 12, "Tests"): who a link is trusted as,
// and who may hold a node name. The victim and its cluster members are
// kith_adversary_victim processes; the adversary (kith_adversary) speaks the
// wire protocol itself over raw libzmq with real CURVE, as a client (DEALER)
// or as a server that a victim dials (ROUTER with its own ZAP handler).
//   - dial-back: a node the victim dialled to use its public service gets
//     the rights of a server only, and never sees the cluster key; a node
//     that cannot prove membership is not made a member by connect();
//   - the membership proof a member gets is the one docs/protocol.md gives;
//     a wrong cookie fails at ZAP; a revoked grant gets "revoked";
//   - name theft before and after the member connects, and while it restarts;
//   - closing the last public service ends every stranger session.
#include "adversary_harness.hpp"

using namespace adv;

namespace {

const std::string kVictim = "victim@localhost";
const std::string kCarol = "carol@localhost";
// The goodbye's reason (the contract's text; an implementation may add words after it).
const std::string kTaken = "refused: node name " + kCarol + " belongs to a cluster member";

bool contains(const std::string& list, const std::string& item) {
    std::size_t p = 0;
    while (p <= list.size()) {
        auto c = list.find(',', p);
        if (list.substr(p, c == std::string::npos ? std::string::npos : c - p) == item) return true;
        if (c == std::string::npos) break;
        p = c + 1;
    }
    return false;
}

// "listen ID ok EP KEY" -> {EP, KEY}
std::pair<std::string, std::string> listen(adversary& a, const std::string& id, const std::string& name,
                                           const std::string& proof) {
    auto l = a.p->ask("listen " + id + " " + name + " " + proof, "listen " + id);
    auto w = words(l);
    REQUIRE(w.size() == 5);
    REQUIRE(w[2] == "ok");
    return {w[3], w[4]};
}

}  // namespace

TEST_CASE("adversary: a dialled stranger gets server rights only and never sees the cluster key",
          "[adversary][identity]") {
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "victim-cookie");
    adversary a;
    auto [ep, key] = listen(a, "d", "eve@localhost", "none");
    CHECK(v->ask("visit " + ep + " " + key) == "visit ok eve@localhost");
    CHECK(a.p->ask("accept d 5000", "accept d") == "accept d ok " + kVictim);
    CHECK(v->ask("trust eve@localhost") == "trust server");
    // Our ZAP saw the victim's own node key, not the cluster key.
    auto zk = words(a.p->ask("zapkeys d", "zapkeys d"));
    REQUIRE(zk.size() == 3);
    CHECK(contains(zk[2], (*v)["key"]));
    CHECK_FALSE(contains(zk[2], kith::cluster_keypair("victim-cookie").pub.z85()));

    // Dial-back over the connection the victim opened: refused, answered.
    const long u0 = v->stat("unauthorized");
    CHECK(a.call_code("d", 1, "kvs", "store", R"(["k", "stolen"])") == "3");
    CHECK(a.call_code("d", 2, "grants", "create", R"(["evil", "kvs", "unlimited", nil])") == "3");
    CHECK(a.call_code("d", 3, "node", "info", "[]") == "3");
    a.send("d", "[4, 4, <eve@localhost.1>, \"echo\", \"server\", [], 0, #Ref<null>]");
    auto sp = a.expect("d", 5, "1=4");
    REQUIRE(sp.size() == 5);
    CHECK(sp[2] == "3");
    a.send("d", "[2, " + (*v)["sink"] + ", \"x\"]");
    a.send("d", "[3, \"anything\", \"x\"]");
    CHECK(a.call_code("d", 5, "echo", "echo", "[1]") == "3");  // after the sends, in order
    CHECK(v->kvs("k") == "kvs \"undefined\"");
    CHECK(v->ask("grants") == "grants ");
    CHECK(v->sink() == 0);
    CHECK(v->stat("unauthorized") >= u0 + 6);

    // connect() (as a member) to a node that cannot prove it knows the
    // cookie: refused, and never listed as a node.
    for (const char* proof : {"none", "garbage"}) {
        INFO(proof);
        const std::string id = std::string("m") + proof;
        auto [mep, mkey] = listen(a, id, "eve-" + std::string(proof) + "@localhost", proof);
        auto r = v->ask("connect " + mep + " " + mkey);
        CHECK(starts(r, "connect error unauthorized"));
        CHECK(r.find("did not prove") != std::string::npos);
        auto nodes = v->ask("nodes");
        CHECK(nodes.find("eve-" + std::string(proof)) == std::string::npos);
        CHECK(v->ask("trust eve-" + std::string(proof) + "@localhost") == "trust none");
        CHECK(a.call_code(id, 1, "kvs", "store", R"(["k", "stolen"])") != "0");
        CHECK(v->kvs("k") == "kvs \"undefined\"");
    }
}

TEST_CASE("adversary: members get the documented proof, a wrong cookie fails at ZAP, revoked is told",
          "[adversary][identity]") {
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "victim-cookie");
    const std::string ep = (*v)["ep"], key = (*v)["key"];
    adversary a;
    // A member (here: whoever holds the cookie) gets a proof bound to its
    // own nonce and both keys, exactly as docs/protocol.md computes it.
    CHECK(a.dial("c", "member@localhost", "cookie victim-cookie " + ep + " " + key) ==
          "dial c ok " + kVictim + " proof=valid");
    CHECK(a.dial("c2", "member2@localhost", "cookie victim-cookie " + ep + " " + key) ==
          "dial c2 ok " + kVictim + " proof=valid");
    // A wrong cookie, and a stranger while nothing is public: refused by ZAP.
    CHECK(a.dial("w", "wrong@localhost", "cookie not-the-cookie " + ep + " " + key) == "dial w auth_failed 400");
    CHECK(a.dial("s", "stranger@localhost", "stranger " + ep + " " + key) == "dial s auth_failed 400");
    // A grantee gets no proof; once revoked, its session is told and a new
    // one gets "revoked" instead of the handshake.
    const std::string file = (tmp.path / "bob.grant").string();
    REQUIRE(v->ask("grant bob kvs 1000 1000 " + file) == "grant ok");
    CHECK(a.dial("b", "bob@localhost", "grant " + file) == "dial b ok " + kVictim + " proof=empty");
    CHECK(a.call_code("b", 1, "kvs", "lookup", R"(["k"])") == "0");
    REQUIRE(v->ask("revoke bob") == "revoke ok");
    auto gb = a.expect("b", 16);
    REQUIRE(gb.size() == 2);
    CHECK(gb[1] == "\"revoked\"");
    CHECK(a.dial("r", "bob@localhost", "grant " + file) == "dial r goodbye revoked");
}

TEST_CASE("adversary: name theft before and after the member connects, and while it restarts",
          "[adversary][identity]") {
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "shared-cookie");
    const std::string ep = (*v)["ep"], key = (*v)["key"];
    REQUIRE(v->ask("public echo on 1000 1000") == "public ok");
    adversary a;

    // Before carol ever connected: a stranger takes her name. It is shown as
    // what it is, and gets nothing a member would: a call to that name fails
    // at once and never reaches it.
    REQUIRE(a.dial("i", kCarol, "stranger " + ep + " " + key) == "dial i ok " + kVictim + " proof=empty");
    CHECK(v->ask("trust " + kCarol) == "trust stranger");
    CHECK(starts(v->ask("call " + kCarol + " kvs store k stolen"), "call error unauthorized"));
    CHECK(a.call_code("i", 1, "echo", "echo", "[1]") == "0");  // the link works, in order after the above
    CHECK(a.seen("i", 6) == 0);

    // The real carol connects: the impostor's session is ended, carol holds
    // her name as a member, and the victim's calls reach her.
    auto carol = start_victim(kCarol, tmp.path / "carol", "shared-cookie");
    CHECK(carol->ask("connect " + ep + " " + key) == "connect ok " + kVictim);
    auto gb = a.expect("i", 16);
    REQUIRE(gb.size() == 2);
    CHECK(starts(gb[1], "\"refused:"));
    CHECK(eventually([&] { return v->ask("trust " + kCarol) == "trust cluster"; }));
    CHECK(v->ask("call " + kCarol + " kvs store k fine") == "call ok true");
    CHECK(carol->kvs("k") == "kvs [\"ok\", \"fine\"]");
    CHECK(a.seen("i", 6) == 0);

    // After: neither a grantee nor a stranger may take the name.
    const std::string file = (tmp.path / "m.grant").string();
    REQUIRE(v->ask("grant mallory kvs,echo 1000 1000 " + file) == "grant ok");
    CHECK(starts(a.dial("g", kCarol, "grant " + file), "dial g goodbye " + kTaken));
    CHECK(starts(a.dial("s", kCarol, "stranger " + ep + " " + key), "dial s goodbye " + kTaken));
    CHECK(v->ask("trust " + kCarol) == "trust cluster");
    CHECK(carol->ask("trust " + kVictim) == "trust cluster");

    // While carol restarts, her name stays reserved for her.
    carol->p->kill_now();
    carol->p->reap();
    carol.reset();
    CHECK(eventually([&] { return v->ask("trust " + kCarol) == "trust none"; }, 15s));
    CHECK(starts(a.dial("s2", kCarol, "stranger " + ep + " " + key), "dial s2 goodbye " + kTaken));
    CHECK(starts(a.dial("g2", kCarol, "grant " + file), "dial g2 goodbye " + kTaken));
    CHECK(starts(v->ask("call " + kCarol + " kvs store k stolen"), "call error "));
    carol = start_victim(kCarol, tmp.path / "carol", "shared-cookie");
    CHECK(carol->ask("connect " + ep + " " + key) == "connect ok " + kVictim);
    CHECK(eventually([&] { return v->ask("trust " + kCarol) == "trust cluster"; }));
    CHECK(v->ask("call " + kCarol + " kvs lookup k") == "call ok \"undefined\"");  // the new incarnation
    CHECK(v->ask("call " + kCarol + " kvs store k again") == "call ok true");
    CHECK(carol->kvs("k") == "kvs [\"ok\", \"again\"]");
}

TEST_CASE("adversary: closing the last public service ends every stranger session", "[adversary][identity]") {
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "victim-cookie");
    const std::string ep = (*v)["ep"], key = (*v)["key"];
    REQUIRE(v->ask("public echo on 1000 1000") == "public ok");
    adversary a;
    REQUIRE(a.dial("s", "stranger@localhost", "stranger " + ep + " " + key) == "dial s ok " + kVictim + " proof=empty");
    CHECK(a.call_code("s", 1, "echo", "echo", "[1]") == "0");
    CHECK(v->ask("trust stranger@localhost") == "trust stranger");
    REQUIRE(v->ask("public echo off 1000 1000") == "public ok");
    auto gb = a.expect("s", 16);
    REQUIRE(gb.size() == 2);
    CHECK(starts(gb[1], "\"refused:"));
    CHECK(eventually([&] { return v->ask("trust stranger@localhost") == "trust none"; }));
    // Whatever it sends afterwards is refused.
    CHECK(a.call_code("s", 2, "echo", "echo", "[1]") != "0");
    a.send("s", "[2, " + (*v)["sink"] + ", \"x\"]");
    CHECK(v->sink() == 0);
    // And a new stranger key is not admitted at all.
    CHECK(a.dial("s2", "late@localhost", "stranger " + ep + " " + key) == "dial s2 auth_failed 400");
}

// The member port (docs/security.md, "The member port") admits the cluster
// key only: a grantee (valid or revoked), a stranger's key, a node of another
// cluster and a visitor's own key are refused at ZAP (400; a kith node's
// connect says unauthorized), while each still gets what it got before at
// the public endpoint, and a member gets in.
TEST_CASE("adversary: the member port admits only cluster members", "[adversary][identity]") {
    temp_dir tmp;
    auto v = start_victim(kVictim, tmp.path / "victim", "victim-cookie");
    auto m = start_victim("member@localhost", tmp.path / "member", "victim-cookie");
    auto o = start_victim("outsider@localhost", tmp.path / "outsider", "another-cookie");
    const std::string mep = (*v)["mep"], ep = (*v)["ep"], key = (*v)["key"];
    REQUIRE_FALSE(mep.empty());
    REQUIRE(mep != ep);
    adversary a;
    const std::string g = (tmp.path / "mallory.grant").string();
    REQUIRE(v->ask("grant mallory kvs 1000 2000 " + g) == "grant ok");
    REQUIRE(v->ask("public relay on 10 20") == "public ok");
    CHECK(a.dial("g", kMallory, "grant " + g) == "dial g ok " + kVictim + " proof=empty");
    CHECK(a.dial("gm", kMallory, "grant " + g + " " + mep) == "dial gm auth_failed 400");
    CHECK(a.dial("s", "stranger@localhost", "stranger " + mep + " " + key) == "dial s auth_failed 400");
    CHECK(a.dial("w", "wrong@localhost", "cookie not-the-cookie " + mep + " " + key) == "dial w auth_failed 400");
    CHECK(starts(o->ask("connect " + mep + " " + key), "connect error unauthorized"));
    CHECK(starts(o->ask("visit " + mep + " " + key), "visit error unauthorized"));
    CHECK(starts(o->ask("visit " + ep + " " + key), "visit ok"));  // the public endpoint: as before
    REQUIRE(v->ask("revoke mallory") == "revoke ok");
    CHECK(a.dial("gr", kMallory, "grant " + g + " " + mep) == "dial gr auth_failed 400");
    CHECK(a.dial("c", "member2@localhost", "cookie victim-cookie " + mep + " " + key) ==
          "dial c ok " + kVictim + " proof=valid");
    CHECK(starts(m->ask("connect " + mep + " " + key), "connect ok " + kVictim));
    CHECK(m->ask("call " + kVictim + " relay ping") == "call ok \"pong\"");
}
