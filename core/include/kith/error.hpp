// kith/error.hpp — the error values of kith and a small result<T>.
//
// kith has three tiers of failure (see docs/architecture.md):
//   * expected outcomes (a call that times out, a node that is down, a value of
//     the wrong type) are *values*: result<T> holding an error;
//   * setup failures (a socket that cannot bind, a key file with the wrong
//     mode) throw kith::setup_error from constructors and start functions;
//   * remote failures arrive as messages (DOWN, EXIT, nodedown), never as
//     exceptions thrown across threads.
//
// Thread-safety: all types here are plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace kith {

// Error codes. The numeric values are used on the wire (reply envelopes,
// docs/protocol.md) and MUST never change; add new codes at the end.
enum class errc : std::uint8_t {
    ok = 0,
    timeout = 1,           // the deadline passed before an answer came
    nodedown = 2,          // the node is not connected, or went down
    unauthorized = 3,      // the caller's grant does not allow this
    revoked = 4,           // the caller's grant was revoked or expired
    rate_limited = 5,      // the caller's grant is over its rate
    no_such_service = 6,   // the callee exports no service of that name
    no_such_function = 7,  // the service has no function / actor type of that name
    bad_args = 8,          // wrong number or type of arguments
    exception = 9,         // the remote handler threw; detail holds what()
    noproc = 10,           // no such (live) actor
    bad_type = 11,         // a term did not have the type asked for
    decode = 12,           // malformed or oversized bytes
    overloaded = 13,       // a bounded queue is full; the message was not sent
    badarg = 14,           // a local API was called with an invalid argument
    shutdown = 15,         // the node is stopping
};

// The lower_snake name of a code ("timeout", "nodedown", ...), as used in
// JSON output, Python exception names and documentation.
std::string_view to_string(errc e) noexcept;
// Inverse of to_string; nullopt for an unknown name.
std::optional<errc> errc_from_string(std::string_view s) noexcept;

// An error value: a code and a human-readable detail (for errc::exception the
// text of the remote exception; for errc::decode what was wrong).
struct error {
    errc code = errc::ok;
    std::string detail;

    error() = default;
    error(errc c, std::string d = {}) : code(c), detail(std::move(d)) {}
    // "timeout" or "exception: division by zero"
    std::string message() const;
    friend bool operator==(const error& a, const error& b) { return a.code == b.code; }
};

// Thrown by constructors and start functions when a node cannot be set up
// (bad key file, bind failure, ...). Never thrown for runtime message
// failures.
class setup_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// result<T>: either a T or an error. A minimal std::expected for C++20.
// Accessing value() of an error result throws bad_result_access (a logic bug
// in the caller, not an expected outcome).
class bad_result_access : public std::logic_error {
public:
    explicit bad_result_access(const error& e)
        : std::logic_error("kith::result holds an error: " + e.message()) {}
};

template <class T>
class [[nodiscard]] result {
public:
    result(T v) : v_(std::in_place_index<0>, std::move(v)) {}
    result(error e) : v_(std::in_place_index<1>, std::move(e)) {}
    result(errc c, std::string d = {}) : v_(std::in_place_index<1>, error{c, std::move(d)}) {}

    bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & { check(); return std::get<0>(v_); }
    const T& value() const& { check(); return std::get<0>(v_); }
    T&& value() && { check(); return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    // The error; error{errc::ok} for a successful result.
    error err() const { return ok() ? error{} : std::get<1>(v_); }
    errc code() const noexcept { return ok() ? errc::ok : std::get<1>(v_).code; }

    template <class U>
    T value_or(U&& alt) const& { return ok() ? std::get<0>(v_) : static_cast<T>(std::forward<U>(alt)); }

private:
    void check() const { if (!ok()) throw bad_result_access(std::get<1>(v_)); }
    std::variant<T, error> v_;
};

// result<void>
template <>
class [[nodiscard]] result<void> {
public:
    result() = default;
    result(error e) : e_(std::move(e)) {}
    result(errc c, std::string d = {}) : e_(error{c, std::move(d)}) {}
    bool ok() const noexcept { return e_.code == errc::ok; }
    explicit operator bool() const noexcept { return ok(); }
    error err() const { return e_; }
    errc code() const noexcept { return e_.code; }
    void value() const { if (!ok()) throw bad_result_access(e_); }

private:
    error e_;
};

}  // namespace kith
