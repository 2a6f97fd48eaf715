// auto_connect.cpp — dialing cluster members heard by their beacons (see
// discovery_impl.hpp). Liveness is the connection's business: a dial is
// only ever started here, never a disconnect.
#include <algorithm>

#include "discovery_impl.hpp"

namespace kith {

// One side dials: the node with the smaller name at once, the other only
// if no connection came within two intervals (e.g. the smaller one does
// not auto-connect, or knows us only as a static peer).
void discovery::impl::maybe_dial(entry& e, clock_type::time_point now, std::unique_lock<std::mutex>& lk) {
    if (e.dialing || now < e.next_dial) return;
    if (!(my_name < e.info.name) && now - e.first_heard < 2 * o.interval) return;
    e.dialing = true;
    // The member port when the member announces one (members' traffic
    // there never waits behind a flood on the public port); after a failed
    // dial there (a firewall that lets only the public port through), the
    // public endpoint, and so on in turn.
    const bool member_port = !e.info.member_endpoint.empty() && !e.public_next;
    std::string name = e.info.name, endpoint = member_port ? e.info.member_endpoint : e.info.endpoint;
    public_key key = e.info.key;
    lk.unlock();
    std::weak_ptr<impl> self = weak_from_this();
    auto timeout = std::max<std::chrono::nanoseconds>(3 * o.interval, std::chrono::seconds(3));
    n.connect_async(endpoint, key, timeout, [self, name, endpoint, member_port](result<std::string> r) {
        auto me = self.lock();
        if (!me) return;
        const bool refused = !r && r.code() != errc::timeout;
        {
            std::lock_guard lk2(me->mu);
            auto it = me->seen.find(name);
            if (!r) ++me->c.connect_failures;
            if (it == me->seen.end()) return;
            auto& e = it->second;
            e.dialing = false;
            e.public_next = !r && member_port;
            e.refusals = refused ? std::min(e.refusals + 1, 6) : 0;
            // A refusal is not retried at once: 2, 4, 8 ... up to 64 intervals.
            if (!r) e.next_dial = clock_type::now() + (2 << (refused ? e.refusals - 1 : 0)) * me->o.interval;
        }
        if (refused) me->hint("refused " + name + " " + r.err().detail,
                              "refused: cannot connect to " + name + " at " + endpoint + ": " + r.err().message());
    });
    lk.lock();
}

// Re-dials members heard recently but not connected (after a failed dial
// or a lost connection whose link gave up).
void discovery::impl::redial(clock_type::time_point now) {
    if (!o.auto_connect) return;
    std::vector<std::string> names;
    {
        std::lock_guard lk(mu);
        for (auto& [k, e] : seen)
            if (e.cluster && !e.dialing) names.push_back(k);
    }
    for (auto& k : names) {
        if (n.info(k)) continue;
        std::unique_lock lk(mu);
        if (auto it = seen.find(k); it != seen.end()) maybe_dial(it->second, now, lk);
    }
}

}  // namespace kith
