// grants_table.cpp — see grants_table.hpp. File format: docs/security.md,
// "The grant table".
#include "grants/grants_table.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "grants/grants_io.hpp"

namespace kith::detail {

// ---- token_bucket -----------------------------------------------------------------

bool token_bucket::take(clock::time_point now) {
    if (rate_.per_second <= 0) return true;
    refill(now);
    if (tokens_ >= 1) {
        tokens_ -= 1;
        return true;
    }
    return false;
}

void token_bucket::refill(clock::time_point now) {
    double dt = std::chrono::duration<double>(now - last_).count();
    if (dt > 0) {
        tokens_ = std::min(rate_.burst, tokens_ + dt * rate_.per_second);
        last_ = now;
    }
}

void token_bucket::set_rate(rate_limit r) {
    auto now = clock::now();
    if (rate_.per_second > 0)
        refill(now);  // the time so far at the old rate
    else
        tokens_ = r.burst;
    last_ = now;
    rate_ = r;
    tokens_ = std::min(tokens_, r.burst);
}

// ---- capability_set ---------------------------------------------------------------

capability_set::~capability_set() {
    if (pool_) pool_->used.fetch_sub(set_.size(), std::memory_order_relaxed);
}

void capability_set::forget_oldest() {
    set_.erase(order_.front());
    order_.pop_front();
    evicted_.fetch_add(1, std::memory_order_relaxed);
}

void capability_set::add(std::uint64_t serial) {
    std::lock_guard lk(mu_);
    if (set_.count(serial)) return;
    if (order_.size() >= cap_) {
        forget_oldest();  // its slot (in the pool too) is reused
    } else if (pool_) {
        auto used = pool_->used.load(std::memory_order_relaxed);
        while (used < pool_->cap && !pool_->used.compare_exchange_weak(used, used + 1, std::memory_order_relaxed)) {
        }
        if (used >= pool_->cap) {  // the pool is full: make room among our own, if any
            if (order_.empty()) {
                evicted_.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            forget_oldest();
        }
    }
    set_.insert(serial);
    order_.push_back(serial);
}

bool capability_set::contains(std::uint64_t serial) const {
    std::lock_guard lk(mu_);
    return set_.count(serial) != 0;
}

std::size_t capability_set::size() const {
    std::lock_guard lk(mu_);
    return set_.size();
}

// ---- grant_entry --------------------------------------------------------------------

bool grant_entry::allows(const std::string& svc, const std::string& name) const {
    auto it = allow.find(svc);
    if (it == allow.end()) return false;
    return it->second.empty() || std::find(it->second.begin(), it->second.end(), name) != it->second.end();
}

bool grant_entry::take_token() {
    std::lock_guard lk(mu_);
    return bucket_.take();
}

rate_limit grant_entry::rate() const {
    std::lock_guard lk(mu_);
    return bucket_.rate();
}

void grant_entry::set_rate(rate_limit r) {
    std::lock_guard lk(mu_);
    bucket_.set_rate(r);
}

grant_info grant_entry::info() const {
    grant_info i;
    i.label = label;
    i.allow = allow;
    i.rate = rate();
    i.limits = limits();
    i.expires = expires;
    i.created = created;
    i.fingerprint = key.fingerprint();
    i.revoked = revoked.load();
    i.expired = !i.revoked && expires && std::chrono::system_clock::now() >= *expires;
    i.connected = connected.load() > 0;
    i.accepted = accepted.load();
    i.refused = refused.load();
    i.rate_limited = rate_limited.load();
    return i;
}

// ---- the file --------------------------------------------------------------------------
//
//   # comment lines
//   kith-grants 1
//   grant <label> key=<64 hex> allow=<scope> rate=<rate> expires=<utc|never> created=<utc> revoked=<yes|no>
//         [limits=<grant_limits>]   (written only when not the defaults; older kith ignores it)
//   ...
//   end <number of grant lines> <checksum of everything before this line>

namespace {
constexpr std::string_view table_magic = "kith-grants 1";
constexpr std::size_t max_table_bytes = 16u << 20;
// A grant is refused when the table would grow past half of max_table_bytes,
// so a node can always load what it wrote.
constexpr std::size_t max_grants = 4096;
constexpr std::size_t max_scope_names = 1024;
}  // namespace

std::string grant_table::to_text(const std::vector<std::shared_ptr<grant_entry>>& entries) {
    std::string body = "# kith grant table, written by the node (docs/security.md). Holds no secret keys.\n";
    body += std::string(table_magic) + "\n";
    for (auto& e : entries) {
        body += "grant " + e->label + " key=" + e->key.hex() + " allow=" + format_grant_scope(e->allow) +
                " rate=" + e->rate().to_string() + " expires=" + (e->expires ? format_utc(*e->expires) : "never") +
                " created=" + format_utc(e->created) + " revoked=" + (e->revoked.load() ? "yes" : "no");
        if (auto l = e->limits(); !l.is_default()) body += " limits=" + l.to_string();
        body += "\n";
    }
    body += "end " + std::to_string(entries.size()) + " " + checksum_hex(body) + "\n";
    return body;
}

result<std::vector<std::shared_ptr<grant_entry>>> grant_table::parse(std::string_view text) {
    std::vector<std::shared_ptr<grant_entry>> out;
    std::size_t lineno = 0;
    bool header = false, ended = false;
    auto bad = [&](const std::string& why) {
        return error{errc::decode, "line " + std::to_string(lineno) + ": " + why};
    };
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        if (nl == std::string_view::npos) {
            ++lineno;
            return bad("truncated (the last line has no end)");
        }
        std::string_view line = text.substr(pos, nl - pos);
        std::size_t line_start = pos;
        pos = nl + 1;
        ++lineno;
        if (ended) {
            if (!line.empty()) return bad("text after the end line");
            continue;
        }
        if (line.empty() || line.starts_with("#")) continue;
        if (!header) {
            if (line != table_magic) return bad("expected \"kith-grants 1\" (a kith grant table, version 1)");
            header = true;
            continue;
        }
        if (line.starts_with("end ")) {
            std::string_view rest = line.substr(4);
            auto sp = rest.find(' ');
            if (sp == std::string_view::npos) return bad("malformed end line");
            if (rest.substr(0, sp) != std::to_string(out.size()))
                return bad("the end line counts " + std::string(rest.substr(0, sp)) + " grants, the file has " +
                           std::to_string(out.size()));
            if (checksum_hex(text.substr(0, line_start)) != rest.substr(sp + 1)) return bad("checksum mismatch");
            ended = true;
            continue;
        }
        if (!line.starts_with("grant ")) return bad("unknown line");
        std::vector<std::string_view> words;
        for (std::size_t p = 6; p < line.size();) {
            auto sp = line.find(' ', p);
            if (sp == std::string_view::npos) sp = line.size();
            if (sp > p) words.push_back(line.substr(p, sp - p));
            p = sp + 1;
        }
        if (words.empty() || !valid_grant_name(words[0])) return bad("bad grant label");
        auto e = std::make_shared<grant_entry>();
        e->label = words[0];
        std::map<std::string, std::string, std::less<>> kv;
        for (std::size_t i = 1; i < words.size(); ++i) {
            auto eq = words[i].find('=');
            if (eq == std::string_view::npos) return bad("expected key=value, got \"" + std::string(words[i]) + "\"");
            kv[std::string(words[i].substr(0, eq))] = std::string(words[i].substr(eq + 1));
        }
        for (const char* f : {"key", "allow", "rate", "expires", "created", "revoked"})
            if (!kv.count(f)) return bad("grant " + e->label + " lacks " + f + "=");
        auto k = public_key::from_hex(kv["key"]);
        if (!k) return bad("grant " + e->label + ": bad key");
        e->key = *k;
        auto sc = parse_grant_scope(kv["allow"]);
        if (!sc) return bad("grant " + e->label + ": " + sc.err().detail);
        e->allow = std::move(*sc);
        auto r = rate_limit::parse(kv["rate"]);
        if (!r) return bad("grant " + e->label + ": " + r.err().detail);
        e->bucket_ = token_bucket(*r);
        if (kv["expires"] != "never") {
            auto t = parse_utc(kv["expires"]);
            if (!t) return bad("grant " + e->label + ": bad expires");
            e->expires = *t;
        }
        auto c = parse_utc(kv["created"]);
        if (!c) return bad("grant " + e->label + ": bad created");
        e->created = *c;
        if (kv["revoked"] != "yes" && kv["revoked"] != "no") return bad("grant " + e->label + ": bad revoked=");
        e->revoked = kv["revoked"] == "yes";
        if (auto it = kv.find("limits"); it != kv.end()) {
            auto l = grant_limits::parse(it->second);
            if (!l) return bad("grant " + e->label + ": " + l.err().detail);
            e->set_limits(*l);
        }
        for (auto& o : out)
            if (o->label == e->label || o->key == e->key) return bad("grant " + e->label + " appears twice");
        out.push_back(std::move(e));
    }
    if (!header) return error{errc::decode, "empty, or no \"kith-grants 1\" header"};
    if (!ended) return error{errc::decode, "truncated: no end line"};
    return out;
}

namespace {
// Every process that writes the table (or removes its temporary files)
// holds an exclusive flock on <file>.lock (platform::file_lock).
std::filesystem::path lock_path(const std::filesystem::path& file) {
    std::error_code ec;
    if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path(), ec);
    return file.string() + ".lock";
}
}  // namespace

