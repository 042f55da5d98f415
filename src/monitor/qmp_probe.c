/* The commands a management layer (libvirt 9.0) probes an emulator with:
 * query-target, query-machines, qom-list-types, device-list-properties,
 * qom-list-properties, query-cpu-definitions, query-cpu-model-expansion,
 * query-command-line-options, query-iothreads and
 * query-qmp-schema (generated at build time by scripts/qapi-gen.py from
 * qmp_schema.json).  Each answers with what kvmlite implements, in the
 * shapes of QEMU 7.2's QAPI schema. */
#include <string.h>

#include "kvmlite/cpu.h"
#include "kvmlite/device.h"
#include "monitor_int.h"

enum kl_qmp_err kl_qmp_query_target(struct kl_qmp_session *s, JsonObject *args,
					JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "arch", "x86_64");
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}

static void add_machine(JsonArray *a, const char *name, const char *alias, bool dflt,
			int cpu_max, const char *ram_id)
{
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "name", name);
	if (alias)
		json_object_set_string_member(o, "alias", alias);
	if (dflt)
		json_object_set_boolean_member(o, "is-default", true);
	json_object_set_int_member(o, "cpu-max", cpu_max);
	/* as QEMU 7.2: pc has ACPI CPU hot-plug (docs/hotplug.md), microvm not */
	json_object_set_boolean_member(o, "hotpluggable-cpus", !strncmp(name, "pc", 2));
	json_object_set_boolean_member(o, "numa-mem-supported", false);
	json_object_set_boolean_member(o, "deprecated", false);
	json_object_set_string_member(o, "default-cpu-type", "qemu64-x86_64-cpu");
	if (ram_id)
		json_object_set_string_member(o, "default-ram-id", ram_id);
	json_object_set_boolean_member(o, "acpi", !!ram_id && strcmp(name, "microvm"));
	json_array_add_object_element(a, o);
}

