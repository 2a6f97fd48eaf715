// grant_peer — a kith node in its own OS process, driven line by line on
// stdin by tests/grants/test_grants_process.cpp. It plays Bob (a grantee),
// a stranger, or a program that writes its grant table while being killed.
//
//   grant_peer --name N --key-dir D --cookie C      then commands on stdin:
//   connect_grant FILE              -> "connect ok NAME" | "connect error CODE DETAIL"
//   connect EP Z85KEY               -> the same (as a cluster member: must prove our cookie)
//   visit EP Z85KEY                 -> the same, as a visitor (our own key: a stranger there)
//   call NODE SVC FN [ARG...]       -> "call ok TERM" | "call error CODE DETAIL"   (string args)
//   callpid NODE SVC FN             -> calls with [our mailbox pid] as the argument
//   spawn NODE SVC TYPE             -> "spawn ok PID" | "spawn error CODE DETAIL"
//   send PID TEXT                   -> sends [our mailbox pid, TEXT]; "sent"
//   send_named NODE NAME TEXT       -> "sent"
//   request PID TEXT                -> mailbox call: "request ok TERM" | "request error CODE"
//   recv MS                         -> "recv ok TERM" | "recv timeout"
//   stream NODE RATE SVC FN [ARG...] -> calls at RATE/s until one fails:
//                                      "stream oks=N code=CODE at_ns=STEADY_NS"
//   flood NODE RATE SECS SVC FN [ARG...] -> async calls at RATE/s for SECS:
//                                      "flood sent=N ok=N rate_limited=N other=N"
//   latency NODE PERIOD_MS SECS SVC FN [ARG...] -> one call every PERIOD_MS:
//                                      "latency n=N errors=N p50_us=N p99_us=N max_us=N"
//   await_down NODE MS              -> "down REASON" | "down none"
//   hammer LABELPREFIX [WIDE]       -> creates/revokes grants on this node forever,
//                                      printing "created L" / "revoked L" once each is saved;
//                                      WIDE names in a service "wide" make each write long
//   quit
// At start it prints "READY NAME ENDPOINT Z85KEY".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kith/builtin.hpp"
#include "kith/mailbox.hpp"
#include "kith/node.hpp"
#include "../support/node_args.hpp"

using namespace kith;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

void out(const std::string& line) {
    std::cout << line << std::endl;  // flushes: the test reads line by line
}

term args_of(const std::vector<std::string>& w, std::size_t from) {
    term_array a;
    for (std::size_t i = from; i < w.size(); ++i) a.emplace_back(w[i]);
    return term(std::move(a));
}

std::string err_text(const error& e) { return std::string(to_string(e.code)) + " " + e.detail; }

}  // namespace

