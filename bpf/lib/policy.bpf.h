/* SPDX-License-Identifier: GPL-2.0 */
/* TracingPolicy engine: the policy part of sensor.bpf.c, its hooks over the
 * selector engine (selectors.bpf.h).
 *
 * User space compiles each hook of a Tetragon TracingPolicy into maps
 * (bg_pol_hook, bg_pol_selector, string/integer/address sets); these programs
 * read the hook's arguments, evaluate the selectors in the kernel, act
 * (bpf_send_signal) in the offending task, and post only matching events.
 *
 * Hooks (the entry programs are in sensor.bpf.c):
 *  - syscalls (kprobes with syscall: true) on the sensor's one raw_syscalls
 *    sys_enter/sys_exit pair, routed by syscall number; return: true hooks
 *    stash the entry event in task storage and post it at exit with the
 *    return value;
 *  - tracepoints and raw tracepoints: one copy of the sensor object per hook
 *    with only bg_pol_tp / bg_pol_raw_tp loaded and targ_hook set, sharing
 *    every map;
 *  - kernel functions and LSM hooks, likewise one copy per hook: fentry or
 *    kprobe to observe, fmod_ret (kprobes) or lsm (lsmhooks) when a selector
 *    may Override the return value, fexit or kretprobe for return: true;
 *  - user functions (uprobes), one copy per hook with a link per symbol.
 *
 * On a kernel without BPF LSM or fmod_ret a signal sent at syscall entry kills
 * the task on its way back to user space: the syscall itself still completes.
 * Events say so (user space marks before_operation false). */
#ifndef BPFGUARD_LIB_POLICY_BPF_H
#define BPFGUARD_LIB_POLICY_BPF_H

#include "selectors.bpf.h"
#include "syscall.bpf.h"

#define BG_UNIX_PATH_MAX 108 /* sizeof(sockaddr_un.sun_path), the kernel's UNIX_PATH_MAX */

/* errno values (vmlinux.h has no macros) */
#define EPERM 1
#define E2BIG 7
#define EBUSY 16
#define ESTALE 116
#define MAX_ERRNO 4095

/* Set before load by user space. */
const volatile __u32 targ_hook = 0;  /* tracepoint copies: the hook they serve */
const volatile __u32 targ_nargs = 0; /* function copies: the function's parameter count */
const volatile __u32 targ_ima = 0;   /* LSM copies: the bg_pol_ima programs are loaded too */
/* USDT copies whose policy has a Set action (bg_pol_usdt_set): bg_pol_run
 * leaves the event of a Set to post after the write. */
const volatile __u32 targ_write_user = 0;

/* User space reads this payload layout from the object's BTF; a global keeps
 * the type in it (a pointer inside an inlined function does not). */
struct bg_pol_cred bg_pol_cred_layout;

/* Syscalls some hook wants at entry, and at return: the fast-path tests. */
__u64 pol_interest[BG_NR_MAX / 64];
__u64 pol_ret_interest[BG_NR_MAX / 64];

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BG_POL_HOOKS);
	__type(key, __u32);
	__type(value, struct bg_pol_hook);
} pol_hooks SEC(".maps");



struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BG_POL_SOCKS);
	__type(key, __u64); /* struct sock * */
	__type(value, struct bg_pol_sock_owner);
} pol_socks SEC(".maps");

/* TrackSock/UntrackSock on `sk`, for hook slot `hook`. */
static __always_inline void bg_pol_track_sock(__u64 sk, __u32 hook, bool track)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct bg_pol_sock_owner o = { .hook = hook, .tgid = id >> 32, .tid = (__u32)id };

	if (!sk)
		return;
	if (track)
		bpf_map_update_elem(&pol_socks, &sk, &o, BPF_ANY);
	else
		bpf_map_delete_elem(&pol_socks, &sk);
}

/* TrackSock/UntrackSock on the sock of argument k (argSock). */
static __always_inline void bg_pol_track_arg(struct bg_pol_area *a, __u32 k, __u32 hook,
					     bool track)
{
	if (k >= BG_POL_ARGS)
		return;
	bg_clamp(k, BG_POL_ARGS - 1);
	bg_pol_track_sock(a->ev.args[k].value, hook, track);
}

struct bg_pol_rate_key {
	__u32 hook;
	__u32 selector;
	__u32 who; /* tid, tgid or 0, by rateLimitScope */
	__u32 pad;
	__u64 hash; /* of the arguments */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BG_POL_SCOPE_CGROUPS);
	__type(key, struct bg_pol_scope_key);
	__type(value, __u8);
} pol_scope SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct bg_pol_rate_key);
	__type(value, __u64); /* last post, CLOCK_BOOTTIME ns */
} pol_rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BG_POL_HOOKS * BG_PST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} pol_stats SEC(".maps");

#define BG_POL_FIXED offsetof(struct bg_policy_event, data)

/* An IMA stash older than this was left by a call whose sleepable half never
 * ran (another LSM program denied in between): it is stale, not this call's. */
#define BG_IMA_FRESH_NS (10 * 1000 * 1000ULL)
#define BG_IMA_HASHING 2 /* stash.active while bg_pol_ima hashes: taking the hash
			  * may reopen the file and re-enter the hook */

struct bg_pol_stash {
	__u32 nr;
	__u32 active;
	__u32 hook;
	__u32 size;
	__u32 matched; /* selectors whose entry filters matched: one may pass at return */
	__u32 ima;     /* an LSM event waiting for its IMA hash (see bg_pol_ima) */
	__s32 err;     /* ... and the Override value the hook returns once it is posted */
	__u32 pad;
	__u64 obj;     /* ... and the hook's first argument, to recognise the same call */
	__u64 ktime;   /* ... and when bg_pol_lsm left it (an older one is stale) */
	struct bg_pol_area area;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct bg_pol_stash);
} pol_stash SEC(".maps");

/* The same for return: true kernel-function hooks, apart from the syscall
 * stash because such functions run inside syscalls that have one pending. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct bg_pol_stash);
} pol_fstash SEC(".maps");

/* Where a hook's arguments come from. */
struct bg_pol_src {
	__u64 a[BG_ARGC]; /* syscall or raw tracepoint arguments */
	__u64 base;       /* tracepoint: the record */
	__u32 nr;         /* syscall hooks: the syscall index; uprobes: the symbol's */
	__u32 compat;
	__u32 can_override; /* fmod_ret and lsm programs: the return value is ours */
	__u32 pad;
	__u64 regs;       /* struct pt_regs for pt_regs data: a kprobe's or uprobe's, a
			   * syscall's user registers; 0: none (trampolines) */
};

/* Set (usdts), from bg_pol_run to bg_pol_usdt_set: what to write where. Per
 * task, not in the per-CPU scratch area, which a program preempting this one
 * on the CPU may reuse (uprobe programs are preemptible): it decides where
 * user memory is written. (Not in bg_pol_src either: 16 bytes more there
 * would pass the 512-byte stack of bg_sys_enter's call chain.) */
struct bg_pol_set_req {
	__u64 addr;
	__u32 value;
	__u32 sel;  /* 1 + the selector whose Set is to be done; 0: none */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct bg_pol_set_req);
} pol_set_req SEC(".maps");

static __always_inline void bg_pol_count(__u32 hook, __u32 stat)
{
	__u32 k = hook * BG_PST_MAX + stat;
	__u64 *n = bpf_map_lookup_elem(&pol_stats, &k);

	if (n)
		*n += 1;
}

/* ---- paths, written forward for matching (bg_path_forward: strmatch.bpf.h) ---- */

