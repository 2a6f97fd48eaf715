// Codec figures: envelopes encoded / decoded per second on one core, for
// env_send with a 32-byte binary message, batched 256 envelopes per frame
// (the shape of the remote-send hot path).
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "bench.hpp"
#include "kith/envelope.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

}  // namespace

KITH_BENCH_GROUP("codec", 5) {
    constexpr int batch = 256;
    const kith::envelope e =
        kith::env_send{kith::pid{"gandalf@pi1", 42}, kith::term(kith::binary(std::vector<std::uint8_t>(32, 0xab)))};

    // Encode: fill frames of 256 envelopes and take them, for ~0.5 s.
    kith::frame_builder b;
    std::size_t bytes = 0;
    long envelopes = 0;
    auto t0 = clock_type::now();
    do {
        for (int i = 0; i < 200; ++i) {
            for (int k = 0; k < batch; ++k) b.add(e);
            bytes += b.take().size();
            envelopes += batch;
        }
    } while (seconds_since(t0) < 0.5);
    double enc = envelopes / seconds_since(t0);
    kith::bench::report("codec_encode_envelopes_per_s", enc, "envelopes/s");

    // Decode the same frame repeatedly, for ~0.5 s.
    for (int k = 0; k < batch; ++k) b.add(e);
    const std::string frame = b.take();
    envelopes = 0;
    std::size_t checked = 0;
    t0 = clock_type::now();
    do {
        for (int i = 0; i < 200; ++i) {
            auto r = kith::decode_frame(frame);
            checked += r.ok() ? r->size() : 0;
            envelopes += batch;
        }
    } while (seconds_since(t0) < 0.5);
    double dec = envelopes / seconds_since(t0);
    if (checked != static_cast<std::size_t>(envelopes)) dec = 0;  // a decode failed: report 0
    kith::bench::report("codec_decode_envelopes_per_s", dec, "envelopes/s");
    kith::bench::report("codec_frame_bytes_per_envelope", static_cast<double>(frame.size() - 4) / batch, "bytes");
    (void)bytes;
}
