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
/* Environment bytes copied at exec when asked for (env_max), likewise. */
#define BG_ENV_MAX 4096
/* Syscall numbers covered per architecture; compat (32-bit) ids live at +BG_NR_MAX. */
#define BG_NR_MAX 512
#define BG_ARGC 6

enum bg_event_type {
	BG_EVENT_EXEC = 1,
	BG_EVENT_FORK = 2,
	BG_EVENT_EXIT = 3,
	BG_EVENT_SYSCALL = 4,
	BG_EVENT_POLICY = 5,
};

/* Header flags. */
enum bg_event_flags {
	BG_EV_TRUNCATED = 1 << 0, /* the payload did not fit BG_DATA_LIMIT */
	BG_EV_COMPAT = 1 << 1,    /* 32-bit (ia32) syscall ABI */
	BG_EV_NO_ENTRY = 1 << 2,  /* syscall exit seen without its entry */
	BG_EV_IO_URING = 1 << 3,  /* an io_uring request, reported as the syscall that does
				   * the same (lib/io_uring.bpf.h) */
	BG_EV_FIXED_FILE = 1 << 4, /* ... on a registered file: its fd argument is the
				    * index in the ring's file table */
	BG_EV_FIXED_RESULT = 1 << 5, /* ... whose result is a slot in that table, not an fd */
	BG_EV_NO_COMPLETION = 1 << 6, /* ... that posts no completion when it succeeds
				       * (IOSQE_CQE_SKIP_SUCCESS): reported at submission,
				       * its result unknown (0) */
};

/* Why an event never reached user space; counted per CPU in the `drops` map. */
enum bg_drop_reason {
	BG_DROP_RINGBUF_FULL = 0, /* ring buffer full, or without room for the largest
				   * event: user space is behind */
	BG_DROP_NO_SCRATCH = 1,   /* per-CPU scratch unavailable */
	BG_DROP_STASH_ALLOC = 2,  /* task storage for a syscall entry not allocated */
	BG_DROP_IO_URING = 3,     /* an io_uring request not stashed: BG_IOU_INFLIGHT in flight */
	BG_DROP_MAX = 4,
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
	/* The name the process was executed as (Falco's proc.name): the
	 * thread's comm at its last execve, which the kernel took from the
	 * executed file's name; a forked child keeps its parent's. A process
	 * cannot change it: prctl(PR_SET_NAME) and /proc/PID/comm change only
	 * thread_comm. For a process already running when the sensor loaded:
	 * its thread's comm where that is the start of its executable's file
	 * name, else that file name (cut to 15 bytes, as comm is). */
	char comm[BG_COMM_LEN];
	char thread_comm[BG_COMM_LEN]; /* the thread's comm now: whatever it set */
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
	__u16 mode;  /* i_mode */
	__u16 nlink; /* hard links to the inode (i_nlink), at most 65535 */
	__u16 flags; /* enum bg_file_flags */
	__u16 depth; /* components in name */
	struct bg_blob name; /* components, leaf first, each NUL-terminated */
	struct bg_sock sock;
};

enum bg_exec_flags {
	BG_EXEC_ARGS_TRUNCATED = 1 << 0,
	BG_EXEC_CGROUP_TRUNCATED = 1 << 1,
	BG_EXEC_ENV_TRUNCATED = 1 << 2,
	BG_EXEC_EXE_LAYER = 1 << 3, /* the executable is on overlayfs and its layer was told: */
	BG_EXEC_EXE_UPPER = 1 << 4, /* it is in the upper layer (written in the container) */
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
	__u32 vpid;    /* the pid in the process's own pid namespace (1: a container's init) */
	struct bg_file exe;   /* mm->exe_file */
	struct bg_file cwd;   /* fs->pwd */
	struct bg_blob args;  /* argv, NUL-separated */
	struct bg_blob filename; /* bprm->filename: the name execve was given */
	struct bg_blob cgroup; /* cgroup v2 path components, leaf first, NUL-terminated */
	struct bg_blob cgroup_v1; /* the path in the pids controller's hierarchy, likewise */
	struct bg_blob tty;
	struct bg_blob env; /* environment, NUL-separated; empty unless env_max > 0 */
	__u8 data[];
};

struct bg_fork_event {
	struct bg_event_header hdr; /* the child */
	__u64 start_ns;
	__u32 ppid;
	__u32 vpid; /* the child's pid in its own pid namespace */
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
	BG_ARG_INT = 1,      /* a C int (pid, uid, a domain, a signal): the low 32 bits,
			      * as the kernel's syscall wrappers truncate it */
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
	BG_ARG_LONG = 11,     /* a signed C long (ptrace's request and pid) */
	BG_ARG_U32 = 12,      /* a 32-bit unsigned type (uid_t, gid_t): the low 32 bits */
};

