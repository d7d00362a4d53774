/* SPDX-License-Identifier: GPL-2.0 */
/* The selector engine: the one in-kernel filter of sensor.bpf.c. Compiled
 * selectors (struct bg_pol_selector) and the sets they name (exact strings
 * and integers in hash maps, prefixes and suffixes in LPM tries, addresses,
 * executables) live in maps; the functions below decide them. Two parts use
 * it:
 *  - the TracingPolicy engine (policy.bpf.h): a hook's selectors, on the
 *    arguments it read (matchArgs, matchReturnArgs, matchBinaries, ...);
 *  - the syscall sensor (syscalls.bpf.h): the one selector user space
 *    compiles for a syscall from the Falco rules that want it (the rules
 *    pushdown), on the raw arguments, the result and the returned file.
 * User space gives both its selectors and sets from one pool of set ids and
 * one table (pol_selectors: a hook's at hook * BG_POL_SELECTORS + i, a
 * syscall's at BG_SYSCALL_SELECTORS + its index). */
#ifndef BPFGUARD_LIB_SELECTORS_BPF_H
#define BPFGUARD_LIB_SELECTORS_BPF_H

#include "strmatch.bpf.h"

/* Selectors: the policy hooks', then one per syscall index for the sensor. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BG_SYSCALL_SELECTORS + 2 * BG_NR_MAX);
	__type(key, __u32);
	__type(value, struct bg_pol_selector);
} pol_selectors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BG_POL_SETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bg_pol_int_key);
	__type(value, __u8);
} pol_ints SEC(".maps");

/* CelExpr programs, by the set id the filter holds */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BG_POL_CEL_PROGS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct bg_pol_cel);
} pol_cel SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BG_POL_SETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bg_pol_str_key);
	__type(value, __u8);
} pol_strs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, BG_POL_PREFIX_SETS);
	__type(key, __u32);
	__array(values, struct bg_pol_trie);
} pol_prefix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, BG_POL_PREFIX_SETS);
	__type(key, __u32);
	__array(values, struct bg_pol_trie);
} pol_postfix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BG_POL_SETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bg_pol_addr_key);
	__type(value, __u8);
} pol_addrs SEC(".maps");

/* tgid -> executable, for matchBinaries; seeded from /proc for older processes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct bg_pol_exe);
} pol_exe SEC(".maps");

/* followChildren: the filters, and per tgid a bit for each that the process
 * or an ancestor passed (inherited at fork, so reparenting loses nothing). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BG_POL_FOLLOW);
	__type(key, __u32);
	__type(value, struct bg_pol_follow);
} pol_follow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u64);
} pol_follow_bits SEC(".maps");


/* LPM keys, per scratch role: kernels before 6.3 take a map key only from
 * the stack or a map value, not from memory passed to a global function. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BG_SCRATCH_ROLES);
	__type(key, __u32);
	__type(value, struct bg_pol_lpm_key);
} pol_lpm_keys SEC(".maps");

/* An event and room for its payload plus one maximal read at the last offset,
 * then the work space. ev.data[] runs on into room[]: one buffer, addressed
 * through ev.data. */
#pragma clang diagnostic ignored "-Wgnu-variable-sized-type-not-at-end"
struct bg_pol_area {
	struct bg_policy_event ev;
	__u8 room[BG_DATA_LIMIT + BG_STR_MAX];
	/* the dentry names of a path being written forward: part of the area, so
	 * that programs preempting each other on a CPU never share it */
	struct bg_pol_work work;
	__s64 cel[BG_POL_CEL_STACK]; /* a CelExpr program's values (not on the stack: 6.1
				      * counts 512 bytes for the deepest call chain) */
};
_Static_assert(sizeof(struct bg_pol_area) <= BG_SCRATCH_SIZE, "scratch too small");

/* ---- strings ---- */

/* Seeded hash of len bytes at off in the event's data (strmatch.bpf.h). */
static __always_inline __u64 bg_pol_hash(struct bg_pol_area *a, __u32 off, __u32 len)
{
	return bg_str_hash((struct bg_area *)a->ev.data, off, len);
}

