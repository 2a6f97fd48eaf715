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
//   dial ID NAME grant FILE                 connect as the grantee of FILE
//   dial ID NAME stranger EP Z85KEY         connect with a fresh keypair
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
//   flood, dialflood, udpflood              load mode: see adversary_load.hpp
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

// ---- connections -------------------------------------------------------------

struct conn {
    std::string id;
    bool outbound = true;
    void* sock = nullptr;  // the DEALER, or the ROUTER of an inbound connection
    void* mon = nullptr;   // PAIR reading the DEALER's monitor events
    std::string rid;       // inbound: the victim's routing id
    std::string name;      // the node name we claim
    keypair client;        // outbound: our CURVE client key
    public_key server;     // outbound: the server's key
    std::string nonce;     // the nonce of our handshake
    std::optional<std::string> cookie;
    std::string proof_mode = "none";  // inbound: what proof our handshake carries
    bool established = false, dead = false;
    std::string peer, peer_proof;
    int auth_failed = 0;
    std::string goodbye;
    std::vector<term> inbox;
    std::vector<bool> used;
    std::map<std::int64_t, long> seen;
    clock_type::time_point next_hb{};
    std::uint64_t hb_seq = 0;
};

struct router {
    void* sock = nullptr;
    std::string endpoint;
    keypair keys;
};

void* g_ctx = nullptr;
void* g_zap = nullptr;
std::map<std::string, std::unique_ptr<conn>> g_conns;
std::map<std::string, router> g_routers;                     // by id (= ZAP domain)
std::map<std::string, std::vector<std::string>> g_zap_keys;  // domain -> client keys (z85)

conn& get_conn(const std::string& id) {
    auto& c = g_conns[id];
    if (!c) {
        c = std::make_unique<conn>();
        c->id = id;
    }
    return *c;
}

void send_raw(conn& c, const std::string& frame) {
    if (!c.sock) return;
    if (c.outbound) {
        zmq_send(c.sock, frame.data(), frame.size(), ZMQ_DONTWAIT);
    } else {
        if (c.rid.empty()) return;
        zmq_send(c.sock, c.rid.data(), c.rid.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(c.sock, frame.data(), frame.size(), ZMQ_DONTWAIT);
    }
}

term handshake_term(const conn& c, const std::string& proof) {
    // [1, version, node, creation, services, hidden, key, nonce, proof]
    return arr(1, static_cast<int>(protocol_version), c.name, static_cast<unsigned long long>(now_ms()), term_array{},
               false, std::string(), binary(c.nonce.data(), c.nonce.size()), binary(proof.data(), proof.size()));
}

// One frame from the peer on connection c.
void on_frame(conn& c, std::string_view frame) {
    auto envs = decode_frame(frame);
    if (!envs) {
        c.seen[-1]++;  // undecodable (another protocol version, say)
        return;
    }
    for (auto& e : *envs) {
        std::string body;
        encode_envelope(e, body);
        auto t = decode(body);
        if (!t) continue;
        const term_array& a = *t->as_array();
        auto type = a.at(0).as_int().value_or(0);
        c.seen[type]++;
        if (type == 15) {  // heartbeat: answer probes, keep nothing
            if (a.size() == 3 && a[2] == term(false)) send_raw(c, frame_of(arr(15, a[1], true)));
            continue;
        }
        if (type == 1 && !c.established) {
            c.peer = a.at(2).as_string() ? *a.at(2).as_string() : "?";
            c.peer_proof = a.size() > 8 ? bytes_of(&a[8]) : std::string();
            if (!c.outbound) {
                std::string peer_nonce = a.size() > 7 ? bytes_of(&a[7]) : std::string();
                (void)peer_nonce;
                c.nonce = random_bytes(16);
                std::string proof = c.proof_mode == "garbage" ? random_bytes(32) : std::string();
                send_raw(c, frame_of(handshake_term(c, proof)));
            }
            c.established = true;
            c.next_hb = clock_type::now();
            continue;
        }
        if (type == 16) {
            c.goodbye = a.at(1).as_string() ? *a.at(1).as_string() : "?";
            c.dead = true;
        }
        c.inbox.push_back(*t);
        c.used.push_back(false);
    }
}

void handle_zap() {
    // RFC 27: version, request id, domain, address, identity, mechanism, credentials.
    std::vector<std::string> parts;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, g_zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            if (parts.empty()) return;
            break;
        }
        parts.emplace_back(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
        bool more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (!more) break;
    }
    if (parts.size() < 6) return;
    if (parts.size() >= 7 && parts[6].size() == 32) {
        public_key k;
        std::memcpy(k.bytes.data(), parts[6].data(), 32);
        g_zap_keys[parts[2]].push_back(k.z85());
    }
    const std::string reply[] = {"1.0", parts[1], "200", "OK", "adversary", ""};
    for (int i = 0; i < 6; ++i) zmq_send(g_zap, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
}

void read_dealer(conn& c) {
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c.sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        on_frame(c, std::string_view(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m)));
        zmq_msg_close(&m);
    }
}

void read_monitor(conn& c) {
    for (;;) {
        zmq_msg_t a;
        zmq_msg_init(&a);
        if (zmq_msg_recv(&a, c.mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&a);
            return;
        }
        std::uint16_t ev = 0;
        std::uint32_t val = 0;
        if (zmq_msg_size(&a) >= 6) {
            std::memcpy(&ev, zmq_msg_data(&a), 2);
            std::memcpy(&val, static_cast<char*>(zmq_msg_data(&a)) + 2, 4);
        }
        bool more = zmq_msg_more(&a);
        zmq_msg_close(&a);
        while (more) {
            zmq_msg_t b;
            zmq_msg_init(&b);
            zmq_msg_recv(&b, c.mon, 0);
            more = zmq_msg_more(&b);
            zmq_msg_close(&b);
        }
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) c.auth_failed = static_cast<int>(val);
    }
}

