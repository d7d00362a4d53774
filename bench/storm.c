// SPDX-License-Identifier: GPL-2.0
/* An event storm for bench/agent_load.py: N processes issue syscalls the
 * agent's Falco rules trace, as fast as they can, for S seconds.
 *
 *   storm MODE NPROC SECONDS
 *
 * MODE open: openat(AT_FDCWD, "/etc/shadow", O_RDONLY) + close(fd). The
 *            openat passes the rules' kernel filter (a read-only open, not
 *            O_DIRECTORY) and Falco's stock "Read sensitive file untrusted"
 *            alerts on each one ("storm" is in no trusted list).
 * MODE benign: openat(AT_FDCWD, "/etc/hostname", O_RDONLY) + close(fd): a
 *            file no stock rule cares about; the kernel's path tests of the
 *            rules (pushdown) drop every one, none reaches user space.
 * MODE dup:  dup3(fd, fd2, 0) onto the same target fd: one traced syscall per
 *            call (the target is closed atomically, no close needed). The
 *            kernel filter of dup3 keeps every success, so each one reaches
 *            user space and is matched there; no stock rule alerts on it
 *            outside a container.
 * MODE getppid: getppid(), a syscall no rule traces (reference).
 *
 * The children are forked, then all released at once (EOF on a pipe); each
 * stops at a shared CLOCK_MONOTONIC deadline (read through the vDSO every 256
 * calls, not a syscall). Syscalls go through syscall(2), no libc wrapper.
 * Prints one JSON line: the calls made, the syscalls they took, how many of
 * those were traced ones ("interesting"), and the seconds from release to the
 * last child's stop. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct slot {
	unsigned long long calls;
	unsigned long long failed;
	double end_ns;
	char pad[64 - 2 * sizeof(unsigned long long) - sizeof(double)];
};

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void work(int mode, volatile double *deadline, struct slot *s)
{
	unsigned long long calls = 0, failed = 0;
	int base = -1, target = 200;

	if (mode == 1) {
		base = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY);
		if (base < 0) {
			perror("storm: /dev/null");
			_exit(1);
		}
	}
	for (;;) {
		for (int i = 0; i < 256; i++) {
			if (mode == 0 || mode == 3) {
				long fd = syscall(SYS_openat, AT_FDCWD,
						  mode == 0 ? "/etc/shadow" : "/etc/hostname", O_RDONLY);
				if (fd >= 0)
					syscall(SYS_close, fd);
				else
					failed++;
			} else if (mode == 1) {
				if (syscall(SYS_dup3, base, target, 0) < 0)
					failed++;
			} else {
				syscall(SYS_getppid);
			}
		}
		calls += 256;
		double t = now_ns();
		if (t >= *deadline) {
			s->end_ns = t;
			break;
		}
	}
	s->calls = calls;
	s->failed = failed;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: storm open|benign|dup|getppid NPROC SECONDS\n");
		return 2;
	}
	int mode = !strcmp(argv[1], "open") ? 0 : !strcmp(argv[1], "dup") ? 1 :
		   !strcmp(argv[1], "getppid") ? 2 : !strcmp(argv[1], "benign") ? 3 : -1;
	int n = atoi(argv[2]);
	double secs = atof(argv[3]);
	if (mode < 0 || n < 1 || n > 1024 || secs <= 0) {
		fprintf(stderr, "storm: bad arguments\n");
		return 2;
	}
	size_t size = sizeof(struct slot) * (n + 1);
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("storm: mmap");
		return 1;
	}
	memset(mem, 0, size);
	volatile double *deadline = (volatile double *)mem;
	struct slot *slots = (struct slot *)mem + 1;
	int go[2];
	if (pipe(go)) {
		perror("storm: pipe");
		return 1;
	}
	pid_t *pids = calloc(n, sizeof(pid_t));
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("storm: fork");
			for (int j = 0; j < i; j++)
				kill(pids[j], SIGKILL);
			return 1;
		}
		if (pids[i] == 0) {
			char c;
			close(go[1]);
			if (read(go[0], &c, 1) != 0)  /* EOF: go */
				_exit(1);
			work(mode, deadline, &slots[i]);
			_exit(0);
		}
	}
	close(go[0]);
	double start = now_ns();
	*deadline = start + secs * 1e9;
	__sync_synchronize();
	close(go[1]);
	int bad = 0;
	for (int i = 0; i < n; i++) {
		int st;
		if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
			bad = 1;
	}
	if (bad) {
		fprintf(stderr, "storm: a child failed\n");
		return 1;
	}
	unsigned long long calls = 0, failed = 0;
	double end = start;
	for (int i = 0; i < n; i++) {
		calls += slots[i].calls;
		failed += slots[i].failed;
		if (slots[i].end_ns > end)
			end = slots[i].end_ns;
	}
	/* syscalls per call: open, benign = openat + close; dup = dup3; getppid = getppid */
	unsigned long long syscalls = mode == 0 || mode == 3 ? 2 * calls - failed : calls;
	unsigned long long interesting = mode == 2 ? 0 : calls;
	printf("{\"mode\": \"%s\", \"procs\": %d, \"seconds\": %.6f, \"calls\": %llu, "
	       "\"failed\": %llu, \"syscalls\": %llu, \"interesting\": %llu}\n",
	       argv[1], n, (end - start) / 1e9, calls, failed, syscalls, interesting);
	return 0;
}
