/* Does file and socket operations through io_uring only (raw syscalls, no
 * liburing), one request at a time, waiting for each completion:
 *
 *   uring_ops OP ARGS... [OP ARGS...]
 *     read PATH          IORING_OP_OPENAT (O_RDONLY), then IORING_OP_READ of it
 *     slot-read PATH     the same into a registered file slot (file_index),
 *                        the read on the registered file (IOSQE_FIXED_FILE)
 *     quiet-read PATH    slot-read whose open posts no completion when it
 *                        succeeds (IOSQE_CQE_SKIP_SUCCESS, linked to a NOP
 *                        that does)
 *     async-read PATH    read whose open runs in an io-wq worker (IOSQE_ASYNC)
 *     socket             IORING_OP_SOCKET (AF_INET, SOCK_DGRAM)
 *     create PATH        IORING_OP_OPENAT (O_WRONLY|O_CREAT), IORING_OP_WRITE
 *     unlink PATH        IORING_OP_UNLINKAT
 *     rename OLD NEW     IORING_OP_RENAMEAT
 *     mkdir PATH         IORING_OP_MKDIRAT
 *     link OLD NEW       IORING_OP_LINKAT
 *     symlink TARGET NEW IORING_OP_SYMLINKAT
 *     connect IP PORT    IORING_OP_CONNECT of a TCP socket (made with socket(2))
 *
 * Exits 0 when every request completed (a failed one is printed, not fatal). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int ring_fd;
static unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
static struct io_uring_sqe *sqes;
static struct io_uring_cqe *cqes;

static void setup(void)
{
	struct io_uring_params p = {0};
	char *sq, *cq;

	ring_fd = syscall(__NR_io_uring_setup, 4, &p);
	if (ring_fd < 0) {
		perror("io_uring_setup");
		exit(2);
	}
	sq = mmap(0, p.sq_off.array + p.sq_entries * sizeof(unsigned), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQ_RING);
	cq = mmap(0, p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe),
		  PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_CQ_RING);
	sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_POPULATE, ring_fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	sq_tail = (unsigned *)(sq + p.sq_off.tail);
	sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	sq_array = (unsigned *)(sq + p.sq_off.array);
	cq_head = (unsigned *)(cq + p.cq_off.head);
	cq_tail = (unsigned *)(cq + p.cq_off.tail);
	cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
}

/* quiet-read: the open posts no completion, a NOP linked after it does;
 * async-read: the open is punted to an io-wq worker thread */
static int quiet, async_next;

/* Submits the request `fill` wrote and returns its result. */
static int run(const char *what, void (*fill)(struct io_uring_sqe *, void *), void *arg)
{
	unsigned tail = *sq_tail, idx = tail & *sq_mask, head, n = 1;
	struct io_uring_sqe *sqe = &sqes[idx];
	int res;

	memset(sqe, 0, sizeof(*sqe));
	fill(sqe, arg);
	sq_array[idx] = idx;
	if (async_next) {
		sqe->flags |= IOSQE_ASYNC;
		async_next = 0;
	}
	if (quiet) {
		struct io_uring_sqe *nop = &sqes[(tail + 1) & *sq_mask];

		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS | IOSQE_IO_LINK;
		memset(nop, 0, sizeof(*nop));
		nop->opcode = IORING_OP_NOP;
		sq_array[(tail + 1) & *sq_mask] = (tail + 1) & *sq_mask;
		n = 2;
		quiet = 0;
	}
	__atomic_store_n(sq_tail, tail + n, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, ring_fd, n, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) {
		perror("io_uring_enter");
		exit(2);
	}
	head = *cq_head;
	while (head == __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE))
		;
	res = cqes[head & *cq_mask].res;
	__atomic_store_n(cq_head, head + 1, __ATOMIC_RELEASE);
	if (res < 0)
		fprintf(stderr, "%s: %s\n", what, strerror(-res));
	return res;
}

struct path_args {
	const char *a, *b;
	int flags, fd, slot;
	void *buf;
	unsigned len;
	struct sockaddr_in sin;
};

static void f_open(struct io_uring_sqe *s, void *v)
{
	struct path_args *a = v;

	s->opcode = IORING_OP_OPENAT;
	s->fd = AT_FDCWD;
	s->addr = (unsigned long)a->a;
	s->open_flags = a->flags;
	s->len = 0644;
	s->file_index = a->slot; /* 0: an ordinary fd */
}

static void f_read(struct io_uring_sqe *s, void *v)
{
	struct path_args *a = v;

	s->opcode = IORING_OP_READ;
	s->fd = a->fd;
	s->addr = (unsigned long)a->buf;
	s->len = a->len;
	if (a->slot)
		s->flags = IOSQE_FIXED_FILE;
}

