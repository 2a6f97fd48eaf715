// The envelope and frame codec (see kith/envelope.hpp). Byte layout:
// docs/protocol.md ("Frames", "Envelopes"); the golden vectors there are
// checked by tests/codec/test_golden.cpp.
#include "kith/envelope.hpp"
#include "kith/keys.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <new>
#include <tuple>

#include "codec/codec_internal.hpp"
#include "codec/envelope_fields.hpp"
#include "kith/convert.hpp"

namespace kith {

namespace detail::envelope_fields {
// envelope_fast.cpp: decodes the envelope at the start of [data, data+len)
// on the fast path; false if it declined (`out` unchanged), else true with
// its length in `used`.
bool fast_envelope(const char* data, std::size_t len, const decode_limits& limits, std::vector<envelope>& out,
                   std::size_t& used);
}  // namespace detail::envelope_fields

namespace {

using namespace detail::envelope_fields;

// ---- frame header -----------------------------------------------------------
// Used on the wire; never change. 0xc1 is the one byte msgpack never uses, so
// a frame can never be mistaken for a bare msgpack value.
constexpr unsigned char frame_magic0 = 0xc1;
constexpr unsigned char frame_magic1 = 0x4b;  // 'K'
constexpr std::size_t frame_header_size = 4;  // magic (2), version (1), flags (1)

void put_header(std::string& out) {
    const char h[frame_header_size] = {static_cast<char>(frame_magic0), static_cast<char>(frame_magic1),
                                       static_cast<char>(protocol_version), 0};
    out.append(h, frame_header_size);
}


// ---- encoding ---------------------------------------------------------------

using packer = msgpack::packer<detail::string_sink>;

void put(packer& pk, std::uint64_t v) { pk.pack_uint64(v); }
void put(packer& pk, std::uint32_t v) { pk.pack_uint32(v); }
void put(packer& pk, std::uint16_t v) { pk.pack_uint16(v); }
void put(packer& pk, std::uint8_t v) { pk.pack_uint8(v); }
void put(packer& pk, bool v) { v ? pk.pack_true() : pk.pack_false(); }
void put(packer& pk, errc v) { pk.pack_uint8(static_cast<std::uint8_t>(v)); }
void put(packer& pk, const std::string& s) {
    pk.pack_str(static_cast<std::uint32_t>(s.size()));
    pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}
void put(packer& pk, const bin_cref& b) {
    pk.pack_bin(static_cast<std::uint32_t>(b.s.size()));
    pk.pack_bin_body(b.s.data(), static_cast<std::uint32_t>(b.s.size()));
}
void put(packer& pk, const std::vector<std::string>& v) {
    pk.pack_array(static_cast<std::uint32_t>(v.size()));
    for (const auto& s : v) put(pk, s);
}
// A pid/ref ext, byte for byte what detail::pack_node_ext writes, in one
// write to the stream instead of three (pids and refs are in most envelopes).
void put_node_ext(packer& pk, std::int8_t type, const std::string& node, std::uint64_t n) {
    const std::size_t name_len = n == 0 ? 0 : node.size();
    if (name_len > 255) {
        detail::pack_node_ext(pk, type, node, n);
        return;
    }
    const std::size_t size = 8 + name_len;
    char buf[3 + 8 + 255];
    std::size_t k = 0;
    if (size == 8) {
        buf[k++] = static_cast<char>(0xd7);  // fixext 8
    } else if (size == 16) {
        buf[k++] = static_cast<char>(0xd8);  // fixext 16
    } else {
        buf[k++] = static_cast<char>(0xc7);  // ext 8 (size < 256 here)
        buf[k++] = static_cast<char>(size);
    }
    buf[k++] = static_cast<char>(type);
    detail::store_be64(buf + k, n);
    k += 8;
    if (name_len) std::memcpy(buf + k, node.data(), name_len);
    pk.pack_bin_body(buf, static_cast<std::uint32_t>(k + name_len));  // raw bytes
}
void put(packer& pk, const pid& p) { put_node_ext(pk, detail::pid_ext_type, p.node, p.serial); }
void put(packer& pk, const ref& r) { put_node_ext(pk, detail::ref_ext_type, r.node, r.id); }
void put(packer& pk, const term& t) { detail::pack_term(pk, t); }

template <class E>
void encode_fields(packer& pk, const E& e) {
    auto fs = fields(e);
    pk.pack_array(static_cast<std::uint32_t>(1 + std::tuple_size_v<decltype(fs)>));
    pk.pack_uint8(static_cast<std::uint8_t>(meta<E>::type));
    std::apply([&](const auto&... f) { (put(pk, f), ...); }, fs);
}

// ---- decoding ---------------------------------------------------------------

// Thrown (and caught inside this file only) when an envelope is malformed.
struct bad_envelope {
    std::string why;
};

const char* object_type_name(const msgpack::object& o) {
    switch (o.type) {
        case msgpack::type::NIL: return "nil";
        case msgpack::type::BOOLEAN: return "bool";
        case msgpack::type::POSITIVE_INTEGER: return "unsigned integer";
        case msgpack::type::NEGATIVE_INTEGER: return "negative integer";
        case msgpack::type::FLOAT32:
        case msgpack::type::FLOAT64: return "float";
        case msgpack::type::STR: return "str";
        case msgpack::type::BIN: return "bin";
        case msgpack::type::ARRAY: return "array";
        case msgpack::type::MAP: return "map";
        case msgpack::type::EXT: return "ext";
    }
    return "unknown";
}

struct field_reader {
    const char* env;          // envelope type name
    const char* const* names; // field names
    std::size_t index = 0;    // field being read (0-based, after the type tag)

