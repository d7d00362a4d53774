/* SPDX-License-Identifier: GPL-2.0 */
/* Seccomp recorder: the set of syscalls a scope makes, aggregated in the
 * kernel; the recording part of sensor.bpf.c, on its sys_enter and lifecycle
 * programs (compiled out of a set that records nothing: targ_record).
 *
 * No event per syscall: sys_enter marks the syscall's byte in `seen` (global
 * data user space reads through mmap) and, for the few syscalls whose
 * arguments decide safety, puts the value into `argvals`. Every process that
 * joins the scope (fork, the exec that opens the window) is remembered in
 * `members`, exited ones too, so late audit records can be attributed. */
#ifndef BPFGUARD_LIB_RECORD_BPF_H
#define BPFGUARD_LIB_RECORD_BPF_H

#include "syscall.bpf.h"

#define BG_E2BIG 7
#define BG_IDX_MASK (2 * BG_NR_MAX - 1)

/* Set before load: a recorder is part of this sensor set; enum bg_watch per
 * syscall index (native, then compat). */
const volatile __u32 targ_record = 0;
const volatile __u8 targ_watch[2 * BG_NR_MAX];

/* Plain byte stores, not atomics: every writer writes 1. */
__u8 seen[2 * BG_NR_MAX];
/* A value of this syscall was not recorded (argvals full, or unreadable):
 * user space must not emit argument rules for it. */
__u8 argvals_lost[2 * BG_NR_MAX];
/* Syscall ids >= BG_NR_MAX (x32 ones, or -1 from a ptracer): counted, not recorded. */
__u64 out_of_range;
/* Processes that could not join `members` (full): their audit records go unattributed. */
__u64 members_full;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct bg_argval_key);
	__type(value, __u8);
} argvals SEC(".maps");

/* Every tgid that was ever in scope_tgids during this recording, kept after it
 * exits, so records that arrive late (seccomp audit lines) can be attributed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} members SEC(".maps");

static __always_inline void bg_record_join(__u32 tgid)
{
	__u8 one = 1;

	if (bpf_map_update_elem(&members, &tgid, &one, BPF_ANY))
		__sync_fetch_and_add(&members_full, 1);
}

static __always_inline void bg_record_arg(struct pt_regs *regs, bool compat, __u32 idx, __u8 w)
{
	struct bg_argval_key key = { .idx = idx };
	__u64 a[BG_ARGC];
	__u8 one = 1;
	long err;

	bg_read_args(regs, compat, a);
	if (w == BG_WATCH_CLONE3) {
		if (bpf_probe_read_user(&key.value, sizeof(key.value), (void *)a[0])) {
			argvals_lost[idx & BG_IDX_MASK] = 1;
			return;
		}
	} else {
		__u32 i = w - BG_WATCH_ARG0;

		if (i >= BG_ARGC)
			return;
		key.value = a[i];
	}
	if (bpf_map_lookup_elem(&argvals, &key))
		return;
	err = bpf_map_update_elem(&argvals, &key, &one, BPF_NOEXIST);
	if (err == -BG_E2BIG)
		argvals_lost[idx & BG_IDX_MASK] = 1;
}

static __always_inline __u32 bg_index(long id, bool compat)
{
	__u64 idx = (__u32)id + (compat ? BG_NR_MAX : 0);

	/* clang drops a mask it can prove redundant, and the 6.1 verifier
	 * cannot prove the sum in range without it */
	bg_clamp(idx, BG_IDX_MASK);
	return idx;
}

static __always_inline void bg_record(struct pt_regs *regs, long id, bool compat)
{
	__u32 idx;
	__u8 w;

	if ((__u64)id >= BG_NR_MAX) {
		__sync_fetch_and_add(&out_of_range, 1);
		return;
	}
	idx = bg_index(id, compat);
	if (!seen[idx])
		seen[idx] = 1;
	w = targ_watch[idx];
	if (w != BG_WATCH_NONE)
		bg_record_arg(regs, compat, idx, w);
}

/* Whatever the process, a syscall already in the set with no argument to
 * collect changes nothing: answer that from global data first, and pay for
 * the scope lookup only for syscalls not seen yet. After a workload's first
 * moments that is almost none, in scope or not. */
static __noinline void bg_record_enter(struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	bool compat = bg_is_compat(task);

	if ((__u64)id < BG_NR_MAX) {
		__u32 idx = bg_index(id, compat);

		if (seen[idx] && targ_watch[idx] == BG_WATCH_NONE)
			return;
	}
	if (!bg_in_scope(task, bpf_get_current_pid_tgid() >> 32))
		return;
	bg_record(regs, id, compat);
}

/* The exec that opened a window (`seccomp record -- CMD`): the process joins,
 * and its execve, which entered while the process was ARMED (so sys_enter
 * skipped it), is recorded here. It was made by bpfguard's launcher, a native
 * process, whatever ABI the new image has. */
static __always_inline void bg_record_exec(struct task_struct *task, __u32 tgid)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);

	bg_record_join(tgid);
	bg_record(regs, bg_syscall_nr(regs), false);
}

#endif /* BPFGUARD_LIB_RECORD_BPF_H */
