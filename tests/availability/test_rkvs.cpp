// The replicated kvs (kith/rkvs.hpp) with in-process nodes (real CURVE on
// loopback):
//   - store on one replica, lookup on another, and an acknowledged write is on
//     every connected replica; delete leaves a tombstone;
//   - a replica without a majority refuses writes and stores nothing, but
//     still answers lookups;
//   - a replica that comes back empty gets the whole map (anti-entropy on
//     nodeup), and concurrent writes of one key converge to one winner;
//   - bad input and full tables get badarg / overloaded naming the limit;
//     bad options throw setup_error;
//   - a grantee uses only what its grant names, never the replica functions;
//   - a replica that missed a write gets it by the digest round; tombstones
//     expire on every replica and do not come back.
// Kill -9 and partitions across processes: test_rkvs_process.cpp.
#include <chrono>
#include <memory>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "avail_proc.hpp"
#include "kith/grants.hpp"
#include "kith/node.hpp"
#include "kith/rkvs.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace std::chrono_literals;
using namespace avail;

namespace {

const std::vector<std::string> kReplicas{"x@localhost", "y@localhost", "z@localhost"};

rkvs_options ropts() {
    rkvs_options o;
    o.replicas = kReplicas;
    o.sync_interval = 300ms;
    o.log = [](const log_record&) {};
    return o;
}

struct replica {
    std::unique_ptr<node> n;
    std::unique_ptr<replicated_kvs> kv;
    replica(const std::string& name, const std::filesystem::path& dir, rkvs_options o = ropts())
        : n(std::make_unique<node>(opts(name, dir))), kv(std::make_unique<replicated_kvs>(*n, std::move(o))) {}
    void down() {
        kv.reset();
        n->stop();
    }
};

void mesh(std::vector<replica*> rs) {
    for (std::size_t i = 0; i < rs.size(); ++i)
        for (std::size_t j = i + 1; j < rs.size(); ++j)
            REQUIRE(rs[i]->n->connect(rs[j]->n->endpoint(), rs[j]->n->key(), 5s).ok());
}

result<term> store(node& n, const std::string& at, const std::string& k, term v) {
    return n.call(at, "rkvs", "store", arr(k, std::move(v)), 5s);
}
term lookup(node& n, const std::string& at, const std::string& k) {
    auto r = n.call(at, "rkvs", "lookup", arr(k), 5s);
    INFO((r.ok() ? std::string() : r.err().message()));
    REQUIRE(r.ok());
    return *r;
}

}  // namespace

TEST_CASE("rkvs: store on one replica, lookup on another, and an acknowledged write is on every connected replica",
          "[availability][rkvs]") {
    temp_dir tmp;
    replica x("x@localhost", tmp.path / "x"), y("y@localhost", tmp.path / "y"), z("z@localhost", tmp.path / "z");
    mesh({&x, &y, &z});
    CHECK(x.kv->write_quorum() == 2);
    auto r = store(*x.n, "x@localhost", "answer", 42);
    INFO((r.ok() ? std::string() : r.err().message()));
    REQUIRE(r.ok());
    CHECK(*r == term(true));
    // Acknowledged after every connected replica answered: all three hold it now.
    for (auto* rep : {&x, &y, &z}) {
        auto e = rep->kv->local("answer");
        REQUIRE(e);
        CHECK(e->value == term(42));
        CHECK(e->node == "x@localhost");
    }
    CHECK(lookup(*x.n, "z@localhost", "answer") == arr("ok", 42));
    CHECK(lookup(*y.n, "y@localhost", "nothing") == term("undefined"));
    // A later write through another replica wins (its stamp is larger).
    REQUIRE(store(*x.n, "y@localhost", "answer", 43).ok());
    CHECK(lookup(*x.n, "x@localhost", "answer") == arr("ok", 43));
    auto keys = x.n->call("z@localhost", "rkvs", "keys", arr(), 5s);
    REQUIRE(keys.ok());
    CHECK(*keys == arr("answer"));
    // delete: true if it was there, then a tombstone everywhere.
    auto d = x.n->call("z@localhost", "rkvs", "delete", arr("answer"), 5s);
    REQUIRE(d.ok());
    CHECK(*d == term(true));
    CHECK(*x.n->call("z@localhost", "rkvs", "delete", arr("answer"), 5s) == term(false));
    CHECK(lookup(*x.n, "x@localhost", "answer") == term("undefined"));
    auto tomb = y.kv->local("answer");
    REQUIRE(tomb);
    CHECK(!tomb->value);
    CHECK(*x.n->call("x@localhost", "rkvs", "keys", arr(), 5s) == term(term_array{}));
    CHECK(x.kv->digest() == y.kv->digest());
    CHECK(y.kv->digest() == z.kv->digest());
}