static __always_inline __u32 bg_pol_put_path(struct bg_pol_area *a, __u32 pos,
					     struct task_struct *task, struct file *file,
					     const struct path *path, struct bg_pol_value *v)
{
	struct bg_file_req req = {
		.task = (__u64)task,
		.file = (__u64)file,
		.path = (__u64)path,
		.pos = pos,
	};
	int n;

	if (!file && !path) {
		v->flags |= BG_PV_UNREADABLE;
		return pos;
	}
	v->mode = (file ? BPF_CORE_READ(file, f_inode, i_mode)
			: BPF_CORE_READ(path, dentry, d_inode, i_mode)) & BG_S_IFMT;
	n = bg_path_forward((struct bg_area *)a->ev.data, &req, &a->work);
	if (n <= 0) {
		v->flags |= BG_PV_UNREADABLE;
		return pos;
	}
	v->data.off = pos;
	v->data.len = n;
	/* DEEP alone, not TRUNCATED: the selectors read TRUNCATED as an unknown
	 * end, and a deep path's end is whole (Postfix still matches it) */
	v->flags |= BG_PV_DATA | (req.pad & BG_FWD_TRUNCATED ? BG_PV_TRUNCATED : 0) |
		    (req.pad & BG_FWD_DEEP ? BG_PV_DEEP : 0);
	return pos + n;
}

/* ---- reading a hook's arguments ---- */

static __always_inline __u64 bg_pol_src_arg(struct bg_pol_src *src, __u64 i)
{
	if (i >= BG_ARGC)
		return 0;
	bg_clamp(i, BG_ARGC - 1);
	return src->a[i];
}

static __always_inline __u64 bg_pol_raw(struct bg_pol_hook *h, struct bg_pol_arg *arg,
					struct bg_pol_src *src, __u32 size)
{
	__u64 v = 0;
	__u32 i = arg->src;

	if (h->kind != BG_HOOK_TRACEPOINT)
		return bg_pol_src_arg(src, i);
	switch (size) {
	case 1:
		bpf_probe_read_kernel(&v, 1, (void *)(src->base + i));
		break;
	case 2:
		bpf_probe_read_kernel(&v, 2, (void *)(src->base + i));
		break;
	case 4:
		bpf_probe_read_kernel(&v, 4, (void *)(src->base + i));
		break;
	default:
		bpf_probe_read_kernel(&v, 8, (void *)(src->base + i));
	}
	return v;
}

static __always_inline __u64 bg_pol_int(__u64 v, __u32 size, bool is_signed)
{
	switch (size) {
	case 1:
		return is_signed ? (__u64)(__s64)(__s8)v : (__u8)v;
	case 2:
		return is_signed ? (__u64)(__s64)(__s16)v : (__u16)v;
	case 4:
		return is_signed ? (__u64)(__s64)(__s32)v : (__u32)v;
	}
	return v;
}

static __always_inline void bg_pol_sockaddr(struct bg_pol_value *v, const void *uaddr, __u64 len,
					    bool kernel)
{
	struct {
		__u16 family;
		__u16 port;
		__u32 v4;   /* sockaddr_in: the address; sockaddr_in6: flowinfo */
		__u8 v6[16];
	} sa = {};

	if (len > sizeof(sa))
		len = sizeof(sa);
	/* a syscall's address is the user's (never read as the kernel's: the
	 * user picks it); a kernel function's is the kernel's own copy */
	if (len < 4 || (kernel ? bpf_probe_read_kernel(&sa, len & 31, uaddr)
			       : bpf_probe_read_user(&sa, len & 31, uaddr))) {
		v->flags |= BG_PV_UNREADABLE;
		return;
	}
	v->flags |= BG_PV_SOCK;
	v->sock.family = sa.family;
	v->sock.lport = v->sock.rport = bpf_ntohs(sa.port);
	if (sa.family == BG_AF_INET) {
		__builtin_memcpy(v->sock.laddr, &sa.v4, 4);
		__builtin_memcpy(v->sock.raddr, &sa.v4, 4);
	} else if (sa.family == BG_AF_INET6) {
		__builtin_memcpy(v->sock.laddr, sa.v6, 16);
		__builtin_memcpy(v->sock.raddr, sa.v6, 16);
	}
}

/* An sk_buff's network and transport headers: the packet's own addresses
 * and ports (laddr/lport its source), as Tetragon's skb type reads them. A
 * global function: its headers on the stack stay out of the frames of the
 * path walk's call chain (512 bytes in all). */
__noinline int bg_pol_skb(struct bg_pol_value *v, __u64 raw)
{
	struct sk_buff *skb = (struct sk_buff *)raw;
	unsigned char *head;
	__u16 net, trans;
	__u8 version = 0, proto = 0;
	__u16 ports[2] = {};

	if (!v)
		return 0;
	head = BPF_CORE_READ(skb, head);
	net = BPF_CORE_READ(skb, network_header);
	trans = BPF_CORE_READ(skb, transport_header);
	if (!head || bpf_probe_read_kernel(&version, 1, head + net)) {
		v->flags |= BG_PV_UNREADABLE;
		return 0;
	}
	version >>= 4;
	if (version == 4) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + net))
			goto unreadable;
		proto = ip.protocol;
		v->sock.family = BG_AF_INET;
		__builtin_memcpy(v->sock.laddr, &ip.saddr, 4);
		__builtin_memcpy(v->sock.raddr, &ip.daddr, 4);
	} else if (version == 6) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + net))
			goto unreadable;
		proto = ip6.nexthdr;
		v->sock.family = BG_AF_INET6;
		__builtin_memcpy(v->sock.laddr, &ip6.saddr, 16);
		__builtin_memcpy(v->sock.raddr, &ip6.daddr, 16);
	} else {
		goto unreadable;
	}
	v->sock.protocol = proto;
	/* the transport header is set once the stack has parsed or built it */
	if ((proto == 6 || proto == 17) && trans != (__u16)~0U &&
	    !bpf_probe_read_kernel(ports, sizeof(ports), head + trans)) {
		v->sock.lport = bpf_ntohs(ports[0]);
		v->sock.rport = bpf_ntohs(ports[1]);
	}
	v->flags |= BG_PV_SOCK;
	return 0;
unreadable:
	v->flags |= BG_PV_UNREADABLE;
	return 0;
}

/* char_iovec: the bytes of the first BG_POL_IOVECS buffers of the user
 * iovec array at v->value (`count` of them), at most `max` in all, into the
 * payload at pos; returns the new payload offset. A global function: the
 * verifier checks its loop once, not once per argument of every caller. */
__noinline __u32 bg_pol_put_iovec(struct bg_pol_area *a, struct bg_pol_value *v,
				  __u64 count, __u64 max, __u32 pos)
{
	__u64 left, n, cur, at;
	int i;

	if (!a || !v)
		return pos;
	if (max > BG_STR_MAX)
		max = BG_STR_MAX;
	v->data.off = pos;
	v->data.len = 0;
	v->flags |= BG_PV_DATA;
	for (i = 0; i < BG_POL_IOVECS; i++) {
		struct {
			__u64 base;
			__u64 len;
		} iov;

		if (i >= count)
			break;
		/* the bytes so far live in memory, not a register: read back they
		 * are an unknown scalar, so the iterations' states prune */
		cur = *(volatile __u16 *)&v->data.len;
		if (cur >= max)
			break;
		left = max - cur;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(v->value + i * sizeof(iov)))) {
			v->flags |= BG_PV_UNREADABLE;
			break;
		}
		n = iov.len < left ? iov.len : left;
		if (n < iov.len) /* the cap ends the copy inside this buffer */
			v->flags |= BG_PV_TRUNCATED;
		at = pos + cur;
		if (at + n > BG_DATA_LIMIT) {
			v->flags |= BG_PV_TRUNCATED;
			break;
		}
		bg_clamp(n, BG_STR_MAX);
		if (n && bpf_probe_read_user(a->ev.data + (at & BG_DATA_MASK), n, (void *)iov.base)) {
			v->flags |= BG_PV_UNREADABLE;
			break;
		}
		v->data.len = cur + n;
	}
	if (i == BG_POL_IOVECS && i < count && v->data.len < max)
		v->flags |= BG_PV_TRUNCATED;
	return pos + v->data.len;
}

