/* SPDX-License-Identifier: GPL-2.0 */
/* io_uring: requests that do what a traced syscall does, reported as that
 * syscall (flagged BG_EV_IO_URING), so the rules that watch openat, connect,
 * unlinkat, ... see them. Without kprobes, from the io_uring tracepoints:
 *
 *  - submit (io_uring_submit_req; io_uring_submit_sqe before 6.4), in the
 *    submitting thread, after the request's prep copied its path strings
 *    into the kernel (struct filename): the arguments, and those strings, are
 *    stashed by request address. The rules pushdown does not run here: its
 *    selector engine would be verified again in both programs (more than
 *    doubling the sensor's load time), for requests far rarer than syscalls;
 *    every request of a traced syscall reaches user space, whose rules
 *    decide;
 *  - complete (io_uring_complete), where the result is posted, in a thread
 *    that shares the submitter's files (itself, an io-wq worker, the SQPOLL
 *    thread; a kworker while it exits): the stash is taken back and the event
 *    completed as a syscall exit is, from kernel objects: the returned fd's
 *    file from the fd table, an fd argument's from the request's own file
 *    (a registered file's too), a relative path's base from the dirfd.
 *
 * The event names the submitter (its header is filled at submit), and fds
 * are looked up only in the submitter's table. Not seen: a completion that
 * overflows the CQ ring (traced without its request; its stash stays until
 * the request's memory is reused, whose submit deletes it).
 * A request that posts no completion when it succeeds (IOSQE_CQE_SKIP_SUCCESS)
 * is reported at submission instead, its result unknown (0, flag
 * BG_EV_NO_COMPLETION), its fd arguments and relative paths resolved then.
 * Not seen: the completions a multishot accept posts before its last (the
 * kernel traces them without their request). An open or accept into a
 * registered file slot (file_index) returns no fd: its file is named from
 * the path string (flag BG_EV_FIXED_RESULT). At most BG_IOU_INFLIGHT
 * requests of interest are stashed at once: past that, a request is counted
 * as a BG_DROP_IO_URING drop at submit. */
#ifndef BPFGUARD_LIB_IO_URING_BPF_H
#define BPFGUARD_LIB_IO_URING_BPF_H

#include "syscalls.bpf.h"

/* Opcodes mapped to syscalls: IORING_OP_* below this (UAPI numbering). */
#define BG_IOU_OPS 64
/* Requests of interest stashed between submit and completion at once
 * (allocated as they come: about 8 KiB each). */
#define BG_IOU_INFLIGHT 1024

/* The syscall number each opcode is reported as, per architecture: set by
 * user space from its syscall table (BG_NR_MAX: not reported). */
const volatile __u32 targ_iou_nr[BG_IOU_OPS];

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, BG_IOU_INFLIGHT);
	__type(key, __u64); /* the request's address */
	__type(value, struct bg_stash);
} iou_stash SEC(".maps");

/* req->flags (REQ_F_*), whose low bits are the sqe's IOSQE_* flags */
#define BG_REQ_F_FIXED_FILE (1 << 0) /* IOSQE_FIXED_FILE */
#define BG_REQ_F_CQE_SKIP (1 << 6)   /* IOSQE_CQE_SKIP_SUCCESS */

/* The request's command data (struct io_open, io_rename, ...), which the
 * kernel overlays on the start of the request. */
#define BG_IOU_CMD(req) ((void *)(req) + bpf_core_field_offset(struct io_kiocb, cmd))

/* Copies a kernel struct filename's name into the stash as argument i, as
 * bg_stash_str does a user string; the argument keeps the user address it
 * was read from. A global function (verified once, not per opcode): the
 * filename comes as an address. */
__noinline __u32 bg_iou_name(struct bg_stash *st, __u32 pos, __u64 fn_addr, __u32 i)
{
	struct filename *fn = (void *)fn_addr;
	__u64 max;
	long n;

	if (!st || i >= BG_ARGC)
		return pos;
	st->args[i] = (__u64)BPF_CORE_READ(fn, uptr);
	if (pos > BG_STASH_MASK) {
		st->flags |= BG_EV_TRUNCATED;
		return pos;
	}
	max = targ_str_max;
	bg_clamp(max, BG_STR_MAX);
	n = bpf_probe_read_kernel_str(st->data + (pos & BG_STASH_MASK), max, BPF_CORE_READ(fn, name));
	if (n < 0)
		n = 0;
	st->arg_data[i].off = pos;
	st->arg_data[i].len = n;
	return pos + n;
}

/* The syscall arguments of request `req` with opcode op, as the syscall it is
 * reported as takes them (syscall_specs.py); strings into the stash. False
 * for an opcode this does not know how to read (then not reported, whatever
 * user space mapped it to). */
