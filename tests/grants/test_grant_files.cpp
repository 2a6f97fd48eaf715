// Grants without the network: rate and scope parsing, the grant file format
// (and its rejection of malformed, truncated, wrong-version, bad-key and
// tampered files, each with a specific message), the grant table's file,
// token buckets and capability sets.
#include <sys/stat.h>

#include <fstream>
#include <thread>

#include "../transport/tmpdir.hpp"
#include "grants/grants_io.hpp"
#include "grants/grants_table.hpp"
#include "transport/zap.hpp"
#include "kith/grants.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

grant_file sample() {
    grant_file g;
    g.node = "alice@pi1";
    g.endpoints = {"tcp://192.0.2.7:4370", "tcp://127.0.0.1:4370"};
    g.server_key = keypair::generate().pub;
    g.client = keypair::generate();
    g.label = "bob";
    g.allow = {{"kvs", {}}, {"echo", {"echo"}}};
    g.rate = {10, 20};
    g.expires = std::chrono::sys_days{std::chrono::year{2030} / 1 / 2} + 3h;
    return g;
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
    auto p = s.find(from);
    REQUIRE(p != std::string::npos);
    return s.replace(p, from.size(), to);
}

std::string parse_error(const std::string& text) {
    auto r = grant_file::parse(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == errc::decode);
    return r.err().detail;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

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

TEST_CASE("grants: rate_limit parse and print", "[grants]") {
    auto r = rate_limit::parse("10/s");
    REQUIRE(r.ok());
    CHECK(r->per_second == 10);
    CHECK(r->burst == 20);  // twice the rate by default
    r = rate_limit::parse("10/s,burst=5");
    REQUIRE(r.ok());
    CHECK(*r == rate_limit{10, 5});
    CHECK(r->to_string() == "10/s,burst=5");
    CHECK(rate_limit::parse(r->to_string()).value() == *r);
    CHECK(rate_limit::parse("0.5/s").value() == rate_limit{0.5, 1});
    CHECK(rate_limit::parse("unlimited").value().per_second == 0);
    CHECK(rate_limit{0, 0}.to_string() == "unlimited");
    for (const char* bad : {"", "10", "10/m", "-1/s", "0/s", "x/s", "10/s,burst=0", "10/s,bust=3", "10/s,burst=",
                            "1e99/s"}) {
        auto b = rate_limit::parse(bad);
        INFO(bad);
        CHECK(b.code() == errc::badarg);
        CHECK(contains(b.err().detail, "bad rate"));
    }
}

TEST_CASE("grants: scope parse and print", "[grants]") {
    auto s = parse_grant_scope("kvs,echo:echo,demo:rpc_server");
    REQUIRE(s.ok());
    CHECK(*s == grant_scope{{"kvs", {}}, {"echo", {"echo"}}, {"demo", {"rpc_server"}}});
    CHECK(format_grant_scope(*s) == "demo:rpc_server,echo:echo,kvs");
    CHECK(parse_grant_scope(format_grant_scope(*s)).value() == *s);
    // Several names of one service; the whole service wins over names.
    CHECK(parse_grant_scope("kvs:store, kvs:lookup").value() == grant_scope{{"kvs", {"store", "lookup"}}});
    CHECK(parse_grant_scope("kvs:store,kvs").value() == grant_scope{{"kvs", {}}});
    for (const char* bad : {"", ",", "kvs,", "kvs:", ":store", "k v", "kvs:a:b", "kvs;rm -rf"}) {
        auto b = parse_grant_scope(bad);
        INFO(bad);
        CHECK(b.code() == errc::badarg);
    }
}

TEST_CASE("grants: a grant file round-trips and is readable", "[grants]") {
    grant_file g = sample();
    std::string text = g.to_text();
    CHECK(contains(text, "kith-grant 1\n"));
    CHECK(contains(text, "node: alice@pi1\n"));
    CHECK(contains(text, "allow: echo:echo,kvs\n"));
    CHECK(contains(text, "rate: 10/s,burst=20\n"));
    CHECK(contains(text, "expires: 2030-01-02T03:00:00Z\n"));
    auto r = grant_file::parse(text);
    REQUIRE(r.ok());
    CHECK(r->node == g.node);
    CHECK(r->endpoints == g.endpoints);
    CHECK(r->server_key == g.server_key);
    CHECK(r->client.pub == g.client.pub);
    CHECK(r->client.sec.bytes() == g.client.sec.bytes());
    CHECK(r->label == "bob");
    CHECK(r->allow == g.allow);
    CHECK(r->rate == g.rate);
    CHECK(r->expires == g.expires);
    g.expires.reset();
    CHECK(grant_file::parse(g.to_text()).value().expires == std::nullopt);

    temp_dir tmp;
    auto file = tmp.path / "bob.grant";
    REQUIRE(g.save(file).ok());
    struct stat st{};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    auto loaded = grant_file::load(file);
    REQUIRE(loaded.ok());
    CHECK(loaded->client.pub == g.client.pub);
    auto missing = grant_file::load(tmp.path / "nope.grant");
    CHECK(missing.code() == errc::decode);
    CHECK(contains(missing.err().detail, "cannot read"));
}

TEST_CASE("grants: malformed grant files are rejected with a specific message", "[grants]") {
    const std::string text = sample().to_text();
    // truncated, anywhere
    for (std::size_t cut : {text.size() / 3, text.size() / 2, text.size() - 10, text.size() - 1}) {
        INFO("cut at " << cut);
        CHECK(contains(parse_error(text.substr(0, cut)), "truncated"));
    }
    CHECK(contains(parse_error(""), "empty"));
    CHECK(contains(parse_error("hello\nworld\n"), "not a kith grant file"));
    // wrong version
    CHECK(contains(parse_error(replace(text, "kith-grant 1", "kith-grant 4")), "version 4 is not supported"));
    // bad keys
    auto e = parse_error(replace(text, "server-key: ", "server-key: abc"));
    CHECK(contains(e, "bad key"));
    CHECK(contains(e, "server-key"));
    grant_file other = sample();
    std::string sec_line = "client-secret-key: " + other.client.sec.z85_secret();
    auto p = text.find("client-secret-key: ");
    std::string swapped = text.substr(0, p) + sec_line + text.substr(text.find('\n', p));
    CHECK(contains(parse_error(swapped), "client-public-key does not belong to client-secret-key"));
    // tampered: a valid edit that widens the scope
    e = parse_error(replace(text, "allow: echo:echo,kvs", "allow: echo,kvs"));
    CHECK(contains(e, "checksum mismatch"));
    // other damage
    CHECK(contains(parse_error(replace(text, "rate: 10/s", "rate: fast")), "rate"));
    CHECK(contains(parse_error(replace(text, "label: bob", "label: b o b")), "label"));
    CHECK(contains(parse_error(replace(text, "node: alice@pi1\n", "")), "\"node\" is missing"));
    CHECK(contains(parse_error(replace(text, "label: bob\n", "label: bob\ncolour: blue\n")), "unknown field"));
    CHECK(contains(parse_error(replace(text, "label: bob\n", "label: bob\nlabel: eve\n")), "twice"));
    CHECK(contains(parse_error(std::string(70000, 'x')), "64 KiB"));
}

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

TEST_CASE("grants: a grant file with relay routes is version 2, one without stays version 1", "[grants]") {
    grant_file g = sample();
    const auto relay_key = keypair::generate().pub;
    g.relays = {{"relay@vps", "tcp://203.0.113.5:4370", relay_key}};
    std::string text = g.to_text();
    CHECK(contains(text, "kith-grant 2\n"));
    CHECK(contains(text, "relay: relay@vps tcp://203.0.113.5:4370 " + relay_key.z85() + "\n"));
    auto r = grant_file::parse(text);
    REQUIRE(r.ok());
    CHECK(r->version == 2);
    CHECK(r->relays == g.relays);
    CHECK(r->endpoints == g.endpoints);
    // Only a relay route, no direct endpoint (a node with no reachable address).
    g.endpoints.clear();
    auto only = grant_file::parse(g.to_text());
    REQUIRE(only.ok());
    CHECK(only->endpoints.empty());
    CHECK(only->relays.size() == 1);
    // Neither: refused, saying what is missing.
    g.relays.clear();
    CHECK(contains(parse_error(g.to_text()), "no \"endpoint:\" or \"relay:\" line"));
    // Without routes the file is version 1, as older kith wrote (and read) it.
    grant_file v1 = sample();
    CHECK(contains(v1.to_text(), "kith-grant 1\n"));
    CHECK(grant_file::parse(v1.to_text()).value().version == 1);
    // A relay line in a version-1 file is unknown there; bad relay lines are named.
    CHECK(contains(parse_error(replace(v1.to_text(), "label: bob\n", "label: bob\nrelay: r@v tcp://h:1 k\n")),
                   "unknown field \"relay\""));
    std::string v2 = sample().to_text();
    v2 = replace(v2, "kith-grant 1", "kith-grant 2");
    CHECK(contains(parse_error(replace(v2, "label: bob\n", "label: bob\nrelay: relay@vps\n")),
                   "is not \"NODE tcp://HOST:PORT KEY\""));
    CHECK(contains(parse_error(replace(v2, "label: bob\n", "label: bob\nrelay: vps tcp://h:1 " + relay_key.z85() + "\n")),
                   "relay node \"vps\" is not a node name"));
    CHECK(contains(parse_error(replace(v2, "label: bob\n", "label: bob\nrelay: r@vps udp://h:1 " + relay_key.z85() + "\n")),
                   "not a tcp:// endpoint"));
    CHECK(contains(parse_error(replace(v2, "label: bob\n", "label: bob\nrelay: r@vps tcp://h:1 nokey\n")), "bad key"));
    std::string many;
    for (int i = 0; i < 9; ++i) many += "relay: r@vps tcp://h:1 " + relay_key.z85() + "\n";
    CHECK(contains(parse_error(replace(v2, "label: bob\n", "label: bob\n" + many)), "more than 8 relay routes"));
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

TEST_CASE("grants: a bad limit is named with its own bounds - each limit at 0 and above its maximum", "[grants]") {
    struct one {
        const char* name;
        std::uint64_t def;
        std::uint64_t grant_limits::*field;
    };
    const one all[] = {{"pending", 64, &grant_limits::pending},
                       {"spawned", 256, &grant_limits::spawned},
                       {"queued", 4u << 20, &grant_limits::queued_bytes},
                       {"relations", 4096, &grant_limits::relations}};
    for (auto& l : all) {
        const std::string name = l.name, max = std::to_string(16 * l.def), def = std::to_string(l.def);
        const std::string bounds = name + " must be 1.." + max + " (16x the default " + def;
        // Alone, and after or before another (valid) limit: the message names this one.
        for (const std::string& other : {std::string(), std::string("relations=100,"), std::string("pending=8,")}) {
            if (other.starts_with(name)) continue;
            for (const std::string& v : {std::string("0"), std::to_string(16 * l.def + 1), std::string("99999999999999999999")}) {
                const std::string text = other + name + "=" + v;
                auto r = grant_limits::parse(text);
                INFO(text);
                REQUIRE_FALSE(r.ok());
                CHECK(r.code() == errc::badarg);
                CHECK(contains(r.err().detail, bounds));
                CHECK(contains(r.err().detail, "got " + v + ")"));
                for (auto& o : all)  // no other limit's bounds
                    if (std::string(o.name) != name) CHECK_FALSE(contains(r.err().detail, "the default " + std::to_string(o.def) + ";"));
            }
        }
        // The bounds themselves are accepted.
        auto lo = grant_limits::parse(name + "=1");
        REQUIRE(lo.ok());
        CHECK((*lo).*(l.field) == 1);
        auto hi = grant_limits::parse(name + "=" + max);
        REQUIRE(hi.ok());
        CHECK((*hi).*(l.field) == 16 * l.def);
        // A limit set field by field: check() names it the same way.
        grant_limits g;
        g.*(l.field) = 16 * l.def + 1;
        auto c = g.check();
        REQUIRE_FALSE(c.ok());
        CHECK(c.code() == errc::badarg);
        CHECK(contains(c.err().detail, bounds));
    }
    CHECK(grant_limits{}.check().ok());
    CHECK(contains(grant_limits::parse("pending=8,pending=9").err().detail, "pending appears twice"));
    CHECK(contains(grant_limits::parse("pending=-1").err().detail, "pending=-1 is not a whole number"));
    CHECK(contains(grant_limits::parse("calls=3").err().detail, "unknown limit \"calls\""));
    CHECK(contains(grant_limits::parse("pending").err().detail, "\"pending\" is not NAME=N"));
    CHECK(grant_limits::parse(" pending = 8 , queued=65536 ")->to_string() == "pending=8,queued=65536");
    CHECK(grant_limits::parse("default")->is_default());
}

TEST_CASE("grants: a grant file carries its limits (version 3), files without them still load", "[grants]") {
    grant_file g = sample();
    g.limits = *grant_limits::parse("pending=8,relations=100");
    const std::string text = g.to_text();
    CHECK(contains(text, "kith-grant 3\n"));
    CHECK(contains(text, "expires: 2030-01-02T03:00:00Z\nlimits: pending=8,relations=100\nchecksum: "));
    auto r = grant_file::parse(text);
    REQUIRE(r.ok());
    CHECK(r->version == 3);
    CHECK(r->limits == grant_limits{.pending = 8, .relations = 100});
    CHECK(r->to_text() == text);
    // With relay routes too: still version 3, both read back.
    g.relays = {{"relay@vps", "tcp://203.0.113.5:4370", keypair::generate().pub}};
    auto both = grant_file::parse(g.to_text());
    REQUIRE(both.ok());
    CHECK(both->version == 3);
    CHECK(both->relays == g.relays);
    CHECK(both->limits == g.limits);
    // Default limits write no line, and the version an older kith reads.
    grant_file plain = sample();
    CHECK_FALSE(contains(plain.to_text(), "limits:"));
    auto v1 = grant_file::parse(plain.to_text());
    REQUIRE(v1.ok());
    CHECK(v1->version == 1);
    CHECK(v1->limits.is_default());
    // "limits: default" in a version-3 file is the defaults.
    std::string v3 = replace(plain.to_text(), "kith-grant 1", "kith-grant 3");
    std::string body = replace(v3, "expires: ", "limits: default\nexpires: ");
    body = body.substr(0, body.find("checksum: "));
    auto dflt = grant_file::parse(body + "checksum: " + detail::checksum_hex(body) + "\n");
    REQUIRE(dflt.ok());
    CHECK(dflt->version == 3);
    CHECK(dflt->limits.is_default());
    // A limits line in a version-1 or 2 file is unknown there (as an older
    // kith would say), bad or repeated limits are named, with their bounds.
    CHECK(contains(parse_error(replace(plain.to_text(), "label: bob\n", "label: bob\nlimits: pending=8\n")),
                   "unknown field \"limits\""));
    CHECK(contains(parse_error(replace(replace(plain.to_text(), "kith-grant 1", "kith-grant 2"), "label: bob\n",
                                       "label: bob\nlimits: pending=8\n")),
                   "unknown field \"limits\""));
    CHECK(contains(parse_error(replace(v3, "label: bob\n", "label: bob\nlimits: pending=0\n")),
                   "limits: bad limits \"pending=0\": pending must be 1..1024"));
    CHECK(contains(parse_error(replace(v3, "label: bob\n", "label: bob\nlimits: calls=3\n")), "unknown limit \"calls\""));
    CHECK(contains(parse_error(replace(v3, "label: bob\n", "label: bob\nlimits: pending=8\nlimits: pending=9\n")),
                   "field \"limits\" appears twice"));
    // A version this kith does not know is named, with what it reads.
    CHECK(contains(parse_error(replace(v3, "kith-grant 3", "kith-grant 4")),
                   "version 4 is not supported (this kith reads versions 1 to 3)"));
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

TEST_CASE("grants: a grant file with control characters is refused - kith grant show never prints them raw",
          "[grants]") {
    // A hostile grantor's file (its checksum is anyone's to recompute): an
    // escape sequence in the node name or an endpoint would move the cursor
    // and rewrite what `kith grant show` and error messages display.
    for (auto [field, value] : std::vector<std::pair<std::string, std::string>>{
             {"node", "alice\x1b[2K\r@pi1"},
             {"endpoint", "tcp://192.0.2.7:4370\x1b[1A"},
             {"node", std::string("alice@pi1\0x", 11)},
             {"endpoint", "tcp://192.0.2.7:4370\x7f"},
             {"node", "alice@pi\xc2\x9b"},
             {"node", "alice\r@pi1"}}) {
        grant_file g = sample();
        if (field == "node") g.node = value;
        else g.endpoints[0] = value;
        const std::string e = parse_error(g.to_text());
        INFO(e);
        CHECK(contains(e, "control character or non-ASCII"));
        CHECK(contains(e, "ask for a new one"));
        for (unsigned char c : e) CHECK((c >= 0x20 && c < 0x7f));  // the message itself is printable
    }
    // Not a node name (a space, no host): named, printable.
    grant_file g = sample();
    g.node = "al ice@pi1";
    CHECK(contains(parse_error(g.to_text()), "node \"al ice@pi1\" is not a node name"));
    // kith's own files still load; a CRLF line end is no control character.
    std::string text = sample().to_text(), crlf;
    for (char c : text) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
    CHECK(grant_file::parse(text).ok());
    CHECK_FALSE(contains(parse_error(crlf), "control character"));  // (CRLF breaks only its checksum)
}
