/* SPDX-License-Identifier: GPL-2.0 */
/* Maps and helpers every sensor object shares. The `events`, `drops` and
 * `scope_*` maps are created once by user space and handed to each object
 * (bpf_map__reuse_fd), so all sensors write one ordered stream and obey one scope. */
#ifndef BPFGUARD_COMMON_BPF_H
#define BPFGUARD_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "bpfguard.h"

char LICENSE[] SEC("license") = "GPL";

/* Room for the largest fixed event part plus a full payload, plus one maximal
 * string read starting at the last masked payload offset. */
#define BG_FIXED_MAX 2048
#define BG_SCRATCH_SIZE (BG_FIXED_MAX + BG_DATA_LIMIT + BG_STR_MAX)

/* One scratch slot per program role: a BPF program never re-enters itself on a
 * CPU (the kernel skips and counts it), but two different programs can
 * interleave on one CPU under preemption, so they must not share a slot. */
enum bg_scratch_role {
	BG_SCRATCH_SYSCALL = 0,
	BG_SCRATCH_EXEC = 1,
	BG_SCRATCH_FORK = 2,
	BG_SCRATCH_EXIT = 3,
	BG_SCRATCH_POLICY_ENTER = 4, /* the policy engine: syscall entry */
	BG_SCRATCH_POLICY_TP = 5,    /* the policy engine: tracepoints and raw tracepoints */
	BG_SCRATCH_POLICY_FUNC = 6,  /* the policy engine: kernel functions and LSM hooks */
	BG_SCRATCH_IOU_SUBMIT = 7,   /* io_uring submissions: the stash being built */
	BG_SCRATCH_IOU_NOCQE = 8,    /* ... the event of one that posts no completion */
	BG_SCRATCH_IOU_COMPLETE = 9, /* io_uring completions */
	BG_SCRATCH_ROLES = 10,
};

struct bg_scratch {
	__u8 buf[BG_SCRATCH_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BG_DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BG_SCRATCH_ROLES);
	__type(key, __u32);
	__type(value, struct bg_scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bg_scope_config);
} scope_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32); /* tgid */
	__type(value, __u8); /* enum bg_scope_state */
} scope_tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64); /* cgroup v2 id; descendants are in scope too */
	__type(value, __u8);
} scope_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* mount namespace inode */
	__type(value, __u8);
} scope_mntns SEC(".maps");

/* Referencing every ABI type puts it into the object's BTF, where user space
 * reads layouts and enums; clang emits BTF only for types something uses. */
struct bg_abi {
	enum bg_event_type event_type;
	enum bg_event_flags event_flags;
	enum bg_drop_reason drop_reason;
	enum bg_file_flags file_flags;
	enum bg_exec_flags exec_flags;
	enum bg_arg_kind arg_kind;
	enum bg_ret_kind ret_kind;
	enum bg_scope_flags scope_flags;
	enum bg_scope_state scope_state;
	enum bg_watch watch;
	enum bg_push_stat push_stat;
	enum bg_push_path push_path;
	struct bg_syscall_spec spec;
	struct bg_scope_config scope;
	struct bg_argval_key argval;
	enum bg_pol_hook_kind pol_hook_kind;
	enum bg_pol_type pol_type;
	enum bg_pol_op pol_op;
	enum bg_pol_phase pol_phase;
	enum bg_pol_action pol_action;
	enum bg_pol_pid_flags pol_pid_flags;
	enum bg_pol_str_op pol_str_op;
	enum bg_pol_ns_kind pol_ns_kind;
	enum bg_pol_cap_type pol_cap_type;
	enum bg_pol_rate_scope pol_rate_scope;
	enum bg_pol_stack pol_stack;
	enum bg_pol_cel_code pol_cel_code;
	struct bg_pol_enforce_key pol_enforce_key;
	struct bg_pol_cel pol_cel;
	enum bg_pol_mode pol_mode;
	enum bg_pol_stat pol_stat;
	enum bg_pol_value_flags pol_value_flags;
	enum bg_pol_set_result pol_set_result;
	enum bg_pol_arg_flags pol_arg_flags;
	struct bg_pol_sock_owner pol_sock_owner;
	struct bg_pol_hook pol_hook;
	struct bg_pol_selector pol_selector;
	struct bg_pol_route pol_route;
	struct bg_pol_int_key pol_int_key;
	struct bg_pol_str_key pol_str_key;
	struct bg_pol_lpm_key pol_lpm_key;
	struct bg_pol_addr_key pol_addr_key;
	struct bg_pol_exe pol_exe;
};
struct bg_abi bg_abi_anchor;
/* Whole structs, not pointers: a pointer alone yields only a forward declaration. */
struct bg_exec_event bg_abi_exec;
struct bg_fork_event bg_abi_fork;
struct bg_exit_event bg_abi_exit;
struct bg_syscall_event bg_abi_syscall;
struct bg_policy_event bg_abi_policy;

