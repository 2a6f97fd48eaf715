// kith_adversary — a hostile peer in its own OS process (issue 12). It speaks
// the kith wire protocol itself over raw libzmq sockets with real CURVE: it
// never uses kith::node or kith's transport for its connections, only kith's
// codec (terms, frames) and key helpers. Driven line by line on stdin by
// tests/adversary/test_adversary.cpp; one answer line per command.
//
// Connections have a short id chosen by the test. Envelopes are written as
// terms in the text form of kith::term::to_string, exactly the msgpack array
// of docs/protocol.md section 5: [type, field1, ...], for example
//   [6, 7, <null>, "kvs", "store", ["k", "v"], 5000]      a call
//   [2, <victim@localhost.3>, [<mallory@localhost.1>, "x"]] a send
// (strings "..", integers, floats with a dot, nil, true, false, [..],
// {K => V, ..}, pids <node.serial> / <null>, refs #Ref<node.id> / #Ref<null>).
//
//   dial ID NAME grant FILE [EP]            connect as the grantee of FILE (at EP)
//   dial ID NAME stranger EP Z85KEY [ID2]   connect with a fresh keypair (or
//        with connection ID2's keypair: a second session of one stranger key)
//   dial ID NAME cookie COOKIE EP Z85KEY    connect with the cluster key of COOKIE
//        -> "dial ID ok PEER proof=empty|valid|invalid|len<N>"
//           | "dial ID goodbye REASON" | "dial ID auth_failed STATUS" | "dial ID timeout"
//        Our handshake claims node name NAME and carries a fresh 16-byte nonce.
//        proof=valid|invalid is checked (cookie mode) against docs/protocol.md:
//        BLAKE2b-256 keyed with derive_cookie_key(cookie, "member-proof") over
//        "kith-member-proof-v1" || server key || our key || our nonce.
//   listen ID NAME none|garbage             a ROUTER (CURVE server, our own ZAP
//        handler accepting any key) that answers an inbound handshake with ours,
//        whose proof is empty (none) or 32 random bytes (garbage)
//        -> "listen ID ok EP Z85KEY"
//   accept ID MS                            -> "accept ID ok PEER" | "accept ID timeout"
//   zapkeys ID                              -> "zapkeys ID K1,K2,..." client keys ZAP saw
//   send ID TERM                            -> "sent" | "send error WHY"
//   sendrange ID FROM TO TEMPLATE           TEMPLATE with every $N replaced by
//        FROM..TO (inclusive), one envelope per frame -> "sent N"
//   expect ID TYPE MS [IDX=TEXT ...]        the next unconsumed envelope of TYPE
//        whose element IDX prints as TEXT -> "got T | F1 | F2 ..." | "got timeout"
//   collect ID TYPE N MS IDX                up to N envelopes of TYPE (waits for N
//        at most MS) -> "collect K V1:C1,V2:C2" (histogram of element IDX)
//   seen ID TYPE                            -> "seen N" (all envelopes of TYPE ever
//        received on ID, consumed or not)
//   close ID                                -> "closed"
//   flood, floodn, dialflood, udpflood      load mode: see adversary_load.hpp
//   quit
// Heartbeat probes go out every 400 ms on every established connection and
// the peer's probes are answered. At start it prints "READY".
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sodium.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "kith/envelope.hpp"
#include "kith/grants.hpp"
#include "kith/keys.hpp"
#include "kith/term.hpp"
#include "term_text.hpp"
#include "udp_sockets.hpp"

using namespace kith;
using clock_type = std::chrono::steady_clock;

