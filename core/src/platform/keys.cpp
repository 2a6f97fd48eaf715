// keys.cpp — CURVE keys, the key directory and the cookie (see kith/keys.hpp).
#include "kith/keys.hpp"

#include <sodium.h>
#include <zmq.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "kith/error.hpp"
#include "kith/log.hpp"
#include "kith/platform.hpp"

namespace kith {
namespace {

void ensure_sodium() {
    static const bool ok = sodium_init() >= 0;
    if (!ok) throw setup_error("kith: libsodium failed to initialise");
}

std::string z85_encode32(const std::array<std::uint8_t, 32>& b) {
    char out[41];
    if (!zmq_z85_encode(out, b.data(), b.size())) return {};
    return std::string(out, 40);
}

std::optional<std::array<std::uint8_t, 32>> z85_decode32(std::string_view text) {
    // libzmq reads a C string: a NUL inside would end the key early.
    if (text.size() != 40 || text.find('\0') != std::string_view::npos) return std::nullopt;
    char in[41];
    std::memcpy(in, text.data(), 40);
    in[40] = '\0';
    std::array<std::uint8_t, 32> b{};
    if (!zmq_z85_decode(b.data(), in)) return std::nullopt;
    return b;
}

// The key directory, made private (kith/platform.hpp): created 0700 when
// missing; a symbolic link, another user's directory or one writable by
// group or others is refused.
void prepare_dir(const std::filesystem::path& dir) {
    if (auto r = platform::prepare_private_dir(dir, "key directory"); !r)
        throw setup_error("kith: " + r.err().detail);
}

// Reads a small secret file (node.key, cookie, cookie.kdf), refusing a link,
// another owner or loose permissions. nullopt if absent.
std::optional<std::string> read_secret_file(const std::filesystem::path& file) {
    auto r = platform::read_private_file(file, 4096, "secret file");
    if (!r) {
        if (r.code() == errc::decode) throw setup_error("kith: " + file.string() + " is too large to be a kith key file");
        throw setup_error("kith: " + r.err().detail);
    }
    auto text = std::move(*r);
    if (text)
        while (!text->empty() && (text->back() == '\n' || text->back() == '\r' || text->back() == ' ')) text->pop_back();
    return text;
}

// Writes `content` to `file` mode 0600 unless it already exists. Returns false
// if another writer created it first (the caller then reads that one).
bool create_file_0600(const std::filesystem::path& file, const std::string& content) {
    auto r = platform::create_file_once(file, content, 0600);
    if (!r) throw setup_error("kith: " + r.err().detail);
    return *r;
}

}  // namespace

// ---- public_key ----------------------------------------------------------

std::string public_key::z85() const { return z85_encode32(bytes); }

std::string public_key::hex() const {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(64);
    for (auto b : bytes) {
        s.push_back(digits[b >> 4]);
        s.push_back(digits[b & 15]);
    }
    return s;
}

std::string public_key::fingerprint() const {
    ensure_sodium();
    unsigned char h[32];
    crypto_generichash(h, sizeof h, bytes.data(), bytes.size(), nullptr, 0);
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < 8; ++i) {
        if (i > 0 && i % 2 == 0) s.push_back(':');
        s.push_back(digits[h[i] >> 4]);
        s.push_back(digits[h[i] & 15]);
    }
    return s;
}

std::optional<public_key> public_key::from_z85(std::string_view text) {
    auto b = z85_decode32(text);
    if (!b) return std::nullopt;
    return public_key{*b};
}

