// auth/authority.hpp (private) — a principal with what it was given: the
// object that travels with an invocation (thread-local while a service
// function or an acting actor runs) and that the gate checks against.
#pragma once

#include <memory>

#include "grants/grants_table.hpp"
#include "kith/principal.hpp"

namespace kith::detail {

struct authority : std::enable_shared_from_this<authority> {
    principal who;
    std::shared_ptr<grant_entry> grant;    // kind grant: its entry (null if unknown: refused)
    std::shared_ptr<capability_set> caps;  // the local pids handed to it (null: none)
    // Its session ended: code still acting for it reaches no other node any
    // more (its name may now belong to someone else).
    std::atomic<bool> ended{false};

    bool restricted() const noexcept { return who.restricted(); }
};

// The authority the calling thread acts for (null: local or member, no limit).
const authority* acting() noexcept;

// Sets the thread's authority for a scope (a service invocation, an actor's
// turn) and restores the previous one.
class acting_scope {
public:
    explicit acting_scope(const authority* a) noexcept;
    ~acting_scope();
    acting_scope(const acting_scope&) = delete;
    acting_scope& operator=(const acting_scope&) = delete;

private:
    const authority* prev_;
};

}  // namespace kith::detail
