// The platform seam (kith/platform.hpp) and the files it guards: a key
// directory or a secret behind a symbolic link, another user's or a
// world-writable one is refused with a message that says what to do (issue
// 13, "a symlinked key directory is followed"); grant files get the same
// checks through the same helper.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "kith/grants.hpp"
#include "kith/keys.hpp"
#include "kith/node.hpp"
#include "kith/platform.hpp"
#include "kith_catch.hpp"
#include "tmpdir.hpp"

using namespace kith;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

unsigned mode_of(const fs::path& p) {
    struct stat st{};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

node_options node_at(const fs::path& key_dir) {
    node_options o;
    o.name = "victim@localhost";
    o.workers = 1;
    o.net.listen = "tcp://127.0.0.1:0";
    o.net.key_dir = key_dir;
    o.net.cookie = "platform-test-cookie-42";
    return o;
}

// What starting a node at `key_dir` throws ("" if it starts).
std::string start_error(const fs::path& key_dir) {
    try {
        node n(node_at(key_dir));
        return "";
    } catch (const setup_error& e) {
        return e.what();
    }
}

grant_file sample_grant() {
    grant_file g;
    g.node = "alice@pi1";
    g.endpoints = {"tcp://192.0.2.7:4370"};
    g.server_key = keypair::generate().pub;
    g.client = keypair::generate();
    g.label = "bob";
    g.allow = {{"kvs", {"get"}}};
    return g;
}

}  // namespace

TEST_CASE("platform: a node pointed at a symlinked key directory refuses to start", "[platform][keys]") {
    temp_dir t;
    // The attacker's directory: valid keys of their own, the user's mode.
    const fs::path theirs = t.path / "theirs";
    (void)load_or_create_keypair(theirs);
    const fs::path link = t.path / "kith";
    fs::create_directory_symlink(theirs, link);
    const std::string e = start_error(link);
    INFO(e);
    CHECK(contains(e, "key directory " + link.string() + " is a symbolic link (to " + theirs.string() + ")"));
    CHECK(contains(e, "give the real directory"));
    // The same with a trailing slash (lstat of "dir/" would follow the link).
    const std::string e2 = start_error(link.string() + "/");
    CHECK(contains(e2, "is a symbolic link"));
    // The key functions themselves refuse it too (the CLI uses them).
    CHECK_THROWS_AS(load_or_create_keypair(link), setup_error);
    CHECK_THROWS_AS(load_or_create_cookie(link), setup_error);
    CHECK_THROWS_AS(stretch_cookie("platform-test-cookie-42", link), setup_error);
    // The real directory works.
    CHECK(start_error(theirs) == "");
}

TEST_CASE("platform: a key directory writable by group is refused at node start, with the chmod to run",
          "[platform][keys]") {
    temp_dir t;
    const fs::path dir = t.path / "kith";
    (void)load_or_create_keypair(dir);
    REQUIRE(::chmod(dir.c_str(), 0770) == 0);
    const std::string e = start_error(dir);
    INFO(e);
    CHECK(contains(e, "key directory " + dir.string() + " has mode 0770 and is writable by group or others"));
    CHECK(contains(e, "chmod 700 " + dir.string()));
    REQUIRE(::chmod(dir.c_str(), 0750) == 0);  // readable only: tightened, not refused
    CHECK(start_error(dir) == "");
    CHECK(mode_of(dir) == 0700);
}

TEST_CASE("platform: a key directory that is a file is refused", "[platform][keys]") {
    temp_dir t;
    const fs::path f = t.path / "kith";
    std::ofstream(f) << "x";
    CHECK(contains(start_error(f), "key directory " + f.string() + " is not a directory"));
}

TEST_CASE("platform: a symlinked node key or cookie in a good key directory is refused", "[platform][keys]") {
    temp_dir t;
    const fs::path dir = t.path / "kith", elsewhere = t.path / "elsewhere";
    (void)load_or_create_keypair(elsewhere);
    (void)load_or_create_cookie(elsewhere);
    REQUIRE(platform::prepare_private_dir(dir, "key directory").ok());
    fs::create_symlink(elsewhere / "node.key", dir / "node.key");
    std::string e = start_error(dir);
    INFO(e);
    CHECK(contains(e, "secret file " + (dir / "node.key").string() + " is a symbolic link"));
    CHECK_THROWS_AS(load_or_create_keypair(dir), setup_error);
    fs::create_symlink(elsewhere / "cookie", dir / "cookie");
    try {
        (void)load_or_create_cookie(dir);
        FAIL("a symlinked cookie was followed");
    } catch (const setup_error& x) {
        CHECK(contains(x.what(), "is a symbolic link"));
    }
}