enum bg_ret_kind {
	BG_RET_INT = 0,  /* errno when negative */
	BG_RET_FD = 1,   /* a new fd, resolved at exit */
	BG_RET_EXEC = 2, /* execve: the new mm->exe_file */
};

/* The path tests of an open, a filter of the syscall sensor's selector (op
 * BG_OP_OPEN_PATH, phase BG_PHASE_FILE; its encoding is at the op): the
 * event is kept when any one holds. They test Falco's fd.name (and what user
 * space derives from it, fd.directory and fd.filename) on the returned
 * file's path, the same kernel object user space names the fd by; and
 * fd.nameraw on the string the process passed. Where the kernel cannot
 * compute a value exactly as user space will (a failed open, an unlinked,
 * pseudo, detached or cut path, a string read late), the test counts as
 * holding. */
enum bg_push_path {
	BG_PATH_NAME = 1 << 0,        /* fd.name in the exact set (filter's set) */
	BG_PATH_DIR = 1 << 1,         /* fd.directory in exact set vals[1] */
	BG_PATH_FILE = 1 << 2,        /* fd.filename in exact set vals[2] */
	BG_PATH_PREFIX = 1 << 3,      /* fd.name starts with a string of prefix set vals[3] */
	BG_PATH_SUFFIX = 1 << 4,      /* fd.name ends with one of postfix set vals[4] */
	BG_PATH_SUFFIX_LEAF = 1 << 5, /* no suffix holds a '/': reverse only the last name */
	BG_PATH_DOTDOT = 1 << 6,      /* fd.nameraw (the filter's argument) contains "../" */
};

/* Events the pushdown filtered out, per CPU (not losses: no rule wanted them). */
enum bg_push_stat {
	BG_PUSHED_AT_ENTRY = 0,
	BG_PUSHED_AT_EXIT = 1,
	BG_PUSHED_BY_PATH = 2, /* at exit, by the path tests (BG_OP_OPEN_PATH) */
	BG_PUSHED_MAX = 3,
};

struct bg_syscall_spec {
	__u8 enabled;
	__u8 ret;           /* enum bg_ret_kind */
	__u8 arg[BG_ARGC]; /* enum bg_arg_kind */
	/* The rules pushdown: the selector at BG_SYSCALL_SELECTORS + this
	 * syscall's index in pol_selectors applies (the selector engine,
	 * lib/selectors.bpf.h). What no rule could match is dropped in the
	 * kernel. */
	__u8 filtered;
	__u8 pad;
	/* Which enablement of the syscall this is: user space gives a syscall a
	 * new one each time a reload brings it back into the interest set. An
	 * entry stashed under another (a thread inside the syscall when a reload
	 * dropped it, leaving its stash behind) is stale at exit. */
	__u32 gen;
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
	/* With MNTNS: a task of a scope_mntns namespace is not in scope by its
	 * namespace alone but joins scope_tgids at its execve there. A process a
	 * runtime starts in a container (`exec`) enters the namespace before its
	 * own setup (keyctl, capset, seccomp) and execs after it. */
	BG_SCOPE_MNTNS_AT_EXEC = 1 << 4,
};

enum bg_scope_state {
	BG_SCOPE_ACTIVE = 1,
	BG_SCOPE_ARMED = 2, /* becomes active at the task's next execve: `trace -- CMD` opens
			     * its window at CMD's exec, so the launcher's own syscalls never show */
};

struct bg_scope_config {
	__u32 flags;     /* enum bg_scope_flags */
	__u32 self_tgid; /* bpfguard itself: never reported ... */
	/* ... if its start time is this, in /proc's starttime unit (clock ticks
	 * since boot): programs pinned past the agent's death must not spare
	 * the next process given its pid. 0: the pid alone. */
	__u64 self_start;
};

/* Seccomp recorder (lib/record.bpf.h): which argument value it collects, per
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

/* ---- TracingPolicy engine (lib/policy.bpf.h) ----
 *
 * User space compiles each hook of a policy into a bg_pol_hook (what to read)
 * and up to BG_POL_SELECTORS bg_pol_selector entries (what to match, what to
 * do); sets of strings, integers and addresses live in hash and LPM maps,
 * addressed by a set id. One generic program interprets them: adding or
 * removing a policy writes maps, it never compiles code. */
#define BG_POL_HOOKS 512          /* hooks loaded at once, all policies together */
/* pol_selectors: the syscall sensor's selector of syscall index i is at
 * BG_SYSCALL_SELECTORS + i, after every hook's */
