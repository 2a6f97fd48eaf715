// Grants without the network, the grant file and the values in it: rate,
// scope and limit parsing, the grant file format (and its rejection of
// malformed, truncated, wrong-version, bad-key, tampered and control-character
// files, each with a specific message), its versions (relay routes: 2,
// limits: 3). The grant table is test_grant_table.cpp.
#include <sys/stat.h>

#include "../transport/tmpdir.hpp"
#include "grant_test_util.hpp"
#include "grants/grants_io.hpp"
#include "kith/grants.hpp"
#include "kith_catch.hpp"

using namespace kith;
using namespace kith::grant_tests;
using namespace std::chrono_literals;

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
