// pending_calls.cpp — see pending_calls.hpp.
#include "dist/pending_calls.hpp"

#include <algorithm>
#include <exception>

namespace kith::detail {

void pending_calls::entry::fail(const error& e) {
    if (on_call) on_call(e);
    if (on_spawn) on_spawn(e);
}

struct pending_calls::state {
    log_sink log;
    std::string node_name;

    std::mutex mu;
    std::condition_variable cv;       // wakes the deadline thread
    std::condition_variable drained;  // shutdown() waits for the failures queue
    using table_type = std::unordered_map<std::uint64_t, entry>;
    table_type table;
    // Nodes of taken entries, kept for the next add(): a call then costs no
    // allocation and no free for its table entry (up to max_spare kept).
    std::vector<table_type::node_type> spare;
    static constexpr std::size_t max_spare = 256;
    std::uint64_t next_id = 1;
    // Entries to complete on the deadline thread with a known error.
    std::vector<std::pair<entry, error>> failures;
    // How many completions the thread has taken but not finished running.
    std::size_t running = 0;
    // When the thread will next look at `table` by itself: time_point::min()
    // while it is awake (it rescans before sleeping), else the wake-up time
    // it sleeps until. add() notifies it only for a deadline earlier than
    // that, so a call does not cost a thread wake-up.
    clock::time_point wake_at = clock::time_point::min();
    bool shut = false;  // shutdown() was called
    bool quit = false;  // the destructor: exit once `failures` is empty

