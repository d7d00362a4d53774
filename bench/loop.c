// SPDX-License-Identifier: GPL-2.0
/* A tight syscall loop that times itself, for bench/syscall_overhead.py.
 *
 *   loop MODE N     run N iterations once, print ns per iteration
 *   loop -s         serve: read "MODE N" lines from stdin, answer each with
 *                   one "ns_per_iteration" line; exit at EOF
 *
 * MODE getppid: one getppid() per iteration (a syscall no sensor cares about).
 * MODE openat:  openat(AT_FDCWD, "/etc/hostname", O_RDONLY) + close(fd).
 *
 * Only the loop is timed (CLOCK_MONOTONIC around it): process start-up, the
 * dynamic loader and the benchmark's pipes are not counted. In serve mode the
 * process waits on stdin before doing anything, so a tracer can put its pid in
 * scope (or filter on it) before the first timed syscall. Syscalls go through
 * syscall(2) so no libc wrapper can cache or batch anything. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *const path = "/etc/hostname";

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Returns ns per iteration, or a negative value for a bad mode or a failure. */
static double run(const char *mode, long n)
{
	double t0, t1;

	if (n <= 0)
		return -1;
	if (!strcmp(mode, "getppid")) {
		t0 = now_ns();
		for (long i = 0; i < n; i++)
			syscall(SYS_getppid);
		t1 = now_ns();
	} else if (!strcmp(mode, "openat")) {
		t0 = now_ns();
		for (long i = 0; i < n; i++) {
			long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY);

			if (fd < 0) {
				perror(path);
				return -2;
			}
			syscall(SYS_close, fd);
		}
		t1 = now_ns();
	} else {
		return -1;
	}
	return (t1 - t0) / (double)n;
}

static int usage(void)
{
	fprintf(stderr, "usage: loop getppid|openat N\n       loop -s   (read \"MODE N\" lines)\n");
	return 2;
}

int main(int argc, char **argv)
{
	char line[256], mode[32];
	long n;
	double r;

	if (argc == 3) {
		r = run(argv[1], strtol(argv[2], NULL, 10));
		if (r < 0)
			return r == -1 ? usage() : 1;
		printf("%.3f\n", r);
		return 0;
	}
	if (argc != 2 || strcmp(argv[1], "-s"))
		return usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		if (sscanf(line, "%31s %ld", mode, &n) != 2) {
			printf("error: bad request\n");
			continue;
		}
		r = run(mode, n);
		if (r < 0)
			printf("error: %s %ld failed\n", mode, n);
		else
			printf("%.3f\n", r);
	}
	return 0;
}