namespace {

using adv_text::parse_term;

void out(const std::string& line) {
    std::cout << line << std::endl;
}

std::string frame_of(const term& envelope_term) {
    std::string f{'\xc1', '\x4b', static_cast<char>(protocol_version), '\0'};
    encode(envelope_term, f);
    return f;
}

std::string bytes_of(const term* t) {
    if (!t) return {};
    if (auto* b = t->get_if<binary>()) return std::string(reinterpret_cast<const char*>(b->bytes.data()), b->bytes.size());
    return {};
}

std::string random_bytes(std::size_t n) {
    std::string s(n, '\0');
    randombytes_buf(s.data(), n);
    return s;
}

std::string member_proof(std::string_view cookie, const public_key& server, const public_key& client,
                         const std::string& client_nonce) {
    auto k = derive_cookie_key(cookie, "member-proof");
    std::string msg = "kith-member-proof-v1";
    msg.append(reinterpret_cast<const char*>(server.bytes.data()), 32);
    msg.append(reinterpret_cast<const char*>(client.bytes.data()), 32);
    msg += client_nonce;
    unsigned char h[32];
    crypto_generichash(h, 32, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), k.data(), k.size());
    return std::string(reinterpret_cast<const char*>(h), 32);
}

std::uint64_t now_ms() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

#include "adversary_conns.hpp"

std::string join_fields(const term& t) {
    std::string s;
    const term_array& a = *t.as_array();
    for (std::size_t i = 0; i < a.size(); ++i) s += (i ? " | " : "") + a[i].to_string();
    return s;
}

void cmd_dial(const std::vector<std::string>& w) {
    // dial ID NAME MODE ...
    const std::string& id = w[1];
    if (auto it = g_conns.find(id); it != g_conns.end()) {
        close_conn(*it->second);
        g_conns.erase(it);
    }
    std::optional<keypair> same;  // stranger mode: another connection's keypair
    if (w.size() == 7 && w[3] == "stranger") {
        auto it = g_conns.find(w[6]);
        if (it == g_conns.end()) return out("dial " + id + " error no connection " + w[6]);
        same = it->second->client;
    }
    conn& c = get_conn(id);
    c.name = w[2];
    std::string ep;
    const std::string& mode = w[3];
    if (mode == "grant" && (w.size() == 5 || w.size() == 6)) {
        auto g = grant_file::load(w[4]);
        if (!g) return out("dial " + id + " error " + g.err().detail);
        ep = w.size() == 6 ? w[5] : g->endpoints.at(0);
        c.server = g->server_key;
        c.client = g->client;
    } else if (mode == "stranger" && (w.size() == 6 || w.size() == 7)) {
        ep = w[4];
        c.server = public_key::from_z85(w[5]).value_or(public_key{});
        c.client = same ? *same : keypair::generate();
    } else if (mode == "cookie" && w.size() == 7) {
        c.cookie = w[4];
        ep = w[5];
        c.server = public_key::from_z85(w[6]).value_or(public_key{});
        c.client = cluster_keypair(w[4]);
    } else {
        return out("dial " + id + " error bad arguments");
    }
    if (!open_dealer(c, ep)) return out("dial " + id + " error cannot connect to " + ep);
    pump_until(5000, [&] { return c.established || c.dead || c.auth_failed != 0; });
    if (c.auth_failed) {
        std::string why = std::to_string(c.auth_failed);
        close_conn(c);
        return out("dial " + id + " auth_failed " + why);
    }
    if (!c.established && !c.goodbye.empty()) return out("dial " + id + " goodbye " + c.goodbye);
    if (!c.established) return out("dial " + id + " timeout");
    std::string proof = "empty";
    if (!c.peer_proof.empty()) {
        proof = "len" + std::to_string(c.peer_proof.size());
        if (c.cookie && c.peer_proof.size() == 32)
            proof = c.peer_proof == member_proof(*c.cookie, c.server, c.client.pub, c.nonce) ? "valid" : "invalid";
    }
    out("dial " + id + " ok " + c.peer + " proof=" + proof);
}

