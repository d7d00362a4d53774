/* SPDX-License-Identifier: GPL-2.0 */
/* String matching shared by the in-kernel filter engines: the TracingPolicy
 * engine (lib/policy.bpf.h) and the rules pushdown of the syscall sensor
 * (lib/syscalls.bpf.h).
 *
 * Both match strings the same way, so that they can later share one set of
 * string-set maps:
 *  - exact sets: a hash map keyed by struct bg_pol_str_key {set, len, seeded
 *    64-bit hash of the bytes}; the hash is bg_str_hash here and
 *    bpfguard.policy.compiler.string_hash in Python;
 *  - prefix sets: one LPM trie per set (struct bg_pol_lpm_key), found in an
 *    array of tries by set id; suffix sets likewise, on the string reversed.
 * Paths are matched on their d_path-like form, written forward by
 * bg_path_forward. */
#ifndef BPFGUARD_STRMATCH_BPF_H
#define BPFGUARD_STRMATCH_BPF_H

#include "path.bpf.h"

/* Exact-string hash key, random per run so that a collision cannot be chosen
 * from outside; set before load by user space. */
const volatile __u64 targ_seed = 0;

/* The template of the per-set tries user space creates and puts into an
 * array of tries (an LPM key holds at most 256 data bytes, so the set id
 * cannot be part of the key). */
struct bg_pol_trie {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BG_POL_SETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bg_pol_lpm_key);
	__type(value, __u8);
};

static __always_inline __u64 bg_mix(__u64 h, __u64 w)
{
	h ^= w;
	h *= 0x9e3779b97f4a7c15ULL;
	return h ^ (h >> 32);
}

/* Seeded hash of len (<= BG_STR_MAX) bytes at off in `a`; user space computes
 * the same function (bpfguard.policy.compiler.string_hash). A global function:
 * the verifier walks its loop once, not at every call site. */
__noinline __u64 bg_str_hash(struct bg_area *a, __u32 off, __u32 len)
{
	__u64 h, w;

	if (!a)
		return 0;
	h = bg_mix(targ_seed, len);
	for (int i = 0; i < BG_STR_MAX / 8; i++) {
		__u32 at = i * 8;

		if (at >= len)
			break;
		w = 0;
		bpf_probe_read_kernel(&w, 8, &a->b[(off + at) & BG_DATA_MASK]);
		if (len - at < 8)
			w &= (1ULL << ((len - at) * 8)) - 1;
		h = bg_mix(h, w);
	}
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 32);
}

/* Is the n-byte key (already in key->data) in the trie of set `set` of the
 * array of tries `outer`? */
static __always_inline bool bg_pol_lpm(void *outer, struct bg_pol_lpm_key *key, __u32 set,
				       __u32 n)
{
	void *trie = bpf_map_lookup_elem(outer, &set);

	if (!trie)
		return false;
	key->prefixlen = 8 * n;
	return bpf_map_lookup_elem(trie, key) != NULL;
}

/* Work space of bg_path_forward: the dentry names of the walk, leaf first. */
struct bg_pol_work {
	__u64 names[BG_PATH_DEPTH];
	__u32 depth;
	__u32 role; /* the policy engine: the scratch role, which indexes pol_lpm_keys */
	__u32 leaf; /* out: offset of the leaf name from the start of the path */
	__u32 pad;
};

/* What bg_path_forward reports in req->pad besides the path. TRUNCATED and
 * DEEP mean the string is cut; the others say where it differs from what the
 * syscall sensor reports (struct bg_file, joined in user space): a rules
 * pushdown must not decide on such a path. */
enum bg_fwd_flags {
	BG_FWD_TRUNCATED = 1 << 0, /* no room left: the string's end is missing */
	BG_FWD_DETACHED = 1 << 1,  /* a mount without parent that is not the task's root */
	BG_FWD_PSEUDO = 1 << 2,    /* a pseudo dentry (its own parent): pipe, socket, memfd */
	BG_FWD_UNREAD = 1 << 3,    /* the walk did not reach the root (loop bound, unreadable or
				    * empty name) */
	BG_FWD_DEEP = 1 << 4,      /* BG_PATH_DEPTH names or more: the string holds the
				    * innermost names (a path of exactly that many is whole,
				    * but taken for cut), and begins with '.', not '/', so that
				    * no prefix or equality test takes it for the path from
				    * the root */
};

_Static_assert(BG_FWD_DEEP == BG_FWD_UNREAD << 1 && BG_FWD_DEEP == 1 << 4 && '/' - 1 == '.',
	       "bg_path_forward's arithmetic on its flags");

