// test_gate.hpp — a gate that service functions (or actors) block on until
// the test opens it: `enter` counts those inside and waits (at most `bound`)
// for open(); it returns true if it was opened, false if the bound ran out.
// `wait_inside(n)` waits until n are inside. Thread-safe.
#pragma once
#include <chrono>
#include <condition_variable>
#include <mutex>

struct test_gate {
    std::mutex mu;
    std::condition_variable cv;
    int inside = 0;
    bool opened = false;
    bool enter(std::chrono::milliseconds bound = std::chrono::seconds(30)) {
        std::unique_lock lk(mu);
        ++inside;
        cv.notify_all();
        return cv.wait_for(lk, bound, [&] { return opened; });
    }
    bool wait_inside(int n, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
        std::unique_lock lk(mu);
        return cv.wait_for(lk, timeout, [&] { return inside >= n; });
    }
    void open() {
        {
            std::lock_guard lk(mu);
            opened = true;
        }
        cv.notify_all();
    }
};