enum kl_qmp_err kl_qmp_query_machines(struct kl_qmp_session *s, JsonObject *args,
					  JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	JsonArray *a = json_array_new();
	add_machine(a, "pc-i440fx-7.2", "pc", true, 255, "pc.ram");
	add_machine(a, "microvm", NULL, false, 255, "microvm.ram");
	add_machine(a, "none", NULL, false, 1, NULL);
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

/* QOM types besides the -device ones: the machines, the accelerator and
 * the -object types kvmlite creates (src/main.c add_object). */
static const char *const extra_types[][2] = {
	{ "pc-i440fx-7.2-machine", "generic-pc-machine" },
	{ "microvm-machine", "x86-machine" },
	{ "none-machine", "machine" },
	{ "kvm-accel", "accel" },
	{ "memory-backend-ram", "memory-backend" },
	{ "memory-backend-memfd", "memory-backend" },
	{ "memory-backend-file", "memory-backend" },
	{ "rng-random", "rng-backend" },
	{ "rng-builtin", "rng-backend" },
	{ "secret", "secret_common" },
	{ "throttle-group", "object" },
	{ NULL, NULL },
};

enum kl_qmp_err kl_qmp_qom_list_types(struct kl_qmp_session *s, JsonObject *args,
					  JsonNode **ret, char **desc)
{
	(void)s, (void)desc;
	const char *impl = json_object_has_member(args, "implements")
		? json_object_get_string_member(args, "implements") : NULL;
	JsonArray *a = json_array_new();
	const struct kl_device_type **t = kl_device_type_list();
	for (size_t i = 0; t[i]; i++) {
		if (impl && strcmp(impl, "device") && strcmp(impl, t[i]->name))
			continue;
		JsonObject *o = json_object_new();
		json_object_set_string_member(o, "name", t[i]->name);
		json_object_set_string_member(o, "parent", "device");
		json_array_add_object_element(a, o);
	}
	g_free(t);
	for (int i = 0; extra_types[i][0]; i++) {
		if (impl && strcmp(impl, extra_types[i][1]) && strcmp(impl, extra_types[i][0]))
			continue;
		JsonObject *o = json_object_new();
		json_object_set_string_member(o, "name", extra_types[i][0]);
		json_object_set_string_member(o, "parent", extra_types[i][1]);
		json_array_add_object_element(a, o);
	}
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

/* Properties kvmlite's -device parser accepts, per type (the common PCI
 * ones for every PCI device). */
static const char *const pci_props[][2] = {
	{ "addr", "int32" }, { "multifunction", "bool" }, { NULL, NULL },
};
static const char *const dev_props[][3] = {
	{ "virtio-blk-pci", "drive", "str" },
	{ "virtio-blk-pci", "bootindex", "int32" },
	{ "virtio-blk-pci", "write-cache", "OnOffAuto" },
	{ "virtio-blk-pci", "serial", "str" },
	{ "virtio-net-pci", "netdev", "str" },
	{ "virtio-net-pci", "mac", "str" },
	{ "virtio-net-pci", "bootindex", "int32" },
	{ "virtio-balloon-pci", "deflate-on-oom", "bool" },
	{ "virtio-balloon-pci", "free-page-reporting", "bool" },
	{ "e1000", "netdev", "str" },
	{ "e1000", "mac", "str" },
	{ "isa-serial", "chardev", "str" },
	{ "isa-serial", "index", "uint32" },
	{ NULL, NULL, NULL },
};

static void add_prop(JsonArray *a, const char *name, const char *type)
{
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "name", name);
	json_object_set_string_member(o, "type", type);
	json_array_add_object_element(a, o);
}

enum kl_qmp_err kl_qmp_device_list_properties(struct kl_qmp_session *s, JsonObject *args,
						  JsonNode **ret, char **desc)
{
	(void)s;
	const char *tn = json_object_get_string_member(args, "typename");
	const struct kl_device_type *t = kl_device_type_find(tn);
	if (!t) {
		*desc = g_strdup_printf("Device '%s' not found", tn);
		return KL_QMP_DEVICE_NOT_FOUND;
	}
	JsonArray *a = json_array_new();
	for (int i = 0; dev_props[i][0]; i++)
		if (!strcmp(dev_props[i][0], tn))
			add_prop(a, dev_props[i][1], dev_props[i][2]);
	if (g_str_has_suffix(tn, "-pci") || !strcmp(tn, "e1000"))
		for (int i = 0; pci_props[i][0]; i++)
			add_prop(a, pci_props[i][0], pci_props[i][1]);
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_query_cpu_definitions(struct kl_qmp_session *s, JsonObject *args,
						 JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	JsonArray *a = json_array_new();
	for (const char *const *n = kl_cpu_model_names(); *n; n++) {
		JsonObject *o = json_object_new();
		char *tn = g_strdup_printf("%s-x86_64-cpu", *n);
		json_object_set_string_member(o, "name", *n);
		json_object_set_string_member(o, "typename", tn);
		g_free(tn);
		json_object_set_array_member(o, "unavailable-features", json_array_new());
		json_object_set_boolean_member(o, "static", false);
		json_object_set_boolean_member(o, "migration-safe", strcmp(*n, "host") && strcmp(*n, "max"));
		json_object_set_boolean_member(o, "deprecated", false);
		json_array_add_object_element(a, o);
	}
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_query_cpu_model_expansion(struct kl_qmp_session *s, JsonObject *args,
						     JsonNode **ret, char **desc)
{
	(void)s;
	JsonObject *m = json_object_get_object_member(args, "model");
	const char *name = m && json_object_has_member(m, "name")
		? json_object_get_string_member(m, "name") : NULL;
	bool known = false;
	for (const char *const *n = kl_cpu_model_names(); name && *n; n++)
		known |= !strcmp(*n, name);
	if (!known) {
		*desc = g_strdup_printf("The CPU type '%s' is not a recognized x86_64 CPU type",
					name ? name : "");
		return KL_QMP_GENERIC;
	}
	JsonObject *mo = json_object_new();
	json_object_set_string_member(mo, "name", name);
	json_object_set_object_member(mo, "props", json_object_new());
	JsonObject *o = json_object_new();
	json_object_set_object_member(o, "model", mo);
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}

/* query-command-line-options, query-iothreads and qom-list-properties
 * (kvmlite's objects have no introspectable class properties): an empty
 * list, never an error -- libvirt 9.0 crashes on DeviceNotFound for
 * qom-list-properties memory-backend-file. */
enum kl_qmp_err kl_qmp_empty_list(struct kl_qmp_session *s, JsonObject *args,
				      JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	*ret = kl_qmp_arr_node(json_array_new());
	return KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_query_qmp_schema(struct kl_qmp_session *s, JsonObject *args,
					    JsonNode **ret, char **desc)
{
	(void)s, (void)args;
	JsonParser *p = json_parser_new();
	GError *e = NULL;
	if (!json_parser_load_from_data(p, kl_qmp_schema_json, -1, &e)) {
		*desc = g_strdup_printf("schema: %s", e->message);
		g_error_free(e);
		g_object_unref(p);
		return KL_QMP_GENERIC;
	}
	*ret = json_node_copy(json_parser_get_root(p));
	g_object_unref(p);
	return KL_QMP_OK;
}

const struct kl_qmp_arg kl_qmp_qom_list_types_args[] = {
	{ "implements", JSON_NODE_VALUE, G_TYPE_STRING, true },
	{ "abstract", JSON_NODE_VALUE, G_TYPE_BOOLEAN, true },
	{ NULL },
};
const struct kl_qmp_arg kl_qmp_typename_args[] = {
	{ "typename", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ NULL },
};
const struct kl_qmp_arg kl_qmp_cpu_expansion_args[] = {
	{ "type", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "model", JSON_NODE_OBJECT, G_TYPE_INVALID, false },
	{ NULL },
};
const struct kl_qmp_arg kl_qmp_cmdline_opts_args[] = {
	{ "option", JSON_NODE_VALUE, G_TYPE_STRING, true },
	{ NULL },
};