    [[noreturn]] void fail(const std::string& what) const {
        throw bad_envelope{"envelope " + std::string(env) + ", field '" + names[index] + "': " + what};
    }
    [[noreturn]] void expected(const char* want, const msgpack::object& o) const {
        fail(std::string("expected ") + want + ", got " + object_type_name(o));
    }

    std::uint64_t uint(const msgpack::object& o, std::uint64_t max, const char* want) const {
        if (o.type != msgpack::type::POSITIVE_INTEGER) expected(want, o);
        if (o.via.u64 > max) fail(std::string("expected ") + want + ", got " + std::to_string(o.via.u64));
        return o.via.u64;
    }
    void get(const msgpack::object& o, std::uint64_t& v) const { v = uint(o, UINT64_MAX, "uint64"); }
    void get(const msgpack::object& o, std::uint32_t& v) const {
        v = static_cast<std::uint32_t>(uint(o, UINT32_MAX, "uint32"));
    }
    void get(const msgpack::object& o, std::uint16_t& v) const {
        v = static_cast<std::uint16_t>(uint(o, UINT16_MAX, "uint16"));
    }
    void get(const msgpack::object& o, std::uint8_t& v) const {
        v = static_cast<std::uint8_t>(uint(o, UINT8_MAX, "uint8"));
    }
    void get(const msgpack::object& o, errc& v) const {
        v = static_cast<errc>(uint(o, UINT8_MAX, "error code (uint8)"));
    }
    void get(const msgpack::object& o, bool& v) const {
        if (o.type != msgpack::type::BOOLEAN) expected("bool", o);
        v = o.via.boolean;
    }
    void get(const msgpack::object& o, std::string& v) const {
        if (o.type != msgpack::type::STR) expected("str", o);
        v.assign(o.via.str.ptr, o.via.str.size);
    }
    void get(const msgpack::object& o, bin_ref& v) const {
        if (o.type != msgpack::type::BIN) expected("bin", o);
        v.s.assign(o.via.bin.ptr, o.via.bin.size);
    }
    void get(const msgpack::object& o, std::vector<std::string>& v) const {
        if (o.type != msgpack::type::ARRAY) expected("array of str", o);
        v.resize(o.via.array.size);
        for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
            const msgpack::object& s = o.via.array.ptr[i];
            if (s.type != msgpack::type::STR) expected("array of str", s);
            v[i].assign(s.via.str.ptr, s.via.str.size);
        }
    }
    void node_ext(const msgpack::object& o, std::int8_t type, const char* want, std::string& node,
                  std::uint64_t& n) const {
        if (o.type != msgpack::type::EXT) expected(want, o);
        if (o.via.ext.type() != type)
            fail(std::string("expected ") + want + ", got ext type " + std::to_string(o.via.ext.type()));
        std::string why;
        if (!detail::parse_node_ext(o.via.ext.data(), o.via.ext.size, node, n, &why))
            fail(std::string("bad ") + want + ": " + why);
    }
    void get(const msgpack::object& o, pid& v) const { node_ext(o, detail::pid_ext_type, "pid", v.node, v.serial); }
    void get(const msgpack::object& o, ref& v) const { node_ext(o, detail::ref_ext_type, "ref", v.node, v.id); }
    void get(const msgpack::object& o, term& v) const {
        try {
            v = detail::term_from_object(o);
        } catch (const detail::conversion_error& e) {
            fail(e.what());
        }
    }
};

// Decodes the fields straight into a new element of `out` (no extra move of the
// envelope). On failure throws bad_envelope; `out` is then discarded whole.
template <class E>
void decode_fields(const msgpack::object* items, std::size_t count, std::vector<envelope>& out) {
    E& e = std::get<E>(out.emplace_back(std::in_place_type<E>));
    auto fs = fields(e);
    constexpr std::size_t arity = std::tuple_size_v<decltype(fs)>;
    if (count != arity)
        throw bad_envelope{"envelope " + std::string(meta<E>::name) + " has " + std::to_string(count) +
                           " fields, expected " + std::to_string(arity)};
    field_reader r{meta<E>::name, meta<E>::field_names};
    std::apply(
        [&](auto&... f) {
            ((r.get(items[r.index], f), ++r.index), ...);
        },
        fs);
    if constexpr (std::is_same_v<E, env_handshake>) {
        if (!valid_node_name(e.node)) {
            r.index = 1;
            r.fail("invalid node name");
        }
        if (!e.key.empty() && !public_key::from_z85(e.key)) {
            r.index = 5;
            r.fail("not a Z85 public key");
        }
        if (!e.nonce.empty() && e.nonce.size() != 16) {
            r.index = 6;
            r.fail("nonce of " + std::to_string(e.nonce.size()) + " bytes, expected 16 or none");
        }
        if (!e.proof.empty() && e.proof.size() != 32) {
            r.index = 7;
            r.fail("proof of " + std::to_string(e.proof.size()) + " bytes, expected 32 or none");
        }
    }
    if constexpr (std::is_same_v<E, env_spawn_request>) {
        if (e.flags & ~(spawn_link_flag | spawn_monitor_flag)) {
            r.index = 5;
            r.fail("unknown flag bits " + std::to_string(e.flags));
        }
    }
}

using decoder_fn = void (*)(const msgpack::object*, std::size_t, std::vector<envelope>&);

// Indexed by env_type; entry 0 is unused.
template <std::size_t... I>
constexpr std::array<decoder_fn, sizeof...(I) + 1> make_decoders(std::index_sequence<I...>) {
    return {nullptr, &decode_fields<std::variant_alternative_t<I, envelope>>...};
}
constexpr auto decoders = make_decoders(std::make_index_sequence<std::variant_size_v<envelope>>{});

// The tags must follow the variant's order (checked at compile time).
// Every member of every envelope struct must be in its field list: counts the
// aggregate's members (brace-initialisable with N "anything" values) and
// compares with the list, so a field added to envelope.hpp but not here fails
// to compile instead of silently not crossing the wire.
struct any_field {
    template <class T>
    operator T() const;
};
template <class T, class... A>
constexpr std::size_t member_count() {
    if constexpr (requires { T{A{}..., any_field{}}; }) return member_count<T, A..., any_field>();
    else return sizeof...(A);
}
template <std::size_t... I>
constexpr bool field_lists_complete(std::index_sequence<I...>) {
    return ((member_count<std::variant_alternative_t<I, envelope>>() ==
             std::tuple_size_v<decltype(fields(std::declval<std::variant_alternative_t<I, envelope>&>()))>) && ...);
}
static_assert(field_lists_complete(std::make_index_sequence<std::variant_size_v<envelope>>{}),
              "an envelope struct has a member missing from its KITH_FIELDS list");

template <std::size_t... I>
constexpr bool tags_in_order(std::index_sequence<I...>) {
    return ((static_cast<std::size_t>(meta<std::variant_alternative_t<I, envelope>>::type) == I + 1) && ...);
}
static_assert(tags_in_order(std::make_index_sequence<std::variant_size_v<envelope>>{}),
              "envelope variant order must match env_type tags");

void object_to_envelope(const msgpack::object& o, std::vector<envelope>& out) {
    if (o.type != msgpack::type::ARRAY)
        throw bad_envelope{std::string("envelope is not an array (got ") + object_type_name(o) + ")"};
    if (o.via.array.size == 0) throw bad_envelope{"envelope is an empty array"};
    const msgpack::object& tag = o.via.array.ptr[0];
    if (tag.type != msgpack::type::POSITIVE_INTEGER)
        throw bad_envelope{std::string("envelope type is not an unsigned integer (got ") + object_type_name(tag) + ")"};
    if (tag.via.u64 == 0 || tag.via.u64 >= decoders.size())
        throw bad_envelope{"unknown envelope type " + std::to_string(tag.via.u64)};
    decoders[tag.via.u64](o.via.array.ptr + 1, o.via.array.size - 1, out);
}


// Decodes the one envelope occupying exactly [data, data+len), already scanned,
// and appends it to `out`. `zone` is made on first use (the fast path needs none).
void unpack_envelope(const char* data, std::size_t len, const decode_limits& limits,
                     std::optional<msgpack::zone>& zone, std::vector<envelope>& out) {
    std::size_t used = 0;
    if (fast_envelope(data, len, limits, out, used)) {
        if (used == len) return;
        out.pop_back();  // cannot happen for a scanned extent; the msgpack path decides
    }
    if (!zone) zone.emplace();
    else zone->clear();
    msgpack::object o;
    try {
        std::size_t off = 0;
        o = msgpack::unpack(*zone, data, len, off, detail::reference_all, nullptr, detail::unpack_limits(limits));
        if (off != len) throw bad_envelope{"trailing bytes"};
    } catch (const bad_envelope&) {
        throw;
    } catch (const msgpack::depth_size_overflow&) {
        throw bad_envelope{"nesting deeper than " + std::to_string(limits.max_depth)};
    } catch (const msgpack::insufficient_bytes&) {
        throw bad_envelope{"truncated"};
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        throw bad_envelope{e.what()};
    }
    object_to_envelope(o, out);
}

// Scans the envelope starting at data[0]; returns its length.
std::size_t scan_envelope(const char* data, std::size_t len, const decode_limits& limits) {
    std::size_t end = 0;
    std::string why;
    if (!detail::scan_value(reinterpret_cast<const unsigned char*>(data), len, limits, end, why))
        throw bad_envelope{std::move(why)};
    if (end > limits.max_bytes)
        throw bad_envelope{"envelope of " + std::to_string(end) + " bytes exceeds limit " +
                           std::to_string(limits.max_bytes)};
    return end;
}

}  // namespace

