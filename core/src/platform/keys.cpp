// keys.cpp — CURVE keys, the key directory and the cookie (see kith/keys.hpp).
#include "kith/keys.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "kith/error.hpp"

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
    if (text.size() != 40) return std::nullopt;
    char in[41];
    std::memcpy(in, text.data(), 40);
    in[40] = '\0';
    std::array<std::uint8_t, 32> b{};
    if (!zmq_z85_decode(b.data(), in)) return std::nullopt;
    return b;
}

std::string errno_text() { return std::strerror(errno); }

// Creates `dir` (0700) if missing; refuses a directory writable by group or
// others or owned by someone else.
void prepare_dir(const std::filesystem::path& dir) {
    std::error_code ec;
    bool created = std::filesystem::create_directories(dir, ec);
    if (ec) throw setup_error("kith: cannot create key directory " + dir.string() + ": " + ec.message());
    if (created) (void)::chmod(dir.c_str(), 0700);
    struct stat st{};
    if (::stat(dir.c_str(), &st) != 0)
        throw setup_error("kith: cannot stat key directory " + dir.string() + ": " + errno_text());
    if (!S_ISDIR(st.st_mode)) throw setup_error("kith: key directory " + dir.string() + " is not a directory");
    if (st.st_uid != ::geteuid())
        throw setup_error("kith: key directory " + dir.string() + " is owned by another user");
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        throw setup_error("kith: key directory " + dir.string() +
                          " is writable by group or others (someone could replace the keys); run: chmod 700 " +
                          dir.string());
    if ((st.st_mode & 077) != 0) (void)::chmod(dir.c_str(), 0700);  // no reading by others either
}

// Reads a small secret file, refusing loose permissions. nullopt if absent.
std::optional<std::string> read_secret_file(const std::filesystem::path& file) {
    int fd = ::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return std::nullopt;
        throw setup_error("kith: cannot open " + file.string() + ": " + errno_text());
    }
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        throw setup_error("kith: cannot stat " + file.string() + ": " + errno_text());
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw setup_error("kith: " + file.string() + " is not a regular file");
    }
    if (st.st_uid != ::geteuid()) {
        ::close(fd);
        throw setup_error("kith: secret file " + file.string() + " is owned by another user");
    }
    if ((st.st_mode & 077) != 0) {
        ::close(fd);
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw setup_error("kith: secret file " + file.string() + " has mode " + mode +
                          " (readable or writable by others); it must be 0600. Run: chmod 600 " +
                          file.string());
    }
    std::string text;
    char buf[256];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ::close(fd);
            throw setup_error("kith: cannot read " + file.string() + ": " + errno_text());
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > 4096) {
            ::close(fd);
            throw setup_error("kith: " + file.string() + " is too large to be a kith key file");
        }
    }
    ::close(fd);
    sodium_memzero(buf, sizeof buf);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
    return text;
}

// Writes `content` to `file` mode 0600 unless it already exists. Returns false
// if another writer created it first (the caller then reads that one).
bool create_file_0600(const std::filesystem::path& file, const std::string& content) {
    std::string tmp = file.string() + ".tmp." + std::to_string(::getpid()) + "." +
                      std::to_string(randombytes_random());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) throw setup_error("kith: cannot create " + tmp + ": " + errno_text());
    (void)::fchmod(fd, 0600);
    const char* p = content.data();
    std::size_t left = content.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            ::close(fd);
            ::unlink(tmp.c_str());
            throw setup_error("kith: cannot write " + tmp + ": " + errno_text());
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        ::unlink(tmp.c_str());
        throw setup_error("kith: cannot write " + tmp + ": " + errno_text());
    }
    int rc = ::link(tmp.c_str(), file.c_str());
    int saved = errno;
    ::unlink(tmp.c_str());
    if (rc != 0) {
        if (saved == EEXIST) return false;
        errno = saved;
        throw setup_error("kith: cannot create " + file.string() + ": " + errno_text());
    }
    return true;
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

std::array<std::uint8_t, 32> derive_cookie_key(std::string_view cookie, std::string_view purpose) {
    ensure_sodium();
    // BLAKE2b-256( "kith-cookie-v1" 0x00 len(purpose) purpose cookie )
    crypto_generichash_state st;
    crypto_generichash_init(&st, nullptr, 0, 32);
    static const char tag[] = "kith-cookie-v1";
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(tag), sizeof tag);  // includes NUL
    unsigned char plen = static_cast<unsigned char>(purpose.size() > 255 ? 255 : purpose.size());
    crypto_generichash_update(&st, &plen, 1);
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(purpose.data()), plen);
    crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(cookie.data()), cookie.size());
    std::array<std::uint8_t, 32> out{};
    crypto_generichash_final(&st, out.data(), out.size());
    sodium_memzero(&st, sizeof st);
    return out;
}

keypair cluster_keypair(std::string_view cookie) {
    auto seed = derive_cookie_key(cookie, "cluster-client-key");
    keypair kp = keypair::from_seed(seed);
    sodium_memzero(seed.data(), seed.size());
    return kp;
}

}  // namespace kith
