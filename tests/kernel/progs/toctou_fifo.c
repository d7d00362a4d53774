/* Thread A opens the path in `buf` (a FIFO: the open blocks inside the kernel,
 * after the kernel copied the path). Thread B then rewrites `buf` to another
 * path and opens the FIFO for writing, which lets A's open return. A tracer
 * that reads the path at exit is fooled; one that resolves the returned fd is not.
 * usage: toctou_fifo FIFO OTHER_PATH */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char buf[4096];
static const char *fifo, *other;

static void *swapper(void *arg)
{
	(void)arg;
	usleep(200 * 1000);
	strcpy(buf, other);
	int w = open(fifo, O_WRONLY);
	if (w >= 0)
		close(w);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t;

	if (argc != 3)
		return 2;
	fifo = argv[1];
	other = argv[2];
	strcpy(buf, fifo);
	pthread_create(&t, NULL, swapper, NULL);
	int fd = open(buf, O_RDONLY);
	pthread_join(t, NULL);
	printf("%d %s\n", fd, buf);
	return fd >= 0 ? 0 : 1;
}
