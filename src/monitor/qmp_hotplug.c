/* QMP hot-plug commands (QEMU 7.2 schema):
 *   device_add {driver, id, bus, addr, ...}   the -device path (src/hotplug/qdev.c)
 *   device_del {id}      DEVICE_DELETED {device, path} once the guest ejected
 *   netdev_add {type, id, ...} / netdev_del {id}
 *   query-pci            bus 0: [{bus: 0, devices: [...]}]
 * (qom-list of /machine/peripheral lists these devices: qmp_qom.c) */
#include <string.h>

#include "../block/node.h"
#include "kvmlite/cpu_hotplug.h"
#include "kvmlite/hotplug.h"
#include "kvmlite/net.h"
#include "kvmlite/pci.h"
#include "monitor_int.h"

static void send_deleted(const char *id, const char *path)
{
	JsonObject *o = json_object_new();
	if (id)
		json_object_set_string_member(o, "device", id);
	json_object_set_string_member(o, "path", path);
	kl_monitor_broadcast("DEVICE_DELETED", kl_qmp_obj_node(o));
}

static void __attribute__((constructor)) hotplug_events_register(void)
{
	kl_qdev_set_deleted_fn(send_deleted);
	kl_cpuhp_set_deleted_fn(send_deleted);
}

enum kl_qmp_err kl_qmp_device_add(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				  char **desc)
{
	(void)ret;
	struct kl_opts *o = kl_opts_from_json(args, "device_add", desc);
	if (!o)
		return KL_QMP_GENERIC;
	int r = kl_cpuhp_is_cpu_driver(kl_opts_get(o, "driver")) ?
		kl_cpuhp_device_add(s->vm, o, desc) : kl_qdev_add(s->vm, o, true, desc);
	kl_opts_free(o);
	return r < 0 ? KL_QMP_GENERIC : KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_device_del(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				  char **desc)
{
	(void)ret;
	bool not_found;
	int c = kl_cpuhp_device_del(s->vm, json_object_get_string_member(args, "id"), desc);
	if (c <= 0)
		return c < 0 ? KL_QMP_GENERIC : KL_QMP_OK;
	if (kl_qdev_del(s->vm, json_object_get_string_member(args, "id"), &not_found, desc) < 0)
		return not_found ? KL_QMP_DEVICE_NOT_FOUND : KL_QMP_GENERIC;
	return KL_QMP_OK;
}

/* "TYPE,id=ID,key=value..." for kl_netdev_add (',' doubled in values). */
static void opt_append(GString *g, const char *k, const char *v)
{
	if (k)
		g_string_append_printf(g, ",%s=", k);
	for (const char *p = v; *p; p++) {
		if (*p == ',')
			g_string_append_c(g, ',');
		g_string_append_c(g, *p);
	}
}

enum kl_qmp_err kl_qmp_netdev_add(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				  char **desc)
{
	(void)s, (void)ret;
	const char *type = NULL, *id = NULL;
	if (json_object_has_member(args, "type"))
		type = json_object_get_string_member(args, "type");
	if (json_object_has_member(args, "id"))
		id = json_object_get_string_member(args, "id");
	if (!type) {
		*desc = g_strdup("Parameter 'type' is missing");
		return KL_QMP_GENERIC;
	}
	if (!id) {
		*desc = g_strdup("Parameter 'id' is missing");
		return KL_QMP_GENERIC;
	}
	if (kl_netdev_find(id)) {
		*desc = g_strdup_printf("Duplicate ID '%s'", id);
		return KL_QMP_GENERIC;
	}
	GString *g = g_string_new(NULL);
	opt_append(g, NULL, type);
	GList *members = json_object_get_members(args);
	enum kl_qmp_err rc = KL_QMP_OK;
	for (GList *l = members; l; l = l->next) {
		const char *k = l->data;
		if (!strcmp(k, "type"))
			continue;
		JsonNode *v = json_object_get_member(args, k);
		GType vt = JSON_NODE_HOLDS_VALUE(v) ? json_node_get_value_type(v) : G_TYPE_INVALID;
		if (vt == G_TYPE_STRING) {
			opt_append(g, k, json_node_get_string(v));
		} else if (vt == G_TYPE_INT64) {
			char *n = g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(v));
			opt_append(g, k, n);
			g_free(n);
		} else if (vt == G_TYPE_BOOLEAN) {
			opt_append(g, k, json_node_get_boolean(v) ? "on" : "off");
		} else {
			*desc = g_strdup_printf("Invalid parameter type for '%s', expected: string", k);
			rc = KL_QMP_GENERIC;
			break;
		}
	}
	g_list_free(members);
	if (rc == KL_QMP_OK && !kl_netdev_add(g->str, desc))
		rc = KL_QMP_GENERIC;
	g_string_free(g, TRUE);
	return rc;
}

