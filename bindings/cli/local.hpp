// This machine's nodes: the local registry that `kith node` keeps in its key
// directory, so that every command finds the nodes of this machine by name
// wherever they listen (several nodes per machine, no port typed), with or
// without a network.
//
// <key dir>/run/<full name>   one file per running node (mode 0600, directory
// 0700), written when the node is ready and removed when it stops:
//   kith-node 1
//   name gandalf@pi1
//   port 4372                  its TCP port (reached at 127.0.0.1:<port>)
//   member_port 40123          its member port, if any (cluster members dial it:
//                              docs/security.md, "The member port"); older
//                              entries have none: members use `port` then
//   endpoint tcp://192.0.2.7:4372
//   key <Z85 public key>
//   pid 1234
//   cluster <cluster id: 8 hex, public; tells which cookie it uses>
// A file whose process is gone is stale: ignored and removed. Nothing in it
// is secret (the beacons carry the same).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "kith/keys.hpp"

namespace kith::cli {

struct local_node {
    std::string name;
    std::uint16_t port = 0;
    std::string endpoint;
    public_key key;
    pid_t pid = 0;
    std::string cluster;  // cluster id (cluster_id_of)
    std::uint16_t member_port = 0;  // 0: none (or an older kith's entry)
    std::string loopback() const { return "tcp://127.0.0.1:" + std::to_string(port); }
    // Where a member of its cluster dials it: the member port if it has one.
    std::string member_loopback() const {
        return member_port ? "tcp://127.0.0.1:" + std::to_string(member_port) : loopback();
    }
};

std::filesystem::path run_dir(const std::filesystem::path& key_dir);
// The live nodes registered in key_dir (stale entries removed), by name.
std::vector<local_node> running_nodes(const std::filesystem::path& key_dir);

// Writes the node's entry (atomically); the destructor removes it.
class registration {
public:
    registration(const std::filesystem::path& key_dir, const local_node& n);
    ~registration();
    registration(const registration&) = delete;
    registration& operator=(const registration&) = delete;
    bool ok() const { return ok_; }

private:
    std::filesystem::path file_;
    bool ok_ = false;
};

// 8 hex digits that name a cookie's cluster without revealing it (the public
// cluster id of its beacons): two nodes print the same id iff they share the
// cookie.
std::string cluster_id_of(std::string_view cookie);
std::string cluster_id_hex(const std::array<std::uint8_t, 32>& derived);

// The IPv4 addresses of this machine's interfaces that are up, non-loopback
// first ("192.0.2.7"); loopback ones only if `with_loopback`.
std::vector<std::string> lan_addresses(bool with_loopback = false);
bool is_loopback_endpoint(const std::string& ep);

}  // namespace kith::cli
