/* -device type registry: see include/kvmlite/device.h. */
#include "kvmlite/device.h"

#include <glib.h>
#include <stdlib.h>
#include <string.h>

static GPtrArray *types;

void kl_device_type_register(const struct kl_device_type *t)
{
	if (!types)
		types = g_ptr_array_new();
	g_ptr_array_add(types, (gpointer)t);
}

const struct kl_device_type *kl_device_type_find(const char *name)
{
	if (!types || !name)
		return NULL;
	for (guint i = 0; i < types->len; i++) {
		const struct kl_device_type *t = g_ptr_array_index(types, i);
		if (!strcmp(t->name, name))
			return t;
	}
	return NULL;
}

static gint by_name(gconstpointer a, gconstpointer b)
{
	const struct kl_device_type *x = *(const struct kl_device_type *const *)a;
	const struct kl_device_type *y = *(const struct kl_device_type *const *)b;
	return strcmp(x->name, y->name);
}

const struct kl_device_type **kl_device_type_list(void)
{
	guint n = types ? types->len : 0;
	const struct kl_device_type **v = g_new0(const struct kl_device_type *, n + 1);
	for (guint i = 0; i < n; i++)
		v[i] = g_ptr_array_index(types, i);
	qsort(v, n, sizeof(*v), by_name);
	return v;
}

static char *cur_path;
static unsigned anon_next;

void kl_device_set_path(const char *id)
{
	g_free(cur_path);
	cur_path = id && *id ? g_strdup_printf("/machine/peripheral/%s", id)
			     : g_strdup_printf("/machine/peripheral-anon/device[%u]", anon_next++);
}

const char *kl_device_path(void)
{
	return cur_path;
}

void kl_device_clear_path(void)
{
	g_free(cur_path);
	cur_path = NULL;
}
