/* SPDX-License-Identifier: GPL-2.0 */
/* Process events: exec, fork and exit, for the sched tracepoints that
 * sensor.bpf.c attaches. Exec reports kernel truth: the executable is
 * mm->exe_file, argv is read from mm->arg_start..arg_end, never from what a
 * process claims later. */
#ifndef BPFGUARD_LIB_PROCESS_BPF_H
#define BPFGUARD_LIB_PROCESS_BPF_H

#include "path.bpf.h"

/* Set before load by user space. */
const volatile __u32 targ_args_max = BG_ARGS_MAX;
/* Environment bytes copied at exec (0: not read). Run-time, not .rodata: a
 * rules reload may bring or drop the rules that need proc.env. */
__u32 env_max;

static __always_inline __u32 bg_ppid(struct task_struct *task)
{
	return BPF_CORE_READ(task, real_parent, tgid);
}

/* The task's pid in its own (deepest) pid namespace, and that namespace's
 * inode. */
static __always_inline __u32 bg_pid_in_ns(struct task_struct *task, __u32 *inum)
{
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(pid, level);
	struct upid up;

	/* numbers[] is a flexible array: read the element at `level` by address */
	bpf_probe_read_kernel(&up, sizeof(up), &pid->numbers[level & 31]);
	if (inum)
		*inum = BPF_CORE_READ(up.ns, ns.inum);
	return up.nr;
}

struct kernfs_node___pre615 {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

static __always_inline struct kernfs_node *bg_kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(((struct kernfs_node___pre615 *)0)->parent))
		return BPF_CORE_READ((struct kernfs_node___pre615 *)kn, parent);
	return BPF_CORE_READ(kn, __parent);
}

/* The path of cgroup node `kn`, components leaf first (the root's empty name
 * ends it), into `out`. */
static __always_inline void bg_kn_path(struct kernfs_node *kn, struct bg_payload *p,
				       struct bg_blob *out, struct bg_exec_event *e)
{
	out->off = p->pos;
	for (int i = 0; i < BG_CGROUP_DEPTH; i++) {
		struct kernfs_node *up;
		long n;

		if (!kn)
			break;
		up = bg_kn_parent(kn);
		if (!up)
			break; /* the root's name is "/", not a component */
		if (p->pos + BG_NAME_MAX > BG_DATA_LIMIT || p->pos - out->off > BG_CGROUP_BYTES) {
			e->exec_flags |= BG_EXEC_CGROUP_TRUNCATED;
			p->trunc = 1;
			break;
		}
		n = bpf_probe_read_kernel_str(p->data + (p->pos & BG_DATA_MASK), BG_NAME_MAX,
					      BPF_CORE_READ(kn, name));
		if (n <= 0)
			break;
		p->pos += n;
		kn = up;
		if (i == BG_CGROUP_DEPTH - 1 && bg_kn_parent(kn))
			e->exec_flags |= BG_EXEC_CGROUP_TRUNCATED; /* a level left below the root */
	}
	out->len = p->pos - out->off;
}

/* The cgroup v2 path of `task`, and its path in the pids controller's
 * hierarchy: with that controller on cgroup v1, the container's cgroup where
 * the v2 path says nothing (a v1-only host, whose v2 paths are all the root;
 * a runtime that joins only the v1 hierarchies); on v2, the same node as the
 * v2 path or one of its ancestors. */
static __always_inline void bg_cgroup_path(struct task_struct *task, struct bg_payload *p,
					   struct bg_exec_event *e)
{
	struct cgroup *dfl = BPF_CORE_READ(task, cgroups, dfl_cgrp);

	bg_kn_path(BPF_CORE_READ(dfl, kn), p, &e->cgroup, e);
	if (bpf_core_enum_value_exists(enum cgroup_subsys_id, pids_cgrp_id)) {
		int id = bpf_core_enum_value(enum cgroup_subsys_id, pids_cgrp_id);
		struct cgroup *cg = BPF_CORE_READ(task, cgroups, subsys[id & 15], cgroup);

		/* on v2 (the default hierarchy's root) it says nothing the v2 path
		 * does not: left empty */
		if (cg && BPF_CORE_READ(cg, root) != BPF_CORE_READ(dfl, root))
			bg_kn_path(BPF_CORE_READ(cg, kn), p, &e->cgroup_v1, e);
	}
}

#define BG_OVERLAYFS_MAGIC 0x794c7630

/* What bg_exe_layer reads of overlayfs's inode, which vmlinux.h lacks where
 * overlayfs is a module: CO-RE finds the fields in the module's BTF. */
struct ovl_inode___bg {
	struct inode vfs_inode;
	struct dentry *__upperdentry;
} __attribute__((preserve_access_index));

