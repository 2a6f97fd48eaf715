// kith/service.hpp — exporting functions under a service name.
//
// A service is a named group of exported functions (and, see node.hpp,
// spawnable actor types): the only things a remote node can invoke. Functions
// never cross the wire, only data; there is no way to run arbitrary code.
//
// Typed registration is kith's "stub generator": from the C++ signature of the
// callable, the arguments are unmarshalled from the call's argument array and
// the result marshalled back through msgpack, automatically.
//
//   kith::service kvs("kvs");
//   kvs.function("store", [&](std::string key, kith::term value) { ...; return true; });
//   kvs.function("lookup", [&](std::string key) -> kith::term { ... });
//
// Call semantics:
//   * a wrong number of arguments, or an argument that does not convert to
//     the parameter type, is answered with errc::bad_args, naming the
//     argument and the expected type;
//   * the return value is converted with term::from; `void` returns nil; a
//     kith::result<T> return forwards its error code (e.g. errc::noproc);
//   * an exception escaping the function is answered with errc::exception and
//     the exception's what() text; it never takes the node down;
//   * a function taking `kith::reply_to` as its FIRST parameter replies later:
//     it returns void and calls the reply_to exactly once, from any thread.
//     A reply_to destroyed without replying answers errc::exception
//     ("no reply"), so the caller is never left waiting silently.
//
// Thread-safety: register functions before the service is added to a node;
// afterwards the service is immutable and its functions may be invoked
// concurrently from the node's worker threads and its transport I/O threads
// (functions that share state must synchronise them themselves). A function
// may block: one that keeps an I/O thread more than 200 us has the network
// taken over by the other I/O thread (docs/architecture.md, "Threads").
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "kith/actor.hpp"
#include "kith/convert.hpp"
#include "kith/error.hpp"
#include "kith/term.hpp"

namespace kith {

// A one-shot reply channel for a call. Movable, not copyable. Calling it a
// second time is ignored. Thread-safe (may be invoked from any thread).
class reply_to {
public:
    using sink = std::function<void(result<term>)>;
    reply_to() = default;
    explicit reply_to(sink s) : fn_(std::move(s)), live_(true) {}
    reply_to(reply_to&& o) noexcept
        : fn_(std::move(o.fn_)), live_(o.live_), done_(o.done_.load(std::memory_order_relaxed)) {
        o.fn_ = nullptr;
        o.live_ = false;
    }
    // As destroying this one after taking `o` over: unreplied, it answers
    // "no reply".
    reply_to& operator=(reply_to&& o) noexcept {
        if (this != &o) {
            reply_to old(std::move(*this));
            fn_ = std::move(o.fn_);
            live_ = o.live_;
            done_.store(o.done_.load(std::memory_order_relaxed), std::memory_order_relaxed);
            o.fn_ = nullptr;
            o.live_ = false;
        }
        return *this;
    }
    reply_to(const reply_to&) = delete;
    reply_to& operator=(const reply_to&) = delete;
    // Destroyed without a reply: the caller gets errc::exception "no reply".
    ~reply_to() {
        if (live_ && !done_.exchange(true, std::memory_order_acq_rel) && fn_)
            fn_(result<term>(error{errc::exception, "no reply"}));
    }

