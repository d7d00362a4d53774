/* SPDX-License-Identifier: GPL-2.0 */
/* Syscall sensor: the raw_syscalls sys_enter/sys_exit part of sensor.bpf.c,
 * filtered in the kernel.
 *
 * Fast path: an uninteresting syscall costs one bitmap test in global data at
 * entry and one at exit. Interesting ones are checked against the per-arch
 * spec and the scope; their arguments (and user strings, read at entry) are
 * stashed in task local storage, which the kernel frees with the thread, so an
 * entry whose exit never comes cannot leak. At exit the event is completed
 * with the return value and what the kernel actually acted on: fds, dirfds
 * and the cwd resolved from kernel objects, so a path swapped in user memory
 * after entry does not change the reported resolution.
 *
 * Rules pushdown: what no loaded rule can match is dropped in the kernel and
 * counted in push_stats. User space compiles what the rules want of a
 * syscall into one selector of the selector engine (selectors.bpf.h), the
 * one TracingPolicies use: its task filters (comm, euid) and argument
 * filters (open flags) run at entry, its return filters at exit, and last,
 * only for what passed those, the path tests of opens (BG_OP_OPEN_PATH): the
 * returned file's path written forward once and looked up in the engine's
 * hashed exact sets and LPM tries.
 *
 * Overload: while the ring buffer has no room for the largest event, an
 * interesting syscall is counted as a ringbuf_full drop at exit (after the
 * entry and result tests, so only events that would have been sent count;
 * the path tests are skipped when the ring was full at entry, as the
 * strings they read were not) and neither its strings nor its paths are
 * read: a storm user space cannot keep up with costs the storm little more
 * than the fast path. */
#ifndef BPFGUARD_LIB_SYSCALLS_BPF_H
#define BPFGUARD_LIB_SYSCALLS_BPF_H

#include "selectors.bpf.h"
#include "syscall.bpf.h"

#define BG_SOCKADDR_MAX 128
/* Stash payload: one masked offset (< 4096) plus one maximal string. */
#define BG_STASH_MASK (BG_STR_MAX - 1)
#define BG_STASH_DATA (2 * BG_STR_MAX)

/* Set before load by user space. */
const volatile __u32 targ_str_max = BG_STR_MAX;

/* Union of the native and compat interest sets by number: the fast-path test.
 * Written by user space through the mmap'd .bss. */
__u64 interest[BG_NR_MAX / 64];


struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BG_PUSHED_MAX);
	__type(key, __u32);
	__type(value, __u64);
} push_stats SEC(".maps");

static __always_inline void bg_count_pushed(__u32 where)
{
	__u64 *n = bpf_map_lookup_elem(&push_stats, &where);

	if (n)
		*n += 1;
}

/* The arguments as the selector engine reads them (its args[].value), each
 * as the syscall sees it: a C int the low half of its register, sign-extended;
 * a 32-bit unsigned type (uid_t) the low half; a long, in the compat ABI, its
 * 32 bits sign-extended. User space decodes them the same way. */
static __always_inline void bg_push_args(struct bg_pol_area *a, struct bg_syscall_spec *spec,
					 __u64 *args, bool compat)
{
	for (int i = 0; i < BG_POL_ARGS; i++) {
		__u64 x = args[i];
		__u8 kind = spec->arg[i];

		if (kind == BG_ARG_INT || (kind == BG_ARG_LONG && compat))
			x = (__u64)(__s64)(__s32)x;
		else if (kind == BG_ARG_U32)
			x = (__u32)x;
		a->ev.args[i].value = x;
		a->ev.args[i].flags = 0;
	}
}

/* The pushdown at entry: the task filters and the argument filters of the
 * syscall's selector (its open flags), decided by the selector engine on the
 * raw arguments. True when some rule could still want this syscall. */
