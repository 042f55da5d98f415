/* Device instances (-device and device_add) and PCI hot-plug through ACPI:
 * see kvmlite/hotplug.h and docs/hotplug.md. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/device.h"
#include "kvmlite/hotplug.h"
#include "kvmlite/pci.h"
#include "kvmlite/vm.h"

static GPtrArray *qdevs;   /* of struct kl_qdev */
static void (*deleted_fn)(const char *id, const char *path);

static void qdev_free(void *p)
{
	struct kl_qdev *q = p;
	g_free(q->id);
	g_free(q->path);
	g_free(q->driver);
	g_free(q);
}

static struct kl_qdev *find_id(const char *id)
{
	for (guint i = 0; id && qdevs && i < qdevs->len; i++) {
		struct kl_qdev *q = g_ptr_array_index(qdevs, i);
		if (q->id && !strcmp(q->id, id))
			return q;
	}
	return NULL;
}

const struct kl_qdev *kl_qdev_at_slot(int slot)
{
	for (guint i = 0; slot >= 0 && qdevs && i < qdevs->len; i++) {
		struct kl_qdev *q = g_ptr_array_index(qdevs, i);
		if (q->slot == slot)
			return q;
	}
	return NULL;
}

void kl_qdev_foreach(void (*fn)(const struct kl_qdev *q, void *opaque), void *opaque)
{
	for (guint i = 0; qdevs && i < qdevs->len; i++)
		fn(g_ptr_array_index(qdevs, i), opaque);
}

void kl_qdev_set_deleted_fn(void (*fn)(const char *id, const char *path))
{
	deleted_fn = fn;
}

/* QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_'. */
static bool id_ok(const char *id)
{
	if (!isalpha((unsigned char)id[0]))
		return false;
	for (const char *p = id + 1; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-._", *p))
			return false;
	return true;
}

/* addr=SLOT[.FN], hex as QEMU's PCI address property: the slot, or -1
 * with *err. */
static int parse_addr(const char *s, char **err)
{
	char *end;
	unsigned long slot = strtoul(s, &end, 16);
	unsigned long fn = 0;
	if (end == s)
		goto bad;
	if (*end == '.') {
		const char *f = end + 1;
		fn = strtoul(f, &end, 16);
		if (end == f)
			goto bad;
	}
	if (*end || slot >= KL_PCI_NSLOTS || fn > 7)
		goto bad;
	if (fn) {
		*err = g_strdup_printf("PCI: function %lu of slot %lu: kvmlite has single-function "
				       "slots only (function 0)", fn, slot);
		return -1;
	}
	return (int)slot;
bad:
	*err = g_strdup_printf("Property 'addr' doesn't take value '%s' (a PCI slot 0x0-0x1f[.0])", s);
	return -1;
}

int kl_qdev_add(struct kl_vm *vm, struct kl_opts *o, bool hotplug, char **err)
{
	const char *drv = kl_opts_get(o, "driver");
	if (!drv) {
		*err = g_strdup("Parameter 'driver' is missing");
		return -1;
	}
	const struct kl_device_type *t = kl_device_type_find(drv);
	if (!t) {
		*err = g_strdup_printf("'%s' is not a valid device model name", drv);
		return -1;
	}
	if (hotplug && !t->hotpluggable) {
		if (!strncmp(drv, "isa-", 4)) /* as QEMU: the ISA bus has no hot-plug */
			*err = g_strdup("Bus 'isa.0' does not support hotplugging");
		else
			*err = g_strdup_printf("Device '%s' does not support hotplugging", drv);
		return -1;
	}
	const char *id = kl_opts_get(o, "id");
	if (id && !id_ok(id)) {
		*err = g_strdup("Parameter 'id' expects an identifier");
		return -1;
	}
	if (find_id(id)) {
		*err = g_strdup_printf("Duplicate device ID '%s'", id);
		return -1;
	}
	const char *bus = kl_opts_get(o, "bus");
	if (hotplug && bus && strcmp(bus, "pci.0") && strcmp(bus, "pcie.0")) {
		*err = g_strdup_printf("Bus '%s' not found", bus);
		return -1;
	}
	/* bootindex (QEMU's boot order of a disk or NIC): kvmlite boots the
	 * -kernel image only, so the value is checked and has no effect */
	const char *bi = kl_opts_get(o, "bootindex");
	if (bi) {
		char *end;
		long v = strtol(bi, &end, 0);
		if (!*bi || *end || v < -1 || v > 65535 ||
		    !(g_str_has_prefix(drv, "virtio-blk") || g_str_has_prefix(drv, "virtio-net") ||
		      !strcmp(drv, "e1000"))) {
			*err = g_strdup_printf("Property '%s.bootindex' not found or invalid value '%s'",
					       drv, bi);
			return -1;
		}
	}
	const char *addr = kl_opts_get(o, "addr");
	if (addr && t->hotpluggable) {
		int slot = parse_addr(addr, err);
		if (slot < 0)
			return -1;
		if (slot == 0 || kl_pci_dev_at(vm, (unsigned)slot)) {
			const struct kl_qdev *q = kl_qdev_at_slot(slot);
			*err = g_strdup_printf("PCI: slot %d function 0 not available for %s, in use by %s,id=%s",
					       slot, drv, slot == 0 ? "pci-host" : q ? q->driver : "?",
					       q && q->id ? q->id : "");
			return -1;
		}
	}
	bool before[KL_PCI_NSLOTS];
	for (unsigned s = 0; s < KL_PCI_NSLOTS; s++)
		before[s] = kl_pci_dev_at(vm, s) != NULL;
	kl_device_set_path(id); /* QOM path (query-block qdev) */
	struct kl_qdev *q = g_new0(struct kl_qdev, 1);
	q->id = g_strdup(id);
	q->path = g_strdup(kl_device_path());
	q->driver = g_strdup(drv);
	q->slot = -1;
	int r = t->create(vm, o, err);
	for (unsigned s = 1; r == 0 && s < KL_PCI_NSLOTS && q->slot < 0; s++)
		if (!before[s] && kl_pci_dev_at(vm, s))
			q->slot = (int)s;
	if (r == 0) {
		char *what = g_strdup_printf("-device %s", drv);
		r = kl_opts_check_unused(o, what, err);
		g_free(what);
		if (r < 0 && hotplug && q->slot > 0) /* undo: the guest never saw it */
			kl_pci_unregister(kl_pci_dev_at(vm, (unsigned)q->slot));
	}
	if (hotplug)
		kl_device_clear_path();
	if (r < 0) {
		qdev_free(q);
		return -1;
	}
	if (!qdevs)
		qdevs = g_ptr_array_new_with_free_func(qdev_free);
	g_ptr_array_add(qdevs, q);
	if (hotplug && q->slot > 0)
		kl_acpi_pcihp_plugged(vm, (unsigned)q->slot);
	return 0;
}

/* device_del's id: a device id or a QOM path (as QEMU's find_device_state) */
static struct kl_qdev *find_id_or_path(const char *id)
{
	struct kl_qdev *q = find_id(id);
	for (guint i = 0; !q && id && id[0] == '/' && qdevs && i < qdevs->len; i++) {
		struct kl_qdev *x = g_ptr_array_index(qdevs, i);
		if (!strcmp(x->path, id))
			q = x;
	}
	return q;
}

int kl_qdev_del(struct kl_vm *vm, const char *id, bool *not_found, char **err)
{
	*not_found = false;
	struct kl_qdev *q = find_id_or_path(id);
	if (!q) {
		*not_found = true;
		*err = g_strdup_printf("Device '%s' not found", id);
		return -1;
	}
	const struct kl_device_type *t = kl_device_type_find(q->driver);
	if (q->slot <= 0 || !t || !t->hotpluggable) {
		*err = g_strdup_printf("Bus '%s' does not support hotplugging",
				       q->slot > 0 ? "pci.0" :
				       !strncmp(q->driver, "isa-", 4) ? "isa.0" : "main-system-bus");
		return -1;
	}
	if (q->unplug_pending) {
		*err = g_strdup_printf("Device %s is already in the process of unplug", id);
		return -1;
	}
	q->unplug_pending = true;
	kl_acpi_pcihp_unplug_request(vm, (unsigned)q->slot);
	return 0;
}

/* The guest wrote the slot's bit to B0EJ (main loop, BQL held). */
static void eject(void *opaque, unsigned slot)
{
	struct kl_vm *vm = opaque;
	struct kl_pci_dev *d = kl_pci_dev_at(vm, slot);
	const struct kl_qdev *cq = kl_qdev_at_slot((int)slot);
	const struct kl_device_type *t = cq ? kl_device_type_find(cq->driver) : NULL;
	if (!d || !t || !t->hotpluggable)
		return; /* an empty slot or a device that cannot go: ignored */
	struct kl_qdev *q = (struct kl_qdev *)cq;
	kl_pci_unregister(d); /* the device's teardown: drains, frees */
	if (deleted_fn) {
		/* as QEMU: the virtio proxy's backend child first */
		if (!strncmp(q->driver, "virtio-", 7)) {
			char *child = g_strdup_printf("%s/virtio-backend", q->path);
			deleted_fn(NULL, child);
			g_free(child);
		}
		deleted_fn(q->id, q->path);
	}
	g_ptr_array_remove(qdevs, q);
}

int kl_qdev_hotplug_init(struct kl_vm *vm, char **err)
{
	return kl_acpi_pcihp_init(vm, eject, vm, err);
}

void kl_qdev_free_all(void)
{
	if (qdevs)
		g_ptr_array_free(qdevs, TRUE);
	qdevs = NULL;
}
