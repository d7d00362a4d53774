/* Opens argv[1] read-only argv[2] times, closing it each time: a storm of
 * opens and nothing else. Built -static (see conftest), so the dynamic
 * loader opens no libraries: every open of the process is one of these. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 1;

	if (argc < 2)
		return 2;
	for (long i = 0; i < n; i++) {
		int fd = open(argv[1], O_RDONLY);

		if (fd < 0)
			return 1;
		close(fd);
	}
	return 0;
}
