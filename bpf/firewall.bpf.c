// SPDX-License-Identifier: GPL-2.0
/*
 * The XDP firewall: per-source DDoS budgets, then rules, then the default.
 *
 * Rules are matched by tuple-space search: user space groups rules by shape
 * (family, prefix lengths, which L4 fields) into classes, and a packet costs one
 * hash lookup per class in use, whatever the number of rules. The lowest
 * priority (the rule written first) among the classes' hits wins.
 *
 * Every map is pinned by user space, so protection outlives bpfguard; the maps
 * are the firewall's whole state (the rules as written live in fw_rule_meta).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "firewall.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
#define ICMPV6_ND_FIRST 133 /* router solicitation .. redirect */
#define ICMPV6_ND_LAST 137
#define NS_PER_SEC 1000000000ULL
#define IPPROTO_ICMPV6 58

/* Keep the event layout and the enums in the BTF user space reads. */
struct bg_fw_event bg_fw_event_layout;
enum bg_fw_mode bg_fw_mode_btf;
enum bg_fw_action bg_fw_action_btf;
enum bg_fw_field bg_fw_field_btf;
enum bg_fw_reason bg_fw_reason_btf;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bg_fw_config);
} fw_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BG_FW_CLASSES);
	__type(key, __u32);
	__type(value, struct bg_fw_class);
} fw_classes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BG_FW_RULES);
	__type(key, struct bg_fw_key4);
	__type(value, struct bg_fw_match);
} fw_rules4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BG_FW_RULES);
	__type(key, struct bg_fw_key6);
	__type(value, struct bg_fw_match);
} fw_rules6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BG_FW_RULES);
	__type(key, __u32);
	__type(value, struct bg_fw_rule);
} fw_rule_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BG_FW_RULES);
	__type(key, __u32);
	__type(value, struct bg_fw_counter);
} fw_rule_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * BG_FW_REASONS);
	__type(key, __u32);
	__type(value, struct bg_fw_counter);
} fw_actions SEC(".maps");

/* Allowlist: these sources bypass bans, budgets and the amplification filter. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct bg_fw_lpm4);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} fw_allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct bg_fw_lpm6);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} fw_allow6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct bg_fw_source);
	__type(value, struct bg_fw_bucket);
} fw_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bg_fw_bucket);
} fw_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct bg_fw_source);
	__type(value, struct bg_fw_ban);
} fw_bans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16); /* network order */
	__type(value, __u8);
} fw_amp_ports SEC(".maps");

struct sample_budget {
	__u64 window_end; /* coarse CLOCK_MONOTONIC ns */
	__u32 used;
	__u32 over;       /* drops since the budget ran out */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sample_budget);
} fw_sample_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} fw_samples SEC(".maps");

/* The rules' verdict for one tuple, as of a rule generation. A flood of one
 * flow, or any repeated flow, skips the class scan (a hash lookup per class). */
struct flow_entry {
	struct bg_fw_tuple t;
	struct bg_fw_match m;
	__u32 generation; /* 0: empty; user space starts at 1 */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BG_FW_FLOW_CACHE);
	__type(key, __u32);
	__type(value, struct flow_entry);
} fw_flows SEC(".maps");

static __always_inline bool same_tuple(struct bg_fw_tuple *a, struct bg_fw_tuple *b)
{
	__u64 *x = (__u64 *)a, *y = (__u64 *)b;

	_Static_assert(sizeof(*a) == 40, "compared as five 64-bit words");
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && x[4] == y[4];
}

struct pkt {
	struct bg_fw_tuple t;
	__u32 len;
	__u8 syn; /* a TCP SYN without ACK: a connection attempt */
	__u8 l4;  /* the transport header was reached (not a later fragment) */
};

static __always_inline int parse_l4(void *data, void *end, __u64 off, struct pkt *p)
{
	if (p->t.proto == IPPROTO_TCP) {
		struct tcphdr *th = data + off;

		if ((void *)(th + 1) > end)
			return -1;
		p->t.sport = th->source;
		p->t.dport = th->dest;
		p->syn = th->syn && !th->ack;
		p->l4 = 1;
	} else if (p->t.proto == IPPROTO_UDP) {
		struct udphdr *uh = data + off;

		if ((void *)(uh + 1) > end)
			return -1;
		p->t.sport = uh->source;
		p->t.dport = uh->dest;
		p->l4 = 1;
	} else if (p->t.proto == IPPROTO_ICMP || p->t.proto == IPPROTO_ICMPV6) {
		__u8 *type = data + off;

		if ((void *)(type + 1) > end)
			return -1;
		p->t.icmp_type = *type;
		p->l4 = 1;
	}
	return 0;
}

