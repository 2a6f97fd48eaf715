// kith/principal.hpp — who a piece of code acts for.
//
// Every invocation on a node carries its principal, from the envelope that
// asked for it to the service function and to the actors spawned for it
// (docs/security.md, "No ambient authority"):
//
//   local     code of this node's own program (the default)
//   member    a cluster member (holds the cookie; fully trusted)
//   grant     a grantee, under the grant `label`
//   stranger  any key, using a public service
//   server    a node this node dialled without cluster credentials (with a
//             grant it holds, or as a visitor): it may only answer
//
// Inside a service function invoked for a remote caller, and inside the
// handler of an actor spawned for one, kith::current_principal() says who
// that is. kith applies the same policy to what such code does as to the
// principal's own envelopes: node::invoke_local refuses services outside its
// scope (errc::unauthorized); node::call/cast/spawn to other nodes fail with
// errc::unauthorized; and messages, exit signals and registered-name sends
// to another node's pids reach only the principal's own node (others are
// dropped and counted in net_counters::refused_unauthorized): this node never
// carries a non-member's traffic on to its cluster. Local messages are the
// service's own business; every pid the principal itself supplied was
// checked at the gate (its own, or one this node handed to it).
//
// Thread-safety: current_principal() reads a thread-local; the reference is
// valid until the invocation or handler returns.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kith/keys.hpp"

namespace kith {

struct principal {
    enum class kind : std::uint8_t { local, member, grant, stranger, server };
    kind what = kind::local;
    std::string node;   // the peer's node name ("" for local)
    std::string label;  // the grant's label (kind grant)
    public_key key;     // the peer's key (grant, stranger, server); for member, the key its handshake states

    // True for grant, stranger and server: limited to what was given to it.
    bool restricted() const noexcept { return what == kind::grant || what == kind::stranger || what == kind::server; }
    // "local", "member alice@pi1", "grant bob (bob@laptop)", "stranger 3f2a:… (x@y)", "server …"
    std::string describe() const;
};
std::string_view to_string(principal::kind k) noexcept;

// The principal the calling thread acts for now (local outside kith's
// invocations and outside actors spawned for a remote principal).
const principal& current_principal() noexcept;

}  // namespace kith