/* The string's length without its terminating NUL. */
static __always_inline __u32 bg_pol_strlen(struct bg_pol_area *a, struct bg_pol_value *v)
{
	__u32 len = v->data.len;

	if (len && a->ev.data[(v->data.off + len - 1) & BG_DATA_MASK] == 0)
		len--;
	return len;
}

/* Is the string in set `set` as exact value, prefix or postfix? */
__noinline int bg_pol_str_in(struct bg_pol_area *a, __u32 off, __u32 len, __u32 set, __u32 how)
{
	struct bg_pol_str_key sk = {};
	struct bg_pol_lpm_key *key;
	__u32 role;
	__u64 n = len;

	if (!a)
		return 0;
	if (how == BG_OP_STR_EQ) {
		sk.set = set;
		sk.len = len;
		sk.hash = bg_pol_hash(a, off, len);
		return bpf_map_lookup_elem(&pol_strs, &sk) != NULL;
	}
	role = a->work.role;
	key = bpf_map_lookup_elem(&pol_lpm_keys, &role);
	if (!key)
		return 0;
	bg_clamp(n, BG_POL_PREFIX_MAX);
	if (how == BG_OP_PREFIX) {
		bpf_probe_read_kernel(key->data, n, &a->ev.data[off & BG_DATA_MASK]);
		return bg_pol_lpm(&pol_prefix, key, set, n);
	}
	for (int i = 0; i < BG_POL_PREFIX_MAX; i++) {
		if (i >= n)
			break;
		key->data[i] = a->ev.data[(off + len - 1 - i) & BG_DATA_MASK];
	}
	return bg_pol_lpm(&pol_postfix, key, set, n);
}

/* ---- selectors ---- */

static __always_inline bool bg_pol_in_vals(struct bg_pol_filter *f, __u64 x)
{
	for (int j = 0; j < BG_POL_VALUES; j++) {
		if (j >= f->nvals)
			break;
		if (x == f->vals[j])
			return true;
	}
	return false;
}

/* InRange: x in one of the inline [low, high] pairs. */
static __always_inline bool bg_pol_in_ranges(struct bg_pol_filter *f, __u64 x, bool is_signed)
{
	for (int j = 0; j + 1 < BG_POL_VALUES; j += 2) {
		if (j >= f->nvals)
			break;
		if (is_signed ? (__s64)f->vals[j] <= (__s64)x && (__s64)x <= (__s64)f->vals[j + 1]
			      : f->vals[j] <= x && x <= f->vals[j + 1])
			return true;
	}
	return false;
}

static __always_inline bool bg_pol_addr_in(__u32 set, struct bg_sock *s, bool remote)
{
	struct bg_pol_addr_key k = { .prefixlen = 32 + 128, .set = set };
	__u8 *addr = remote ? s->raddr : s->laddr;

	if (s->family == BG_AF_INET) {
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		__builtin_memcpy(&k.addr[12], addr, 4);
	} else if (s->family == BG_AF_INET6) {
		__builtin_memcpy(k.addr, addr, 16);
	} else {
		return false;
	}
	return bpf_map_lookup_elem(&pol_addrs, &k) != NULL;
}

/* The address family of the socket open as fd `fd`; 0 when it is not one. */
static __always_inline __u32 bg_fd_family(long fd)
{
	struct file *f = bg_fd_file(bpf_get_current_task_btf(), fd);
	struct socket *sock;
	struct sock *sk;

	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & BG_S_IFMT) != BG_S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(sock, sk);
	return sk ? BPF_CORE_READ(sk, __sk_common.skc_family) : 0;
}

/* One matchArgs / matchReturnArgs filter. */
/* CelExpr: one program step per bpf_loop call, so the verifier checks the
 * step once, whatever the program's length. */
struct bg_pol_cel_run {
	struct bg_pol_area *a; /* the arguments, and the values (a->cel) */
	__u32 set;
	__u32 sp;   /* values on a->cel */
	__u32 bad;  /* an ill-formed program: no match */
	__u32 pad;
};

