/* Makes a 32-bit (ia32 compat) open(2) through int $0x80 from a 64-bit
 * process: syscall 5 is open on i386 but fstat on x86_64, so a tracer that
 * ignores the ABI misnames it. Built -no-pie so `path` sits below 4 GiB.
 * usage: int80_open (opens PATH_TO_OPEN, prints the result) */
#include <stdio.h>

static char path[] = "/etc/hostname";

int main(void)
{
	long ret;

	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(5L), "b"((long)path), "c"(0L), "d"(0L)
			 : "memory");
	printf("%ld\n", ret);
	return ret >= 0 ? 0 : 1;
}
