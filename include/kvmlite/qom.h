/* The QOM tree as QMP's qom-list / qom-get / qom-set see it
 * (src/monitor/qmp_qom.c).  A device that has QOM properties a client reads
 * (libvirt: the balloon's guest-stats) adds its object under its path,
 * "/machine/peripheral/ID" (kl_device_path()); the ancestors of every
 * object ("/", "/machine", "/machine/peripheral") are containers whose
 * qom-list shows their children as "child<TYPE>".  Every object also has
 * the property "type" (string: its type name).  BQL held. */
#ifndef KVMLITE_QOM_H
#define KVMLITE_QOM_H

#include <json-glib/json-glib.h>

struct kl_qom_prop {
	const char *name;
	const char *type;   /* as qom-list shows it: "int", "bool", "guest statistics" */
	/* The value (a new node), NULL get: not readable. */
	JsonNode *(*get)(void *opaque);
	/* Set from a QMP value: 0, or -1 with *err (QEMU's text).  NULL: read-only. */
	int (*set)(void *opaque, JsonNode *value, char **err);
};

/* props: {NULL}-terminated, kept by reference (static tables). */
void kl_qom_add(const char *path, const char *type_name, const struct kl_qom_prop *props,
		void *opaque);
void kl_qom_remove(const char *path);

#endif
