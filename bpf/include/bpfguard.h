/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The wire ABI between bpfguard's kernel sensors and its user space.
 *
 * This header is the single source of truth: user space derives every struct
 * layout and enum below from the compiled objects' BTF
 * (src/bpfguard/loader/btf.py), never from a hand-written twin. Fixed-width
 * types only. Variable-length payloads (strings, path components, argv) follow
 * the fixed part of an event in `data[]` and are addressed by struct bg_blob.
 */
#ifndef BPFGUARD_H
#define BPFGUARD_H

#define BG_COMM_LEN 16
/* Payload bytes one event may carry after its fixed part. Power of two: offsets
 * into the payload are masked with BG_DATA_MASK so the verifier can bound them. */
#define BG_DATA_LIMIT 16384
#define BG_DATA_MASK (BG_DATA_LIMIT - 1)
/* Upper bound of one user string read (a path argument); the run-time bound is
 * the .rodata knob targ_str_max. */
#define BG_STR_MAX 4096
/* Longest dentry / kernfs name copied per path component (NAME_MAX + NUL). */
#define BG_NAME_MAX 256
/* Path components walked per path; deeper paths are flagged truncated. */
#define BG_PATH_DEPTH 96
/* argv bytes copied at exec; longer command lines are flagged truncated. */
#define BG_ARGS_MAX 4096
/* Environment bytes copied at exec when asked for (targ_env_max), likewise. */
#define BG_ENV_MAX 4096
/* Syscall numbers covered per architecture; compat (32-bit) ids live at +BG_NR_MAX. */
#define BG_NR_MAX 512
#define BG_ARGC 6

enum bg_event_type {
	BG_EVENT_EXEC = 1,
	BG_EVENT_FORK = 2,
	BG_EVENT_EXIT = 3,
	BG_EVENT_SYSCALL = 4,
};

/* Header flags. */
enum bg_event_flags {
	BG_EV_TRUNCATED = 1 << 0, /* the payload did not fit BG_DATA_LIMIT */
	BG_EV_COMPAT = 1 << 1,    /* 32-bit (ia32) syscall ABI */
	BG_EV_NO_ENTRY = 1 << 2,  /* syscall exit seen without its entry */
};

/* Why an event never reached user space; counted per CPU in the `drops` map. */
enum bg_drop_reason {
	BG_DROP_RINGBUF_FULL = 0, /* ring buffer full: user space is behind */
	BG_DROP_NO_SCRATCH = 1,   /* per-CPU scratch unavailable */
	BG_DROP_STASH_ALLOC = 2,  /* task storage for a syscall entry not allocated */
	BG_DROP_MAX = 3,
};

struct bg_blob {
	__u16 off; /* from the start of the event's data[] */
	__u16 len;
};

struct bg_event_header {
	__u64 ktime_ns; /* CLOCK_BOOTTIME */
	__u32 size;     /* bytes of the whole record */
	__u16 type;     /* enum bg_event_type */
	__u16 flags;    /* enum bg_event_flags */
	__u32 tgid;
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u32 euid; /* effective ids: what permission checks (and Falco's user.uid) use */
	__u32 egid;
	__u64 cgroup_id; /* cgroup v2 id */
	char comm[BG_COMM_LEN];
};

enum bg_file_flags {
	BG_FILE_VALID = 1 << 0,     /* resolved from a kernel object */
	BG_FILE_DELETED = 1 << 1,   /* the dentry is unlinked (d_path's " (deleted)") */
	BG_FILE_TRUNCATED = 1 << 2, /* more than BG_PATH_DEPTH components or no room */
	BG_FILE_SOCKET = 1 << 3,    /* sock is filled */
	BG_FILE_DETACHED = 1 << 4,  /* the walk ended at a root that is not the task's root
				     * (internal mount: memfd, pipe, anon inode; or outside a chroot) */
	BG_FILE_PSEUDO = 1 << 5,    /* a pseudo dentry (its own parent, from alloc_file_pseudo):
				     * d_path names it by d_dname, e.g. "/memfd:x (deleted)" */
};

struct bg_sock {
	__u16 family;
	__u16 type;
	__u16 protocol;
	__u16 state;
	__u16 lport; /* host byte order */
	__u16 rport;
	__u8 laddr[16]; /* IPv4 in the first 4 bytes */
	__u8 raddr[16];
};

