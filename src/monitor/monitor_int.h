/* Internal interfaces of src/monitor/ (shared by the unit tests). */
#ifndef KVMLITE_MONITOR_INT_H
#define KVMLITE_MONITOR_INT_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stddef.h>

#include "kvmlite/json.h"
#include "kvmlite/vm.h"

#define KL_QMP_MAX_MSG (1u << 20)   /* bytes per JSON value */
#define KL_QMP_MAX_DEPTH KL_JSON_MAX_DEPTH
#define KL_QMP_MAX_OUT (16u << 20)  /* unread output before a client is dropped */

/* ---- qmp.c: one QMP session (protocol state, no I/O) ---- */

struct kl_qmp_session {
	struct kl_vm *vm;
	bool negotiated;
	GString *out;                 /* replies / events, "\r\n"-terminated */
	struct kl_json_splitter sp;
};

void kl_qmp_session_init(struct kl_qmp_session *s, struct kl_vm *vm);
void kl_qmp_session_destroy(struct kl_qmp_session *s);
void kl_qmp_session_greeting(struct kl_qmp_session *s);
void kl_qmp_session_input(struct kl_qmp_session *s, const char *data, size_t len);
/* Handle one complete message (text of one JSON value); appends the reply. */
void kl_qmp_handle(struct kl_qmp_session *s, const char *msg, size_t len);

/* ---- qmp_cmds.c: command table ---- */

enum kl_qmp_err { KL_QMP_OK, KL_QMP_GENERIC, KL_QMP_NOT_FOUND, KL_QMP_DEVICE_NOT_FOUND,
		  KL_QMP_DEVICE_NOT_ACTIVE };
const char *kl_qmp_err_class(enum kl_qmp_err e);

struct kl_qmp_arg {
	const char *name;
	JsonNodeType type;   /* JSON_NODE_VALUE for scalars; see vtype */
	GType vtype;         /* G_TYPE_STRING / G_TYPE_INT64 / G_TYPE_BOOLEAN */
	bool optional;
};

typedef enum kl_qmp_err (*kl_qmp_cmd_fn)(struct kl_qmp_session *s, JsonObject *args,
					 JsonNode **ret, char **desc);
struct kl_qmp_cmd {
	const char *name;
	kl_qmp_cmd_fn fn;
	const struct kl_qmp_arg *args; /* {NULL}-terminated */
};
const struct kl_qmp_cmd *kl_qmp_cmd_find(const char *name);
const struct kl_qmp_cmd *kl_qmp_cmd_list(void); /* {NULL}-terminated */

JsonNode *kl_qmp_version_node(void);
/* Wrap (and take over the reference of) an object / array. */
JsonNode *kl_qmp_obj_node(JsonObject *o);
JsonNode *kl_qmp_arr_node(JsonArray *a);

/* ---- qmp_block.c: block commands (entries of the command table) ---- */
#define KL_QMP_BLOCK_CMDS_DECL(fn) \
	enum kl_qmp_err fn(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret, char **desc);
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_block)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_blockstats)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_named_block_nodes)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_blockdev_add)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_blockdev_del)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_snapshot_internal)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_snapshot_delete_internal)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_snapshot_sync)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_snapshot)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_block_set_io_throttle)
extern const struct kl_qmp_arg kl_qmp_blockstats_args[], kl_qmp_named_nodes_args[],
	kl_qmp_blockdev_del_args[], kl_qmp_snap_internal_args[], kl_qmp_snap_delete_args[],
	kl_qmp_snap_sync_args[], kl_qmp_snap_args[], kl_qmp_set_io_throttle_args[];
