// grants_table.hpp (private) — a node's live grant table, its token buckets
// and the capability sets ("pids handed to a grantee"), and the persistent
// file <key_dir>/grants. See docs/security.md for the model.
//
// Thread-safety: every method may be called from any thread. The I/O thread
// consults the table for every inbound envelope from a non-cluster peer, so
// lookups are short: one shared lock for the label, then the entry's own
// mutex for its bucket or capability set.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kith/grants.hpp"
#include "kith/log.hpp"

namespace kith::detail {

// A token bucket (see kith::rate_limit). Not thread-safe by itself.
class token_bucket {
public:
    using clock = std::chrono::steady_clock;
    explicit token_bucket(rate_limit r = {}) : rate_(r), tokens_(r.burst), last_(clock::now()) {}
    // Takes one token if there is one.
    bool take(clock::time_point now = clock::now());
    // A new rate; the tokens held are kept (capped at the new burst).
    void set_rate(rate_limit r);
    const rate_limit& rate() const noexcept { return rate_; }

private:
    void refill(clock::time_point now);
    rate_limit rate_;
    double tokens_;
    clock::time_point last_;
};

// A bound shared by several capability sets: all strangers' keys together
// hold at most `cap` handed pids (keys cost a stranger nothing to make).
struct capability_pool {
    explicit capability_pool(std::size_t c) : cap(c) {}
    const std::size_t cap;
    std::atomic<std::size_t> used{0};
};

// The local pids a node has handed to one principal (a grant, or the key of
// a stranger or of a server we dialled, all its sessions together). Bounded:
// at `capacity` pids, or when its `pool` is full, the oldest one is forgotten
// to make room (counted in evicted()); with the pool full and none of its
// own to forget, the new pid is not kept (counted too). A message to a pid
// not kept is then refused as if it had been guessed. Thread-safe.
class capability_set {
public:
    static constexpr std::size_t default_capacity = 4096;
    explicit capability_set(std::size_t capacity = default_capacity, std::shared_ptr<capability_pool> pool = {})
        : cap_(capacity ? capacity : 1), pool_(std::move(pool)) {}
    ~capability_set();
    capability_set(const capability_set&) = delete;
    capability_set& operator=(const capability_set&) = delete;
    std::size_t capacity() const noexcept { return cap_; }
    void add(std::uint64_t serial);
    bool contains(std::uint64_t serial) const;
    std::size_t size() const;
    std::uint64_t evicted() const noexcept { return evicted_.load(std::memory_order_relaxed); }

private:
    void forget_oldest();
    std::size_t cap_;
    std::shared_ptr<capability_pool> pool_;
    mutable std::mutex mu_;
    std::unordered_set<std::uint64_t> set_;
    std::deque<std::uint64_t> order_;
    std::atomic<std::uint64_t> evicted_{0};
};

// One grant: its definition (persisted) and its live state (not persisted).
struct grant_entry {
    // definition
    std::string label;
    public_key key;                  // the grantee's client public key
    grant_scope allow;
    std::optional<std::chrono::system_clock::time_point> expires;
    std::chrono::system_clock::time_point created;
    std::atomic<bool> revoked{false};
    // live state
    std::shared_ptr<capability_set> caps = std::make_shared<capability_set>();
    std::atomic<std::uint64_t> accepted{0}, refused{0}, rate_limited{0};
    std::atomic<int> connected{0};
    std::atomic<bool> kicked{false};  // its sessions were told "revoked"
    std::atomic<int> told_revoked{0};  // connections admitted only to be told "revoked"

    // Revoked, or past its expiry.
    bool dead(std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) const {
        return revoked.load(std::memory_order_acquire) || (expires && now >= *expires);
    }
    // Does the scope allow `name` (a function or actor type) of `svc`?
    bool allows(const std::string& svc, const std::string& name) const;
    bool take_token();
    rate_limit rate() const;
    void set_rate(rate_limit r);
    // What its key may hold at once (0 in a field: the default); read by the
    // gate for every request, so lock-free.
    grant_limits limits() const noexcept {
        return {lim_[0].load(std::memory_order_relaxed), lim_[1].load(std::memory_order_relaxed),
                lim_[2].load(std::memory_order_relaxed), lim_[3].load(std::memory_order_relaxed)};
    }
    void set_limits(const grant_limits& l) noexcept {
        lim_[0].store(l.pending, std::memory_order_relaxed);
        lim_[1].store(l.spawned, std::memory_order_relaxed);
        lim_[2].store(l.queued_bytes, std::memory_order_relaxed);
        lim_[3].store(l.relations, std::memory_order_relaxed);
    }
    grant_info info() const;

private:
    mutable std::mutex mu_;  // bucket_
    token_bucket bucket_;
    std::atomic<std::uint64_t> lim_[4]{};  // pending, spawned, queued bytes, relations
    friend class grant_table;
};

class grant_table {
public:
    // Loads `file` if it exists (a missing file is an empty table). Throws
    // setup_error naming the file and what is wrong if it is malformed:
    // a node never runs with a grant table it could not read. Leftover
    // temporary files of an interrupted write are removed.
    // `log` receives what the table reports later (a damaged file it
    // ignores), tagged with `node`; unset: the process default sink.
    explicit grant_table(std::filesystem::path file, log_sink log = {}, std::string node = {});

