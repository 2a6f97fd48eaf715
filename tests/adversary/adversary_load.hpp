// kith_adversary's load mode (issue 13): attacks that run for a bounded time
// while the test measures a cluster member's calls to the victim. Part of
// adversary.cpp (included inside its anonymous namespace; uses its
// connections and pump).
//
//   flood ID MS TEMPLATE            sends TEMPLATE on connection ID for MS ms,
//        as fast as the socket takes it ($N: 1, 2, ...; without $N the frame
//        is encoded once). What comes back is discarded. A TEMPLATE written
//        *K TERM sends K copies of TERM in each frame (one frame, K envelopes).
//   floodn ID N TEMPLATE            the same, exactly N frames (no time limit).
//        -> "flood sent=N full=F" (F: sends the socket refused, its queue full)
//   dialflood MS PAR grant FILE     opens connections for MS ms, at most PAR
//   dialflood MS PAR stranger EP KEY   open at once (the oldest closed first),
//        each sending its handshake: with the grant's key every time, or a
//        fresh key each time. -> "dialflood opened=N ok=K auth_failed=A goodbye=G"
//   udpflood MS ADDR PORT garbage|replay [TEXT]   UDP datagrams to ADDR:PORT
//        for MS ms: random bytes (garbage: 64-512 bytes each), or (replay)
//        the first datagram heard on PORT that contains TEXT (a member's
//        genuine beacon: its node name), resent verbatim; the datagram is
//        kept for the next replay of TEXT (udpflood 0 ... captures only).
//        -> "udpflood sent=N" | "udpflood error WHY"


// Forgets what came back on `c` (a flood's answers; only counted in c.seen).
void drop_inbox(conn& c) {
    c.inbox.clear();
    c.used.clear();
}

void cmd_flood(const std::string& id, long ms, std::string tmpl, long max_frames = -1) {
    conn& c = get_conn(id);
    if (!c.sock || !c.outbound) return out("flood error no outbound connection " + id);
    long copies = 1;
    if (tmpl.starts_with("*")) {
        auto sp = tmpl.find(' ');
        copies = std::max(1L, std::atol(tmpl.substr(1, sp).c_str()));
        tmpl = sp == std::string::npos ? std::string() : tmpl.substr(sp + 1);
    }
    const bool numbered = tmpl.find("$N") != std::string::npos;
    std::string fixed;
    if (!numbered) {
        auto t = parse_term(tmpl);
        if (!t || !t->is_array()) return out("flood error bad term");
        fixed = frame_of(*t);
        const std::string body = fixed.substr(4);  // the envelope, after the frame header
        for (long k = 1; k < copies; ++k) fixed += body;
    } else if (copies != 1) {
        return out("flood error *K with $N is not supported");
    }
    long sent = 0, full = 0;
    const auto until = clock_type::now() + std::chrono::milliseconds(ms);
    for (long i = 1; max_frames < 0 ? clock_type::now() < until : sent < max_frames; ++i) {
        std::string frame = fixed;
        if (numbered) {
            std::string text = tmpl;
            for (auto p = text.find("$N"); p != std::string::npos; p = text.find("$N"))
                text.replace(p, 2, std::to_string(i));
            auto t = parse_term(text);
            if (!t || !t->is_array()) return out("flood error bad term: " + text);
            frame = frame_of(*t);
        }
        if (zmq_send(c.sock, frame.data(), frame.size(), ZMQ_DONTWAIT) < 0) {
            ++full;
            pump(1);  // the socket's queue is full: let it drain
        } else {
            ++sent;
        }
        if (i % 32 == 0) {
            pump(0);
            drop_inbox(c);
        }
    }
    pump(0);
    drop_inbox(c);
    out("flood sent=" + std::to_string(sent) + " full=" + std::to_string(full));
}