/* args NULL: free-form arguments (blockdev-add: the command checks them) */
#define KL_QMP_BLOCK_CMDS \
	{ "query-block", kl_qmp_query_block, no_args }, \
	{ "query-blockstats", kl_qmp_query_blockstats, kl_qmp_blockstats_args }, \
	{ "query-named-block-nodes", kl_qmp_query_named_block_nodes, kl_qmp_named_nodes_args }, \
	{ "blockdev-add", kl_qmp_blockdev_add, NULL }, \
	{ "blockdev-del", kl_qmp_blockdev_del, kl_qmp_blockdev_del_args }, \
	{ "blockdev-snapshot-internal-sync", kl_qmp_snapshot_internal, kl_qmp_snap_internal_args }, \
	{ "blockdev-snapshot-delete-internal-sync", kl_qmp_snapshot_delete_internal, \
	  kl_qmp_snap_delete_args }, \
	{ "blockdev-snapshot-sync", kl_qmp_snapshot_sync, kl_qmp_snap_sync_args }, \
	{ "blockdev-snapshot", kl_qmp_snapshot, kl_qmp_snap_args }, \
	{ "block_set_io_throttle", kl_qmp_block_set_io_throttle, kl_qmp_set_io_throttle_args },

/* ---- qmp_migration.c: migrate, migrate-incoming, migrate_cancel,
 * query-migrate ---- */
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_migrate)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_migrate_incoming)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_migrate_cancel)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_migrate)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_migrate_set_parameters)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_migrate_parameters)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_migrate_set_capabilities)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_migrate_capabilities)
extern const struct kl_qmp_arg kl_qmp_migrate_args[], kl_qmp_migrate_incoming_args[],
	kl_qmp_migrate_set_caps_args[];
#define KL_QMP_MIGRATION_CMDS \
	{ "migrate", kl_qmp_migrate, kl_qmp_migrate_args }, \
	{ "migrate-incoming", kl_qmp_migrate_incoming, kl_qmp_migrate_incoming_args }, \
	{ "migrate_cancel", kl_qmp_migrate_cancel, no_args }, \
	{ "query-migrate", kl_qmp_query_migrate, no_args }, \
	{ "migrate-set-parameters", kl_qmp_migrate_set_parameters, NULL }, \
	{ "query-migrate-parameters", kl_qmp_query_migrate_parameters, no_args }, \
	{ "migrate-set-capabilities", kl_qmp_migrate_set_capabilities, \
	  kl_qmp_migrate_set_caps_args }, \
	{ "query-migrate-capabilities", kl_qmp_query_migrate_capabilities, no_args },

/* ---- qmp_job.c: query-jobs, job-dismiss, snapshot-save/-load/-delete ---- */
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_jobs)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_job_dismiss)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_snapshot_save)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_snapshot_load)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_snapshot_delete)
extern const struct kl_qmp_arg kl_qmp_job_id_args[], kl_qmp_snapshot_save_args[],
	kl_qmp_snapshot_delete_args[];
#define KL_QMP_JOB_CMDS \
	{ "query-jobs", kl_qmp_query_jobs, no_args }, \
	{ "job-dismiss", kl_qmp_job_dismiss, kl_qmp_job_id_args }, \
	{ "snapshot-save", kl_qmp_snapshot_save, kl_qmp_snapshot_save_args }, \
	{ "snapshot-load", kl_qmp_snapshot_load, kl_qmp_snapshot_save_args }, \
	{ "snapshot-delete", kl_qmp_snapshot_delete, kl_qmp_snapshot_delete_args },

/* ---- qmp_net.c: netdev_set_throttle, query-netdev-throttle ---- */
extern const struct kl_qmp_arg kl_qmp_netdev_set_throttle_args[];
enum kl_qmp_err kl_qmp_cmd_netdev_set_throttle(struct kl_qmp_session *s, JsonObject *args,
					       JsonNode **ret, char **desc);
enum kl_qmp_err kl_qmp_cmd_query_netdev_throttle(struct kl_qmp_session *s, JsonObject *args,
						 JsonNode **ret, char **desc);

/* ---- qmp_balloon.c: balloon, query-balloon; qmp_qom.c: qom-list, qom-get,
 * qom-set ---- */
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_balloon)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_balloon)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_qom_list)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_qom_get)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_qom_set)
extern const struct kl_qmp_arg kl_qmp_balloon_args[], kl_qmp_qom_list_args[],
	kl_qmp_qom_get_args[];
#define KL_QMP_BALLOON_CMDS \
	{ "balloon", kl_qmp_balloon, kl_qmp_balloon_args }, \
	{ "query-balloon", kl_qmp_query_balloon, no_args }, \
	{ "qom-list", kl_qmp_qom_list, kl_qmp_qom_list_args }, \
	{ "qom-get", kl_qmp_qom_get, kl_qmp_qom_get_args }, \
	{ "qom-set", kl_qmp_qom_set, NULL },
