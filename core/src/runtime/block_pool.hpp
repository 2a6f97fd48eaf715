// block_pool.hpp (private) — a fixed-size block allocator for the runtime's
// hot objects (mailbox nodes, actors).
//
// Such objects are typically allocated on one thread (the sender's, the
// spawner's) and freed on another (the receiver's worker). With glibc malloc
// that pattern takes the allocating thread's arena lock on both sides for
// every object. The pool keeps a per-thread cache per block size and moves
// freed blocks back to allocating threads in batches through a small global
// exchange (one mutex acquisition per batch of 256).
//
// Thread-safety: allocate/deallocate from any thread. A thread's cache is
// returned to operator delete when the thread exits; the exchange keeps at
// most 64 batches and is never destroyed (threads may outlive main()).
#pragma once

#include <cstddef>
#include <mutex>
#include <new>
#include <vector>

namespace kith::detail {

template <std::size_t Size, std::size_t Align>
class block_pool {
    static_assert(Size >= sizeof(void*));
    static constexpr std::size_t kBatch = 256;
    static constexpr std::size_t kMaxGlobal = 64;

    struct free_block {
        free_block* next;
    };
    struct batch {
        free_block* head = nullptr;
        std::size_t n = 0;
    };

    static void* raw_new() { return ::operator new(Size, std::align_val_t(Align)); }
    static void raw_delete(void* p) noexcept { ::operator delete(p, std::align_val_t(Align)); }
    static void release_list(free_block* head) noexcept {
        while (head) {
            free_block* next = head->next;
            raw_delete(head);
            head = next;
        }
    }

    struct exchange {
        std::mutex mu;
        std::vector<batch> full;
    };
    static exchange& global() {
        static exchange* g = new exchange();
        return *g;
    }

    struct cache {
        batch alloc;
        batch freed;
        ~cache() {
            release_list(alloc.head);
            release_list(freed.head);
        }
    };
    static cache& local() {
        thread_local cache c;
        return c;
    }

public:
    static void* allocate() {
        cache& c = local();
        if (c.alloc.head == nullptr) {
            if (c.freed.head != nullptr) {
                c.alloc = c.freed;
                c.freed = batch{};
            } else {
                exchange& g = global();
                std::lock_guard l(g.mu);
                if (g.full.empty()) return raw_new();
                c.alloc = g.full.back();
                g.full.pop_back();
            }
        }
        free_block* b = c.alloc.head;
        c.alloc.head = b->next;
        --c.alloc.n;
        return b;
    }

    static void deallocate(void* p) noexcept {
        if (p == nullptr) return;
        cache& c = local();
        auto* b = static_cast<free_block*>(p);
        b->next = c.freed.head;
        c.freed.head = b;
        if (++c.freed.n < kBatch) return;
        batch full = c.freed;
        c.freed = batch{};
        exchange& g = global();
        {
            std::lock_guard l(g.mu);
            if (g.full.size() < kMaxGlobal) {
                try {
                    g.full.push_back(full);
                    return;
                } catch (...) {
                    // Only bad_alloc can come from here, on the hot path of
                    // every message free: not logged, handled — the batch
                    // is released to the heap below instead of shared.
                }
            }
        }
        release_list(full.head);
    }
};

}  // namespace kith::detail
