// kith/term.hpp — the dynamic value type carried by every kith message.
//
// A term is one of: nil, bool, integer, float, string, binary, array, map,
// pid, ref. It maps one-to-one onto msgpack (pid and ref are msgpack ext types
// 1 and 2, see docs/protocol.md), so messages can come from C++, Python and
// the command line alike. Typed C++ sits on top: any type msgpack-c can pack
// (including user structs declared with MSGPACK_DEFINE) converts to a term
// with term::from(v) and back with t.as<T>(), which returns an error value
// (errc::bad_type) on a mismatch, never undefined behaviour.
//
// Ownership: a term owns its contents (value semantics; copies are deep).
// Thread-safety: a term is a plain value; distinct terms may be used from
// distinct threads, a shared one only for reading.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <type_traits>
#include <algorithm>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "kith/error.hpp"

namespace kith {

// True if `name` is a valid full node name "name@host": 3..255 bytes, exactly
// one '@', a non-empty name part of [A-Za-z0-9_-] and a non-empty host part of
// [A-Za-z0-9_.-]. Pids and refs on the wire must carry such a name.
bool valid_node_name(std::string_view name) noexcept;

// A process identifier: the node's full name and a serial unique on that node.
// A default-constructed pid is the null pid (refers to no actor).
// Prints as <gandalf@pi1.42> (the null pid as <null>); pid::parse reads that
// form back and rejects anything else (nullopt).
struct pid {
    std::string node;          // "name@host"; empty for the null pid
    std::uint64_t serial = 0;  // > 0 for a real actor

    bool is_null() const noexcept { return serial == 0; }
    std::string to_string() const;
    static std::optional<pid> parse(std::string_view text);
    friend bool operator==(const pid&, const pid&) = default;
    friend auto operator<=>(const pid&, const pid&) = default;
};

// A unique reference (monitor refs, request ids, timer refs).
// Prints as #Ref<gandalf@pi1.7> (the null ref as #Ref<null>); ref::parse
// reads that form back and rejects anything else (nullopt).
struct ref {
    std::string node;
    std::uint64_t id = 0;

    bool is_null() const noexcept { return id == 0; }
    std::string to_string() const;
    static std::optional<ref> parse(std::string_view text);
    friend bool operator==(const ref&, const ref&) = default;
    friend auto operator<=>(const ref&, const ref&) = default;
};

// A byte sequence with a vector-like interface and small-buffer storage:
// up to inline_capacity bytes live inside the object (no allocation, like a
// short std::string), longer contents on the heap. It converts to and from
// std::vector<std::uint8_t>, and offers the vector members code commonly
// uses (data, size, empty, begin/end, [], assign, insert, push_back,
// resize, reserve, clear, ==).
// Ownership: owns its bytes (copies are deep; a move leaves the source empty).
// Thread-safety: a plain value.
class byte_buffer {
public:
    using value_type = std::uint8_t;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using reference = std::uint8_t&;
    using const_reference = const std::uint8_t&;
    using pointer = std::uint8_t*;
    using const_pointer = const std::uint8_t*;
    using iterator = std::uint8_t*;
    using const_iterator = const std::uint8_t*;
    static constexpr std::size_t inline_capacity = 39;

    byte_buffer() noexcept { set_tag(0); }
    byte_buffer(const void* data, std::size_t n) {
        set_tag(0);
        assign_raw(static_cast<const std::uint8_t*>(data), n);
    }
    explicit byte_buffer(std::size_t n, std::uint8_t v = 0) {
        set_tag(0);
        resize(n, v);
    }
    byte_buffer(std::initializer_list<std::uint8_t> il) {
        set_tag(0);
        assign_raw(il.begin(), il.size());
    }
    template <class It, class = typename std::iterator_traits<It>::iterator_category>
    byte_buffer(It first, It last) {
        set_tag(0);
        assign(first, last);
    }
    byte_buffer(const std::vector<std::uint8_t>& v) {
        set_tag(0);
        assign_raw(v.data(), v.size());
    }
    byte_buffer(const byte_buffer& o) {
        set_tag(0);
        assign_raw(o.data(), o.size());
    }
    byte_buffer(byte_buffer&& o) noexcept {
        std::memcpy(raw_, o.raw_, sizeof raw_);
        o.set_tag(0);
    }
    byte_buffer& operator=(const byte_buffer& o) {
        if (this != &o) assign_raw(o.data(), o.size());
        return *this;
    }
    byte_buffer& operator=(byte_buffer&& o) noexcept {
        if (this != &o) {
            free_heap();
            std::memcpy(raw_, o.raw_, sizeof raw_);
            o.set_tag(0);
        }
        return *this;
    }
    byte_buffer& operator=(const std::vector<std::uint8_t>& v) {
        assign_raw(v.data(), v.size());
        return *this;
    }
    ~byte_buffer() { free_heap(); }

