/* Scope-bound cleanup (systemd style): the resource is released when the variable goes out of scope. */
#ifndef KVMBOX_CLEANUP_H
#define KVMBOX_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <dirent.h>

static inline void kb_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
static inline void kb_free_ptr(void *p)
{
	free(*(void **)p);
}
static inline void kb_close_dir(DIR **d)
{
	if (*d)
		closedir(*d);
}
static inline void kb_close_file(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define autoclose_fd __attribute__((cleanup(kb_close_fd))) int
#define autofree __attribute__((cleanup(kb_free_ptr)))
#define autoclose_dir __attribute__((cleanup(kb_close_dir))) DIR *
#define autoclose_file __attribute__((cleanup(kb_close_file))) FILE *

#endif