int main(int argc, char** argv) {
    node_options o;
    o.workers = 2;
    o.net.listen = "tcp://127.0.0.1:0";
    if (!parse_node_args("grant_peer", argc, argv, o)) return 2;
    node n(o);
    n.add_service(services::make_kvs());
    n.add_service(services::make_echo());
    mailbox mb(n);
    std::mutex ev_mu;
    std::condition_variable ev_cv;
    std::vector<node_event> events;
    n.subscribe_nodes([&](const node_event& e) {
        std::lock_guard lk(ev_mu);
        events.push_back(e);
        ev_cv.notify_all();
    });
    out("READY " + n.name() + " " + n.endpoint() + " " + n.key().z85());

    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::vector<std::string> w;
        for (std::string t; in >> t;) w.push_back(t);
        if (w.empty()) continue;
        const std::string& c = w[0];
        if (c == "quit") break;
        if (c == "connect_grant" && w.size() == 2) {
            auto g = grant_file::load(w[1]);
            if (!g) {
                out("connect error " + err_text(g.err()));
                continue;
            }
            auto r = n.connect(*g, 5s);
            out(r ? "connect ok " + *r : "connect error " + err_text(r.err()));
        } else if (c == "visit" && w.size() == 3) {
            auto k = public_key::from_z85(w[2]);
            auto r = n.connect_visitor(w[1], k.value_or(public_key{}), 5s);
            out(r ? "connect ok " + *r : "connect error " + err_text(r.err()));
        } else if (c == "connect" && w.size() == 3) {
            auto k = public_key::from_z85(w[2]);
            auto r = n.connect(w[1], k.value_or(public_key{}), 5s);
            out(r ? "connect ok " + *r : "connect error " + err_text(r.err()));
        } else if (c == "call" && w.size() >= 4) {
            auto r = n.call(w[1], w[2], w[3], args_of(w, 4), 5s);
            out(r ? "call ok " + r->to_string() : "call error " + err_text(r.err()));
        } else if (c == "callpid" && w.size() == 4) {
            auto r = n.call(w[1], w[2], w[3], arr(mb.self()), 5s);
            out(r ? "call ok " + r->to_string() : "call error " + err_text(r.err()));
        } else if (c == "spawn" && w.size() == 4) {
            auto r = n.spawn(w[1], w[2], w[3], arr(), 5s);
            out(r ? "spawn ok " + r->to_string() : "spawn error " + err_text(r.err()));
        } else if (c == "send" && w.size() == 3) {
            auto p = pid::parse(w[1]);
            if (p) mb.send(*p, arr(mb.self(), w[2]));
            out(p ? "sent" : "send error badarg");
        } else if (c == "send_named" && w.size() == 4) {
            mb.send(w[2], w[1], arr(mb.self(), w[3]));
            out("sent");
        } else if (c == "request" && w.size() == 3) {
            auto p = pid::parse(w[1]);
            auto r = p ? mb.call(*p, arr(mb.self(), w[2]), 3s) : result<term>(errc::badarg);
            out(r ? "request ok " + r->to_string() : "request error " + err_text(r.err()));
        } else if (c == "recv" && w.size() == 2) {
            auto r = mb.receive([](const message& m) { return m.is_user(); }, std::chrono::milliseconds(std::stoi(w[1])));
            out(r ? "recv ok " + r->body.to_string() : "recv timeout");
        } else if (c == "stream" && w.size() >= 5) {
            const auto period = std::chrono::nanoseconds(static_cast<long long>(1e9 / std::stod(w[2])));
            auto next = steady::now();
            long oks = 0;
            for (;;) {
                auto r = n.call(w[1], w[3], w[4], args_of(w, 5), 2s);
                auto at = steady::now();
                if (!r) {
                    out("stream oks=" + std::to_string(oks) + " code=" + std::string(to_string(r.code())) +
                        " at_ns=" + std::to_string(at.time_since_epoch().count()));
                    break;
                }
                if (++oks == 10) out("streaming");
                next += period;
                std::this_thread::sleep_until(next);
            }
        } else if (c == "flood" && w.size() >= 6) {
            const double rate = std::stod(w[2]);
            const auto secs = std::chrono::duration<double>(std::stod(w[3]));
            struct tally {
                std::atomic<long> ok{0}, limited{0}, other{0}, done{0};
            };
            auto t = std::make_shared<tally>();  // outlives a late callback
            long sent = 0;
            auto t0 = steady::now();
            const auto period = std::chrono::nanoseconds(static_cast<long long>(1e9 / rate));
            auto next = t0;
            while (steady::now() - t0 < secs) {
                n.call_async(w[1], w[4], w[5], args_of(w, 6), 5s, [t](result<term> r) {
                    if (r) t->ok++;
                    else if (r.code() == errc::rate_limited) t->limited++;
                    else t->other++;
                    t->done++;
                });
                ++sent;
                next += period;
                std::this_thread::sleep_until(next);
            }
            auto until = steady::now() + 10s;
            while (t->done.load() < sent && steady::now() < until) std::this_thread::sleep_for(5ms);
            out("flood sent=" + std::to_string(sent) + " ok=" + std::to_string(t->ok.load()) +
                " rate_limited=" + std::to_string(t->limited.load()) + " other=" + std::to_string(t->other.load()));
        } else if (c == "latency" && w.size() >= 6) {
            const auto period = std::chrono::milliseconds(std::stoi(w[2]));
            const auto secs = std::chrono::duration<double>(std::stod(w[3]));
            std::vector<long> us;
            long errors = 0;
            auto t0 = steady::now();
            auto next = t0;
            while (steady::now() - t0 < secs) {
                auto a = steady::now();
                auto r = n.call(w[1], w[4], w[5], args_of(w, 6), 5s);
                auto b = steady::now();
                if (r) us.push_back(std::chrono::duration_cast<std::chrono::microseconds>(b - a).count());
                else errors++;
                next += period;
                std::this_thread::sleep_until(next);
            }
            std::sort(us.begin(), us.end());
            auto pct = [&](double p) { return us.empty() ? -1L : us[std::min(us.size() - 1, static_cast<std::size_t>(p * us.size()))]; };
            out("latency n=" + std::to_string(us.size()) + " errors=" + std::to_string(errors) +
                " p50_us=" + std::to_string(pct(0.5)) + " p99_us=" + std::to_string(pct(0.99)) +
                " max_us=" + std::to_string(us.empty() ? -1L : us.back()));
        } else if (c == "await_down" && w.size() == 3) {
            std::unique_lock lk(ev_mu);
            std::string reason = "none";
            ev_cv.wait_for(lk, std::chrono::milliseconds(std::stoi(w[2])), [&] {
                for (auto& e : events)
                    if (e.node == w[1] && e.what == node_event::kind::down) {
                        reason = e.reason;
                        return true;
                    }
                return false;
            });
            out("down " + reason);
        } else if (c == "hammer" && (w.size() == 2 || w.size() == 3)) {
            std::vector<std::string> wide;
            for (int k = 0; w.size() == 3 && k < std::stoi(w[2]); ++k)
                wide.push_back("a-rather-long-function-name-to-make-the-table-file-large-" + std::to_string(k));
            for (long i = 0;; ++i) {
                std::string label = w[1] + std::to_string(i);
                grant_spec s;
                s.label = label;
                s.allow = {{"kvs", {}}, {"echo", {"echo"}}};
                if (!wide.empty()) s.allow["wide"] = wide;
                auto g = n.grant(s);
                if (!g) {
                    out("error " + err_text(g.err()));
                    return 1;
                }
                out("created " + label);
                if (i % 3 == 1) {
                    if (auto r = n.revoke_grant(label); !r) {
                        out("error " + err_text(r.err()));
                        return 1;
                    }
                    out("revoked " + label);
                }
            }
        } else {
            out("error unknown command: " + line);
        }
    }
    return 0;
}
