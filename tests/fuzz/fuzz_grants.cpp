// Fuzz target: the grant-file parser (kith::grant_file::parse, kith/grants.hpp;
// docs/protocol.md, "Grant files") and the grant table's parser
// (detail::grant_table::parse, core/src/grants/grants_table.hpp), with the
// scope parser they share. Each input is parsed as it is and, so that the
// fuzzer gets past the checksum (checked last), again with its checksum /
// end line recomputed. Checks, besides the sanitizers:
//   * parsing never throws and fails only with errc::decode;
//   * whatever parses is written back (to_text) as text that parses again to
//     the same text: a file the library writes can always be read back;
//   * a scope that parses formats to a scope that parses to the same scope.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.hpp"
#include "grants/grants_io.hpp"
#include "grants/grants_table.hpp"
#include "kith/grants.hpp"

using namespace kith;

namespace {

// The text with its last "checksum:" line (and what follows) replaced by a
// correct one.
std::string fix_grant_file(std::string_view t) {
    std::string body;
    auto p = t.rfind("\nchecksum:");
    if (t.starts_with("checksum:") && p == std::string_view::npos) {
        body.clear();
    } else if (p != std::string_view::npos) {
        body = std::string(t.substr(0, p + 1));
    } else {
        body = std::string(t);
        if (!body.empty() && body.back() != '\n') body += '\n';
    }
    return body + "checksum: " + detail::checksum_hex(body) + "\n";
}

// The text with its last "end " line (and what follows) replaced by a correct
// one (count of "grant " lines, checksum).
std::string fix_grant_table(std::string_view t) {
    std::string body;
    auto p = t.rfind("\nend ");
    if (p != std::string_view::npos) {
        body = std::string(t.substr(0, p + 1));
    } else {
        body = std::string(t);
        if (!body.empty() && body.back() != '\n') body += '\n';
    }
    std::size_t n = 0;
    for (std::size_t i = 0; i < body.size();) {
        if (body.compare(i, 6, "grant ") == 0) ++n;
        auto nl = body.find('\n', i);
        if (nl == std::string::npos) break;
        i = nl + 1;
    }
    return body + "end " + std::to_string(n) + " " + detail::checksum_hex(body) + "\n";
}

void check_grant_file(std::string_view text) {
    auto r = grant_file::parse(text);
    if (!r.ok()) {
        FUZZ_CHECK(r.code() == errc::decode, "grant_file::parse failed with a code other than decode");
        FUZZ_CHECK(!r.err().detail.empty(), "grant_file::parse failed without saying why");
        return;
    }
    std::string once = r->to_text();
    auto again = grant_file::parse(once);
    FUZZ_CHECK(again.ok(), "a parsed grant file is written as text that does not parse: " + again.err().message() +
                               "\n--- input\n" + std::string(text) + "\n--- written\n" + once);
    FUZZ_CHECK(again->to_text() == once, "grant file text is not a fixed point:\n" + once + "\n---\n" + again->to_text());
}

void check_grant_table(std::string_view text) {
    auto r = detail::grant_table::parse(text);
    if (!r.ok()) {
        FUZZ_CHECK(r.code() == errc::decode, "grant_table::parse failed with a code other than decode");
        return;
    }
    std::string once = detail::grant_table::to_text(*r);
    auto again = detail::grant_table::parse(once);
    FUZZ_CHECK(again.ok(), "a parsed grant table is written as text that does not parse: " + again.err().message() +
                               "\n--- input\n" + std::string(text) + "\n--- written\n" + once);
    FUZZ_CHECK(detail::grant_table::to_text(*again) == once, "grant table text is not a fixed point:\n" + once);
}

void check_scope(std::string_view text) {
    auto s = parse_grant_scope(text);
    if (!s.ok()) return;
    std::string f = format_grant_scope(*s);
    auto again = parse_grant_scope(f);
    FUZZ_CHECK(again.ok() && *again == *s, "a grant scope does not survive format and parse: \"" + std::string(text) +
                                               "\" -> \"" + f + "\"");
    auto rate = rate_limit::parse(text);  // must not crash; any verdict
    if (rate.ok()) (void)rate_limit::parse(rate->to_string());
    auto lim = grant_limits::parse(text);
    if (lim.ok()) {
        auto back = grant_limits::parse(lim->to_string());
        FUZZ_CHECK(back.ok() && *back == *lim, "grant limits do not survive print and parse: \"" + std::string(text) +
                                                   "\" -> \"" + lim->to_string() + "\"");
    } else {
        FUZZ_CHECK(lim.code() == errc::badarg, "grant_limits::parse failed with a code other than badarg");
    }
}

// utc_overflow: a "YYYY-MM-DDTHH:MM:SSZ" after 2262 overflows the
// nanosecond system_clock in parse_utc (grants_io.cpp).
bool has_far_year(std::string_view t) {
    for (std::size_t i = 0; i + 11 <= t.size(); ++i) {
        if (t[i + 4] != '-' || t[i + 7] != '-' || t[i + 10] != 'T') continue;
        int y = 0;
        bool digits = true;
        for (std::size_t k = i; k < i + 4; ++k) {
            digits = digits && t[k] >= '0' && t[k] <= '9';
            y = y * 10 + (t[k] - '0');
        }
        if (digits && y >= 2262) return true;
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    if (fuzz_masked("utc_overflow") && has_far_year(in)) return 0;
    try {
        check_grant_file(in);
        check_grant_file(fix_grant_file(in));
        check_grant_table(in);
        check_grant_table(fix_grant_table(in));
        if (size <= 512) check_scope(in);
    } catch (const std::exception& e) {
        FUZZ_CHECK(false, std::string("a grant parser threw: ") + e.what());
    }
    return 0;
}