#define BG_SYSCALL_SELECTORS (BG_POL_HOOKS * BG_POL_SELECTORS)
#define BG_POL_ARGS 5             /* arguments read per hook (Tetragon: 5) */
#define BG_POL_RESOLVE 16         /* steps of an argument's resolve path (Tetragon: 10) */
#define BG_POL_IOVECS 8           /* buffers of a char_iovec argument read */
#define BG_POL_SELECTORS 8        /* selectors per hook (Tetragon: 5) */
#define BG_POL_FILTERS 8          /* matchArgs + matchReturnArgs per selector (Tetragon: 5) */
#define BG_POL_VALUES 8           /* inline integer values per filter (Tetragon: 4);
				   * more values are compiled into a set */
#define BG_POL_NS_FILTERS 4       /* matchNamespaces filters per selector */
#define BG_POL_NS_VALUES 4        /* namespace ids per matchNamespaces filter */
#define BG_POL_PREFIX_MAX 256     /* bytes compared by Prefix and Postfix (Tetragon: 256 / 127) */
#define BG_POL_PREFIX_SETS 4096   /* Prefix/Postfix sets (one LPM trie each) at once */
#define BG_POL_SYSCALL_HOOKS 8    /* hooks on one syscall, all policies together */
#define BG_POL_PID_WALK 9         /* ancestors checked by matchPIDs followForks (as Tetragon) */
#define BG_POL_RET 7              /* bg_pol_filter.arg naming the return value */
#define BG_POL_FOLLOW 64          /* matchBinaries filters with followChildren, all policies */
#define BG_IMA_DIGEST 64          /* room for an IMA digest (SHA-512 is the longest) */
#define BG_POL_SETS 65536         /* entries of each set map (strings, integers, addresses) */

enum bg_pol_hook_kind {
	BG_HOOK_SYSCALL = 1,    /* kprobes with syscall: true, on raw_syscalls sys_enter/sys_exit */
	BG_HOOK_TRACEPOINT = 2, /* tracepoints: a copy of bg_pol_tp per hook */
	BG_HOOK_RAW_TP = 3,     /* tracepoints with raw: true: a copy of bg_pol_raw_tp per hook */
	BG_HOOK_FUNC = 4,       /* kernel functions and LSM hooks: a copy per hook of bg_pol_fentry,
				 * bg_pol_kprobe, bg_pol_fmod_ret or bg_pol_lsm (and bg_pol_fexit or
				 * bg_pol_kretprobe for return: true), as the probe allows */
	BG_HOOK_UPROBE = 5,     /* user functions: a copy of bg_pol_uprobe per hook, one link per
				 * symbol, the link's cookie naming the symbol */
	BG_HOOK_ENFORCER = 6,   /* an enforcers call: a copy of bg_pol_enforce (fmod_ret) per
				 * function, which NotifyEnforcer arms for the thread */
};

/* How one hook argument is read. */
enum bg_pol_type {
	BG_PT_NONE = 0,
	BG_PT_INT = 1,       /* integer of `size` bytes, sign-extended when is_signed */
	BG_PT_STRING = 2,    /* user string: NUL-terminated, at most BG_STR_MAX bytes */
	BG_PT_KSTRING = 3,   /* kernel string pointer */
	BG_PT_DATA_LOC = 4,  /* tracepoint __data_loc string inside the record */
	BG_PT_CHAR_BUF = 5,  /* user bytes; the length is argument size_arg (1-based) */
	BG_PT_FD = 6,        /* an fd of the current task: its file's path */
	BG_PT_FILE = 7,      /* struct file *: its path */
	BG_PT_PATH = 8,      /* struct path *: its path */
	BG_PT_BINPRM = 9,    /* struct linux_binprm *: the path of its file */
	BG_PT_SOCKADDR = 10, /* user struct sockaddr *; its length is the next argument */
	BG_PT_SYSCALL64 = 11, /* a syscall id; bit 31 marks the 32-bit compat ABI (as Tetragon) */
	BG_PT_SOCK = 12,     /* struct sock *: family, protocol, state, addresses, ports */
	BG_PT_CRED = 13,     /* struct cred *: a bg_pol_cred in the payload */
	BG_PT_CHAR_BUF_RET = 14, /* returnCopy: user bytes read at return, as many as returned */
	BG_PT_DENTRY = 15,   /* struct dentry *: its path within its filesystem */
	BG_PT_SKB = 16,      /* struct sk_buff *: family, protocol, addresses and ports of its
			      * IPv4 or IPv6 header and TCP or UDP header */
	BG_PT_SOCKADDR_UN = 17, /* struct sockaddr_un *: the family, and sun_path as a string */
	BG_PT_BYTES = 18,    /* `len` bytes of kernel memory at the (resolved) address: the
			      * fields of a bpf_attr, bpf_map, module, ... user space decodes */
	BG_PT_CHAR_IOVEC = 19, /* a user struct iovec array, its count argument size_arg
				* (1-based): the bytes of its first BG_POL_IOVECS buffers */
	BG_PT_CHAR_IOVEC_RET = 20, /* returnCopy: the same, read at return, as many bytes as
				    * the call returned */
	BG_PT_IOV_ITER = 21, /* struct iov_iter *: the user bytes of its buffer (ITER_UBUF)
			      * or first segment (ITER_IOVEC), at most BG_STR_MAX */
};

