// The gate (core/src/auth/gate.hpp): every envelope type, for each kind of
// principal, against a node state written out here. Table-driven: each row
// is a request and the exact verdict.
#include "kith_catch.hpp"

#include <set>

#include "auth/gate.hpp"

using namespace kith;
using namespace kith::detail;

namespace {

const std::string self_node = "alice@home";
const std::string peer_node = "bob@laptop";

// The node state the gate reads: which local pids exist, what is public,
// which requests and monitors are ours.
struct state final : auth::gate_state {
    std::set<std::string> pub;
    std::set<std::uint64_t> asked_ids;
    std::set<std::uint64_t> watching_ids;
    std::set<std::uint64_t> watched_ids;
    bool is_local(const pid& p) const override { return p.node == self_node; }
    bool is_public(const std::string& s) const override { return pub.count(s) != 0; }
    bool any_public() const override { return !pub.empty(); }
    bool asked(const ref& t) const override { return t.node == self_node && asked_ids.count(t.id); }
    bool watching(const ref& m) const override { return watching_ids.count(m.id) != 0; }
    bool watched_by(const pid&, const pid&, const ref& m) const override { return watched_ids.count(m.id) != 0; }
    std::size_t rel = 0, in_flight = 0, alive = 0, queued = 0;
    std::size_t relations() const override { return rel; }
    std::size_t pending() const override { return in_flight; }
    std::size_t spawned() const override { return alive; }
    std::size_t queued_bytes() const override { return queued; }
    load all;  // strangers together
    load strangers() const override { return all; }
};

std::shared_ptr<authority> make(principal::kind k, grant_scope scope = {}) {
    auto a = std::make_shared<authority>();
    a->who.what = k;
    a->who.node = peer_node;
    a->caps = std::make_shared<capability_set>();
    a->caps->add(10);  // alice@home.10 was handed to the peer
    if (k == principal::kind::grant) {
        a->who.label = "bob";
        a->grant = std::make_shared<grant_entry>();
        a->grant->label = "bob";
        a->grant->allow = std::move(scope);
    }
    return a;
}

const pid handed{self_node, 10}, unhanded{self_node, 11}, own{peer_node, 5}, third{"carol@pi", 7};
const ref ours_asked{self_node, 100}, ours_unasked{self_node, 101}, mref_watching{self_node, 200},
    mref_other{self_node, 201}, mref_watched{peer_node, 300}, mref_notwatched{peer_node, 301};

env_call call(std::string svc, std::string fn, term args = arr(), pid from = {}) {
    env_call c;
    c.req_id = 1;
    c.from = std::move(from);
    c.service = std::move(svc);
    c.function = std::move(fn);
    c.args = std::move(args);
    return c;
}

struct row {
    const char* what;
    envelope e;
    errc want;
};

void run(const authority& who, const state& s, const std::vector<row>& rows) {
    for (auto& r : rows) {
        INFO(r.what);
        auto v = auth::admit(who, r.e, s);
        CHECK(v.code == r.want);
        if (r.want != errc::ok) CHECK_FALSE(v.detail.empty());
    }
}

}  // namespace

