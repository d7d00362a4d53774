// SPDX-License-Identifier: GPL-2.0
/*
 * Egress policy for one cgroup: connect() and unconnected sendmsg() to a denied
 * destination fail with EPERM before any packet leaves. This prevents, where
 * a SIGKILL from a syscall tracepoint only reacts, and needs no BPF LSM.
 *
 * One copy of the object serves one cgroup (and its descendants); user space
 * pins its links and maps so the policy outlives bpfguard.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "firewall.h"

char LICENSE[] SEC("license") = "GPL";

#define SOCK_STREAM 1
#define SOCK_DGRAM 2

/* Keep the event layout and the enums in the BTF user space reads. */
struct bg_eg_event bg_eg_event_layout;
enum bg_eg_proto_bit bg_eg_proto_bit_btf;
enum bg_eg_hook bg_eg_hook_btf;

/* Denied destinations, longest prefix first; each entry carries the port
 * entries of every prefix that covers it. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct bg_fw_lpm4);
	__type(value, struct bg_eg_deny);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} eg_deny4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct bg_fw_lpm6);
	__type(value, struct bg_eg_deny);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} eg_deny6 SEC(".maps");

/* The rules as written, for `status` after a restart. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct bg_eg_rule);
} eg_rules SEC(".maps");

/* Denials per rule. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} eg_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} eg_events SEC(".maps");

static __always_inline __u32 proto_bit(struct bpf_sock_addr *ctx)
{
	if (ctx->type == SOCK_STREAM)
		return BG_EG_TCP;
	if (ctx->type == SOCK_DGRAM)
		return BG_EG_UDP;
	return 0;
}

static __always_inline __u32 denied_by(struct bg_eg_deny *d, __u16 port, __u32 proto)
{
	if (!d)
		return 0;
	for (int i = 0; i < BG_EG_ENTRIES; i++) {
		struct bg_eg_entry *e = &d->e[i];

		if (i >= d->n)
			break;
		if ((!e->port || e->port == port) && (e->protos & proto))
			return e->rule;
	}
	return 0;
}

static __always_inline int verdict(struct bpf_sock_addr *ctx, __u32 rule, __u16 hook,
				   int family, void *addr, __u16 port)
{
	struct bg_eg_event *e;
	__u64 *n;

	if (!rule)
		return 1;
	n = bpf_map_lookup_elem(&eg_stats, &rule);
	if (n)
		(*n)++;
	e = bpf_ringbuf_reserve(&eg_events, sizeof(*e), 0);
	if (e) {
		e->ktime_ns = bpf_ktime_get_ns();
		e->cgroup_id = bpf_get_current_cgroup_id();
		e->tgid = bpf_get_current_pid_tgid() >> 32;
		e->uid = (__u32)bpf_get_current_uid_gid();
		e->rule = rule;
		e->hook = hook;
		e->port = port;
		e->proto = ctx->type == SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP;
		e->family = family;
		__builtin_memset(e->pad, 0, sizeof(e->pad));
		__builtin_memset(e->addr, 0, sizeof(e->addr));
		__builtin_memcpy(e->addr, addr, family == 4 ? 4 : 16);
		bpf_get_current_comm(e->comm, sizeof(e->comm));
		bpf_ringbuf_submit(e, 0);
	}
	return 0; /* the caller gets EPERM */
}

static __always_inline int check4(struct bpf_sock_addr *ctx, __u16 hook)
{
	struct bg_fw_lpm4 k = {.prefixlen = 32};
	__u32 ip = ctx->user_ip4;
	__u16 port = bpf_ntohs(ctx->user_port);
	__u32 proto = proto_bit(ctx);

	__builtin_memcpy(k.addr, &ip, 4);
	return verdict(ctx, denied_by(bpf_map_lookup_elem(&eg_deny4, &k), port, proto), hook, 4,
		       &ip, port);
}

static __always_inline int check6(struct bpf_sock_addr *ctx, __u16 hook)
{
	struct bg_fw_lpm6 k = {.prefixlen = 128};
	__u16 port = bpf_ntohs(ctx->user_port);
	__u32 proto = proto_bit(ctx);
	__u32 a[4];

	a[0] = ctx->user_ip6[0];
	a[1] = ctx->user_ip6[1];
	a[2] = ctx->user_ip6[2];
	a[3] = ctx->user_ip6[3];
	/* ::ffff:a.b.c.d reaches an IPv4 destination: the IPv4 rules apply */
	if (!a[0] && !a[1] && a[2] == bpf_htonl(0xffff)) {
		struct bg_fw_lpm4 k4 = {.prefixlen = 32};

		__builtin_memcpy(k4.addr, &a[3], 4);
		return verdict(ctx, denied_by(bpf_map_lookup_elem(&eg_deny4, &k4), port, proto),
			       hook, 4, &a[3], port);
	}
	__builtin_memcpy(k.addr, a, 16);
	return verdict(ctx, denied_by(bpf_map_lookup_elem(&eg_deny6, &k), port, proto), hook, 6,
		       a, port);
}

SEC("cgroup/connect4")
int bg_eg_connect4(struct bpf_sock_addr *ctx)
{
	return check4(ctx, BG_EG_CONNECT4);
}

SEC("cgroup/connect6")
int bg_eg_connect6(struct bpf_sock_addr *ctx)
{
	return check6(ctx, BG_EG_CONNECT6);
}

SEC("cgroup/sendmsg4")
int bg_eg_sendmsg4(struct bpf_sock_addr *ctx)
{
	return check4(ctx, BG_EG_SENDMSG4);
}

SEC("cgroup/sendmsg6")
int bg_eg_sendmsg6(struct bpf_sock_addr *ctx)
{
	return check6(ctx, BG_EG_SENDMSG6);
}