env_type type_of(const envelope& e) noexcept {
    return static_cast<env_type>(e.index() + 1);
}

void encode_envelope(const envelope& e, std::string& out) {
    detail::string_sink sink{&out};
    packer pk(sink);
    std::visit([&](const auto& x) { encode_fields(pk, x); }, e);
}

frame_builder::frame_builder() {
    put_header(buf_);
}

std::size_t frame_builder::add(const envelope& e) {
    encode_envelope(e, buf_);
    ++count_;
    return buf_.size();
}

std::string frame_builder::take() {
    std::string out = std::move(buf_);
    buf_ = std::string();
    buf_.reserve(out.size() < (1u << 20) ? out.size() : (1u << 20));  // the next frame is likely alike
    put_header(buf_);
    count_ = 0;
    return out;
}

void frame_builder::drop_last(std::size_t size_before) {
    buf_.resize(size_before);
    --count_;
}

std::string frame_builder::take_all_but_last(std::size_t size_before) {
    std::string last(buf_, size_before);
    buf_.resize(size_before);
    std::string out = std::move(buf_);
    buf_ = std::string();
    buf_.reserve(frame_header_size + last.size());
    put_header(buf_);
    buf_.append(last);
    count_ = 1;
    return out;
}

std::string encode_frame(const envelope& e) {
    std::string out;
    out.reserve(64);
    put_header(out);
    encode_envelope(e, out);
    return out;
}