static __always_inline __u32 bg_pol_put_cred(struct bg_pol_area *a, __u32 pos, struct cred *c,
					     struct bg_pol_value *v)
{
	struct bg_pol_cred *out;
	__u64 off = pos;

	if (!c || pos + sizeof(*out) > BG_DATA_LIMIT) {
		v->flags |= BG_PV_UNREADABLE;
		return pos;
	}
	/* the check above is not one the verifier keeps */
	bg_clamp(off, BG_DATA_LIMIT - sizeof(*out));
	out = (void *)&a->ev.data[off];
	out->uid = BPF_CORE_READ(c, uid.val);
	out->gid = BPF_CORE_READ(c, gid.val);
	out->suid = BPF_CORE_READ(c, suid.val);
	out->sgid = BPF_CORE_READ(c, sgid.val);
	out->euid = BPF_CORE_READ(c, euid.val);
	out->egid = BPF_CORE_READ(c, egid.val);
	out->fsuid = BPF_CORE_READ(c, fsuid.val);
	out->fsgid = BPF_CORE_READ(c, fsgid.val);
	out->securebits = BPF_CORE_READ(c, securebits);
	BPF_CORE_READ_INTO(&out->cap_inheritable, c, cap_inheritable);
	BPF_CORE_READ_INTO(&out->cap_permitted, c, cap_permitted);
	BPF_CORE_READ_INTO(&out->cap_effective, c, cap_effective);
	v->data.off = pos;
	v->data.len = sizeof(*out);
	v->flags |= BG_PV_DATA;
	return pos + sizeof(*out);
}

/* Follows an argument's resolve path from `addr` through kernel memory: each
 * step adds its offset and, where its deref bit is set, loads the pointer
 * found there; with BG_PA_LOAD the result is the `size`-byte integer at the
 * final address (in user memory with BG_PA_USER). False when a load faults
 * (a NULL or stale pointer). */
static __noinline bool bg_pol_resolve(struct bg_pol_arg *arg, __u64 *addr)
{
	__u64 at = *addr, v = 0;
	int i;

	if (!arg)
		return false;
	for (i = 0; i < BG_POL_RESOLVE; i++) {
		if (i >= arg->nsteps)
			break;
		at += (__s64)(__s32)arg->off[i];
		if (!(arg->deref & (1 << i)))
			continue;
		if (bpf_probe_read_kernel(&at, sizeof(at), (void *)at))
			return false;
	}
	if (arg->flags & BG_PA_LOAD) {
		__u32 size = arg->size == 1 || arg->size == 2 || arg->size == 4 ? arg->size : 8;

		bg_clamp(size, 8);
		if (arg->flags & BG_PA_USER ? bpf_probe_read_user(&v, size, (void *)at)
					    : bpf_probe_read_kernel(&v, size, (void *)at))
			return false;
		at = v;
	}
	*addr = at;
	return true;
}

/* `len` bytes at `buf` into the payload at pos (at most BG_STR_MAX, marked
 * truncated beyond it or where the payload is full), from user memory or,
 * with `user` false, the kernel's. (A __user buffer the caller pointed into
 * the kernel is read as user memory on kernel functions too: never as the
 * kernel's.) */
static __always_inline __u32 bg_pol_put_bytes(struct bg_pol_area *a, struct bg_pol_value *v,
					      const void *buf, __u64 len, __u32 pos, bool user)
{
	if (len > BG_STR_MAX) {
		len = BG_STR_MAX;
		v->flags |= BG_PV_TRUNCATED;
	}
	if (pos + len > BG_DATA_LIMIT) {
		v->flags |= BG_PV_TRUNCATED;
		return pos;
	}
	bg_clamp(len, BG_STR_MAX);
	if (!buf || (user ? bpf_probe_read_user(a->ev.data + (pos & BG_DATA_MASK), len, buf)
			  : bpf_probe_read_kernel(a->ev.data + (pos & BG_DATA_MASK), len, buf))) {
		v->flags |= BG_PV_UNREADABLE;
		return pos;
	}
	v->data.off = pos;
	v->data.len = len;
	v->flags |= BG_PV_DATA;
	return pos + len;
}

/* An iov_iter's bytes, as Tetragon's copy_iov_iter reads them: the user
 * buffer of an ITER_UBUF (6.0+), the first segment of an ITER_IOVEC; other
 * kinds (kernel, pipe, bio vectors) are unreadable here. */
static __always_inline __u32 bg_pol_put_iov_iter(struct bg_pol_area *a, struct bg_pol_value *v,
						 struct iov_iter *it, __u32 pos)
{
	const void *buf = NULL;
	__u64 len = 0;
	__u8 type;

	if (!bpf_core_field_exists(it->iter_type))
		goto unreadable;
	type = BPF_CORE_READ(it, iter_type);
	if (bpf_core_enum_value_exists(enum iter_type, ITER_UBUF) &&
	    type == bpf_core_enum_value(enum iter_type, ITER_UBUF)) {
		buf = BPF_CORE_READ(it, ubuf);
		len = BPF_CORE_READ(it, count);
	} else if (type == bpf_core_enum_value(enum iter_type, ITER_IOVEC)) {
		/* (kvec: the union member of the same layout as iov, whose
		 * name changed to __iov in 6.4) */
		const struct kvec *seg = BPF_CORE_READ(it, kvec);

		buf = BPF_CORE_READ(seg, iov_base);
		len = BPF_CORE_READ(seg, iov_len);
	} else {
		goto unreadable;
	}
	return bg_pol_put_bytes(a, v, buf, len, pos, true);
unreadable:
	v->flags |= BG_PV_UNREADABLE;
	return pos;
}

/* Reads argument k of hook h into a->ev.args[k] and the payload at pos, or
 * with k == BG_POL_ARGS the return value (a->ev.ret, as returnArg's type)
 * into a->ev.retv; returns the new payload offset. For the return value src
 * is all zero: there is no other argument to take a length from. */
