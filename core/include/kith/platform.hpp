// kith/platform.hpp — the operating-system glue shared by kith's components
// (core, discovery, the CLI): network interfaces, small private files, file
// locks. Implemented in core/src/platform/.
//
// NOT a stable user API: it is public only because discovery and the CLI are
// separate components that see core/include and nothing else, and the OS
// glue must exist once (one getifaddrs walk, one atomic writer, one check of
// a secret file). It may change with any release; applications should not
// include it.
//
// Errors: the functions return kith::result (never throw); each message
// names the file and says what to do. Thread-safety: all functions may be
// called from any thread; file_lock is a plain RAII object (one owner).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kith/error.hpp"

namespace kith::platform {

// --- network interfaces -----------------------------------------------------

// One IPv4 address of one interface (an interface with two addresses is
// listed twice). Addresses in network byte order, as in sockaddr_in.
struct ipv4_interface {
    std::string name;                        // "eth0"
    std::uint32_t address = 0;
    std::optional<std::uint32_t> broadcast;  // set when the interface is broadcast-capable
    bool up = false;                         // IFF_UP
    bool running = false;                    // IFF_RUNNING: has a carrier
    bool loopback = false;                   // IFF_LOOPBACK
};

// Every IPv4 address of every interface, in the kernel's order. Empty if the
// kernel cannot list them (getifaddrs failed: out of memory), which callers
// treat as "no interface now" and retry later.
std::vector<ipv4_interface> ipv4_interfaces();

// The names of all interfaces, any address family, each once, in the
// kernel's order (for error messages: "this machine has: lo, eth0").
std::vector<std::string> interface_names();

// "192.0.2.7" for an address in network byte order.
std::string ipv4_text(std::uint32_t address);

// --- small private files ----------------------------------------------------
// Key files, cookies, grant files and grant tables hold secrets: they are
// written atomically with their final mode, and read only when they are the
// user's own regular file, not a symbolic link, with no group or other bits.

// Writes `content` to `file` atomically: a temporary file in the same
// directory (created O_EXCL|O_NOFOLLOW with `mode`), fsync, rename over
// `file`, fsync of the directory. A crash at any point leaves either the old
// or the new file. errc::badarg with the OS error.
result<void> write_file_atomic(const std::filesystem::path& file, std::string_view content, unsigned mode = 0600);

// Creates `file` with `content` and `mode` unless it exists, without ever
// overwriting (temporary file, fsync, link(2)): of several processes creating
// it at once exactly one wins. true if this call created it, false if it
// existed already (read that one). errc::badarg with the OS error.
result<bool> create_file_once(const std::filesystem::path& file, std::string_view content, unsigned mode = 0600);

// Reads a whole file of at most `max_bytes`, with no ownership checks (files
// that hold no secret, or that were checked already). errc::badarg with the
// OS error, errc::decode if it is larger.
result<std::string> read_small_file(const std::filesystem::path& file, std::size_t max_bytes);

// Reads a whole private file of at most `max_bytes`: refused (errc::badarg,
// with the fix in the message) if it is a symbolic link, not a regular file,
// owned by another user, or has any group/other permission bit; the checks
// are made on the opened descriptor, so the file cannot be swapped between
// the check and the read. nullopt if it does not exist; errc::decode if it is
// larger. `what` names it in messages ("secret file", "grant file").
result<std::optional<std::string>> read_private_file(const std::filesystem::path& file, std::size_t max_bytes,
                                                     std::string_view what);

// Checks the file at `file` without reading it (lstat): the same refusals as
// read_private_file. Ok if it does not exist.
result<void> check_private_file(const std::filesystem::path& file, std::string_view what);

// Makes `dir` a private directory: creates it (and its parents) mode 0700 if
// missing, then refuses (errc::badarg, with the fix in the message) a path
// that is a symbolic link, not a directory, owned by another user, or
// writable by group or others (someone could replace what is in it); removes
// read/search bits of group and others. `what` names it ("key directory").
result<void> prepare_private_dir(const std::filesystem::path& dir, std::string_view what);

// An exclusive flock(2) on `path` (created 0600, never through a symbolic
// link) for the lifetime of the object: writers in this process or another
// wait for each other. Blocks until the lock is held. ok() is false when the
// lock file cannot be opened (the caller then proceeds unlocked or fails).
class file_lock {
public:
    explicit file_lock(const std::filesystem::path& path);
    ~file_lock();
    file_lock(const file_lock&) = delete;
    file_lock& operator=(const file_lock&) = delete;
    bool ok() const noexcept { return fd_ >= 0; }

private:
    int fd_ = -1;
};

// --- endpoints as people type them ------------------------------------------

// What an endpoint given by a person is for: where to listen (port 0: any
// free port), where to dial (port 1..65535), or a host to dial whose port may
// be left out (discovery's static peers).
enum class endpoint_use { listen, dial, dial_port_optional };

// An endpoint given as "tcp://HOST:PORT" or "HOST:PORT" (the same thing);
// HOST an IPv4 address, a host or interface name, or "*" (every interface;
// for endpoint_use::listen only).
struct tcp_endpoint {
    std::string host;
    std::optional<std::uint16_t> port;  // absent only with dial_port_optional
    std::string zmq() const;            // "tcp://HOST:PORT", what a node binds or dials
    std::string host_port() const;      // "HOST:PORT" ("HOST" without a port)
};

// The one parser of endpoints typed on a command line or passed to the
// Python binding. "[IPV6]:PORT" is recognised and refused: kith's
// transport, discovery and relay are IPv4 only. errc::badarg with a detail
// that quotes the text, says what is wrong and shows an example.
result<tcp_endpoint> parse_tcp_endpoint(std::string_view text, endpoint_use use);

}  // namespace kith::platform
