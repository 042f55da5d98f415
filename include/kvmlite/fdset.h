/* File descriptor sets (-add-fd), as QEMU's: a management layer passes open
 * fds and names them /dev/fdset/N in paths; kl_fdset_open() opens such a
 * path as a dup of a set member whose access mode fits, any other path with
 * open(2). */
#ifndef KVMLITE_FDSET_H
#define KVMLITE_FDSET_H

#include <sys/types.h>

/* -add-fd fd=N,set=S[,opaque=TEXT]: 0, or -1 with *err. */
int kl_fdset_add_opts(const char *spec, char **err);
/* open(2) for a path, or a dup of a /dev/fdset/S member; -1 with errno. */
int kl_fdset_open(const char *path, int flags, mode_t mode);
/* Close every set's fds (at exit). */
void kl_fdset_free_all(void);

#endif