static long bg_pol_cel_step(__u32 i, struct bg_pol_cel_run *r)
{
	struct bg_pol_cel *prog = bpf_map_lookup_elem(&pol_cel, &r->set);
	struct bg_pol_area *a = r->a;
	struct bg_pol_cel_op *op;
	__u32 sp = r->sp, m = BG_POL_CEL_STACK - 1, at = i, k;
	__s64 x, y, z;
	__u8 code;

	if (!prog || !a || i >= prog->n || i >= BG_POL_CEL_OPS) {
		r->bad |= !prog || !a;
		return 1;
	}
	bg_clamp(at, BG_POL_CEL_OPS - 1); /* (the compiler drops the test's bound) */
	op = &prog->ops[at];
	code = op->code;
	if (code == BG_CEL_ARG || code == BG_CEL_CONST) {
		if (sp >= BG_POL_CEL_STACK) {
			r->bad = 1;
			return 1;
		}
		k = op->arg;
		bg_clamp(k, BG_POL_ARGS - 1);
		a->cel[sp & m] = code == BG_CEL_CONST ? op->imm : (__s64)a->ev.args[k].value;
		r->sp = sp + 1;
		return 0;
	}
	if (sp < 1) {
		r->bad = 1;
		return 1;
	}
	x = a->cel[(sp - 1) & m];
	switch (code) { /* one operand */
	case BG_CEL_NEG:
		a->cel[(sp - 1) & m] = -x;
		return 0;
	case BG_CEL_BNOT:
		a->cel[(sp - 1) & m] = ~x;
		return 0;
	case BG_CEL_I32:
		a->cel[(sp - 1) & m] = (__s32)x;
		return 0;
	case BG_CEL_U32:
		a->cel[(sp - 1) & m] = (__u32)x;
		return 0;
	case BG_CEL_NOT:
		a->cel[(sp - 1) & m] = !x;
		return 0;
	}
	if (sp < 2) {
		r->bad = 1;
		return 1;
	}
	y = x;
	x = a->cel[(sp - 2) & m];
	switch (code) { /* two: x below y */
	case BG_CEL_ADD: z = x + y; break;
	case BG_CEL_SUB: z = x - y; break;
	case BG_CEL_BAND: z = x & y; break;
	case BG_CEL_BOR: z = x | y; break;
	case BG_CEL_BXOR: z = x ^ y; break;
	case BG_CEL_EQ: z = x == y; break;
	case BG_CEL_NE: z = x != y; break;
	case BG_CEL_LT: z = x < y; break;
	case BG_CEL_LE: z = x <= y; break;
	case BG_CEL_GT: z = x > y; break;
	case BG_CEL_GE: z = x >= y; break;
	case BG_CEL_LTU: z = (__u64)x < (__u64)y; break;
	case BG_CEL_LEU: z = (__u64)x <= (__u64)y; break;
	case BG_CEL_GTU: z = (__u64)x > (__u64)y; break;
	case BG_CEL_GEU: z = (__u64)x >= (__u64)y; break;
	case BG_CEL_AND: z = x && y; break;
	case BG_CEL_OR: z = x || y; break;
	default:
		r->bad = 1;
		return 1;
	}
	a->cel[(sp - 2) & m] = z;
	r->sp = sp - 1;
	return 0;
}

/* A CelExpr filter: its program (pol_cel under `set`) left one true value. */
__noinline int bg_pol_cel(struct bg_pol_area *a, __u32 set)
{
	struct bg_pol_cel_run r = { .a = a, .set = set };

	if (!a)
		return 0;
	bpf_loop(BG_POL_CEL_OPS, bg_pol_cel_step, &r, 0);
	return !r.bad && r.sp == 1 && a->cel[0] != 0;
}

