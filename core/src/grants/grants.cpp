// grants.cpp — the value types of kith/grants.hpp: rate limits, scopes, grant
// rows and grant files (format: docs/protocol.md, "Grant files").
#include "kith/grants.hpp"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <vector>

#include "grants/grants_io.hpp"

namespace kith {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

// The trimmed items of a comma-separated list: "a, b," gives "a", "b", "";
// an empty text gives one empty item.
std::vector<std::string_view> comma_items(std::string_view t) {
    std::vector<std::string_view> out;
    for (bool more = true; more;) {
        auto comma = t.find(',');
        out.push_back(trim(t.substr(0, comma)));
        more = comma != std::string_view::npos;
        t = more ? t.substr(comma + 1) : std::string_view{};
    }
    return out;
}

std::optional<double> parse_number(std::string_view s) {
    if (s.empty() || s.size() > 32) return std::nullopt;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || c == '.')) return std::nullopt;
    std::string z(s);
    char* end = nullptr;
    double v = std::strtod(z.c_str(), &end);
    if (end != z.c_str() + z.size() || !std::isfinite(v)) return std::nullopt;
    return v;
}

std::string number_text(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.15g", v);
    return buf;
}

}  // namespace

// ---- rate_limit ------------------------------------------------------------------

result<rate_limit> rate_limit::parse(std::string_view text) {
    auto bad = [&](const std::string& why) {
        return error{errc::badarg, "bad rate \"" + std::string(text) + "\": " + why +
                                       " (expected e.g. \"10/s\", \"10/s,burst=20\" or \"unlimited\")"};
    };
    std::string_view t = trim(text);
    if (t == "unlimited") return rate_limit{0, 0};
    std::string_view head = t, tail;
    if (auto comma = t.find(','); comma != std::string_view::npos) {
        head = trim(t.substr(0, comma));
        tail = trim(t.substr(comma + 1));
        if (!tail.starts_with("burst=")) return bad("after the comma only burst=N is allowed");
        tail.remove_prefix(6);
    }
    if (!head.ends_with("/s")) return bad("the rate must end in /s");
    head.remove_suffix(2);
    auto per = parse_number(head);
    if (!per) return bad("\"" + std::string(head) + "\" is not a number");
    if (*per <= 0) return bad("the rate must be positive (or \"unlimited\")");
    if (*per > 1e9) return bad("the rate is too large");
    rate_limit r;
    r.per_second = *per;
    r.burst = std::max(1.0, std::ceil(2 * *per));
    if (!tail.empty() || t.find(',') != std::string_view::npos) {
        auto b = parse_number(tail);
        if (!b) return bad("burst \"" + std::string(tail) + "\" is not a number");
        if (*b < 1) return bad("the burst must be at least 1");
        if (*b > 1e9) return bad("the burst is too large");
        r.burst = *b;
    }
    return r;
}

std::string rate_limit::to_string() const {
    if (per_second <= 0) return "unlimited";
    return number_text(per_second) + "/s,burst=" + number_text(burst);
}

// ---- grant_limits ----------------------------------------------------------------

namespace {

// The four limits by their text name, with the field and its default.
struct limit_field {
    const char* name;
    std::uint64_t grant_limits::*field;
    std::uint64_t def;
};
constexpr limit_field limit_fields[] = {
    {"pending", &grant_limits::pending, grant_limits::default_pending},
    {"spawned", &grant_limits::spawned, grant_limits::default_spawned},
    {"queued", &grant_limits::queued_bytes, grant_limits::default_queued_bytes},
    {"relations", &grant_limits::relations, grant_limits::default_relations},
};

// "pending must be 1..1024 (16x the default 64; got 0)": the limit's own
// name and bounds, whatever the other limits are.
std::string limit_bounds(const limit_field& f, std::string_view got) {
    return std::string(f.name) + " must be 1.." + std::to_string(16 * f.def) + " (16x the default " +
           std::to_string(f.def) + (f.field == &grant_limits::queued_bytes ? " bytes" : "") + "; got " +
           std::string(got) + ")";
}

}  // namespace

