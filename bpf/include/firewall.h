/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The ABI of the XDP firewall (firewall.bpf.c) and the cgroup egress policy
 * (egress.bpf.c). User space reads every layout and enum here from the objects'
 * BTF (src/bpfguard/firewall/abi.py). Addresses and ports are in network byte
 * order; an IPv4 address fills the first 4 bytes of a 16-byte field.
 */
#ifndef BPFGUARD_FIREWALL_H
#define BPFGUARD_FIREWALL_H

/* Rule slots (ids 1..BG_FW_RULES-1; 0 means "no rule"). */
#define BG_FW_RULES 65536
/* Distinct match shapes ("classes": family, prefix lengths, which L4 fields);
 * a packet costs one hash lookup per class in use, not per rule. */
#define BG_FW_CLASSES 64
/* Per-CPU flow cache slots (the last verdict of recently seen tuples). */
#define BG_FW_FLOW_CACHE 256
/* Packet bytes copied into a sampled event (and the pcap). */
#define BG_FW_SNAPLEN 128
/* IPv6 extension headers skipped to reach the transport header. */
#define BG_FW_EXT_HDRS 4

enum bg_fw_mode {
	BG_FW_MODE_ENFORCE = 0,
	BG_FW_MODE_AUDIT = 1, /* count and sample would-drops, pass everything */
};

enum bg_fw_action {
	BG_FW_ACT_PASS = 0,
	BG_FW_ACT_DROP = 1,
};

/* Which optional fields a class (and its rules) match. */
enum bg_fw_field {
	BG_FW_F_PROTO = 1 << 0,
	BG_FW_F_SPORT = 1 << 1,
	BG_FW_F_DPORT = 1 << 2,
	BG_FW_F_ICMP_TYPE = 1 << 3,
};

/* What decided a packet's fate; the `fw_actions` counters are indexed by
 * reason, plus BG_FW_REASONS for would-drops in audit mode. */
enum bg_fw_reason {
	BG_FW_R_PASS_DEFAULT = 0, /* no rule matched, default policy allow */
	BG_FW_R_PASS_RULE = 1,    /* a pass rule matched */
	BG_FW_R_PASS_NON_IP = 2,  /* not IPv4/IPv6 (ARP, LLDP, ...) */
	BG_FW_R_PASS_ND = 3,      /* IPv6 neighbour discovery under default deny */
	BG_FW_R_DROP_RULE = 4,    /* a drop rule matched */
	BG_FW_R_DROP_DEFAULT = 5, /* no rule matched, default policy deny */
	BG_FW_R_DROP_BAN = 6,     /* the source is banned (temporary ban) */
	BG_FW_R_DROP_RATE = 7,    /* the source exceeded its pps or bps budget */
	BG_FW_R_DROP_SYN = 8,     /* the source exceeded its SYN budget */
	BG_FW_R_DROP_SYN_GLOBAL = 9, /* all sources together exceeded the SYN budget */
	BG_FW_R_DROP_AMP = 10,    /* UDP from an amplification source port */
	BG_FW_R_DROP_MALFORMED = 11, /* an IP header shorter than it says */
	BG_FW_R_SAMPLE_LOST = 12, /* a sample the ring buffer had no room for */
	BG_FW_REASONS = 13,
};

struct bg_fw_config {
	__u32 mode;           /* enum bg_fw_mode */
	__u32 default_action; /* enum bg_fw_action */
	__u32 nclasses;       /* classes in use: slots [0, nclasses) are scanned */
	__u32 sample_per_sec; /* sampled would-drop events per CPU per second; 0 = none */
	/* Per-source limits (0 = off), as GCRA: interval per unit and burst tolerance. */
	__u64 pkt_interval_ns;  /* 1e9 / pps */
	__u64 pkt_tolerance_ns; /* interval * (burst - 1) */
	__u64 byte_interval_ps; /* 1e12 / bytes per second: a packet books len * this / 1000 ns */
	__u64 byte_tolerance_ns;
	__u64 syn_interval_ns;  /* per source */
	__u64 syn_tolerance_ns;
	__u64 gsyn_interval_ns; /* all sources together */
	__u64 gsyn_tolerance_ns;
	__u64 ban_ns;           /* ban a source over its budget for this long; 0 = never */
	__u32 amp_filter;       /* drop UDP from the ports in fw_amp_ports */
	__u32 v6_source_plen;   /* IPv6 sources share a budget per this prefix (e.g. /64) */
	/* Run the DDoS stage (allowlist, bans, amplification, budgets) at all:
	 * user space sets it while a budget, the filter or a ban is in force, so a
	 * rules-only firewall pays for none of its lookups. */
	__u32 ddos;
	/* Bumped by user space after every rule change: entries of the per-CPU
	 * flow cache from an older generation are misses. */
	__u32 generation;
	__u8 v6_source_mask[16];
};

