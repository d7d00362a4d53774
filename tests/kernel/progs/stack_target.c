/* A user program for the stack-trace tests: main -> bg_outer -> bg_open_it
 * -> openat(argv[1]), between two lines on stdin (the test's policy is in
 * place before; the process still runs while its event is read, so its
 * mappings name the frames). Built with frame pointers, and the syscall made
 * inline: the kernel walks a user stack by the frame pointers, which libc's
 * own wrappers do not keep. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((noinline)) long bg_open_it(const char *path)
{
	long fd;

	asm volatile("syscall"
		     : "=a"(fd)
		     : "0"((long)SYS_openat), "D"((long)AT_FDCWD), "S"(path), "d"((long)O_RDONLY)
		     : "rcx", "r11", "memory");
	if (fd >= 0)
		close((int)fd);
	return fd;
}

__attribute__((noinline)) long bg_outer(const char *path)
{
	return bg_open_it(path) + 1;
}

int main(int argc, char **argv)
{
	long got;

	if (argc < 2)
		return 2;
	getchar();
	got = bg_outer(argv[1]);
	printf("%ld\n", got);
	fflush(stdout);
	getchar();
	return 0;
}
