// kith/keys.hpp — CURVE keys, the key directory and the cluster cookie.
//
// A node's long-term identity is a CurveZMQ (X25519) keypair kept in its key
// directory (default ~/.kith, see default_key_dir). The directory also holds
// the cluster cookie of nodes started without an explicit one, so that one
// user's nodes on one machine cluster by default and strangers never do.
//
// Files (all created mode 0600 in a directory created mode 0700):
//   node.key   the secret key, one line of Z85 (40 characters)
//   node.pub   the public key, one line of Z85 (for people and scripts)
//   cookie     the cluster cookie, one line (40 Z85 characters when generated)
//   cookie.kdf the cookie's stretched master key (stretch_cookie), a cache
// A secret file (node.key, cookie, cookie.kdf) that is a symbolic link, is
// readable or writable by group or others, or is owned by another user, is
// refused with a setup_error that says how to fix it; so is a key directory
// that is a symbolic link, is owned by another user or is writable by group
// or others (whoever controls the link or the directory chooses the keys).
// The checks are kith/platform.hpp's, shared with grant files.
//
// Secret keys never appear in logs: secret_key has no printing function other
// than z85_secret(), which exists only to hand the key to libzmq.
//
// Thread-safety: the types are plain values. The file functions may be called
// from several processes at once: the first writer wins, the others read what
// it wrote (files are created with link(2), never overwritten).
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace kith {

// A CURVE public key (32 bytes).
struct public_key {
    std::array<std::uint8_t, 32> bytes{};

    std::string z85() const;          // 40 characters, as libzmq takes it
    std::string hex() const;          // 64 lowercase hex digits
    // A short human fingerprint: the first 8 bytes of BLAKE2b-256(key) in hex,
    // in groups of four ("3f2a:91c0:77de:0b14"). For display and comparison by
    // people; never for authentication.
    std::string fingerprint() const;
    static std::optional<public_key> from_z85(std::string_view text);
    static std::optional<public_key> from_hex(std::string_view text);

    friend bool operator==(const public_key&, const public_key&) = default;
    friend auto operator<=>(const public_key&, const public_key&) = default;
};

// A CURVE secret key (32 bytes). Zeroed on destruction. Not printable.
class secret_key {
public:
    secret_key() = default;
    explicit secret_key(const std::array<std::uint8_t, 32>& b) : bytes_(b) {}
    secret_key(const secret_key&) = default;
    secret_key& operator=(const secret_key&) = default;
    ~secret_key();

    const std::array<std::uint8_t, 32>& bytes() const noexcept { return bytes_; }
    // Z85 form, only to pass to libzmq (ZMQ_CURVE_SECRETKEY). Never log it.
    std::string z85_secret() const;
    static std::optional<secret_key> from_z85(std::string_view text);

private:
    std::array<std::uint8_t, 32> bytes_{};
};

struct keypair {
    public_key pub;
    secret_key sec;

    // A fresh random keypair.
    static keypair generate();
    // The keypair derived deterministically from 32 bytes of seed.
    static keypair from_seed(const std::array<std::uint8_t, 32>& seed);
};

// $KITH_HOME if set, else $HOME/.kith. Throws setup_error if neither is set.
std::filesystem::path default_key_dir();

// Loads the node keypair from `dir` (node.key), creating the directory (0700)
// and a fresh keypair (0600 files) when absent. Throws setup_error on a file
// with loose permissions, a malformed file, or an I/O failure; the message
// names the file and the fix, never the key.
keypair load_or_create_keypair(const std::filesystem::path& dir);

// Loads the cluster cookie from `dir` (cookie), creating a random one (0600)
// when absent. Same checks and errors as load_or_create_keypair.
std::string load_or_create_cookie(const std::filesystem::path& dir);

// The cookie is stretched once with Argon2id (libsodium crypto_pwhash,
// ALG_ARGON2ID13) into a 32-byte master key, so that every guess of a cookie
// costs an Argon2id of cookie_kdf_memlimit bytes; all keys below come from
// the master key (docs/protocol.md, "The cookie and the keys derived from
// it"). The salt is the fixed protocol constant cookie_kdf_salt: every node
// of a cluster must derive the same keys from the cookie alone.
inline constexpr unsigned long long cookie_kdf_opslimit = 2;
inline constexpr std::size_t cookie_kdf_memlimit = 32u << 20;  // 32 MiB
inline constexpr char cookie_kdf_salt[17] = "kith-cookie-v2.s";  // 16 bytes (no NUL)

// The stretched master key of `cookie`. Memoized in the process (a few
// cookies). With a non-empty `cache_dir` (a key directory) it is also cached
// there in the file "cookie.kdf" (mode 0600, one line per cookie, keyed by a
// MAC of the cookie and the parameters, so another cookie or other parameters
// recompute); a cache file with loose permissions is refused like node.key.
// Throws setup_error if Argon2id cannot run (out of memory).
std::array<std::uint8_t, 32> stretch_cookie(std::string_view cookie, const std::filesystem::path& cache_dir = {});

// A 32-byte key derived from the cookie for one purpose: BLAKE2b-256 keyed
// with the stretched master key over "kith-cookie-v2", 0x00, the purpose's
// length in one byte and the purpose. Distinct purposes give independent
// keys: e.g. "cluster-client-key" (below), "beacon-hmac". The first call for
// a cookie in a process costs one Argon2id (see stretch_cookie).
std::array<std::uint8_t, 32> derive_cookie_key(std::string_view cookie, std::string_view purpose);

// Why a people-chosen cookie is easy to guess ("" if it is not): shorter than
// 12 characters, or shorter than 20 and made of one character class only
// (all lowercase, all digits, ...). Random cookies (the default) pass.
std::string weak_cookie_reason(std::string_view cookie);

// The cluster client keypair: every node holding `cookie` derives the same
// one, and a node's ZAP handler accepts it as a cluster member (see
// docs/protocol.md, "Transport and security").
keypair cluster_keypair(std::string_view cookie);

}  // namespace kith