    void loop();
    // Runs one completion, logging what it throws.
    void complete(entry& e, const error& err) noexcept;
};

pending_calls::pending_calls(log_sink log, std::string node_name) : st_(std::make_shared<state>()) {
    st_->log = std::move(log);
    st_->node_name = std::move(node_name);
    thread_ = std::thread([st = st_] { st->loop(); });
}

bool pending_calls::on_deadline_thread() const noexcept { return std::this_thread::get_id() == thread_.get_id(); }

pending_calls::~pending_calls() {
    shutdown();
    {
        std::lock_guard lk(st_->mu);
        st_->quit = true;
    }
    st_->cv.notify_all();
    // The last owner may drop this from a completion (the deadline thread
    // itself): it cannot join itself; the thread ends alone, on the state it
    // holds.
    if (on_deadline_thread())
        thread_.detach();
    else if (thread_.joinable())
        thread_.join();
}

std::uint64_t pending_calls::add(entry e) {
    std::lock_guard lk(st_->mu);
    auto id = st_->next_id++;
    if (st_->shut) {
        st_->failures.emplace_back(std::move(e), error{errc::shutdown, "node stopping"});
        st_->cv.notify_one();
        return id;
    }
    // Wake the thread only if it would otherwise sleep past this deadline
    // (no O(n) scan, no wake-up per call).
    const bool earlier = e.deadline < st_->wake_at;
    if (earlier) st_->wake_at = clock::time_point::min();  // it is being woken
    if (st_->spare.empty()) {
        st_->table.emplace(id, std::move(e));
    } else {
        auto nh = std::move(st_->spare.back());
        st_->spare.pop_back();
        nh.key() = id;
        nh.mapped() = std::move(e);
        st_->table.insert(std::move(nh));
    }
    if (earlier) st_->cv.notify_one();
    return id;
}

void pending_calls::fail_later(entry e, error err) {
    std::lock_guard lk(st_->mu);
    st_->failures.emplace_back(std::move(e), std::move(err));
    st_->cv.notify_one();
}

std::optional<pending_calls::entry> pending_calls::take(std::uint64_t id, const std::string& from_node, kind k) {
    std::optional<entry> out;
    std::lock_guard lk(st_->mu);
    auto it = st_->table.find(id);
    if (it == st_->table.end() || it->second.node != from_node) return out;
    if (k == kind::call ? !it->second.on_call : !it->second.on_spawn) return out;
    auto nh = st_->table.extract(it);
    out.emplace(std::move(nh.mapped()));
    // Moved from, the completions are empty in practice; made sure of, since
    // their captures must not stay behind (the rest is overwritten by add()).
    nh.mapped().on_call = nullptr;
    nh.mapped().on_spawn = nullptr;
    if (st_->spare.size() < state::max_spare) st_->spare.push_back(std::move(nh));
    return out;
}

bool pending_calls::take_call(std::uint64_t id, const std::string& from_node, call_done& out) {
    call_done taken;
    {
        std::lock_guard lk(st_->mu);
        auto it = st_->table.find(id);
        if (it == st_->table.end() || !it->second.on_call || it->second.node != from_node) return false;
        auto nh = st_->table.extract(it);
        taken = std::move(nh.mapped().on_call);
        nh.mapped().on_call = nullptr;  // its captures went with it; the rest is overwritten by add()
        if (st_->spare.size() < state::max_spare) st_->spare.push_back(std::move(nh));
    }
    out = std::move(taken);  // whatever `out` held goes outside the table's lock
    return true;
}

std::vector<pending_calls::entry> pending_calls::take_node(const std::string& node) {
    std::vector<entry> out;
    std::lock_guard lk(st_->mu);
    for (auto it = st_->table.begin(); it != st_->table.end();) {
        if (it->second.node == node) {
            out.push_back(std::move(it->second));
            it = st_->table.erase(it);
        } else {
            ++it;
        }
    }
    return out;
}

void pending_calls::fail_soon(std::uint64_t id, error err) {
    std::lock_guard lk(st_->mu);
    auto it = st_->table.find(id);
    if (it == st_->table.end()) return;  // completed already (a reply, a nodedown)
    st_->failures.emplace_back(std::move(it->second), std::move(err));
    st_->table.erase(it);
    st_->cv.notify_one();
}

void pending_calls::shutdown() {
    std::unique_lock lk(st_->mu);
    if (!st_->shut) {
        st_->shut = true;
        for (auto& [id, e] : st_->table) st_->failures.emplace_back(std::move(e), error{errc::shutdown, "node stopping"});
        st_->table.clear();
        st_->cv.notify_one();
    }
    // A completion that stops the node runs on this very thread: waiting
    // for the thread would never end. The rest are run after it returns.
    if (on_deadline_thread()) return;
    st_->drained.wait(lk, [&] { return st_->failures.empty() && st_->running == 0; });
}

std::size_t pending_calls::size() const {
    std::lock_guard lk(st_->mu);
    return st_->table.size();
}

void pending_calls::state::complete(entry& e, const error& err) noexcept {
    try {
        e.fail(err);
    } catch (const std::exception& ex) {
        log_to(log, log_record{log_level::error, "dist",
                                std::string("a completion of a request to ") + e.node + " threw: " + ex.what() +
                                    "; completions must not throw (the deadline thread carries on)",
                                node_name});
    } catch (...) {
        log_to(log, log_record{log_level::error, "dist",
                                "a completion of a request to " + e.node +
                                    " threw a non-exception; completions must not throw (the deadline thread "
                                    "carries on)",
                                node_name});
    }
}

void pending_calls::state::loop() {
    std::unique_lock lk(mu);
    for (;;) {
        auto now = clock::now();
        auto next = clock::time_point::max();
        std::vector<std::pair<entry, error>> due;
        due.swap(failures);
        for (auto it = table.begin(); it != table.end();) {
            if (it->second.deadline <= now) {
                error e{errc::timeout, "no reply from " + it->second.node};
                due.emplace_back(std::move(it->second), std::move(e));
                it = table.erase(it);
            } else {
                next = std::min(next, it->second.deadline);
                ++it;
            }
        }
        if (!due.empty()) {
            running += due.size();
            lk.unlock();
            for (auto& [e, err] : due) complete(e, err);
            due.clear();  // the completions' captures go before the count does
            lk.lock();
            running = 0;
            if (failures.empty()) drained.notify_all();
            continue;  // rescan: time passed, more may have come
        }
        drained.notify_all();
        if (quit) return;
        wake_at = next;
        if (next == clock::time_point::max())
            cv.wait(lk);
        else
            cv.wait_until(lk, next);
        wake_at = clock::time_point::min();  // awake: rescans before sleeping again
    }
}

}  // namespace kith::detail