result<grant_limits> grant_limits::parse(std::string_view text) {
    auto bad = [&](const std::string& why) {
        return error{errc::badarg, "bad limits \"" + std::string(text) + "\": " + why +
                                       " (expected e.g. \"pending=8,spawned=4,queued=1048576,relations=100\" or "
                                       "\"default\")"};
    };
    grant_limits out;
    std::string_view t = trim(text);
    if (t == "default") return out;
    if (t.empty()) return bad("it is empty");
    std::set<std::string_view> seen;
    for (std::string_view item : comma_items(t)) {
        auto eq = item.find('=');
        if (eq == std::string_view::npos) return bad("\"" + std::string(item) + "\" is not NAME=N");
        std::string_view name = trim(item.substr(0, eq)), value = trim(item.substr(eq + 1));
        const limit_field* f = nullptr;
        for (auto& lf : limit_fields)
            if (name == lf.name) f = &lf;
        if (!f) return bad("unknown limit \"" + std::string(name) + "\" (pending, spawned, queued, relations)");
        if (!seen.insert(f->name).second) return bad(std::string(name) + " appears twice");
        if (value.empty() || value.find_first_not_of("0123456789") != std::string_view::npos)
            return bad(std::string(name) + "=" + std::string(value) + " is not a whole number");
        // Digits only: too many of them is out of bounds, not "not a number".
        std::string_view digits = value.substr(std::min(value.find_first_not_of('0'), value.size()));
        const std::uint64_t v = digits.size() > 12 ? ~std::uint64_t{0} : std::stoull("0" + std::string(digits));
        if (v < 1 || v > 16 * f->def) return bad(limit_bounds(*f, value));
        out.*(f->field) = v;
    }
    return out;
}

result<void> grant_limits::check() const {
    for (auto& f : limit_fields)
        if (this->*(f.field) > 16 * f.def)
            return error{errc::badarg, "bad limits: " + limit_bounds(f, std::to_string(this->*(f.field))) +
                                           " (0 leaves the default)"};
    return {};
}

std::string grant_limits::to_string() const {
    std::string out;
    auto add = [&](const char* name, std::uint64_t v) {
        if (v) out += (out.empty() ? "" : ",") + std::string(name) + "=" + std::to_string(v);
    };
    add("pending", pending);
    add("spawned", spawned);
    add("queued", queued_bytes);
    add("relations", relations);
    return out.empty() ? "default" : out;
}

// ---- scopes ------------------------------------------------------------------------

result<grant_scope> parse_grant_scope(std::string_view text) {
    auto bad = [&](const std::string& why) {
        return error{errc::badarg, "bad scope \"" + std::string(text) + "\": " + why +
                                       " (expected e.g. \"kvs,echo:echo,demo:rpc_server\")"};
    };
    grant_scope out;
    std::set<std::string> whole;  // services allowed entirely
    std::string_view t = trim(text);
    if (t.empty()) return bad("it is empty");
    for (std::string_view item : comma_items(t)) {
        if (item.empty()) return bad("an empty item");
        std::string_view svc = item, name;
        if (auto colon = item.find(':'); colon != std::string_view::npos) {
            svc = item.substr(0, colon);
            name = item.substr(colon + 1);
            if (!detail::valid_grant_name(name))
                return bad("\"" + std::string(name) + "\" is not a valid name (1-64 of A-Z a-z 0-9 . _ -)");
        }
        if (!detail::valid_grant_name(svc))
            return bad("\"" + std::string(svc) + "\" is not a valid service name (1-64 of A-Z a-z 0-9 . _ -)");
        auto& names = out[std::string(svc)];
        if (name.empty()) {
            whole.insert(std::string(svc));
        } else if (std::find(names.begin(), names.end(), name) == names.end()) {
            names.emplace_back(name);
        }
    }
    for (auto& s : whole) out[s].clear();  // "kvs" and "kvs:store": the whole service
    return out;
}

std::string format_grant_scope(const grant_scope& scope) {
    std::string out;
    for (auto& [svc, names] : scope) {
        if (names.empty()) {
            if (!out.empty()) out += ',';
            out += svc;
        }
        for (auto& n : names) {
            if (!out.empty()) out += ',';
            out += svc + ":" + n;
        }
    }
    return out;
}

// ---- grant_info ----------------------------------------------------------------------