__noinline int bg_pol_filter(struct bg_pol_area *a, struct bg_pol_filter *f)
{
	struct bg_pol_int_key ik = {};
	struct bg_pol_value *v = NULL;
	struct bg_sock *s;
	__u64 x;
	__u32 k, len;
	__u8 op;

	if (!a || !f)
		return 0;
	k = f->arg;
	op = f->op;
	if (k == BG_POL_RET) {
		x = a->ev.ret;
		v = &a->ev.retv; /* a string or socket returnArg */
	} else {
		if (k >= BG_POL_ARGS)
			return 0;
		v = &a->ev.args[k];
		x = v->value;
	}
	switch (op) {
	case BG_OP_CEL:
		return bg_pol_cel(a, f->set);
	case BG_OP_IN_RANGE:
	case BG_OP_NOT_IN_RANGE:
	case BG_OP_IN_SRANGE:
	case BG_OP_NOT_IN_SRANGE:
		return bg_pol_in_ranges(f, x, op >= BG_OP_IN_SRANGE) ==
		       (op == BG_OP_IN_RANGE || op == BG_OP_IN_SRANGE);
	case BG_OP_CAPS_GAINED: {
		__u32 other = f->vals[0];

		if (other >= BG_POL_ARGS)
			return 0;
		bg_clamp(other, BG_POL_ARGS - 1);
		/* x is the old set, `other` the new (Tetragon's order) */
		return !!(~x & a->ev.args[other].value & f->vals[1]);
	}
	case BG_OP_EQ:
		return bg_pol_in_vals(f, x);
	case BG_OP_NEQ:
		return !bg_pol_in_vals(f, x);
	case BG_OP_GT:
		return (__s64)x > (__s64)f->vals[0];
	case BG_OP_LT:
		return (__s64)x < (__s64)f->vals[0];
	case BG_OP_MASK:
		for (int j = 0; j < BG_POL_VALUES; j++) {
			if (j >= f->nvals)
				break;
			if (x & f->vals[j])
				return 1;
		}
		return 0;
	case BG_OP_IN_SET:
	case BG_OP_NOT_IN_SET:
		ik.set = f->set;
		ik.value = x;
		return (bpf_map_lookup_elem(&pol_ints, &ik) != NULL) == (op == BG_OP_IN_SET);
	case BG_OP_ACCMODE:
		return (f->vals[0] >> (x & 3)) & 1;
	case BG_OP_FLAGS:
		return !(x & f->vals[0]) && (x & f->vals[1]) == f->vals[1];
	case BG_OP_SMALL_IN:
		return x < 64 && ((f->vals[0] >> (x & 63)) & 1);
	case BG_OP_FD_FAMILY: {
		int fd = x; /* an fd is a C int: the low half of its register */

		return fd < 0 || bg_pol_in_vals(f, bg_fd_family(fd));
	}
	}
	if (!v)
		return 0;
	switch (op) {
	case BG_OP_FILE_TYPE:
	case BG_OP_NOT_FILE_TYPE:
		/* an unreadable file has no type: only NotFileType holds */
		if (!v->mode)
			return op == BG_OP_NOT_FILE_TYPE;
		return bg_pol_in_vals(f, v->mode) == (op == BG_OP_FILE_TYPE);
	case BG_OP_STR_EQ:
	case BG_OP_STR_NEQ:
	case BG_OP_PREFIX:
	case BG_OP_NOT_PREFIX:
	case BG_OP_POSTFIX:
	case BG_OP_NOT_POSTFIX: {
		bool in;

		/* unreadable, or cut (its end unknown) for exact and postfix matching */
		if (!(v->flags & BG_PV_DATA) ||
		    ((v->flags & BG_PV_TRUNCATED) && op != BG_OP_PREFIX && op != BG_OP_NOT_PREFIX))
			return op == BG_OP_STR_NEQ || op == BG_OP_NOT_PREFIX ||
			       op == BG_OP_NOT_POSTFIX;
		len = bg_pol_strlen(a, v);
		in = bg_pol_str_in(a, v->data.off, len, f->set,
				   op <= BG_OP_NOT_PREFIX && op >= BG_OP_PREFIX ? BG_OP_PREFIX :
				   op >= BG_OP_STR_EQ ? BG_OP_STR_EQ : BG_OP_POSTFIX);
		return op == BG_OP_STR_EQ || op == BG_OP_PREFIX || op == BG_OP_POSTFIX ? in : !in;
	}
	}
	if (!(v->flags & BG_PV_SOCK))
		return 0;
	s = &v->sock;
	switch (op) {
	case BG_OP_SADDR:
		return bg_pol_addr_in(f->set, s, false);
	case BG_OP_NOT_SADDR:
		return !bg_pol_addr_in(f->set, s, false);
	case BG_OP_DADDR:
		return bg_pol_addr_in(f->set, s, true);
	case BG_OP_NOT_DADDR:
		return !bg_pol_addr_in(f->set, s, true);
	case BG_OP_SPORT:
		return bg_pol_in_vals(f, s->lport);
	case BG_OP_NOT_SPORT:
		return !bg_pol_in_vals(f, s->lport);
	case BG_OP_DPORT:
		return bg_pol_in_vals(f, s->rport);
	case BG_OP_SPORT_IN_SET:
	case BG_OP_NOT_SPORT_IN_SET:
	case BG_OP_DPORT_IN_SET:
	case BG_OP_NOT_DPORT_IN_SET:
		ik.set = f->set;
		ik.value = op >= BG_OP_DPORT_IN_SET ? s->rport : s->lport;
		return (bpf_map_lookup_elem(&pol_ints, &ik) != NULL) ==
		       (op == BG_OP_SPORT_IN_SET || op == BG_OP_DPORT_IN_SET);
	case BG_OP_NOT_DPORT:
		return !bg_pol_in_vals(f, s->rport);
	case BG_OP_SPORT_PRIV:
		return s->lport < 1024;
	case BG_OP_NOT_SPORT_PRIV:
		return s->lport >= 1024;
	case BG_OP_DPORT_PRIV:
		return s->rport < 1024;
	case BG_OP_NOT_DPORT_PRIV:
		return s->rport >= 1024;
	case BG_OP_PROTOCOL:
		return bg_pol_in_vals(f, s->protocol);
	case BG_OP_FAMILY:
		return bg_pol_in_vals(f, s->family);
	case BG_OP_STATE:
		return bg_pol_in_vals(f, s->state);
	}
	return 0;
}