static __always_inline bool bg_push_keep(struct pt_regs *regs, bool compat,
					 struct bg_syscall_spec *spec, struct bg_pol_selector *s)
{
	struct bg_pol_area *a;
	struct bg_scratch *scr;
	__u64 args[BG_ARGC];

	scr = bg_scratch(BG_SCRATCH_SYSCALL);
	if (!scr)
		return true;
	a = (void *)scr->buf;
	a->work.role = BG_SCRATCH_SYSCALL;
	if (!bg_pol_match_task(a, s))
		return false;
	bg_read_args(regs, compat, args);
	for (int i = 0; i < BG_POL_ARGS; i++) {
		/* openat2: its flags word, read from the struct; unreadable, the
		 * syscall fails with EFAULT and the entry filters are not decided */
		if (spec->arg[i] == BG_ARG_OPEN_HOW &&
		    bpf_probe_read_user(&args[i], sizeof(__u64), (void *)args[i]))
			return true;
	}
	bg_push_args(a, spec, args, compat);
	return bg_pol_match_args(a, s, BG_PHASE_ENTRY);
}

struct bg_stash {
	__u64 enter_ns;
	__u64 args[BG_ARGC];
	__u32 nr;
	__u16 active;
	__u16 flags; /* enum bg_event_flags */
	__u32 data_len;
	__u32 ring_full; /* no room at entry: the exit counts a drop and builds nothing */
	__u32 gen;       /* the spec's enablement at entry (bg_syscall_spec.gen) */
	/* an io_uring request's: its user_data (its completion carries the
	 * same), its submitter's fd table, and its submitter as the event names
	 * it (a completion may run in another thread, or a kworker) */
	__u64 user_data;
	__u64 files;
	struct bg_event_header hdr;
	struct bg_blob arg_data[BG_ARGC];
	__u8 data[BG_STASH_DATA];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct bg_stash);
} stash SEC(".maps");

/* ---- rules pushdown on paths (BG_OP_OPEN_PATH) ---- */

/* Work space of the path tests: the syscall scratch slot, before the event is
 * built in it. The LPM key lives here, in a map value, because kernels before
 * 6.3 take a map key only from the stack or a map value (it is too big for the
 * stack). */
struct bg_push_area {
	struct bg_area path; /* the path, written forward at offset 0 */
	struct bg_pol_work work;
	struct bg_pol_lpm_key key;
};
_Static_assert(sizeof(struct bg_push_area) <= BG_SCRATCH_SIZE, "scratch too small");

/* user space names files of these by their inode ("pipe:[ino]"), not by path */
#define BG_PIPEFS_MAGIC 0x50495045
#define BG_SOCKFS_MAGIC 0x534F434B
#define BG_ANON_INODE_FS_MAGIC 0x09041934

/* The bytes of w equal to c: 0x80 in each, exactly (no borrow crosses bytes,
 * unlike the classic has-zero-byte trick). */
static __always_inline __u64 bg_bytes_eq(__u64 w, __u8 c)
{
	__u64 x = w ^ (0x0101010101010101ULL * c);
	__u64 lo = 0x7f7f7f7f7f7f7f7fULL;

	return ~(((x & lo) + lo) | x | lo);
}

struct bg_dotdot_ctx {
	struct bg_stash *st;
	__u32 off;
	__u32 len;
	__u32 found;
};

/* One step of bg_has_dotdot: eight bytes at 6 * i, advancing six, so that
 * every start position has its three bytes in one word. */
static long bg_dotdot_step(__u32 i, void *ctx)
{
	struct bg_dotdot_ctx *c = ctx;
	__u32 at = i * 6;
	__u64 w = 0, dot, slash;

	if (at + 3 > c->len)
		return 1;
	/* may read past the string, never past what it masks off below */
	bpf_probe_read_kernel(&w, 8, &c->st->data[(c->off + at) & (BG_STASH_DATA - 1)]);
	if (c->len - at < 8)
		w &= (1ULL << ((c->len - at) * 8)) - 1;
	dot = bg_bytes_eq(w, '.');
	slash = bg_bytes_eq(w, '/');
	if (dot & (dot >> 8) & (slash >> 16)) {
		c->found = 1;
		return 1;
	}
	return 0;
}