/* ---- qmp_hotplug.c: device_add/del, netdev_add/del, query-pci, qom-list ---- */
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_device_add)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_device_del)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_netdev_add)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_netdev_del)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_pci)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_hotpluggable_cpus)
extern const struct kl_qmp_arg kl_qmp_device_del_args[];
/* device_add / netdev_add: free-form (the commands check them) */
#define KL_QMP_HOTPLUG_CMDS \
	{ "device_add", kl_qmp_device_add, NULL }, \
	{ "device_del", kl_qmp_device_del, kl_qmp_device_del_args }, \
	{ "netdev_add", kl_qmp_netdev_add, NULL }, \
	{ "netdev_del", kl_qmp_netdev_del, kl_qmp_device_del_args }, \
	{ "query-pci", kl_qmp_query_pci, no_args }, \
	{ "query-hotpluggable-cpus", kl_qmp_query_hotpluggable_cpus, no_args },

/* ---- qmp_probe.c: what libvirt probes an emulator with ---- */
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_target)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_machines)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_qom_list_types)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_device_list_properties)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_cpu_definitions)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_cpu_model_expansion)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_empty_list)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_query_qmp_schema)
/* qmp_schema.c, generated by scripts/qapi-gen.py from qmp_schema.json */
extern const char kl_qmp_schema_json[];
extern const struct kl_qmp_arg kl_qmp_qom_list_types_args[], kl_qmp_typename_args[],
	kl_qmp_cpu_expansion_args[], kl_qmp_cmdline_opts_args[];
#define KL_QMP_PROBE_CMDS \
	{ "query-target", kl_qmp_query_target, no_args }, \
	{ "query-machines", kl_qmp_query_machines, no_args }, \
	{ "qom-list-types", kl_qmp_qom_list_types, kl_qmp_qom_list_types_args }, \
	{ "device-list-properties", kl_qmp_device_list_properties, kl_qmp_typename_args }, \
	{ "qom-list-properties", kl_qmp_empty_list, kl_qmp_typename_args }, \
	{ "query-cpu-definitions", kl_qmp_query_cpu_definitions, no_args }, \
	{ "query-cpu-model-expansion", kl_qmp_query_cpu_model_expansion, kl_qmp_cpu_expansion_args }, \
	{ "query-command-line-options", kl_qmp_empty_list, kl_qmp_cmdline_opts_args }, \
	{ "query-iothreads", kl_qmp_empty_list, no_args }, \
	{ "query-qmp-schema", kl_qmp_query_qmp_schema, no_args },

/* Event name + optional data (consumed) -> every negotiated client. */
void kl_monitor_broadcast(const char *event, JsonNode *data);
/* Build the event line (timestamp, event, data) without the "\r\n". */
char *kl_qmp_event_line(const char *event, JsonNode *data);
/* vm.h listener: maps kl_vm_event to QMP events. */
void kl_monitor_vm_event(void *opaque, enum kl_vm_event ev, const struct kl_event_info *info);

/* ---- qmp_chardev.c: ringbuf-write, ringbuf-read ---- */
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_ringbuf_write)
KL_QMP_BLOCK_CMDS_DECL(kl_qmp_ringbuf_read)
extern const struct kl_qmp_arg kl_qmp_ringbuf_write_args[], kl_qmp_ringbuf_read_args[];
#define KL_QMP_CHARDEV_CMDS \
	{ "ringbuf-write", kl_qmp_ringbuf_write, kl_qmp_ringbuf_write_args }, \
	{ "ringbuf-read", kl_qmp_ringbuf_read, kl_qmp_ringbuf_read_args },

/* ---- monitor.c: the monitor as a chardev front-end ---- */

struct kl_monitor;
/* A monitor on an anonymous socket chardev around a connected fd (the unit
 * tests' socketpairs); sends the greeting. */
struct kl_monitor *kl_monitor_add_client(struct kl_vm *vm, int fd);
bool kl_monitor_connected(const struct kl_monitor *mon);

#endif
