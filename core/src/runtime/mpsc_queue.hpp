// mpsc_queue.hpp (private) — the runtime's low-level pieces shared by the
// pid table, the run queues and the mailboxes: a spinlock for short critical
// sections, and an actor's mailbox queue (Vyukov's intrusive lock-free
// multi-producer/single-consumer queue) with its pooled message nodes.
// See node_impl.hpp for how they are used.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>

#include "kith/actor.hpp"
#include "kith/term.hpp"

namespace kith::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

// A tiny test-and-test-and-set lock for short critical sections.
class spinlock {
public:
    void lock() noexcept {
        for (int spins = 0; f_.exchange(true, std::memory_order_acquire);) {
            while (f_.load(std::memory_order_relaxed)) {
                if (++spins < 64) cpu_relax();
                else std::this_thread::yield();
            }
        }
    }
    void unlock() noexcept { f_.store(false, std::memory_order_release); }

private:
    std::atomic<bool> f_{false};
};

// --- mailbox queue -------------------------------------------------------------

struct mnode {
    std::atomic<mnode*> next{nullptr};
};

struct msg_node : mnode {
    message msg;
    // Set for a message a non-member sent (dist): its unit of that
    // principal's queued bytes, given back when the node is freed (handled,
    // or dropped with its actor).
    std::shared_ptr<void> charge;
    explicit msg_node(message&& m) noexcept : msg(std::move(m)) {}
    // A user message built in place (one move of the body, no temporary).
    explicit msg_node(term&& body) noexcept { msg.body = std::move(body); }

    // Pooled: see block_pool.hpp. Defined in actor.cpp.
    static void* operator new(std::size_t size);
    static void operator delete(void* p, std::size_t size) noexcept;
};

// Vyukov intrusive MPSC queue. push() from any thread; pop()/consumer_idle()
// from the single consumer only; producer_empty() from anyone.
class mpsc_queue {
public:
    mpsc_queue() noexcept : head_(&stub_), tail_(&stub_) {}
    mpsc_queue(const mpsc_queue&) = delete;
    mpsc_queue& operator=(const mpsc_queue&) = delete;

    void push(mnode* n) noexcept {
        n->next.store(nullptr, std::memory_order_relaxed);
        mnode* prev = head_.exchange(n, std::memory_order_seq_cst);
        prev->next.store(n, std::memory_order_release);
    }

    // The oldest node, or nullptr if empty or if a push is half done.
    mnode* pop() noexcept {
        mnode* tail = tail_;
        mnode* next = tail->next.load(std::memory_order_acquire);
        if (tail == &stub_) {
            if (next == nullptr) return nullptr;
            tail_ = next;
            tail = next;
            next = next->next.load(std::memory_order_acquire);
        }
        if (next != nullptr) {
            tail_ = next;
            return tail;
        }
        if (tail != head_.load(std::memory_order_acquire)) return nullptr;
        push(&stub_);
        next = tail->next.load(std::memory_order_acquire);
        if (next != nullptr) {
            tail_ = next;
            return tail;
        }
        return nullptr;
    }

    // Consumer only, after pop() returned nullptr: true if the queue was truly
    // empty (no half-done push pending behind the consumer).
    bool consumer_idle() const noexcept { return tail_ == &stub_; }
    // Anyone: true if nothing was pushed since the consumer went idle.
    bool producer_empty() const noexcept { return head_.load(std::memory_order_seq_cst) == &stub_; }

private:
    alignas(64) std::atomic<mnode*> head_;  // producers
    alignas(64) mnode* tail_;               // consumer
    mnode stub_;
};
}  // namespace kith::detail
