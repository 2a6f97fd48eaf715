// kith_adversary's connections (part of adversary.cpp, included inside its
// anonymous namespace): the raw libzmq sockets it dials and listens with, the
// frames they carry, its ZAP handler, and the pump that reads them all.
#pragma once

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
    // [1, version, node, creation, services, hidden, key, nonce, proof, port, member_port]
    return arr(1, static_cast<int>(protocol_version), c.name, static_cast<unsigned long long>(now_ms()), term_array{},
               false, std::string(), binary(c.nonce.data(), c.nonce.size()), binary(proof.data(), proof.size()), 0, 0);
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

int mon_seq = 0;

// Opens `c` as a CURVE client of `ep` (its keys set) and sends our
// handshake (node name c.name, a fresh nonce). False if libzmq refused `ep`.
bool open_dealer(conn& c, const std::string& ep) {
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
    if (zmq_connect(c.sock, ep.c_str()) != 0) return false;
    c.nonce = random_bytes(16);
    send_raw(c, frame_of(handshake_term(c, std::string())));
    return true;
}