/* A packet's match fields (ports in network order). */
struct bg_fw_tuple {
	__u8 proto;
	__u8 icmp_type;
	__u16 sport;
	__u16 dport;
	__u16 family;   /* 4 or 6 */
	__u8 src[16];
	__u8 dst[16];
};

/* Keys of the rule tables: a class slot and the packet's fields masked by it.
 * Classes of family 4 or 0 (no address) use the short key: hashing 16 bytes
 * instead of 40 is most of a lookup's cost. */
struct bg_fw_key4 {
	__u8 cls;
	__u8 family;
	__u8 proto;
	__u8 icmp_type;
	__u16 sport;
	__u16 dport;
	__u8 src[4];
	__u8 dst[4];
};

struct bg_fw_key6 {
	__u8 cls;
	__u8 family;
	__u8 proto;
	__u8 icmp_type;
	__u16 sport;
	__u16 dport;
	__u8 src[16];
	__u8 dst[16];
};

struct bg_fw_class {
	__u8 used;
	__u8 family;    /* 4, 6, or 0: either */
	__u8 fields;    /* enum bg_fw_field */
	__u8 pad;
	__u32 src_mask[4];
	__u32 dst_mask[4];
};

struct bg_fw_match {
	__u32 prio;   /* lower wins: the rule's position */
	__u32 rule;   /* rule id: index of fw_rule_stats and fw_rule_meta */
	__u32 action; /* enum bg_fw_action */
};

/* A rule as written, for `status` and `rule del` after a restart: the pinned
 * maps are the firewall's whole state. */
struct bg_fw_rule {
	__u32 prio;       /* 0: the slot is free */
	__u32 action;
	__u16 family;
	__u8 proto;
	__u8 icmp_type;
	__u8 fields;
	__u8 src_plen;    /* 0 with family 0: any */
	__u8 dst_plen;
	__u8 has_src;
	__u8 has_dst;
	__u8 pad[3];
	__u16 sport;      /* host order here */
	__u16 dport;
	__u8 src[16];
	__u8 dst[16];
};

struct bg_fw_counter {
	__u64 packets;
	__u64 bytes;
};

struct bg_fw_lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct bg_fw_lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* A source as rate limits and bans see it (IPv6 masked to v6_source_plen). */
struct bg_fw_source {
	__u32 family;
	__u8 addr[16];
};

/* GCRA state: each budget's theoretical arrival time (CLOCK_MONOTONIC ns).
 * A packet passes while that is at most the tolerance ahead of now, and books
 * its cost. Updated with compare-and-swap: LRU maps cannot hold a spin lock. */
struct bg_fw_bucket {
	__u64 pkt_tat;
	__u64 byte_tat;
	__u64 syn_tat;
};

struct bg_fw_ban {
	__u64 until_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 manual;   /* set by `firewall ban add`, not by a limit */
	__u32 reason;   /* enum bg_fw_reason that caused it */
};

struct bg_fw_event {
	__u64 ktime_ns;
	__u32 ifindex;
	__u32 rule;     /* 0: no rule */
	__u16 reason;   /* enum bg_fw_reason */
	__u8 audit;     /* 1: audit mode, the packet passed */
	__u8 pad;
	__u32 pkt_len;
	__u32 cap_len;  /* bytes of data[] that are the packet */
	struct bg_fw_tuple tuple;
	__u8 data[BG_FW_SNAPLEN];
};

/* ---- cgroup egress policy (egress.bpf.c) ---- */

/* Port entries per destination prefix, after user space merged in the
 * entries of every covering prefix (an LPM lookup returns only the longest). */
#define BG_EG_ENTRIES 16

enum bg_eg_proto_bit {
	BG_EG_TCP = 1 << 0,
	BG_EG_UDP = 1 << 1,
};

enum bg_eg_hook {
	BG_EG_CONNECT4 = 1,
	BG_EG_CONNECT6 = 2,
	BG_EG_SENDMSG4 = 3,
	BG_EG_SENDMSG6 = 4,
};

struct bg_eg_entry {
	__u32 rule;    /* rule id */
	__u16 port;    /* host order; 0: every port */
	__u8 protos;   /* enum bg_eg_proto_bit */
	__u8 pad;
};

struct bg_eg_deny {
	__u32 n;
	struct bg_eg_entry e[BG_EG_ENTRIES];
};

struct bg_eg_rule {
	__u32 used;
	__u32 family;
	__u32 plen;
	__u16 port;
	__u8 protos;
	__u8 pad;
	__u8 addr[16];
};

struct bg_eg_event {
	__u64 ktime_ns;
	__u64 cgroup_id;
	__u32 tgid;
	__u32 uid;
	__u32 rule;
	__u16 hook;     /* enum bg_eg_hook */
	__u16 port;     /* host order */
	__u8 proto;
	__u8 family;
	__u8 pad[2];
	__u8 addr[16];
	char comm[16];
};

#endif