static void f_write(struct io_uring_sqe *s, void *v)
{
	f_read(s, v);
	s->opcode = IORING_OP_WRITE;
}

static void f_unlink(struct io_uring_sqe *s, void *v)
{
	struct path_args *a = v;

	s->opcode = IORING_OP_UNLINKAT;
	s->fd = AT_FDCWD;
	s->addr = (unsigned long)a->a;
}

static void f_mkdir(struct io_uring_sqe *s, void *v)
{
	struct path_args *a = v;

	s->opcode = IORING_OP_MKDIRAT;
	s->fd = AT_FDCWD;
	s->addr = (unsigned long)a->a;
	s->len = 0755;
}

static void f_two(struct io_uring_sqe *s, void *v)
{
	struct path_args *a = v;

	s->opcode = a->flags;
	s->fd = AT_FDCWD;
	s->addr = (unsigned long)a->a;
	s->len = AT_FDCWD; /* the new dirfd */
	s->addr2 = (unsigned long)a->b;
}

static void f_symlink(struct io_uring_sqe *s, void *v)
{
	struct path_args *a = v;

	s->opcode = IORING_OP_SYMLINKAT;
	s->fd = AT_FDCWD;
	s->addr = (unsigned long)a->a;
	s->addr2 = (unsigned long)a->b;
}

static void f_socket(struct io_uring_sqe *s, void *v)
{
	(void)v;
	s->opcode = IORING_OP_SOCKET;
	s->fd = AF_INET;
	s->off = SOCK_DGRAM;
}

static void f_connect(struct io_uring_sqe *s, void *v)
{
	struct path_args *a = v;

	s->opcode = IORING_OP_CONNECT;
	s->fd = a->fd;
	s->addr = (unsigned long)&a->sin;
	s->off = sizeof(a->sin);
}

static void open_then(struct path_args *a, int write)
{
	char buf[256] = "x\n";
	int fd;

	a->buf = buf;
	a->len = write ? 2 : sizeof(buf);
	fd = run("open", f_open, a);
	if (fd < 0)
		return;
	a->fd = a->slot ? a->slot - 1 : fd; /* the registered file's index, or the fd */
	run(write ? "write" : "read", write ? f_write : f_read, a);
	if (!a->slot)
		close(fd);
}

int main(int argc, char **argv)
{
	int i = 1;

	setup();
	while (i < argc) {
		struct path_args a = {0};
		const char *op = argv[i++];

		a.a = i < argc ? argv[i] : NULL;
		a.b = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(op, "read") || !strcmp(op, "async-read")) {
			a.flags = O_RDONLY;
			async_next = op[0] == 'a';
			open_then(&a, 0);
			i += 1;
		} else if (!strcmp(op, "socket")) {
			int fd = run(op, f_socket, &a);

			if (fd >= 0)
				close(fd);
		} else if (!strcmp(op, "slot-read") || !strcmp(op, "quiet-read")) {
			int none = -1;

			syscall(__NR_io_uring_register, ring_fd, IORING_REGISTER_FILES, &none, 1);
			quiet = op[0] == 'q';
			a.flags = O_RDONLY;
			a.slot = 1; /* file_index is the slot plus one */
			open_then(&a, 0);
			i += 1;
		} else if (!strcmp(op, "create")) {
			a.flags = O_WRONLY | O_CREAT | O_TRUNC;
			open_then(&a, 1);
			i += 1;
		} else if (!strcmp(op, "unlink")) {
			run(op, f_unlink, &a);
			i += 1;
		} else if (!strcmp(op, "mkdir")) {
			run(op, f_mkdir, &a);
			i += 1;
		} else if (!strcmp(op, "rename") || !strcmp(op, "link")) {
			a.flags = op[0] == 'r' ? IORING_OP_RENAMEAT : IORING_OP_LINKAT;
			run(op, f_two, &a);
			i += 2;
		} else if (!strcmp(op, "symlink")) {
			run(op, f_symlink, &a);
			i += 2;
		} else if (!strcmp(op, "connect")) {
			a.fd = socket(AF_INET, SOCK_STREAM, 0);
			a.sin.sin_family = AF_INET;
			a.sin.sin_port = htons(atoi(a.b));
			inet_pton(AF_INET, a.a, &a.sin.sin_addr);
			run(op, f_connect, &a);
			close(a.fd);
			i += 2;
		} else {
			fprintf(stderr, "unknown op %s\n", op);
			return 2;
		}
	}
	return 0;
}