    // Adds a grant for `client` and saves the table before returning.
    // errc::badarg: bad or duplicate label, empty scope, bad names, or the
    // file could not be written (then the grant is not added).
    result<std::shared_ptr<grant_entry>> create(const grant_spec& spec, const public_key& client);
    // Marks the grant revoked (at once, in memory) and saves the table.
    // errc::badarg if unknown, or with the OS error if saving failed (the
    // grant stays revoked in memory).
    result<void> revoke(const std::string& label);
    result<void> set_rate(const std::string& label, rate_limit r);
    // Replaces the grant's limits (0 in a field: the default) and saves the
    // table; in force for the holder's next request, on its live sessions
    // too (what it holds already is kept: over a lowered limit, new requests
    // are refused until it is under again). errc::badarg if unknown, revoked,
    // out of grant_limits' bounds, or the table could not be written.
    result<void> set_limits(const std::string& label, const grant_limits& l);
    std::vector<grant_info> list();
    std::shared_ptr<grant_entry> find(std::string_view label) const;
    std::shared_ptr<grant_entry> find_key(const public_key& k) const;

    // Public services (not persisted: the node's program opens them).
    void set_public(const std::string& svc, bool on, rate_limit r);
    std::vector<std::string> public_services() const;
    bool is_public(const std::string& svc) const;
    // The rate of public service `svc` (nullopt if it is not public).
    std::optional<rate_limit> public_rate(const std::string& svc) const;
    bool any_public() const noexcept { return any_public_.load(std::memory_order_acquire); }
    // One token from the bucket of (stranger key, service); the service's
    // rate (svc "": messages to handed pids, at the default rate_limit). The table of these buckets is bounded (least recently used
    // forgotten first).
    bool take_public_token(const public_key& k, const std::string& svc);
    // One connection attempt of non-member key `k` (at ZAP): false when the
    // key connects more often than 2 a second (burst 10): it is backed off.
    bool take_connect_token(const public_key& k);

    const std::filesystem::path& file() const noexcept { return file_; }

    // Another process with the same key directory (say, a CLI) may change
    // the file. Every change is made under an exclusive flock on
    // <file>.lock after merging what is on disk, and this re-reads the file
    // when it changed (at most every 100 ms unless `force`): new grants are
    // added, revocations and rates taken over (a revocation is never undone).
    // Called before each change, by list(), and by the node at handshakes
    // and for messages from grantees. A file that fails to parse is ignored
    // (and reported once to the table's log sink, source "grants", level
    // warning): the table in memory stays in force.
    void refresh(bool force = false);

    // The text of the table file, and its parser (used by the tests).
    static std::string to_text(const std::vector<std::shared_ptr<grant_entry>>& entries);
    // errc::decode with what is wrong (and the line).
    static result<std::vector<std::shared_ptr<grant_entry>>> parse(std::string_view text);

private:
    void merge_locked(std::vector<std::shared_ptr<grant_entry>> disk);  // under mu_ (exclusive)
    bool take_locked(const public_key& k, const std::string& bucket, rate_limit rate);  // under pub_mu_
    // One change: under the cross-process file lock, merges the file, runs
    // f() under mu_ (exclusive), then writes the table (without mu_). If
    // the write fails, undo() runs under mu_ (still under the file lock):
    // a change the owner is told was not saved is not in force either.
    template <class F, class U>
    result<void> change(F&& f, U&& undo);
    // set_rate and set_limits: `set` the grant `label`'s value to `v` unless
    // it is unknown or revoked (`what` names the value in that refusal).
    template <class T>
    result<void> change_live(const std::string& label, const char* what, const T& v,
                             T (*get)(const grant_entry&), void (*set)(grant_entry&, const T&));
    template <class F>
    result<void> change(F&& f) {
        return change(std::forward<F>(f), [] {});
    }
    struct file_id {
        std::int64_t mtime_ns = 0, size = -1, inode = 0;
        friend bool operator==(const file_id&, const file_id&) = default;
    };
    file_id stat_file() const;
    file_id loaded_{};                                  // under mu_
    std::atomic<std::int64_t> next_check_ns_{0};        // steady clock

    std::filesystem::path file_;
    log_sink log_;      // set once, before the table is shared
    std::string node_;  // the node whose table this is, for log records
    mutable std::shared_mutex mu_;
    std::map<std::string, std::shared_ptr<grant_entry>, std::less<>> by_label_;
    std::map<public_key, std::shared_ptr<grant_entry>> by_key_;
    std::vector<std::shared_ptr<grant_entry>> order_;  // creation order, for the file

    mutable std::mutex pub_mu_;
    std::map<std::string, rate_limit> public_;
    std::atomic<bool> any_public_{false};
    static constexpr std::size_t max_stranger_buckets = 4096;
    using bucket_key = std::pair<public_key, std::string>;
    std::list<std::pair<bucket_key, token_bucket>> lru_;
    std::map<bucket_key, std::list<std::pair<bucket_key, token_bucket>>::iterator> buckets_;
};

}  // namespace kith::detail