grant_table::grant_table(std::filesystem::path file, log_sink log, std::string node)
    : file_(std::move(file)), log_(std::move(log)), node_(std::move(node)) {
    std::error_code ec;
    if (!file_.has_parent_path() || !std::filesystem::is_directory(file_.parent_path(), ec)) return;
    platform::file_lock fl(lock_path(file_));
    // Temporary files of a write that was interrupted (kill -9): the rename
    // never happened, so the table is the previous one; the leftovers go.
    // (Under the lock: no other process is writing one now.)
    const std::string prefix = file_.filename().string() + ".tmp.";
    for (auto& de : std::filesystem::directory_iterator(file_.parent_path(), ec))
        if (de.path().filename().string().starts_with(prefix)) std::filesystem::remove(de.path(), ec);
    if (!std::filesystem::exists(file_, ec)) return;
    auto text = platform::read_small_file(file_, max_table_bytes);
    if (!text) throw setup_error("kith: cannot read the grant table " + file_.string() + ": " + text.err().detail);
    auto entries = parse(*text);
    if (!entries)
        throw setup_error("kith: the grant table " + file_.string() + " is damaged (" + entries.err().detail +
                          "); move it away to start without grants");
    merge_locked(std::move(*entries));
    loaded_ = stat_file();
}

grant_table::file_id grant_table::stat_file() const {
    struct stat st{};
    if (::stat(file_.c_str(), &st) != 0) return {};
    return {static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
            static_cast<std::int64_t>(st.st_size), static_cast<std::int64_t>(st.st_ino)};
}