#define BG_CGROUP_DEPTH 32
/* Bytes of one cgroup path at exec: past them the path is flagged truncated
 * (its leaf, which names a container, comes first). */
#define BG_CGROUP_BYTES 2048

static __always_inline void bg_count_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &reason);

	if (n)
		*n += 1;
}

static __always_inline struct bg_scratch *bg_scratch(__u32 role)
{
	struct bg_scratch *s = bpf_map_lookup_elem(&scratch, &role);

	if (!s)
		bg_count_drop(BG_DROP_NO_SCRATCH);
	return s;
}

/* A task name, as a type a global function can take a pointer to. */
struct bg_comm {
	char c[BG_COMM_LEN];
};

/* The name each process was executed as (the header's comm), on its group
 * leader: set at every execve, given to a forked child. Task storage, so the
 * kernel frees it with the task; the exec'ing thread is the leader once
 * execve succeeds (de_thread), so a multi-threaded process has one. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct bg_comm);
} exec_names SEC(".maps");

/* The name of the current process when the sensor did not see it exec
 * (it ran before the sensor loaded): its executable's file name, cut as comm
 * is, unless the thread's comm `live` is the start of that name (a symlink's
 * name, python3 for python3.11, or the name cut at 15 bytes), when `live` is
 * kept: a rename to anything else is not believed. Kernel threads have no
 * executable and keep their comm. A global function (verified once), which
 * takes no BTF pointer: the untyped current task, read with probe reads. */
__noinline int bg_comm_of_exe(struct bg_comm *out, struct bg_comm *live)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	const unsigned char *name;
	int i;

	if (!out || !live)
		return 0;
	name = BPF_CORE_READ(task, mm, exe_file, f_path.dentry, d_name.name);
	if (!name || bpf_probe_read_kernel_str(out->c, BG_COMM_LEN, name) <= 0) {
		__builtin_memcpy(out, live, sizeof(*out));
		return 0;
	}
	for (i = 0; i < BG_COMM_LEN; i++) {
		if (!live->c[i])
			break;
		if (live->c[i] != out->c[i])
			return 0;
	}
	if (i > 0)
		__builtin_memcpy(out, live, sizeof(*out));
	return 0;
}

/* `task`'s exec-time name into out; live: its thread's comm, already read.
 * `task` must be a BTF pointer (task storage takes no other), and current or
 * a child it just forked (which runs the same executable). */
static __always_inline void bg_exec_comm(struct task_struct *task, struct bg_comm *out,
					 struct bg_comm *live)
{
	struct bg_comm *n = bpf_task_storage_get(&exec_names, task->group_leader, 0, 0);