std::optional<public_key> public_key::from_hex(std::string_view text) {
    if (text.size() != 64) return std::nullopt;
    auto val = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    public_key k;
    for (std::size_t i = 0; i < 32; ++i) {
        int hi = val(text[2 * i]), lo = val(text[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        k.bytes[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return k;
}

// ---- secret_key / keypair --------------------------------------------------

secret_key::~secret_key() { sodium_memzero(bytes_.data(), bytes_.size()); }

std::string secret_key::z85_secret() const { return z85_encode32(bytes_); }

std::optional<secret_key> secret_key::from_z85(std::string_view text) {
    auto b = z85_decode32(text);
    if (!b) return std::nullopt;
    secret_key k(*b);
    sodium_memzero(b->data(), b->size());
    return k;
}

keypair keypair::generate() {
    ensure_sodium();
    std::array<std::uint8_t, 32> seed{};
    randombytes_buf(seed.data(), seed.size());
    keypair kp = from_seed(seed);
    sodium_memzero(seed.data(), seed.size());
    return kp;
}

keypair keypair::from_seed(const std::array<std::uint8_t, 32>& seed) {
    ensure_sodium();
    std::array<std::uint8_t, 32> pk{}, sk{};
    crypto_box_seed_keypair(pk.data(), sk.data(), seed.data());
    keypair kp{public_key{pk}, secret_key{sk}};
    sodium_memzero(sk.data(), sk.size());
    return kp;
}

// ---- key directory -----------------------------------------------------------

std::filesystem::path default_key_dir() {
    if (const char* h = std::getenv("KITH_HOME"); h && *h) return h;
    if (const char* h = std::getenv("HOME"); h && *h) return std::filesystem::path(h) / ".kith";
    throw setup_error("kith: neither KITH_HOME nor HOME is set; give the node a key directory");
}

keypair load_or_create_keypair(const std::filesystem::path& dir) {
    ensure_sodium();
    prepare_dir(dir);
    const auto file = dir / "node.key";
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (auto text = read_secret_file(file)) {
            auto sk = secret_key::from_z85(*text);
            sodium_memzero(text->data(), text->size());
            if (!sk) throw setup_error("kith: " + file.string() + " is not a Z85 CURVE secret key (40 characters)");
            keypair kp;
            kp.sec = *sk;
            crypto_scalarmult_base(kp.pub.bytes.data(), kp.sec.bytes().data());
            return kp;
        }
        keypair kp = keypair::generate();
        std::string text = kp.sec.z85_secret() + "\n";
        bool created = create_file_0600(file, text);
        sodium_memzero(text.data(), text.size());
        if (created) {
            (void)create_file_0600(dir / "node.pub", kp.pub.z85() + "\n");
            return kp;
        }
        // Another process created it first: read theirs.
    }
    throw setup_error("kith: cannot load or create " + file.string());
}

std::string load_or_create_cookie(const std::filesystem::path& dir) {
    ensure_sodium();
    prepare_dir(dir);
    const auto file = dir / "cookie";
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (auto text = read_secret_file(file)) {
            if (text->empty()) throw setup_error("kith: cookie file " + file.string() + " is empty");
            return *text;
        }
        std::array<std::uint8_t, 32> r{};
        randombytes_buf(r.data(), r.size());
        std::string cookie = z85_encode32(r);
        sodium_memzero(r.data(), r.size());
        if (create_file_0600(file, cookie + "\n")) return cookie;
    }
    throw setup_error("kith: cannot load or create " + file.string());
}

namespace {

std::string to_hex(const std::uint8_t* b, std::size_t n) {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        s.push_back(digits[b[i] >> 4]);
        s.push_back(digits[b[i] & 15]);
    }
    return s;
}

bool from_hex32(std::string_view h, std::array<std::uint8_t, 32>& out) {
    if (h.size() != 64) return false;
    auto val = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < 32; ++i) {
        int hi = val(h[2 * i]), lo = val(h[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return true;
}

// The cache line's tag: BLAKE2b-256 keyed with the master key over the
// parameters and the cookie. It ties a cached master key to its cookie
// without storing a fast, unkeyed hash of the cookie.
std::array<std::uint8_t, 32> cache_tag(const std::array<std::uint8_t, 32>& master, std::string_view cookie) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, master.data(), master.size(), 32);
    std::string params = "kith-cookie-kdf-cache-v1 " + std::to_string(cookie_kdf_opslimit) + " " +
                         std::to_string(cookie_kdf_memlimit) + " ";
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(params.data()), params.size());
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(cookie.data()), cookie.size());
    std::array<std::uint8_t, 32> out{};
    crypto_generichash_final(&st, out.data(), out.size());
    return out;
}

std::string cache_prefix() {
    return "kith-cookie-kdf-v1 argon2id13 " + std::to_string(cookie_kdf_opslimit) + " " +
           std::to_string(cookie_kdf_memlimit) + " ";
}

struct memo_entry {
    std::array<std::uint8_t, 32> id{};      // BLAKE2b-256(params, cookie), in memory only
    std::array<std::uint8_t, 32> master{};
};

std::mutex memo_mu;
std::deque<memo_entry> memo;  // newest first, at most 16

std::array<std::uint8_t, 32> memo_id(std::string_view cookie) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, nullptr, 0, 32);
    auto p = cache_prefix();
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(p.data()), p.size());
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(cookie.data()), cookie.size());
    std::array<std::uint8_t, 32> out{};
    crypto_generichash_final(&st, out.data(), out.size());
    return out;
}

}  // namespace