    operator std::vector<std::uint8_t>() const { return std::vector<std::uint8_t>(begin(), end()); }

    std::uint8_t* data() noexcept { return on_heap() ? heap_ptr() : raw_; }
    const std::uint8_t* data() const noexcept { return on_heap() ? heap_ptr() : raw_; }
    std::size_t size() const noexcept { return on_heap() ? heap_field(1) : tag(); }
    bool empty() const noexcept { return size() == 0; }
    std::size_t capacity() const noexcept { return on_heap() ? heap_field(2) : inline_capacity; }
    iterator begin() noexcept { return data(); }
    iterator end() noexcept { return data() + size(); }
    const_iterator begin() const noexcept { return data(); }
    const_iterator end() const noexcept { return data() + size(); }
    const_iterator cbegin() const noexcept { return begin(); }
    const_iterator cend() const noexcept { return end(); }
    std::uint8_t& operator[](std::size_t i) noexcept { return data()[i]; }
    const std::uint8_t& operator[](std::size_t i) const noexcept { return data()[i]; }
    std::uint8_t& front() noexcept { return data()[0]; }
    const std::uint8_t& front() const noexcept { return data()[0]; }
    std::uint8_t& back() noexcept { return data()[size() - 1]; }
    const std::uint8_t& back() const noexcept { return data()[size() - 1]; }

    void clear() noexcept { set_size(0); }
    void reserve(std::size_t n) {
        if (n > capacity()) grow_to(n);
    }
    void resize(std::size_t n, std::uint8_t v = 0) {
        std::size_t old = size();
        reserve(n);
        if (n > old) std::memset(data() + old, v, n - old);
        set_size(n);
    }
    void push_back(std::uint8_t v) {
        std::size_t n = size();
        if (n == capacity()) grow_to(n * 2);
        data()[n] = v;
        set_size(n + 1);
    }
    void pop_back() noexcept { set_size(size() - 1); }
    void assign(const std::uint8_t* first, const std::uint8_t* last) {
        assign_raw(first, static_cast<std::size_t>(last - first));
    }
    template <class It>
    void assign(It first, It last) {
        byte_buffer tmp;
        tmp.insert(tmp.end(), first, last);
        *this = std::move(tmp);
    }
    void assign(std::size_t n, std::uint8_t v) {
        clear();
        resize(n, v);
    }
    // Inserts [first, last) before `pos` (which must not point into the
    // inserted range); returns an iterator to the first inserted byte.
    template <class It>
    iterator insert(const_iterator pos, It first, It last) {
        std::size_t at = static_cast<std::size_t>(pos - begin());
        if constexpr (std::is_base_of_v<std::forward_iterator_tag,
                                        typename std::iterator_traits<It>::iterator_category>) {
            std::size_t n = static_cast<std::size_t>(std::distance(first, last));
            std::size_t old = size();
            if (old + n > capacity()) grow_to(std::max(old + n, old * 2));
            std::uint8_t* d = data();
            std::memmove(d + at + n, d + at, old - at);
            for (std::size_t i = 0; first != last; ++first, ++i) d[at + i] = static_cast<std::uint8_t>(*first);
            set_size(old + n);
        } else {
            for (std::size_t i = at; first != last; ++first, ++i) insert(begin() + i, static_cast<std::uint8_t>(*first));
        }
        return begin() + at;
    }
    iterator insert(const_iterator pos, std::uint8_t v) {
        const std::uint8_t one[1] = {v};
        return insert(pos, one, one + 1);
    }
    iterator erase(const_iterator first, const_iterator last) noexcept {
        std::size_t at = static_cast<std::size_t>(first - begin()), n = static_cast<std::size_t>(last - first);
        std::uint8_t* d = data();
        std::memmove(d + at, d + at + n, size() - at - n);
        set_size(size() - n);
        return begin() + at;
    }

    friend bool operator==(const byte_buffer& a, const byte_buffer& b) noexcept {
        return a.size() == b.size() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size()) == 0);
    }
    friend bool operator==(const byte_buffer& a, const std::vector<std::uint8_t>& b) noexcept {
        return a.size() == b.size() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size()) == 0);
    }