	if (n) {
		__builtin_memcpy(out, n, sizeof(*out));
		return;
	}
	bg_comm_of_exe(out, live);
	/* kept: later events pay no walk, and a later rename to another
	 * beginning of the executable's name does not change it */
	if (task != bpf_get_current_task_btf())
		return;
	n = bpf_task_storage_get(&exec_names, task->group_leader, 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (n)
		__builtin_memcpy(n, out, sizeof(*n));
}

static __always_inline void bg_fill_header(struct bg_event_header *h, struct task_struct *task,
					   __u16 type)
{
	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->type = type;
	h->flags = 0;
	h->tgid = BPF_CORE_READ(task, tgid);
	h->tid = BPF_CORE_READ(task, pid);
	h->uid = BPF_CORE_READ(task, cred, uid.val);
	h->gid = BPF_CORE_READ(task, cred, gid.val);
	h->euid = BPF_CORE_READ(task, cred, euid.val);
	h->egid = BPF_CORE_READ(task, cred, egid.val);
	h->cgroup_id = bpf_get_current_cgroup_id();
	BPF_CORE_READ_STR_INTO(&h->thread_comm, task, comm);
	bg_exec_comm(task, (struct bg_comm *)h->comm, (struct bg_comm *)h->thread_comm);
}

/* Bounds `var` (a __u64) to `max` in the register the verifier will check:
 * a C comparison lets clang test a copy and pass on the unbounded original. */
#define bg_clamp(var, max) asm volatile("if %0 <= %1 goto +1; %0 = %1" : "+r"(var) : "i"(max))

/* True when the ring buffer lacks room for the largest event (and its 8-byte
 * record header), or for an eighth of a ring smaller than 8 such events:
 * user space is behind. Tested before an event is built, so while the reader
 * cannot keep up a syscall costs a counter, not the path walks of an event
 * that would be refused anyway. The free space read is a snapshot;
 * bpf_ringbuf_output still decides, and counts, the rest. */
static __always_inline bool bg_ring_full(void)
{
	__u64 size = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE);
	__u64 need = BG_FIXED_MAX + BG_DATA_LIMIT + 8;

	if (need > size / 8)
		need = size / 8;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + need > size;
}

/* Sends fixed part + payload; the size is clamped for the verifier. */
static __always_inline void bg_emit(void *ev, __u32 fixed, __u32 payload)
{
	__u64 size = fixed + payload;

	bg_clamp(size, BG_SCRATCH_SIZE);
	((struct bg_event_header *)ev)->size = size;
	if (bpf_ringbuf_output(&events, ev, size, 0))
		bg_count_drop(BG_DROP_RINGBUF_FULL);
}

/* Payload writer: `pos` is the logical offset into data[]; every write checks
 * it leaves room for its maximum and masks the offset so the verifier sees it
 * bounded. A write that does not fit sets *trunc and writes nothing. */
struct bg_payload {
	__u8 *data;
	__u32 pos;
	__u32 trunc;
};

/* from_user is a constant at every call site, so the branch folds away */
static __always_inline int bg_put_str(struct bg_payload *p, const void *src, __u32 max,
				      struct bg_blob *out, bool from_user)
{
	long n;

	if (max > BG_STR_MAX)
		max = BG_STR_MAX;
	if (p->pos + max > BG_DATA_LIMIT) {
		p->trunc = 1;
		return -1;
	}
	if (from_user)
		n = bpf_probe_read_user_str(p->data + (p->pos & BG_DATA_MASK), max, src);
	else
		n = bpf_probe_read_kernel_str(p->data + (p->pos & BG_DATA_MASK), max, src);
	if (n < 0)
		n = 0;
	out->off = p->pos;
	out->len = n;
	p->pos += n;
	return 0;
}

/* ---- scope ---- */

static __always_inline struct bg_scope_config *bg_scope_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scope_config, &zero);
}

static __always_inline bool bg_cgroup_in_scope(struct task_struct *task)
{
	int level = BPF_CORE_READ(task, cgroups, dfl_cgrp, level);

	for (int i = 0; i < BG_CGROUP_DEPTH; i++) {
		__u64 id;

		if (i > level)
			break;
		id = bpf_get_current_ancestor_cgroup_id(i);
		if (bpf_map_lookup_elem(&scope_cgroups, &id))
			return true;
	}
	return false;
}

/* /proc's starttime unit: NSEC_PER_SEC / USER_HZ, USER_HZ being 100 on
 * x86 and arm64 (user space writes no self_start where it is not) */
#define BG_NSEC_PER_CLOCK_TICK 10000000ULL

