/* qom-list / qom-get / qom-set over the objects devices add (kvmlite/qom.h).
 * Errors as QEMU 7.2's qom commands: an unknown path is DeviceNotFound
 * "Device 'PATH' not found", an unknown property "Property 'TYPE.NAME' not
 * found", a property without getter/setter "Property 'TYPE.NAME' is not
 * readable" / "... is not writable". */
#include <string.h>

#include "kvmlite/hotplug.h"
#include "kvmlite/qom.h"
#include "monitor_int.h"

struct qom_obj {
	char *path;
	char *type;
	const struct kl_qom_prop *props;
	void *opaque;
};

static GPtrArray *objs;

static void obj_free(gpointer p)
{
	struct qom_obj *o = p;
	g_free(o->path);
	g_free(o->type);
	g_free(o);
}

void kl_qom_add(const char *path, const char *type_name, const struct kl_qom_prop *props,
		void *opaque)
{
	if (!objs)
		objs = g_ptr_array_new_with_free_func(obj_free);
	struct qom_obj *o = g_new0(struct qom_obj, 1);
	o->path = g_strdup(path);
	o->type = g_strdup(type_name);
	o->props = props;
	o->opaque = opaque;
	g_ptr_array_add(objs, o);
}

void kl_qom_remove(const char *path)
{
	for (guint i = 0; objs && i < objs->len; i++) {
		struct qom_obj *o = g_ptr_array_index(objs, i);
		if (!strcmp(o->path, path)) {
			g_ptr_array_remove_index(objs, i);
			break;
		}
	}
	if (objs && !objs->len) {
		g_ptr_array_free(objs, TRUE);
		objs = NULL;
	}
}

static struct qom_obj *find(const char *path)
{
	for (guint i = 0; objs && i < objs->len; i++) {
		struct qom_obj *o = g_ptr_array_index(objs, i);
		if (!strcmp(o->path, path))
			return o;
	}
	return NULL;
}

/* Is path a strict ancestor of some object ("/" or "/machine" ...)?  The
 * trailing '/' is optional, as QEMU resolves "/machine/" too. */
static bool is_container(const char *path)
{
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n == 1 && path[0] == '/')
		return objs && objs->len;
	/* containers every machine has, devices or not (the qdevs) */
	static const char *const fixed[] = { "/machine", "/machine/peripheral",
					     "/machine/peripheral-anon", NULL };
	for (int i = 0; fixed[i]; i++)
		if (strlen(fixed[i]) == n && !strncmp(path, fixed[i], n))
			return true;
	for (guint i = 0; objs && i < objs->len; i++) {
		struct qom_obj *o = g_ptr_array_index(objs, i);
		if (!strncmp(o->path, path, n) && o->path[n] == '/')
			return true;
	}
	return false;
}

static const struct kl_qom_prop *find_prop(struct qom_obj *o, const char *name)
{
	for (const struct kl_qom_prop *p = o->props; p && p->name; p++)
		if (!strcmp(p->name, name))
			return p;
	return NULL;
}

static void add_entry(JsonArray *a, const char *name, const char *type)
{
	JsonObject *e = json_object_new();
	json_object_set_string_member(e, "name", name);
	json_object_set_string_member(e, "type", type);
	json_array_add_object_element(a, e);
}

static enum kl_qmp_err not_found(const char *path, char **desc)
{
	*desc = g_strdup_printf("Device '%s' not found", path);
	return KL_QMP_DEVICE_NOT_FOUND;
}

struct qdev_ctx {
	JsonArray *a;
	GHashTable *seen;
	const char *path;
	size_t n;
};

static void qdev_child(const struct kl_qdev *q, void *opaque)
{
	struct qdev_ctx *c = opaque;
	if (strncmp(q->path, c->path, c->n) || q->path[c->n] != '/' || strchr(q->path + c->n + 1, '/'))
		return;
	const char *name = q->path + c->n + 1;
	if (g_hash_table_contains(c->seen, name))
		return;
	char *t = g_strdup_printf("child<%s>", q->driver);
	add_entry(c->a, name, t);
	g_free(t);
	g_hash_table_add(c->seen, g_strdup(name));
}

const struct kl_qmp_arg kl_qmp_qom_list_args[] = {
	{ "path", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ NULL },
};