TEST_CASE("platform: grant files are checked for links and modes by the shared helper", "[platform][grants]") {
    temp_dir t;
    const grant_file g = sample_grant();
    const fs::path real = t.path / "bob.grant";
    REQUIRE(g.save(real).ok());
    CHECK(mode_of(real) == 0600);
    REQUIRE(grant_file::load(real).ok());

    const fs::path link = t.path / "link.grant";
    fs::create_symlink(real, link);
    auto r = grant_file::load(link);
    CHECK(r.code() == errc::decode);
    CHECK(contains(r.err().detail, "grant file " + link.string() + " is a symbolic link"));

    REQUIRE(::chmod(real.c_str(), 0640) == 0);
    r = grant_file::load(real);
    CHECK(r.code() == errc::decode);
    CHECK(contains(r.err().detail, "has mode 0640"));
    CHECK(contains(r.err().detail, "chmod 600 " + real.string()));

    auto missing = grant_file::load(t.path / "nope.grant");
    CHECK(missing.code() == errc::decode);
    CHECK(contains(missing.err().detail, "cannot read"));

    const fs::path dir = t.path / "adir.grant";
    fs::create_directory(dir);
    CHECK(grant_file::load(dir).code() == errc::decode);
}

TEST_CASE("platform: private files: atomic writes keep their mode, create_file_once never overwrites",
          "[platform]") {
    temp_dir t;
    const fs::path f = t.path / "secret";
    REQUIRE(platform::write_file_atomic(f, "one\n", 0600).ok());
    CHECK(mode_of(f) == 0600);
    REQUIRE(platform::write_file_atomic(f, "two\n", 0600).ok());
    auto r = platform::read_private_file(f, 100, "secret file");
    REQUIRE(r.ok());
    REQUIRE(r->has_value());
    CHECK(**r == "two\n");
    CHECK(platform::read_private_file(f, 2, "secret file").code() == errc::decode);
    CHECK(platform::read_private_file(t.path / "none", 100, "secret file").value() == std::nullopt);

    auto c = platform::create_file_once(t.path / "once", "first", 0600);
    REQUIRE(c.ok());
    CHECK(*c);
    c = platform::create_file_once(t.path / "once", "second", 0600);
    REQUIRE(c.ok());
    CHECK_FALSE(*c);
    CHECK(platform::read_small_file(t.path / "once", 100).value() == "first");
    // No temporary file is left behind.
    int n = 0;
    for (auto& de : fs::directory_iterator(t.path)) n += contains(de.path().filename().string(), ".tmp.");
    CHECK(n == 0);

    // An atomic write never goes through a link planted at a temporary name
    // or replaces a link's target: the link itself is replaced.
    const fs::path target = t.path / "target", l = t.path / "l";
    std::ofstream(target) << "keep";
    fs::create_symlink(target, l);
    REQUIRE(platform::write_file_atomic(l, "new", 0600).ok());
    CHECK(platform::read_small_file(target, 100).value() == "keep");
    CHECK_FALSE(fs::is_symlink(l));
}

TEST_CASE("platform: file_lock excludes a second holder until the first is gone", "[platform]") {
    temp_dir t;
    const fs::path p = t.path / "table.lock";
    std::atomic<bool> second{false};
    std::thread th;
    {
        platform::file_lock a(p);
        REQUIRE(a.ok());
        CHECK(mode_of(p) == 0600);
        th = std::thread([&] {
            platform::file_lock b(p);  // a separate open: flock conflicts within one process too
            second = true;
        });
        // Bounded look: the second holder must not get in while we hold it.
        for (int i = 0; i < 20 && !second; ++i) std::this_thread::sleep_for(5ms);
        CHECK_FALSE(second.load());
    }
    th.join();
    CHECK(second.load());
    // Never through a link.
    fs::create_symlink(t.path / "elsewhere", t.path / "linked.lock");
    CHECK_FALSE(platform::file_lock(t.path / "linked.lock").ok());
}

TEST_CASE("platform: interfaces: loopback is listed as such, with names", "[platform]") {
    auto all = platform::ipv4_interfaces();
    auto lo = std::find_if(all.begin(), all.end(),
                           [](auto& i) { return platform::ipv4_text(i.address) == "127.0.0.1"; });
    REQUIRE(lo != all.end());
    CHECK(lo->loopback);
    CHECK(lo->up);
    auto names = platform::interface_names();
    CHECK(std::find(names.begin(), names.end(), lo->name) != names.end());
    CHECK(std::count(names.begin(), names.end(), lo->name) == 1);
}