/* Does the len-byte string at off in the stash contain "../" (the stock
 * directory_traversal macro's test on fd.nameraw)? A bpf_loop: the verifier
 * checks one step, not each of the up to BG_STR_MAX / 6 (a plain loop cost
 * it some 130,000 instructions). */
static __always_inline bool bg_has_dotdot(struct bg_stash *st, __u32 off, __u32 len)
{
	struct bg_dotdot_ctx c = { .st = st, .off = off, .len = len };

	if (len > BG_STR_MAX)
		return true;
	bpf_loop((len + 5) / 6, bg_dotdot_step, &c, 0);
	return c.found;
}

/* Writes the n (<= BG_POL_PREFIX_MAX) bytes before `end` in `a` into
 * key->data, last first: suffix tries hold their strings reversed. Eight bytes
 * per step (a byte swap); bytes past n are junk the LPM lookup ignores. */
__noinline int bg_reverse_tail(struct bg_area *a, __u32 end, __u32 n, struct bg_pol_lpm_key *key)
{
	if (!a || !key)
		return 0;
	for (int i = 0; i < BG_POL_PREFIX_MAX; i += 8) {
		__u64 w = 0;

		if (i >= n)
			break;
		bpf_probe_read_kernel(&w, 8, &a->b[(end - i - 8) & BG_DATA_MASK]);
		*(__u64 *)&key->data[i] = __builtin_bswap64(w);
	}
	return 0;
}

static __always_inline bool bg_push_str_in(struct bg_push_area *a, __u32 off, __u32 len,
					   __u32 set)
{
	struct bg_pol_str_key k = { .set = set, .len = len };

	k.hash = bg_str_hash(&a->path, off, len);
	return bpf_map_lookup_elem(&pol_strs, &k) != NULL;
}

/* The path tests of the pushdown (filter flt, op BG_OP_OPEN_PATH): 1 when one
 * of the tests holds,
 * or when the kernel cannot compute the value exactly as user space will (see
 * enum bg_push_path). Runs at exit, only for events that passed every cheaper
 * test. Cost for an open that passes none: one dentry walk writing the path
 * forward, a hash over it per exact set (name, directory, leaf), one trie
 * lookup per prefix/suffix set (at most 256 key bytes), and for fd.nameraw a
 * scan of the user's string, six bytes per step. A global function: the
 * verifier checks it once, and bg_exit continues from one state whatever it
 * found, instead of being walked again for every way out of it. */