/* The pid's number and namespace at its own (innermost) level. */
static __always_inline struct upid bg_pol_upid(struct pid *pid)
{
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid up = {};

	/* numbers[] is a flexible array: read the element at `level` by address */
	bpf_probe_read_kernel(&up, sizeof(up), &pid->numbers[level & 31]);
	return up;
}

/* The process's pid in its own pid namespace; 0 in the initial one (as
 * Tetragon's nspid: host processes have no namespace pid). */
static __always_inline __u32 bg_pol_nspid(struct task_struct *task)
{
	struct pid *pid = BPF_CORE_READ(task, group_leader, thread_pid);

	if (!BPF_CORE_READ(pid, level))
		return 0;
	return bg_pol_upid(pid).nr;
}

static __always_inline bool bg_pol_pid_in(struct bg_pol_selector *s, __u32 pid)
{
	for (int j = 0; j < BG_POL_VALUES; j++) {
		if (j >= s->npids)
			break;
		if (pid == s->pids[j])
			return true;
	}
	return false;
}

/* matchPIDs, as Tetragon: followForks also accepts the parent's pid, and
 * walks up the ancestry BG_POL_PID_WALK steps. With isNamespacePID only
 * namespace pids count: a host process fails the filter, and the walk stops
 * where the ancestry leaves the namespace. */
static __always_inline bool bg_pol_pids(struct bg_pol_selector *s, struct task_struct *task)
{
	bool ns = s->pid_flags & BG_PID_NS, found = false;
	struct task_struct *t = task;

	for (int i = 0; i < BG_POL_PID_WALK; i++) {
		__u32 pid = ns ? bg_pol_nspid(t) : BPF_CORE_READ(t, tgid);
		struct task_struct *up = BPF_CORE_READ(t, real_parent);

		if (ns && !pid) {
			if (i == 0)
				return false;
			break;
		}
		if (bg_pol_pid_in(s, pid) ||
		    (!ns && (s->pid_flags & BG_PID_FOLLOW) && bg_pol_pid_in(s, BPF_CORE_READ(up, tgid)))) {
			found = true;
			break;
		}
		if (!(s->pid_flags & BG_PID_FOLLOW) || !up || up == t)
			break;
		t = up;
	}
	return (s->pid_flags & BG_PID_NOT_IN) ? !found : found;
}

