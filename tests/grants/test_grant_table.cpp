// The grant table without the network: its file (round trip, damage, two
// writers of one file, each grant's own limits), token buckets and
// capability sets, and ZAP's answer to a revoked grant's key. The grant file
// format is test_grant_files.cpp.
#include <sys/stat.h>

#include <fstream>

#include "../transport/tmpdir.hpp"
#include "grant_test_util.hpp"
#include "grants/grants_io.hpp"
#include "grants/grants_table.hpp"
#include "transport/zap.hpp"
#include "kith/grants.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace kith::grant_tests;
using namespace std::chrono_literals;

namespace {

// One table file written by two tables, as by a node and the owner's
// command line; `s` a kvs grant spec labelled bob.
struct two_writers {
    temp_dir tmp;
    std::filesystem::path file = tmp.path / "grants";
    detail::grant_table node_side{file}, cli_side{file};
    grant_spec s = kvs_spec("bob");

    static grant_spec kvs_spec(std::string label) {
        grant_spec g;
        g.label = std::move(label);
        g.allow = {{"kvs", {}}};
        return g;
    }
};

}  // namespace

TEST_CASE("grants: the grant table file round-trips and detects damage", "[grants]") {
    temp_dir tmp;
    auto file = tmp.path / "grants";
    {
        detail::grant_table t(file);
        CHECK(t.list().empty());
        grant_spec s;
        s.label = "bob";
        s.allow = {{"kvs", {}}};
        s.rate = {10, 20};
        REQUIRE(t.create(s, keypair::generate().pub).ok());
        s.label = "carol";
        s.allow = {{"echo", {"echo"}}};
        s.expires = std::chrono::sys_days{std::chrono::year{2031} / 5 / 6};
        REQUIRE(t.create(s, keypair::generate().pub).ok());
        CHECK(t.create(s, keypair::generate().pub).code() == errc::badarg);  // duplicate label
        s.label = "bad label";
        CHECK(t.create(s, keypair::generate().pub).code() == errc::badarg);
        s.label = "empty";
        s.allow = {};
        CHECK(t.create(s, keypair::generate().pub).code() == errc::badarg);
        REQUIRE(t.revoke("carol").ok());
        CHECK(t.revoke("nobody").code() == errc::badarg);
        CHECK(contains(t.revoke("nobody").err().detail, "no grant labelled \"nobody\" on this node"));
        REQUIRE(t.set_rate("bob", {5, 7}).ok());
        grant_spec dup;
        dup.label = "bob";
        dup.allow = {{"kvs", {}}};
        auto again = t.create(dup, keypair::generate().pub);
        CHECK(contains(again.err().detail, "a grant labelled \"bob\" exists"));
        // A revoked grant's rate no longer changes: said, not silently taken.
        auto revoked = t.set_rate("carol", {5, 7});
        CHECK(revoked.code() == errc::badarg);
        CHECK(contains(revoked.err().detail, "the grant \"carol\" is revoked"));
    }
    struct stat st{};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    detail::grant_table t(file);
    auto rows = t.list();
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].label == "bob");
    CHECK(rows[0].rate == rate_limit{5, 7});
    CHECK_FALSE(rows[0].revoked);
    CHECK(rows[1].label == "carol");
    CHECK(rows[1].revoked);
    CHECK(rows[1].expires.has_value());
    CHECK(rows[1].to_term().lookup(term("revoked"))->get_if<bool>() != nullptr);

    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(contains(text, "kith-grants 1\n"));
    CHECK(detail::grant_table::parse(text).ok());
    CHECK_FALSE(detail::grant_table::parse(text.substr(0, text.size() / 2)).ok());
    auto tampered = detail::grant_table::parse(replace(text, "allow=kvs", "allow=kvs,echo"));
    REQUIRE_FALSE(tampered.ok());
    CHECK(contains(tampered.err().detail, "checksum mismatch"));
    // A damaged table stops the node from starting, with the file's name.
    {
        std::ofstream o(file, std::ios::trunc);
        o << text.substr(0, text.size() - 20);
    }
    std::string what;
    try {
        detail::grant_table damaged(file);
    } catch (const setup_error& e) {
        what = e.what();
    }
    CHECK(contains(what, file.string()));
    CHECK(contains(what, "damaged"));
}

