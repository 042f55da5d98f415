/* Entropy back-ends: -object rng-random / rng-builtin (include/kvmlite/rng.h).
 *
 * As QEMU 7.2 (backends/rng-random.c, rng-builtin.c): rng-random's
 * filename defaults to /dev/urandom and is opened when the object is
 * created (an error names the file); rng-builtin has no properties. */
#include "kvmlite/rng.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "kvmlite/object.h"

struct kl_rng {
	char *id;
	const char *type;
	char *filename;   /* rng-random */
	int fd;           /* rng-random: O_NONBLOCK; -1 for rng-builtin */
};

static GPtrArray *rngs;  /* of struct kl_rng, -object order */

static void rng_free(struct kl_rng *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	g_free(r->id);
	g_free(r->filename);
	g_free(r);
}

struct kl_rng *kl_rng_find(const char *id)
{
	for (guint i = 0; rngs && id && i < rngs->len; i++) {
		struct kl_rng *r = g_ptr_array_index(rngs, i);
		if (!strcmp(r->id, id))
			return r;
	}
	return NULL;
}

struct kl_rng *kl_rng_new_default(void)
{
	struct kl_rng *r = g_new0(struct kl_rng, 1);
	r->type = "rng-builtin";
	r->fd = -1;
	return r;
}

void kl_rng_free_default(struct kl_rng *r)
{
	rng_free(r);
}

ssize_t kl_rng_read(struct kl_rng *r, void *buf, size_t len)
{
	if (len == 0)
		return 0;
	for (;;) {
		ssize_t n = r->fd >= 0 ? read(r->fd, buf, len)
				       : getrandom(buf, len, GRND_NONBLOCK);
		if (n > 0)
			return n;
		if (n == 0) {       /* end of a regular file: no more entropy */
			errno = EIO;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
}

int kl_rng_fd(const struct kl_rng *r)
{
	return r->fd;
}

const char *kl_rng_id(const struct kl_rng *r)
{
	return r->id;
}

const char *kl_rng_type(const struct kl_rng *r)
{
	return r->type;
}

static int rng_object_add(const char *type, struct kl_opts *o, char **err)
{
	const char *id = kl_opts_get(o, "id");
	if (!id || !*id) {
		*err = g_strdup("Parameter 'id' is missing");
		return -1;
	}
	if (kl_rng_find(id)) {
		*err = g_strdup_printf("attempt to add duplicate property '%s' to object (type 'container')",
				       id);
		return -1;
	}
	struct kl_rng *r = g_new0(struct kl_rng, 1);
	r->fd = -1;
	if (!strcmp(type, "rng-random")) {
		r->type = "rng-random";
		const char *fn = kl_opts_get(o, "filename");
		r->filename = g_strdup(fn ? fn : "/dev/urandom");
		if (!*r->filename) {
			*err = g_strdup("rng random backend cannot be opened with an empty filename");
			rng_free(r);
			return -1;
		}
		r->fd = open(r->filename, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (r->fd < 0) {
			*err = g_strdup_printf("Could not open '%s': %s", r->filename, g_strerror(errno));
			rng_free(r);
			return -1;
		}
	} else {
		r->type = "rng-builtin";
	}
	r->id = g_strdup(id);
	if (!rngs)
		rngs = g_ptr_array_new();
	g_ptr_array_add(rngs, r);
	return 0;
}

static void rng_objects_free(void)
{
	for (guint i = 0; rngs && i < rngs->len; i++)
		rng_free(g_ptr_array_index(rngs, i));
	if (rngs)
		g_ptr_array_free(rngs, TRUE);
	rngs = NULL;
}

static const struct kl_object_type rng_random_type = {
	.name = "rng-random", .add = rng_object_add, .free_all = rng_objects_free,
};
KL_OBJECT_TYPE(rng_random_type)
static const struct kl_object_type rng_builtin_type = {
	.name = "rng-builtin", .add = rng_object_add, .free_all = rng_objects_free,
};
KL_OBJECT_TYPE(rng_builtin_type)
