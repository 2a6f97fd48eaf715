// relay_forward.bpf.c — the relay's in-kernel forwarding (docs/relay.md,
// "Forwarding in the kernel"). Compiled with clang -target bpf and embedded
// in libkith_services (services/src/relay_kernel.cpp loads it with libbpf).
//
// Every socket of a kernel-forwarded session is in `sources` (the verdict
// program is attached to it) and in `targets` (what it may be redirected
// to). For each socket, `peers` (keyed by its socket cookie) names its
// peer's cookie and counts the bytes redirected to it. Bytes of a socket
// without a `peers` entry stay on that socket (SK_PASS: its owner reads them).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct peer {
    __u64 to;     // the peer socket's cookie (its key in `targets`)
    __u64 bytes;  // bytes redirected to it
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

SEC("sk_skb/stream_verdict")
int kith_relay_verdict(struct __sk_buff* skb) {
    __u64 cookie = bpf_get_socket_cookie(skb);
    struct peer* p = bpf_map_lookup_elem(&peers, &cookie);
    if (!p) return SK_PASS;
    __u32 len = skb->len;
    long v = bpf_sk_redirect_hash(skb, &targets, &p->to, 0);
    if (v == SK_PASS) __sync_fetch_and_add(&p->bytes, len);
    return v;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