term grant_info::to_term() const {
    term_map allow_map;
    for (auto& [svc, names] : allow) allow_map.emplace_back(svc, term(term_array(names.begin(), names.end())));
    return map_of({{"label", label},
                   {"allow", term(std::move(allow_map))},
                   {"scope", format_grant_scope(allow)},
                   {"rate", rate.to_string()},
                   {"limits", limits.to_string()},
                   {"expires", expires ? term(detail::format_utc(*expires)) : term()},
                   {"created", detail::format_utc(created)},
                   {"fingerprint", fingerprint},
                   {"revoked", revoked},
                   {"expired", expired},
                   {"connected", connected},
                   {"accepted", accepted},
                   {"refused", refused},
                   {"rate_limited", rate_limited}});
}

// ---- grant_file ----------------------------------------------------------------------

namespace {
constexpr std::string_view file_magic = "kith-grant";
constexpr std::size_t max_grant_file = 64 * 1024;
constexpr std::size_t max_endpoints = 16;
constexpr std::size_t max_relays = 8;
}  // namespace

std::string grant_file::to_text() const {
    std::string body;
    body += "# kith grant file: a key to the kith node " + node + ".\n";
    body += "# It holds a secret key: keep it private (mode 0600). Format: kith docs/protocol.md, \"Grant files\".\n";
    // Version 1 when there is no relay route: older readers take it.
    // The lowest version that holds what it carries: older readers take it.
    body += std::string(file_magic) + " " + (!limits.is_default() ? "3" : relays.empty() ? "1" : "2") + "\n";
    body += "node: " + node + "\n";
    for (auto& e : endpoints) body += "endpoint: " + e + "\n";
    for (auto& r : relays) body += "relay: " + r.node + " " + r.endpoint + " " + r.key.z85() + "\n";
    body += "server-key: " + server_key.z85() + "\n";
    body += "client-public-key: " + client.pub.z85() + "\n";
    body += "client-secret-key: " + client.sec.z85_secret() + "\n";
    body += "label: " + label + "\n";
    body += "allow: " + format_grant_scope(allow) + "\n";
    body += "rate: " + rate.to_string() + "\n";
    body += "expires: " + (expires ? detail::format_utc(*expires) : std::string("never")) + "\n";
    if (!limits.is_default()) body += "limits: " + limits.to_string() + "\n";
    std::string sum = detail::checksum_hex(body);
    body += "checksum: " + sum + "\n";
    return body;
}