/* 0: IP parsed; 1: not IP; -1: malformed. */
static __always_inline int parse(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u64 off = sizeof(*eth);
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return 1;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = data + off;

		if ((void *)(vh + 1) > end)
			return 1;
		proto = vh->h_vlan_encapsulated_proto;
		off += sizeof(*vh);
	}
	p->len = end - data;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		__u32 ihl;

		if ((void *)(ip + 1) > end)
			return -1;
		ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip))
			return -1;
		p->t.family = 4;
		p->t.proto = ip->protocol;
		__builtin_memcpy(p->t.src, &ip->saddr, 4);
		__builtin_memcpy(p->t.dst, &ip->daddr, 4);
		if (ip->frag_off & bpf_htons(IP_OFFSET))
			return 0; /* a later fragment: no transport header */
		return parse_l4(data, end, off + ihl, p);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		__u8 next;

		if ((void *)(ip6 + 1) > end)
			return -1;
		p->t.family = 6;
		__builtin_memcpy(p->t.src, &ip6->saddr, 16);
		__builtin_memcpy(p->t.dst, &ip6->daddr, 16);
		next = ip6->nexthdr;
		off += sizeof(*ip6);
		for (int i = 0; i < BG_FW_EXT_HDRS; i++) {
			struct ipv6_opt_hdr *oh = data + off;

			if (next != NEXTHDR_HOP && next != NEXTHDR_ROUTING &&
			    next != NEXTHDR_DEST && next != NEXTHDR_FRAGMENT)
				break;
			if ((void *)(oh + 1) > end)
				return -1;
			if (next == NEXTHDR_FRAGMENT) {
				struct frag_hdr *fh = data + off;

				if ((void *)(fh + 1) > end)
					return -1;
				p->t.proto = fh->nexthdr;
				if (fh->frag_off & bpf_htons(0xFFF8))
					return 0; /* a later fragment */
				next = fh->nexthdr;
				off += sizeof(*fh);
				continue;
			}
			next = oh->nexthdr;
			off += (oh->hdrlen + 1) * 8;
		}
		p->t.proto = next;
		return parse_l4(data, end, off, p);
	}
	return 1;
}