enum kl_qmp_err kl_qmp_qom_list(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				char **desc)
{
	(void)s;
	const char *path = json_object_get_string_member(args, "path");
	struct qom_obj *o = find(path);
	JsonArray *a;
	if (o) {
		a = json_array_new();
		add_entry(a, "type", "string");
		for (const struct kl_qom_prop *p = o->props; p && p->name; p++)
			add_entry(a, p->name, p->type);
	} else if (is_container(path)) {
		a = json_array_new();
		add_entry(a, "type", "string");
		size_t n = strlen(path);
		while (n > 0 && path[n - 1] == '/')
			n--;
		GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
		for (guint i = 0; objs && i < objs->len; i++) {
			struct qom_obj *c = g_ptr_array_index(objs, i);
			if (strncmp(c->path, path, n) || c->path[n] != '/')
				continue;
			const char *rest = c->path + n + 1;
			const char *slash = strchr(rest, '/');
			char *name = slash ? g_strndup(rest, slash - rest) : g_strdup(rest);
			if (!g_hash_table_contains(seen, name)) {
				char *t = g_strdup_printf("child<%s>", slash ? "container" : c->type);
				add_entry(a, name, t);
				g_free(t);
				g_hash_table_add(seen, name);
			} else {
				g_free(name);
			}
		}
		/* the devices of -device / device_add (src/hotplug/qdev.c) */
		struct qdev_ctx c = { a, seen, path, n };
		kl_qdev_foreach(qdev_child, &c);
		g_hash_table_destroy(seen);
	} else {
		return not_found(path, desc);
	}
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

const struct kl_qmp_arg kl_qmp_qom_get_args[] = {
	{ "path", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "property", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ NULL },
};

enum kl_qmp_err kl_qmp_qom_get(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
			       char **desc)
{
	(void)s;
	const char *path = json_object_get_string_member(args, "path");
	const char *prop = json_object_get_string_member(args, "property");
	struct qom_obj *o = find(path);
	if (!o && !is_container(path))
		return not_found(path, desc);
	const char *type = o ? o->type : "container";
	if (!strcmp(prop, "type")) {
		*ret = json_node_init_string(json_node_alloc(), type);
		return KL_QMP_OK;
	}
	const struct kl_qom_prop *p = o ? find_prop(o, prop) : NULL;
	if (!p) {
		*desc = g_strdup_printf("Property '%s.%s' not found", type, prop);
		return KL_QMP_GENERIC;
	}
	if (!p->get) {
		*desc = g_strdup_printf("Property '%s.%s' is not readable", type, prop);
		return KL_QMP_GENERIC;
	}
	*ret = p->get(o->opaque);
	return KL_QMP_OK;
}

/* qom-set: path, property (strings) and value (any): free-form arguments */
enum kl_qmp_err kl_qmp_qom_set(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
			       char **desc)
{
	(void)s, (void)ret;
	static const char *const names[] = { "path", "property", "value" };
	JsonObjectIter it;
	const char *k;
	JsonNode *v;
	json_object_iter_init_ordered(&it, args);
	while (json_object_iter_next_ordered(&it, &k, &v)) {
		unsigned i = 0;
		while (i < 3 && strcmp(k, names[i]))
			i++;
		if (i == 3) {
			*desc = g_strdup_printf("Parameter '%s' is unexpected", k);
			return KL_QMP_GENERIC;
		}
		if (i < 2 && (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_STRING)) {
			*desc = g_strdup_printf("Invalid parameter type for '%s', expected: string", k);
			return KL_QMP_GENERIC;
		}
	}
	for (unsigned i = 0; i < 3; i++)
		if (!json_object_has_member(args, names[i])) {
			*desc = g_strdup_printf("Parameter '%s' is missing", names[i]);
			return KL_QMP_GENERIC;
		}
	const char *path = json_object_get_string_member(args, "path");
	const char *prop = json_object_get_string_member(args, "property");
	struct qom_obj *o = find(path);
	if (!o && !is_container(path))
		return not_found(path, desc);
	const char *type = o ? o->type : "container";
	const struct kl_qom_prop *p = o ? find_prop(o, prop) : NULL;
	if (!p && strcmp(prop, "type")) {
		*desc = g_strdup_printf("Property '%s.%s' not found", type, prop);
		return KL_QMP_GENERIC;
	}
	if (!p || !p->set) {
		*desc = g_strdup_printf("Property '%s.%s' is not writable", type, prop);
		return KL_QMP_GENERIC;
	}
	return p->set(o->opaque, json_object_get_member(args, "value"), desc) < 0 ? KL_QMP_GENERIC
										   : KL_QMP_OK;
}
