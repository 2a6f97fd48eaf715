// grants_io.cpp — see grants_io.hpp.
#include "grants/grants_io.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace kith::detail {

bool valid_grant_name(std::string_view s) noexcept {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::string format_utc(std::chrono::system_clock::time_point t) {
    std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

std::optional<std::chrono::system_clock::time_point> parse_utc(std::string_view s) {
    // Exactly YYYY-MM-DDTHH:MM:SSZ.
    if (s.size() != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[19] != 'Z')
        return std::nullopt;
    auto num = [&](std::size_t pos, std::size_t len) -> int {
        int v = 0;
        for (std::size_t i = pos; i < pos + len; ++i) {
            if (s[i] < '0' || s[i] > '9') return -1;
            v = v * 10 + (s[i] - '0');
        }
        return v;
    };
    int Y = num(0, 4), M = num(5, 2), D = num(8, 2), h = num(11, 2), m = num(14, 2), sec = num(17, 2);
    // Years past 2261 do not fit system_clock's nanoseconds: refused before
    // any arithmetic can overflow (found by tests/fuzz, fuzz_grants).
    if (Y < 1970 || Y > 2261 || M < 1 || M > 12 || D < 1 || D > 31 || h < 0 || h > 23 || m < 0 || m > 59 ||
        sec < 0 || sec > 60)
        return std::nullopt;
    std::tm tm{};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    std::time_t tt = timegm(&tm);
    if (tt == static_cast<std::time_t>(-1)) return std::nullopt;
    return std::chrono::system_clock::from_time_t(tt);
}

std::string checksum_hex(std::string_view text) {
    if (sodium_init() < 0) return {};
    unsigned char h[32];
    crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(text.data()), text.size(), nullptr, 0);
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < 16; ++i) {
        out.push_back(digits[h[i] >> 4]);
        out.push_back(digits[h[i] & 15]);
    }
    return out;
}

namespace {
std::string os_error(const std::string& what) { return what + ": " + std::strerror(errno); }
}  // namespace

result<void> write_file_atomic(const std::filesystem::path& file, std::string_view content, unsigned mode) {
    std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
    unsigned char rnd[8];
    if (sodium_init() < 0) return error{errc::badarg, "libsodium failed to initialise"};
    randombytes_buf(rnd, sizeof rnd);
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".tmp.%d.%02x%02x%02x%02x", static_cast<int>(::getpid()), rnd[0], rnd[1],
                  rnd[2], rnd[3]);
    std::string tmp = file.string() + suffix;
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return error{errc::badarg, os_error("cannot create " + tmp)};
    (void)::fchmod(fd, mode);
    const char* p = content.data();
    std::size_t left = content.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            auto e = os_error("cannot write " + tmp);
            ::close(fd);
            ::unlink(tmp.c_str());
            return error{errc::badarg, e};
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
        auto e = os_error("cannot fsync " + tmp);
        ::close(fd);
        ::unlink(tmp.c_str());
        return error{errc::badarg, e};
    }
    if (::close(fd) != 0) {
        auto e = os_error("cannot close " + tmp);
        ::unlink(tmp.c_str());
        return error{errc::badarg, e};
    }
    if (::rename(tmp.c_str(), file.c_str()) != 0) {
        auto e = os_error("cannot rename " + tmp + " to " + file.string());
        ::unlink(tmp.c_str());
        return error{errc::badarg, e};
    }
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);
        ::close(dfd);
    }
    return {};
}

result<std::string> read_small_file(const std::filesystem::path& file, std::size_t max_bytes) {
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return error{errc::badarg, os_error("cannot open " + file.string())};
    std::string text;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            auto e = os_error("cannot read " + file.string());
            ::close(fd);
            return error{errc::badarg, e};
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > max_bytes) {
            ::close(fd);
            sodium_memzero(buf, sizeof buf);
            return error{errc::decode, file.string() + " is larger than " + std::to_string(max_bytes) + " bytes"};
        }
    }
    ::close(fd);
    sodium_memzero(buf, sizeof buf);
    return text;
}

}  // namespace kith::detail
