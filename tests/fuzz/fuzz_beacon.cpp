// Fuzz target: the UDP discovery beacon decoder (discovery/src/beacon.hpp;
// docs/protocol.md, "Discovery beacon"). Each datagram is decoded with the
// golden vectors' cluster key (cookie "golden-cookie", so the seeds reach the
// HMAC paths) and without a key. Checks, besides the sanitizers:
//   * a well-formed beacon re-encodes (encode_beacon) to one that decodes to
//     the same status and the same fields;
//   * without a key nothing is ever ok_cluster or bad_hmac;
//   * a beacon is never accepted from more than beacon_max_bytes.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "beacon.hpp"
#include "fuzz_util.hpp"
#include "kith/keys.hpp"

using namespace kith;
using namespace kith::detail;

namespace {

const char* status_name(beacon_status s) {
    switch (s) {
    case beacon_status::ok_cluster: return "ok_cluster";
    case beacon_status::ok_stranger: return "ok_stranger";
    case beacon_status::bad_hmac: return "bad_hmac";
    case beacon_status::malformed: return "malformed";
    }
    return "?";
}

void round_trip(const decoded_beacon& d, const beacon_hmac_key& key, std::span<const std::uint8_t> in) {
    const bool ok = d.status == beacon_status::ok_cluster || d.status == beacon_status::ok_stranger;
    if (!ok) return;
    FUZZ_CHECK(in.size() <= beacon_max_bytes, "a beacon longer than beacon_max_bytes was accepted");
    FUZZ_CHECK(d.status != beacon_status::ok_stranger || (!d.b.cluster && d.b.services.empty()),
               "a stranger's beacon kept its cluster section");
    auto bytes = encode_beacon(d.b, d.b.cluster ? &key : nullptr);
    std::string_view raw(reinterpret_cast<const char*>(in.data()), in.size());
    FUZZ_CHECK(!bytes.empty(), std::string("a decoded beacon (") + status_name(d.status) +
                                   ") does not re-encode; input " + fuzz_hex(raw, 1200));
    auto again = decode_beacon(bytes, &key);
    std::string_view enc(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    FUZZ_CHECK(again.status == d.status, std::string("re-encoded beacon decodes as ") + status_name(again.status) +
                                             ", was " + status_name(d.status) + "; input " + fuzz_hex(raw, 1200) +
                                             " re-encoded " + fuzz_hex(enc, 1200));
    FUZZ_CHECK(again.b == d.b, "re-encoded beacon decodes to other fields; input " + fuzz_hex(raw, 1200) +
                                   " re-encoded " + fuzz_hex(enc, 1200));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // The key of the golden vectors (docs/protocol.md: cookie "golden-cookie").
    static const beacon_hmac_key key = beacon_hmac_key::from_cookie("golden-cookie");
    std::span<const std::uint8_t> in(data, size);
    try {
        auto with = decode_beacon(in, &key);
        round_trip(with, key, in);
        auto without = decode_beacon(in, nullptr);
        FUZZ_CHECK(without.status != beacon_status::ok_cluster && without.status != beacon_status::bad_hmac,
                   "a beacon was authenticated without a key");
        FUZZ_CHECK((without.status == beacon_status::malformed) == (with.status == beacon_status::malformed),
                   "whether a beacon is well formed depends on the key");
        round_trip(without, key, in);
    } catch (const std::exception& e) {
        FUZZ_CHECK(false, std::string("decode_beacon threw: ") + e.what());
    }
    return 0;
}