/* Writes the path of req->file (or req->path; one without a mount is a
 * dentry's, up to its filesystem's root) as "/a/b/c" plus NUL at
 * req->pos, walking dentries and mounts up to the task's root as d_path does
 * (no " (deleted)" suffix). Returns the bytes written; req->pad gets enum
 * bg_fwd_flags, w->leaf where the last name starts. The walk takes the same
 * steps as bg_resolve (path.bpf.h), so with no flag set the string is the one
 * user space joins from bg_resolve's components. */
__noinline int bg_path_forward(struct bg_area *a, struct bg_file_req *req, struct bg_pol_work *w)
{
	struct task_struct *task;
	struct file *file;
	const struct path *path;
	struct dentry *d, *root_dentry, *parent;
	struct vfsmount *vfsmnt, *root_mnt;
	struct mount *mnt;
	__u32 pos, start, n, flags = BG_FWD_UNREAD;
	__u64 k;
	int i;

	if (!a || !req || !w)
		return 0;
	w->depth = 0;
	w->leaf = 1;
	start = pos = req->pos;
	task = (void *)req->task;
	file = (void *)req->file;
	path = file ? __builtin_preserve_access_index(&file->f_path) : (void *)req->path;
	if (!path)
		return 0;
	d = BPF_CORE_READ(path, dentry);
	vfsmnt = BPF_CORE_READ(path, mnt); /* none: a dentry's path within its filesystem */
	if (!d)
		return 0;
	mnt = container_of(vfsmnt, struct mount, mnt);
	root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	root_mnt = BPF_CORE_READ(task, fs, root.mnt);
	for (i = 0; i < BG_PATH_DEPTH; i++) {
		if (d == root_dentry && vfsmnt == root_mnt) {
			flags &= ~BG_FWD_UNREAD;
			break;
		}
		if (d == BPF_CORE_READ(vfsmnt, mnt_root)) {
			struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

			if (up == mnt) {
				flags = (flags & ~BG_FWD_UNREAD) | BG_FWD_DETACHED;
				break;
			}
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			vfsmnt = __builtin_preserve_access_index(&up->mnt);
			continue;
		}
		parent = BPF_CORE_READ(d, d_parent);
		if (!vfsmnt && parent == d) { /* a dentry alone: its filesystem's root */
			flags &= ~BG_FWD_UNREAD;
			break;
		}
		/* the depth lives in memory, not a register: read back it is an
		 * unknown scalar, so loop states differing only in it are pruned */
		n = *(volatile __u32 *)&w->depth;
		k = n;
		bg_clamp(k, BG_PATH_DEPTH - 1);
		w->names[k] = (__u64)BPF_CORE_READ(d, d_name.name);
		w->depth = n + 1;
		if (parent == d) {
			flags = (flags & ~BG_FWD_UNREAD) | BG_FWD_PSEUDO;
			break;
		}
		d = parent;
	}
	/* the loop's bound reached (every break above clears UNREAD): the names
	 * taken may not reach the root. BG_FWD_DEEP by arithmetic: a branch on
	 * flags would keep the verifier from pruning the loop below, and the
	 * whole program is near its 1M-instruction budget on 6.1 */
	flags |= (flags & BG_FWD_UNREAD) << 1;
	n = *(volatile __u32 *)&w->depth;
	if (!n) {
		a->b[pos & BG_DATA_MASK] = '/';
		pos++;
	}
	for (i = 0; i < BG_PATH_DEPTH; i++) {
		long got;

		if (i >= n)
			break;
		if (pos + BG_NAME_MAX + 2 > BG_DATA_LIMIT) {
			flags |= BG_FWD_TRUNCATED;
			break;
		}
		a->b[pos & BG_DATA_MASK] = '/';
		pos++;
		w->leaf = pos - start;
		k = n - 1 - i;
		bg_clamp(k, BG_PATH_DEPTH - 1);
		got = bpf_probe_read_kernel_str(a->b + (pos & BG_DATA_MASK), BG_NAME_MAX,
						(void *)w->names[k]);
		if (got <= 1) {
			/* bg_resolve keeps an empty name (and stops at a fault) */
			flags |= BG_FWD_UNREAD;
			break;
		}
		pos += got - 1;
	}
	a->b[pos & BG_DATA_MASK] = 0;
	/* '.' for the first '/' of a DEEP path (every path's first character
	 * is '/'); arithmetic, not a branch, which would split the verifier's
	 * states at every exit of the loop above */
	a->b[start & BG_DATA_MASK] = '/' - ((flags & BG_FWD_DEEP) >> 4);
	req->pad = flags;
	return pos + 1 - start;
}

#endif /* BPFGUARD_STRMATCH_BPF_H */
