/* A user program for the uprobe tests: functions that say when they ran, and
 * one that returns a string (a uretprobe's returnArg). */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) int bg_guarded(int n, const char *word)
{
	printf("guarded %d %s\n", n, word);
	fflush(stdout);
	return n;
}

__attribute__((noinline)) int bg_other(int n)
{
	printf("other %d\n", n);
	fflush(stdout);
	return n;
}

__attribute__((noinline)) const char *bg_greeting(int n)
{
	static char buf[32];

	snprintf(buf, sizeof(buf), "hello %d", n);
	return buf;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	bg_other(atoi(argv[1]));
	bg_guarded(atoi(argv[1]), argv[2]);
	puts(bg_greeting(atoi(argv[1])));
	return 0;
}