/* What a path, fd or cwd refers to, read from kernel objects. */
struct bg_file {
	__u64 ino;
	__u32 dev;
	__u32 fs_magic;
	__u32 mode;
	__u16 flags; /* enum bg_file_flags */
	__u16 depth; /* components in name */
	struct bg_blob name; /* components, leaf first, each NUL-terminated */
	struct bg_sock sock;
};

enum bg_exec_flags {
	BG_EXEC_ARGS_TRUNCATED = 1 << 0,
	BG_EXEC_CGROUP_TRUNCATED = 1 << 1,
	BG_EXEC_ENV_TRUNCATED = 1 << 2,
};

struct bg_exec_event {
	struct bg_event_header hdr;
	__u64 start_ns; /* task start, CLOCK_BOOTTIME; with tgid, the process identity */
	__u32 ppid;
	__u32 old_tid; /* exec from a non-leader thread: its former tid */
	__u32 euid;
	__u32 egid;
	__u32 loginuid;
	__u32 sessionid;
	__u64 cap_effective;
	__u64 cap_permitted;
	__u32 mntns;
	__u32 pidns;
	__u32 netns;
	__u32 userns;
	__u32 cgroupns;
	__u32 exec_flags; /* enum bg_exec_flags */
	__u32 argc;
	__u32 sid;     /* session id, in the initial pid namespace */
	__u32 pgid;    /* process group id, likewise */
	__u32 exe_uid; /* owner of the executable's inode */
	__u32 exe_gid;
	__u32 tty_dev; /* controlling terminal, MKDEV(major, minor); 0 for none */
	__u32 pad;
	struct bg_file exe;   /* mm->exe_file */
	struct bg_file cwd;   /* fs->pwd */
	struct bg_blob args;  /* argv, NUL-separated */
	struct bg_blob filename; /* bprm->filename: the name execve was given */
	struct bg_blob cgroup; /* cgroup v2 path components, leaf first, NUL-terminated */
	struct bg_blob tty;
	struct bg_blob env; /* environment, NUL-separated; empty unless targ_env_max > 0 */
	__u8 data[];
};

struct bg_fork_event {
	struct bg_event_header hdr; /* the child */
	__u64 start_ns;
	__u32 ppid;
	__u32 pad;
	__u8 data[];
};

struct bg_exit_event {
	struct bg_event_header hdr;
	__u64 start_ns;
	__u32 ppid;
	__u32 exit_code; /* wait(2) status: exit status << 8 | terminating signal */
	__u8 data[];
};

/* How the syscall sensor treats one argument (set per syscall in user space). */
enum bg_arg_kind {
	BG_ARG_NONE = 0,
	BG_ARG_INT = 1,      /* signed integer */
	BG_ARG_UINT = 2,     /* unsigned integer, flags, mode */
	BG_ARG_PTR = 3,      /* an address, kept as is */
	BG_ARG_FD = 4,       /* resolved at exit to what the fd refers to */
	BG_ARG_DIRFD = 5,    /* base of the PATH_AT argument after it */
	BG_ARG_PATH = 6,     /* user string read at entry; when relative, the cwd is
			      * resolved at exit into the argument's arg_file */
	BG_ARG_PATH_AT = 7,  /* as PATH, relative to the DIRFD argument before it
			      * (AT_FDCWD: the cwd) */
	BG_ARG_SOCKADDR = 8, /* user sockaddr read at entry; length from the next argument */
	BG_ARG_STR = 9,      /* user string read at entry */
	BG_ARG_OPEN_HOW = 10, /* openat2's struct open_how: its flags word, read at entry,
			       * replaces the pointer */
};

enum bg_ret_kind {
	BG_RET_INT = 0,  /* errno when negative */
	BG_RET_FD = 1,   /* a new fd, resolved at exit */
	BG_RET_EXEC = 2, /* execve: the new mm->exe_file */
};

/* In-kernel pre-filter of one syscall, derived from the rules that can match
 * it (rules pushdown): an event is dropped in the kernel only when no rule
 * could match it. With no flag set, nothing is filtered. */
