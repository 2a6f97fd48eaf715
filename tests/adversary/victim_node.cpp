// kith_adversary_victim — the node under attack (issue 12), or one of its
// cluster members, in its own OS process; driven line by line on stdin by
// tests/adversary/test_adversary.cpp, one answer line per command.
//
//   kith_adversary_victim --name N --key-dir D --cookie C
// With KITH_VICTIM_DISCOVERY=ADDR in the environment it also runs discovery,
// beacons to broadcast address ADDR (the load tests, in a network namespace);
// KITH_VICTIM_CONNS_PER_ADDRESS=N sets net_options::conns_per_address_per_s.
// Services: kvs, echo (with echo:server), demo (with demo:rpc_server),
// grants, node (the admin services), and for the tests
//   relay:invoke(Svc, Fn, Args)  re-dispatches with node::invoke_local
//   relay:ping()                 "pong"
//   relay:hold()                 replies only at the `release` command (work in flight)
//   relay:block(Ms)              blocks its thread until `unblock` or Ms ms (a slow service)
//   box:get()                    [Handed, Worker]: hands out those two pids
// Local processes: `sink` (a mailbox never handed to anyone: every attack aims
// at it), `handed` (a mailbox handed out by box:get), `worker` (an actor
// handed out by box:get, monitored by the `supervisor` mailbox), `asker` (an
// actor making requests on command), `watcher` (a mailbox that monitors
// on command) and `responder` (an actor answering every request "pong").
// At start it prints
//   READY name=N ep=EP mep=MEMBER_EP key=Z85 sink=PID handed=PID worker=PID asker=PID watcher=PID
//         responder=PID
// Commands:
//   stats                         -> "stats refused=N unauthorized=N rate_limited=N revoked=N protocol=N
//                                     overloaded=N unanswered=N blocks=N" (blocks: address_blocks)
//   release                       -> replies "released" to every held relay:hold; "released N"
//   kill PID                      -> exit "kill" to PID; "killed"
//   rss [reset]                   -> "rss KB HWM_KB" (VmRSS and VmHWM of this process; reset:
//                                    the peak restarts from now)
//   limits                        -> "limits soft=N hard=N fds=N" (RLIMIT_NOFILE, open fds)
//   callloop NODE MS              -> calls NODE's relay:ping one after another for MS ms:
//                                    "callloop n=N errors=E p50=US p99=US max=US down=D [first_error=..]"
//                                    (N, percentiles: successful calls; D: nodedowns of NODE)
//   callloop NODE MS PID          -> the same, requests to PID (an actor on NODE) instead
//   callloop NODE MS [PID] pool=P -> the same, the figures of all callloops into pool P so far
//   blocked                       -> "blocked NOW MAX" (relay:block calls running now, at most at once)
//   unblock                       -> frees every relay:block call, now and later; "unblocked"
//   disc                          -> "disc received=N malformed=N bad_hmac=N rate_limited=N replayed=N
//                                    duplicates=N
//                                    stale=N dropped_by_kernel=N seen=A,B" (discovery; "disc off" without it)
//   unstall                       -> frees the `slow` actor (box:slow) from "stall"; "unstalled"
//   slow_seen                     -> "slow_seen N" (messages the slow actor took)
//   kvs KEY                       -> "kvs TERM" (local lookup)
//   sink                          -> "sink S H" (messages queued in sink / handed)
//   grants                        -> "grants L1,L2" (labels, sorted)
//   grant LABEL SCOPE PS BURST FILE [LIMITS] -> "grant ok" | "grant error CODE DETAIL"
//        (LIMITS: kith::grant_limits text, e.g. pending=4,spawned=2)
//   revoke LABEL                  -> "revoke ok" | "revoke error CODE"
//   public SVC on|off PS BURST    -> "public ok" | "public error CODE DETAIL"
//   connect EP KEY                -> "connect ok NAME" | "connect error CODE DETAIL"  (as a member)
//   visit EP KEY                  -> the same, with node::connect_visitor
//   call NODE SVC FN [ARG...]     -> "call ok TERM" | "call error CODE DETAIL" (string args)
//   nodes                         -> "nodes A,B"
//   trust NODE                    -> "trust cluster|granted|stranger|server|none"
//   ask SLOT PID MS               -> the asker requests PID ("q", timeout MS); "asking"
//   ask_result SLOT MS            -> "ask_result ok TERM" | "ask_result error CODE" | "ask_result pending"
//   monitor PID                   -> the watcher monitors PID: "monitor REF"
//   downs                         -> "downs N" (DOWNs the watcher got)
//   kill_worker                   -> exit "kill" to the worker; "killed"
//   sup_down MS                   -> "sup_down REASON" | "sup_down none" (the supervisor's DOWN)
//   worker_alive                  -> "worker_alive true|false"
//   local_send PID DEST TEXT      -> sends [DEST, TEXT] to PID from this node, DEST a pid or
//                                    "sink"/"handed"; "sent"
//   quit
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "kith/builtin.hpp"
#include "kith/discovery.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "../support/node_args.hpp"

