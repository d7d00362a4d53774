/* SPDX-License-Identifier: GPL-2.0 */
/* Reading a syscall's number, ABI and arguments from its pt_regs. tp_btf hands
 * a trusted pt_regs pointer, so these are direct (CO-RE) loads, no helper. */
#ifndef BPFGUARD_SYSCALL_BPF_H
#define BPFGUARD_SYSCALL_BPF_H

#include "common.bpf.h"

/* The per-syscall table both parts read (struct bg_syscall_route). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * BG_NR_MAX); /* native ids, then compat ids */
	__type(key, __u32);
	__type(value, struct bg_syscall_route);
} routes SEC(".maps");

#define BG_TS_COMPAT 0x0002 /* x86 thread_info.status: in a 32-bit syscall */
#define BG_TIF_32BIT 22     /* arm64 thread_info.flags: an AArch32 task */

static __always_inline bool bg_is_compat(struct task_struct *task)
{
	/* task is a trusted BTF pointer: a direct (CO-RE) load, no probe-read helper */
#if defined(__TARGET_ARCH_x86)
	return task->thread_info.status & BG_TS_COMPAT;
#elif defined(__TARGET_ARCH_arm64)
	return task->thread_info.flags & (1UL << BG_TIF_32BIT);
#else
	return false;
#endif
}

static __always_inline void bg_read_args(struct pt_regs *regs, bool compat, __u64 *a)
{
#if defined(__TARGET_ARCH_x86)
	if (compat) {
		a[0] = regs->bx;
		a[1] = regs->cx;
		a[2] = regs->dx;
		a[3] = regs->si;
		a[4] = regs->di;
		a[5] = regs->bp;
		return;
	}
	a[0] = regs->di;
	a[1] = regs->si;
	a[2] = regs->dx;
	a[3] = regs->r10;
	a[4] = regs->r8;
	a[5] = regs->r9;
#elif defined(__TARGET_ARCH_arm64)
	a[0] = regs->orig_x0;
	for (int i = 1; i < BG_ARGC; i++)
		a[i] = regs->regs[i];
#endif
}

/* The syscall's index in routes (its number, + BG_NR_MAX in the compat ABI). */
static __always_inline __u32 bg_syscall_index(struct task_struct *task, long id)
{
	return (__u32)id + (bg_is_compat(task) ? BG_NR_MAX : 0);
}

static __always_inline long bg_syscall_nr(struct pt_regs *regs)
{
#if defined(__TARGET_ARCH_x86)
	return regs->orig_ax;
#elif defined(__TARGET_ARCH_arm64)
	return regs->syscallno;
#endif
}

#endif /* BPFGUARD_SYSCALL_BPF_H */
