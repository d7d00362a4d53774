/* A user program for the USDT tests: probes of the provider bpfguard_test,
 * whose arguments sit in a register, in memory and in the instruction
 * (a constant), one probe behind a semaphore, and one whose first argument
 * a policy may Set (a 4-byte local in memory, read back after the probe). */
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <stdlib.h>
#include <sys/sdt.h>

/* sys/sdt.h with _SDT_HAS_SEMAPHORES wants one per probe; only "gated"
 * is tested by the program, so it fires only while a probe is attached */
#define BG_SEMAPHORE(name) \
	unsigned short bpfguard_test_##name##_semaphore __attribute__((section(".probes")))
BG_SEMAPHORE(args);
BG_SEMAPHORE(memory);
BG_SEMAPHORE(gated);
BG_SEMAPHORE(verdict);

static volatile long in_memory = -5;

int main(int argc, char **argv)
{
	volatile int verdict = 0; /* volatile: in memory, and read again after the probe */
	int n;
	long big;

	if (argc < 3)
		return 2;
	n = atoi(argv[1]);
	big = -1000L * n;
	DTRACE_PROBE3(bpfguard_test, args, n, big, argv[2]);
	DTRACE_PROBE2(bpfguard_test, memory, in_memory, 42);
	if (bpfguard_test_gated_semaphore)
		DTRACE_PROBE1(bpfguard_test, gated, n);
	DTRACE_PROBE2(bpfguard_test, verdict, verdict, n);
	printf("ran %d verdict %d\n", n, verdict);
	return 0;
}