/* Whether executable `exe` is in `set` under `op`, read positively (NotIn as In). */
static __always_inline bool bg_pol_exe_in(struct bg_pol_exe *exe, __u8 op, __u32 set, __u32 role)
{
	struct bg_pol_str_key sk = {};
	struct bg_pol_lpm_key *key;
	bool prefix;
	__u32 n;

	if (op == BG_BIN_IN || op == BG_BIN_NOT_IN) {
		sk.set = set;
		sk.len = exe->len;
		sk.hash = exe->hash;
		return bpf_map_lookup_elem(&pol_strs, &sk) != NULL;
	}
	n = exe->len < BG_POL_PREFIX_MAX ? exe->len : BG_POL_PREFIX_MAX;
	prefix = op == BG_BIN_PREFIX || op == BG_BIN_NOT_PREFIX;
	key = bpf_map_lookup_elem(&pol_lpm_keys, &role);
	if (!key)
		return false;
	__builtin_memcpy(key->data, prefix ? exe->head : exe->tail, BG_POL_PREFIX_MAX);
	return bg_pol_lpm(prefix ? (void *)&pol_prefix : (void *)&pol_postfix, key, set, n);
}

/* matchBinaries / matchParentBinaries on the executable recorded for tgid;
 * with followChildren (`follow`: 1 + slot), on the process's ancestry. */
static __always_inline bool bg_pol_binary(struct bg_pol_area *a, __u8 op, __u32 set,
					  __u8 follow, __u32 tgid)
{
	bool in = false;

	if (follow) {
		__u64 *bits = bpf_map_lookup_elem(&pol_follow_bits, &tgid);

		in = bits && (*bits >> ((follow - 1) & (BG_POL_FOLLOW - 1)) & 1);
	} else {
		struct bg_pol_exe *exe = bpf_map_lookup_elem(&pol_exe, &tgid);

		in = exe && bg_pol_exe_in(exe, op, set, a->work.role);
	}
	if (op == BG_BIN_NOT_IN || op == BG_BIN_NOT_PREFIX || op == BG_BIN_NOT_POSTFIX)
		return !in;
	return in;
}

static __always_inline __u32 bg_pol_ns_inum(struct task_struct *task, __u8 kind)
{
	struct nsproxy *nsp = BPF_CORE_READ(task, nsproxy);

	switch (kind) {
	case BG_NS_UTS:
		return BPF_CORE_READ(nsp, uts_ns, ns.inum);
	case BG_NS_IPC:
		return BPF_CORE_READ(nsp, ipc_ns, ns.inum);
	case BG_NS_MNT:
		return BPF_CORE_READ(nsp, mnt_ns, ns.inum);
	case BG_NS_PID: {
		struct upid up = bg_pol_upid(BPF_CORE_READ(task, thread_pid));

		return BPF_CORE_READ(up.ns, ns.inum);
	}
	case BG_NS_PID_FOR_CHILDREN:
		return BPF_CORE_READ(nsp, pid_ns_for_children, ns.inum);
	case BG_NS_NET:
		return BPF_CORE_READ(nsp, net_ns, ns.inum);
	case BG_NS_TIME:
		if (bpf_core_field_exists(nsp->time_ns))
			return BPF_CORE_READ(nsp, time_ns, ns.inum);
		return 0;
	case BG_NS_TIME_FOR_CHILDREN:
		if (bpf_core_field_exists(nsp->time_ns_for_children))
			return BPF_CORE_READ(nsp, time_ns_for_children, ns.inum);
		return 0;
	case BG_NS_CGROUP:
		return BPF_CORE_READ(nsp, cgroup_ns, ns.inum);
	case BG_NS_USER:
		return BPF_CORE_READ(task, cred, user_ns, ns.inum);
	}
	return 0;
}

