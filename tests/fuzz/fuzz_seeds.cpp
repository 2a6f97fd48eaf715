// fuzz_seeds <docs/protocol.md> <out dir>: writes the seed corpora of the
// fuzz targets into <out dir>/<target>/, from the golden vectors of
// docs/protocol.md (```golden, ```membership and ```beacon-golden blocks), so
// the seeds follow the document, and from sample grant files and grant tables
// made with the library (deterministic keys). Run by `./dev fuzz`.
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "grants/grants_table.hpp"
#include "kith/envelope.hpp"
#include "kith/grants.hpp"
#include "kith/keys.hpp"

namespace fs = std::filesystem;
using namespace kith;

namespace {

fs::path out_dir;
int written = 0;

void put(const std::string& target, std::string name, const std::string& bytes) {
    for (auto& ch : name)
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '.') ch = '_';
    fs::create_directories(out_dir / target);
    std::ofstream(out_dir / target / name, std::ios::binary) << bytes;
    ++written;
}

// "c14b 03 00 | 93 0f" -> bytes; "pad N" zero-fills up to N bytes.
bool unhex(const std::string& text, std::string& out) {
    std::string digits;
    std::size_t i = 0;
    while (i < text.size()) {
        if (text.compare(i, 4, "pad ") == 0) {
            if (digits.size() % 2) return false;
            for (std::size_t k = 0; k < digits.size(); k += 2) out += static_cast<char>(std::stoi(digits.substr(k, 2), nullptr, 16));
            digits.clear();
            std::size_t n = std::stoul(text.substr(i + 4));
            if (out.size() < n) out.append(n - out.size(), '\0');
            return true;
        }
        char ch = text[i++];
        if (std::isxdigit(static_cast<unsigned char>(ch))) digits += ch;
        else if (ch != ' ' && ch != '|') return false;
    }
    if (digits.size() % 2) return false;
    for (std::size_t k = 0; k < digits.size(); k += 2) out += static_cast<char>(std::stoi(digits.substr(k, 2), nullptr, 16));
    return true;
}

// Lines of every ```<fence> block.
std::vector<std::string> block(const fs::path& doc, const std::string& fence) {
    std::ifstream in(doc);
    std::vector<std::string> out;
    std::string line;
    bool inside = false;
    while (std::getline(in, line)) {
        if (!inside) {
            inside = line == "```" + fence;
            continue;
        }
        if (line == "```") {
            inside = false;
            continue;
        }
        if (!line.empty()) out.push_back(line);
    }
    return out;
}

const std::string frame_header = std::string{'\xc1', '\x4b', static_cast<char>(protocol_version), '\0'};
// Control bytes of fuzz_handshake (the input's last 8 bytes): a few identities.
const std::vector<std::string> controls = {
    std::string(8, '\0'),                                    // cluster claimant, no holder
    std::string("\x04\x01\x00\x00\x00\x00\x00\x00", 8),      // cluster with key; a cluster holder
    std::string("\x01\x1d\x01\x00\x00\x00\x00\x00", 8),      // grant; holder grant; reserved
    std::string("\x06\x05\x04\x01\x00\x00\x00\x00", 8),      // stranger with key; dialled key
    std::string("\x07\x91\x02\x00\x00\x00\x00\x00", 8),      // server; holder cluster with key
};