/* A cred argument, as written into the event's payload. */
struct bg_pol_cred {
	__u32 uid, gid, suid, sgid, euid, egid, fsuid, fsgid;
	__u32 securebits;
	__u32 pad;
	__u64 cap_inheritable, cap_permitted, cap_effective;
};

/* How an argument's resolve path (Tetragon's `resolve: "mm.owner.comm"`,
 * `btfType`) ends; user space walks the path in BTF and writes the steps. */
enum bg_pol_arg_flags {
	BG_PA_LOAD = 1, /* the value is the `size` bytes at the resolved address */
	BG_PA_USER = 2, /* ... read from user memory (a USDT operand disp(%reg)) */
	BG_PA_TASK = 4, /* data (source: current_task): the value is the current task */
	BG_PA_REG = 8,  /* data (source: pt_regs), a USDT operand: the register at byte src
			 * of pt_regs */
	BG_PA_CONST = 16, /* a USDT operand $N: the value is off[0] | off[1] << 32 */
};

struct bg_pol_arg {
	__u8 type;      /* enum bg_pol_type */
	__u8 size;      /* BG_PT_INT: 1, 2, 4 or 8 bytes */
	__u8 is_signed;
	__u8 size_arg;  /* BG_PT_CHAR_BUF: 1-based hook argument holding the length */
	__u16 src;      /* syscall or raw tracepoint: argument index; tracepoint: field offset */
	__u8 nsteps;    /* resolve: steps in off[]; 0: the argument as it is */
	__u8 flags;     /* enum bg_pol_arg_flags */
	__u16 deref;    /* resolve: bit i set: step i then loads the pointer at its address */
	__u16 len;      /* BG_PT_BYTES: bytes copied */
	__u32 off[BG_POL_RESOLVE]; /* resolve: the byte offset step i adds to the address
				    * (signed: a USDT operand's displacement) */
};

enum bg_pol_op {
	BG_OP_EQ = 1,           /* integers: any inline value; strings: in the exact set */
	BG_OP_NEQ = 2,          /* integers: none of the inline values; strings: not in the set */
	BG_OP_PREFIX = 3,
	BG_OP_NOT_PREFIX = 4,
	BG_OP_POSTFIX = 5,
	BG_OP_NOT_POSTFIX = 6,
	BG_OP_GT = 7,
	BG_OP_LT = 8,
	BG_OP_MASK = 9,         /* (value & v) != 0 for some inline v */
	BG_OP_IN_SET = 10,      /* InMap, and Equal with more than BG_POL_VALUES values */
	BG_OP_NOT_IN_SET = 11,
	BG_OP_SADDR = 12,       /* CIDRs: an LPM set */
	BG_OP_NOT_SADDR = 13,
	BG_OP_DADDR = 14,
	BG_OP_NOT_DADDR = 15,
	BG_OP_SPORT = 16,       /* inline ports */
	BG_OP_NOT_SPORT = 17,
	BG_OP_DPORT = 18,
	BG_OP_NOT_DPORT = 19,
	BG_OP_SPORT_PRIV = 20,  /* port < 1024 */
	BG_OP_NOT_SPORT_PRIV = 21,
	BG_OP_DPORT_PRIV = 22,
	BG_OP_NOT_DPORT_PRIV = 23,
	BG_OP_PROTOCOL = 24,    /* inline values */
	BG_OP_FAMILY = 25,
	BG_OP_STATE = 26,
	BG_OP_STR_EQ = 27,      /* strings: in the exact set */
	BG_OP_STR_NEQ = 28,     /* strings: in none of it */
	/* What the rules pushdown needs (Falco's conditions, compiled by user space): */
	BG_OP_ACCMODE = 29,     /* open flags: bit (value & O_ACCMODE) of vals[0] is set */
	BG_OP_FLAGS = 30,       /* none of the bits of vals[0] is set, all of vals[1] are */
	BG_OP_SMALL_IN = 31,    /* value in 0..63 with its bit set in vals[0] (a dup's new fd) */
	BG_OP_OPEN_PATH = 32,   /* the path tests of an open (enum bg_push_path, in vals[0]) on
				 * the returned file, and fd.nameraw on argument `arg`; exact
				 * sets `set` (names), vals[1] (directories), vals[2] (leaf
				 * names); prefix set vals[3], postfix set vals[4] */
	BG_OP_FD_FAMILY = 33,   /* the value is an fd of the task open on a socket of one of
				 * the address families in vals (Falco's fd.type ipv4, ipv6,
				 * unix of a dup's result or a connect's fd, at return); a
				 * negative fd (a failed call's result: none at hand) holds */
	BG_OP_IN_RANGE = 34,      /* InRange: vals[2i] <= value <= vals[2i+1], unsigned */
	BG_OP_NOT_IN_RANGE = 35,
	BG_OP_IN_SRANGE = 36,     /* ... signed */
	BG_OP_NOT_IN_SRANGE = 37,
	BG_OP_FILE_TYPE = 38,     /* the file's S_IFMT bits are one of vals (FileType) */
	BG_OP_NOT_FILE_TYPE = 39,
	BG_OP_SPORT_IN_SET = 40,  /* ports, ranges among them: integer set `set` */
	BG_OP_NOT_SPORT_IN_SET = 41,
	BG_OP_DPORT_IN_SET = 42,
	BG_OP_NOT_DPORT_IN_SET = 43,
	BG_OP_CAPS_GAINED = 44,   /* argument vals[0] (the new set) has a bit of vals[1] the
				   * value (the old set) lacks */
	BG_OP_CEL = 45,           /* CelExpr: the program in pol_cel under set is true */
};