std::array<std::uint8_t, 32> stretch_cookie(std::string_view cookie, const std::filesystem::path& cache_dir) {
    ensure_sodium();
    const auto id = memo_id(cookie);
    {
        std::lock_guard lk(memo_mu);
        for (auto& e : memo)
            if (sodium_memcmp(e.id.data(), id.data(), 32) == 0) {
                if (cache_dir.empty()) return e.master;
                break;  // known here; still make sure the key directory has it (below)
            }
    }
    std::array<std::uint8_t, 32> master{};
    bool have = false;
    std::vector<std::string> keep;  // the cache file's other lines
    const auto file = cache_dir.empty() ? std::filesystem::path() : cache_dir / "cookie.kdf";
    if (!cache_dir.empty()) {
        prepare_dir(cache_dir);
        if (auto text = read_secret_file(file)) {
            const std::string prefix = cache_prefix();
            std::size_t at = 0;
            while (at < text->size()) {
                std::size_t nl = text->find('\n', at);
                std::string line = text->substr(at, nl == std::string::npos ? std::string::npos : nl - at);
                at = nl == std::string::npos ? text->size() : nl + 1;
                if (line.empty()) continue;
                std::array<std::uint8_t, 32> m{}, tag{};
                if (!have && line.rfind(prefix, 0) == 0 && line.size() == prefix.size() + 129 &&
                    from_hex32(std::string_view(line).substr(prefix.size(), 64), tag) &&
                    from_hex32(std::string_view(line).substr(prefix.size() + 65, 64), m)) {
                    auto t = cache_tag(m, cookie);
                    if (sodium_memcmp(t.data(), tag.data(), 32) == 0) {
                        master = m;
                        have = true;
                        sodium_memzero(m.data(), m.size());
                        continue;
                    }
                }
                sodium_memzero(m.data(), m.size());
                if (keep.size() < 7) keep.push_back(line);
            }
            sodium_memzero(text->data(), text->size());
        }
    }
    const bool on_disk = have;
    if (!have) {
        std::lock_guard lk(memo_mu);
        for (auto& e : memo)
            if (sodium_memcmp(e.id.data(), id.data(), 32) == 0) {
                master = e.master;
                have = true;
            }
    }
    if (!have) {
        static_assert(sizeof cookie_kdf_salt - 1 == crypto_pwhash_SALTBYTES);
        if (crypto_pwhash(master.data(), master.size(), cookie.data(), cookie.size(),
                          reinterpret_cast<const unsigned char*>(cookie_kdf_salt), cookie_kdf_opslimit,
                          cookie_kdf_memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0)
            throw setup_error("kith: cannot stretch the cookie (Argon2id needs " +
                              std::to_string(cookie_kdf_memlimit >> 20) + " MiB of memory)");
    }
    if (!cache_dir.empty() && !on_disk) {
        auto tag = cache_tag(master, cookie);
        std::string content = cache_prefix() + to_hex(tag.data(), 32) + " " + to_hex(master.data(), 32) + "\n";
        for (auto& l : keep) content += l + "\n";
        // A cache only: a read-only key directory costs a recomputation at
        // the next start, which is worth a warning, not a refusal.
        if (auto w = platform::write_file_atomic(file, content, 0600); !w)
            log(log_level::warning, "keys",
                "cannot cache the stretched cookie (" + w.err().detail +
                    "); the next start recomputes it (about a second): make the key directory writable");
        sodium_memzero(content.data(), content.size());
    }
    for (auto& l : keep) sodium_memzero(l.data(), l.size());
    std::lock_guard lk(memo_mu);
    for (auto it = memo.begin(); it != memo.end(); ++it)
        if (sodium_memcmp(it->id.data(), id.data(), 32) == 0) {
            memo.erase(it);
            break;
        }
    memo.push_front(memo_entry{id, master});
    if (memo.size() > 16) {
        sodium_memzero(memo.back().master.data(), 32);
        memo.pop_back();
    }
    return master;
}

std::array<std::uint8_t, 32> derive_cookie_key(std::string_view cookie, std::string_view purpose) {
    ensure_sodium();
    auto master = stretch_cookie(cookie);
    // BLAKE2b-256 keyed with the master key over "kith-cookie-v2" 0x00 len(purpose) purpose
    crypto_generichash_state st;
    crypto_generichash_init(&st, master.data(), master.size(), 32);
    static const char tag[] = "kith-cookie-v2";
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(tag), sizeof tag);  // includes NUL
    unsigned char plen = static_cast<unsigned char>(purpose.size() > 255 ? 255 : purpose.size());
    crypto_generichash_update(&st, &plen, 1);
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(purpose.data()), plen);
    std::array<std::uint8_t, 32> out{};
    crypto_generichash_final(&st, out.data(), out.size());
    sodium_memzero(&st, sizeof st);
    sodium_memzero(master.data(), master.size());
    return out;
}

std::string weak_cookie_reason(std::string_view cookie) {
    if (cookie.size() < 12)
        return "it is only " + std::to_string(cookie.size()) + " character" + (cookie.size() == 1 ? "" : "s") +
               " long (fewer than 12)";
    int lower = 0, upper = 0, digit = 0, other = 0;
    for (char c : cookie) {
        if (c >= 'a' && c <= 'z') lower = 1;
        else if (c >= 'A' && c <= 'Z') upper = 1;
        else if (c >= '0' && c <= '9') digit = 1;
        else other = 1;
    }
    if (cookie.size() < 20 && lower + upper + digit + other == 1)
        return "it has " + std::to_string(cookie.size()) +
               " characters of a single kind (all lowercase, all uppercase, all digits or all symbols)";
    return {};
}

keypair cluster_keypair(std::string_view cookie) {
    auto seed = derive_cookie_key(cookie, "cluster-client-key");
    keypair kp = keypair::from_seed(seed);
    sodium_memzero(seed.data(), seed.size());
    return kp;
}

}  // namespace kith
