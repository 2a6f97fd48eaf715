// relay_options.cpp — what a relay accepts as its options (kith/relay.hpp,
// relay_options::check): the one place the bounds are said, for the relay's
// constructor, `kith relay` and Python's serve_relay.
#include <string>

#include "kith/relay.hpp"

namespace kith {

namespace {

using ms = std::chrono::milliseconds;

std::string text(ms d) {
    if (d.count() % 3600000 == 0 && d.count() != 0) return std::to_string(d.count() / 3600000) + " h";
    if (d.count() % 1000 == 0 && d.count() != 0) return std::to_string(d.count() / 1000) + " s";
    return std::to_string(d.count()) + " ms";
}

// "relay option X (kith relay --flag, Python py=) is V: it must be ...":
// `py` is the keyword Python's serve_relay takes (not always X).
error bad(const char* field, const char* flag, const char* py, const std::string& got, const std::string& want) {
    return error{errc::badarg, std::string("relay option ") + field + " (kith relay " + flag + ", Python " + py +
                                   "=) is " + got + ": it must be " + want + "; give another value or leave it out for "
                                   "the default"};
}

}  // namespace

result<void> relay_options::check() const {
    struct span {
        const char* field;
        const char* flag;  // the Python keyword is `field`
        ms value, lo, hi;
    };
    const span spans[] = {
        {"handshake_timeout", "--handshake-timeout SECONDS", handshake_timeout, ms(100), ms(60000)},
        {"pair_timeout", "--pair-timeout SECONDS", pair_timeout, ms(100), ms(300000)},
        {"session_port_idle", "--session-port-idle SECONDS", session_port_idle, ms(1000), ms(86400000)},
        {"dead_peer_timeout", "--dead-peer-timeout SECONDS", dead_peer_timeout, ms(1000), ms(900000)},
        {"token_lifetime", "--token-lifetime SECONDS", std::chrono::duration_cast<ms>(token_lifetime), ms(60000),
         ms(30LL * 86400000)},
        {"name_lifetime", "--name-lifetime SECONDS", std::chrono::duration_cast<ms>(name_lifetime), ms(3600000),
         ms(3650LL * 86400000)},
    };
    for (auto& s : spans)
        if (s.value < s.lo || s.value > s.hi)
            return bad(s.field, s.flag, s.field, text(s.value), "from " + text(s.lo) + " to " + text(s.hi));
    struct count {
        const char* field;
        const char* flag;
        const char* py;  // serve_relay's keyword
        std::size_t value;
    };
    const count counts[] = {
        {"max_connections", "--max-connections N", "max_connections", max_connections},
        {"max_sessions_per_node", "--max-sessions N", "max_sessions", max_sessions_per_node},
        {"max_sessions_per_dialler", "--max-dialler-sessions N", "max_dialler_sessions", max_sessions_per_dialler},
        {"max_registrations", "--max-registrations N", "max_registrations", max_registrations},
        {"max_names_per_key", "--max-names N", "max_names", max_names_per_key},
        {"max_tokens_per_dialler", "--max-tokens N", "max_tokens", max_tokens_per_dialler},
    };
    for (auto& c : counts)
        if (c.value < 1 || c.value > 1000000)
            return bad(c.field, c.flag, c.py, std::to_string(c.value), "from 1 to 1000000");
    if ((session_port_min == 0) != (session_port_max == 0) || session_port_min > session_port_max)
        return bad("session_port_min", "--session-ports MIN-MAX", "session_ports",
                   std::to_string(session_port_min) + "-" + std::to_string(session_port_max),
                   "MIN <= MAX, both 1..65535 (or both 0: any free port)");
    if (listen.empty()) return bad("listen", "--data-listen HOST:PORT", "listen", "empty", "an IPv4 HOST:PORT");
    return {};
}

result<void> relay_client_options::check() const {
    const ms lo(1000), hi(7LL * 86400000);
    if (repair_timeout < lo || repair_timeout > hi)
        return error{errc::badarg, "relay client option repair_timeout (Python repair_timeout=) is " +
                                       text(repair_timeout) + ": it must be from " + text(lo) + " to " + text(hi) +
                                       "; give another value or leave it out for the default"};
    return {};
}

}  // namespace kith