/* CelExpr: a postfix program over the hook's integer arguments, which
 * user space compiles from Tetragon's CEL (src/bpfguard/policy/cel.py). */
#define BG_POL_CEL_OPS 32     /* instructions of one program */
#define BG_POL_CEL_STACK 8    /* values it may hold at once */
#define BG_POL_CEL_PROGS 1024 /* programs loaded at once, all policies */
enum bg_pol_cel_code {
	BG_CEL_ARG = 1,   /* push argument `arg`'s value */
	BG_CEL_CONST = 2, /* push imm */
	BG_CEL_ADD = 3,
	BG_CEL_SUB = 4,
	BG_CEL_NEG = 5,
	BG_CEL_BAND = 6,
	BG_CEL_BOR = 7,
	BG_CEL_BXOR = 8,
	BG_CEL_BNOT = 9,
	BG_CEL_I32 = 10,  /* int32(): the low 32 bits, sign-extended */
	BG_CEL_U32 = 11,  /* uint32(): the low 32 bits */
	BG_CEL_EQ = 12,
	BG_CEL_NE = 13,
	BG_CEL_LT = 14,   /* signed */
	BG_CEL_LE = 15,
	BG_CEL_GT = 16,
	BG_CEL_GE = 17,
	BG_CEL_LTU = 18,  /* unsigned */
	BG_CEL_LEU = 19,
	BG_CEL_GTU = 20,
	BG_CEL_GEU = 21,
	BG_CEL_AND = 22,  /* logical, on 0/1 */
	BG_CEL_OR = 23,
	BG_CEL_NOT = 24,
};

struct bg_pol_cel_op {
	__u8 code;  /* enum bg_pol_cel_code */
	__u8 arg;   /* BG_CEL_ARG: the argument */
	__u8 pad[6];
	__s64 imm;  /* BG_CEL_CONST */
};

struct bg_pol_cel {
	__u32 n;    /* instructions in ops */
	__u32 pad;
	struct bg_pol_cel_op ops[BG_POL_CEL_OPS];
};

/* When a filter is decided. */
enum bg_pol_phase {
	BG_PHASE_ENTRY = 0,  /* at the hook: matchArgs */
	BG_PHASE_RETURN = 1, /* at return, on the return value: matchReturnArgs */
	BG_PHASE_FILE = 2,   /* the syscall sensor at exit, after the others: the returned file */
};

struct bg_pol_filter {
	__u8 op;    /* enum bg_pol_op */
	__u8 arg;   /* position in the hook's arguments, or BG_POL_RET */
	__u8 nvals;
	__u8 ret;   /* enum bg_pol_phase */
	__u32 set;  /* set id of string, InMap and address operators */
	__u64 vals[BG_POL_VALUES];
};

enum bg_pol_action {
	BG_ACT_POST = 1 << 0,
	BG_ACT_NOPOST = 1 << 1,
	BG_ACT_SIGKILL = 1 << 2,
	BG_ACT_SIGNAL = 1 << 3,
	BG_ACT_OVERRIDE = 1 << 4, /* the hooked function returns bg_pol_selector.error */
	BG_ACT_IMA_HASH = 1 << 5, /* Post imaHash: an LSM hook's event carries the file's IMA hash */
	BG_ACT_TRACK_SOCK = 1 << 6,   /* TrackSock: the sock of argument sock_arg is the task's */
	BG_ACT_UNTRACK_SOCK = 1 << 7, /* UntrackSock: forget it */
};

/* The stacks a Post takes (kernelStackTrace, userStackTrace): return
 * addresses, innermost first, at most BG_POL_STACK_DEPTH of each (the
 * kernel's PERF_MAX_STACK_DEPTH, as Tetragon's stack map). */
