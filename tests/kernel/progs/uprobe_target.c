/* A user program for the uprobe tests: two functions that say when they ran. */
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

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	bg_other(atoi(argv[1]));
	bg_guarded(atoi(argv[1]), argv[2]);
	return 0;
}