TEST_CASE("grants: token bucket and capability set", "[grants]") {
    detail::token_bucket b(rate_limit{10, 20});
    auto t0 = detail::token_bucket::clock::now();
    int taken = 0;
    for (int i = 0; i < 100; ++i) taken += b.take(t0);
    CHECK(taken == 20);  // the burst
    CHECK(b.take(t0 + 100ms));   // one token per 100 ms at 10/s
    CHECK_FALSE(b.take(t0 + 150ms));
    taken = 0;
    for (int i = 0; i < 100; ++i) taken += b.take(t0 + 10s);
    CHECK(taken == 20);  // never more than the burst
    detail::token_bucket unlimited(rate_limit{0, 0});
    for (int i = 0; i < 1000; ++i) REQUIRE(unlimited.take(t0));

    detail::capability_set caps(3);
    caps.add(1);
    caps.add(2);
    caps.add(2);
    caps.add(3);
    CHECK(caps.contains(1));
    caps.add(4);  // full: the oldest goes
    CHECK_FALSE(caps.contains(1));
    CHECK(caps.contains(4));
    CHECK(caps.size() == 3);
    CHECK(caps.evicted() == 1);
}

TEST_CASE("grants: capability sets that share a pool (strangers' keys) hold at most the pool together", "[grants]") {
    auto pool = std::make_shared<detail::capability_pool>(4);
    auto a = std::make_unique<detail::capability_set>(3, pool);
    detail::capability_set b(3, pool);
    a->add(1);
    a->add(2);
    a->add(3);
    a->add(4);  // its own cap: its oldest goes, the pool is unchanged
    CHECK(a->size() == 3);
    CHECK(pool->used == 3);
    b.add(10);  // the pool's last slot
    CHECK(pool->used == 4);
    b.add(11);  // the pool is full: b forgets its own oldest, never a's
    CHECK(b.contains(11));
    CHECK_FALSE(b.contains(10));
    CHECK(a->contains(2));
    CHECK(pool->used == 4);
    detail::capability_set c(3, pool);
    c.add(20);  // full and none of its own: not kept, counted
    CHECK_FALSE(c.contains(20));
    CHECK(c.evicted() == 1);
    a.reset();  // a key's sets go: their slots are free again
    CHECK(pool->used == 1);
    c.add(20);
    CHECK(c.contains(20));
}

TEST_CASE("grants: two writers of one table file (a node and a CLI) merge, and revocations cross over",
          "[grants]") {
    two_writers w;
    auto& [tmp, file, node_side, cli_side, s] = w;
    auto bob = node_side.create(s, keypair::generate().pub);
    REQUIRE(bob.ok());
    s.label = "carol";
    REQUIRE(cli_side.create(s, keypair::generate().pub).ok());  // merges bob first
    REQUIRE(cli_side.find("bob"));
    REQUIRE(cli_side.revoke("bob").ok());
    CHECK_FALSE((*bob)->revoked.load());
    node_side.refresh(true);  // the node re-reads the changed file
    CHECK((*bob)->revoked.load());
    REQUIRE(node_side.find("carol"));
    s.label = "dave";
    REQUIRE(node_side.create(s, keypair::generate().pub).ok());
    detail::grant_table fresh(file);
    auto rows = fresh.list();
    REQUIRE(rows.size() == 3);
    CHECK(rows[0].label == "bob");
    CHECK(rows[0].revoked);
    CHECK(rows[1].label == "carol");
    CHECK(rows[2].label == "dave");
}

TEST_CASE("grants: ZAP admits a revoked grant's key only to tell it 'revoked' at its handshake", "[grants]") {
    keypair bob = keypair::generate();
    detail::zap_request req;
    req.version = "1.0";
    req.request_id = "1";
    req.domain = std::string(detail::zap_domain);
    req.address = "127.0.0.1";
    req.mechanism = "CURVE";
    req.credentials.emplace_back(reinterpret_cast<const char*>(bob.pub.bytes.data()), 32);
    const public_key cluster = keypair::generate().pub;
    auto revoked = detail::zap_decide(req, cluster, [](const public_key&, std::string_view) {
        return detail::authz_decision::revoked("bob", "grant \"bob\" is revoked");
    });
    CHECK(revoked.accepted);
    CHECK(revoked.revoked);
    CHECK(revoked.user_id == "grant:bob");
    auto live = detail::zap_decide(req, cluster, [](const public_key&, std::string_view) {
        return detail::authz_decision::grant("bob");
    });
    CHECK(live.accepted);
    CHECK_FALSE(live.revoked);
    auto unknown = detail::zap_decide(req, cluster, [](const public_key&, std::string_view) {
        return detail::authz_decision::refuse("unknown key");
    });
    CHECK_FALSE(unknown.accepted);
}

