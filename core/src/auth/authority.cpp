// auth/authority.cpp — see authority.hpp and kith/principal.hpp.
#include "auth/authority.hpp"

namespace kith {

std::string_view to_string(principal::kind k) noexcept {
    switch (k) {
        case principal::kind::local: return "local";
        case principal::kind::member: return "member";
        case principal::kind::grant: return "grant";
        case principal::kind::stranger: return "stranger";
        case principal::kind::server: return "server";
    }
    return "?";
}

std::string principal::describe() const {
    std::string s(to_string(what));
    if (what == kind::local) return s;
    if (what == kind::grant) s += " " + label;
    else if (what != kind::member) s += " " + key.fingerprint();
    if (!node.empty()) s += what == kind::member ? " " + node : " (" + node + ")";
    return s;
}

const principal& current_principal() noexcept {
    static const principal local{};
    const detail::authority* a = detail::acting();
    return a ? a->who : local;
}

}  // namespace kith

namespace kith::detail {

namespace {
thread_local const authority* tl_acting = nullptr;
}

const authority* acting() noexcept { return tl_acting; }

acting_scope::acting_scope(const authority* a) noexcept : prev_(tl_acting) { tl_acting = a; }
acting_scope::~acting_scope() { tl_acting = prev_; }

}  // namespace kith::detail