result<envelope> decode_envelope(std::string_view bytes, const decode_limits& limits) {
    try {
        if (bytes.size() > limits.max_bytes)
            return error{errc::decode, "envelope of " + std::to_string(bytes.size()) + " bytes exceeds limit " +
                                           std::to_string(limits.max_bytes)};
        if (bytes.empty()) return error{errc::decode, "empty input"};
        std::size_t end = scan_envelope(bytes.data(), bytes.size(), limits);
        if (end != bytes.size())
            return error{errc::decode, std::to_string(bytes.size() - end) + " trailing bytes after the envelope"};
        std::optional<msgpack::zone> zone;
        std::vector<envelope> one;
        one.reserve(1);
        unpack_envelope(bytes.data(), end, limits, zone, one);
        return std::move(one.front());
    } catch (const bad_envelope& b) {
        return error{errc::decode, b.why};
    } catch (const std::bad_alloc&) {
        return error{errc::decode, "out of memory"};
    } catch (const std::exception& e) {
        return error{errc::decode, e.what()};
    }
}

result<std::vector<envelope>> decode_frame(std::string_view frame, const frame_limits& limits) {
    std::size_t count = 0;
    try {
        if (frame.size() > limits.max_frame_bytes)
            return error{errc::decode, "frame of " + std::to_string(frame.size()) + " bytes exceeds limit " +
                                           std::to_string(limits.max_frame_bytes)};
        if (frame.size() > UINT32_MAX) return error{errc::decode, "frame larger than 4 GiB"};
        if (frame.size() < frame_header_size) return error{errc::decode, "frame shorter than its 4-byte header"};
        const auto* h = reinterpret_cast<const unsigned char*>(frame.data());
        if (h[0] != frame_magic0 || h[1] != frame_magic1) return error{errc::decode, "bad frame magic"};
        if (h[2] != protocol_version)
            return error{errc::decode, "unsupported protocol version " + std::to_string(h[2]) + " (this node speaks " +
                                           std::to_string(protocol_version) + ")"};
        if (h[3] != 0) return error{errc::decode, "unknown frame flags " + std::to_string(h[3])};
        if (frame.size() == frame_header_size) return error{errc::decode, "frame holds no envelopes"};

        // Fast path: decode envelope after envelope straight from the bytes,
        // under the same bounds as the scan below. If it declines anywhere,
        // everything it made is dropped and the frame is decoded the
        // two-pass way, which gives the error (all or nothing either way).
        {
            std::vector<envelope> out;
            out.reserve(std::min<std::size_t>(64, frame.size() / 8));
            std::size_t off = frame_header_size;
            bool ok = true;
            while (off < frame.size()) {
                std::size_t used = 0;
                if (out.size() == limits.max_envelopes ||
                    !fast_envelope(frame.data() + off, frame.size() - off, limits.term, out, used)) {
                    ok = false;
                    break;
                }
                off += used;
            }
            if (ok) return out;
        }

        // Pass 1: bound-check every envelope and find its extent, without
        // allocating anything per value. A frame is all or nothing, so a bad
        // envelope anywhere costs no term construction at all.
        std::uint32_t inline_ends[64];
        std::vector<std::uint32_t> more_ends;
        std::size_t off = frame_header_size;
        while (off < frame.size()) {
            if (count == limits.max_envelopes)
                return error{errc::decode, "frame holds more than " + std::to_string(limits.max_envelopes) +
                                               " envelopes"};
            off += scan_envelope(frame.data() + off, frame.size() - off, limits.term);
            if (count < 64) inline_ends[count] = static_cast<std::uint32_t>(off);
            else more_ends.push_back(static_cast<std::uint32_t>(off));
            ++count;
        }
        // Pass 2: unpack and convert.
        const std::size_t total = count;
        std::vector<envelope> out;
        out.reserve(total);
        std::optional<msgpack::zone> zone;  // only for envelopes the fast path declines
        off = frame_header_size;
        for (count = 0; count < total; ++count) {
            const std::size_t end = count < 64 ? inline_ends[count] : more_ends[count - 64];
            unpack_envelope(frame.data() + off, end - off, limits.term, zone, out);
            off = end;
        }
        return out;
    } catch (const bad_envelope& b) {
        return error{errc::decode, "envelope " + std::to_string(count) + ": " + b.why};
    } catch (const std::bad_alloc&) {
        return error{errc::decode, "out of memory"};
    } catch (const std::exception& e) {
        return error{errc::decode, e.what()};
    }
}

}  // namespace kith
