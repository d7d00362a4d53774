// SPDX-License-Identifier: GPL-2.0
/* The sensor: one BPF object whatever an agent runs (detection's syscall
 * sensor and its pushdown, TracingPolicies, process tracking), so every
 * kernel event has one program: one sys_enter, one sys_exit, one of each
 * sched_process_* tracepoint. The entry programs below are thin; the parts
 * live in bpf/lib/:
 *  - process.bpf.h: exec / fork / exit events (always on: the process table
 *    needs them);
 *  - syscalls.bpf.h: the syscall sensor (its interest bitmap, specs,
 *    pushdown, entry stash, exit-time resolution);
 *  - io_uring.bpf.h: io_uring requests, reported by the syscall sensor as
 *    the syscalls they stand for;
 *  - selectors.bpf.h: the one in-kernel filter engine (selectors, their
 *    sets, matchBinaries' executables), which decides both the rules
 *    pushdown and the TracingPolicies;
 *  - policy.bpf.h: the TracingPolicy engine (hooks, routes, argument
 *    reading, actions, posting);
 *  - record.bpf.h: the seccomp recorder (the syscall set of a scope,
 *    aggregated here; no event per syscall).
 * A part a set does not have is compiled out (targ_policy, targ_record are
 * .rodata: the verifier drops its branches).
 * Policy hooks on other kernel events (tracepoints, kernel functions, LSM
 * hooks, uprobes) are served by per-hook copies of this object that load
 * only the program for that hook (user space sets autoload) and share every
 * map but the per-CPU scratch. */
#include "process.bpf.h"
#ifndef BG_NO_SYSCALLS
#include "syscalls.bpf.h"
#include "io_uring.bpf.h"
/* The syscall sensor's bitmap. */
#define BG_WANTS(w) (interest[w])
#else
/* sensor-nosyscalls.bpf.o, the variant policy-only sets load (see below). */
#define BG_WANTS(w) 0
#endif
#include "record.bpf.h"
#ifndef BG_NO_POLICY
#include "policy.bpf.h"
/* The policy engine's syscall bitmaps, at entry and at return. */
#define BG_POL_WANTS(w) (pol_interest[w])
#define BG_POL_RET_WANTS(w) (pol_ret_interest[w])
#else
/* sensor-nopolicy.bpf.o, the variant sets without a policy engine load: the
 * policy engine's global functions (reading a hook's arguments, running its
 * hooks) are not in it, so kernels that verify every global function of a
 * program (before lazy verification of unused ones) do not verify them for
 * a set that never runs them; the selector engine's are, for the pushdown.
 * Likewise the syscall sensor's, in sensor-nosyscalls.bpf.o. */
#define BG_POL_WANTS(w) 0
#define BG_POL_RET_WANTS(w) 0
#endif

/* Set before load: which parts this sensor set has. A part it lacks costs
 * no run time, and the verifier drops its branches (frozen .rodata is known
 * to it); the global functions a part calls (bg_pol_run, bg_path_forward,
 * ...) are still verified on their own, on kernels before lazy verification
 * of unused global functions. user space shrinks the maps of a part a set
 * lacks to one entry. targ_policy: a policy engine (the lifecycle programs
 * then also keep matchBinaries' executable table); targ_syscalls: the
 * syscall sensor; targ_record (in record.bpf.h): a seccomp recorder;
 * targ_process_events: exec/fork/exit events for the process table (a
 * recorder's set reads no events and builds none: its scope is kept all the
 * same). */
const volatile __u32 targ_policy = 0;
const volatile __u32 targ_syscalls = 0;
const volatile __u32 targ_process_events = 1;

/* The fast path is one test of the union of what the syscall sensor and the
 * policy engine want; an uninteresting syscall costs that and nothing more.
 * A recorder wants every syscall of its scope and has its own fast path (a
 * syscall it has seen already). */
