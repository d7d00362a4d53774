// SPDX-License-Identifier: GPL-2.0
/* Kernel feature probe: one tiny program per feature (src/bpfguard/probe/).
 *
 * User space loads exactly one program per try (autoload off for the rest,
 * and only the maps it uses are created), so one refused feature never hides
 * another. Most programs count their runs from the probing thread only, so a
 * feature is reported available when it really ran, not just when it loaded.
 * Independent of the sensors' headers on purpose: the probe must build and
 * run on kernels the sensors cannot. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define BGP_EPERM 1
#define BGP_TC_ACT_OK 0
#define BGP_RING_MAGIC 0x6270667072696e67ULL /* "bpfpring" */

char LICENSE[] SEC("license") = "GPL";

/* Set before load by user space. */
const volatile __u32 targ_tid = 0;       /* the probing thread (host pid namespace) */
const volatile __u32 targ_kill_tgid = 0; /* send_signal: the child to signal */
const volatile __u32 targ_signal = 0;    /* send_signal: which signal */
/* fmod_ret/lsm: the inode whose open they deny, to targ_tid only. The inode
 * number alone (no device): st_dev is not s_dev on btrfs or overlayfs, and
 * the thread filter already confines the denial to the probe's own open. */
const volatile __u64 targ_deny_ino = 0;
/* write_user: where in the probing process to write, and what */
const volatile __u64 targ_write_addr = 0;
const volatile __u32 targ_write_value = 0;

/* Read by user space after the trigger. */
__u64 hits;
__u64 loop_sum;
__u64 storage_count;
long path_len;
char path[256];

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} bgp_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} bgp_tstore SEC(".maps");

/* Only the probing thread's own events count: the programs see the whole host. */
static __always_inline bool mine(void)
{
	return (__u32)bpf_get_current_pid_tgid() == targ_tid;
}

/* fmod_ret/lsm deny only this file, so a probe can never break anyone else. */
static __always_inline bool deny_this(struct file *file)
{
	return mine() && file->f_inode->i_ino == targ_deny_ino;
}

SEC("raw_tp/sys_enter")
int bgp_raw_tp(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(bgp_tp_btf, struct pt_regs *regs, long id)
{
	if (mine())
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

/* raw_syscalls exists wherever syscall tracepoints do (syscalls/ needs FTRACE_SYSCALLS). */
SEC("tracepoint/raw_syscalls/sys_enter")
int bgp_tracepoint(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("fentry/security_file_open")
int BPF_PROG(bgp_fentry, struct file *file)
{
	if (mine())
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("fexit/security_file_open")
int BPF_PROG(bgp_fexit, struct file *file, int ret)
{
	if (mine())
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

/* fmod_ret may target security_* and error-injectable functions; a non-zero
 * return skips the function and becomes its result. */
SEC("fmod_ret/security_file_open")
int BPF_PROG(bgp_fmod_ret, struct file *file, int ret)
{
	if (ret || !deny_this(file))
		return ret;
	__sync_fetch_and_add(&hits, 1);
	return -BGP_EPERM;
}

SEC("lsm/file_open")
int BPF_PROG(bgp_lsm, struct file *file, int ret)
{
	if (ret || !deny_this(file))
		return ret;
	__sync_fetch_and_add(&hits, 1);
	return -BGP_EPERM;
}

/* bpf_d_path is allowed only where the path is known to be stable
 * (an allowlist of fentry targets, sleepable LSM hooks, iterators). */
SEC("fentry/security_file_open")
int BPF_PROG(bgp_d_path, struct file *file)
{
	/* f_path is const in newer kernels; the helper's prototype is not */
	if (mine())
		path_len = bpf_d_path((struct path *)&file->f_path, path, sizeof(path));
	return 0;
}

/* Retargeted from user space (generic section: no fixed function). */
SEC("kprobe")
int bgp_kprobe(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("uprobe")
int bgp_uprobe(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

/* bpf_probe_write_user: lockdown (integrity and up) refuses the helper at
 * load, so a program holding it never loads there. */
SEC("uprobe")
int bgp_write_user(void *ctx)
{
	__u32 value = targ_write_value;

	if (mine() && bpf_probe_write_user((void *)targ_write_addr, &value, sizeof(value)) == 0)
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("cgroup/connect4")
int bgp_cgroup(struct bpf_sock_addr *ctx)
{
	return 1; /* allow */
}

SEC("xdp")
int bgp_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int bgp_tc(struct __sk_buff *skb)
{
	return BGP_TC_ACT_OK;
}

SEC("raw_tp/sys_enter")
int bgp_ringbuf(void *ctx)
{
	__u64 *rec;

	if (!mine())
		return 0;
	rec = bpf_ringbuf_reserve(&bgp_ring, sizeof(*rec), 0);
	if (!rec)
		return 0; /* full: one delivered record is all the probe needs */
	*rec = BGP_RING_MAGIC;
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

/* Signals the child at its first syscall after attach; user space checks it
 * died of exactly that signal. */
SEC("raw_tp/sys_enter")
int bgp_send_signal(void *ctx)
{
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != targ_kill_tgid)
		return 0;
	if (bpf_send_signal(targ_signal) == 0)
		__sync_fetch_and_add(&hits, 1);
	return 0;
}

/* As the syscall sensor uses it: tp_btf, the current task's BTF pointer,
 * created on first use; the count proves the value persists across calls. */
SEC("tp_btf/sys_enter")
int BPF_PROG(bgp_tstorage, struct pt_regs *regs, long id)
{
	__u64 *count;

	if (!mine())
		return 0;
	count = bpf_task_storage_get(&bgp_tstore, bpf_get_current_task_btf(), 0,
				     BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!count)
		return 0;
	*count += 1;
	storage_count = *count;
	return 0;
}

static long loop_step(__u32 i, void *ctx)
{
	*(__u64 *)ctx += i + 1;
	return 0;
}

SEC("raw_tp/sys_enter")
int bgp_bpf_loop(void *ctx)
{
	__u64 sum = 0;

	if (!mine())
		return 0;
	bpf_loop(4, loop_step, &sum, 0); /* 1 + 2 + 3 + 4 */
	loop_sum = sum;
	return 0;
}