TEST_CASE("grants: a grant's own limits are kept in the table, a table without them still loads", "[grants]") {
    temp_dir tmp;
    auto file = tmp.path / "grants";
    std::string old_line;
    {
        detail::grant_table t(file);
        grant_spec s;
        s.label = "bob";
        s.allow = {{"kvs", {}}};
        REQUIRE(t.create(s, keypair::generate().pub).ok());
        s.label = "carol";
        s.limits = *grant_limits::parse("pending=8,queued=65536");
        REQUIRE(t.create(s, keypair::generate().pub).ok());
        s.label = "dave";
        s.limits = grant_limits{.pending = 5000};  // over 16x the default: refused
        auto r = t.create(s, keypair::generate().pub);
        CHECK(r.code() == errc::badarg);
        CHECK(contains(r.err().detail, "pending must be 1..1024"));
    }
    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Only the grant with limits of its own writes the field (so a table of
    // default grants is byte for byte what an older kith wrote and reads).
    CHECK(contains(text, " revoked=no limits=pending=8,queued=65536\n"));
    CHECK(text.find("limits=") == text.rfind("limits="));
    detail::grant_table t(file);
    auto rows = t.list();
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].limits.is_default());
    CHECK(rows[1].limits == grant_limits{.pending = 8, .queued_bytes = 65536});
    CHECK(*rows[1].to_term().lookup(term("limits")) == term("pending=8,queued=65536"));
    // A table written before limits existed (version 1, no field) loads with the defaults.
    auto old = detail::grant_table::parse(
        "kith-grants 1\ngrant bob key=" + std::string(64, 'a') +
        " allow=kvs rate=10/s,burst=20 expires=never created=2026-11-21T03:50:00Z revoked=no\n");
    CHECK_FALSE(old.ok());  // (no end line: the checksum is computed below)
    std::string body = "kith-grants 1\ngrant bob key=" + std::string(64, 'a') +
                       " allow=kvs rate=10/s,burst=20 expires=never created=2026-11-21T03:50:00Z revoked=no\n";
    auto entries = detail::grant_table::parse(body + "end 1 " + detail::checksum_hex(body) + "\n");
    REQUIRE(entries.ok());
    CHECK((*entries)[0]->limits().is_default());
    // A bad limits field is damage, named.
    std::string worse = body.substr(0, body.size() - 1) + " limits=pending=0\n";
    auto damaged = detail::grant_table::parse(worse + "end 1 " + detail::checksum_hex(worse) + "\n");
    REQUIRE_FALSE(damaged.ok());
    CHECK(contains(damaged.err().detail, "grant bob: bad limits"));
}

TEST_CASE("grants: a grant's limits change after it was made, on disk and in every table of the file", "[grants]") {
    two_writers w;
    auto& [tmp, file, node_side, cli_side, s] = w;
    s.limits = *grant_limits::parse("pending=8");
    auto bob = node_side.create(s, keypair::generate().pub);
    REQUIRE(bob.ok());
    // The owner's command line (another process with the same key directory)
    // replaces them all: the live entry of the node follows at its refresh.
    REQUIRE(cli_side.set_limits("bob", grant_limits{.spawned = 3}).ok());
    CHECK((*bob)->limits() == grant_limits{.pending = 8});
    node_side.refresh(true);
    CHECK((*bob)->limits() == grant_limits{.spawned = 3});
    CHECK((*bob)->limits().max_pending() == grant_limits::default_pending);
    // On the node itself: at once, and saved.
    REQUIRE(node_side.set_limits("bob", grant_limits{.relations = 10}).ok());
    CHECK((*bob)->limits() == grant_limits{.relations = 10});
    CHECK(detail::grant_table(file).find("bob")->limits() == grant_limits{.relations = 10});
    REQUIRE(node_side.set_limits("bob", grant_limits{}).ok());
    CHECK(detail::grant_table(file).find("bob")->limits().is_default());
    // Refused: out of bounds (named), unknown, revoked; nothing changes.
    auto big = node_side.set_limits("bob", grant_limits{.pending = 1025});
    CHECK(big.code() == errc::badarg);
    CHECK(contains(big.err().detail, "pending must be 1..1024"));
    CHECK(node_side.set_limits("nobody", grant_limits{.pending = 1}).code() == errc::badarg);
    REQUIRE(node_side.revoke("bob").ok());
    auto dead = node_side.set_limits("bob", grant_limits{.pending = 1});
    CHECK(dead.code() == errc::badarg);
    CHECK(contains(dead.err().detail, "is revoked"));
    CHECK((*bob)->limits().is_default());
}