SEC("tp_btf/sys_enter")
int BPF_PROG(bg_sys_enter, struct pt_regs *regs, long id)
{
	struct bg_syscall_route *route;
	__u64 w, bit;
	__u32 idx;

	if (targ_record)
		bg_record_enter(regs, id);
	if ((__u64)id >= BG_NR_MAX)
		return 0;
	w = BG_WORD(id);
	bit = BG_BIT(id);
	if (!((BG_WANTS(w) | BG_POL_WANTS(w)) & bit))
		return 0;
	/* one lookup for every part: the syscall's row of the route table */
	idx = bg_syscall_index(bpf_get_current_task_btf(), id);
	route = bpf_map_lookup_elem(&routes, &idx);
	if (!route)
		return 0;
#ifndef BG_NO_SYSCALLS
	if (targ_syscalls && (interest[w] & bit))
		bg_enter(regs, idx, &route->spec);
#endif
#ifndef BG_NO_POLICY
	if (targ_policy && (pol_interest[w] & bit))
		bg_pol_enter(regs, id, idx, &route->pol);
#endif
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(bg_sys_exit, struct pt_regs *regs, long ret)
{
	long id = bg_syscall_nr(regs); /* sys_exit carries no id of its own */
	__u64 w, bit;

	if ((__u64)id >= BG_NR_MAX)
		return 0;
	w = BG_WORD(id);
	bit = BG_BIT(id);
	if (!((BG_WANTS(w) | BG_POL_RET_WANTS(w)) & bit))
		return 0;
#ifndef BG_NO_SYSCALLS
	if (targ_syscalls && (interest[w] & bit))
		bg_exit(id, ret);
#endif
#ifndef BG_NO_POLICY
	if (targ_policy && (pol_ret_interest[w] & bit))
		bg_pol_exit(id, ret);
#endif
	return 0;
}

/* Scope first (an ARMED process opens its window at this exec; a child of an
 * in-scope process joins at fork), then the parts. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(bg_sched_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = task->tgid;
	bool opened = bg_scope_on_exec(task, tgid);

	bg_name_on_exec(task);

	if (targ_process_events)
		bg_process_exec(task, old_pid, bprm);
#ifndef BG_NO_POLICY
	if (targ_policy)
		bg_pol_on_exec(task);
#endif
	if (targ_record && opened)
		bg_record_exec(task, tgid);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(bg_sched_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 tgid = child->tgid;
	bool joined = false;

	bg_name_on_fork(parent, child);
	if (child->pid == tgid) /* a new process, not a thread */
		joined = bg_scope_on_fork(parent->tgid, tgid);
	if (targ_process_events)
		bg_process_fork(parent, child);
#ifndef BG_NO_POLICY
	if (targ_policy)
		bg_pol_on_fork(parent, child);
#endif
	if (targ_record && joined)
		bg_record_join(tgid);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(bg_sched_exit, struct task_struct *task)
{
	if (targ_process_events)
		bg_process_exit(task); /* reports it, and takes it out of the scope */
	else
		bg_scope_on_exit(task, task->tgid);
#ifndef BG_NO_POLICY
	if (targ_policy)
		bg_pol_on_exit(task);
#endif
	return 0;
}

#ifndef BG_NO_SYSCALLS
/* io_uring requests, reported as the syscalls they stand for (user space
 * attaches these with the syscall sensor, to the submit tracepoint this
 * kernel has: io_uring_submit_req, or io_uring_submit_sqe before 6.4; the
 * request is the first argument of both, and the second of io_uring_complete
 * in every version). */
SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(bg_iou_submit_tp, struct io_kiocb *req)
{
	if (targ_syscalls)
		bg_iou_submit(req);
	return 0;
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(bg_iou_complete_tp, void *ring, void *req)
{
	if (targ_syscalls)
		bg_iou_complete(req);
	return 0;
}
#endif

#ifndef BG_NO_POLICY
/* ---- policy hooks on other kernel events: one loaded copy per hook ---- */

SEC("tracepoint")
int bg_pol_tp(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_src src = {};

	src.base = (__u64)ctx;
	src.compat = bg_is_compat(task);
	bg_pol_run(targ_hook, &src, BG_SCRATCH_POLICY_TP);
	return 0;
}

SEC("raw_tp")
int bg_pol_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_src src = {};
	__u64 base = (__u64)ctx;

	/* probe reads: a direct ctx load past the tracepoint's own arguments
	 * would make the attach fail */
	for (int i = 0; i < BG_POL_ARGS; i++)
		bpf_probe_read_kernel(&src.a[i], 8, (void *)(base + 8 * i));
	src.compat = bg_is_compat(task);
	bg_pol_run(targ_hook, &src, BG_SCRATCH_POLICY_TP);
	return 0;
}

SEC("fentry")
int bg_pol_fentry(void *ctx)
{
	struct bg_pol_src src = {};

	bg_pol_ctx_args(ctx, &src);
	bg_pol_run(targ_hook, &src, BG_SCRATCH_POLICY_FUNC);
	return 0;
}

SEC("fexit")
int bg_pol_fexit(void *ctx)
{
	return bg_pol_func_exit(bg_pol_ctx_ret(ctx));
}

/* A kprobe whose selectors may Override: skips the function when they do. */
SEC("fmod_ret")
int bg_pol_fmod_ret(void *ctx)
{
	struct bg_pol_src src = { .can_override = 1 };
	long prev = bg_pol_ctx_ret(ctx);

	if (prev)
		return prev; /* an earlier fmod_ret program overrode already */
	bg_pol_ctx_args(ctx, &src);
	return bg_pol_run(targ_hook, &src, BG_SCRATCH_POLICY_FUNC);
}

/* An enforcers function of a policy whose NotifyEnforcer may arm it. */
SEC("fmod_ret")
int bg_pol_enforce(void *ctx)
{
	long prev = bg_pol_ctx_ret(ctx);

	if (prev)
		return prev; /* an earlier fmod_ret program overrode already */
	return bg_pol_enforce_call();
}

SEC("lsm")
int bg_pol_lsm(void *ctx)
{
	struct bg_pol_src src = { .can_override = 1 };
	long prev = bg_pol_ctx_ret(ctx);
	struct bg_pol_stash *st;

	if (prev)
		return bg_lsm_ret(prev); /* an earlier BPF LSM program denied already */
	/* the file IMA opens to take our hash is not the task's doing */
	if (targ_ima) {
		st = bpf_task_storage_get(&pol_fstash, bpf_get_current_task_btf(), 0, 0);
		if (st && st->active == BG_IMA_HASHING && st->hook == targ_hook)
			return 0;
	}
	bg_pol_ctx_args(ctx, &src);
	return bg_lsm_ret(bg_pol_run(targ_hook, &src, BG_SCRATCH_POLICY_FUNC));
}

SEC("kprobe")
int bg_pol_kprobe(struct pt_regs *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_pol_src src = { .regs = (__u64)ctx };

	bg_pol_regs_args(ctx, &src);
	src.compat = bg_is_compat(task);
	bg_pol_run(targ_hook, &src, BG_SCRATCH_POLICY_FUNC);
	return 0;
}

SEC("kretprobe")
int bg_pol_kretprobe(struct pt_regs *ctx)
{
	return bg_pol_func_exit(PT_REGS_RC(ctx));
}

/* The hooked object is the hook's first argument: a linux_binprm or a file
 * (the compiler checks which). */
SEC("lsm.s")
int BPF_PROG(bg_pol_ima_bprm_a, struct linux_binprm *bprm)
{
	return bg_pol_ima(bprm->file, (__u64)bprm);
}

SEC("lsm.s")
int BPF_PROG(bg_pol_ima_bprm_b, struct linux_binprm *bprm)
{
	return bg_pol_ima(bprm->file, (__u64)bprm);
}

SEC("lsm.s")
int BPF_PROG(bg_pol_ima_file_a, struct file *file)
{
	return bg_pol_ima(file, (__u64)file);
}

SEC("lsm.s")
int BPF_PROG(bg_pol_ima_file_b, struct file *file)
{
	return bg_pol_ima(file, (__u64)file);
}

/* A signal sent here is delivered when the task leaves the probe's trap,
 * before the function's body runs: Sigkill on a uprobe does prevent the call. */
SEC("uprobe")
int bg_pol_uprobe(struct pt_regs *ctx)
{
	struct bg_pol_src src = { .nr = (__u32)bpf_get_attach_cookie(ctx), .regs = (__u64)ctx };

	bg_pol_regs_args(ctx, &src);
	bg_pol_run(targ_hook, &src, BG_SCRATCH_POLICY_FUNC);
	return 0;
}
/* A usdt with a Set action: the one program that may write user memory. */
SEC("uprobe")
int bg_pol_usdt_set(struct pt_regs *ctx)
{
	struct bg_pol_src src = { .nr = (__u32)bpf_get_attach_cookie(ctx), .regs = (__u64)ctx };

	bg_pol_regs_args(ctx, &src);
	bg_pol_run(targ_hook, &src, BG_SCRATCH_POLICY_FUNC);
	bg_pol_set(); /* what bg_pol_run asked for, if anything */
	return 0;
}
/* The return half of a uprobe with return: true. */
SEC("uretprobe")
int bg_pol_uretprobe(struct pt_regs *ctx)
{
	return bg_pol_uprobe_exit(PT_REGS_RC(ctx), (__u32)bpf_get_attach_cookie(ctx));
}
#endif /* BG_NO_POLICY */
