// The built-in "node" and "grants" services (kith/builtin.hpp), called as a
// cluster member would call them, and refused to a grantee.
#include "../transport/tmpdir.hpp"
#include "kith/builtin.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "kith_catch.hpp"

namespace {

kith::node_options opts(const std::string& name, const temp_dir& home, const std::string& cookie) {
    kith::node_options o;
    o.name = name;
    o.workers = 1;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = home.path / name;
    o.net.cookie = cookie;
    o.net.log = [](const kith::log_record&) {};
    return o;
}

// Alice with the grants service and one other, and a cluster member
// ("admin") connected to her.
struct admin_world {
    temp_dir home;
    kith::node a{opts("alice@test", home, "c1")};
    kith::node admin{opts("admin@test", home, "c1")};
    explicit admin_world(kith::service other) {
        a.add_service(kith::services::make_grant_admin(a));
        a.add_service(std::move(other));
        REQUIRE(admin.connect(a.endpoint(), a.key()));
    }
};

}  // namespace

TEST_CASE("builtin: node info reports name, services, peers and refusals by reason") {
    temp_dir home;
    kith::node a(opts("alice@test", home, "c1"));
    a.add_service(kith::services::make_node_info(a));
    a.add_service(kith::services::make_kvs());
    kith::node b(opts("bob@test", home, "c1"));
    REQUIRE(b.connect(a.endpoint(), a.key()));
    auto r = b.call("alice@test", "node", "info", kith::arr());
    REQUIRE(r);
    CHECK(*r->lookup("name") == kith::term("alice@test"));
    CHECK(r->lookup("uptime_s")->as_float().value() >= 0);
    CHECK(*r->lookup("services") == kith::arr("kvs", "node"));
    REQUIRE(r->lookup("peers")->size() == 1);
    CHECK(*r->lookup("peers")->at(0)->lookup("name") == kith::term("bob@test"));
    CHECK(r->lookup("messages_in")->as_int().value() >= 1);
    for (auto* reason : {"unauthorized", "revoked", "rate_limited", "other", "connections", "malformed"})
        CHECK(r->lookup("refused")->lookup(reason) != nullptr);
}

TEST_CASE("builtin: grants service creates, lists, re-rates and revokes, is never grantable and is refused to grantees") {
    admin_world w(kith::services::make_kvs());
    auto& home = w.home;
    auto& admin = w.admin;

    auto text = admin.call("alice@test", "grants", "create", kith::arr("bob", "kvs", "5/s", 3600));
    REQUIRE(text);
    auto file = kith::grant_file::parse(*text->as_string());
    REQUIRE(file);
    CHECK(file->node == "alice@test");
    CHECK(file->label == "bob");
    CHECK(file->rate.per_second == 5);
    CHECK(file->expires.has_value());

    CHECK(admin.call("alice@test", "grants", "create", kith::arr("eve", "grants", kith::nil, kith::nil)).code() ==
          kith::errc::badarg);
    CHECK(admin.call("alice@test", "grants", "create", kith::arr("bob", "kvs", kith::nil, kith::nil)).code() ==
          kith::errc::badarg);  // duplicate label
    CHECK(admin.call("alice@test", "grants", "create", kith::arr("x", "kvs", "fast", kith::nil)).code() ==
          kith::errc::badarg);
    CHECK(admin.call("alice@test", "grants", "set_rate", kith::arr("bob", "50/s")));
    auto list = admin.call("alice@test", "grants", "list", kith::arr());
    REQUIRE(list);
    REQUIRE(list->size() == 1);
    CHECK(*list->at(0)->lookup("label") == kith::term("bob"));

    // Bob, holding the grant, can use kvs but never the grants service.
    kith::node bob(opts("bob@test", home, "c2"));
    REQUIRE(bob.connect(*file));
    CHECK(bob.call("alice@test", "kvs", "keys", kith::arr()));
    CHECK(bob.call("alice@test", "grants", "list", kith::arr()).code() == kith::errc::unauthorized);

    CHECK(admin.call("alice@test", "grants", "revoke", kith::arr("bob")));
    CHECK(admin.call("alice@test", "grants", "revoke", kith::arr("nobody")).code() == kith::errc::badarg);
    CHECK(bob.call("alice@test", "kvs", "keys", kith::arr()).code() == kith::errc::revoked);
}