#define BG_POL_STACK_DEPTH 127
enum bg_pol_stack {
	BG_STACK_KERNEL = 1,
	BG_STACK_USER = 2,
};

/* TrackSock: who owns a socket, so that events on it in another task's
 * context (a packet delivered in softirq) name the owner, as Tetragon's do. */
#define BG_POL_SOCKS 16384 /* tracked sockets, all policies together (LRU) */
struct bg_pol_sock_owner {
	__u32 hook;  /* the hook slot that tracked it: its policy's unload forgets it */
	__u32 tgid;
	__u32 tid;
	__u32 pad;
};

enum bg_pol_pid_flags {
	BG_PID_NOT_IN = 1 << 0,
	BG_PID_NS = 1 << 1,     /* isNamespacePID: the pid in the task's own pid namespace */
	BG_PID_FOLLOW = 1 << 2, /* followForks: the process or its parent, up BG_POL_PID_WALK */
};

enum bg_pol_str_op { /* matchBinaries / matchParentBinaries */
	BG_BIN_IN = 1,
	BG_BIN_NOT_IN = 2,
	BG_BIN_PREFIX = 3,
	BG_BIN_NOT_PREFIX = 4,
	BG_BIN_POSTFIX = 5,
	BG_BIN_NOT_POSTFIX = 6,
};

enum bg_pol_ns_kind {
	BG_NS_UTS = 1,
	BG_NS_IPC = 2,
	BG_NS_MNT = 3,
	BG_NS_PID = 4,
	BG_NS_PID_FOR_CHILDREN = 5,
	BG_NS_NET = 6,
	BG_NS_TIME = 7,
	BG_NS_TIME_FOR_CHILDREN = 8,
	BG_NS_CGROUP = 9,
	BG_NS_USER = 10,
};
#define BG_NS_KINDS 11 /* indexes of bg_pol_exe.ns: by kind, 0 unused */

struct bg_pol_ns_filter {
	__u8 kind;   /* enum bg_pol_ns_kind */
	__u8 not_in;
	__u8 nvals;
	__u8 pad;
	__u32 vals[BG_POL_NS_VALUES]; /* namespace inode numbers */
};

enum bg_pol_cap_type {
	BG_CAP_EFFECTIVE = 0,
	BG_CAP_INHERITABLE = 1,
	BG_CAP_PERMITTED = 2,
};

enum bg_pol_rate_scope {
	BG_RATE_THREAD = 0,
	BG_RATE_PROCESS = 1,
	BG_RATE_GLOBAL = 2,
};

struct bg_pol_selector {
	__u8 nfilters;
	__u8 actions;      /* enum bg_pol_action: at the hook (entry) */
	__u8 ret_actions;  /* at return (return: true hooks) */
	__u8 signal;       /* BG_ACT_SIGNAL */
	__u8 pid_flags;    /* enum bg_pol_pid_flags */
	__u8 npids;        /* 0: no matchPIDs */
	__u8 bin_op;       /* enum bg_pol_str_op; 0: no matchBinaries */
	__u8 pbin_op;      /* matchParentBinaries */
	__u8 nns;
	__u8 cap_op;       /* 1 In, 2 NotIn; 0: no matchCapabilities */
	__u8 cap_type;     /* enum bg_pol_cap_type */
	__u8 rate_scope;   /* enum bg_pol_rate_scope */
	__u32 rate_ms;     /* Post rateLimit; 0: none */
	__u32 bin_set;
	__u32 pbin_set;
	__u8 bin_follow;   /* followChildren: 1 + the bg_pol_follow slot of bin_set; 0: none */
	__u8 pbin_follow;  /* ... of pbin_set */
	__u8 comm_in;      /* the task's name (comm) must be in exact set comm_set */
	__u8 euid_in;      /* its effective uid must be in integer set euid_set */
	__u8 sock_arg;     /* TrackSock/UntrackSock: the argument (position) holding the sock */
	__u8 ret_sock_arg; /* ... of matchReturnActions */
	__u8 notify;       /* NotifyEnforcer: arm the policy's enforcers for the thread */
	__u8 notify_sig;   /* ... the signal they send (0: none) */
	__s32 notify_error; /* ... the error they return (0: the function runs) */
	__u8 stacks;       /* Post kernelStackTrace/userStackTrace: enum bg_pol_stack */
	__u8 nsc_op;       /* matchNamespaceChanges: 1 In, 2 NotIn; 0: none */
	__u16 nsc_mask;    /* ... the namespaces (bit: enum bg_pol_ns_kind) */
	__u8 capc_op;      /* matchCapabilityChanges: 1 In, 2 NotIn; 0: none */
	__u8 capc_type;    /* ... enum bg_pol_cap_type */
	__u8 set_arg;      /* Set (usdts): 1 + the position of the argument written; 0: none */
	__u32 cap_userns;  /* isNamespaceCapability: the host's user namespace, where
			    * the capability filters do not match; 0: anywhere */
	__u64 capc_mask;
	__s32 error;       /* BG_ACT_OVERRIDE: the return value (argError) */
	__u32 comm_set;
	__u32 euid_set;
	__u32 set_value;   /* ... the 4 bytes written at its address */
	__u32 pids[BG_POL_VALUES];
	__u64 cap_mask;
	struct bg_pol_ns_filter ns[BG_POL_NS_FILTERS];
	struct bg_pol_filter filters[BG_POL_FILTERS];
};

