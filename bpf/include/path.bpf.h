/* SPDX-License-Identifier: GPL-2.0 */
/* Resolving struct path / struct file / fds from kernel objects.
 *
 * bpf_d_path is refused in tracepoints, so paths are built by walking the
 * dentry chain and crossing mounts through struct mount, as d_path does
 * (see Falco's auxmap__store_d_path_approx and Tetragon's bpf_d_path.h).
 * Differences from d_path: components are emitted leaf first and joined in
 * user space; pseudo files (pipe, socket, anon inode) are named there from
 * fs_magic and ino; names longer than BG_NAME_MAX - 1 are cut; paths deeper
 * than BG_PATH_DEPTH are flagged BG_FILE_TRUNCATED. */
#ifndef BPFGUARD_PATH_BPF_H
#define BPFGUARD_PATH_BPF_H

#include "common.bpf.h"

#define BG_S_IFMT 00170000
#define BG_S_IFSOCK 0140000
#define BG_AF_INET 2
#define BG_AF_INET6 10

/* The payload as a global function sees it: big enough for a masked offset
 * plus one component, so the verifier can check writes without caller state. */
struct bg_area {
	__u8 b[BG_DATA_LIMIT + BG_STR_MAX];
};

struct bg_file_req {
	__u64 task; /* struct task_struct *: whose root ends the walk */
	__u64 file; /* struct file *, or 0 to use path */
	__u64 path; /* struct path * */
	__u32 pos;  /* payload offset to write components at */
	__u32 pad;
};

/* Family, protocol, state, addresses and ports of a struct sock. */
static __always_inline void bg_sock_read(struct sock *sk, struct bg_sock *s)
{
	s->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	s->type = BPF_CORE_READ(sk, sk_type);
	s->protocol = BPF_CORE_READ(sk, sk_protocol);
	s->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	s->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	s->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (s->family == BG_AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)s->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)s->raddr, sk, __sk_common.skc_daddr);
	} else if (s->family == BG_AF_INET6) {
		BPF_CORE_READ_INTO(&s->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&s->raddr, sk, __sk_common.skc_v6_daddr);
	}
}

static __always_inline void bg_sock_info(struct file *file, struct bg_file *out)
{
	struct socket *sock = BPF_CORE_READ(file, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);

	if (!sk)
		return;
	out->flags |= BG_FILE_SOCKET;
	bg_sock_read(sk, &out->sock);
}

/* Fills `out` for req->file (or req->path) as seen from req->task's root and
 * returns the payload offset after the components. A global function: the
 * verifier checks it once, not once per call site and caller state. */