__noinline int bg_push_path_keep(struct bg_stash *st, struct bg_pol_filter *flt, long ret)
{
	/* a global function takes no BTF pointer: the untyped current task */
	struct task_struct *task = (void *)bpf_get_current_task();
	struct bg_file_req req = {};
	struct bg_push_area *a;
	struct bg_scratch *s;
	struct dentry *leafd;
	struct file *f;
	__u32 want, len, leaf, magic;
	__u64 i, n;
	int got;

	if (!st || !flt)
		return 1;
	want = flt->vals[0];
	if (want & BG_PATH_DOTDOT) {
		struct bg_blob *raw;

		i = flt->arg;
		bg_clamp(i, BG_ARGC - 1);
		raw = &st->arg_data[i];
		/* len counts the NUL; unread (0) is unknown, and for "" user space
		 * takes fd.name instead */
		if (raw->len <= 1 || bg_has_dotdot(st, raw->off, raw->len - 1))
			return 1;
	}
	if (!(want & (BG_PATH_NAME | BG_PATH_DIR | BG_PATH_FILE | BG_PATH_PREFIX |
		      BG_PATH_SUFFIX)))
		return 0;
	if (ret < 0)
		return 1; /* no file: user space names it from the string, normalized */
	f = bg_fd_file(task, ret);
	if (!f)
		return 1;
	leafd = BPF_CORE_READ(f, f_path.dentry);
	magic = BPF_CORE_READ(leafd, d_sb, s_magic);
	if (magic == BG_PIPEFS_MAGIC || magic == BG_SOCKFS_MAGIC || magic == BG_ANON_INODE_FS_MAGIC)
		return 1;
	/* d_unlinked(): user space appends " (deleted)" */
	if (!BPF_CORE_READ(leafd, d_hash.pprev) && BPF_CORE_READ(leafd, d_parent) != leafd)
		return 1;
	s = bg_scratch(BG_SCRATCH_SYSCALL);
	if (!s)
		return 1;
	a = (void *)s->buf;
	req.task = (__u64)task;
	req.file = (__u64)f;
	got = bg_path_forward(&a->path, &req, &a->work);
	if (got < 2 || req.pad) /* cut, detached, pseudo or not read to the root */
		return 1;
	len = got - 1;
	/* bg_exit writes the returned file's components right after the entry
	 * strings; where they might not all fit, user space gets a cut name */
	if (len >= BG_STR_MAX || st->data_len + len + BG_NAME_MAX > BG_DATA_LIMIT)
		return 1;
	if ((want & BG_PATH_NAME) && bg_push_str_in(a, 0, len, flt->set))
		return 1;
	leaf = a->work.leaf; /* after the last '/' */
	/* posixpath.dirname: up to the last '/', or "/" for a name under the root */
	if ((want & BG_PATH_DIR) && bg_push_str_in(a, 0, leaf > 1 ? leaf - 1 : 1, flt->vals[1]))
		return 1;
	if ((want & BG_PATH_FILE) && bg_push_str_in(a, leaf, len - leaf, flt->vals[2]))
		return 1;
	if (want & BG_PATH_PREFIX) {
		n = len;
		bg_clamp(n, BG_POL_PREFIX_MAX);
		bpf_probe_read_kernel(a->key.data, n, a->path.b);
		if (bg_pol_lpm(&pol_prefix, &a->key, flt->vals[3], n))
			return 1;
	}
	if (want & BG_PATH_SUFFIX) {
		/* a suffix without '/' can only end the last name: reverse just that */
		n = len - ((want & BG_PATH_SUFFIX_LEAF) ? leaf : 0);
		bg_clamp(n, BG_POL_PREFIX_MAX);
		bg_reverse_tail(&a->path, len, n, &a->key);
		if (bg_pol_lpm(&pol_postfix, &a->key, flt->vals[4], n))
			return 1;
	}
	return 0;
}

/* The selector's BG_PHASE_FILE filters (the path tests of an open): all hold. */
static __always_inline bool bg_push_paths_keep(struct bg_stash *st, struct bg_pol_selector *s,
					       long ret)
{
	for (int i = 0; i < BG_POL_FILTERS; i++) {
		if (i >= s->nfilters)
			break;
		if (s->filters[i].ret == BG_PHASE_FILE && !bg_push_path_keep(st, &s->filters[i], ret))
			return false;
	}
	return true;
}

/* The pushdown at exit: the selector's return filters, on the result and
 * on the arguments stashed at entry (an fd argument's file as the fd table
 * has it now, as user space will name it). */
static __always_inline bool bg_push_keep_ret(struct bg_stash *st, struct bg_syscall_spec *spec,
					     struct bg_pol_selector *s, long ret)
{
	struct bg_scratch *scr = bg_scratch(BG_SCRATCH_SYSCALL);
	struct bg_pol_area *a;

	if (!scr)
		return true;
	a = (void *)scr->buf;
	a->work.role = BG_SCRATCH_SYSCALL;
	bg_push_args(a, spec, st->args, st->flags & BG_EV_COMPAT);
	a->ev.ret = ret;
	return bg_pol_match_args(a, s, BG_PHASE_RETURN);
}