enum bg_pol_mode {
	BG_MODE_ENFORCE = 0,
	BG_MODE_MONITOR = 1, /* enforcing actions are counted, not done */
};

struct bg_pol_hook {
	__u8 kind;     /* enum bg_pol_hook_kind; 0: slot free */
	__u8 nargs;
	__u8 nsel;
	__u8 ret;      /* return: true: post at return, with the return value */
	__u8 mode;     /* enum bg_pol_mode */
	__u8 ret_sock; /* returnArgAction: BG_ACT_TRACK_SOCK or BG_ACT_UNTRACK_SOCK on the
			* returned sock; 0: none */
	__u16 gen;     /* generation of the slot: events of a removed hook are told apart */
	__u64 cgroup;  /* cgroup v2 id the hook is limited to (and its descendants); 0: all */
	__u32 scope;   /* the policy's pod/container scope in pol_scope; 0: unscoped */
	__u32 policy;  /* the policy's id: its NotifyEnforcer arms its enforcers only */
	struct bg_pol_arg args[BG_POL_ARGS];
	struct bg_pol_arg retarg; /* returnArg: how to read the return value (type 0: int) */
};

/* NotifyEnforcer: a thread armed for a policy's enforcers (Tetragon's
 * enforcer map): the next call of an enforcers function in that thread
 * returns `error` and sends `sig`, then the entry is gone. An LRU map: a
 * thread armed whose enforcer never comes is forgotten eventually. */
#define BG_POL_ENFORCE 16384
struct bg_pol_enforce_key {
	__u64 thread;  /* bpf_get_current_pid_tgid() */
	__u32 policy;
	__u32 pad;
};
struct bg_pol_enforce {
	__s32 error;
	__u32 sig;
};

/* pol_scope: the cgroups a scoped policy (podSelector, containerSelector,
 * TracingPolicyNamespaced) applies to, written by user space as the
 * containers that match start and stop. A task is in scope when its cgroup
 * or an ancestor (up to BG_CGROUP_DEPTH levels) is in the set. */
#define BG_POL_SCOPE_CGROUPS 16384 /* (scope, cgroup) entries, all policies together */
struct bg_pol_scope_key {
	__u32 scope;
	__u32 pad;
	__u64 cgroup;
};

/* The policy hooks a syscall feeds. */
struct bg_pol_route {
	__u32 n;
	__u16 hooks[BG_POL_SYSCALL_HOOKS];
};

/* The one per-syscall table, index = syscall number (+ BG_NR_MAX for compat):
 * what each part does with an interesting syscall, found with one lookup at
 * entry. User space writes each part's half without erasing the other's. */
struct bg_syscall_route {
	struct bg_syscall_spec spec; /* the syscall sensor: what to read, its pushdown */
	struct bg_pol_route pol;     /* the policy engine: its hooks on the syscall */
};

/* Per hook, per CPU: index hook * BG_PST_MAX + stat. */
enum bg_pol_stat {
	BG_PST_POSTED = 0,       /* events sent */
	BG_PST_ACTED = 1,        /* enforcing actions done */
	BG_PST_WOULD = 2,        /* enforcing actions not done: monitor mode */
	BG_PST_RATE_LIMITED = 3, /* posts suppressed by rateLimit */
	BG_PST_NO_RETURN = 4,    /* return: true events posted at entry: another was pending */
	/* per action, as Tetragon's TracingPolicyActionCounters count them */
	BG_PST_SIGNALS = 5,        /* Sigkill and Signal sent */
	BG_PST_OVERRIDES = 6,      /* return values overridden */
	BG_PST_WOULD_SIGNAL = 7,   /* ... not sent: monitor mode */
	BG_PST_WOULD_OVERRIDE = 8,
	BG_PST_NOPOST = 9,         /* events NoPost kept back */
	BG_PST_NOTIFIED = 10,      /* NotifyEnforcer: the thread's next enforcer call armed */
	BG_PST_WOULD_NOTIFY = 11,  /* ... not armed: monitor mode */
	BG_PST_SETS = 12,          /* Set (usdts): values written */
	BG_PST_WOULD_SET = 13,     /* ... not written: monitor mode */
	BG_PST_SET_FAILED = 14,    /* ... the address was unreadable or not writable */
	BG_PST_MAX = 15,
};