TEST_CASE("gate: a grantee gets exactly its scope, and pids only as capabilities") {
    auto bob = make(principal::kind::grant, {{"kvs", {"lookup"}}, {"demo", {}}});
    state s;
    s.asked_ids = {100};
    s.watching_ids = {200};
    s.watched_ids = {300};
    const errc ok = errc::ok, no = errc::unauthorized;
    run(*bob, s,
        {
            {"call in scope", call("kvs", "lookup", arr("k")), ok},
            {"call outside the functions granted", call("kvs", "store", arr("k", 1)), no},
            {"call of a whole granted service", call("demo", "node"), ok},
            {"call of a service not granted", call("echo", "echo", arr(1)), no},
            {"admin service even if a table grants it", call("grants", "create"), no},
            {"call with its own pid as caller", call("kvs", "lookup", arr("k"), own), ok},
            {"call with a forged caller", call("kvs", "lookup", arr("k"), unhanded), no},
            {"call with a third node's pid as caller", call("kvs", "lookup", arr("k"), third), no},
            {"args naming a handed pid", call("kvs", "lookup", arr(handed)), ok},
            {"args naming an unhanded pid", call("kvs", "lookup", arr(unhanded)), no},
            {"args naming a pid deep inside a map", call("kvs", "lookup", arr(term_map{{term("x"), arr(arr(unhanded))}})), no},
            {"args naming a third node's pid", call("kvs", "lookup", arr(third)), no},
            {"cast outside scope", env_cast{"kvs", "store", arr("k", 1)}, no},
            {"spawn of a granted type", env_spawn_request{1, own, "demo", "rpc_server", arr(), 0, {}}, ok},
            {"spawn with a forged requester", env_spawn_request{1, handed, "demo", "rpc_server", arr(), 0, {}}, no},
            {"send to a handed pid", env_send{handed, arr(own, "hi")}, ok},
            {"send to an unhanded pid", env_send{unhanded, "hi"}, no},
            {"send naming an unhanded pid in the body", env_send{handed, arr(unhanded, "hi")}, no},
            {"send to a pid of another node", env_send{third, "hi"}, no},
            {"send_named", env_send_named{"logger", "hi"}, no},
            {"request to a handed pid", env_request{handed, own, mref_watched, "q"}, ok},
            {"request from a forged pid", env_request{handed, handed, mref_watched, "q"}, no},
            {"response to our request", env_response{handed, ours_asked, errc::ok, 1}, ok},
            {"response with a guessed tag", env_response{handed, ours_unasked, errc::ok, 1}, no},
            {"monitor of a handed pid", env_monitor{own, handed, mref_watched}, ok},
            {"monitor of an unhanded pid", env_monitor{own, unhanded, mref_watched}, no},
            {"demonitor of its own monitor", env_demonitor{own, handed, mref_watched}, ok},
            {"demonitor of someone else's monitor", env_demonitor{own, handed, mref_notwatched}, no},
            {"down for our monitor", env_down{mref_watching, own, handed, "normal"}, ok},
            {"down with a guessed ref", env_down{mref_other, own, handed, "normal"}, no},
            {"down naming a pid not its own", env_down{mref_watching, third, handed, "normal"}, no},
            {"link to a handed pid", env_link{own, handed}, ok},
            {"link to an unhanded pid", env_link{own, unhanded}, no},
            {"unlink from a forged pid", env_unlink{handed, handed}, no},
            {"linked exit", env_exit{own, handed, "boom", true}, ok},
            {"explicit exit signal", env_exit{own, handed, "kill", false}, no},
            {"reply naming an unhanded pid", env_reply{1, errc::ok, arr(unhanded)}, no},
            {"reply naming its own pid", env_reply{1, errc::ok, arr(own)}, ok},
            {"spawn reply with another node's pid", env_spawn_reply{1, errc::ok, third, ""}, no},
            {"handshake as data", env_handshake{}, no},
        });
}

TEST_CASE("gate: a revoked or unknown grant is revoked, and a server we dialled may only answer") {
    auto ghost = make(principal::kind::grant);
    ghost->grant.reset();
    state s;
    s.pub = {"echo"};
    CHECK(auth::admit(*ghost, call("kvs", "lookup"), s).code == errc::revoked);
    auto srv = make(principal::kind::server);
    run(*srv, s,
        {
            {"a server calls us", call("kvs", "lookup", arr("k")), errc::unauthorized},
            {"a server calls a public service", call("echo", "echo", arr(1)), errc::unauthorized},
            {"a server answers", env_reply{1, errc::ok, 1}, errc::ok},
            {"a server messages a handed pid", env_send{handed, "hi"}, errc::ok},
            {"a server messages an unhanded pid", env_send{unhanded, "hi"}, errc::unauthorized},
        });
}

TEST_CASE("gate: a stranger gets the public services while there are any, then nothing") {
    auto eve = make(principal::kind::stranger);
    state s;
    s.pub = {"echo"};
    run(*eve, s,
        {
            {"public service", call("echo", "echo", arr(1)), errc::ok},
            {"service not public", call("kvs", "store", arr("k", 1)), errc::unauthorized},
            {"admin service", call("node", "info"), errc::unauthorized},
            {"handed pid", env_send{handed, "hi"}, errc::ok},
        });
    s.pub.clear();
    run(*eve, s,
        {
            {"no public left: the public service", call("echo", "echo", arr(1)), errc::unauthorized},
            {"no public left: a handed pid", env_send{handed, "hi"}, errc::unauthorized},
        });
}

