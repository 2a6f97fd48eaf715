// files.cpp — small private files and file locks (kith/platform.hpp): the one
// atomic writer, the one check of a secret file, the one flock, shared by
// the key directory (keys.cpp), grant files and the grant table (grants/).
#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "kith/platform.hpp"

namespace kith::platform {
namespace {

error os_error(const std::string& what) { return error{errc::badarg, what + ": " + std::strerror(errno)}; }

std::string mode_text(mode_t m) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
    return buf;
}

// Why `st` (of `file`, seen without following a link) is not a private file
// of ours; ok if it is.
result<void> private_file_ok(const struct stat& st, const std::filesystem::path& file, std::string_view what) {
    const std::string f = file.string(), w(what);
    if (S_ISLNK(st.st_mode))
        return error{errc::badarg, w + " " + f + " is a symbolic link; kith does not follow links to secrets: "
                                       "give the file itself (move it here, or point kith at where it is)"};
    if (!S_ISREG(st.st_mode)) return error{errc::badarg, w + " " + f + " is not a regular file"};
    if (st.st_uid != ::geteuid())
        return error{errc::badarg, w + " " + f + " is owned by another user (uid " + std::to_string(st.st_uid) +
                                       "): copy it to a file of your own and run: chmod 600 FILE"};
    if ((st.st_mode & 077) != 0)
        return error{errc::badarg, w + " " + f + " has mode " + mode_text(st.st_mode) +
                                       " (readable or writable by others) and holds a secret; it must be 0600. "
                                       "Run: chmod 600 " + f};
    return {};
}

// A fresh temporary file next to `file`, holding `content` with `mode`,
// written and fsynced. Its path, or the error (nothing left behind).
result<std::string> write_temp(const std::filesystem::path& file, std::string_view content, unsigned mode) {
    if (sodium_init() < 0) return error{errc::badarg, "libsodium failed to initialise"};
    unsigned char rnd[4];
    randombytes_buf(rnd, sizeof rnd);
    char suffix[40];
    std::snprintf(suffix, sizeof suffix, ".tmp.%d.%02x%02x%02x%02x", static_cast<int>(::getpid()), rnd[0], rnd[1],
                  rnd[2], rnd[3]);
    std::string tmp = file.string() + suffix;
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return os_error("cannot create " + tmp);
    (void)::fchmod(fd, mode);  // the umask may have taken bits away; never adds any the caller did not ask for
    auto fail = [&](const std::string& what) {
        error e = os_error(what + " " + tmp);
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        return e;
    };
    const char* p = content.data();
    std::size_t left = content.size();
    while (left > 0) {
        ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail("cannot write");
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) return fail("cannot fsync");
    int rc = ::close(fd);
    fd = -1;
    if (rc != 0) return fail("cannot close");
    return tmp;
}

void fsync_dir(const std::filesystem::path& file) {
    std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);  // best effort: the rename is already visible
        ::close(dfd);
    }
}

// Reads what is left of `fd` (at most max_bytes); closes nothing.
result<std::string> read_all(int fd, const std::filesystem::path& file, std::size_t max_bytes) {
    std::string text;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            sodium_memzero(buf, sizeof buf);
            sodium_memzero(text.data(), text.size());
            return os_error("cannot read " + file.string());
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > max_bytes) {
            sodium_memzero(buf, sizeof buf);
            sodium_memzero(text.data(), text.size());
            return error{errc::decode, file.string() + " is larger than " + std::to_string(max_bytes) + " bytes"};
        }
    }
    sodium_memzero(buf, sizeof buf);
    return text;
}

}  // namespace

result<void> write_file_atomic(const std::filesystem::path& file, std::string_view content, unsigned mode) {
    auto tmp = write_temp(file, content, mode);
    if (!tmp) return tmp.err();
    if (::rename(tmp->c_str(), file.c_str()) != 0) {
        error e = os_error("cannot rename " + *tmp + " to " + file.string());
        ::unlink(tmp->c_str());
        return e;
    }
    fsync_dir(file);
    return {};
}