/* Whether the executable, on overlayfs (a container's root), is in the upper
 * layer: its overlay inode has an upper dentry because it was created or
 * copied up in the container, not shipped in the image (Falco's
 * proc.is_exe_upper_layer). Told only where the kernel's BTF has struct
 * ovl_inode when the sensor loads: overlayfs built in, or its module loaded
 * by then (loaded later, by the first container after boot, the answer stays
 * absent until the agent restarts). */
static __always_inline void bg_exe_layer(struct task_struct *task, struct bg_exec_event *e)
{
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	struct ovl_inode___bg *oi;

	if (!inode || BPF_CORE_READ(inode, i_sb, s_magic) != BG_OVERLAYFS_MAGIC)
		return;
	if (!bpf_core_type_exists(struct ovl_inode___bg))
		return;
	oi = (void *)inode - bpf_core_field_offset(struct ovl_inode___bg, vfs_inode);
	e->exec_flags |= BG_EXEC_EXE_LAYER;
	if (BPF_CORE_READ(oi, __upperdentry))
		e->exec_flags |= BG_EXEC_EXE_UPPER;
}

/* mm->env_start..env_end, bounded like argv. */
static __always_inline void bg_env(struct task_struct *task, struct bg_payload *p,
				   struct bg_exec_event *e)
{
	unsigned long start = BPF_CORE_READ(task, mm, env_start);
	unsigned long end = BPF_CORE_READ(task, mm, env_end);
	__u64 len = end - start, max = env_max;

	if (max > BG_ENV_MAX - 1)
		max = BG_ENV_MAX - 1;
	if (len > max) {
		len = max;
		e->exec_flags |= BG_EXEC_ENV_TRUNCATED;
	}
	if (p->pos + BG_ENV_MAX > BG_DATA_LIMIT) {
		e->exec_flags |= BG_EXEC_ENV_TRUNCATED;
		p->trunc = 1;
		return;
	}
	bg_clamp(len, BG_ENV_MAX - 1);
	if (bpf_probe_read_user(p->data + (p->pos & BG_DATA_MASK), len, (void *)start))
		len = 0;
	e->env.off = p->pos;
	e->env.len = len;
	p->pos += len;
}

/* The pid number of `task`'s session or process group leader, as the initial
 * namespace sees it. */
static __always_inline __u32 bg_leader_nr(struct task_struct *task, enum pid_type type)
{
	struct pid *pid = BPF_CORE_READ(task, signal, pids[type]);

	return pid ? BPF_CORE_READ(pid, numbers[0].nr) : 0;
}

static __always_inline void bg_args(struct task_struct *task, struct bg_payload *p,
				    struct bg_exec_event *e)
{
	unsigned long start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long end = BPF_CORE_READ(task, mm, arg_end);
	__u64 len = end - start, max = targ_args_max;

	if (max > BG_ARGS_MAX - 1)
		max = BG_ARGS_MAX - 1;
	if (len > max) {
		len = max;
		e->exec_flags |= BG_EXEC_ARGS_TRUNCATED;
	}
	if (p->pos + BG_ARGS_MAX > BG_DATA_LIMIT) {
		e->exec_flags |= BG_EXEC_ARGS_TRUNCATED;
		p->trunc = 1;
		return;
	}
	bg_clamp(len, BG_ARGS_MAX - 1);
	if (bpf_probe_read_user(p->data + (p->pos & BG_DATA_MASK), len, (void *)start))
		len = 0;
	e->args.off = p->pos;
	e->args.len = len;
	p->pos += len;
}