enum bg_push_flags {
	BG_PUSH_SUCCESS = 1 << 0, /* with BG_PUSH_FAILURE: keep by result, ret >= 0 ... */
	BG_PUSH_FAILURE = 1 << 1, /* ... or ret < 0; neither bit: any result */
	BG_PUSH_COMM = 1 << 2,    /* keep only tasks whose comm is in push_comms for it */
	BG_PUSH_EUID = 1 << 3,    /* keep only effective uids in push_euids for it */
	BG_PUSH_ACCMODE = 1 << 4, /* keep only open access modes (O_ACCMODE) in `accmodes` */
	BG_PUSH_FLAGS = 1 << 5,   /* open flags: keep when none of `flags_none` is set and
				   * all of `flags_all` are (Falco types an opened fd by
				   * O_DIRECTORY: 'd' with it, 'f' without) */
};

/* Events the pushdown filtered out, per CPU (not losses: no rule wanted them). */
enum bg_push_stat {
	BG_PUSHED_AT_ENTRY = 0,
	BG_PUSHED_AT_EXIT = 1,
	BG_PUSHED_MAX = 2,
};

struct bg_syscall_spec {
	__u8 enabled;
	__u8 ret;           /* enum bg_ret_kind */
	__u8 arg[BG_ARGC]; /* enum bg_arg_kind */
	__u8 push;          /* enum bg_push_flags */
	__u8 flags_arg;     /* BG_PUSH_ACCMODE: the argument holding open(2) flags */
	__u8 accmodes;      /* BG_PUSH_ACCMODE: bit (1 << (flags & O_ACCMODE)) kept */
	__u8 pad;
	__u32 flags_none;   /* BG_PUSH_FLAGS */
	__u32 flags_all;
};

/* Entries of push_comms and push_euids: (syscall, name) and (syscall, euid) pairs. */
#define BG_PUSH_SET_MAX 16384

struct bg_push_comm_key {
	__u32 idx; /* syscall number, + BG_NR_MAX for compat */
	char comm[BG_COMM_LEN];
};

struct bg_push_euid_key {
	__u32 idx;
	__u32 euid;
};

struct bg_syscall_event {
	struct bg_event_header hdr; /* ktime_ns is the exit time */
	__u64 enter_ns;
	__s64 ret;
	__u64 args[BG_ARGC];
	__u32 nr;
	/* bit i: argument i's string was unreadable at entry (its page was not
	 * resident; BPF cannot fault it in) and was read at exit instead, after
	 * the kernel used it: for such strings the TOCTOU guarantee is weaker */
	__u16 late_args;
	__u16 pad;
	struct bg_blob arg_data[BG_ARGC]; /* user string / sockaddr read at entry */
	struct bg_file arg_file[BG_ARGC]; /* an fd's file, or a relative path's base, at exit */
	struct bg_file ret_file;          /* returned fd or new executable, resolved at exit */
	__u8 data[];
};

/* Scope: which processes the sensors report. With no flag set, all of them. */
enum bg_scope_flags {
	BG_SCOPE_TGIDS = 1 << 0,   /* tgid in scope_tgids */
	BG_SCOPE_CGROUPS = 1 << 1, /* cgroup v2 id in scope_cgroups */
	BG_SCOPE_MNTNS = 1 << 2,   /* mount namespace inode in scope_mntns */
	BG_SCOPE_FOLLOW = 1 << 3,  /* children of an in-scope tgid join scope_tgids */
};

enum bg_scope_state {
	BG_SCOPE_ACTIVE = 1,
	BG_SCOPE_ARMED = 2, /* becomes active at the task's next execve: `trace -- CMD` opens
			     * its window at CMD's exec, so the launcher's own syscalls never show */
};

struct bg_scope_config {
	__u32 flags;     /* enum bg_scope_flags */
	__u32 self_tgid; /* bpfguard itself: never reported */
};

/* Seccomp recorder (seccomp.bpf.c): which argument value it collects, per
 * syscall, for argument rules. */
enum bg_watch {
	BG_WATCH_NONE = 0,
	BG_WATCH_ARG0 = 1,   /* argument i is BG_WATCH_ARG0 + i */
	BG_WATCH_CLONE3 = 7, /* the flags word of clone3's struct clone_args (arg 0 points to it) */
};

/* One argument value seen: the recorder's `argvals` map key. */
struct bg_argval_key {
	__u32 idx; /* syscall number, + BG_NR_MAX for a compat syscall */
	__u32 pad;
	__u64 value;
};

#endif /* BPFGUARD_H */