__noinline __u32 bg_pol_read_arg(struct bg_pol_area *a, struct bg_pol_hook *h,
				 struct bg_pol_src *src, __u32 k, __u32 pos)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_value *v;
	struct bg_pol_arg *arg;
	struct bg_payload p;
	__u64 raw, len;

	if (!a || !h || !src || k > BG_POL_ARGS)
		return pos;
	if (k < BG_POL_ARGS) {
		bg_clamp(k, BG_POL_ARGS - 1); /* (the compiler drops the test's bound) */
		arg = &h->args[k];
		v = &a->ev.args[k];
		if (arg->flags & BG_PA_TASK) {
			raw = bpf_get_current_task(); /* a number to walk from, not a pointer */
		} else if (arg->flags & BG_PA_CONST) {
			raw = arg->off[0] | (__u64)arg->off[1] << 32;
		} else if (arg->flags & BG_PA_REG) {
			if (!src->regs || bpf_probe_read_kernel(&raw, sizeof(raw),
								(void *)(src->regs + arg->src))) {
				v->flags |= BG_PV_UNREADABLE;
				return pos;
			}
		} else {
			raw = bg_pol_raw(h, arg, src, arg->size);
		}
	} else {
		arg = &h->retarg;
		v = &a->ev.retv;
		raw = a->ev.ret;
	}
	if ((arg->nsteps || arg->flags & BG_PA_LOAD) && !bg_pol_resolve(arg, &raw)) {
		v->flags |= BG_PV_UNREADABLE;
		return pos;
	}
	v->value = raw;
	p.data = a->ev.data;
	p.pos = pos;
	p.trunc = 0;
	switch (arg->type) {
	case BG_PT_INT:
		v->value = bg_pol_int(raw, arg->size, arg->is_signed);
		return pos;
	case BG_PT_SYSCALL64:
		v->value = (__u32)raw | ((__u64)src->compat << 31);
		return pos;
	case BG_PT_STRING:
	case BG_PT_KSTRING:
		if (bg_put_str(&p, (void *)raw, BG_STR_MAX, &v->data, arg->type == BG_PT_STRING)) {
			v->flags |= BG_PV_TRUNCATED;
			return pos;
		}
		v->flags |= BG_PV_DATA | (v->data.len == 0 ? BG_PV_UNREADABLE : 0) |
			    (v->data.len >= BG_STR_MAX ? BG_PV_TRUNCATED : 0);
		return p.pos;
	case BG_PT_DATA_LOC:
		if (bg_put_str(&p, (void *)(src->base + (raw & 0xffff)), BG_STR_MAX, &v->data,
			       false)) {
			v->flags |= BG_PV_TRUNCATED;
			return pos;
		}
		v->flags |= BG_PV_DATA;
		return p.pos;
	case BG_PT_CHAR_BUF_RET:
		return pos; /* the pointer (in value) is read at return */
	case BG_PT_CHAR_IOVEC:
		len = arg->size_arg ? bg_pol_src_arg(src, arg->size_arg - 1) : 0;
		return bg_pol_put_iovec(a, v, len, BG_STR_MAX, pos);
	case BG_PT_CHAR_IOVEC_RET:
		/* the array (in value) is read at return; its count is kept in
		 * mode, which only files use */
		v->mode = arg->size_arg ? bg_pol_src_arg(src, arg->size_arg - 1) : 0;
		return pos;
	case BG_PT_CHAR_BUF:
		len = arg->size_arg ? bg_pol_src_arg(src, arg->size_arg - 1) : 0;
		return bg_pol_put_bytes(a, v, (const void *)raw, len, pos, true);
	case BG_PT_IOV_ITER:
		return bg_pol_put_iov_iter(a, v, (struct iov_iter *)raw, pos);
	case BG_PT_FD:
		return bg_pol_put_path(a, pos, task, bg_fd_file(task, (long)(int)raw), NULL, v);
	case BG_PT_FILE:
		return bg_pol_put_path(a, pos, task, (struct file *)raw, NULL, v);
	case BG_PT_PATH:
		return bg_pol_put_path(a, pos, task, NULL, (const struct path *)raw, v);
	case BG_PT_BINPRM:
		return bg_pol_put_path(a, pos, task,
				       BPF_CORE_READ((struct linux_binprm *)raw, file), NULL, v);
	case BG_PT_SOCKADDR:
		len = arg->src + 1 < BG_ARGC ? bg_pol_src_arg(src, arg->src + 1) : 16;
		bg_pol_sockaddr(v, (void *)raw, len, h->kind == BG_HOOK_FUNC);
		return pos;
	case BG_PT_SOCK:
		if (!raw) {
			v->flags |= BG_PV_UNREADABLE;
			return pos;
		}
		bg_sock_read((struct sock *)raw, &v->sock);
		v->flags |= BG_PV_SOCK;
		return pos;
	case BG_PT_CRED:
		return bg_pol_put_cred(a, pos, (struct cred *)raw, v);
	case BG_PT_DENTRY: {
		/* a path with no mount: the walk stops at the filesystem's root */
		struct path within = { .dentry = (struct dentry *)raw };

		return bg_pol_put_path(a, pos, task, NULL, raw ? &within : NULL, v);
	}
	case BG_PT_SKB:
		bg_pol_skb(v, raw);
		return pos;
	case BG_PT_BYTES:
		return bg_pol_put_bytes(a, v, (const void *)raw, arg->len, pos, false);
	case BG_PT_SOCKADDR_UN: {
		__u16 family = 0;

		/* sun_path follows the 2-byte family; a kernel function's copy */
		if (!raw || bpf_probe_read_kernel(&family, 2, (void *)raw)) {
			v->flags |= BG_PV_UNREADABLE;
			return pos;
		}
		v->sock.family = family;
		v->flags |= BG_PV_SOCK;
		if (bg_put_str(&p, (void *)(raw + 2), BG_UNIX_PATH_MAX, &v->data, false))
			return pos;
		v->flags |= BG_PV_DATA;
		return p.pos;
	}
	}
	return pos;
}

/* ---- actions and posting ---- */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BG_POL_ENFORCE);
	__type(key, struct bg_pol_enforce_key);
	__type(value, struct bg_pol_enforce);
} pol_enforce SEC(".maps");

/* NotifyEnforcer: arms the policy's enforcers for this thread. */
static __always_inline void bg_pol_notify(struct bg_pol_area *a, struct bg_pol_hook *h,
					  __u32 hook, struct bg_pol_selector *s)
{
	struct bg_pol_enforce_key k = { .thread = bpf_get_current_pid_tgid(),
					.policy = h->policy };
	struct bg_pol_enforce v = { .error = s->notify_error, .sig = s->notify_sig };

	if (h->mode == BG_MODE_MONITOR) {
		a->ev.notified = 2;
		bg_pol_count(hook, BG_PST_WOULD_NOTIFY);
		return;
	}
	if (bpf_map_update_elem(&pol_enforce, &k, &v, BPF_ANY) == 0) {
		a->ev.notified = 1;
		bg_pol_count(hook, BG_PST_NOTIFIED);
	}
}

/* Set (usdts), in bg_pol_run: in monitor mode counts it and says so in the
 * event; else leaves in the task's pol_set_req the address the argument's
 * operand points to (register + displacement: the compiler accepts no other
 * operand) and the value, and returns true: bg_pol_usdt_set writes, then
 * posts. */
static __noinline bool bg_pol_set_target(struct bg_pol_area *a, struct bg_pol_hook *h,
					 __u32 hook, struct bg_pol_selector *s,
					 struct bg_pol_src *src)
{
	struct bg_pol_set_req *req;
	struct bg_pol_arg *arg;
	__u64 base = 0;
	__u32 k;

	if (!a || !h || !s || !src)
		return false;
	if (h->mode == BG_MODE_MONITOR) {
		a->ev.set = BG_SET_WOULD;
		if (!a->ev.would) /* (once an event, with bg_pol_act's) */
			bg_pol_count(hook, BG_PST_WOULD);
		bg_pol_count(hook, BG_PST_WOULD_SET);
		return false;
	}
	k = s->set_arg - 1;
	if (k >= BG_POL_ARGS)
		return false;
	arg = &h->args[k];
	req = bpf_task_storage_get(&pol_set_req, bpf_get_current_task_btf(), 0,
				   BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!req || !(arg->flags & BG_PA_REG) || !src->regs ||
	    bpf_probe_read_kernel(&base, sizeof(base), (void *)(src->regs + arg->src))) {
		a->ev.set = BG_SET_FAILED;
		bg_pol_count(hook, BG_PST_SET_FAILED);
		return false;
	}
	req->addr = base + (__s64)(__s32)arg->off[0];
	req->value = s->set_value;
	req->sel = 1 + a->ev.selector;
	return true;
}

