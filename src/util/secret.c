/* -object secret,id=ID,(data=TEXT|file=PATH)[,format=raw|base64], as
 * QEMU 7.2's (libvirt passes its master key this way).  kvmlite has no
 * consumer of secrets yet (no encrypted images, no TLS), so a secret is
 * read, checked and kept until exit; keyid/iv (secrets encrypted with
 * another secret) are refused. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "kvmlite/fdset.h"
#include "kvmlite/object.h"

struct secret {
	char *id;
	guchar *data;
	gsize len;
};

static GPtrArray *secrets;

static void secret_free(gpointer p)
{
	struct secret *s = p;
	g_free(s->id);
	if (s->data)
		memset(s->data, 0, s->len);
	g_free(s->data);
	g_free(s);
}

static char *read_fd(int fd, gsize *len)
{
	GString *b = g_string_new(NULL);
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof(buf))) > 0 && b->len < (1u << 20))
		g_string_append_len(b, buf, n);
	if (n < 0) {
		g_string_free(b, TRUE);
		return NULL;
	}
	*len = b->len;
	return g_string_free(b, FALSE);
}

static int secret_add(const char *type, struct kl_opts *o, char **err)
{
	(void)type;
	const char *id = kl_opts_get(o, "id"), *data = kl_opts_get(o, "data");
	const char *file = kl_opts_get(o, "file"), *fmt = kl_opts_get(o, "format");
	if (kl_opts_get(o, "keyid") || kl_opts_get(o, "iv")) {
		*err = g_strdup("kvmlite does not support encrypted secrets (keyid, iv)");
		return -1;
	}
	if (!id || !*id) {
		*err = g_strdup("Parameter 'id' is missing");
		return -1;
	}
	if (!!data == !!file) {
		*err = g_strdup(data ? "'data' and 'file' are mutually exclusive"
				     : "Either 'data' or 'file' must be provided");
		return -1;
	}
	if (fmt && strcmp(fmt, "raw") && strcmp(fmt, "base64")) {
		*err = g_strdup_printf("Parameter 'format' does not accept value '%s'", fmt);
		return -1;
	}
	for (guint i = 0; secrets && i < secrets->len; i++)
		if (!strcmp(((struct secret *)g_ptr_array_index(secrets, i))->id, id)) {
			*err = g_strdup_printf("attempt to add duplicate property '%s' to object "
					       "(type 'container')", id);
			return -1;
		}
	gsize len = 0;
	char *raw;
	if (file) {
		int fd = kl_fdset_open(file, O_RDONLY | O_CLOEXEC, 0);
		if (fd < 0) {
			*err = g_strdup_printf("Unable to read %s: %s", file, g_strerror(errno));
			return -1;
		}
		raw = read_fd(fd, &len);
		int e = errno;
		close(fd);
		if (!raw) {
			*err = g_strdup_printf("Unable to read %s: %s", file, g_strerror(e));
			return -1;
		}
	} else {
		raw = g_strdup(data);
		len = strlen(data);
	}
	struct secret *s = g_new0(struct secret, 1);
	s->id = g_strdup(id);
	if (fmt && !strcmp(fmt, "base64")) {
		s->data = g_base64_decode(raw, &s->len);
		memset(raw, 0, len);
		g_free(raw);
	} else {
		s->data = (guchar *)raw;
		s->len = len;
	}
	if (!secrets)
		secrets = g_ptr_array_new_with_free_func(secret_free);
	g_ptr_array_add(secrets, s);
	return 0;
}

static void secret_free_all(void)
{
	if (secrets)
		g_ptr_array_free(secrets, TRUE);
	secrets = NULL;
}

static const struct kl_object_type secret_type = {
	.name = "secret", .add = secret_add, .free_all = secret_free_all,
};
KL_OBJECT_TYPE(secret_type)