__noinline int bg_resolve(struct bg_area *a, struct bg_file_req *req, struct bg_file *out)
{
	struct task_struct *task;
	struct file *file;
	const struct path *path;
	struct dentry *d, *root_dentry, *parent, *mnt_root;
	struct vfsmount *vfsmnt, *root_mnt;
	struct mount *mnt;
	struct inode *inode;
	__u32 pos, nlink;
	int i;

	if (!a || !req || !out)
		return 0;
	pos = req->pos;
	task = (void *)req->task;
	file = (void *)req->file;
	path = file ? __builtin_preserve_access_index(&file->f_path) : (void *)req->path;
	if (!path)
		return pos;
	d = BPF_CORE_READ(path, dentry);
	if (!d)
		return pos;
	inode = BPF_CORE_READ(d, d_inode);
	out->ino = BPF_CORE_READ(inode, i_ino);
	out->mode = BPF_CORE_READ(inode, i_mode);
	nlink = BPF_CORE_READ(inode, i_nlink);
	out->nlink = nlink > 0xffff ? 0xffff : nlink;
	out->dev = BPF_CORE_READ(d, d_sb, s_dev);
	out->fs_magic = BPF_CORE_READ(d, d_sb, s_magic);
	out->flags = BG_FILE_VALID;
	/* d_unlinked(): unhashed and not a root */
	if (!BPF_CORE_READ(d, d_hash.pprev) && BPF_CORE_READ(d, d_parent) != d)
		out->flags |= BG_FILE_DELETED;
	if (file && (out->mode & BG_S_IFMT) == BG_S_IFSOCK)
		bg_sock_info(file, out);

	vfsmnt = BPF_CORE_READ(path, mnt);
	mnt = container_of(vfsmnt, struct mount, mnt);
	root_dentry = BPF_CORE_READ(task, fs, root.dentry);
	root_mnt = BPF_CORE_READ(task, fs, root.mnt);
	out->name.off = pos;
	out->name.len = 0;
	out->depth = 0;
	for (i = 0; i < BG_PATH_DEPTH; i++) {
		const unsigned char *name;
		__u32 cur;
		long n;

		if (d == root_dentry && vfsmnt == root_mnt)
			break; /* the task's root: done */
		mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
		if (d == mnt_root) {
			struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

			if (up == mnt) {
				/* a mount without parent that is not the task's root */
				out->flags |= BG_FILE_DETACHED;
				break;
			}
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			vfsmnt = __builtin_preserve_access_index(&up->mnt);
			if (i == BG_PATH_DEPTH - 1 && !(d == root_dentry && vfsmnt == root_mnt))
				out->flags |= BG_FILE_TRUNCATED;
			continue;
		}
		/* The cursor lives in memory, not a register: read back, it is an
		 * unknown scalar, so loop states differing only in it are pruned
		 * instead of multiplying with every branch. */
		cur = pos + *(volatile __u16 *)&out->name.len;
		if (cur + BG_NAME_MAX > BG_DATA_LIMIT) {
			out->flags |= BG_FILE_TRUNCATED;
			break;
		}
		name = BPF_CORE_READ(d, d_name.name);
		n = bpf_probe_read_kernel_str(a->b + (cur & BG_DATA_MASK), BG_NAME_MAX, name);
		if (n <= 0)
			break;
		out->name.len += n;
		out->depth++;
		parent = BPF_CORE_READ(d, d_parent);
		if (parent == d) {
			/* a pseudo dentry (pipe, socket, memfd, anon inode) is its own parent */
			out->flags |= BG_FILE_DETACHED | BG_FILE_PSEUDO;
			break;
		}
		d = parent;
		/* the loop's last step short of the root: the innermost names only */
		if (i == BG_PATH_DEPTH - 1 && !(d == root_dentry && vfsmnt == root_mnt))
			out->flags |= BG_FILE_TRUNCATED;
	}
	return pos + out->name.len;
}

static __always_inline int bg_resolve_any(struct task_struct *task, struct file *file,
					  const struct path *path, struct bg_payload *p,
					  struct bg_file *out)
{
	struct bg_file_req req = {
		.task = (__u64)task,
		.file = (__u64)file,
		.path = (__u64)path,
		.pos = p->pos,
	};

	if (!file && !path)
		return -1;
	p->pos = bg_resolve((struct bg_area *)p->data, &req, out);
	if (out->flags & BG_FILE_TRUNCATED)
		p->trunc = 1;
	return 0;
}

static __always_inline int bg_resolve_file(struct task_struct *task, struct file *file,
					   struct bg_payload *p, struct bg_file *out)
{
	return file ? bg_resolve_any(task, file, NULL, p, out) : -1;
}

static __always_inline struct file *bg_fd_file(struct task_struct *task, long fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

static __always_inline int bg_resolve_fd(struct task_struct *task, long fd, struct bg_payload *p,
					 struct bg_file *out)
{
	return bg_resolve_file(task, bg_fd_file(task, fd), p, out);
}

static __always_inline int bg_resolve_cwd(struct task_struct *task, struct bg_payload *p,
					  struct bg_file *out)
{
	struct fs_struct *fs = BPF_CORE_READ(task, fs);

	return bg_resolve_any(task, NULL, __builtin_preserve_access_index(&fs->pwd), p, out);
}

static __always_inline int bg_resolve_fd_or_cwd(struct task_struct *task, int fd,
						struct bg_payload *p, struct bg_file *out)
{
	if (fd == -100 /* AT_FDCWD */)
		return bg_resolve_cwd(task, p, out);
	return bg_resolve_fd(task, fd, p, out);
}

static __always_inline int bg_resolve_exe(struct task_struct *task, struct bg_payload *p,
					  struct bg_file *out)
{
	return bg_resolve_file(task, BPF_CORE_READ(task, mm, exe_file), p, out);
}

#endif /* BPFGUARD_PATH_BPF_H */
