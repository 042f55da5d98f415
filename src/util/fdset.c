/* -add-fd and /dev/fdset/N paths (kvmlite/fdset.h), as QEMU 7.2: an fd is
 * taken over (kvmlite closes it at exit), a path opens as a dup(2) of the
 * first member of the set whose access mode matches the open's (O_RDWR
 * members serve every mode); no match is EACCES, an unknown set ENOENT. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmlite/fdset.h"
#include "kvmlite/opts.h"

struct fdset_fd {
	long set;
	int fd;
};

static GArray *fds;

static int parse_num(struct kl_opts *o, const char *key, long *out, char **err)
{
	const char *v = kl_opts_get(o, key);
	char *end;
	if (!v || !*v) {
		*err = g_strdup_printf("parameter '%s' is missing", key);
		return -1;
	}
	errno = 0;
	*out = strtol(v, &end, 10);
	if (*end || errno || *out < 0 || *out > INT32_MAX) {
		*err = g_strdup_printf("parameter '%s' expects a non-negative number", key);
		return -1;
	}
	return 0;
}

int kl_fdset_add_opts(const char *spec, char **err)
{
	struct kl_opts *o = kl_opts_parse(spec, NULL, err);
	if (!o)
		return -1;
	long fd, set;
	int r = -1;
	kl_opts_get(o, "opaque");
	if (parse_num(o, "fd", &fd, err) < 0 || parse_num(o, "set", &set, err) < 0 ||
	    kl_opts_check_unused(o, "-add-fd", err) < 0)
		goto out;
	if (fd <= STDERR_FILENO) {
		*err = g_strdup("fd cannot be a standard I/O stream");
		goto out;
	}
	if (fcntl((int)fd, F_GETFD) < 0) {
		*err = g_strdup_printf("File descriptor %ld is not valid", fd);
		goto out;
	}
	for (guint i = 0; fds && i < fds->len; i++)
		if (g_array_index(fds, struct fdset_fd, i).fd == fd) {
			*err = g_strdup_printf("fd %ld already in an fd set", fd);
			goto out;
		}
	if (!fds)
		fds = g_array_new(FALSE, FALSE, sizeof(struct fdset_fd));
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	struct fdset_fd e = { set, (int)fd };
	g_array_append_val(fds, e);
	r = 0;
out:
	kl_opts_free(o);
	return r;
}

int kl_fdset_open(const char *path, int flags, mode_t mode)
{
	if (strncmp(path, "/dev/fdset/", 11))
		return open(path, flags, mode);
	char *end;
	errno = 0;
	long set = strtol(path + 11, &end, 10);
	if (!path[11] || *end || errno || set < 0) {
		errno = EINVAL;
		return -1;
	}
	bool found = false;
	for (guint i = 0; fds && i < fds->len; i++) {
		struct fdset_fd *e = &g_array_index(fds, struct fdset_fd, i);
		if (e->set != set)
			continue;
		found = true;
		int fl = fcntl(e->fd, F_GETFL);
		if (fl < 0)
			continue;
		int acc = fl & O_ACCMODE;
		if (acc != O_RDWR && acc != (flags & O_ACCMODE))
			continue;
		int fd = fcntl(e->fd, (flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
		if (fd >= 0 && (flags & O_APPEND) && !(fl & O_APPEND))
			fcntl(fd, F_SETFL, fl | O_APPEND);
		return fd;
	}
	errno = found ? EACCES : ENOENT;
	return -1;
}

void kl_fdset_free_all(void)
{
	for (guint i = 0; fds && i < fds->len; i++)
		close(g_array_index(fds, struct fdset_fd, i).fd);
	if (fds)
		g_array_free(fds, TRUE);
	fds = NULL;
}