static __always_inline bool bg_iou_args(struct bg_stash *st, struct io_kiocb *req, __u8 op)
{
	void *cmd = BG_IOU_CMD(req);
	__u32 pos = 0;
	__u32 fd = BPF_CORE_READ(req, cqe.fd); /* the sqe's fd, until the result replaces it */

	switch (op) {
	case IORING_OP_OPENAT:
	case IORING_OP_OPENAT2: {
		struct io_open *o = cmd;

		st->args[0] = (__u64)(__s64)BPF_CORE_READ(o, dfd);
		pos = bg_iou_name(st, pos, (__u64)BPF_CORE_READ(o, filename), 1);
		st->args[2] = BPF_CORE_READ(o, how.flags);
		st->args[3] = op == IORING_OP_OPENAT ? BPF_CORE_READ(o, how.mode)
						     : bpf_core_type_size(struct open_how);
		if (BPF_CORE_READ(o, file_slot))
			st->flags |= BG_EV_FIXED_RESULT;
		break;
	}
	case IORING_OP_UNLINKAT: {
		struct io_unlink *u = cmd;

		st->args[0] = (__u64)(__s64)BPF_CORE_READ(u, dfd);
		pos = bg_iou_name(st, pos, (__u64)BPF_CORE_READ(u, filename), 1);
		st->args[2] = BPF_CORE_READ(u, flags);
		break;
	}
	case IORING_OP_MKDIRAT: {
		struct io_mkdir *m = cmd;

		st->args[0] = (__u64)(__s64)BPF_CORE_READ(m, dfd);
		pos = bg_iou_name(st, pos, (__u64)BPF_CORE_READ(m, filename), 1);
		st->args[2] = BPF_CORE_READ(m, mode);
		break;
	}
	case IORING_OP_RENAMEAT: {
		struct io_rename *r = cmd;

		st->args[0] = (__u64)(__s64)BPF_CORE_READ(r, old_dfd);
		pos = bg_iou_name(st, pos, (__u64)BPF_CORE_READ(r, oldpath), 1);
		st->args[2] = (__u64)(__s64)BPF_CORE_READ(r, new_dfd);
		pos = bg_iou_name(st, pos, (__u64)BPF_CORE_READ(r, newpath), 3);
		st->args[4] = BPF_CORE_READ(r, flags);
		break;
	}
	case IORING_OP_LINKAT: {
		struct io_link *l = cmd;

		st->args[0] = (__u64)(__s64)BPF_CORE_READ(l, old_dfd);
		pos = bg_iou_name(st, pos, (__u64)BPF_CORE_READ(l, oldpath), 1);
		st->args[2] = (__u64)(__s64)BPF_CORE_READ(l, new_dfd);
		pos = bg_iou_name(st, pos, (__u64)BPF_CORE_READ(l, newpath), 3);
		st->args[4] = BPF_CORE_READ(l, flags);
		break;
	}
	case IORING_OP_SYMLINKAT: {
		struct io_link *l = cmd;

		pos = bg_iou_name(st, pos, (__u64)BPF_CORE_READ(l, oldpath), 0); /* the target */
		st->args[1] = (__u64)(__s64)BPF_CORE_READ(l, new_dfd);
		pos = bg_iou_name(st, pos, (__u64)BPF_CORE_READ(l, newpath), 2);
		break;
	}
	case IORING_OP_CONNECT: {
		struct io_connect *c = cmd;
		__u32 len = BPF_CORE_READ(c, addr_len);

		st->args[0] = fd;
		st->args[1] = (__u64)BPF_CORE_READ(c, addr);
		st->args[2] = len;
		pos = bg_stash_bytes(st, pos, (void *)st->args[1], len, &st->arg_data[1]);
		break;
	}
	case IORING_OP_ACCEPT: {
		struct io_accept *a = cmd;

		st->args[0] = fd;
		st->args[1] = (__u64)BPF_CORE_READ(a, addr);
		st->args[2] = (__u64)BPF_CORE_READ(a, addr_len);
		st->args[3] = BPF_CORE_READ(a, flags);
		if (BPF_CORE_READ(a, file_slot))
			st->flags |= BG_EV_FIXED_RESULT;
		break;
	}
	case IORING_OP_SOCKET: {
		struct io_socket *so = cmd;

		st->args[0] = BPF_CORE_READ(so, domain);
		st->args[1] = BPF_CORE_READ(so, type);
		st->args[2] = BPF_CORE_READ(so, protocol);
		if (BPF_CORE_READ(so, file_slot))
			st->flags |= BG_EV_FIXED_RESULT;
		break;
	}
	case IORING_OP_READ:
	case IORING_OP_READ_FIXED:
	case IORING_OP_READV:
	case IORING_OP_WRITE:
	case IORING_OP_WRITE_FIXED:
	case IORING_OP_WRITEV: { /* fd, buffer (or iovec array), length (or count) */
		struct io_rw *rw = cmd;

		st->args[0] = fd;
		st->args[1] = BPF_CORE_READ(rw, addr);
		st->args[2] = BPF_CORE_READ(rw, len);
		break;
	}
	default:
		return false;
	}
	st->data_len = pos;
	return true;
}