using namespace kith;
using namespace std::chrono_literals;

namespace {

void out(const std::string& line) { std::cout << line << std::endl; }

std::string err_text(const error& e) { return std::string(to_string(e.code)) + " " + e.detail; }

// The calls of callloops into one pool: latencies (us) of those that
// succeeded, failures, nodedowns seen.
struct call_pool {
    std::vector<long> us;
    long errors = 0, down = 0;
    std::string first_error;
};

term args_of(const std::vector<std::string>& w, std::size_t from) {
    term_array a;
    for (std::size_t i = from; i < w.size(); ++i) a.emplace_back(w[i]);
    return term(std::move(a));
}

// node::connect_visitor and set_public returning result<void> are the API of
// issue 12; until they exist this program still builds and says so.
template <class N>
std::string visit(N& n, const std::string& ep, const public_key& key) {
    if constexpr (requires { n.connect_visitor(ep, key, std::chrono::nanoseconds(5s)); }) {
        auto r = n.connect_visitor(ep, key, 5s);
        return r ? "visit ok " + *r : "visit error " + err_text(r.err());
    } else {
        return "visit error unsupported node::connect_visitor does not exist";
    }
}

template <class N>
std::string set_public(N& n, const std::string& svc, bool on, rate_limit rate) {
    if constexpr (std::is_same_v<decltype(n.set_public(svc, on, rate)), void>) {
        n.set_public(svc, on, rate);
        return "public ok";
    } else {
        auto r = n.set_public(svc, on, rate);
        return r.ok() ? "public ok" : "public error " + err_text(r.err());
    }
}

std::vector<std::string> words_of(const std::string& s) {
    std::istringstream in(s);
    std::vector<std::string> w;
    for (std::string t; in >> t;) w.push_back(t);
    return w;
}

struct ask_slots {
    std::mutex mu;
    std::map<int, std::string> results;
};

}  // namespace