TEST_CASE("builtin: grants:create over the network takes limits - listed, and a bad one named with its bounds") {
    admin_world w(kith::services::make_kvs());
    auto& a = w.a;
    auto& admin = w.admin;
    auto create = [&](const std::string& label, kith::term limits) {
        return admin.call("alice@test", "grants", "create", kith::arr(label, "kvs", kith::nil, kith::nil, limits));
    };
    REQUIRE(create("bob", "pending=8,spawned=4"));
    REQUIRE(create("carol", kith::nil));  // nil: the defaults
    auto list = admin.call("alice@test", "grants", "list", kith::arr());
    REQUIRE(list);
    REQUIRE(list->size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        auto& g = *list->at(i);
        CHECK(*g.lookup("limits") == kith::term(*g.lookup("label") == kith::term("bob") ? "pending=8,spawned=4"
                                                                                          : "default"));
    }
    for (auto& g : a.grants())
        if (g.label == "bob") CHECK(g.limits == kith::grant_limits{.pending = 8, .spawned = 4});
    // Each limit at 0 and over its maximum: badarg naming that limit and its bounds; no grant made.
    const std::pair<const char*, const char*> bad[] = {
        {"pending=0", "pending must be 1..1024 (16x the default 64; got 0)"},
        {"spawned=4,pending=1025", "pending must be 1..1024 (16x the default 64; got 1025)"},
        {"spawned=0", "spawned must be 1..4096 (16x the default 256; got 0)"},
        {"spawned=4097", "spawned must be 1..4096"},
        {"queued=0", "queued must be 1..67108864 (16x the default 4194304 bytes; got 0)"},
        {"queued=67108865", "queued must be 1..67108864"},
        {"relations=0", "relations must be 1..65536 (16x the default 4096; got 0)"},
        {"pending=8,relations=65537", "relations must be 1..65536"},
    };
    for (auto& [text, why] : bad) {
        INFO(text);
        auto r = create("dave", text);
        REQUIRE_FALSE(r);
        CHECK(r.code() == kith::errc::badarg);
        CHECK(r.err().detail.find(why) != std::string::npos);
    }
    CHECK(create("dave", 8).code() == kith::errc::badarg);  // not text
    CHECK(admin.call("alice@test", "grants", "create", kith::arr("dave", "kvs", kith::nil, kith::nil, kith::nil, 1))
              .code() == kith::errc::bad_args);
    CHECK(admin.call("alice@test", "grants", "create", kith::arr(7, "kvs", kith::nil, kith::nil)).code() ==
          kith::errc::bad_args);
    CHECK(a.grants().size() == 2);
}