/* Carries out the enforcing actions in `acts`, or counts them in monitor
 * mode. Returns the value an Override makes the hooked function return (0:
 * none), which only fmod_ret and lsm programs (can_override) can apply. */
static __always_inline int bg_pol_act(struct bg_pol_area *a, struct bg_pol_hook *h, __u32 hook,
				      struct bg_pol_selector *s, __u8 acts, __u32 can_override)
{
	__u8 bits = acts & (BG_ACT_SIGKILL | BG_ACT_SIGNAL | BG_ACT_OVERRIDE), done = 0;
	int err = 0;

	if (!bits)
		return 0;
	if (h->mode == BG_MODE_MONITOR) {
		a->ev.would |= bits;
		bg_pol_count(hook, BG_PST_WOULD);
		if (bits & (BG_ACT_SIGKILL | BG_ACT_SIGNAL))
			bg_pol_count(hook, BG_PST_WOULD_SIGNAL);
		if (bits & BG_ACT_OVERRIDE)
			bg_pol_count(hook, BG_PST_WOULD_OVERRIDE);
		return 0;
	}
	/* (what this call does: a return's actions add to the entry's) */
	if (bits & BG_ACT_SIGKILL) {
		if (bpf_send_signal(9) == 0)
			done |= BG_ACT_SIGKILL;
		else
			a->ev.failed |= BG_ACT_SIGKILL;
	}
	if (bits & BG_ACT_SIGNAL) {
		if (bpf_send_signal(s->signal) == 0)
			done |= BG_ACT_SIGNAL;
		else
			a->ev.failed |= BG_ACT_SIGNAL;
	}
	if (bits & BG_ACT_OVERRIDE) {
		if (can_override && s->error) {
			done |= BG_ACT_OVERRIDE;
			err = s->error;
		} else {
			a->ev.failed |= BG_ACT_OVERRIDE;
		}
	}
	a->ev.done |= done;
	if (done)
		bg_pol_count(hook, BG_PST_ACTED);
	if (done & (BG_ACT_SIGKILL | BG_ACT_SIGNAL))
		bg_pol_count(hook, BG_PST_SIGNALS);
	if (done & BG_ACT_OVERRIDE)
		bg_pol_count(hook, BG_PST_OVERRIDES);
	return err;
}

/* False when rateLimit suppresses this post. Identical events are those of
 * the same hook, selector, scope and argument values (strings by content). */
static __always_inline bool bg_pol_rate_ok(struct bg_pol_area *a, struct bg_pol_selector *s,
					   __u32 hook)
{
	struct bg_pol_rate_key k = {
		.hook = hook,
		.selector = a->ev.selector,
		.hash = ((__u64)a->ev.gen << 32) | a->ev.nr,
	};
	__u64 now, *last;

	if (!s->rate_ms)
		return true;
	if (s->rate_scope == BG_RATE_THREAD)
		k.who = a->ev.hdr.tid;
	else if (s->rate_scope == BG_RATE_PROCESS)
		k.who = a->ev.hdr.tgid;
	for (int i = 0; i < BG_POL_ARGS; i++) {
		struct bg_pol_value *v = &a->ev.args[i];

		/* by content: a string's pointer differs between processes */
		if (v->flags & BG_PV_DATA)
			k.hash = bg_mix(k.hash, bg_pol_hash(a, v->data.off, v->data.len));
		else if (v->flags & BG_PV_SOCK)
			k.hash = bg_mix(bg_mix(k.hash, ((__u64)v->sock.family << 32) | v->sock.rport),
					*(__u64 *)&v->sock.raddr[0] ^ *(__u64 *)&v->sock.raddr[8]);
		else
			k.hash = bg_mix(k.hash, v->value);
	}
	now = bpf_ktime_get_boot_ns();
	last = bpf_map_lookup_elem(&pol_rate, &k);
	if (last && now - *last < (__u64)s->rate_ms * 1000000) {
		bg_pol_count(hook, BG_PST_RATE_LIMITED);
		return false;
	}
	bpf_map_update_elem(&pol_rate, &k, &now, BPF_ANY);
	return true;
}

static __always_inline void bg_pol_post(struct bg_pol_area *a, struct bg_pol_selector *s,
					__u32 hook, __u64 size)
{
	if ((s->actions | s->ret_actions) & BG_ACT_NOPOST) {
		bg_pol_count(hook, BG_PST_NOPOST);
		return;
	}
	if (!bg_pol_rate_ok(a, s, hook))
		return;
	bg_clamp(size, BG_POL_FIXED + BG_DATA_LIMIT);
	a->ev.hdr.size = size;
	if (bpf_ringbuf_output(&events, a, size, 0)) {
		bg_count_drop(BG_DROP_RINGBUF_FULL);
		return;
	}
	bg_pol_count(hook, BG_PST_POSTED);
}

static __always_inline bool bg_pol_in_cgroup(struct task_struct *task, __u64 cg)
{
	int level = BPF_CORE_READ(task, cgroups, dfl_cgrp, level);

	for (int i = 0; i < BG_CGROUP_DEPTH; i++) {
		if (i > level)
			break;
		if (bpf_get_current_ancestor_cgroup_id(i) == cg)
			return true;
	}
	return false;
}

/* The current task's cgroup, or one of its ancestors, is in the scope's set:
 * the task runs in a container the policy selects (or below it). */
static __always_inline bool bg_pol_in_scope(struct task_struct *task, __u32 scope)
{
	struct bg_pol_scope_key k = { .scope = scope };
	int level = BPF_CORE_READ(task, cgroups, dfl_cgrp, level);

	for (int i = 0; i < BG_CGROUP_DEPTH; i++) {
		if (i > level)
			break;
		k.cgroup = bpf_get_current_ancestor_cgroup_id(level - i);
		if (bpf_map_lookup_elem(&pol_scope, &k))
			return true;
	}
	return false;
}

/* A function stash is free when inactive, or holding an IMA event gone
 * stale (its sleepable half will never come). */
static __always_inline bool bg_pol_stash_free(struct bg_pol_stash *st)
{
	return !st->active || (st->active == 1 && st->ima &&
			       bpf_ktime_get_boot_ns() - st->ktime > BG_IMA_FRESH_NS);
}

/* The event waits in the stash (marked active by the caller). */
static __always_inline void bg_pol_stash_put(struct bg_pol_stash *st, struct bg_pol_area *a,
					     __u32 hook, __u64 size)
{
	bpf_probe_read_kernel(&st->area, size, a);
	st->hook = hook;
	st->size = size;
}

/* Post's kernelStackTrace/userStackTrace: the current task's stacks into the
 * payload at pos; returns the new offset. bpf_get_task_stack, not a stack
 * map's bpf_get_stackid: it needs no program context, which the selector
 * code shared by every program type does not have. The kernel stack so
 * starts inside bpfguard's own program; user space cuts those frames. */
#define BG_POL_STACK_BYTES (BG_POL_STACK_DEPTH * 8)
_Static_assert(BG_POL_STACK_BYTES <= BG_STR_MAX, "a stack must fit the area's spare room");
__noinline __u32 bg_pol_stacks(struct bg_pol_area *a, __u32 which, __u32 pos)
{
	struct task_struct *task = bpf_get_current_task_btf();
	long n;

	if (!a)
		return pos;
	for (__u32 user = 0; user < 2; user++) {
		if (!(which & (user ? BG_STACK_USER : BG_STACK_KERNEL)))
			continue;
		if (pos > BG_DATA_LIMIT - BG_POL_STACK_BYTES) {
			a->ev.hdr.flags |= BG_EV_TRUNCATED;
			return pos;
		}
		bg_clamp(pos, BG_DATA_LIMIT - BG_POL_STACK_BYTES);
		n = bpf_get_task_stack(task, a->ev.data + pos, BG_POL_STACK_BYTES,
				       user ? BPF_F_USER_STACK : 0);
		if (n <= 0)
			continue;
		if (user) {
			a->ev.ustack_off = pos;
			a->ev.ustack_len = n;
		} else {
			a->ev.kstack_off = pos;
			a->ev.kstack_len = n;
		}
		pos += n;
	}
	return pos;
}