result<grant_file> grant_file::parse(std::string_view text) {
    auto bad = [](const std::string& why) { return error{errc::decode, "bad grant file: " + why}; };
    if (text.size() > max_grant_file) return bad("larger than 64 KiB; not a grant file");
    if (trim(text).empty()) return bad("the file is empty");
    // Lines; the last one may lack its newline (then the file was cut).
    std::vector<std::string_view> lines;
    std::vector<std::size_t> ends;  // offset just after each line's '\n'
    for (std::size_t pos = 0; pos < text.size();) {
        auto nl = text.find('\n', pos);
        if (nl == std::string_view::npos) {
            lines.push_back(text.substr(pos));
            ends.push_back(std::string_view::npos);
            break;
        }
        lines.push_back(text.substr(pos, nl - pos));
        ends.push_back(nl + 1);
        pos = nl + 1;
    }
    // 0. Printable ASCII only (tabs and CRLF allowed; comments may hold any
    // text but control characters): kith writes nothing else, and a value
    // with an escape sequence would rewrite what kith grant show and error
    // messages display (a hostile grantor can recompute the checksum).
    for (std::size_t k = 0; k < lines.size(); ++k) {
        const bool comment = trim(lines[k]).starts_with("#");
        for (std::size_t j = 0; j < lines[k].size(); ++j)
            if (const unsigned char c = lines[k][j];
                (c < 0x20 && c != '\t' && !(c == '\r' && j + 1 == lines[k].size())) || c == 0x7f ||
                (c >= 0x80 && !comment)) {
                char hex[8];
                std::snprintf(hex, sizeof hex, "0x%02x", c);
                return bad("line " + std::to_string(k + 1) + " holds the byte " + hex +
                           " (a control character or non-ASCII), which kith never writes in a grant file: ask for "
                           "a new one");
            }
    }
    // 1. The header: "kith-grant <version>".
    std::size_t i = 0;
    int version = 1;
    while (i < lines.size() && (trim(lines[i]).empty() || trim(lines[i]).starts_with("#"))) ++i;
    if (i == lines.size()) return bad("no \"kith-grant 1\" header line; not a grant file");
    {
        std::string_view h = trim(lines[i]);
        if (!h.starts_with(file_magic) || (h.size() > file_magic.size() && h[file_magic.size()] != ' '))
            return bad("the first line is not \"kith-grant <version>\"; not a kith grant file");
        std::string_view v = trim(h.substr(file_magic.size()));
        auto n = parse_number(v);
        if (!n || *n != std::floor(*n)) return bad("the version \"" + std::string(v) + "\" is not a number");
        if (*n < 1 || *n > current_version)
            return bad("version " + std::string(v) + " is not supported (this kith reads versions 1 to " +
                       std::to_string(current_version) + "); get a grant file made by a matching kith");
        version = static_cast<int>(*n);
    }
    // 2. It must end with a complete checksum line, else it was cut short.
    std::size_t last = lines.size();
    while (last > i + 1 && trim(lines[last - 1]).empty() && ends[last - 1] != std::string_view::npos) --last;
    if (last <= i + 1 || !trim(lines[last - 1]).starts_with("checksum:"))
        return bad("truncated: it does not end with its \"checksum:\" line");
    std::string_view sum_line = trim(lines[last - 1]);
    std::string_view sum = trim(sum_line.substr(9));
    if (sum.size() != 32 || ends[last - 1] == std::string_view::npos)
        return bad("truncated: the checksum line is incomplete");
    std::string_view covered = text.substr(0, last - 1 == 0 ? 0 : ends[last - 2]);

    // 3. The fields.
    grant_file g;
    g.version = version;
    std::set<std::string> seen;
    std::optional<std::string> client_pub, client_sec;
    bool has_server_key = false, has_rate = false, has_allow = false;
    for (std::size_t k = i + 1; k + 1 < last; ++k) {
        std::string_view line = trim(lines[k]);
        if (line.empty() || line.starts_with("#")) continue;
        auto colon = line.find(':');
        if (colon == std::string_view::npos)
            return bad("line " + std::to_string(k + 1) + " is not \"field: value\"");
        std::string field(trim(line.substr(0, colon)));
        std::string_view value = trim(line.substr(colon + 1));
        if (field != "endpoint" && field != "relay" && !seen.insert(field).second)
            return bad("field \"" + field + "\" appears twice");
        if (field == "node") {
            if (!valid_node_name(value))
                return bad("node \"" + std::string(value) + "\" is not a node name (name@host)");
            g.node = value;
        } else if (field == "endpoint") {
            if (!value.starts_with("tcp://") || value.size() > 255)
                return bad("endpoint \"" + std::string(value) + "\" is not a tcp:// endpoint");
            if (g.endpoints.size() >= max_endpoints) return bad("more than 16 endpoints");
            g.endpoints.emplace_back(value);
        } else if (field == "relay" && version >= 2) {
            // "relay: NODE tcp://HOST:PORT KEY"
            auto sp1 = value.find(' ');
            auto sp2 = sp1 == std::string_view::npos ? sp1 : value.find(' ', sp1 + 1);
            if (sp2 == std::string_view::npos || value.find(' ', sp2 + 1) != std::string_view::npos)
                return bad("relay \"" + std::string(value) + "\" is not \"NODE tcp://HOST:PORT KEY\"");
            grant_file::relay_route r;
            r.node = value.substr(0, sp1);
            r.endpoint = value.substr(sp1 + 1, sp2 - sp1 - 1);
            if (!valid_node_name(r.node))
                return bad("relay node \"" + r.node + "\" is not a node name (name@host)");
            if (!r.endpoint.starts_with("tcp://") || r.endpoint.size() > 255)
                return bad("relay endpoint \"" + r.endpoint + "\" is not a tcp:// endpoint");
            auto k3 = public_key::from_z85(value.substr(sp2 + 1));
            if (!k3) return bad("bad key: the relay's key is not a 40-character Z85 CURVE public key");
            r.key = *k3;
            if (g.relays.size() >= max_relays) return bad("more than 8 relay routes");
            g.relays.push_back(std::move(r));
        } else if (field == "server-key") {
            auto k2 = public_key::from_z85(value);
            if (!k2) return bad("bad key: server-key is not a 40-character Z85 CURVE public key");
            g.server_key = *k2;
            has_server_key = true;
        } else if (field == "client-public-key") {
            client_pub = std::string(value);
        } else if (field == "client-secret-key") {
            client_sec = std::string(value);
        } else if (field == "label") {
            if (!detail::valid_grant_name(value))
                return bad("label \"" + std::string(value) + "\" is not 1-64 of A-Z a-z 0-9 . _ -");
            g.label = value;
        } else if (field == "allow") {
            auto s = parse_grant_scope(value);
            if (!s) return bad("allow: " + s.err().detail);
            g.allow = std::move(*s);
            has_allow = true;
        } else if (field == "rate") {
            auto r = rate_limit::parse(value);
            if (!r) return bad("rate: " + r.err().detail);
            g.rate = *r;
            has_rate = true;
        } else if (field == "expires") {
            if (value != "never") {
                auto t = detail::parse_utc(value);
                if (!t) return bad("expires \"" + std::string(value) + "\" is not \"never\" or YYYY-MM-DDTHH:MM:SSZ");
                g.expires = *t;
            }
        } else if (field == "limits" && version >= 3) {
            auto l = grant_limits::parse(value);
            if (!l) return bad("limits: " + l.err().detail);
            g.limits = *l;
        } else {
            return bad("unknown field \"" + field + "\" (line " + std::to_string(k + 1) + ")");
        }
    }
    for (const char* f : {"node", "server-key", "client-public-key", "client-secret-key", "label", "allow", "rate",
                          "expires"})
        if (!seen.count(f)) return bad("the field \"" + std::string(f) + "\" is missing");
    if (g.endpoints.empty() && g.relays.empty())
        return bad("no \"endpoint:\" or \"relay:\" line (where to dial the node)");
    (void)has_server_key;
    (void)has_rate;
    (void)has_allow;
    auto pub = public_key::from_z85(*client_pub);
    if (!pub) return bad("bad key: client-public-key is not a 40-character Z85 CURVE public key");
    auto sec = secret_key::from_z85(*client_sec);
    sodium_memzero(client_sec->data(), client_sec->size());
    if (!sec) return bad("bad key: client-secret-key is not a 40-character Z85 CURVE secret key");
    public_key derived;
    if (sodium_init() < 0) return bad("libsodium failed to initialise");
    crypto_scalarmult_base(derived.bytes.data(), sec->bytes().data());
    if (derived != *pub) return bad("bad key: client-public-key does not belong to client-secret-key");
    g.client.pub = *pub;
    g.client.sec = *sec;
    // 4. Last, the checksum (so a field that is wrong is named above).
    if (detail::checksum_hex(covered) != sum)
        return bad("checksum mismatch: the file was changed or damaged after it was issued (ask for a new one)");
    return g;
}

result<grant_file> grant_file::load(const std::filesystem::path& file) {
    // A grant file holds a secret key: it must be the user's own regular
    // file, readable by nobody else, and not a link to somewhere else
    // (checked on the open file, kith/platform.hpp).
    auto text = platform::read_private_file(file, max_grant_file, "grant file");
    if (!text) {
        if (text.code() == errc::decode) return error{errc::decode, "bad grant file: " + text.err().detail};
        return error{errc::decode, text.err().detail};
    }
    if (!*text) return error{errc::decode, "cannot read grant file " + file.string() + ": it does not exist"};
    auto r = parse(**text);
    sodium_memzero((*text)->data(), (*text)->size());
    if (!r) return error{errc::decode, file.string() + ": " + r.err().detail};
    return r;
}

result<void> grant_file::save(const std::filesystem::path& file) const {
    std::string text = to_text();
    auto r = platform::write_file_atomic(file, text, 0600);
    sodium_memzero(text.data(), text.size());
    return r;
}

}  // namespace kith