    void operator()(result<term> r) const {
        if (live_ && !done_.exchange(true, std::memory_order_acq_rel) && fn_) fn_(std::move(r));
    }
    // Convenience: reply with a typed value.
    template <class T>
    void value(const T& v) const { (*this)(result<term>(term::from(v))); }
    void fail(errc c, std::string detail = {}) const { (*this)(result<term>(error{c, std::move(detail)})); }
    bool replied() const { return !live_ || done_.load(std::memory_order_acquire); }

private:
    // The channel itself, not a shared state: a reply_to is only ever
    // moved (no allocation or reference count per call).
    sink fn_;
    bool live_ = false;  // made with a sink, not moved from
    mutable std::atomic<bool> done_{false};
};

namespace detail {

template <class T>
struct callable_traits : callable_traits<decltype(&T::operator())> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const> {
    using ret = R;
    using args = std::tuple<A...>;
};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...)> {
    using ret = R;
    using args = std::tuple<A...>;
};
template <class R, class... A>
struct callable_traits<R (*)(A...)> {
    using ret = R;
    using args = std::tuple<A...>;
};
template <class R, class... A>
struct callable_traits<R(A...)> {
    using ret = R;
    using args = std::tuple<A...>;
};

// True if the first parameter of the callable's argument tuple is reply_to.
template <class Tuple>
struct first_is_reply_to : std::false_type {};
template <class A0, class... A>
struct first_is_reply_to<std::tuple<A0, A...>> : std::is_same<std::decay_t<A0>, reply_to> {};

template <class T>
struct is_result : std::false_type {};
template <class T>
struct is_result<result<T>> : std::true_type {};

// A readable name for the type an argument should have (for bad_args text).
template <class T>
std::string arg_type_name() {
    using U = std::decay_t<T>;
    if constexpr (std::is_same_v<U, term>) return "any";
    else if constexpr (std::is_same_v<U, bool>) return "bool";
    else if constexpr (std::is_integral_v<U>) return "integer";
    else if constexpr (std::is_floating_point_v<U>) return "float";
    else if constexpr (std::is_same_v<U, std::string>) return "string";
    else if constexpr (std::is_same_v<U, pid>) return "pid";
    else if constexpr (std::is_same_v<U, binary>) return "binary";
    else return "structured value";
}

template <class Tuple, std::size_t... I>
result<std::tuple<std::decay_t<std::tuple_element_t<I, Tuple>>...>> unpack_args(const term_array& a,
                                                                               std::index_sequence<I...>) {
    std::tuple<std::decay_t<std::tuple_element_t<I, Tuple>>...> out;
    error first;
    auto one = [&](auto idx, auto& slot) {
        constexpr std::size_t i = decltype(idx)::value;
        using T = std::decay_t<std::tuple_element_t<i, Tuple>>;
        if (first.code != errc::ok) return;
        if constexpr (std::is_same_v<T, term>) {
            slot = a[i];
        } else {
            auto r = a[i].template as<T>();
            if (!r) {
                first = error{errc::bad_args, "argument " + std::to_string(i + 1) + ": expected " + arg_type_name<T>() +
                                                  ", got " + a[i].to_string()};
                return;
            }
            slot = std::move(*r);
        }
    };
    (one(std::integral_constant<std::size_t, I>{}, std::get<I>(out)), ...);
    (void)one;  // unused for functions without arguments
    if (first.code != errc::ok) return first;
    return out;
}

template <class R>
result<term> to_reply(R&& r) {
    using U = std::decay_t<R>;
    if constexpr (std::is_same_v<U, term>) return result<term>(std::forward<R>(r));
    else if constexpr (is_result<U>::value) {
        if (!r.ok()) return r.err();
        if constexpr (std::is_same_v<U, result<void>>) return result<term>(term{});
        else return to_reply(std::move(*r));
    } else return result<term>(term::from(r));
}

}  // namespace detail

// The uniform, untyped form every exported function is stored as.
using raw_function = std::function<void(const term& args, reply_to reply)>;
// The uniform form of a spawnable actor type: from the spawn arguments, the
// new actor's (init, behaviour) pair — exactly one set — or an error
// (errc::bad_args, ...).
using actor_factory = std::function<result<std::pair<actor_init, behavior>>(const term& args)>;

class service {
public:
    explicit service(std::string name) : name_(std::move(name)) {}
    const std::string& name() const noexcept { return name_; }

    // Exports `f` as `fname`. See the file comment for the call semantics.
    template <class F>
    service& function(std::string fname, F f) {
        functions_[std::move(fname)] = wrap(std::move(f));
        return *this;
    }

    // Exports an untyped function: receives the argument array as it came.
    service& raw(std::string fname, raw_function f) {
        functions_[std::move(fname)] = std::move(f);
        return *this;
    }

    // Exports a spawnable actor type: `f(args...)` returns a behaviour
    // `void(actor&, message&)` or an init `behavior(actor&)`. Its arguments
    // are unmarshalled like a function's (bad_args on mismatch); an exception
    // from `f` is errc::exception. Remote nodes spawn it with
    // node::spawn(node, service, type, args).
    template <class F>
    service& actor_type(std::string tname, F f) {
        using traits = detail::callable_traits<std::decay_t<F>>;
        constexpr std::size_t n = std::tuple_size_v<typename traits::args>;
        types_[std::move(tname)] = [f = std::move(f)](const term& args) mutable
            -> result<std::pair<actor_init, behavior>> {
            std::optional<result<std::pair<actor_init, behavior>>> out;
            // No reply_to state: call_with puts a failure into `out` itself
            // (one allocation and its atomic flag less per spawn).
            call_with<0>(f, args, reply_to(), std::make_index_sequence<n>{}, false, &out);
            if (out) return std::move(*out);
            return error{errc::exception, "actor factory produced nothing"};
        };
        return *this;
    }
    // Exports an untyped actor factory.
    service& raw_actor_type(std::string tname, actor_factory f) {
        types_[std::move(tname)] = std::move(f);
        return *this;
    }
    const actor_factory* find_type(const std::string& tname) const {
        auto it = types_.find(tname);
        return it == types_.end() ? nullptr : &it->second;
    }
    std::vector<std::string> type_names() const {
        std::vector<std::string> v;
        for (auto& [k, _] : types_) v.push_back(k);
        return v;
    }

