// Keys, the key directory and the cookie (kith/keys.hpp).
#include <sys/stat.h>

#include <fstream>

#include "kith/error.hpp"
#include "kith/keys.hpp"
#include "kith_catch.hpp"
#include "tmpdir.hpp"

using namespace kith;

static unsigned mode_of(const std::filesystem::path& p) {
    struct stat st{};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return st.st_mode & 0777;
}

TEST_CASE("keys: a fresh key directory is created 0700 with 0600 files, and reloads the same key") {
    temp_dir t;
    auto dir = t.path / "kith";
    keypair a = load_or_create_keypair(dir);
    CHECK(mode_of(dir) == 0700);
    CHECK(mode_of(dir / "node.key") == 0600);
    CHECK(mode_of(dir / "node.pub") == 0600);
    keypair b = load_or_create_keypair(dir);
    CHECK(a.pub == b.pub);
    CHECK(a.sec.bytes() == b.sec.bytes());
    std::ifstream pubf(dir / "node.pub");
    std::string line;
    std::getline(pubf, line);
    CHECK(line == a.pub.z85());

    std::string c1 = load_or_create_cookie(dir);
    CHECK(mode_of(dir / "cookie") == 0600);
    CHECK(c1.size() == 40);
    CHECK(load_or_create_cookie(dir) == c1);
}

TEST_CASE("keys: a secret key file readable by others is refused with a clear setup_error") {
    temp_dir t;
    (void)load_or_create_keypair(t.path);
    REQUIRE(::chmod((t.path / "node.key").c_str(), 0644) == 0);
    try {
        (void)load_or_create_keypair(t.path);
        FAIL("expected setup_error");
    } catch (const setup_error& e) {
        std::string msg = e.what();
        CHECK(msg.find("0644") != std::string::npos);
        CHECK(msg.find("chmod 600") != std::string::npos);
        CHECK(msg.find("node.key") != std::string::npos);
    }
    REQUIRE(::chmod((t.path / "node.key").c_str(), 0600) == 0);
    CHECK_NOTHROW(load_or_create_keypair(t.path));

    (void)load_or_create_cookie(t.path);
    REQUIRE(::chmod((t.path / "cookie").c_str(), 0640) == 0);
    CHECK_THROWS_AS(load_or_create_cookie(t.path), setup_error);
}

TEST_CASE("keys: a malformed secret key file is refused") {
    temp_dir t;
    {
        std::ofstream f(t.path / "node.key");
        f << "not a key\n";
    }
    REQUIRE(::chmod((t.path / "node.key").c_str(), 0600) == 0);
    CHECK_THROWS_AS(load_or_create_keypair(t.path), setup_error);
}

TEST_CASE("keys: a key directory writable by others is refused") {
    temp_dir t;
    REQUIRE(::chmod(t.path.c_str(), 0777) == 0);
    CHECK_THROWS_AS(load_or_create_keypair(t.path), setup_error);
}

TEST_CASE("keys: z85, hex and fingerprint forms") {
    keypair k = keypair::generate();
    CHECK(k.pub.z85().size() == 40);
    CHECK(public_key::from_z85(k.pub.z85()) == k.pub);
    CHECK(k.pub.hex().size() == 64);
    CHECK(public_key::from_hex(k.pub.hex()) == k.pub);
    CHECK_FALSE(public_key::from_z85("short").has_value());
    CHECK_FALSE(public_key::from_hex(std::string(64, 'g')).has_value());
    std::string fp = k.pub.fingerprint();
    CHECK(fp.size() == 19);
    CHECK(fp[4] == ':');
    CHECK(fp == k.pub.fingerprint());
    CHECK(secret_key::from_z85(k.sec.z85_secret())->bytes() == k.sec.bytes());
    CHECK(keypair::generate().pub != k.pub);
}

TEST_CASE("keys: the cluster keypair is a function of the cookie") {
    CHECK(cluster_keypair("classroom-7").pub == cluster_keypair("classroom-7").pub);
    CHECK(cluster_keypair("classroom-7").pub != cluster_keypair("classroom-8").pub);
    CHECK(derive_cookie_key("c", "beacon-hmac") != derive_cookie_key("c", "cluster-client-key"));
}