/* Runs hook `hook` on the current task: read, select, act, post (or stash
 * the event until the syscall or function returns). Returns the Override
 * value for the hooked function, 0 for none. */
__noinline int bg_pol_run(__u32 hook, struct bg_pol_src *src, __u32 role)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_selector *sel = NULL;
	struct bg_pol_hook *h;
	struct bg_pol_area *a;
	struct bg_scratch *scr;
	struct bg_pol_stash *st;
	__u32 pos = 0, tgid, key, candidates = 0, matched = 0;
	__u64 size;
	int err;

	if (!src)
		return 0;
	h = bpf_map_lookup_elem(&pol_hooks, &hook);
	if (!h || !h->kind)
		return 0;
	tgid = task->tgid;
	if (!bg_in_scope(task, tgid))
		return 0;
	if (h->cgroup && !bg_pol_in_cgroup(task, h->cgroup))
		return 0;
	if (h->scope && !bg_pol_in_scope(task, h->scope))
		return 0;
	scr = bg_scratch(role);
	if (!scr)
		return 0;
	a = (void *)scr->buf;
	a->work.role = role;
	for (int i = 0; i < BG_POL_SELECTORS; i++) {
		struct bg_pol_selector *s;

		if (i >= h->nsel)
			break;
		key = hook * BG_POL_SELECTORS + i;
		s = bpf_map_lookup_elem(&pol_selectors, &key);
		if (s && bg_pol_match_task(a, s))
			candidates |= 1 << i;
	}
	if (!candidates)
		return 0;
	__builtin_memset(&a->ev, 0, sizeof(a->ev));
	bg_fill_header(&a->ev.hdr, task, BG_EVENT_POLICY);
	a->ev.hook = hook;
	a->ev.gen = h->gen;
	a->ev.nr = src->nr;
	if (src->compat)
		a->ev.hdr.flags |= BG_EV_COMPAT;
	for (__u32 k = 0; k < BG_POL_ARGS; k++) {
		if (k >= h->nargs)
			break;
		pos = bg_pol_read_arg(a, h, src, k, pos);
	}
	/* the first matching selector acts; a return hook remembers every one
	 * that matched, since any of them may pass its return filters */
	for (int i = 0; i < BG_POL_SELECTORS; i++) {
		struct bg_pol_selector *s;

		if (!(candidates & (1 << i)))
			continue;
		key = hook * BG_POL_SELECTORS + i;
		s = bpf_map_lookup_elem(&pol_selectors, &key);
		if (!s || !bg_pol_match_args(a, s, 0))
			continue;
		matched |= 1 << i;
		if (!sel) {
			sel = s;
			a->ev.selector = i;
		}
		if (!h->ret)
			break;
	}
	if (!sel)
		return 0;
	if (sel->stacks)
		pos = bg_pol_stacks(a, sel->stacks, pos);
	if (sel->nsc_op || sel->capc_op) /* reported: compare with what it has now */
		bg_pol_exe_state(tgid);
	err = bg_pol_act(a, h, hook, sel, sel->actions, src->can_override);
	if (sel->notify)
		bg_pol_notify(a, h, hook, sel);
	if (sel->actions & (BG_ACT_TRACK_SOCK | BG_ACT_UNTRACK_SOCK))
		bg_pol_track_arg(a, sel->sock_arg, hook, sel->actions & BG_ACT_TRACK_SOCK);
	size = BG_POL_FIXED + pos;
	bg_clamp(size, BG_POL_FIXED + BG_DATA_LIMIT);
	if (sel->actions & BG_ACT_IMA_HASH) {
		/* hashing sleeps, which this program may not: a sleepable copy
		 * of bg_pol_ima after this one posts, and returns the Override.
		 * Busy (a hash in progress re-entered the hook): post at once,
		 * without the hash. */
		st = bpf_task_storage_get(&pol_fstash, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (st && bg_pol_stash_free(st)) {
			bg_pol_stash_put(st, a, hook, size);
			st->ima = 1;
			st->err = err;
			st->obj = src->a[0];
			st->ktime = bpf_ktime_get_boot_ns();
			st->active = 1;
			return 0;
		}
		a->ev.ima_err = -EBUSY;
	}
	if (h->ret) {
		/* (one slot for functions and uprobes: a third map would triple
		 * what 6.1's verifier walks after it) */
		st = bpf_task_storage_get(h->kind == BG_HOOK_SYSCALL ? (void *)&pol_stash
								     : (void *)&pol_fstash,
					  task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		/* a function hook's slot still active was left by a call that
		 * did not return yet (recursion): this one posts at once */
		if (st && bg_pol_stash_free(st)) {
			bg_pol_stash_put(st, a, hook, size);
			st->nr = src->nr;
			st->matched = matched;
			st->ima = 0;
			st->active = 1;
			return err;
		}
		bg_pol_count(hook, BG_PST_NO_RETURN);
	}
	if (targ_write_user && sel->set_arg && bg_pol_set_target(a, h, hook, sel, src)) {
		/* bg_pol_usdt_set writes first, then posts: the event tells how it went */
		a->ev.hdr.size = size;
		return err;
	}
	bg_pol_post(a, sel, hook, size);
	return err;
}

/* ---- syscall hooks ---- */

static __noinline int bg_pol_enter(struct pt_regs *regs, long id, __u32 idx,
					struct bg_pol_route *route)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_stash *st;
	struct bg_pol_src src = {};

	if (!route || !route->n)
		return 0;
	src.compat = idx >= BG_NR_MAX;
	/* a slot still active here lost its exit (the thread cannot be in two syscalls) */
	if (bg_bit_set(pol_ret_interest, id)) {
		st = bpf_task_storage_get(&pol_stash, task, 0, 0);
		if (st)
			st->active = 0;
	}
	src.nr = idx;
	src.regs = (__u64)regs; /* the task's user registers: pt_regs data */
	bg_read_args(regs, src.compat, src.a);
	for (int i = 0; i < BG_POL_SYSCALL_HOOKS; i++) {
		if (i >= route->n)
			break;
		bg_pol_run(route->hooks[i], &src, BG_SCRATCH_POLICY_ENTER);
	}
	return 0;
}


/* Completes a stashed event with the return value: matchReturnArgs, the
 * return actions, the post. */
/* returnCopy: the bytes a call returned through a buffer argument exist only
 * now; as many as it returned, at most BG_STR_MAX, after the payload. */