private:
    // raw_[0..inline_capacity) holds the bytes inline, raw_[inline_capacity]
    // is the tag: the inline size, or kHeap when raw_ holds {ptr, size, cap}.
    static constexpr std::uint8_t kHeap = 0xff;
    std::uint8_t tag() const noexcept { return raw_[inline_capacity]; }
    void set_tag(std::uint8_t t) noexcept { raw_[inline_capacity] = t; }
    bool on_heap() const noexcept { return tag() == kHeap; }
    std::uint8_t* heap_ptr() const noexcept {
        std::uint8_t* p;
        std::memcpy(&p, raw_, sizeof p);
        return p;
    }
    std::size_t heap_field(int i) const noexcept {
        std::size_t v;
        std::memcpy(&v, raw_ + i * sizeof(std::size_t), sizeof v);
        return v;
    }
    void set_heap(std::uint8_t* p, std::size_t size, std::size_t cap) noexcept {
        std::memcpy(raw_, &p, sizeof p);
        std::memcpy(raw_ + sizeof(std::size_t), &size, sizeof size);
        std::memcpy(raw_ + 2 * sizeof(std::size_t), &cap, sizeof cap);
        set_tag(kHeap);
    }
    void set_size(std::size_t n) noexcept {
        if (on_heap()) std::memcpy(raw_ + sizeof(std::size_t), &n, sizeof n);
        else set_tag(static_cast<std::uint8_t>(n));
    }
    void free_heap() noexcept {
        if (on_heap()) ::operator delete(heap_ptr());
        set_tag(0);
    }
    void grow_to(std::size_t n) {
        if (n <= capacity()) return;
        auto* p = static_cast<std::uint8_t*>(::operator new(n));
        std::size_t old = size();
        if (old) std::memcpy(p, data(), old);
        free_heap();
        set_heap(p, old, n);
    }
    void assign_raw(const std::uint8_t* p, std::size_t n) {
        if (n > capacity()) {
            byte_buffer tmp;
            tmp.grow_to(n);
            *this = std::move(tmp);
        }
        if (n) std::memmove(data(), p, n);
        set_size(n);
    }

    alignas(std::size_t) std::uint8_t raw_[inline_capacity + 1];
};
static_assert(sizeof(byte_buffer) == 40);

// Raw bytes, distinct from a (UTF-8) string: msgpack bin vs str.
struct binary {
    byte_buffer bytes;

    binary() = default;
    explicit binary(const std::vector<std::uint8_t>& b) : bytes(b) {}
    binary(const void* data, std::size_t n) : bytes(data, n) {}
    std::size_t size() const noexcept { return bytes.size(); }
    friend bool operator==(const binary&, const binary&) = default;
};

struct nil_t {
    friend bool operator==(nil_t, nil_t) { return true; }
};
inline constexpr nil_t nil{};

class term;
using term_array = std::vector<term>;
// A map keeps its pairs in order (msgpack maps are ordered on the wire). Keys
// are not required to be unique on decode; lookup() returns the first match.
using term_map = std::vector<std::pair<term, term>>;

class term {
public:
    // Integers are normalised: every value representable as int64_t is held as
    // int64_t; only values above INT64_MAX are held as uint64_t.
    using value_type = std::variant<nil_t, bool, std::int64_t, std::uint64_t, double, std::string,
                                    binary, term_array, term_map, pid, ref>;

    term() : v_(nil_t{}) {}
    term(nil_t) : v_(nil_t{}) {}
    term(bool b) : v_(b) {}
    term(int i) : v_(std::int64_t{i}) {}
    term(long i) : v_(std::int64_t{i}) {}
    term(long long i) : v_(std::int64_t{i}) {}
    term(unsigned u) : v_(std::int64_t{u}) {}
    term(unsigned long u) { set_unsigned(u); }
    term(unsigned long long u) { set_unsigned(u); }
    term(double d) : v_(d) {}
    term(float f) : v_(double{f}) {}
    term(const char* s) : v_(std::string(s)) {}
    term(std::string s) : v_(std::move(s)) {}
    term(std::string_view s) : v_(std::string(s)) {}
    term(binary b) : v_(std::move(b)) {}
    term(term_array a) : v_(std::move(a)) {}
    term(term_map m) : v_(std::move(m)) {}
    term(pid p) : v_(std::move(p)) {}
    term(ref r) : v_(std::move(r)) {}

