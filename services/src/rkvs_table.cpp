// The replicated kvs's CRDT map and clock (rkvs_table.hpp).
#include "rkvs_table.hpp"

#include <algorithm>
#include <chrono>

namespace kith::detail {

std::int64_t hlc::wall_ms() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::int64_t hlc::now() {
    last_ = std::max(last_ + 1, wall_ms() << 16);
    return last_;
}

void hlc::observe(std::int64_t seen) {
    if (seen > last_ && (seen >> 16) <= wall_ms() + max_ahead_ms) last_ = seen;
}

bool newer(const rkvs_entry& a, const rkvs_entry& b) {
    if (a.stamp != b.stamp) return a.stamp > b.stamp;
    return a.node > b.node;
}

std::size_t rkvs_map::cost(const std::string& key, const rkvs_entry& e) const {
    return key.size() + (e.value ? encode(*e.value).size() : 0);
}

bool rkvs_map::tombstone_expired(const rkvs_entry& e, std::int64_t now_ms) const {
    return !e.value && now_ms - (e.stamp >> 16) > o_->tombstone_ttl.count();
}

result<void> rkvs_map::check_write(const std::string& key, const std::optional<term>& value) const {
    if (key.empty() || key.size() > o_->max_key_bytes)
        return error{errc::badarg, "key of " + std::to_string(key.size()) + " bytes refused: keys are 1-" +
                                       std::to_string(o_->max_key_bytes) + " bytes (rkvs_options::max_key_bytes)"};
    std::size_t vsize = value ? encode(*value).size() : 0;
    if (vsize > o_->max_value_bytes)
        return error{errc::badarg, "value of " + std::to_string(vsize) + " encoded bytes refused: the limit is " +
                                       std::to_string(o_->max_value_bytes) +
                                       " (rkvs_options::max_value_bytes); store it in smaller pieces"};
    auto it = entries_.find(key);
    if (it == entries_.end() && entries_.size() >= o_->max_keys)
        return error{errc::overloaded, "the replicated kvs holds " + std::to_string(entries_.size()) +
                                           " keys (tombstones included), its limit (rkvs_options::max_keys): "
                                           "delete keys, wait for tombstones to expire, or raise the limit"};
    std::size_t old = it == entries_.end() ? 0 : cost(it->first, it->second);
    if (bytes_ - old + key.size() + vsize > o_->max_total_bytes)
        return error{errc::overloaded, "the replicated kvs would exceed " + std::to_string(o_->max_total_bytes) +
                                           " bytes of keys and values (rkvs_options::max_total_bytes): delete "
                                           "keys or raise the limit"};
    return {};
}

bool rkvs_map::merge(const std::string& key, const rkvs_entry& e, merge_counts& c, std::int64_t now_ms) {
    auto refuse = [&](std::string why) {
        if (c.refused++ == 0) c.first_refusal = std::move(why);
        return false;
    };
    auto it = entries_.find(key);
    if (it != entries_.end() && !newer(e, it->second)) {
        ++c.stale;
        return false;
    }
    if (tombstone_expired(e, now_ms)) {  // never bring back a purged delete
        ++c.stale;
        return false;
    }
    if (key.empty() || key.size() > o_->max_key_bytes) return refuse("a key over max_key_bytes");
    std::size_t vsize = e.value ? encode(*e.value).size() : 0;
    if (vsize > o_->max_value_bytes) return refuse("a value over max_value_bytes (key \"" + key + "\")");
    if (it == entries_.end() && entries_.size() >= o_->max_keys) return refuse("a new key past max_keys");
    std::size_t old = it == entries_.end() ? 0 : cost(it->first, it->second);
    if (bytes_ - old + key.size() + vsize > o_->max_total_bytes) return refuse("an entry past max_total_bytes");
    bytes_ = bytes_ - old + key.size() + vsize;
    entries_[key] = e;
    ++c.applied;
    return true;
}

const rkvs_entry* rkvs_map::find(const std::string& key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second;
}

std::vector<std::string> rkvs_map::live_keys() const {
    std::vector<std::string> out;
    for (auto& [k, e] : entries_)
        if (e.value) out.push_back(k);
    return out;
}

std::uint64_t rkvs_map::digest() const {
    // Sum of a per-entry FNV-1a hash: independent of order.
    std::uint64_t sum = 0;
    for (auto& [k, e] : entries_) {
        std::string bytes = encode(entry_term(k, e));
        std::uint64_t h = 1469598103934665603ull;
        for (unsigned char ch : bytes) {
            h ^= ch;
            h *= 1099511628211ull;
        }
        sum += h;
    }
    return sum;
}

std::size_t rkvs_map::purge(std::int64_t now_ms) {
    std::size_t n = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (tombstone_expired(it->second, now_ms)) {
            bytes_ -= it->first.size();
            it = entries_.erase(it);
            ++n;
        } else {
            ++it;
        }
    }
    return n;
}

std::vector<term> rkvs_map::chunks(std::size_t max_chunk_bytes) const {
    std::vector<term> out;
    term_array cur;
    std::size_t size = 0;
    for (auto& [k, e] : entries_) {
        std::size_t c = cost(k, e) + e.node.size() + 32;
        if (!cur.empty() && size + c > max_chunk_bytes) {
            out.emplace_back(std::move(cur));
            cur = term_array{};
            size = 0;
        }
        cur.push_back(entry_term(k, e));
        size += c;
    }
    if (!cur.empty()) out.emplace_back(std::move(cur));
    return out;
}

term entry_term(const std::string& key, const rkvs_entry& e) {
    return arr(key, e.value ? *e.value : term(), e.stamp, e.node, !e.value);
}

bool parse_entry(const term& t, std::string& key, rkvs_entry& e, std::string& why) {
    const term_array* a = t.as_array();
    if (!a || a->size() != 5) {
        why = "an entry that is not [Key, Value, Stamp, Node, Deleted]";
        return false;
    }
    const std::string* k = (*a)[0].as_string();
    auto stamp = (*a)[2].as_int();
    const std::string* nd = (*a)[3].as_string();
    if (!k || !stamp || *stamp <= 0 || !nd || !(*a)[4].is_bool()) {
        why = "an entry with a bad key, stamp, node or deleted flag";
        return false;
    }
    key = *k;
    e.stamp = *stamp;
    e.node = *nd;
    auto deleted = (*a)[4].as<bool>();
    if (deleted.ok() && *deleted) e.value.reset();
    else e.value = (*a)[1];
    return true;
}

}  // namespace kith::detail