static __always_inline bool bg_pol_namespaces(struct bg_pol_selector *s, struct task_struct *task)
{
	for (int i = 0; i < BG_POL_NS_FILTERS; i++) {
		struct bg_pol_ns_filter *f = &s->ns[i];
		__u32 inum;
		bool in = false;

		if (i >= s->nns)
			break;
		inum = bg_pol_ns_inum(task, f->kind);
		for (int j = 0; j < BG_POL_NS_VALUES; j++) {
			if (j < f->nvals && f->vals[j] == inum)
				in = true;
		}
		if (in == (bool)f->not_in)
			return false;
	}
	return true;
}

static __always_inline __u64 bg_pol_task_caps(struct task_struct *task, __u8 type)
{
	const struct cred *cred = BPF_CORE_READ(task, cred);
	__u64 caps = 0;

	if (type == BG_CAP_PERMITTED)
		BPF_CORE_READ_INTO(&caps, cred, cap_permitted);
	else if (type == BG_CAP_INHERITABLE)
		BPF_CORE_READ_INTO(&caps, cred, cap_inheritable);
	else
		BPF_CORE_READ_INTO(&caps, cred, cap_effective);
	return caps;
}

static __always_inline bool bg_pol_caps(struct bg_pol_selector *s, struct task_struct *task)
{
	return ((bg_pol_task_caps(task, s->cap_type) & s->cap_mask) != 0) == (s->cap_op == 1);
}

/* matchNamespaceChanges, as Tetragon's: In, a namespace of the mask differs
 * from the one the process had at exec; NotIn, one outside the mask does.
 * Kinds recorded as 0 (unknown at exec) are skipped. */
static __always_inline bool bg_pol_ns_changed(struct bg_pol_selector *s, struct task_struct *task,
					      struct bg_pol_exe *exe)
{
	/* unrolled: each kind's read is then a constant one, and 6.1's CFG
	 * check refuses the loop clang makes of it otherwise (a fall-through
	 * back edge) */
#pragma unroll
	for (__u32 k = 1; k < BG_NS_KINDS; k++) {
		bool listed = s->nsc_mask & (1 << k);

		if (listed != (s->nsc_op == 1) || !exe->ns[k])
			continue;
		if (exe->ns[k] != bg_pol_ns_inum(task, k))
			return true;
	}
	return false;
}

/* matchCapabilityChanges, as Tetragon's: In, a capability of the mask in
 * the set differs from exec's; NotIn, only others do. */
static __always_inline bool bg_pol_caps_changed(struct bg_pol_selector *s,
						struct task_struct *task, struct bg_pol_exe *exe)
{
	__u32 type = s->capc_type;
	__u64 was, now;

	bg_clamp(type, 2);
	was = exe->caps[type];
	now = bg_pol_task_caps(task, type);
	if ((was & s->capc_mask) != (now & s->capc_mask))
		return s->capc_op == 1;
	return was != now && s->capc_op == 2;
}

/* The namespaces and capabilities the current process's later events are
 * compared with (at its exec; again after a change was reported). A global
 * function, verified once: inlined, its reads multiply the states of its
 * callers past 6.1's budget. */
__noinline int bg_pol_exe_state(__u32 tgid)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_exe *exe = bpf_map_lookup_elem(&pol_exe, &tgid);

	if (!exe)
		return 0;
#pragma unroll
	for (__u32 k = 1; k < BG_NS_KINDS; k++)
		exe->ns[k] = bg_pol_ns_inum(task, k);
#pragma unroll
	for (__u32 t = 0; t < 3; t++)
		exe->caps[t] = bg_pol_task_caps(task, t);
	return 1;
}

/* matchNamespaceChanges and matchCapabilityChanges of selector s on the
 * current task (global, for the same reason). */
