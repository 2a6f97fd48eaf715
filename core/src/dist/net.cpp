// net.cpp — value types of the distribution layer (kith/net.hpp).
#include "kith/net.hpp"

namespace kith {

std::string_view to_string(trust_level t) noexcept {
    switch (t) {
        case trust_level::cluster: return "cluster";
        case trust_level::granted: return "granted";
        case trust_level::stranger: return "stranger";
        case trust_level::server: return "server";
    }
    return "stranger";
}

term node_info::to_term() const {
    term_array svcs(services.begin(), services.end());
    return map_of({{"name", name},
                   {"endpoint", endpoint},
                   {"fingerprint", fingerprint},
                   {"trust", std::string(to_string(trust))},
                   {"services", term(std::move(svcs))},
                   {"hidden", hidden}});
}

term node_event::to_term() const {
    if (what == kind::up) return arr("nodeup", node, info.to_term());
    return arr("nodedown", node, reason);
}

}  // namespace kith