static __always_inline __u32 bg_iou_index(struct io_kiocb *req, __u8 *op)
{
	*op = BPF_CORE_READ(req, opcode);
	return *op < BG_IOU_OPS ? targ_iou_nr[*op & (BG_IOU_OPS - 1)] : BG_NR_MAX;
}

static __noinline int bg_iou_submit(struct io_kiocb *req)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_syscall_route *route;
	struct bg_syscall_spec *spec;
	struct bg_scratch *s;
	struct bg_stash *st;
	__u64 key = (__u64)req;
	__u32 idx, rflags = 0;
	__u8 op;

	idx = bg_iou_index(req, &op);
	if (idx >= BG_NR_MAX || !(interest[BG_WORD(idx)] & BG_BIT(idx)))
		return 0;
	/* a request this address held before may have left a stash (one whose
	 * completion was not traced: a CQ overflow): this one must not meet it */
	bpf_map_delete_elem(&iou_stash, &key);
	if (!bg_in_scope(task, task->tgid))
		return 0;
	route = bpf_map_lookup_elem(&routes, &idx);
	if (!route || !route->spec.enabled)
		return 0;
	spec = &route->spec;
	s = bg_scratch(BG_SCRATCH_IOU_SUBMIT);
	if (!s)
		return 0;
	st = (void *)s->buf;
	__builtin_memset(st, 0, offsetof(struct bg_stash, data));
	st->nr = idx;
	st->gen = spec->gen;
	st->flags = BG_EV_IO_URING;
	/* the low half of the word (io_req_flags_t is 64 bits since 6.9) */
	bpf_probe_read_kernel(&rflags, sizeof(rflags), __builtin_preserve_access_index(&req->flags));
	/* its success posts no completion: reported now, its result unknown */
	if (rflags & BG_REQ_F_CQE_SKIP)
		st->flags |= BG_EV_NO_COMPLETION | BG_EV_FIXED_RESULT;
	if (rflags & BG_REQ_F_FIXED_FILE)
		st->flags |= BG_EV_FIXED_FILE;
	st->enter_ns = bpf_ktime_get_boot_ns();
	st->user_data = BPF_CORE_READ(req, cqe.user_data);
	st->files = (__u64)BPF_CORE_READ(task, files);
	/* the submitter: a completion may run in another thread of it, or in a
	 * kworker while it exits. ring_full stays 0: the arguments are read
	 * here whatever the ring, and the completion tests the ring itself. */
	bg_fill_header(&st->hdr, task, BG_EVENT_SYSCALL);
	if (!bg_iou_args(st, req, op))
		return 0;
	if (st->flags & BG_EV_NO_COMPLETION)
		return bg_exit_stash(task, st, spec, 0, BG_SCRATCH_IOU_NOCQE, NULL, false);
	if (bpf_map_update_elem(&iou_stash, &key, st, BPF_ANY))
		bg_count_drop(BG_DROP_IO_URING);
	return 0;
}

static __noinline int bg_iou_complete(struct io_kiocb *req)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct bg_syscall_route *route;
	struct bg_stash *st;
	__u64 key = (__u64)req;
	__u32 idx;
	__u8 op;

	if (!req)
		return 0; /* a completion no request posted (an overflow, a message) */
	st = bpf_map_lookup_elem(&iou_stash, &key);
	if (!st)
		return 0; /* not wanted at submit, or submitted before the sensor loaded */
	/* the kernel recycles requests: a stash some earlier request at this
	 * address left (one whose completion this program did not see) has
	 * another user_data, or another opcode */
	idx = bg_iou_index(req, &op);
	route = bpf_map_lookup_elem(&routes, &idx);
	if (idx < BG_NR_MAX && route && st->nr == idx && route->spec.gen == st->gen &&
	    st->user_data == BPF_CORE_READ(req, cqe.user_data) &&
	    (interest[BG_WORD(idx)] & BG_BIT(idx)))
		bg_exit_stash(task, st, &route->spec, BPF_CORE_READ(req, cqe.res),
			      BG_SCRATCH_IOU_COMPLETE, BPF_CORE_READ(req, file), false);
	bpf_map_delete_elem(&iou_stash, &key);
	return 0;
}

#endif /* BPFGUARD_LIB_IO_URING_BPF_H */