/* Is `tgid` (whose task is `task`) bpfguard itself? */
static __always_inline bool bg_is_self(struct bg_scope_config *cfg, struct task_struct *task,
				       __u32 tgid)
{
	if (tgid != cfg->self_tgid)
		return false;
	return !cfg->self_start ||
	       BPF_CORE_READ(task, group_leader, start_boottime) / BG_NSEC_PER_CLOCK_TICK ==
		       cfg->self_start;
}

/* Is `task` (the current task) one bpfguard reports on? */
static __always_inline bool bg_in_scope(struct task_struct *task, __u32 tgid)
{
	struct bg_scope_config *cfg = bg_scope_cfg();
	__u32 flags;

	if (!cfg || bg_is_self(cfg, task, tgid))
		return false;
	flags = cfg->flags;
	if (!(flags & (BG_SCOPE_TGIDS | BG_SCOPE_CGROUPS | BG_SCOPE_MNTNS)))
		return true;
	if (flags & BG_SCOPE_TGIDS) {
		__u8 *st = bpf_map_lookup_elem(&scope_tgids, &tgid);

		if (st && *st == BG_SCOPE_ACTIVE)
			return true;
	}
	if ((flags & BG_SCOPE_CGROUPS) && bg_cgroup_in_scope(task))
		return true;
	if ((flags & (BG_SCOPE_MNTNS | BG_SCOPE_MNTNS_AT_EXEC)) == BG_SCOPE_MNTNS) {
		__u32 ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);

		if (bpf_map_lookup_elem(&scope_mntns, &ns))
			return true;
	}
	return false;
}

/* An ARMED tgid becomes ACTIVE when it execs, as does one that execs in a
 * scope_mntns namespace under BG_SCOPE_MNTNS_AT_EXEC; returns whether it just did. */
static __always_inline bool bg_scope_on_exec(struct task_struct *task, __u32 tgid)
{
	struct bg_scope_config *cfg;
	__u8 active = BG_SCOPE_ACTIVE;
	__u8 *st = bpf_map_lookup_elem(&scope_tgids, &tgid);
	__u32 ns;

	if (st && *st == BG_SCOPE_ARMED) {
		*st = BG_SCOPE_ACTIVE;
		return true;
	}
	cfg = bg_scope_cfg();
	if (!cfg || !(cfg->flags & BG_SCOPE_MNTNS_AT_EXEC) || (st && *st == BG_SCOPE_ACTIVE))
		return false;
	ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	if (!bpf_map_lookup_elem(&scope_mntns, &ns))
		return false;
	return bpf_map_update_elem(&scope_tgids, &tgid, &active, BPF_ANY) == 0;
}

/* A process leaves the pid scope when its last thread exits; returns whether it was in. */
static __always_inline bool bg_scope_on_exit(struct task_struct *task, __u32 tgid)
{
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return false;
	return bpf_map_delete_elem(&scope_tgids, &tgid) == 0;
}

/* Following forks, a process forked by an ACTIVE tgid joins; returns whether it did. */
static __always_inline bool bg_scope_on_fork(__u32 ptgid, __u32 tgid)
{
	struct bg_scope_config *cfg = bg_scope_cfg();
	__u8 active = BG_SCOPE_ACTIVE;
	__u8 *st;

	if (!cfg || !(cfg->flags & BG_SCOPE_FOLLOW))
		return false;
	st = bpf_map_lookup_elem(&scope_tgids, &ptgid);
	if (!st || *st != BG_SCOPE_ACTIVE)
		return false;
	return bpf_map_update_elem(&scope_tgids, &tgid, &active, BPF_ANY) == 0;
}

/* A syscall bitmap (BG_NR_MAX bits): the word of syscall `id`, and its bit. */
#define BG_WORD(id) (((id) >> 6) & (BG_NR_MAX / 64 - 1))
#define BG_BIT(id) (1ULL << ((id) & 63))

static __always_inline bool bg_bit_set(__u64 *set, long id)
{
	if ((__u64)id >= BG_NR_MAX)
		return false;
	return set[BG_WORD(id)] & BG_BIT(id);
}

#endif /* BPFGUARD_COMMON_BPF_H */