static __always_inline void count(__u32 *map_key, void *map, __u32 len)
{
	struct bg_fw_counter *c = bpf_map_lookup_elem(map, map_key);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

/* GCRA: books `cost` ns against a budget unless it is booked more than
 * `tolerance` ahead of now. A lost race is retried; a budget contended beyond
 * that lets the packet pass rather than spin. */
static __always_inline bool gcra(__u64 *tat, __u64 now, __u64 cost, __u64 tolerance)
{
	for (int i = 0; i < 4; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 from = old > now ? old : now;

		if (from - now > tolerance)
			return false;
		if (__sync_val_compare_and_swap(tat, old, from + cost) == old)
			return true;
	}
	return true;
}

/* The per-source budgets; returns a drop reason or 0. */
static __always_inline __u32 budgets(struct bg_fw_config *cfg, struct bg_fw_source *src,
				     struct pkt *p, __u64 now)
{
	bool syn = p->syn && cfg->syn_interval_ns;
	struct bg_fw_bucket *b, fresh = {};
	__u32 zero = 0;

	if (p->syn && cfg->gsyn_interval_ns) {
		b = bpf_map_lookup_elem(&fw_global, &zero);
		if (b && !gcra(&b->syn_tat, now, cfg->gsyn_interval_ns, cfg->gsyn_tolerance_ns))
			return BG_FW_R_DROP_SYN_GLOBAL;
	}
	if (!cfg->pkt_interval_ns && !cfg->byte_interval_ps && !syn)
		return 0;
	b = bpf_map_lookup_elem(&fw_buckets, src);
	if (!b) {
		bpf_map_update_elem(&fw_buckets, src, &fresh, BPF_NOEXIST);
		b = bpf_map_lookup_elem(&fw_buckets, src);
		if (!b)
			return 0;
	}
	if (syn && !gcra(&b->syn_tat, now, cfg->syn_interval_ns, cfg->syn_tolerance_ns))
		return BG_FW_R_DROP_SYN;
	if (cfg->pkt_interval_ns &&
	    !gcra(&b->pkt_tat, now, cfg->pkt_interval_ns, cfg->pkt_tolerance_ns))
		return BG_FW_R_DROP_RATE;
	if (cfg->byte_interval_ps &&
	    !gcra(&b->byte_tat, now, ((__u64)p->len * cfg->byte_interval_ps + 500) / 1000,
		  cfg->byte_tolerance_ns))
		return BG_FW_R_DROP_RATE;
	return 0;
}

/* One class: mask the packet by it, look the key up, keep the first rule. */
static __always_inline long scan_one(__u32 i, struct bg_fw_tuple *t, struct bg_fw_match *best)
{
	struct bg_fw_class *c = bpf_map_lookup_elem(&fw_classes, &i);
	struct bg_fw_match *m;
	__u32 *src, *dst;
	__u8 f;

	if (!c || !t || !best)
		return 1;
	if (!c->used || (c->family && c->family != t->family))
		return 0;
	src = (__u32 *)t->src;
	dst = (__u32 *)t->dst;
	f = c->fields;
	if (c->family == 6) {
		struct bg_fw_key6 k;

		k.cls = i;
		k.family = 6;
		k.proto = f & BG_FW_F_PROTO ? t->proto : 0; /* set with any L4 field */
		k.icmp_type = f & BG_FW_F_ICMP_TYPE ? t->icmp_type : 0;
		k.sport = f & BG_FW_F_SPORT ? t->sport : 0;
		k.dport = f & BG_FW_F_DPORT ? t->dport : 0;
		for (int w = 0; w < 4; w++) {
			((__u32 *)k.src)[w] = src[w] & c->src_mask[w];
			((__u32 *)k.dst)[w] = dst[w] & c->dst_mask[w];
		}
		m = bpf_map_lookup_elem(&fw_rules6, &k);
	} else {
		struct bg_fw_key4 k;

		k.cls = i;
		k.family = c->family;
		k.proto = f & BG_FW_F_PROTO ? t->proto : 0;
		k.icmp_type = f & BG_FW_F_ICMP_TYPE ? t->icmp_type : 0;
		k.sport = f & BG_FW_F_SPORT ? t->sport : 0;
		k.dport = f & BG_FW_F_DPORT ? t->dport : 0;
		*(__u32 *)k.src = src[0] & c->src_mask[0];
		*(__u32 *)k.dst = dst[0] & c->dst_mask[0];
		m = bpf_map_lookup_elem(&fw_rules4, &k);
	}
	if (m && (!best->rule || m->prio < best->prio))
		*best = *m;
	return 0;
}

/* Classes after the first. A global function is verified once, not once per
 * iteration of the caller's loop, which a 6.1 verifier cannot finish for 64
 * classes; the first class, all most firewalls have, is scanned inline. */
__noinline long scan_class(__u32 i, struct bg_fw_tuple *t, struct bg_fw_match *best)
{
	return scan_one(i, t, best);
}

static __always_inline void sample(struct xdp_md *ctx, struct pkt *p, __u32 reason,
				   __u32 rule, bool audit, __u32 per_sec)
{
	struct sample_budget *bud;
	struct bg_fw_event *e;
	__u32 zero = 0, cap, key;
	__u64 now;

	bud = bpf_map_lookup_elem(&fw_sample_budget, &zero);
	if (!bud)
		return;
	/* Past the budget, only every 64th drop reads the (coarse) clock to see
	 * whether the second is over: a flood pays an increment per packet. */
	if (bud->used >= per_sec && (++bud->over & 63))
		return;
	now = bpf_ktime_get_coarse_ns();
	if (now >= bud->window_end) {
		bud->window_end = now + NS_PER_SEC;
		bud->used = 0;
		bud->over = 0;
	}
	if (bud->used >= per_sec)
		return;
	bud->used++;
	e = bpf_ringbuf_reserve(&fw_samples, sizeof(*e), 0);
	if (!e) {
		key = BG_FW_R_SAMPLE_LOST;
		count(&key, &fw_actions, p->len);
		return;
	}
	e->ktime_ns = bpf_ktime_get_ns();
	e->ifindex = ctx->ingress_ifindex;
	e->rule = rule;
	e->reason = reason;
	e->audit = audit;
	e->pkt_len = p->len;
	e->tuple = p->t;
	cap = p->len < BG_FW_SNAPLEN ? p->len : BG_FW_SNAPLEN;
	/* [1, SNAPLEN] in a form older verifiers (6.1) can bound from below too */
	cap = ((cap - 1) & (BG_FW_SNAPLEN - 1));
	barrier_var(cap);
	cap += 1;
	if (bpf_xdp_load_bytes(ctx, 0, e->data, cap) < 0)
		cap = 0;
	e->cap_len = cap;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void source_of(struct bg_fw_config *cfg, struct pkt *p,
				      struct bg_fw_source *s)
{
	s->family = p->t.family;
	__builtin_memcpy(s->addr, p->t.src, 16);
	if (p->t.family == 6)
		for (int i = 0; i < 16; i++)
			s->addr[i] &= cfg->v6_source_mask[i];
}

static __always_inline bool allowlisted(struct pkt *p)
{
	if (p->t.family == 4) {
		struct bg_fw_lpm4 k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, p->t.src, 4);
		return bpf_map_lookup_elem(&fw_allow4, &k);
	}
	struct bg_fw_lpm6 k6 = {.prefixlen = 128};

	__builtin_memcpy(k6.addr, p->t.src, 16);
	return bpf_map_lookup_elem(&fw_allow6, &k6);
}

/* The DDoS stage: bans, amplification ports, budgets. A drop reason or 0. */
static __always_inline __u32 ddos(struct bg_fw_config *cfg, struct pkt *p, __u64 now)
{
	struct bg_fw_source src = {};
	struct bg_fw_ban *ban, nb = {};
	__u32 reason;

	source_of(cfg, p, &src);
	ban = bpf_map_lookup_elem(&fw_bans, &src);
	if (ban) {
		if (now < ban->until_ns)
			return BG_FW_R_DROP_BAN;
		bpf_map_delete_elem(&fw_bans, &src);
	}
	if (cfg->amp_filter && p->t.proto == IPPROTO_UDP && p->l4 &&
	    bpf_map_lookup_elem(&fw_amp_ports, &p->t.sport))
		return BG_FW_R_DROP_AMP;
	reason = budgets(cfg, &src, p, now);
	if (reason && cfg->ban_ns) {
		nb.until_ns = now + cfg->ban_ns;
		nb.reason = reason;
		bpf_map_update_elem(&fw_bans, &src, &nb, BPF_ANY);
	}
	return reason;
}

SEC("xdp")
int bg_fw_xdp(struct xdp_md *ctx)
{
	struct bg_fw_match best = {};
	struct pkt p = {};
	struct bg_fw_config *cfg;
	__u32 zero = 0, reason = 0, key;
	bool audit, drop;
	int r;

	cfg = bpf_map_lookup_elem(&fw_config, &zero);
	if (!cfg)
		return XDP_PASS;
	r = parse(ctx, &p);
	if (r > 0) {
		key = BG_FW_R_PASS_NON_IP;
		count(&key, &fw_actions, (__u32)((long)ctx->data_end - (long)ctx->data));
		return XDP_PASS;
	}
	audit = cfg->mode == BG_FW_MODE_AUDIT;
	if (r < 0)
		reason = BG_FW_R_DROP_MALFORMED;
	else if (cfg->ddos && !allowlisted(&p))
		reason = ddos(cfg, &p, bpf_ktime_get_ns());
	if (!reason) {
		__u32 *w = (__u32 *)&p.t;
		__u32 slot = (w[0] ^ w[1] ^ w[2] ^ w[3] ^ w[5] ^ w[6] ^ w[7]) * 2654435761u;
		__u32 gen = cfg->generation;
		struct flow_entry *fe;

		slot >>= 24; /* 256 slots */
		fe = bpf_map_lookup_elem(&fw_flows, &slot);
		if (fe && fe->generation == gen && gen && same_tuple(&fe->t, &p.t)) {
			best = fe->m;
		} else {
			if (cfg->nclasses && !scan_one(0, &p.t, &best)) {
				for (__u32 i = 1; i < BG_FW_CLASSES; i++) {
					if (i >= cfg->nclasses || scan_class(i, &p.t, &best))
						break;
				}
			}
			if (fe) {
				fe->t = p.t;
				fe->m = best;
				fe->generation = gen;
			}
		}
		if (best.rule) {
			key = best.rule;
			count(&key, &fw_rule_stats, p.len);
			reason = best.action == BG_FW_ACT_DROP ? BG_FW_R_DROP_RULE
								  : BG_FW_R_PASS_RULE;
		} else if (cfg->default_action == BG_FW_ACT_PASS) {
			reason = BG_FW_R_PASS_DEFAULT;
		} else if (p.t.proto == IPPROTO_ICMPV6 && p.l4 &&
			   p.t.icmp_type >= ICMPV6_ND_FIRST && p.t.icmp_type <= ICMPV6_ND_LAST) {
			reason = BG_FW_R_PASS_ND;
		} else {
			reason = BG_FW_R_DROP_DEFAULT;
		}
	}
	drop = reason >= BG_FW_R_DROP_RULE;
	key = reason + (drop && audit ? BG_FW_REASONS : 0);
	count(&key, &fw_actions, p.len);
	if (!drop)
		return XDP_PASS;
	if (cfg->sample_per_sec)
		sample(ctx, &p, reason, best.rule, audit, cfg->sample_per_sec);
	return audit ? XDP_PASS : XDP_DROP;
}