static __always_inline void bg_pol_copy_returned(struct bg_pol_stash *st, struct bg_pol_hook *h,
						 long ret)
{
	for (int k = 0; k < BG_POL_ARGS; k++) {
		struct bg_pol_value *v = &st->area.ev.args[k];
		__u64 len = ret, pos = st->size - BG_POL_FIXED;

		if (k >= h->nargs)
			break;
		if (h->args[k].type == BG_PT_CHAR_IOVEC_RET) {
			__u64 size = st->size;

			size += bg_pol_put_iovec(&st->area, v, v->mode, ret > 0 ? ret : 0,
						 pos) - pos;
			bg_clamp(size, BG_POL_FIXED + BG_DATA_LIMIT);
			st->size = size;
			v->mode = 0;
			continue;
		}
		if (h->args[k].type != BG_PT_CHAR_BUF_RET)
			continue;
		if (ret <= 0) { /* nothing returned: no bytes */
			v->data.off = pos;
			v->data.len = 0;
			v->flags |= BG_PV_DATA;
			continue;
		}
		if (len > BG_STR_MAX) {
			len = BG_STR_MAX;
			v->flags |= BG_PV_TRUNCATED;
		}
		if (pos + len > BG_DATA_LIMIT) {
			v->flags |= BG_PV_TRUNCATED;
			continue;
		}
		bg_clamp(len, BG_STR_MAX);
		if (bpf_probe_read_user(st->area.ev.data + (pos & BG_DATA_MASK), len,
					(void *)v->value)) {
			v->flags |= BG_PV_UNREADABLE;
			continue;
		}
		v->data.off = pos;
		v->data.len = len;
		v->flags |= BG_PV_DATA;
		st->size += len;
	}
}

static __always_inline int bg_pol_finish(struct bg_pol_stash *st, long ret)
{
	struct bg_pol_selector *sel = NULL;
	struct bg_pol_area *a = &st->area;
	struct bg_pol_hook *h;
	__u32 hook = st->hook, key;

	h = bpf_map_lookup_elem(&pol_hooks, &hook);
	if (!h || !h->kind || h->gen != a->ev.gen)
		return 0; /* the hook went away (or its slot serves another) meanwhile */
	a->ev.ret = ret;
	a->ev.has_ret = 1;
	bg_pol_copy_returned(st, h, ret);
	if (h->retarg.type && h->retarg.type != BG_PT_INT) {
		struct bg_pol_src none = {};
		__u64 size = BG_POL_FIXED + bg_pol_read_arg(a, h, &none, BG_POL_ARGS,
							    st->size - BG_POL_FIXED);

		bg_clamp(size, BG_POL_FIXED + BG_DATA_LIMIT);
		st->size = size;
	}
	for (int i = 0; i < BG_POL_SELECTORS; i++) {
		struct bg_pol_selector *s;

		if (!(st->matched & (1 << i)))
			continue;
		key = hook * BG_POL_SELECTORS + i;
		s = bpf_map_lookup_elem(&pol_selectors, &key);
		if (s && bg_pol_match_args(a, s, 1)) {
			sel = s;
			a->ev.selector = i;
			break;
		}
	}
	if (h->ret_sock) /* returnArgAction: the returned sock */
		bg_pol_track_sock(ret, hook, h->ret_sock == BG_ACT_TRACK_SOCK);
	if (!sel)
		return 0;
	bg_pol_act(a, h, hook, sel, sel->ret_actions, 0);
	if (sel->ret_actions & (BG_ACT_TRACK_SOCK | BG_ACT_UNTRACK_SOCK))
		bg_pol_track_arg(a, sel->ret_sock_arg, hook, sel->ret_actions & BG_ACT_TRACK_SOCK);
	bg_pol_post(a, sel, hook, st->size);
	return 0;
}

static __noinline int bg_pol_exit(long id, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_stash *st;

	st = bpf_task_storage_get(&pol_stash, task, 0, 0);
	if (!st || !st->active)
		return 0;
	st->active = 0;
	if ((st->nr & (BG_NR_MAX - 1)) != id)
		return 0;
	return bg_pol_finish(st, ret);
}




/* ---- kernel functions and LSM hooks: what their per-hook copies share ---- */

/* Trampoline programs see the arguments as an array of 8-byte slots,
 * followed by the return value (fexit) or the previous program's (fmod_ret,
 * lsm). Probe reads: a direct ctx load past the function's own parameters
 * fails verification, and one generic program serves every function. */
static __always_inline void bg_pol_ctx_args(void *ctx, struct bg_pol_src *src)
{
	struct task_struct *task = bpf_get_current_task_btf();

	for (int i = 0; i < BG_POL_ARGS; i++) {
		if (i >= targ_nargs)
			break;
		bpf_probe_read_kernel(&src->a[i], 8, ctx + 8 * i);
	}
	src->compat = bg_is_compat(task);
}

static __always_inline long bg_pol_ctx_ret(void *ctx)
{
	long ret = 0;

	bpf_probe_read_kernel(&ret, 8, ctx + 8 * (targ_nargs & 15));
	return ret;
}

/* The return half of a return: true uprobe: the call of its link (cookie);
 * another symbol's return leaves the event pending. */
static __always_inline int bg_pol_uprobe_exit(long ret, __u32 cookie)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_stash *st;

	st = bpf_task_storage_get(&pol_fstash, task, 0, 0);
	if (!st || !st->active || st->ima || st->hook != targ_hook || st->nr != cookie)
		return 0;
	st->active = 0;
	return bg_pol_finish(st, ret);
}

/* Set (usdts), after bg_pol_run left a request in the task's pol_set_req:
 * writes the value and posts the event, which tells whether the write
 * landed. Only bg_pol_usdt_set calls this: lockdown refuses every program
 * that holds bpf_probe_write_user. (Not inlined: its frame beside
 * bg_pol_run's would pass 6.1's 512 bytes for a call chain.) */
static __noinline void bg_pol_set(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_selector *sel;
	struct bg_pol_set_req *req;
	struct bg_pol_area *a;
	struct bg_scratch *scr;
	__u32 hook = targ_hook, key, value, sel_pos;
	bool written;

	req = bpf_task_storage_get(&pol_set_req, task, 0, 0);
	if (!req || !req->sel)
		return;
	value = req->value;
	sel_pos = req->sel - 1;
	req->sel = 0; /* done, whatever happens: never written twice */
	written = bpf_probe_write_user((void *)req->addr, &value, sizeof(value)) == 0;
	bg_pol_count(hook, written ? BG_PST_SETS : BG_PST_SET_FAILED);
	scr = bg_scratch(BG_SCRATCH_POLICY_FUNC);
	key = hook * BG_POL_SELECTORS + (sel_pos & (BG_POL_SELECTORS - 1));
	sel = bpf_map_lookup_elem(&pol_selectors, &key);
	if (!scr || !sel)
		return;
	a = (void *)scr->buf;
	if (written && !a->ev.done) /* (once an event, with bg_pol_act's) */
		bg_pol_count(hook, BG_PST_ACTED);
	a->ev.set = written ? BG_SET_WRITTEN : BG_SET_FAILED;
	bg_pol_post(a, sel, hook, a->ev.hdr.size);
}

/* The return half of a return: true function hook (fexit, kretprobe). */
static __always_inline int bg_pol_func_exit(long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_stash *st;

	st = bpf_task_storage_get(&pol_fstash, task, 0, 0);
	if (!st || !st->active || st->ima || st->hook != targ_hook)
		return 0;
	st->active = 0;
	return bg_pol_finish(st, ret);
}




/* An enforcers function (fmod_ret): what NotifyEnforcer armed this thread
 * for, once: the signal, and the error returned instead of the call. */