void cmd_dialflood(const std::vector<std::string>& w) {
    const long ms = std::stol(w[1]);
    const std::size_t par = std::stoul(w[2]);
    const std::string& mode = w[3];
    std::string ep;
    public_key server;
    std::optional<keypair> fixed;
    if (mode == "grant" && w.size() == 5) {
        auto g = grant_file::load(w[4]);
        if (!g) return out("dialflood error " + g.err().detail);
        ep = g->endpoints.at(0);
        server = g->server_key;
        fixed = g->client;
    } else if (mode == "stranger" && w.size() == 6) {
        ep = w[4];
        server = public_key::from_z85(w[5]).value_or(public_key{});
    } else {
        return out("dialflood error bad arguments");
    }
    long opened = 0, ok = 0, failed = 0, goodbye = 0;
    std::deque<std::string> open;
    auto retire = [&](const std::string& id) {
        auto it = g_conns.find(id);
        if (it == g_conns.end()) return;
        conn& c = *it->second;
        ok += c.established ? 1 : 0;
        failed += c.auth_failed ? 1 : 0;
        goodbye += c.goodbye.empty() ? 0 : 1;
        close_conn(c);
        g_conns.erase(it);
    };
    const auto until = clock_type::now() + std::chrono::milliseconds(ms);
    while (clock_type::now() < until) {
        const std::string id = "flood-" + std::to_string(++opened);
        conn& c = get_conn(id);
        c.name = "flood" + std::to_string(opened) + "@localhost";
        c.server = server;
        c.client = fixed ? *fixed : keypair::generate();
        open_dealer(c, ep);
        open.push_back(id);
        while (open.size() > par) {
            retire(open.front());
            open.pop_front();
        }
        pump(opened % 8 == 0 ? 5 : 0);
        for (auto& x : open)
            if (auto it = g_conns.find(x); it != g_conns.end()) drop_inbox(*it->second);
    }
    for (auto& x : open) retire(x);
    out("dialflood opened=" + std::to_string(opened) + " ok=" + std::to_string(ok) +
        " auth_failed=" + std::to_string(failed) + " goodbye=" + std::to_string(goodbye));
}

void cmd_udpflood(const std::vector<std::string>& w) {
    const long ms = std::stol(w[1]);
    const std::string& addr = w[2];
    const int port = std::stoi(w[3]);
    const std::string& mode = w[4];
    int fd = kith_test::shared_udp_socket();
    if (fd < 0) return out("udpflood error socket");
    sockaddr_in to;
    if (addr.empty() || !kith_test::ipv4_address(addr, port, to)) {
        ::close(fd);
        return out("udpflood error bad address " + addr);
    }
    static std::map<std::string, std::string> kept;  // TEXT -> the datagram captured
    std::string captured;
    if (mode == "replay" && kept.count(w.size() > 5 ? w[5] : std::string())) {
        captured = kept[w.size() > 5 ? w[5] : std::string()];
    } else if (mode == "replay") {
        // Listen on the beacon port (shared, as the nodes share it) for one beacon.
        sockaddr_in any;
        kith_test::ipv4_address("", port, any);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof any) != 0) {
            ::close(fd);
            return out("udpflood error cannot bind the beacon port");
        }
        const std::string want = w.size() > 5 ? w[5] : std::string();
        const auto give_up = clock_type::now() + std::chrono::seconds(5);
        while (captured.empty() && clock_type::now() < give_up) {
            pollfd pf{fd, POLLIN, 0};
            if (::poll(&pf, 1, 100) <= 0) continue;
            char buf[2048];
            auto n = ::recv(fd, buf, sizeof buf, 0);
            if (n > 0 && std::string_view(buf, static_cast<std::size_t>(n)).find(want) != std::string_view::npos)
                captured.assign(buf, static_cast<std::size_t>(n));
        }
        if (captured.empty()) {
            ::close(fd);
            return out("udpflood error no beacon heard in 5 s");
        }
        kept[want] = captured;
    } else if (mode != "garbage") {
        ::close(fd);
        return out("udpflood error mode is garbage or replay");
    }
    long sent = 0;
    const auto until = clock_type::now() + std::chrono::milliseconds(ms);
    std::string junk;
    while (clock_type::now() < until) {
        for (int k = 0; k < 64; ++k) {
            const std::string* d = &captured;
            if (mode == "garbage") {
                junk = random_bytes(64 + randombytes_uniform(449));
                d = &junk;
            }
            if (::sendto(fd, d->data(), d->size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) > 0) ++sent;
        }
        pump(0);  // keep the TCP connections alive meanwhile
    }
    ::close(fd);
    out("udpflood sent=" + std::to_string(sent));
}
