/* -object type registry: see include/kvmlite/object.h. */
#include "kvmlite/object.h"

#include <glib.h>
#include <string.h>

static GPtrArray *types;

void kl_object_type_register(const struct kl_object_type *t)
{
	if (!types)
		types = g_ptr_array_new();
	g_ptr_array_add(types, (gpointer)t);
}

const struct kl_object_type *kl_object_type_find(const char *name)
{
	for (guint i = 0; types && name && i < types->len; i++) {
		const struct kl_object_type *t = g_ptr_array_index(types, i);
		if (!strcmp(t->name, name))
			return t;
	}
	return NULL;
}

void kl_object_types_free_all(void)
{
	for (guint i = 0; types && i < types->len; i++) {
		const struct kl_object_type *t = g_ptr_array_index(types, i);
		if (t->free_all)
			t->free_all();
	}
}