void read_router(const std::string& rid_key, router& r) {
    for (;;) {
        zmq_msg_t id, m;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, r.sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return;
        }
        std::string rid(static_cast<const char*>(zmq_msg_data(&id)), zmq_msg_size(&id));
        zmq_msg_close(&id);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, r.sock, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        conn& c = get_conn(rid_key);
        if (c.rid != rid) {  // a new inbound connection: start over on it
            c.rid = rid;
            c.established = false;
            c.dead = false;
            c.goodbye.clear();
        }
        on_frame(c, std::string_view(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m)));
        zmq_msg_close(&m);
    }
}

// Polls every socket once, at most `ms`; sends due heartbeats.
void pump(long ms) {
    std::vector<zmq_pollitem_t> items;
    std::vector<std::function<void()>> handlers;
    if (g_zap) {
        items.push_back({g_zap, 0, ZMQ_POLLIN, 0});
        handlers.push_back(handle_zap);
    }
    for (auto& [id, r] : g_routers) {
        items.push_back({r.sock, 0, ZMQ_POLLIN, 0});
        handlers.push_back([&id = id, &r = r] { read_router(id, r); });
    }
    for (auto& [id, c] : g_conns) {
        if (!c->outbound || !c->sock) continue;
        items.push_back({c->sock, 0, ZMQ_POLLIN, 0});
        handlers.push_back([c = c.get()] { read_dealer(*c); });
        if (c->mon) {
            items.push_back({c->mon, 0, ZMQ_POLLIN, 0});
            handlers.push_back([c = c.get()] { read_monitor(*c); });
        }
    }
    zmq_poll(items.data(), static_cast<int>(items.size()), std::max(0L, std::min(ms, 100L)));
    for (std::size_t i = 0; i < items.size(); ++i)
        if (items[i].revents & ZMQ_POLLIN) handlers[i]();
    auto now = clock_type::now();
    for (auto& [id, c] : g_conns) {
        if (!c->established || c->dead || now < c->next_hb) continue;
        send_raw(*c, frame_of(arr(15, static_cast<unsigned long long>(++c->hb_seq), false)));
        c->next_hb = now + std::chrono::milliseconds(400);
    }
}

// Pumps until pred() or `ms` pass; returns pred().
bool pump_until(long ms, const std::function<bool()>& pred) {
    auto until = clock_type::now() + std::chrono::milliseconds(ms);
    while (!pred()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock_type::now()).count();
        if (left <= 0) return pred();
        pump(left);
    }
    return true;
}

void close_conn(conn& c) {
    if (c.outbound && c.sock) {
        if (c.mon) {
            zmq_socket_monitor(c.sock, nullptr, 0);
            zmq_close(c.mon);
            c.mon = nullptr;
        }
        zmq_close(c.sock);
    }
    c.sock = nullptr;
    c.established = false;
    c.dead = true;
}

std::string join_fields(const term& t) {
    std::string s;
    const term_array& a = *t.as_array();
    for (std::size_t i = 0; i < a.size(); ++i) s += (i ? " | " : "") + a[i].to_string();
    return s;
}

int mon_seq = 0;

void cmd_dial(const std::vector<std::string>& w) {
    // dial ID NAME MODE ...
    const std::string& id = w[1];
    if (auto it = g_conns.find(id); it != g_conns.end()) {
        close_conn(*it->second);
        g_conns.erase(it);
    }
    conn& c = get_conn(id);
    c.name = w[2];
    std::string ep;
    const std::string& mode = w[3];
    if (mode == "grant" && w.size() == 5) {
        auto g = grant_file::load(w[4]);
        if (!g) return out("dial " + id + " error " + g.err().detail);
        ep = g->endpoints.at(0);
        c.server = g->server_key;
        c.client = g->client;
    } else if (mode == "stranger" && w.size() == 6) {
        ep = w[4];
        c.server = public_key::from_z85(w[5]).value_or(public_key{});
        c.client = keypair::generate();
    } else if (mode == "cookie" && w.size() == 7) {
        c.cookie = w[4];
        ep = w[5];
        c.server = public_key::from_z85(w[6]).value_or(public_key{});
        c.client = cluster_keypair(w[4]);
    } else {
        return out("dial " + id + " error bad arguments");
    }
    c.outbound = true;
    c.sock = zmq_socket(g_ctx, ZMQ_DEALER);
    int zero = 0, ivl = 100;
    zmq_setsockopt(c.sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c.sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(c.sock, ZMQ_CURVE_SERVERKEY, c.server.bytes.data(), 32);
    zmq_setsockopt(c.sock, ZMQ_CURVE_PUBLICKEY, c.client.pub.bytes.data(), 32);
    zmq_setsockopt(c.sock, ZMQ_CURVE_SECRETKEY, c.client.sec.bytes().data(), 32);
    std::string mon_ep = "inproc://adversary-mon-" + std::to_string(++mon_seq);
    zmq_socket_monitor(c.sock, mon_ep.c_str(), ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    c.mon = zmq_socket(g_ctx, ZMQ_PAIR);
    zmq_connect(c.mon, mon_ep.c_str());
    if (zmq_connect(c.sock, ep.c_str()) != 0) return out("dial " + id + " error cannot connect to " + ep);
    c.nonce = random_bytes(16);
    send_raw(c, frame_of(handshake_term(c, std::string())));
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