TEST_CASE("platform: endpoints as people type them: HOST:PORT is tcp://HOST:PORT, the rest refused saying why",
          "[platform]") {
    using platform::endpoint_use;
    auto ok = [](std::string_view text, endpoint_use use) {
        auto e = platform::parse_tcp_endpoint(text, use);
        INFO(text << ": " << e.err().detail);
        REQUIRE(e.ok());
        return *e;
    };
    CHECK(ok("127.0.0.1:0", endpoint_use::listen).zmq() == "tcp://127.0.0.1:0");
    CHECK(ok("tcp://127.0.0.1:0", endpoint_use::listen).zmq() == "tcp://127.0.0.1:0");
    CHECK(ok("*:4370", endpoint_use::listen).zmq() == "tcp://*:4370");
    // '*' is every interface: nothing anyone could dial (a grant file's
    // endpoint, an advertised one).
    CHECK_FALSE(platform::parse_tcp_endpoint("*:4370", endpoint_use::dial).ok());
    CHECK_FALSE(platform::parse_tcp_endpoint("tcp://*:4370", endpoint_use::dial_port_optional).ok());
    CHECK(platform::parse_tcp_endpoint("*:4370", endpoint_use::dial).err().detail.find("listening only") != std::string::npos);
    CHECK(ok("eth0:4370", endpoint_use::listen).host_port() == "eth0:4370");
    CHECK(ok("tcp://vps.example:4370", endpoint_use::dial).host_port() == "vps.example:4370");
    CHECK(ok("192.0.2.7:65535", endpoint_use::dial).port == 65535);
    auto peer = ok("192.0.2.7", endpoint_use::dial_port_optional);
    CHECK(peer.host_port() == "192.0.2.7");
    CHECK_FALSE(peer.port);
    CHECK(ok("tcp://192.0.2.7:4370", endpoint_use::dial_port_optional).host_port() == "192.0.2.7:4370");

    auto refused = [](std::string_view text, endpoint_use use) {
        auto e = platform::parse_tcp_endpoint(text, use);
        REQUIRE_FALSE(e.ok());
        CHECK(e.code() == errc::badarg);
        CHECK(contains(e.err().detail, "'" + std::string(text) + "' "));  // the text, quoted
        CHECK(contains(e.err().detail, "; e.g. "));                       // and an example
        return e.err().detail;
    };
    CHECK(contains(refused("", endpoint_use::listen), "is empty"));
    CHECK(contains(refused("127.0.0.1", endpoint_use::listen), "has no port"));
    CHECK(contains(refused("127.0.0.1", endpoint_use::dial), "has no port"));
    CHECK(contains(refused("127.0.0.1:", endpoint_use::listen), "from 0 (any free port) to 65535"));
    CHECK(contains(refused("127.0.0.1:0", endpoint_use::dial), "from 1 to 65535"));
    CHECK(contains(refused("127.0.0.1:0", endpoint_use::dial_port_optional), "from 1 to 65535"));
    CHECK(contains(refused("127.0.0.1:65536", endpoint_use::listen), "to 65535"));
    CHECK(contains(refused("127.0.0.1:4370x", endpoint_use::listen), "no valid port"));
    CHECK(contains(refused("127.0.0.1:-1", endpoint_use::listen), "no valid port"));
    CHECK(contains(refused("127.0.0.1:000004370", endpoint_use::listen), "no valid port"));
    CHECK(contains(refused("udp://127.0.0.1:5", endpoint_use::listen), "tcp:// only"));
    CHECK(contains(refused("ipc:///tmp/x", endpoint_use::listen), "tcp:// only"));
    CHECK(contains(refused("[::1]:4370", endpoint_use::listen), "IPv4 only"));
    CHECK(contains(refused("tcp://[::]:4370", endpoint_use::listen), "IPv4 only"));
    CHECK(contains(refused("::1", endpoint_use::dial_port_optional), "IPv4 only"));
    CHECK(contains(refused(":4370", endpoint_use::listen), "has no host"));
    CHECK(contains(refused("tcp://:4370", endpoint_use::dial), "has no host"));
    CHECK(contains(refused("a b:1", endpoint_use::listen), "host name or IPv4 address"));
    CHECK(contains(refused("a/b:1", endpoint_use::dial), "host name or IPv4 address"));
    CHECK(contains(refused("**:1", endpoint_use::listen), "host name or IPv4 address"));
}
