/* A racer thread keeps flipping `buf` between two same-length paths while the
 * main thread opens `buf` N times and prints which file it really got:
 * B (benign), S (secret) or E (the open failed: a torn path).
 * usage: toctou_race BENIGN SECRET N */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char buf[4096];
static const char *paths[2];
static atomic_int stop;

static void *racer(void *arg)
{
	(void)arg;
	for (unsigned i = 0; !atomic_load(&stop); i++)
		memcpy(buf, paths[i & 1], strlen(paths[0]) + 1);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;
	int n;

	if (argc != 4 || strlen(argv[1]) != strlen(argv[2]))
		return 2;
	paths[0] = argv[1];
	paths[1] = argv[2];
	n = atoi(argv[3]);
	strcpy(buf, paths[0]);
	pthread_create(&t, NULL, racer, NULL);
	for (int i = 0; i < n; i++) {
		char c = 'E';
		int fd = open(buf, O_RDONLY);
		if (fd >= 0) {
			if (read(fd, &c, 1) != 1)
				c = '?';
			close(fd);
		}
		putchar(c);
	}
	atomic_store(&stop, 1);
	pthread_join(t, NULL);
	putchar('\n');
	return 0;
}