struct bg_pol_int_key {
	__u32 set;
	__u32 pad;
	__u64 value;
};

/* Exact strings match by set, length and a seeded 64-bit hash (the seed is
 * random per load, so a collision cannot be chosen from outside). */
struct bg_pol_str_key {
	__u32 set;
	__u32 len;
	__u64 hash;
};

/* Prefix and Postfix sets are one LPM trie each (an LPM key holds at most
 * 256 data bytes, so the set cannot be part of the key): the set id indexes
 * the pol_prefix / pol_postfix arrays of tries. */
struct bg_pol_lpm_key {
	__u32 prefixlen; /* 8 bits per byte */
	__u8 data[BG_POL_PREFIX_MAX]; /* Postfix: the string reversed */
};

struct bg_pol_addr_key {
	__u32 prefixlen; /* 32 for the set id + 128 address bits (IPv4 as ::ffff:a.b.c.d) */
	__u32 set;
	__u8 addr[16];
};

/* A process's executable for matchBinaries, from mm->exe_file at exec. */
struct bg_pol_exe {
	__u32 len;
	__u32 pad;
	__u64 hash;
	__u8 head[BG_POL_PREFIX_MAX];
	__u8 tail[BG_POL_PREFIX_MAX]; /* the last bytes, reversed */
	/* what the process had at exec, for matchNamespaceChanges and
	 * matchCapabilityChanges (updated once a change was reported) */
	__u32 ns[BG_NS_KINDS];       /* namespace inode numbers by enum bg_pol_ns_kind */
	__u32 pad2;
	__u64 caps[3];               /* by enum bg_pol_cap_type */
};

/* A followChildren filter: a process descends from a matching executable
 * when it or an ancestor exec'd one that passes (op, set); op is the
 * positive form (In, Prefix, Postfix), 0 for a free slot. */
struct bg_pol_follow {
	__u8 op;
	__u8 pad[3];
	__u32 set;
};

enum bg_pol_set_result {
	BG_SET_WRITTEN = 1,
	BG_SET_WOULD = 2,  /* monitor mode: not written */
	BG_SET_FAILED = 3, /* the operand's address was unreadable or not writable */
};

enum bg_pol_value_flags {
	BG_PV_DATA = 1 << 0,       /* data holds the string, path or bytes */
	BG_PV_SOCK = 1 << 1,       /* sock is filled */
	BG_PV_TRUNCATED = 1 << 2,
	BG_PV_UNREADABLE = 1 << 3,
	BG_PV_DEEP = 1 << 4,       /* a path's innermost names (the string begins with '.'):
				    * its start is cut, its end whole (TRUNCATED: the end) */
};

struct bg_pol_value {
	__u64 value;         /* integers; the raw pointer for the others */
	struct bg_blob data; /* strings include their NUL */
	__u16 flags;         /* enum bg_pol_value_flags */
	__u16 mode;          /* files and paths: the inode's S_IFMT bits (FileType) */
	struct bg_sock sock; /* sockaddr: family, both addresses and ports */
};

struct bg_policy_event {
	struct bg_event_header hdr;
	__s64 ret;
	__u32 hook;
	__u32 nr;        /* syscall hooks: the syscall (+ BG_NR_MAX for compat) */
	__u8 selector;
	__u8 done;       /* enum bg_pol_action: enforcing actions carried out */
	__u8 would;      /* enforcing actions not carried out: monitor mode */
	__u8 failed;     /* enforcing actions the kernel refused */
	__u8 has_ret;
	__u8 ima_algo;   /* imaHash: the kernel's enum hash_algo of the digest */
	__u16 gen;       /* the hook's generation when the event was made */
	__u16 ima_off;   /* imaHash: the digest in data[], BG_IMA_DIGEST bytes (0 long: none) */
	__u16 ima_len;
	__s32 ima_err;   /* imaHash: bpf_ima_file_hash's error (-EOPNOTSUPP: IMA is off) */
	__u8 notified;    /* NotifyEnforcer: 1 armed, 2 monitor mode (not armed) */
	__u8 set;         /* Set: enum bg_pol_set_result (0: no Set) */
	__u16 kstack_off; /* kernelStackTrace: __u64 addresses in data[] (0 long: none) */
	__u16 kstack_len; /* ... in bytes */
	__u16 ustack_off; /* userStackTrace */
	__u16 ustack_len;
	struct bg_pol_value args[BG_POL_ARGS];
	struct bg_pol_value retv; /* the return value read as returnArg's type (not int) */
	__u8 data[];
};

#endif /* BPFGUARD_H */