TEST_CASE("gate: members and local code are not restricted, and re-dispatch follows the same rules") {
    state s;
    auto member = make(principal::kind::member);
    CHECK(auth::admit(*member, call("grants", "create"), s).ok());
    CHECK(auth::admit(*member, env_send{unhanded, "hi"}, s).ok());
    CHECK(auth::may_reach(*member, "carol@pi", false));
    auto bob = make(principal::kind::grant, {{"demo", {}}});
    CHECK(auth::may_invoke(*bob, "demo", "node", s).ok());
    CHECK(auth::may_invoke(*bob, "grants", "create", s).code == errc::unauthorized);
    CHECK(auth::may_invoke(*bob, "kvs", "store", s).code == errc::unauthorized);
    CHECK(auth::may_reach(*bob, self_node, true));     // the service's own local business
    CHECK(auth::may_reach(*bob, peer_node, false));    // back to the principal
    CHECK_FALSE(auth::may_reach(*bob, "carol@pi", false));  // never on to a third node
    CHECK(auth::is_admin_service("grants"));
    CHECK(auth::is_admin_service("node"));
    CHECK_FALSE(auth::is_admin_service("kvs"));
}

TEST_CASE("gate: a non-member holds at most max_relations monitors and links") {
    auto bob = make(principal::kind::grant, {{"demo", {}}});
    state s;
    s.rel = auth::max_relations - 1;
    CHECK(auth::admit(*bob, env_monitor{own, handed, mref_watched}, s).ok());
    CHECK(auth::admit(*bob, env_link{own, handed}, s).ok());
    s.rel = auth::max_relations;
    CHECK(auth::admit(*bob, env_monitor{own, handed, mref_watched}, s).code == errc::overloaded);
    CHECK(auth::admit(*bob, env_link{own, handed}, s).code == errc::overloaded);
    CHECK(auth::admit(*bob, env_unlink{own, handed}, s).ok());  // removing one is always allowed
}

TEST_CASE("gate: work in flight, actors spawned and queued bytes are capped per non-member, after authorization") {
    auto bob = make(principal::kind::grant, {{"demo", {}}});
    state s;
    env_spawn_request sp;
    sp.req_id = 2;
    sp.service = "demo";
    sp.actor_type = "rpc_server";
    auto has = [](const auth::verdict& v, const char* limit) {
        return v.code == errc::overloaded && v.detail.rfind(std::string("limit ") + limit + ":", 0) == 0;
    };
    s.in_flight = auth::max_pending - 1;
    s.alive = auth::max_spawned - 1;
    s.queued = auth::max_queued_bytes - 1;
    CHECK(auth::admit(*bob, call("demo", "node"), s).ok());
    CHECK(auth::admit(*bob, env_cast{"demo", "node", arr()}, s).ok());
    CHECK(auth::admit(*bob, sp, s).ok());
    CHECK(auth::admit(*bob, env_send{handed, term("x")}, s).ok());
    s.in_flight = auth::max_pending;
    CHECK(has(auth::admit(*bob, call("demo", "node"), s), "pending"));
    CHECK(has(auth::admit(*bob, env_cast{"demo", "node", arr()}, s), "pending"));
    CHECK(has(auth::admit(*bob, sp, s), "pending"));
    // Outside the scope it stays unauthorized: the load says nothing of the rights.
    CHECK(auth::admit(*bob, call("kvs", "store"), s).code == errc::unauthorized);
    s.in_flight = 0;
    s.alive = auth::max_spawned;
    CHECK(has(auth::admit(*bob, sp, s), "spawned"));
    CHECK(auth::admit(*bob, call("demo", "node"), s).ok());  // calls spawn nothing
    s.queued = auth::max_queued_bytes;
    CHECK(has(auth::admit(*bob, env_send{handed, term("x")}, s), "queued"));
    CHECK(has(auth::admit(*bob, env_request{handed, own, ref{peer_node, 9}, term("q")}, s), "queued"));
    CHECK(auth::admit(*bob, env_send{unhanded, term("x")}, s).code == errc::unauthorized);
    // Members are never capped.
    auto member = make(principal::kind::member);
    CHECK(auth::admit(*member, sp, s).ok());
    CHECK(auth::admit(*member, env_send{unhanded, term("x")}, s).ok());
}

TEST_CASE("gate: strangers together are capped too, each cap naming all strangers") {
    auto eve = make(principal::kind::stranger);
    state s;
    s.pub = {"demo"};
    env_spawn_request sp;
    sp.req_id = 2;
    sp.service = "demo";
    sp.actor_type = "rpc_server";
    auto has = [](const auth::verdict& v, const char* limit) {
        return v.code == errc::overloaded && v.detail.rfind(std::string("limit ") + limit + ":", 0) == 0 &&
               v.detail.find("all strangers together") != std::string::npos;
    };
    s.all = {auth::strangers_max_relations - 1, auth::strangers_max_pending - 1, auth::strangers_max_spawned - 1,
             auth::strangers_max_queued_bytes - 1};
    CHECK(auth::admit(*eve, call("demo", "node"), s).ok());
    CHECK(auth::admit(*eve, sp, s).ok());
    s.all.pending = auth::strangers_max_pending;
    CHECK(has(auth::admit(*eve, call("demo", "node"), s), "pending"));
    s.all.pending = 0;
    s.all.spawned = auth::strangers_max_spawned;
    CHECK(has(auth::admit(*eve, sp, s), "spawned"));
    CHECK(auth::admit(*eve, call("demo", "node"), s).ok());
}