__noinline int bg_pol_changed(struct bg_pol_selector *s)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid;
	struct bg_pol_exe *exe;

	if (!s)
		return 0;
	exe = bpf_map_lookup_elem(&pol_exe, &tgid);
	/* a process not seen at exec has nothing to compare with (as Tetragon) */
	if (!exe)
		return 0;
	if (s->nsc_op && !bg_pol_ns_changed(s, task, exe))
		return 0;
	if (s->capc_op && !bg_pol_caps_changed(s, task, exe))
		return 0;
	return 1;
}

/* The process's exec-time name (proc.name, the header's comm) is in exact
 * set `set`: hashed where the event's data goes, which no argument has been
 * read into yet (the thread's comm, which the fallback needs, just after). */
static __always_inline bool bg_pol_comm_in(struct bg_pol_area *a, struct task_struct *task,
					   __u32 set)
{
	struct bg_pol_str_key sk = { .set = set };
	__u32 len = 0;

	bpf_get_current_comm(a->ev.data + BG_COMM_LEN, BG_COMM_LEN);
	bg_exec_comm(task, (struct bg_comm *)a->ev.data, (struct bg_comm *)(a->ev.data + BG_COMM_LEN));
	for (int i = 0; i < BG_COMM_LEN; i++) {
		if (!a->ev.data[i])
			break;
		len++;
	}
	sk.len = len;
	sk.hash = bg_pol_hash(a, 0, len);
	return bpf_map_lookup_elem(&pol_strs, &sk) != NULL;
}

/* The task's effective uid (what permission checks use) is in integer set `set`. */
static __always_inline bool bg_pol_euid_in(struct task_struct *task, __u32 set)
{
	struct bg_pol_int_key ik = { .set = set };

	ik.value = BPF_CORE_READ(task, cred, euid.val);
	return bpf_map_lookup_elem(&pol_ints, &ik) != NULL;
}

/* The selector's process filters: the task's name and effective uid,
 * matchPIDs, matchBinaries, matchParentBinaries, matchNamespaces,
 * matchCapabilities. Checked before
 * any argument is read, so a hook whose selectors all reject the task costs
 * no string or path read. */
__noinline int bg_pol_match_task(struct bg_pol_area *a, struct bg_pol_selector *s)
{
	struct task_struct *task = bpf_get_current_task_btf();

	if (!a || !s)
		return 0;
	if (s->comm_in && !bg_pol_comm_in(a, task, s->comm_set))
		return 0;
	if (s->euid_in && !bg_pol_euid_in(task, s->euid_set))
		return 0;
	if (s->npids && !bg_pol_pids(s, task))
		return 0;
	if (s->bin_op && !bg_pol_binary(a, s->bin_op, s->bin_set, s->bin_follow, task->tgid))
		return 0;
	if (s->pbin_op && !bg_pol_binary(a, s->pbin_op, s->pbin_set, s->pbin_follow,
					 BPF_CORE_READ(task, real_parent, tgid)))
		return 0;
	if (s->nns && !bg_pol_namespaces(s, task))
		return 0;
	/* isNamespaceCapability: capability filters match outside the host's
	 * user namespace only */
	if ((s->cap_op || s->capc_op) && s->cap_userns &&
	    bg_pol_ns_inum(task, BG_NS_USER) == s->cap_userns)
		return 0;
	if (s->cap_op && !bg_pol_caps(s, task))
		return 0;
	if ((s->nsc_op || s->capc_op) && !bg_pol_changed(s))
		return 0;
	return 1;
}

/* The selector's argument filters of one phase (enum bg_pol_phase):
 * matchArgs at the hook, matchReturnArgs at return. Filters of the
 * BG_PHASE_FILE phase are the syscall sensor's own (bg_push_path_keep). */
__noinline int bg_pol_match_args(struct bg_pol_area *a, struct bg_pol_selector *s,
				 __u32 ret_phase)
{
	if (!a || !s)
		return 0;
	for (int i = 0; i < BG_POL_FILTERS; i++) {
		if (i >= s->nfilters)
			break;
		if (s->filters[i].ret != ret_phase)
			continue;
		if (!bg_pol_filter(a, &s->filters[i]))
			return 0;
	}
	return 1;
}


#endif /* BPFGUARD_LIB_SELECTORS_BPF_H */