    // The function named `fname`, or nullptr.
    const raw_function* find(const std::string& fname) const {
        auto it = functions_.find(fname);
        return it == functions_.end() ? nullptr : &it->second;
    }
    std::vector<std::string> function_names() const {
        std::vector<std::string> v;
        for (auto& [k, _] : functions_) v.push_back(k);
        return v;
    }

    // Invokes `fname` with `args`, answering through `reply` (possibly later).
    // no_such_function if absent. Exceptions become errc::exception.
    void invoke(const std::string& fname, const term& args, reply_to reply) const {
        auto* f = find(fname);
        if (!f) {
            reply.fail(errc::no_such_function, name_ + ":" + fname);
            return;
        }
        (*f)(args, std::move(reply));
    }

private:
    template <class F>
    static raw_function wrap(F f) {
        using traits = detail::callable_traits<std::decay_t<F>>;
        using args_t = typename traits::args;
        constexpr std::size_t n = std::tuple_size_v<args_t>;
        if constexpr (detail::first_is_reply_to<args_t>::value) {
            // Deferred reply: f(reply_to, rest...).
            return [f = std::move(f)](const term& args, reply_to reply) mutable {
                call_with<1>(f, args, std::move(reply), std::make_index_sequence<n - 1>{}, true);
            };
        } else {
            return [f = std::move(f)](const term& args, reply_to reply) mutable {
                call_with<0>(f, args, std::move(reply), std::make_index_sequence<n>{}, false);
            };
        }
    }

    template <std::size_t Skip, class F, std::size_t... I>
    static void call_with(F& f, const term& args, reply_to reply, std::index_sequence<I...>, bool deferred,
                          std::optional<result<std::pair<actor_init, behavior>>>* factory_out = nullptr) {
        using traits = detail::callable_traits<std::decay_t<F>>;
        using all_args = typename traits::args;
        using params = std::tuple<std::tuple_element_t<I + Skip, all_args>...>;
        constexpr std::size_t n = sizeof...(I);
        // A factory's failure goes to *factory_out, anything else's to `reply`.
        auto fail = [&](error e) {
            if (!factory_out) reply(result<term>(std::move(e)));
            else if (!*factory_out) factory_out->emplace(std::move(e));
        };
        const term_array empty;
        const term_array* a = args.is_nil() ? &empty : args.as_array();
        if (!a) {
            fail(error{errc::bad_args, "arguments must be an array, got " + args.to_string()});
            return;
        }
        if (a->size() != n) {
            fail(error{errc::bad_args, "expected " + std::to_string(n) + " argument" + (n == 1 ? "" : "s") +
                                           ", got " + std::to_string(a->size())});
            return;
        }
        auto unpacked = detail::unpack_args<params>(*a, std::index_sequence<I...>{});
        if (!unpacked) {
            fail(unpacked.err());
            return;
        }
        try {
            auto& tup = *unpacked;
            if (deferred) {
                if constexpr (Skip == 1) f(std::move(reply), std::move(std::get<I>(tup))...);
            } else if constexpr (Skip == 0) {
                using R = typename traits::ret;
                if constexpr (spawnable<R>) {
                    if (factory_out) {
                        auto pr = detail::split_spawnable(f(std::move(std::get<I>(tup))...));
                        factory_out->emplace(std::move(pr));
                    }
                } else if constexpr (std::is_void_v<R>) {
                    f(std::move(std::get<I>(tup))...);
                    reply(result<term>(term{}));
                } else {
                    reply(detail::to_reply(f(std::move(std::get<I>(tup))...)));
                }
            }
        } catch (const std::exception& e) {
            fail(error{errc::exception, e.what()});
        } catch (...) {
            fail(error{errc::exception, "unknown exception"});
        }
    }

    std::string name_;
    std::map<std::string, raw_function> functions_;
    std::map<std::string, actor_factory> types_;
};

}  // namespace kith