void grant_table::merge_locked(std::vector<std::shared_ptr<grant_entry>> disk) {
    for (auto& d : disk) {
        auto it = by_label_.find(d->label);
        if (it == by_label_.end()) {
            if (by_key_.count(d->key)) continue;  // the same key under another label: keep ours
            by_label_[d->label] = d;
            by_key_[d->key] = d;
            order_.push_back(d);
            continue;
        }
        auto& e = it->second;
        if (d->revoked.load()) e->revoked.store(true, std::memory_order_release);
        if (d->rate() != e->rate()) e->set_rate(d->rate());
        if (d->limits() != e->limits()) e->set_limits(d->limits());
    }
}

void grant_table::refresh(bool force) {
    const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (!force) {
        auto next = next_check_ns_.load(std::memory_order_relaxed);
        if (now < next || !next_check_ns_.compare_exchange_strong(next, now + 100'000'000)) return;
    }
    file_id id = stat_file();
    {
        std::shared_lock lk(mu_);
        if (id == loaded_ || id.size < 0) return;
    }
    auto text = platform::read_small_file(file_, max_table_bytes);
    if (!text) return;
    auto entries = parse(*text);
    std::string damaged;  // reported after mu_ is released: a sink runs unlocked
    {
        std::unique_lock lk(mu_);
        if (entries) {
            merge_locked(std::move(*entries));
        } else if (!(loaded_ == id)) {
            damaged = "ignoring a damaged grant table " + file_.string() + " (" + entries.err().detail +
                      "); the table in memory stays in force: fix or remove the file";
        }
        loaded_ = id;
    }
    if (!damaged.empty()) log_to(log_, log_record{log_level::warning, "grants", damaged, node_});
}

template <class F, class U>
result<void> grant_table::change(F&& f, U&& undo) {
    platform::file_lock fl(lock_path(file_));  // other writers, in this process or another, wait
    refresh(true);
    std::string text;
    {
        std::unique_lock lk(mu_);
        if (auto r = f(); !r) return r;
        text = to_text(order_);
    }
    // The write (fsync) happens without mu_: the I/O thread's lookups never
    // wait for the disk.
    auto r = platform::write_file_atomic(file_, text, 0600);
    if (!r) {
        std::unique_lock lk(mu_);
        undo();
        return error{errc::badarg, "the grant table could not be saved: " + r.err().detail +
                                       " (free disk space or fix the key directory, then retry)"};
    }
    std::unique_lock lk(mu_);
    loaded_ = stat_file();
    return {};
}