/* Copies one user string into the stash; returns the new offset. */
static __always_inline __u32 bg_stash_str(struct bg_stash *st, __u32 pos, const void *src,
					  __u64 max, struct bg_blob *out)
{
	long n;

	if (pos > BG_STASH_MASK) {
		st->flags |= BG_EV_TRUNCATED;
		return pos;
	}
	bg_clamp(max, BG_STR_MAX);
	n = bpf_probe_read_user_str(st->data + (pos & BG_STASH_MASK), max, src);
	if (n < 0)
		n = 0;
	out->off = pos;
	out->len = n;
	return pos + n;
}

static __always_inline __u32 bg_stash_bytes(struct bg_stash *st, __u32 pos, const void *src,
					    __u64 len, struct bg_blob *out)
{
	if (pos > BG_STASH_MASK) {
		st->flags |= BG_EV_TRUNCATED;
		return pos;
	}
	bg_clamp(len, BG_SOCKADDR_MAX);
	if (bpf_probe_read_user(st->data + (pos & BG_STASH_MASK), len, src))
		len = 0;
	out->off = pos;
	out->len = len;
	return pos + len;
}

/* Everything after the fast-path test, out of line so that no setup the
 * compiler might hoist runs for uninteresting syscalls. */
static __noinline int bg_enter(struct pt_regs *regs, __u32 idx, struct bg_syscall_spec *spec)
{
	struct task_struct *task;
	struct bg_stash *st;
	__u32 tgid, pos = 0;
	bool compat;

	if (!spec || !spec->enabled)
		return 0;
	task = bpf_get_current_task_btf();
	compat = idx >= BG_NR_MAX;
	tgid = bpf_get_current_pid_tgid() >> 32;
	if (!bg_in_scope(task, tgid)) {
		/* `trace -- CMD`: CMD's window opens at its execve */
		__u8 *state = bpf_map_lookup_elem(&scope_tgids, &tgid);

		if (!state || *state != BG_SCOPE_ARMED || spec->ret != BG_RET_EXEC)
			return 0;
		*state = BG_SCOPE_ACTIVE;
	}
	if (spec->filtered) {
		__u32 key = BG_SYSCALL_SELECTORS + idx;
		struct bg_pol_selector *sel = bpf_map_lookup_elem(&pol_selectors, &key);

		if (sel && !bg_push_keep(regs, compat, spec, sel)) {
			bg_count_pushed(BG_PUSHED_AT_ENTRY);
			return 0;
		}
	}
	st = bpf_task_storage_get(&stash, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st) {
		bg_count_drop(BG_DROP_STASH_ALLOC);
		return 0;
	}
	st->nr = idx;
	st->gen = spec->gen;
	st->active = 1;
	/* the arguments even when nothing else is read: the selector's return
	 * filters test them at exit before a full ring is counted */
	st->flags = compat ? BG_EV_COMPAT : 0;
	bg_read_args(regs, compat, st->args);
	st->ring_full = bg_ring_full();
	if (st->ring_full)
		return 0;
	st->enter_ns = bpf_ktime_get_boot_ns();
	__builtin_memset(st->arg_data, 0, sizeof(st->arg_data));
	for (int i = 0; i < BG_ARGC; i++) {
		__u8 kind = spec->arg[i];

		if (kind == BG_ARG_PATH || kind == BG_ARG_PATH_AT || kind == BG_ARG_STR)
			pos = bg_stash_str(st, pos, (void *)st->args[i], targ_str_max,
					   &st->arg_data[i]);
		else if (kind == BG_ARG_SOCKADDR && i + 1 < BG_ARGC)
			pos = bg_stash_bytes(st, pos, (void *)st->args[i], st->args[i + 1],
					     &st->arg_data[i]);
		else if (kind == BG_ARG_OPEN_HOW &&
			 bpf_probe_read_user(&st->args[i], sizeof(__u64), (void *)st->args[i]))
			st->args[i] = 0;
	}
	st->data_len = pos;
	return 0;
}