TEST_CASE("gate: a grant's own limits replace the defaults, a stranger keeps the defaults") {
    auto bob = make(principal::kind::grant, {{"demo", {}}});
    bob->grant->set_limits(*grant_limits::parse("pending=2,spawned=1,queued=100,relations=3"));
    state s;
    env_spawn_request sp;
    sp.req_id = 2;
    sp.service = "demo";
    sp.actor_type = "rpc_server";
    s.in_flight = 1;
    CHECK(auth::admit(*bob, call("demo", "node"), s).ok());
    s.in_flight = 2;
    auto v = auth::admit(*bob, call("demo", "node"), s);
    CHECK(v.code == errc::overloaded);
    CHECK(v.detail.rfind("limit pending: you have 2 calls", 0) == 0);
    s.in_flight = 0;
    s.alive = 1;
    CHECK(auth::admit(*bob, sp, s).detail.rfind("limit spawned: 1 actors", 0) == 0);
    s.queued = 100;
    CHECK(auth::admit(*bob, env_send{handed, term("x")}, s).detail.rfind("limit queued: 100 bytes", 0) == 0);
    // Over the limit (it was lowered, or a message outgrew it): the use is
    // stated, then the limit in force.
    s.queued = 150;
    CHECK(auth::admit(*bob, env_send{handed, term("x")}, s).detail.rfind(
              "limit queued: 150 bytes of your messages wait unhandled in mailboxes here already, more than the "
              "limit of 100 now in force", 0) == 0);
    s.queued = 0;
    s.in_flight = 5;
    CHECK(auth::admit(*bob, call("demo", "node"), s).detail.rfind(
              "limit pending: you have 5 calls, casts and spawns in flight here already, more than the limit of 2 "
              "now in force", 0) == 0);
    s.in_flight = 0;
    s.rel = 3;
    CHECK(auth::admit(*bob, env_link{own, handed}, s).detail.rfind("limit relations: you hold 3 ", 0) == 0);
    s.rel = 7;
    CHECK(auth::admit(*bob, env_link{own, handed}, s).detail.rfind(
              "limit relations: you hold 7 monitors and links here already, more than the limit of 3 now in force",
              0) == 0);
    // Higher than the default, up to 16x: a trusted heavy user.
    bob->grant->set_limits(*grant_limits::parse("pending=1000"));
    s = state{};
    s.in_flight = auth::max_pending + 10;
    CHECK(auth::admit(*bob, call("demo", "node"), s).ok());
    // A stranger has the defaults, whatever.
    auto eve = make(principal::kind::stranger);
    state p;
    p.pub.insert("demo");
    p.in_flight = auth::max_pending;
    CHECK(auth::admit(*eve, call("demo", "node"), p).code == errc::overloaded);
}

TEST_CASE("gate: grant limits parse and print, bounds are refused with a reason") {
    auto l = grant_limits::parse("spawned=4, pending=8,queued=1048576,relations=100");
    REQUIRE(l.ok());
    CHECK(l->pending == 8);
    CHECK(l->spawned == 4);
    CHECK(l->queued_bytes == 1048576);
    CHECK(l->relations == 100);
    CHECK(l->to_string() == "pending=8,spawned=4,queued=1048576,relations=100");
    CHECK(grant_limits::parse(l->to_string()).value() == *l);
    CHECK(grant_limits::parse("default").value().is_default());
    CHECK(grant_limits{}.to_string() == "default");
    CHECK(grant_limits::parse("pending=1025").err().detail.find("pending must be 1..1024") != std::string::npos);
    for (const char* bad : {"", "pending=0", "pending=-1", "pending=x", "pending=8,pending=9", "bytes=3", "pending",
                            "pending=99999999999999999999"}) {
        INFO(bad);
        auto r = grant_limits::parse(bad);
        REQUIRE_FALSE(r.ok());
        CHECK(r.err().code == errc::badarg);
    }
}