TEST_CASE("builtin: grants:set_limits - a member changes a grant's limits, in force on the grantee's live session, "
          "the grantee cannot") {
    admin_world w(kith::services::make_echo());
    auto& home = w.home;
    auto& a = w.a;
    auto& admin = w.admin;
    auto text = admin.call("alice@test", "grants", "create", kith::arr("bob", "echo", "unlimited", kith::nil, "spawned=1"));
    REQUIRE(text);
    auto file = kith::grant_file::parse(*text->as_string());
    REQUIRE(file);
    CHECK(file->version == 3);  // the grantee's file carries its limits
    CHECK(file->limits == kith::grant_limits{.spawned = 1});

    kith::node bob(opts("bob@test", home, "c2"));
    REQUIRE(bob.connect(*file));
    auto spawn = [&] { return bob.spawn("alice@test", "echo", "server", kith::arr()); };
    REQUIRE(spawn());
    auto over = spawn();
    REQUIRE_FALSE(over);
    CHECK(over.code() == kith::errc::overloaded);
    CHECK(over.err().detail.starts_with("limit spawned: 1 actors"));
    // The grantee cannot raise them: the grants service is never granted.
    CHECK(bob.call("alice@test", "grants", "set_limits", kith::arr("bob", "spawned=4096")).code() ==
          kith::errc::unauthorized);
    // The owner can, and the same session is held to the new limit at once.
    auto now = admin.call("alice@test", "grants", "set_limits", kith::arr("bob", "spawned=2"));
    REQUIRE(now);
    CHECK(*now == kith::term("spawned=2"));
    REQUIRE(spawn());
    over = spawn();
    REQUIRE_FALSE(over);
    CHECK(over.err().detail.starts_with("limit spawned: 2 actors"));
    CHECK(*admin.call("alice@test", "grants", "list", kith::arr())->at(0)->lookup("limits") == kith::term("spawned=2"));
    // Lowered below what it holds: kept, but nothing more until under again.
    REQUIRE(admin.call("alice@test", "grants", "set_limits", kith::arr("bob", "spawned=1")));
    over = spawn();
    CHECK(over.code() == kith::errc::overloaded);
    // The refusal says what bob holds (2), not the new limit as if it were
    // his count, and names the limit now in force.
    CHECK(over.err().detail.starts_with("limit spawned: 2 actors you spawned are alive here already, more than the "
                                        "limit of 1 now in force"));
    // Bad limits, unknown and revoked labels: badarg, nothing changed.
    auto bad = admin.call("alice@test", "grants", "set_limits", kith::arr("bob", "spawned=0"));
    CHECK(bad.code() == kith::errc::badarg);
    CHECK(bad.err().detail.find("spawned must be 1..4096") != std::string::npos);
    CHECK(admin.call("alice@test", "grants", "set_limits", kith::arr("nobody", "pending=1")).code() ==
          kith::errc::badarg);
    CHECK(admin.call("alice@test", "grants", "set_limits", kith::arr("bob", 5)).code() == kith::errc::bad_args);
    REQUIRE(admin.call("alice@test", "grants", "revoke", kith::arr("bob")));
    CHECK(admin.call("alice@test", "grants", "set_limits", kith::arr("bob", "default")).code() == kith::errc::badarg);
    CHECK(a.grants().at(0).limits == kith::grant_limits{.spawned = 1});
}

TEST_CASE("builtin: node whereis names a registered pid or nil") {
    temp_dir home;
    kith::node a(opts("alice@test", home, "c1"));
    a.add_service(kith::services::make_node_info(a));
    kith::mailbox box(a);
    REQUIRE(a.register_name("box", box.self()).ok());
    CHECK(*a.call("alice@test", "node", "whereis", kith::arr("box")) == kith::term(box.self()));
    CHECK(a.call("alice@test", "node", "whereis", kith::arr("nobody"))->is_nil());
}

TEST_CASE("builtin: echo server - a call gets sent or bad_args saying what it expects") {
    temp_dir home;
    kith::node a(opts("alice@test", home, "c1"));
    a.add_service(kith::services::make_echo());
    auto echo = a.spawn("alice@test", "echo", "server", kith::arr());
    REQUIRE(echo);
    kith::mailbox me(a);
    auto bare = me.call(*echo, kith::term(17), std::chrono::seconds(2));
    REQUIRE_FALSE(bare);
    CHECK(bare.code() == kith::errc::bad_args);
    CHECK(bare.err().detail == "echo:server expects [Pid, Message], got 17");
    auto ok = me.call(*echo, kith::arr(me.self(), "hi"), std::chrono::seconds(2));
    REQUIRE(ok);
    CHECK(*ok == kith::term("sent"));
    auto got = me.receive(std::chrono::seconds(2));
    REQUIRE(got);
    CHECK(got->body == kith::term("hi"));
}
