// relay_forward.bpf.c — the relay's in-kernel forwarding (docs/relay.md,
// "Forwarding in the kernel"). Compiled with clang -target bpf and embedded
// in libkith_services (services/src/relay_kernel.cpp loads it with libbpf).
//
// Every socket of a kernel-forwarded session is in `sources` (the verdict
// program is attached to it) and in `targets` (what it may be redirected
// to). For each socket, `peers` (keyed by its socket cookie) names its
// peer's cookie and counts the bytes redirected to it. Bytes of a socket
// without a `peers` entry stay on that socket (SK_PASS: its owner reads them).
//
// A socket whose peer reads too slowly is held (`holds`, written only by
// the relay): its bytes stay with it (SK_PASS: the relay reads them and
// writes them itself once the kernel's bytes before them reached the peer)
// and are counted in `passed`. Released, they are redirected again only
// once the relay has written every byte passed to it (`consumed` equals
// `passed`), so that none overtakes another. Holding never takes a socket
// out of `sources`: the kernel drops what its verdict loop is reading on
// another CPU when the program goes away under it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct peer {
    __u64 to;      // the peer socket's cookie (its key in `targets`)
    __u64 bytes;   // bytes redirected to it
    __u64 passed;  // bytes left to the relay (held)
};

struct hold {
    __u64 on;        // 1: hold this socket's bytes
    __u64 consumed;  // of `passed`, those the relay has written to the peer
};

struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, __u64);
} sources SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, __u64);
} targets SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct peer);
} peers SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC);  // a replaced element is not reused at once (a verdict may still read it)
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, struct hold);
} holds SEC(".maps");

SEC("sk_skb/stream_verdict")
int kith_relay_verdict(struct __sk_buff* skb) {
    __u64 cookie = bpf_get_socket_cookie(skb);
    struct peer* p = bpf_map_lookup_elem(&peers, &cookie);
    if (!p) return SK_PASS;
    __u32 len = skb->len;
    struct hold* h = bpf_map_lookup_elem(&holds, &cookie);
    if (h && (h->on || h->consumed != p->passed)) {
        // One socket's verdicts run one at a time (under its lock): no
        // other writer of `passed`.
        p->passed += len;
        return SK_PASS;
    }
    long v = bpf_sk_redirect_hash(skb, &targets, &p->to, 0);
    if (v == SK_PASS) __sync_fetch_and_add(&p->bytes, len);
    return v;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
