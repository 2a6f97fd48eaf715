#include "local.hpp"

#include <kith/platform.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace kith::cli {

namespace fs = std::filesystem;

fs::path run_dir(const fs::path& key_dir) { return key_dir / "run"; }

namespace {

bool alive(pid_t p) { return p > 0 && (::kill(p, 0) == 0 || errno == EPERM); }

std::optional<local_node> read_entry(const fs::path& f) {
    std::ifstream in(f);
    std::string line, magic;
    if (!std::getline(in, magic) || magic != "kith-node 1") return std::nullopt;
    local_node n;
    while (std::getline(in, line)) {
        auto sp = line.find(' ');
        if (sp == std::string::npos) continue;
        std::string k = line.substr(0, sp), v = line.substr(sp + 1);
        try {
            if (k == "name") n.name = v;
            else if (k == "port") n.port = static_cast<std::uint16_t>(std::stoul(v));
            else if (k == "endpoint") n.endpoint = v;
            else if (k == "member_port") n.member_port = static_cast<std::uint16_t>(std::stoul(v));
            else if (k == "pid") n.pid = static_cast<pid_t>(std::stol(v));
            else if (k == "cluster") n.cluster = v;
            else if (k == "key") {
                auto key = public_key::from_z85(v);
                if (!key) return std::nullopt;
                n.key = *key;
            }
        } catch (...) {
            return std::nullopt;
        }
    }
    if (n.name.empty() || n.port == 0 || n.pid <= 0) return std::nullopt;
    return n;
}

}  // namespace

std::vector<local_node> running_nodes(const fs::path& key_dir) {
    std::vector<local_node> out;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(run_dir(key_dir), ec)) {
        if (!e.is_regular_file(ec)) continue;
        auto n = read_entry(e.path());
        if (!n) continue;
        if (!alive(n->pid)) {
            fs::remove(e.path(), ec);  // stale: its node was killed
            continue;
        }
        out.push_back(std::move(*n));
    }
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
    return out;
}

registration::registration(const fs::path& key_dir, const local_node& n) {
    fs::path dir = run_dir(key_dir);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return;
    file_ = dir / n.name;
    std::ostringstream s;
    s << "kith-node 1\nname " << n.name << "\nport " << n.port << "\nendpoint " << n.endpoint << "\nkey "
      << n.key.z85() << "\npid " << n.pid << "\ncluster " << n.cluster << "\n";
    if (n.member_port) s << "member_port " << n.member_port << "\n";
    ok_ = platform::write_file_atomic(file_, s.str()).ok();
}

registration::~registration() {
    if (!ok_) return;
    // Only our own entry: another process may have registered the name since.
    if (auto n = read_entry(file_); n && n->pid == ::getpid()) {
        std::error_code ec;
        fs::remove(file_, ec);
    }
}

std::string cluster_id_hex(const std::array<std::uint8_t, 32>& d) {
    char buf[9];
    std::snprintf(buf, sizeof buf, "%02x%02x%02x%02x", d[0], d[1], d[2], d[3]);
    return buf;
}

std::string cluster_id_of(std::string_view cookie) {
    return cluster_id_hex(derive_cookie_key(cookie, "beacon-cluster-id"));
}

std::vector<std::string> lan_addresses(bool with_loopback) {
    std::vector<std::string> out, loop;
    for (const auto& i : platform::ipv4_interfaces()) {
        if (!i.up) continue;
        std::string text = platform::ipv4_text(i.address);
        auto& list = i.loopback ? loop : out;
        if (std::find(list.begin(), list.end(), text) == list.end()) list.push_back(text);
    }
    if (with_loopback) out.insert(out.end(), loop.begin(), loop.end());
    return out;
}

bool is_loopback_endpoint(const std::string& ep) {
    auto rest = ep.rfind("tcp://", 0) == 0 ? ep.substr(6) : ep;
    return rest.rfind("127.", 0) == 0 || rest.rfind("localhost:", 0) == 0 || rest.rfind("[::1]", 0) == 0;
}

}  // namespace kith::cli