int main(int argc, char** argv) {
    node_options o;
    o.workers = 2;
    o.net.listen = "tcp://127.0.0.1:0";
    // KITH_VICTIM_CONNS_PER_ADDRESS=N: net_options::conns_per_address_per_s
    // (0: unlimited, as a flood from many addresses would find it).
    if (const char* c = std::getenv("KITH_VICTIM_CONNS_PER_ADDRESS")) o.net.conns_per_address_per_s = std::atof(c);
    // The tests' attacker is on this machine but stands for one elsewhere.
    o.net.ration_loopback = true;
    if (!parse_node_args("kith_adversary_victim", argc, argv, o)) return 2;
    node n(o);
    node* np = &n;
    n.add_service(services::make_kvs());
    n.add_service(services::make_echo());
    n.add_service(services::make_demo(n));
    n.add_service(services::make_grant_admin(n));
    n.add_service(services::make_node_info(n));
    struct held_calls {
        std::mutex mu;
        std::vector<reply_to> calls;
    };
    auto held = std::make_shared<held_calls>();
    struct block_gate {
        std::mutex mu;
        std::condition_variable cv;
        bool open = false;
        long now = 0, max = 0;
    };
    auto blocks = std::make_shared<block_gate>();
    n.add_service(service("relay")
                      .function("hold",
                                [held](reply_to r) {
                                    std::lock_guard lk(held->mu);
                                    held->calls.push_back(std::move(r));
                                })
                      .function("invoke",
                                [np](reply_to r, std::string svc, std::string fn, term args) {
                                    np->invoke_local(svc, fn, args, std::move(r));
                                })
                      .function("ping", [] { return std::string("pong"); })
                      .function("block", [blocks](std::int64_t ms) {
                          std::unique_lock lk(blocks->mu);
                          blocks->max = std::max(blocks->max, ++blocks->now);
                          blocks->cv.wait_for(lk, std::chrono::milliseconds(ms), [&] { return blocks->open; });
                          --blocks->now;
                          return std::string("unblocked");
                      }));

    std::unique_ptr<discovery> disc;
    if (const char* bcast = std::getenv("KITH_VICTIM_DISCOVERY")) {
        discovery_options d;
        d.broadcast_address = bcast;
        d.auto_connect = false;  // the tests connect explicitly
        disc = std::make_unique<discovery>(n, d);
    }

    mailbox sink(n), handed(n), supervisor(n), watcher(n);
    pid worker = n.spawn([](actor&, message&) {});
    supervisor.monitor(worker);
    // `slow`: an actor that, on "stall", blocks its worker thread until the
    // `unstall` command: its mailbox fills while it does (queued-bytes cap).
    struct stall_gate {
        std::mutex mu;
        std::condition_variable cv;
        bool open = false;
        std::atomic<long> seen{0};
    };
    auto stall = std::make_shared<stall_gate>();
    pid slow = n.spawn([stall](actor&, message& m) {
        stall->seen.fetch_add(1);
        if (m.body.as_string() && *m.body.as_string() == "stall") {
            std::unique_lock lk(stall->mu);
            stall->cv.wait_for(lk, 30s, [&] { return stall->open; });
        }
    });
    n.add_service(service("box")
                      .function("get", [h = handed.self(), worker] { return arr(h, worker); })
                      .function("slow", [slow] { return slow; }));

    auto slots = std::make_shared<ask_slots>();
    pid asker = n.spawn([slots](actor& self, message& m) {
        // ["ask", Slot, Pid, Ms]
        if (!m.is_user() || m.body.size() != 4) return;
        int slot = static_cast<int>(m.body.at(1)->as_int().value_or(0));
        pid to = *m.body.at(2)->as_pid();
        auto ms = std::chrono::milliseconds(m.body.at(3)->as_int().value_or(1000));
        self.request(to, term("q"), ms, [slots, slot](result<term> r) {
            std::lock_guard lk(slots->mu);
            slots->results[slot] = r ? "ask_result ok " + r->to_string()
                                     : "ask_result error " + std::string(to_string(r.code()));
        });
    });

    pid responder = n.spawn([](actor& self, message& m) {
        if (m.is_request()) self.reply(m, result<term>(term("pong")));
    });

    out("READY name=" + n.name() + " ep=" + n.endpoint() + " mep=" + n.member_endpoint() + " key=" + n.key().z85() +
        " sink=" +
        sink.self().to_string() + " handed=" + handed.self().to_string() + " worker=" + worker.to_string() +
        " asker=" + asker.to_string() + " watcher=" + watcher.self().to_string() +
        " responder=" + responder.to_string());

    auto pid_arg = [&](const std::string& s) -> std::optional<pid> {
        if (s == "sink") return sink.self();
        if (s == "handed") return handed.self();
        if (s == "worker") return worker;
        return pid::parse(s);
    };

    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::vector<std::string> w;
        for (std::string t; in >> t;) w.push_back(t);
        if (w.empty()) continue;
        const std::string& c = w[0];
        if (c == "quit") break;
        if (c == "stats") {
            auto s = n.net_stats();
            out("stats refused=" + std::to_string(s.refused) + " unauthorized=" +
                std::to_string(s.refused_unauthorized) + " rate_limited=" + std::to_string(s.refused_rate_limited) +
                " revoked=" + std::to_string(s.refused_revoked) + " protocol=" + std::to_string(s.protocol_errors) +
                " overloaded=" + std::to_string(s.refused_overloaded) +
                " unanswered=" + std::to_string(s.refused_unanswered) +
                " blocks=" + std::to_string(s.address_blocks));
        } else if (c == "release") {
            std::vector<reply_to> calls;
            {
                std::lock_guard lk(held->mu);
                calls.swap(held->calls);
            }
            for (auto& r : calls) r(term("released"));
            out("released " + std::to_string(calls.size()));
        } else if (c == "kill" && w.size() == 2) {
            if (auto p = pid_arg(w[1])) n.send_exit(*p, term("kill"));
            out("killed");
        } else if (c == "disc") {
            if (!disc) {
                out("disc off");
                continue;
            }
            auto st = disc->stats();
            std::string seen;
            for (auto& e : disc->seen()) seen += (seen.empty() ? "" : ",") + e.name;
            out("disc received=" + std::to_string(st.beacons_received) + " malformed=" + std::to_string(st.malformed) +
                " bad_hmac=" + std::to_string(st.bad_hmac) + " rate_limited=" + std::to_string(st.rate_limited) +
                " replayed=" + std::to_string(st.replayed) +
                " duplicates=" + std::to_string(st.duplicates) + " stale=" + std::to_string(st.stale) +
                " dropped_by_kernel=" + std::to_string(st.dropped_by_kernel) + " seen=" + seen);
        } else if (c == "unstall") {
            {
                std::lock_guard lk(stall->mu);
                stall->open = true;
            }
            stall->cv.notify_all();
            out("unstalled");
        } else if (c == "slow_seen") {
            out("slow_seen " + std::to_string(stall->seen.load()));
        } else if (c == "limits") {  // the fd flood test (test_adversary_fd_flood)
            rlimit rl{};
            ::getrlimit(RLIMIT_NOFILE, &rl);
            std::error_code ec;  // out of fds: -1, never an exception
            long fds = 0;
            for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec))
                ++fds;
            if (ec) fds = -1;
            out("limits soft=" + std::to_string(rl.rlim_cur) + " hard=" + std::to_string(rl.rlim_max) +
                " fds=" + std::to_string(fds));
        } else if (c == "rss") {
            // "rss reset": VmHWM starts again from VmRSS (it otherwise keeps
            // the start-up peak of the cookie's Argon2id, 32 MiB).
            if (w.size() == 2 && w[1] == "reset") std::ofstream("/proc/self/clear_refs") << "5";
            std::ifstream st("/proc/self/status");
            std::string l, kb = "0", hwm = "0";
            while (std::getline(st, l)) {
                if (l.rfind("VmRSS:", 0) == 0) kb = words_of(l).at(1);
                if (l.rfind("VmHWM:", 0) == 0) hwm = words_of(l).at(1);
            }
            out("rss " + kb + " " + hwm);
        } else if (c == "blocked") {
            std::lock_guard lk(blocks->mu);
            out("blocked " + std::to_string(blocks->now) + " " + std::to_string(blocks->max));
        } else if (c == "unblock") {
            {
                std::lock_guard lk(blocks->mu);
                blocks->open = true;
            }
            blocks->cv.notify_all();
            out("unblocked");
        } else if (c == "callloop" && w.size() >= 3 && w.size() <= 5) {
            // relay:ping on NODE (or requests to the actor PID there), one
            // after another, for MS ms; with the nodedowns of NODE seen
            // meanwhile. With pool=NAME: the figures of all callloops into
            // that pool so far.
            std::optional<pid> to;
            std::string pool;
            for (std::size_t i = 3; i < w.size(); ++i) {
                if (w[i].rfind("pool=", 0) == 0) pool = w[i].substr(5);
                else to = pid::parse(w[i]);
            }
            mailbox downs(n), caller(n);
            n.monitor_node(w[1], downs.self());
            const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::stol(w[2]));
            static std::map<std::string, call_pool> pools;
            call_pool once;
            call_pool& p = pool.empty() ? once : pools[pool];
            while (std::chrono::steady_clock::now() < until) {
                const auto t0 = std::chrono::steady_clock::now();
                auto r = to ? caller.call(*to, term("q"), 5s) : n.call(w[1], "relay", "ping", term_array{}, 5s);
                if (!r) {  // not in the latencies: a nodedown fails at once
                    if (p.errors++ == 0) p.first_error = err_text(r.err());
                    std::this_thread::sleep_for(1ms);
                    continue;
                }
                p.us.push_back(static_cast<long>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                     std::chrono::steady_clock::now() - t0)
                                                     .count()));
            }
            p.down += static_cast<long>(downs.size());
            std::vector<long> us = p.us;
            std::sort(us.begin(), us.end());
            auto at = [&](double q) { return us.empty() ? 0L : us[static_cast<std::size_t>(q * (us.size() - 1))]; };
            out("callloop n=" + std::to_string(us.size()) + " errors=" + std::to_string(p.errors) +
                " p50=" + std::to_string(at(0.5)) + " p99=" + std::to_string(at(0.99)) +
                " max=" + std::to_string(us.empty() ? 0L : us.back()) + " down=" + std::to_string(p.down) +
                (p.first_error.empty() ? "" : " first_error=" + p.first_error));
        } else if (c == "kvs" && w.size() == 2) {
            std::promise<result<term>> p;
            auto f = p.get_future();
            n.invoke_local("kvs", "lookup", arr(w[1]), reply_to([&p](result<term> r) { p.set_value(std::move(r)); }));
            if (f.wait_for(5s) != std::future_status::ready) {
                out("kvs error timeout");
                continue;
            }
            auto r = f.get();
            out(r ? "kvs " + r->to_string() : "kvs error " + err_text(r.err()));
        } else if (c == "sink") {
            out("sink " + std::to_string(sink.size()) + " " + std::to_string(handed.size()));
        } else if (c == "grants") {
            std::vector<std::string> labels;
            for (auto& g : n.grants()) labels.push_back(g.label);
            std::sort(labels.begin(), labels.end());
            std::string s;
            for (auto& l : labels) s += (s.empty() ? "" : ",") + l;
            out("grants " + s);
        } else if (c == "grant" && (w.size() == 6 || w.size() == 7)) {
            auto scope = parse_grant_scope(w[2]);
            if (!scope) {
                out("grant error " + err_text(scope.err()));
                continue;
            }
            grant_spec s;
            s.label = w[1];
            s.allow = *scope;
            s.rate = rate_limit{std::stod(w[3]), std::stod(w[4])};
            if (w.size() == 7) {
                auto l = grant_limits::parse(w[6]);
                if (!l) {
                    out("grant error " + err_text(l.err()));
                    continue;
                }
                s.limits = *l;
            }
            auto g = n.grant(s);
            if (!g) {
                out("grant error " + err_text(g.err()));
                continue;
            }
            auto saved = g->save(w[5]);
            out(saved.ok() ? "grant ok" : "grant error " + err_text(saved.err()));
        } else if (c == "revoke" && w.size() == 2) {
            auto r = n.revoke_grant(w[1]);
            out(r.ok() ? "revoke ok" : "revoke error " + err_text(r.err()));
        } else if (c == "public" && w.size() == 5) {
            out(set_public(n, w[1], w[2] == "on", rate_limit{std::stod(w[3]), std::stod(w[4])}));
        } else if ((c == "connect" || c == "visit") && w.size() == 3) {
            auto key = public_key::from_z85(w[2]).value_or(public_key{});
            if (c == "visit") {
                out(visit(n, w[1], key));
            } else {
                auto r = n.connect(w[1], key, 5s);
                out(r ? "connect ok " + *r : "connect error " + err_text(r.err()));
            }
        } else if (c == "call" && w.size() >= 4) {
            auto r = n.call(w[1], w[2], w[3], args_of(w, 4), 5s);
            out(r ? "call ok " + r->to_string() : "call error " + err_text(r.err()));
        } else if (c == "nodes") {
            std::string s;
            for (auto& x : n.nodes()) s += (s.empty() ? "" : ",") + x;
            out("nodes " + s);
        } else if (c == "trust" && w.size() == 2) {
            auto i = n.info(w[1]);
            out("trust " + (i ? std::string(to_string(i->trust)) : std::string("none")));
        } else if (c == "ask" && w.size() == 4) {
            auto p = pid_arg(w[2]);
            if (!p) {
                out("ask error badarg");
                continue;
            }
            n.send(asker, arr("ask", std::stoi(w[1]), *p, std::stoi(w[3])));
            out("asking");
        } else if (c == "ask_result" && w.size() == 3) {
            const int slot = std::stoi(w[1]);
            auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::stoi(w[2]));
            std::string r;
            for (;;) {
                {
                    std::lock_guard lk(slots->mu);
                    if (slots->results.count(slot)) r = slots->results[slot];
                }
                if (!r.empty() || std::chrono::steady_clock::now() >= until) break;
                std::this_thread::sleep_for(10ms);
            }
            out(r.empty() ? "ask_result pending" : r);
        } else if (c == "monitor" && w.size() == 2) {
            auto p = pid_arg(w[1]);
            out(p ? "monitor " + watcher.monitor(*p).to_string() : "monitor error badarg");
        } else if (c == "downs") {
            out("downs " + std::to_string(watcher.size()));
        } else if (c == "kill_worker") {
            n.send_exit(worker, term("kill"));
            out("killed");
        } else if (c == "worker_alive") {
            out(std::string("worker_alive ") + (n.alive(worker) ? "true" : "false"));
        } else if (c == "sup_down" && w.size() == 2) {
            auto m = supervisor.receive([](const message& x) { return x.is_down(); },
                                        std::chrono::milliseconds(std::stoi(w[1])));
            out(m ? "sup_down " + m->body.to_string() : "sup_down none");
        } else if (c == "local_send" && w.size() == 4) {
            auto p = pid_arg(w[1]);
            auto d = pid_arg(w[2]);
            if (!p || !d) {
                out("send error badarg");
                continue;
            }
            n.send(*p, arr(*d, w[3]));
            out("sent");
        } else {
            out("error unknown command: " + line);
        }
    }
    return 0;
}