void cmd_listen(const std::vector<std::string>& w) {
    const std::string& id = w[1];
    router r;
    r.keys = keypair::generate();
    r.sock = zmq_socket(g_ctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    zmq_setsockopt(r.sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(r.sock, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(r.sock, ZMQ_CURVE_SECRETKEY, r.keys.sec.bytes().data(), 32);
    zmq_setsockopt(r.sock, ZMQ_ZAP_DOMAIN, id.data(), id.size());
    if (zmq_bind(r.sock, "tcp://127.0.0.1:*") != 0) return out("listen " + id + " error bind failed");
    char buf[256];
    std::size_t len = sizeof buf;
    zmq_getsockopt(r.sock, ZMQ_LAST_ENDPOINT, buf, &len);
    r.endpoint = std::string(buf, strnlen(buf, len));
    conn& c = get_conn(id);
    c.outbound = false;
    c.sock = r.sock;
    c.name = w[2];
    c.proof_mode = w[3];
    const std::string ep = r.endpoint, key = r.keys.pub.z85();
    g_routers[id] = std::move(r);
    out("listen " + id + " ok " + ep + " " + key);
}

void cmd_expect(const std::vector<std::string>& w) {
    conn& c = get_conn(w[1]);
    const std::int64_t type = std::stoll(w[2]);
    std::vector<std::pair<std::size_t, std::string>> filters;
    for (std::size_t k = 4; k < w.size(); ++k) {
        auto eq = w[k].find('=');
        if (eq == std::string::npos) continue;
        filters.emplace_back(std::stoul(w[k].substr(0, eq)), w[k].substr(eq + 1));
    }
    std::optional<std::size_t> hit;
    auto find = [&] {
        for (std::size_t i = 0; i < c.inbox.size(); ++i) {
            if (c.used[i]) continue;
            const term_array& a = *c.inbox[i].as_array();
            if (a.at(0).as_int() != type) continue;
            bool ok = true;
            for (auto& [idx, text] : filters) ok = ok && idx < a.size() && a[idx].to_string() == text;
            if (ok) {
                hit = i;
                return true;
            }
        }
        return false;
    };
    pump_until(std::stol(w[3]), find);
    if (!hit) return out("got timeout");
    c.used[*hit] = true;
    out("got " + join_fields(c.inbox[*hit]));
}

void cmd_collect(const std::vector<std::string>& w) {
    conn& c = get_conn(w[1]);
    const std::int64_t type = std::stoll(w[2]);
    const std::size_t n = std::stoul(w[3]);
    const std::size_t idx = std::stoul(w[5]);
    auto count = [&] {
        std::size_t k = 0;
        for (std::size_t i = 0; i < c.inbox.size(); ++i)
            if (!c.used[i] && c.inbox[i].as_array()->at(0).as_int() == type) ++k;
        return k;
    };
    pump_until(std::stol(w[4]), [&] { return count() >= n; });
    std::map<std::string, long> hist;
    std::size_t k = 0;
    for (std::size_t i = 0; i < c.inbox.size() && k < n; ++i) {
        const term_array& a = *c.inbox[i].as_array();
        if (c.used[i] || a.at(0).as_int() != type) continue;
        c.used[i] = true;
        ++k;
        hist[idx < a.size() ? a[idx].to_string() : "?"]++;
    }
    std::string s = "collect " + std::to_string(k) + " ";
    bool first = true;
    for (auto& [v, cnt] : hist) {
        s += (first ? "" : ",") + v + ":" + std::to_string(cnt);
        first = false;
    }
    out(s);
}

#include "adversary_load.hpp"

void run(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> w;
    for (std::string t; in >> t;) w.push_back(t);
    if (w.empty()) return;
    const std::string& cmd = w[0];
    // The rest of the line after the first `skip` words (a term with spaces).
    auto rest = [&](std::size_t skip) {
        std::size_t pos = 0;
        for (std::size_t k = 0; k < skip; ++k) {
            pos = line.find_first_not_of(" \t", pos);
            pos = line.find_first_of(" \t", pos);
        }
        pos = line.find_first_not_of(" \t", pos);
        return pos == std::string::npos ? std::string() : line.substr(pos);
    };
    if (cmd == "dial" && w.size() >= 4) {
        cmd_dial(w);
    } else if (cmd == "listen" && w.size() == 4) {
        cmd_listen(w);
    } else if (cmd == "accept" && w.size() == 3) {
        conn& c = get_conn(w[1]);
        pump_until(std::stol(w[2]), [&] { return c.established; });
        out(c.established ? "accept " + w[1] + " ok " + c.peer : "accept " + w[1] + " timeout");
    } else if (cmd == "zapkeys" && w.size() == 2) {
        std::string s;
        for (auto& k : g_zap_keys[w[1]]) s += (s.empty() ? "" : ",") + k;
        out("zapkeys " + w[1] + " " + s);
    } else if (cmd == "send" && w.size() >= 3) {
        auto t = parse_term(rest(2));
        if (!t || !t->is_array()) return out("send error bad term");
        conn& c = get_conn(w[1]);
        send_raw(c, frame_of(*t));
        pump(0);
        out("sent");
    } else if (cmd == "sendrange" && w.size() >= 5) {
        conn& c = get_conn(w[1]);
        const long from = std::stol(w[2]), to = std::stol(w[3]);
        const std::string tmpl = rest(4);
        long n = 0;
        for (long i = from; i <= to; ++i) {
            std::string text = tmpl;
            for (auto p = text.find("$N"); p != std::string::npos; p = text.find("$N"))
                text.replace(p, 2, std::to_string(i));
            auto t = parse_term(text);
            if (!t || !t->is_array()) return out("send error bad term: " + text);
            send_raw(c, frame_of(*t));
            ++n;
            if (n % 32 == 0) pump(0);
        }
        pump(0);
        out("sent " + std::to_string(n));
    } else if (cmd == "expect" && w.size() >= 4) {
        cmd_expect(w);
    } else if (cmd == "collect" && w.size() == 6) {
        cmd_collect(w);
    } else if (cmd == "seen" && w.size() == 3) {
        pump(0);
        conn& c = get_conn(w[1]);
        out("seen " + std::to_string(c.seen[std::stoll(w[2])]));
    } else if (cmd == "flood" && w.size() >= 4) {
        cmd_flood(w[1], std::stol(w[2]), rest(3));
    } else if (cmd == "floodn" && w.size() >= 4) {
        cmd_flood(w[1], 0, rest(3), std::stol(w[2]));
    } else if (cmd == "dialflood" && w.size() >= 5) {
        cmd_dialflood(w);
    } else if (cmd == "udpflood" && (w.size() == 5 || w.size() == 6)) {
        cmd_udpflood(w);
    } else if (cmd == "close" && w.size() == 2) {
        close_conn(get_conn(w[1]));
        out("closed");
    } else {
        out("error unknown command: " + line);
    }
}

}  // namespace

int main() {
    if (sodium_init() < 0) return 1;
    g_ctx = zmq_ctx_new();
    // Our own ZAP handler (for the ROUTERs we listen on): accepts any key and
    // records it, so a test can see which key a victim dialled us with.
    g_zap = zmq_socket(g_ctx, ZMQ_REP);
    if (zmq_bind(g_zap, "inproc://zeromq.zap.01") != 0) return 1;
    out("READY");
    std::string buf;
    for (;;) {
        // Wait on stdin while keeping the connections alive.
        pollfd pf{0, POLLIN, 0};
        if (::poll(&pf, 1, 0) <= 0) {
            pump(50);
            continue;
        }
        char chunk[4096];
        ssize_t got = ::read(0, chunk, sizeof chunk);
        if (got <= 0) break;
        buf.append(chunk, static_cast<std::size_t>(got));
        bool quit = false;
        for (auto nl = buf.find('\n'); nl != std::string::npos; nl = buf.find('\n')) {
            std::string line = buf.substr(0, nl);
            buf.erase(0, nl + 1);
            if (line == "quit") {
                quit = true;
                break;
            }
            run(line);
        }
        if (quit) break;
    }
    for (auto& [id, c] : g_conns) close_conn(*c);
    for (auto& [id, r] : g_routers) zmq_close(r.sock);
    zmq_close(g_zap);
    zmq_ctx_term(g_ctx);
    return 0;
}