result<std::shared_ptr<grant_entry>> grant_table::create(const grant_spec& spec, const public_key& client) {
    if (!valid_grant_name(spec.label))
        return error{errc::badarg, "bad grant label \"" + spec.label + "\": 1-64 of A-Z a-z 0-9 . _ -"};
    if (spec.allow.empty()) return error{errc::badarg, "a grant must allow at least one service"};
    for (auto& [svc, names] : spec.allow) {
        if (!valid_grant_name(svc)) return error{errc::badarg, "bad service name \"" + svc + "\" in the scope"};
        for (auto& n : names)
            if (!valid_grant_name(n)) return error{errc::badarg, "bad name \"" + n + "\" in the scope"};
    }
    if (spec.expires) {
        auto now = std::chrono::system_clock::now();
        // The file keeps whole seconds since the epoch; anything past 100
        // years is refused before it can overflow a time computation.
        const auto century = std::chrono::hours(24 * 366 * 100);
        if (*spec.expires > now + century || *spec.expires < now - century)
            return error{errc::badarg, "a grant's expiry must be within 100 years of now"};
    }
    std::size_t names = 0;
    for (auto& [svc, ns] : spec.allow) names += 1 + ns.size();
    if (names > max_scope_names)
        return error{errc::badarg, "a grant's scope names " + std::to_string(names) + " services and functions (at most " +
                                       std::to_string(max_scope_names) + ")"};
    if (!std::isfinite(spec.rate.per_second) || !std::isfinite(spec.rate.burst) ||
        (spec.rate.per_second > 0 && spec.rate.burst < 1))
        return error{errc::badarg, "bad rate: the burst must be at least 1"};
    auto e = std::make_shared<grant_entry>();
    e->label = spec.label;
    e->key = client;
    e->allow = spec.allow;
    e->expires = spec.expires;
    // Whole seconds, as the file keeps them.
    e->created = std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
    e->bucket_ = token_bucket(spec.rate);
    // grant_limits' bounds (a spec may be built by hand).
    if (auto l = spec.limits.check(); !l.ok()) return l.err();
    e->set_limits(spec.limits);
    // Usable only once it is on disk: written first, then added.
    auto r = change([&]() -> result<void> {
        if (by_label_.count(spec.label))
            return error{errc::badarg, "a grant labelled \"" + spec.label + "\" exists (revoked and expired "
                                       "grants keep their labels): choose another label"};
        if (by_key_.count(client)) return error{errc::badarg, "that client key already has a grant"};
        // The table must stay loadable: far below the size a node reads at start.
        if (by_label_.size() >= max_grants)
            return error{errc::badarg, "the grant table holds " + std::to_string(max_grants) +
                                           " grants, the most a node keeps: revoke the ones no longer used"};
        order_.push_back(e);  // for the text; taken out again below until written
        if (to_text(order_).size() > max_table_bytes / 2) {
            order_.pop_back();
            return error{errc::badarg, "the grant table would grow past " + std::to_string(max_table_bytes / 2 >> 20) +
                                           " MiB: revoke grants no longer used, or grant fewer names"};
        }
        return {};
    });
    std::unique_lock lk(mu_);
    std::erase(order_, e);
    if (!r) return r.err();
    // A re-read of the file may have added its copy meanwhile: ours replaces it.
    if (auto it = by_label_.find(e->label); it != by_label_.end()) {
        by_key_.erase(it->second->key);
        std::erase(order_, it->second);
    }
    order_.push_back(e);
    by_label_[e->label] = e;
    by_key_[e->key] = e;
    return e;
}

namespace {
error unknown_label(const std::string& label) {
    return error{errc::badarg, "no grant labelled \"" + label + "\" on this node (the grant table lists the labels: "
                               "kith grant list, or grants())"};
}
}  // namespace

result<void> grant_table::revoke(const std::string& label) {
    // At once in memory (the next message is refused), then on disk.
    if (auto e = find(label)) e->revoked.store(true, std::memory_order_release);
    auto r = change([&]() -> result<void> {
        auto it = by_label_.find(label);
        if (it == by_label_.end()) return unknown_label(label);
        it->second->revoked.store(true, std::memory_order_release);
        return {};
    });
    return r;  // a save failure leaves it revoked in memory nonetheless
}

