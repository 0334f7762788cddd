/*
 * unix-listen PATH        listen on a unix socket at PATH until killed (a live daemon)
 * unix-listen --stale PATH bind PATH and exit, leaving a socket nobody listens on (a dead daemon)
 * Prints "ready" once the socket exists.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int stale = argc == 3 && strcmp(argv[1], "--stale") == 0;
	if (argc != 2 + stale) {
		fprintf(stderr, "usage: unix-listen [--stale] PATH\n");
		return 2;
	}
	const char *path = argv[1 + stale];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "unix-listen: path too long: %s\n", path);
		return 1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || (!stale && listen(fd, 16) < 0)) {
		perror("unix-listen");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	if (stale)
		return 0;
	for (;;)
		pause();
}