TEST_CASE("rkvs: a replica without a majority refuses writes and stores nothing, and still answers lookups",
          "[availability][rkvs]") {
    temp_dir tmp;
    replica x("x@localhost", tmp.path / "x"), y("y@localhost", tmp.path / "y"), z("z@localhost", tmp.path / "z");
    mesh({&x, &y, &z});
    REQUIRE(store(*x.n, "x@localhost", "k", "v1").ok());
    y.down();
    z.down();
    REQUIRE(eventually([&] { return x.n->nodes().empty(); }));
    auto r = x.n->call("x@localhost", "rkvs", "store", arr("k", "v2"), 5s);
    CHECK(r.code() == errc::nodedown);
    CHECK(r.err().detail.find("reaches 1 of its 3 replicas and needs 2") != std::string::npos);
    CHECK(x.kv->local("k")->value == term("v1"));  // nothing stored
    CHECK(x.n->call("x@localhost", "rkvs", "delete", arr("k"), 5s).code() == errc::nodedown);
    CHECK(lookup(*x.n, "x@localhost", "k") == arr("ok", "v1"));
}

TEST_CASE("rkvs: a replica that returns empty gets the whole map, and concurrent writes converge",
          "[availability][rkvs]") {
    temp_dir tmp;
    replica x("x@localhost", tmp.path / "x"), y("y@localhost", tmp.path / "y");
    auto z = std::make_unique<replica>("z@localhost", tmp.path / "z");
    mesh({&x, &y, z.get()});
    z->down();
    REQUIRE(eventually([&] { return x.n->nodes().size() == 1 && y.n->nodes().size() == 1; }));
    // Two replicas are a majority of three: writes go on. Big enough for
    // several anti-entropy chunks (256 KiB each).
    std::string big(30000, 'b');
    for (int i = 0; i < 40; ++i) {
        auto r = store(*x.n, i % 2 ? "x@localhost" : "y@localhost", "k" + std::to_string(i), big + std::to_string(i));
        INFO((r.ok() ? std::string() : r.err().message()));
        REQUIRE(r.ok());
    }
    REQUIRE(x.n->call("y@localhost", "rkvs", "delete", arr("k0"), 5s).ok());
    // z comes back with nothing: it catches up on nodeup.
    z = std::make_unique<replica>("z@localhost", tmp.path / "z");
    auto t0 = clock_type::now();
    mesh({&x, &y, z.get()});
    bool converged = eventually([&] { return z->kv->digest() == x.kv->digest() && z->kv->size() == 40; }, 10000ms);
    CHECK(converged);
    std::printf("rkvs: an empty replica held all 40 entries (1.2 MB) %.0f ms after it connected\n",
                std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    CHECK(!z->kv->local("k0")->value);
    CHECK(z->kv->local("k39")->value == term(big + "39"));

    // Concurrent writes of one key through all three: one winner everywhere.
    std::vector<std::thread> ws;
    for (auto* at : {"x@localhost", "y@localhost", "z@localhost"})
        ws.emplace_back([&, at] { (void)store(*x.n, at, "race", std::string(at)); });
    for (auto& t : ws) t.join();
    CHECK(eventually([&] {
        auto a = x.kv->local("race"), b = y.kv->local("race"), c = z->kv->local("race");
        return a && b && c && a->stamp == b->stamp && b->stamp == c->stamp && a->node == c->node;
    }));
    CHECK(lookup(*x.n, "y@localhost", "race") == arr("ok", x.kv->local("race")->node));
}

TEST_CASE("rkvs: oversize keys and values, and a full table, are refused naming the limit, and bad options throw",
          "[availability][rkvs]") {
    temp_dir tmp;
    auto o = ropts();
    o.replicas = {"x@localhost"};  // a list of one is its own majority
    o.max_keys = 3;
    o.max_value_bytes = 100;
    replica x("x@localhost", tmp.path / "x", o);
    auto r = store(*x.n, "x@localhost", std::string(256, 'k'), 1);
    CHECK(r.code() == errc::badarg);
    CHECK(r.err().detail.find("max_key_bytes") != std::string::npos);
    CHECK(store(*x.n, "x@localhost", "", 1).code() == errc::badarg);
    r = store(*x.n, "x@localhost", "k", std::string(200, 'v'));
    CHECK(r.code() == errc::badarg);
    CHECK(r.err().detail.find("max_value_bytes") != std::string::npos);
    for (int i = 0; i < 3; ++i) REQUIRE(store(*x.n, "x@localhost", "k" + std::to_string(i), i).ok());
    r = store(*x.n, "x@localhost", "k3", 3);
    CHECK(r.code() == errc::overloaded);
    CHECK(r.err().detail.find("max_keys") != std::string::npos);
    CHECK(store(*x.n, "x@localhost", "k2", 22).ok());  // replacing is fine
    REQUIRE(x.n->call("x@localhost", "rkvs", "delete", arr("k2"), 5s).ok());
    CHECK(store(*x.n, "x@localhost", "k3", 3).code() == errc::overloaded);  // tombstones count
    CHECK(x.n->call("x@localhost", "rkvs", "store", arr("k"), 5s).code() == errc::bad_args);
    CHECK(x.kv->size() == 3);

    node n(opts("w@localhost", tmp.path / "w"));
    auto bad = ropts();
    CHECK_THROWS_AS(replicated_kvs(n, bad), setup_error);  // w is not listed
    bad.replicas = {"w@localhost", "w@localhost"};
    CHECK_THROWS_AS(replicated_kvs(n, bad), setup_error);
    bad.replicas = {"w@localhost"};
    bad.write_quorum = 2;
    CHECK_THROWS_AS(replicated_kvs(n, bad), setup_error);
    bad.write_quorum = 0;
    bad.service = "no spaces";
    CHECK_THROWS_AS(replicated_kvs(n, bad), setup_error);
}

TEST_CASE("rkvs: a grantee uses only what its grant names, and never the replica functions",
          "[availability][rkvs][security]") {
    temp_dir tmp;
    auto o = ropts();
    o.replicas = {"x@localhost"};
    replica x("x@localhost", tmp.path / "x", o);
    node bob(opts("bob@localhost", tmp.path / "bob", "bobs-own-cookie"));
    node eve(opts("eve@localhost", tmp.path / "eve", "eves-own-cookie"));
    grant_spec gb;
    gb.label = "bob";
    gb.allow = grant_scope{{"rkvs", {}}};  // the whole service
    auto fb = x.n->grant(gb);
    REQUIRE(fb.ok());
    grant_spec ge;
    ge.label = "eve";
    ge.allow = grant_scope{{"rkvs", {"lookup"}}};
    auto fe = x.n->grant(ge);
    REQUIRE(fe.ok());
    REQUIRE(bob.connect(*fb, 5s).ok());
    REQUIRE(eve.connect(*fe, 5s).ok());

    REQUIRE(store(bob, "x@localhost", "k", "from bob").ok());
    CHECK(lookup(eve, "x@localhost", "k") == arr("ok", "from bob"));
    CHECK(store(eve, "x@localhost", "k", "from eve").code() == errc::unauthorized);
    // The replica functions: forged entries with a huge stamp, reads, digests.
    auto forged = arr(arr(arr("k", "forged", std::int64_t{1} << 62, "x@localhost", false)));
    auto r = bob.call("x@localhost", "rkvs", "kith.merge", forged, 5s);
    CHECK(r.code() == errc::unauthorized);
    CHECK(r.err().detail.find("grant bob") != std::string::npos);
    CHECK(bob.call("x@localhost", "rkvs", "kith.read", arr("k"), 5s).code() == errc::unauthorized);
    CHECK(bob.call("x@localhost", "rkvs", "kith.digest", arr(0), 5s).code() == errc::unauthorized);
    CHECK(eve.call("x@localhost", "rkvs", "kith.merge", forged, 5s).code() == errc::unauthorized);
    CHECK(lookup(bob, "x@localhost", "k") == arr("ok", "from bob"));
}

TEST_CASE("rkvs: a member not on the replica list cannot call the replica functions, and malformed entries are refused",
          "[availability][rkvs][security]") {
    temp_dir tmp;
    replica x("x@localhost", tmp.path / "x"), y("y@localhost", tmp.path / "y");
    node m(opts("m@localhost", tmp.path / "m"));
    mesh({&x, &y});
    REQUIRE(m.connect(x.n->endpoint(), x.n->key(), 5s).ok());
    // A member may use the kvs functions (two of three replicas: a majority).
    REQUIRE(store(m, "x@localhost", "k", 1).ok());
    auto r = m.call("x@localhost", "rkvs", "kith.merge", arr(arr(arr("k", 2, 1 << 30, "m@localhost", false))), 5s);
    CHECK(r.code() == errc::unauthorized);
    CHECK(r.err().detail.find("member m@localhost") != std::string::npos);
    // A listed replica sending garbage: refused and counted, nothing stored.
    r = y.n->call("x@localhost", "rkvs", "kith.merge", arr(arr(arr("k"), "junk", arr(std::string(300, 'k'), 1, 5, "y", false))), 5s);
    CHECK(r.code() == errc::overloaded);
    CHECK(r.err().detail.find("refused 3 entries") != std::string::npos);
    CHECK(x.kv->local("k")->value == term(1));
}

TEST_CASE("rkvs: a replica that missed a write gets it from the digest round, and tombstones expire everywhere",
          "[availability][rkvs]") {
    temp_dir tmp;
    auto o = ropts();
    o.tombstone_ttl = 1000ms;
    replica x("x@localhost", tmp.path / "x", o), y("y@localhost", tmp.path / "y", o),
        z("z@localhost", tmp.path / "z", o);
    // x-y and y-z, not x-z: a write through x reaches y only; z has already
    // had y's nodeup push, so only the digest comparison brings it over.
    REQUIRE(x.n->connect(y.n->endpoint(), y.n->key(), 5s).ok());
    REQUIRE(y.n->connect(z.n->endpoint(), z.n->key(), 5s).ok());
    REQUIRE(store(*x.n, "x@localhost", "k", "v").ok());
    CHECK(eventually([&] { return z.kv->local("k") && z.kv->local("k")->value == term("v"); }));
    // A delete is a tombstone on all three, then gone from all three after
    // its lifetime (purged at the next sync tick), and never brought back.
    REQUIRE(x.n->call("x@localhost", "rkvs", "delete", arr("k"), 5s).ok());
    CHECK(eventually([&] { return z.kv->local("k") && !z.kv->local("k")->value; }));
    CHECK(eventually([&] { return x.kv->size() == 0 && y.kv->size() == 0 && z.kv->size() == 0; }));
    CHECK(!eventually([&] { return x.kv->size() + y.kv->size() + z.kv->size() > 0; }, 700ms));  // > 2 sync ticks
    CHECK(lookup(*x.n, "y@localhost", "k") == term("undefined"));
}
