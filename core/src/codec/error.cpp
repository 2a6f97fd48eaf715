// Names of kith's error codes and error::message (see kith/error.hpp).
#include "kith/error.hpp"

#include <array>

namespace kith {

namespace {

// Indexed by the numeric value of errc; keep in step with the enum.
constexpr std::array<std::string_view, 16> errc_names = {
    "ok",           "timeout",  "nodedown", "unauthorized", "revoked",  "rate_limited",
    "no_such_service", "no_such_function", "bad_args", "exception", "noproc",
    "bad_type",     "decode",   "overloaded", "badarg",     "shutdown",
};

}  // namespace

std::string_view to_string(errc e) noexcept {
    auto i = static_cast<std::size_t>(e);
    return i < errc_names.size() ? errc_names[i] : std::string_view("unknown");
}

std::optional<errc> errc_from_string(std::string_view s) noexcept {
    for (std::size_t i = 0; i < errc_names.size(); ++i)
        if (errc_names[i] == s) return static_cast<errc>(i);
    return std::nullopt;
}

std::string error::message() const {
    std::string m(to_string(code));
    if (!detail.empty()) {
        m += ": ";
        m += detail;
    }
    return m;
}

}  // namespace kith