/* The exec-time name (the header's comm): what execve just made the comm. */
static __always_inline void bg_name_on_exec(struct task_struct *task)
{
	struct bg_comm *n = bpf_task_storage_get(&exec_names, task, 0,
						 BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (n)
		BPF_CORE_READ_STR_INTO(&n->c, task, comm);
}

#define BG_PF_KTHREAD 0x00200000 /* include/linux/sched.h */

/* A new process runs its parent's image, under the parent's exec-time name,
 * until it execs. Threads share their leader's; kernel threads never exec
 * and name themselves after they start: their comm is their name. */
static __always_inline void bg_name_on_fork(struct task_struct *parent, struct task_struct *child)
{
	struct bg_comm live = {};
	struct bg_comm *n;

	if (child->pid != child->tgid || (child->flags & BG_PF_KTHREAD))
		return;
	n = bpf_task_storage_get(&exec_names, child, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!n)
		return;
	BPF_CORE_READ_STR_INTO(&live.c, parent, comm);
	bg_exec_comm(parent, n, &live);
}

static __always_inline int bg_process_exec(struct task_struct *task, pid_t old_pid,
					   struct linux_binprm *bprm)
{
	struct bg_scratch *s;
	struct bg_exec_event *e;
	struct bg_payload p = {};
	const struct cred *cred;
	struct tty_struct *tty;
	__u32 tgid = BPF_CORE_READ(task, tgid);

	if (!bg_in_scope(task, tgid))
		return 0;
	s = bg_scratch(BG_SCRATCH_EXEC);
	if (!s)
		return 0;
	e = (void *)s->buf;
	__builtin_memset(e, 0, sizeof(*e));
	bg_fill_header(&e->hdr, task, BG_EVENT_EXEC);
	p.data = e->data;

	e->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	e->ppid = bg_ppid(task);
	e->old_tid = old_pid;
	cred = BPF_CORE_READ(task, cred);
	e->euid = BPF_CORE_READ(cred, euid.val);
	e->egid = BPF_CORE_READ(cred, egid.val);
	e->loginuid = BPF_CORE_READ(task, loginuid.val);
	e->sessionid = BPF_CORE_READ(task, sessionid);
	BPF_CORE_READ_INTO(&e->cap_effective, cred, cap_effective);
	BPF_CORE_READ_INTO(&e->cap_permitted, cred, cap_permitted);
	e->mntns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	e->netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	e->cgroupns = BPF_CORE_READ(task, nsproxy, cgroup_ns, ns.inum);
	e->userns = BPF_CORE_READ(cred, user_ns, ns.inum);
	e->vpid = bg_pid_in_ns(task, &e->pidns);
	e->argc = BPF_CORE_READ(bprm, argc);
	e->sid = bg_leader_nr(task, PIDTYPE_SID);
	e->pgid = bg_leader_nr(task, PIDTYPE_PGID);
	e->exe_uid = BPF_CORE_READ(task, mm, exe_file, f_inode, i_uid.val);
	e->exe_gid = BPF_CORE_READ(task, mm, exe_file, f_inode, i_gid.val);

	bg_args(task, &p, e);
	bg_put_str(&p, BPF_CORE_READ(bprm, filename), BG_STR_MAX, &e->filename, false);
	bg_resolve_exe(task, &p, &e->exe);
	bg_exe_layer(task, e);
	bg_resolve_cwd(task, &p, &e->cwd);
	bg_cgroup_path(task, &p, e);
	tty = BPF_CORE_READ(task, signal, tty);
	if (tty) {
		__u32 minor = BPF_CORE_READ(tty, driver, minor_start) + BPF_CORE_READ(tty, index);

		e->tty_dev = (BPF_CORE_READ(tty, driver, major) << 20) | (minor & 0xfffff);
		bg_put_str(&p, __builtin_preserve_access_index(&tty->name), 64, &e->tty, false);
	}
	if (env_max)
		bg_env(task, &p, e);
	if (p.trunc)
		e->hdr.flags |= BG_EV_TRUNCATED;
	bg_emit(e, offsetof(struct bg_exec_event, data), p.pos);
	return 0;
}

static __always_inline int bg_process_fork(struct task_struct *parent, struct task_struct *child)
{
	struct bg_scratch *s;
	struct bg_fork_event *e;
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 tgid = BPF_CORE_READ(child, tgid);

	if (BPF_CORE_READ(child, pid) != tgid)
		return 0; /* a new thread: its process is already known */
	/* the child shares the parent's scope attributes (cgroup, mount ns) at fork */
	if (!bg_in_scope(child, tgid))
		return 0;
	s = bg_scratch(BG_SCRATCH_FORK);
	if (!s)
		return 0;
	e = (void *)s->buf;
	__builtin_memset(e, 0, sizeof(*e));
	bg_fill_header(&e->hdr, child, BG_EVENT_FORK);
	e->start_ns = BPF_CORE_READ(child, start_boottime);
	e->ppid = ptgid;
	e->vpid = bg_pid_in_ns(child, NULL);
	bg_emit(e, offsetof(struct bg_fork_event, data), 0);
	return 0;
}

static __always_inline int bg_process_exit(struct task_struct *task)
{
	struct bg_scratch *s;
	struct bg_exit_event *e;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	bool report;

	/* report the process once, when its last thread leaves */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	report = bg_in_scope(task, tgid);
	bg_scope_on_exit(task, tgid);
	if (!report)
		return 0;
	s = bg_scratch(BG_SCRATCH_EXIT);
	if (!s)
		return 0;
	e = (void *)s->buf;
	__builtin_memset(e, 0, sizeof(*e));
	bg_fill_header(&e->hdr, task, BG_EVENT_EXIT);
	e->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	e->ppid = bg_ppid(task);
	e->exit_code = BPF_CORE_READ(task, exit_code);
	bg_emit(e, offsetof(struct bg_exit_event, data), 0);
	return 0;
}

#endif /* BPFGUARD_LIB_PROCESS_BPF_H */