    // Typed C++ -> term through msgpack (works for MSGPACK_DEFINE structs,
    // std containers, tuples, optionals, ...). Defined in kith/convert.hpp.
    template <class T>
    static term from(const T& value);
    // term -> typed C++; errc::bad_type with a description on mismatch.
    // Defined in kith/convert.hpp.
    template <class T>
    result<T> as() const;

    bool is_nil() const noexcept { return std::holds_alternative<nil_t>(v_); }
    bool is_bool() const noexcept { return std::holds_alternative<bool>(v_); }
    bool is_int() const noexcept {
        return std::holds_alternative<std::int64_t>(v_) || std::holds_alternative<std::uint64_t>(v_);
    }
    bool is_float() const noexcept { return std::holds_alternative<double>(v_); }
    bool is_string() const noexcept { return std::holds_alternative<std::string>(v_); }
    bool is_binary() const noexcept { return std::holds_alternative<binary>(v_); }
    bool is_array() const noexcept { return std::holds_alternative<term_array>(v_); }
    bool is_map() const noexcept { return std::holds_alternative<term_map>(v_); }
    bool is_pid() const noexcept { return std::holds_alternative<pid>(v_); }
    bool is_ref() const noexcept { return std::holds_alternative<ref>(v_); }

    // Non-throwing accessors: nullptr when the term holds another type.
    template <class T>
    const T* get_if() const noexcept { return std::get_if<T>(&v_); }
    template <class T>
    T* get_if() noexcept { return std::get_if<T>(&v_); }

    // Convenience accessors; nullopt / nullptr on a type mismatch.
    std::optional<std::int64_t> as_int() const noexcept;  // nullopt also if > INT64_MAX
    std::optional<double> as_float() const noexcept;      // ints convert too
    const std::string* as_string() const noexcept { return get_if<std::string>(); }
    const term_array* as_array() const noexcept { return get_if<term_array>(); }
    const term_map* as_map() const noexcept { return get_if<term_map>(); }
    const pid* as_pid() const noexcept { return get_if<pid>(); }

    // Element access for arrays; nullptr if not an array or out of range.
    const term* at(std::size_t i) const noexcept;
    std::size_t size() const noexcept;  // array/map element count, else 0
    // First value whose key equals `key` in a map; nullptr if none.
    const term* lookup(const term& key) const noexcept;

    const value_type& value() const noexcept { return v_; }
    value_type& value() noexcept { return v_; }

    // A readable, Erlang-like rendering for logs and tests, e.g.
    // ["store", "weather", <gandalf@pi1.42>, #bin[3], {"k" => 1}].
    std::string to_string() const;

    friend bool operator==(const term& a, const term& b) { return a.v_ == b.v_; }

private:
    void set_unsigned(unsigned long long u) {
        if (u <= static_cast<unsigned long long>(INT64_MAX)) v_ = static_cast<std::int64_t>(u);
        else v_ = static_cast<std::uint64_t>(u);
    }
    value_type v_;
};

// Build an array term: kith::arr("store", "weather", 1).
template <class... Ts>
term arr(Ts&&... xs) {
    term_array a;
    a.reserve(sizeof...(Ts));
    (a.emplace_back(std::forward<Ts>(xs)), ...);
    return term(std::move(a));
}

// Build a map term: kith::map_of({{"k", 1}, {"j", "v"}}).
inline term map_of(std::initializer_list<std::pair<term, term>> kv) {
    return term(term_map(kv.begin(), kv.end()));
}

// Bounds applied to every decode of untrusted bytes. Defaults are safe for
// network input; each bound, when exceeded, yields errc::decode.
struct decode_limits {
    std::size_t max_bytes = 1u << 20;   // total encoded size of one term/envelope
    std::size_t max_depth = 64;         // nesting of arrays/maps/ext
    std::size_t max_array = 1u << 16;   // elements in one array
    std::size_t max_map = 1u << 15;     // pairs in one map
    std::size_t max_str = 1u << 20;     // bytes in one string
    std::size_t max_bin = 1u << 20;     // bytes in one binary
    std::size_t max_ext = 1024;         // bytes in one ext (pid/ref payloads)
};

// msgpack encoding of a term (canonical: smallest integer/length forms).
// Appends to `out`.
void encode(const term& t, std::string& out);
std::string encode(const term& t);

// Decodes exactly one term from `bytes` (trailing bytes are an error).
// Never throws: malformed, truncated or over-limit input yields errc::decode
// with a description.
result<term> decode(std::string_view bytes, const decode_limits& limits = {});

}  // namespace kith
