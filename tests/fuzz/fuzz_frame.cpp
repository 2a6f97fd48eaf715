// Fuzz target: the frame / envelope / term decoder (kith/envelope.hpp,
// kith/term.hpp; docs/protocol.md sections 6-7). Every input is tried as a
// whole frame, as one envelope body and as one term, each with the default
// (network) limits and with tight limits. Besides "no crash, no sanitizer
// report", it checks what the codec promises:
//   * decoding never throws;
//   * whatever decodes re-encodes to bytes that decode again to the same
//     encoding (the canonical form is a fixed point);
//   * what decodes under tight limits also decodes under the defaults.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "kith/envelope.hpp"
#include "kith/term.hpp"

using namespace kith;

namespace {

decode_limits tight_limits() {
    decode_limits l;
    l.max_bytes = 4096;
    l.max_depth = 4;
    l.max_array = 16;
    l.max_map = 8;
    l.max_str = 64;
    l.max_bin = 64;
    l.max_ext = 64;
    return l;
}

std::string encode_all(const std::vector<envelope>& envs) {
    frame_builder b;
    for (auto& e : envs) b.add(e);
    return b.take();
}

void check_frame(std::string_view in, const frame_limits& lim, bool tight) {
    auto r = decode_frame(in, lim);
    if (!r.ok()) {
        FUZZ_CHECK(r.code() == errc::decode, "decode_frame failed with a code other than decode");
        return;
    }
    if (tight) FUZZ_CHECK(decode_frame(in).ok(), "a frame accepted under tight limits is refused under the defaults");
    FUZZ_CHECK(!r->empty(), "decode_frame accepted a frame without envelopes");
    std::string once = encode_all(*r);
    auto again = decode_frame(once);
    FUZZ_CHECK(again.ok(), "a decoded frame re-encodes to bytes that do not decode: " + again.err().message() +
                               " input " + fuzz_hex(in) + " re-encoded " + fuzz_hex(once));
    FUZZ_CHECK(again->size() == r->size(), "re-encoded frame has another envelope count");
    std::string twice = encode_all(*again);
    FUZZ_CHECK(once == twice, "frame encoding is not a fixed point: " + fuzz_hex(once) + " vs " + fuzz_hex(twice));
    for (std::size_t i = 0; i < r->size(); ++i)
        FUZZ_CHECK(static_cast<int>(type_of((*r)[i])) == static_cast<int>(type_of((*again)[i])),
                   "re-encoded envelope changed type");
}

void check_envelope(std::string_view in, const decode_limits& lim, bool tight) {
    auto r = decode_envelope(in, lim);
    if (!r.ok()) {
        FUZZ_CHECK(r.code() == errc::decode, "decode_envelope failed with a code other than decode");
        return;
    }
    if (tight) FUZZ_CHECK(decode_envelope(in).ok(), "an envelope accepted under tight limits is refused under the defaults");
    std::string once;
    encode_envelope(*r, once);
    auto again = decode_envelope(once);
    FUZZ_CHECK(again.ok(), "a decoded envelope re-encodes to bytes that do not decode: " + again.err().message() +
                               " input " + fuzz_hex(in) + " re-encoded " + fuzz_hex(once));
    std::string twice;
    encode_envelope(*again, twice);
    FUZZ_CHECK(once == twice, "envelope encoding is not a fixed point: " + fuzz_hex(once) + " vs " + fuzz_hex(twice));
    // The same envelope alone in a frame decodes too.
    auto f = decode_frame(encode_frame(*r));
    FUZZ_CHECK(f.ok() && f->size() == 1, "encode_frame of a decoded envelope does not decode");
}

void check_term(std::string_view in, const decode_limits& lim, bool tight) {
    auto r = decode(in, lim);
    if (!r.ok()) {
        FUZZ_CHECK(r.code() == errc::decode, "decode failed with a code other than decode");
        return;
    }
    if (tight) FUZZ_CHECK(decode(in).ok(), "a term accepted under tight limits is refused under the defaults");
    std::string once = encode(*r);
    auto again = decode(once);
    FUZZ_CHECK(again.ok(), "a decoded term re-encodes to bytes that do not decode: " + again.err().message() +
                               " input " + fuzz_hex(in) + " re-encoded " + fuzz_hex(once));
    FUZZ_CHECK(encode(*again) == once, "term encoding is not a fixed point: " + fuzz_hex(once));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    static const frame_limits defaults{};
    static const frame_limits tight = [] {
        frame_limits f;
        f.max_frame_bytes = 4096;
        f.max_envelopes = 8;
        f.term = tight_limits();
        return f;
    }();
    try {
        check_frame(in, defaults, false);
        check_frame(in, tight, true);
        check_envelope(in, defaults.term, false);
        check_envelope(in, tight.term, true);
        check_term(in, defaults.term, false);
        check_term(in, tight.term, true);
    } catch (const std::exception& e) {
        FUZZ_CHECK(false, std::string("a decoder threw: ") + e.what());
    }
    return 0;
}