static __always_inline bool bg_relative(struct bg_syscall_event *e, __u64 i)
{
	struct bg_blob *b = &e->arg_data[i];

	return b->len > 1 && e->data[b->off & BG_DATA_MASK] != '/';
}

struct bg_exit_ctx {
	struct task_struct *task;
	struct bg_stash *st;
	struct bg_syscall_spec *spec;
	struct bg_syscall_event *e;
	struct bg_payload *p;
	struct file *last_file;	  /* the file the last fd named, and where it went: */
	struct bg_file *last_out; /* dup2(fd, fd2)'s fd and its result name one file */
	struct file *fd_file;	  /* an io_uring request's file: what its fd argument names */
	bool fdtable;		  /* the task's fd table and cwd are the caller's */
};

/* Resolves `fd`, or copies the last resolution when it names the same file:
 * one path walk instead of two for a dup, dup2 or dup3. */
static __always_inline void bg_exit_fd(struct bg_exit_ctx *c, long fd, struct bg_file *out)
{
	struct file *f = bg_fd_file(c->task, fd);

	if (f && f == c->last_file && c->last_out) {
		__builtin_memcpy(out, c->last_out, sizeof(*out));
		return;
	}
	bg_resolve_file(c->task, f, c->p, out);
	c->last_file = f;
	c->last_out = out;
}

/* Resolves argument i at exit. A bpf_loop callback so the verifier checks it
 * once, not once per argument and per combination of argument kinds. */
static long bg_exit_arg(__u32 i, void *ctx)
{
	struct bg_exit_ctx *c = ctx;
	struct bg_stash *st = c->st;
	struct bg_file *out;
	__u64 k = i, at;
	__u8 kind;

	bg_clamp(k, BG_ARGC - 1);
	kind = c->spec->arg[k];
	out = &c->e->arg_file[k];
	if (kind == BG_ARG_FD) {
		/* a registered file's index is no fd: its file is the request's, or
		 * unknown before the request has it */
		if (c->fd_file)
			bg_resolve_file(c->task, c->fd_file, c->p, out);
		else if (!(st->flags & BG_EV_FIXED_FILE) && c->fdtable)
			bg_exit_fd(c, (int)st->args[k], out);
		return 0;
	}
	if (kind != BG_ARG_PATH && kind != BG_ARG_PATH_AT && kind != BG_ARG_STR)
		return 0;
	if (c->e->arg_data[k].len == 0) {
		/* unreadable at entry: read what the kernel has now faulted in */
		bg_put_str(c->p, (void *)st->args[k], targ_str_max, &c->e->arg_data[k], true);
		c->e->late_args |= 1 << k;
	}
	if (kind == BG_ARG_STR || !bg_relative(c->e, k) || !c->fdtable)
		return 0;
	if (kind == BG_ARG_PATH)
		return bg_resolve_cwd(c->task, c->p, out), 0;
	at = k - 1; /* user space puts PATH_AT only after its dirfd */
	bg_clamp(at, BG_ARGC - 1);
	bg_resolve_fd_or_cwd(c->task, (int)st->args[at], c->p, out);
	return 0;
}

/* Completes the event of a stashed call with its result and emits it: the
 * syscall exit's work (with the rules pushdown's exit tests), and an io_uring
 * request's (push false: none, see io_uring.bpf.h; its scratch `role`, and
 * fd_file, the request's file, which its fd argument names). */
static __always_inline int bg_exit_stash(struct task_struct *task, struct bg_stash *st,
					 struct bg_syscall_spec *spec, long ret, __u32 role,
					 struct file *fd_file, bool push)
{
	struct bg_pol_selector *sel = NULL;
	struct bg_syscall_event *e;
	struct bg_scratch *s;
	struct bg_payload p = {};
	struct bg_exit_ctx c;
	bool iou = st->flags & BG_EV_IO_URING;
	/* an io_uring completion a kworker runs (its task exiting) has none of
	 * the submitter's fds: nothing is looked up in its table */
	bool fdtable = !iou || (__u64)BPF_CORE_READ(task, files) == st->files;
	__u64 len;