enum kl_qmp_err kl_qmp_netdev_del(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				  char **desc)
{
	(void)s, (void)ret;
	const char *id = json_object_get_string_member(args, "id");
	struct kl_netdev *nd = kl_netdev_find(id);
	if (!nd) {
		*desc = g_strdup_printf("Device '%s' not found", id);
		return KL_QMP_DEVICE_NOT_FOUND;
	}
	if (kl_netdev_attached(nd)) {
		/* QEMU would leave the NIC without a peer; kvmlite's NICs hold
		 * the back-end: device_del the NIC first */
		*desc = g_strdup_printf("netdev '%s' is in use by a NIC: device_del it first", id);
		return KL_QMP_GENERIC;
	}
	kl_netdev_free(nd);
	return KL_QMP_OK;
}

static void add_pci_dev(JsonArray *devs, struct kl_vm *vm, unsigned slot)
{
	struct kl_pci_dev *d = kl_pci_dev_at(vm, slot);
	JsonObject *o = json_object_new();
	json_object_set_int_member(o, "bus", 0);
	json_object_set_int_member(o, "slot", slot);
	json_object_set_int_member(o, "function", 0);
	JsonObject *ci = json_object_new();
	json_object_set_int_member(ci, "class", kl_pci_cfg_read(vm, slot, 0, 0x0a, 2));
	json_object_set_object_member(o, "class_info", ci);
	JsonObject *id = json_object_new();
	json_object_set_int_member(id, "device", kl_pci_cfg_read(vm, slot, 0, KL_PCI_DEVICE_ID, 2));
	json_object_set_int_member(id, "vendor", kl_pci_cfg_read(vm, slot, 0, KL_PCI_VENDOR_ID, 2));
	json_object_set_int_member(id, "subsystem", kl_pci_cfg_read(vm, slot, 0, KL_PCI_SUBSYS_ID, 2));
	json_object_set_int_member(id, "subsystem-vendor",
				   kl_pci_cfg_read(vm, slot, 0, KL_PCI_SUBSYS_VENDOR_ID, 2));
	json_object_set_object_member(o, "id", id);
	unsigned pin = kl_pci_cfg_read(vm, slot, 0, KL_PCI_INTERRUPT_PIN, 1);
	if (pin)
		json_object_set_int_member(o, "irq", kl_pci_cfg_read(vm, slot, 0, KL_PCI_INTERRUPT_LINE, 1));
	json_object_set_int_member(o, "irq_pin", pin);
	const struct kl_qdev *q = kl_qdev_at_slot((int)slot);
	json_object_set_string_member(o, "qdev_id", q && q->id ? q->id : "");
	JsonArray *regions = json_array_new();
	for (unsigned b = 0; b < 6; b++) {
		enum kl_pci_bar_type type;
		bool pf, mapped;
		uint64_t size = kl_pci_bar_size(d, b, &type, &pf);
		if (!size)
			continue;
		JsonObject *r = json_object_new();
		json_object_set_int_member(r, "bar", b);
		json_object_set_string_member(r, "type", type == KL_PCI_BAR_IO ? "io" : "memory");
		json_object_set_int_member(r, "address", (gint64)kl_pci_bar_addr(d, b, &mapped));
		json_object_set_int_member(r, "size", (gint64)size);
		if (type != KL_PCI_BAR_IO) {
			json_object_set_boolean_member(r, "prefetch", pf);
			json_object_set_boolean_member(r, "mem_type_64", type == KL_PCI_BAR_MEM64);
		}
		json_array_add_object_element(regions, r);
	}
	json_object_set_array_member(o, "regions", regions);
	json_array_add_object_element(devs, o);
}

enum kl_qmp_err kl_qmp_query_pci(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				 char **desc)
{
	(void)args, (void)desc;
	JsonArray *devs = json_array_new();
	for (unsigned slot = 0; slot < KL_PCI_NSLOTS; slot++)
		if (kl_pci_dev_at(s->vm, slot))
			add_pci_dev(devs, s->vm, slot);
	JsonObject *bus = json_object_new();
	json_object_set_int_member(bus, "bus", 0);
	json_object_set_array_member(bus, "devices", devs);
	JsonArray *a = json_array_new();
	json_array_add_object_element(a, bus);
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

static void add_hp_cpu(void *opaque, const char *type, unsigned slot, unsigned socket,
		       unsigned core, unsigned thread, const char *qom_path)
{
	(void)slot;
	JsonObject *p = json_object_new();
	json_object_set_int_member(p, "core-id", core);
	json_object_set_int_member(p, "thread-id", thread);
	json_object_set_int_member(p, "socket-id", socket);
	JsonObject *e = json_object_new();
	json_object_set_object_member(e, "props", p);
	json_object_set_int_member(e, "vcpus-count", 1);
	if (qom_path)
		json_object_set_string_member(e, "qom-path", qom_path);
	json_object_set_string_member(e, "type", type);
	json_array_add_object_element(opaque, e);
}

/* query-hotpluggable-cpus: every slot, highest first, as QEMU */
enum kl_qmp_err kl_qmp_query_hotpluggable_cpus(struct kl_qmp_session *s, JsonObject *args,
					       JsonNode **ret, char **desc)
{
	(void)args, (void)desc;
	JsonArray *a = json_array_new();
	kl_cpuhp_foreach_slot(s->vm, add_hp_cpu, a);
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

const struct kl_qmp_arg kl_qmp_device_del_args[] = {
	{ "id", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ NULL },
};