// Changes a live grant's `T` (its rate or its limits) and saves the table;
// a save that fails puts the old value back, so what is in force is what the
// table says. A revoked grant never changes.
template <class T>
result<void> grant_table::change_live(const std::string& label, const char* what, const T& v,
                                      T (*get)(const grant_entry&), void (*set)(grant_entry&, const T&)) {
    std::shared_ptr<grant_entry> changed;
    T before{};
    return change([&]() -> result<void> {
        auto it = by_label_.find(label);
        if (it == by_label_.end()) return unknown_label(label);
        if (it->second->revoked.load(std::memory_order_acquire))
            return error{errc::badarg, "the grant \"" + label + "\" is revoked: it can never be used again, so its " +
                                       what + " cannot change; issue a new grant under another label"};
        changed = it->second;
        before = get(*changed);
        set(*changed, v);
        return {};
    }, [&] { set(*changed, before); });
}

result<void> grant_table::set_rate(const std::string& label, rate_limit r) {
    if (!std::isfinite(r.per_second) || !std::isfinite(r.burst) || (r.per_second > 0 && r.burst < 1))
        return error{errc::badarg, "bad rate: the burst must be at least 1"};
    return change_live<rate_limit>(
        label, "rate", r, [](const grant_entry& e) { return e.rate(); },
        [](grant_entry& e, const rate_limit& v) { e.set_rate(v); });
}

result<void> grant_table::set_limits(const std::string& label, const grant_limits& l) {
    if (auto ok = l.check(); !ok.ok()) return ok;
    return change_live<grant_limits>(
        label, "limits", l, [](const grant_entry& e) { return e.limits(); },
        [](grant_entry& e, const grant_limits& v) { e.set_limits(v); });
}

std::vector<grant_info> grant_table::list() {
    refresh(true);
    std::shared_lock lk(mu_);
    std::vector<grant_info> v;
    for (auto& e : order_) v.push_back(e->info());
    return v;
}

std::shared_ptr<grant_entry> grant_table::find(std::string_view label) const {
    std::shared_lock lk(mu_);
    auto it = by_label_.find(label);
    return it == by_label_.end() ? nullptr : it->second;
}

std::shared_ptr<grant_entry> grant_table::find_key(const public_key& k) const {
    std::shared_lock lk(mu_);
    auto it = by_key_.find(k);
    return it == by_key_.end() ? nullptr : it->second;
}

void grant_table::set_public(const std::string& svc, bool on, rate_limit r) {
    std::lock_guard lk(pub_mu_);
    if (on)
        public_[svc] = r;
    else
        public_.erase(svc);
    any_public_.store(!public_.empty(), std::memory_order_release);
    // Buckets of that service start again at the new rate.
    for (auto it = lru_.begin(); it != lru_.end();) {
        if (it->first.second == svc) {
            buckets_.erase(it->first);
            it = lru_.erase(it);
        } else {
            ++it;
        }
    }
}

std::vector<std::string> grant_table::public_services() const {
    std::lock_guard lk(pub_mu_);
    std::vector<std::string> v;
    for (auto& [k, _] : public_) v.push_back(k);
    return v;
}

bool grant_table::is_public(const std::string& svc) const {
    if (!any_public()) return false;
    std::lock_guard lk(pub_mu_);
    return public_.count(svc) != 0;
}

std::optional<rate_limit> grant_table::public_rate(const std::string& svc) const {
    std::lock_guard lk(pub_mu_);
    auto it = public_.find(svc);
    if (it == public_.end()) return std::nullopt;
    return it->second;
}

bool grant_table::take_connect_token(const public_key& k) {
    std::lock_guard lk(pub_mu_);
    return take_locked(k, "#connect", rate_limit{2, 10});  // '#': never a service name
}

bool grant_table::take_public_token(const public_key& k, const std::string& svc) {
    std::lock_guard lk(pub_mu_);
    rate_limit rate{};
    if (!svc.empty()) {
        auto p = public_.find(svc);
        if (p == public_.end()) return false;
        rate = p->second;
    }
    return take_locked(k, svc, rate);
}

bool grant_table::take_locked(const public_key& k, const std::string& svc, rate_limit rate) {
    bucket_key bk{k, svc};
    auto it = buckets_.find(bk);
    if (it == buckets_.end()) {
        if (lru_.size() >= max_stranger_buckets) {
            buckets_.erase(lru_.back().first);
            lru_.pop_back();
        }
        lru_.emplace_front(bk, token_bucket(rate));
        it = buckets_.emplace(bk, lru_.begin()).first;
    } else {
        lru_.splice(lru_.begin(), lru_, it->second);
    }
    return it->second->second.take();
}

}  // namespace kith::detail