static __always_inline int bg_pol_enforce_call(void)
{
	struct bg_pol_enforce_key k = { .thread = bpf_get_current_pid_tgid() };
	__u32 hook = targ_hook, sig;
	struct bg_pol_enforce *e;
	struct bg_pol_hook *h;
	int err;

	h = bpf_map_lookup_elem(&pol_hooks, &hook);
	if (!h || h->kind != BG_HOOK_ENFORCER)
		return 0;
	k.policy = h->policy;
	e = bpf_map_lookup_elem(&pol_enforce, &k);
	if (!e)
		return 0;
	err = e->error;
	sig = e->sig;
	bpf_map_delete_elem(&pol_enforce, &k);
	if (h->mode == BG_MODE_MONITOR) { /* switched since it was armed */
		bg_pol_count(hook, sig ? BG_PST_WOULD_SIGNAL : BG_PST_WOULD_OVERRIDE);
		return 0;
	}
	if (sig && bpf_send_signal(sig) == 0)
		bg_pol_count(hook, BG_PST_SIGNALS);
	if (err)
		bg_pol_count(hook, BG_PST_OVERRIDES);
	return err;
}

/* Kernels from 6.12 check that an LSM program returns 0 or an errno. */
static __always_inline int bg_lsm_ret(int err)
{
	return err < -MAX_ERRNO ? -EPERM : err > 0 ? 0 : err;
}


/* kprobes and uprobes: the first parameters, from the registers */
static __always_inline void bg_pol_regs_args(struct pt_regs *ctx, struct bg_pol_src *src)
{
	src->a[0] = PT_REGS_PARM1(ctx);
	src->a[1] = PT_REGS_PARM2(ctx);
	src->a[2] = PT_REGS_PARM3(ctx);
	src->a[3] = PT_REGS_PARM4(ctx);
	src->a[4] = PT_REGS_PARM5(ctx);
}



/* ---- imaHash: the sleepable half of an LSM hook ---- */

/* Posts the event bg_pol_lsm left in the task's stash, with the IMA hash of
 * `file`, and returns its Override. The trampoline runs LSM programs in one
 * order or the other, and a non-zero return ends the chain, so user space
 * attaches two copies, one each side of bg_pol_lsm: the one that runs first
 * finds no event for this call (`obj` is the call's first argument) and, if
 * one for another call is there, posts it without a hash rather than lose it. */
static __always_inline int bg_pol_ima(struct file *file, __u64 obj)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_selector *sel;
	struct bg_pol_stash *st;
	struct bg_pol_area *a;
	__u64 off, size;
	bool ours;
	__u32 key;
	long algo;
	int err;

	st = bpf_task_storage_get(&pol_fstash, task, 0, 0);
	if (!st || st->active != 1 || !st->ima || st->hook != targ_hook)
		return 0;
	/* not the age: a sleepable program may be scheduled out before it runs,
	 * and a late hash must not cost the Override (fail closed) */
	ours = st->obj == obj;
	err = ours ? st->err : 0;
	size = st->size;
	a = &st->area;
	off = size - BG_POL_FIXED;
	if (!ours) {
		a->ev.ima_err = -ESTALE;
	} else if (off + BG_IMA_DIGEST > BG_DATA_LIMIT) {
		a->ev.ima_err = -E2BIG;
	} else {
		bg_clamp(off, BG_DATA_LIMIT - BG_IMA_DIGEST);
		st->active = BG_IMA_HASHING;
		algo = bpf_ima_file_hash(file, a->ev.data + off, BG_IMA_DIGEST);
		if (algo >= 0) {
			a->ev.ima_algo = algo;
			a->ev.ima_off = off;
			a->ev.ima_len = BG_IMA_DIGEST;
			size += BG_IMA_DIGEST;
		} else {
			a->ev.ima_err = algo;
		}
	}
	st->active = 0;
	key = targ_hook * BG_POL_SELECTORS + (a->ev.selector & (BG_POL_SELECTORS - 1));
	sel = bpf_map_lookup_elem(&pol_selectors, &key);
	if (sel)
		bg_pol_post(a, sel, targ_hook, size);
	return bg_lsm_ret(err);
}






/* ---- executables for matchBinaries ---- */

/* Adds the followChildren filters the new executable passes to the bits the
 * process inherited. */
struct bg_pol_follow_ctx {
	struct bg_pol_exe *exe;
	__u64 bits;
};

/* bpf_loop: an unrolled loop whose state differs each step (the bits)
 * overwhelms the verifier. */
static long bg_pol_follow_one(__u32 i, struct bg_pol_follow_ctx *c)
{
	struct bg_pol_follow *f = bpf_map_lookup_elem(&pol_follow, &i);

	if (f && f->op && bg_pol_exe_in(c->exe, f->op, f->set, BG_SCRATCH_EXEC))
		c->bits |= 1ULL << (i & (BG_POL_FOLLOW - 1));
	return 0;
}

static __always_inline void bg_pol_follow_exec(struct bg_pol_exe *exe, __u32 tgid)
{
	__u64 *old = bpf_map_lookup_elem(&pol_follow_bits, &tgid);
	struct bg_pol_follow_ctx c = { .exe = exe, .bits = old ? *old : 0 };

	bpf_loop(BG_POL_FOLLOW, bg_pol_follow_one, &c, 0);
	if (c.bits != (old ? *old : 0))
		bpf_map_update_elem(&pol_follow_bits, &tgid, &c.bits, BPF_ANY);
}

/* The executable of a process that just exec'd, for matchBinaries. */
static __always_inline void bg_pol_on_exec(struct task_struct *task)
{
	struct bg_file_req req = { .task = (__u64)task };
	struct bg_scratch *scr = bg_scratch(BG_SCRATCH_EXEC);
	struct bg_pol_exe *exe;
	struct bg_pol_area *a;
	__u32 tgid = task->tgid, len, n;
	__u64 head;

	if (!scr)
		return;
	a = (void *)scr->buf;
	req.file = (__u64)BPF_CORE_READ(task, mm, exe_file);
	n = bg_path_forward((struct bg_area *)a->ev.data, &req, &a->work);
	if (n < 2)
		return;
	len = n - 1;
	/* any initial value will do: every field read later is written below */
	bpf_map_update_elem(&pol_exe, &tgid, scr->buf + sizeof(scr->buf) - sizeof(*exe), BPF_ANY);
	exe = bpf_map_lookup_elem(&pol_exe, &tgid);
	if (!exe)
		return;
	exe->len = len;
	exe->hash = bg_pol_hash(a, 0, len);
	head = len;
	bg_clamp(head, BG_POL_PREFIX_MAX);
	bpf_probe_read_kernel(exe->head, head, a->ev.data);
	for (int i = 0; i < BG_POL_PREFIX_MAX; i++) {
		if (i >= len)
			break;
		exe->tail[i] = a->ev.data[(len - 1 - i) & BG_DATA_MASK];
	}
	bg_pol_exe_state(tgid);
	bg_pol_follow_exec(exe, tgid);
}

/* A new process inherits its parent's executable and followChildren marks. */
static __always_inline void bg_pol_on_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, tgid = child->tgid;
	struct bg_pol_exe *exe;
	__u64 *bits;

	if (child->pid != tgid)
		return; /* a thread: same process */
	exe = bpf_map_lookup_elem(&pol_exe, &ptgid);
	if (exe)
		bpf_map_update_elem(&pol_exe, &tgid, exe, BPF_ANY);
	bits = bpf_map_lookup_elem(&pol_follow_bits, &ptgid);
	if (bits)
		bpf_map_update_elem(&pol_follow_bits, &tgid, bits, BPF_ANY);
	else /* a reused pid must not inherit a dead process's marks */
		bpf_map_delete_elem(&pol_follow_bits, &tgid);
}

static __always_inline void bg_pol_on_exit(struct task_struct *task)
{
	__u32 tgid = task->tgid;

	if (BPF_CORE_READ(task, signal, live.counter) == 0) {
		bpf_map_delete_elem(&pol_exe, &tgid);
		bpf_map_delete_elem(&pol_follow_bits, &tgid);
	}
}

#endif /* BPFGUARD_LIB_POLICY_BPF_H */