result<bool> create_file_once(const std::filesystem::path& file, std::string_view content, unsigned mode) {
    auto tmp = write_temp(file, content, mode);
    if (!tmp) return tmp.err();
    int rc = ::link(tmp->c_str(), file.c_str());  // fails with EEXIST, never replaces
    int saved = errno;
    ::unlink(tmp->c_str());
    if (rc != 0) {
        if (saved == EEXIST) return false;
        errno = saved;
        return os_error("cannot create " + file.string());
    }
    fsync_dir(file);
    return true;
}

result<std::string> read_small_file(const std::filesystem::path& file, std::size_t max_bytes) {
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return os_error("cannot open " + file.string());
    auto r = read_all(fd, file, max_bytes);
    ::close(fd);
    return r;
}

result<std::optional<std::string>> read_private_file(const std::filesystem::path& file, std::size_t max_bytes,
                                                     std::string_view what) {
    int fd = ::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT) return std::optional<std::string>{};
        if (errno == ELOOP) {  // O_NOFOLLOW met a link: say so, not "too many levels of symbolic links"
            struct stat st{};
            if (::lstat(file.c_str(), &st) == 0) {
                if (auto ok = private_file_ok(st, file, what); !ok) return ok.err();
            }
        }
        return os_error("cannot open " + std::string(what) + " " + file.string());
    }
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
        error e = os_error("cannot stat " + file.string());
        ::close(fd);
        return e;
    }
    if (auto ok = private_file_ok(st, file, what); !ok) {
        ::close(fd);
        return ok.err();
    }
    auto r = read_all(fd, file, max_bytes);
    ::close(fd);
    if (!r) return r.err();
    return std::optional<std::string>(std::move(*r));
}

result<void> check_private_file(const std::filesystem::path& file, std::string_view what) {
    struct stat st{};
    if (::lstat(file.c_str(), &st) != 0) {
        if (errno == ENOENT) return {};
        return os_error("cannot stat " + std::string(what) + " " + file.string());
    }
    return private_file_ok(st, file, what);
}

result<void> prepare_private_dir(const std::filesystem::path& path, std::string_view what) {
    // "dir/" would make lstat follow a link named dir: look at "dir" itself.
    const std::filesystem::path dir = path.has_filename() || !path.has_parent_path() ? path : path.parent_path();
    const std::string d = dir.string(), w(what);
    struct stat st{};
    if (::lstat(dir.c_str(), &st) != 0) {
        if (errno != ENOENT) return os_error("cannot stat " + w + " " + d);
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        if (ec) return error{errc::badarg, "cannot create " + w + " " + d + ": " + ec.message()};
        (void)::chmod(dir.c_str(), 0700);
        if (::lstat(dir.c_str(), &st) != 0) return os_error("cannot stat " + w + " " + d);
    }
    // A link is refused even when it points at a good directory: whoever can
    // change the link (or a directory on its way) chooses our keys.
    if (S_ISLNK(st.st_mode)) {
        std::error_code ec;
        auto target = std::filesystem::read_symlink(dir, ec);
        return error{errc::badarg, w + " " + d + " is a symbolic link" +
                                       (ec ? std::string() : " (to " + target.string() + ")") +
                                       "; kith does not follow a link to its keys: give the real directory "
                                       "(--key-dir, key_dir or KITH_HOME) or replace the link by a directory"};
    }
    if (!S_ISDIR(st.st_mode)) return error{errc::badarg, w + " " + d + " is not a directory"};
    if (st.st_uid != ::geteuid())
        return error{errc::badarg, w + " " + d + " is owned by another user (uid " + std::to_string(st.st_uid) +
                                       "); use a directory of your own (--key-dir, key_dir or KITH_HOME)"};
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return error{errc::badarg, w + " " + d + " has mode " + mode_text(st.st_mode) +
                                       " and is writable by group or others (someone could replace the keys); run: "
                                       "chmod 700 " + d};
    if ((st.st_mode & 077) != 0) (void)::chmod(dir.c_str(), 0700);  // no reading by others either
    return {};
}

file_lock::file_lock(const std::filesystem::path& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ >= 0)
        while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {}
}

file_lock::~file_lock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
}

}  // namespace kith::platform