	if (push && spec->filtered) {
		__u32 key = BG_SYSCALL_SELECTORS + st->nr;

		sel = bpf_map_lookup_elem(&pol_selectors, &key);
	}
	if (sel && !bg_push_keep_ret(st, spec, sel, ret)) {
		bg_count_pushed(BG_PUSHED_AT_EXIT);
		return 0;
	}
	if (st->ring_full) { /* nothing was read at entry */
		bg_count_drop(BG_DROP_RINGBUF_FULL);
		return 0;
	}
	if (sel && !bg_push_paths_keep(st, sel, ret)) {
		bg_count_pushed(BG_PUSHED_BY_PATH);
		return 0;
	}
	if (bg_ring_full()) {
		bg_count_drop(BG_DROP_RINGBUF_FULL);
		return 0;
	}
	s = bg_scratch(role);
	if (!s)
		return 0;
	e = (void *)s->buf;
	__builtin_memset(e, 0, sizeof(*e));
	if (iou) {
		__builtin_memcpy(&e->hdr, &st->hdr, sizeof(e->hdr));
		e->hdr.ktime_ns = bpf_ktime_get_boot_ns();
	} else {
		bg_fill_header(&e->hdr, task, BG_EVENT_SYSCALL);
	}
	e->hdr.flags = st->flags;
	e->enter_ns = st->enter_ns;
	e->ret = ret;
	e->nr = st->nr;
	__builtin_memcpy(e->args, st->args, sizeof(e->args));
	__builtin_memcpy(e->arg_data, st->arg_data, sizeof(e->arg_data));

	/* entry strings first: their stash offsets stay valid in data[] */
	len = st->data_len;
	bg_clamp(len, BG_STASH_DATA);
	if (len && bpf_probe_read_kernel(e->data, len, st->data))
		len = 0;
	p.data = e->data;
	p.pos = len;

	c.task = task;
	c.st = st;
	c.spec = spec;
	c.e = e;
	c.p = &p;
	c.last_file = NULL;
	c.last_out = NULL;
	c.fd_file = fd_file;
	c.fdtable = fdtable;
	/* the result first, right after the entry strings: what the syscall
	 * acted on gets the room before the arguments' bases, and its offset is
	 * one the path tests of the pushdown can predict (bg_push_path_keep) */
	if (ret >= 0 && !(st->flags & BG_EV_FIXED_RESULT) && fdtable) {
		if (spec->ret == BG_RET_FD)
			bg_exit_fd(&c, ret, &e->ret_file);
		else if (spec->ret == BG_RET_EXEC)
			bg_resolve_exe(task, &p, &e->ret_file);
	}
	bpf_loop(BG_ARGC, bg_exit_arg, &c, 0);
	if (p.trunc)
		e->hdr.flags |= BG_EV_TRUNCATED;
	bg_emit(e, offsetof(struct bg_syscall_event, data), p.pos);
	return 0;
}

static __noinline int bg_exit(long id, long ret)
{
	struct bg_syscall_route *route;
	struct task_struct *task;
	struct bg_stash *st;

	task = bpf_get_current_task_btf();
	st = bpf_task_storage_get(&stash, task, 0, 0);
	if (!st || !st->active)
		return 0;
	st->active = 0;
	if ((st->nr & (BG_NR_MAX - 1)) != id)
		return 0;
	route = bpf_map_lookup_elem(&routes, &st->nr);
	if (!route)
		return 0;
	if (route->spec.gen != st->gen)
		return 0; /* entered under another enablement: not this call's entry */
	return bg_exit_stash(task, st, &route->spec, ret, BG_SCRATCH_SYSCALL, NULL, true);
}

#endif /* BPFGUARD_LIB_SYSCALLS_BPF_H */
