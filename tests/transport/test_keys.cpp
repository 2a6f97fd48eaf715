// Keys, the key directory and the cookie (kith/keys.hpp).
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cstdio>
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

namespace {

std::array<std::uint8_t, 32> argon2id(std::string_view cookie) {
    std::array<std::uint8_t, 32> m{};
    REQUIRE(crypto_pwhash(m.data(), m.size(), cookie.data(), cookie.size(),
                          reinterpret_cast<const unsigned char*>(cookie_kdf_salt), cookie_kdf_opslimit,
                          cookie_kdf_memlimit, crypto_pwhash_ALG_ARGON2ID13) == 0);
    return m;
}

}  // namespace

TEST_CASE("keys: every cookie key comes from one Argon2id-stretched master key") {
    REQUIRE(sodium_init() >= 0);
    const std::string cookie = "stretch-test-cookie-" + std::to_string(::getpid());
    // The parameters: well under a second on a Raspberry Pi 3 (1 GB).
    CHECK(cookie_kdf_memlimit <= (64u << 20));
    CHECK(cookie_kdf_opslimit >= 2);
    // This thread's CPU time, not wall time: on a loaded machine the thread
    // may wait for a CPU for longer than the stretch itself takes.
    auto cpu_ms = [] {
        timespec ts{};
        ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
    };
    const long long t0 = cpu_ms();
    auto want = argon2id(cookie);
    const long long ms = cpu_ms() - t0;
    std::fprintf(stderr, "Argon2id(opslimit %llu, memlimit %zu MiB) took %lld ms of CPU on this machine\n",
                 cookie_kdf_opslimit, cookie_kdf_memlimit >> 20, static_cast<long long>(ms));
    CHECK(ms < 1000);
    CHECK(stretch_cookie(cookie) == want);
    // derive_cookie_key = BLAKE2b-256 keyed with the master key over
    // "kith-cookie-v2" 0x00 len(purpose) purpose.
    std::string msg = std::string("kith-cookie-v2") + '\0' + char(11) + "beacon-hmac";
    std::array<std::uint8_t, 32> k{};
    crypto_generichash(k.data(), k.size(), reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), want.data(),
                       want.size());
    CHECK(derive_cookie_key(cookie, "beacon-hmac") == k);
    // A one-character change gives an unrelated master key.
    CHECK(stretch_cookie(cookie + "x") != want);
}

TEST_CASE("keys: the stretched cookie is cached 0600 in the key directory, per cookie") {
    temp_dir t;
    auto dir = t.path / "kith";
    const std::string a = "cache-test-a-" + std::to_string(::getpid()), b = a + "-b";
    auto ma = stretch_cookie(a, dir);
    CHECK(ma == argon2id(a));
    REQUIRE(std::filesystem::exists(dir / "cookie.kdf"));
    CHECK(mode_of(dir / "cookie.kdf") == 0600);
    std::string text;
    {
        std::ifstream f(dir / "cookie.kdf");
        std::getline(f, text);
    }
    CHECK(text.find(a) == std::string::npos);  // the cookie itself is never written
    CHECK(text.rfind("kith-cookie-kdf-v1 argon2id13 ", 0) == 0);
    // Another cookie adds its own line; both are found again.
    auto mb = stretch_cookie(b, dir);
    CHECK(mb != ma);
    CHECK(stretch_cookie(a, dir) == ma);
    CHECK(stretch_cookie(b, dir) == mb);
    // A cache line is bound to its cookie: a forged line (another master key
    // under our line's tag) is not used, the key is recomputed.
    {
        std::ifstream f(dir / "cookie.kdf");
        std::string l1, l2;
        std::getline(f, l1);
        std::getline(f, l2);
        f.close();
        std::string forged = l1.substr(0, l1.size() - 64) + std::string(64, '0') + "\n";
        std::filesystem::remove(dir / "cookie.kdf");
        std::ofstream o(dir / "cookie.kdf");
        o << forged;
        o.close();
        ::chmod((dir / "cookie.kdf").c_str(), 0600);
    }
    const std::string c = a + "-c";
    auto mc = stretch_cookie(c, dir);
    CHECK(mc == argon2id(c));
    // Loose permissions are refused like node.key's.
    ::chmod((dir / "cookie.kdf").c_str(), 0644);
    CHECK_THROWS_AS(stretch_cookie(c, dir), setup_error);
}

TEST_CASE("keys: weak cookies are recognised, random ones are not") {
    CHECK_FALSE(weak_cookie_reason("short").empty());
    CHECK_FALSE(weak_cookie_reason("elevenchars").empty());              // 11 < 12
    CHECK_FALSE(weak_cookie_reason("classroomcookie").empty());          // 15, lowercase only
    CHECK_FALSE(weak_cookie_reason("1234567890123456789").empty());      // 19 digits
    CHECK(weak_cookie_reason("classroom-cookie").empty());               // 16, two kinds
    CHECK(weak_cookie_reason("averylonglowercasecookie").empty());       // 24 letters
    CHECK(weak_cookie_reason(load_or_create_cookie(temp_dir().path / "k")).empty());  // the default: 40 Z85
}