void golden_vectors(const fs::path& doc) {
    std::map<std::string, std::string> kv;  // membership block
    for (auto& l : block(doc, "membership")) {
        auto c = l.find(": ");
        if (c != std::string::npos) kv[l.substr(0, c)] = l.substr(c + 2);
    }
    int n = 0;
    for (auto& l : block(doc, "golden")) {
        auto sp = l.find(' '), colon = l.find(": ");
        if (sp == std::string::npos || colon == std::string::npos) continue;
        std::string kind = l.substr(0, sp), name = l.substr(sp + 1, colon - sp - 1), bytes;
        if (!unhex(l.substr(colon + 2), bytes)) {
            std::cerr << "fuzz_seeds: cannot read golden line: " << l << "\n";
            continue;
        }
        ++n;
        put("frame", kind + "_" + name, bytes);
        if (kind == "envelope") put("frame", "framed_" + name, frame_header + bytes);
        if (kind == "term") {  // a term as the message of a send
            env_send s;
            s.to = pid{"a@h", 42};
            if (auto t = decode(bytes)) s.msg = *t;
            put("frame", "send_of_" + name, encode_frame(s));
        }
        if (kind == "frame" || kind == "reject")
            put("handshake", kind + "_" + name, bytes + controls[0]);
        if (kind == "envelope" && name == "handshake")
            for (std::size_t i = 0; i < controls.size(); ++i)
                put("handshake", "golden_handshake_" + std::to_string(i), frame_header + bytes + controls[i]);
    }
    // The membership vector as a handshake exchange: the client's handshake
    // with its nonce, then the server's with its key and proof.
    auto pk = [](const std::string& h) { std::string b; unhex(h, b); return b; };
    env_handshake client, server;
    client.node = "client@h";
    client.creation = 1;
    client.key = cluster_keypair(kv["cookie"]).pub.z85();
    client.nonce = pk(kv["nonce"]);
    server.node = "server@h";
    server.creation = 2;
    server.services = {"kvs", "echo"};
    server.key = kv["server key"];
    server.proof = pk(kv["proof"]);
    frame_builder fb;
    fb.add(client);
    fb.add(server);
    std::string two = fb.take();
    for (std::size_t i = 0; i < controls.size(); ++i) put("handshake", "membership_" + std::to_string(i), two + controls[i]);
    put("frame", "membership_exchange", two);
    env_handshake both = server;
    both.nonce = client.nonce;
    put("handshake", "membership_single", encode_frame(both) + controls[1]);
    if (kv.size() < 7 || n == 0) std::cerr << "fuzz_seeds: the golden or membership blocks were not found in " << doc << "\n";

    int b = 0;
    for (auto& l : block(doc, "beacon-golden")) {
        auto sp = l.find(' '), colon = l.find(": ");
        if (sp == std::string::npos || colon == std::string::npos) continue;
        std::string bytes;
        if (!unhex(l.substr(colon + 2), bytes)) {
            std::cerr << "fuzz_seeds: cannot read beacon line: " << l << "\n";
            continue;
        }
        ++b;
        put("beacon", l.substr(0, sp) + "_" + l.substr(sp + 1, colon - sp - 1), bytes);
    }
    if (b == 0) std::cerr << "fuzz_seeds: no beacon-golden block in " << doc << "\n";
}

keypair key_of(std::uint8_t n) {
    std::array<std::uint8_t, 32> seed{};
    seed.fill(n);
    return keypair::from_seed(seed);
}

void grant_samples() {
    using namespace std::chrono;
    const auto expiry = sys_days{year{2030} / 1 / 2} + hours{3};
    grant_file g;
    g.node = "alice@pi1";
    g.endpoints = {"tcp://192.0.2.7:4370"};
    g.server_key = key_of(1).pub;
    g.client = key_of(2);
    g.label = "bob";
    g.allow = {{"kvs", {}}, {"echo", {"echo"}}};
    g.rate = {10, 20};
    put("grants", "file_basic", g.to_text());
    g.expires = expiry;
    g.endpoints.push_back("tcp://[::1]:4370");
    g.endpoints.push_back("tcp://pi1.local:4371");
    g.rate = {0, 0};  // unlimited
    g.allow = {{"demo", {"rpc_server", "worker.v2"}}, {"kvs", {"store", "fetch"}}};
    put("grants", "file_expires", g.to_text());
    g.rate = {0.5, 1};
    g.label = "a.b_c-9";
    g.node = "x@y";
    put("grants", "file_slow", g.to_text());
    g.limits = {.pending = 8, .spawned = 4, .queued_bytes = 1048576, .relations = 100};  // version 3
    put("grants", "file_limits", g.to_text());
    g.relays = {{"relay@vps", "tcp://203.0.113.5:4370", key_of(3).pub}};
    g.limits = {.pending = 1};
    put("grants", "file_limits_relay", g.to_text());

    std::vector<std::shared_ptr<detail::grant_entry>> rows;
    for (std::uint8_t i = 0; i < 3; ++i) {
        auto e = std::make_shared<detail::grant_entry>();
        e->label = std::string("grantee") + char('a' + i);
        e->key = key_of(static_cast<std::uint8_t>(10 + i)).pub;
        e->allow = i == 0 ? grant_scope{{"kvs", {}}} : grant_scope{{"echo", {"echo"}}, {"kvs", {"store"}}};
        e->created = sys_days{year{2026} / 3 / 1};
        if (i == 1) e->expires = expiry;
        e->set_rate(i == 2 ? rate_limit{0, 0} : rate_limit{5, 7});
        e->revoked = i == 2;
        if (i == 0) e->set_limits({.pending = 8, .queued_bytes = 65536});
        rows.push_back(e);
        put("grants", "table_" + std::to_string(i + 1), detail::grant_table::to_text(rows));
    }
    put("grants", "table_empty", detail::grant_table::to_text({}));
    put("grants", "scope", "demo:rpc_server,echo:echo,kvs");
    put("grants", "rate", "10/s,burst=20");
    put("grants", "limits", "pending=8,spawned=4,queued=1048576,relations=100");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::cerr << "usage: fuzz_seeds <docs/protocol.md> <out dir>\n";
        return 2;
    }
    out_dir = argv[2];
    golden_vectors(argv[1]);
    grant_samples();
    std::cout << "fuzz_seeds: " << written << " seeds in " << out_dir.string() << "\n";
    return 0;
}
