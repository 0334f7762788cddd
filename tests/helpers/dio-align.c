/*
 * dio-align DIR: whether the filesystem of DIR takes O_DIRECT for a file there,
 * as statx STATX_DIOALIGN reports it for a new file (a directory reports
 * nothing): "MEM OFFSET" (the alignments it asks of memory and of file offsets
 * and lengths), or "none". Found independently of kvmbox, so a test knows
 * whether kvmbox unpack should write a disk past the page cache there.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#endif

int main(int argc, char **argv)
{
	struct statx st;
	if (argc != 2) {
		fprintf(stderr, "usage: dio-align DIR\n");
		return 2;
	}
	int fd = open(argv[1], O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0 || statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &st) < 0) {
		perror(argv[1]);
		return 1;
	}
	close(fd);
	if ((st.stx_mask & STATX_DIOALIGN) && st.stx_dio_mem_align && st.stx_dio_offset_align)
		printf("%u %u\n", st.stx_dio_mem_align, st.stx_dio_offset_align);
	else
		printf("none\n");
	return 0;
}
