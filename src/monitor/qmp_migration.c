/* QMP migration commands (QEMU 7.2 schema): migrate, migrate-incoming,
 * migrate_cancel, query-migrate.  The work is src/migration/'s. */
#include <string.h>

#include "kvmlite/migration.h"
#include "monitor_int.h"

const struct kl_qmp_arg kl_qmp_migrate_args[] = {
	{ "uri", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "blk", JSON_NODE_VALUE, G_TYPE_BOOLEAN, true },
	{ "inc", JSON_NODE_VALUE, G_TYPE_BOOLEAN, true },
	{ "detach", JSON_NODE_VALUE, G_TYPE_BOOLEAN, true },
	{ "resume", JSON_NODE_VALUE, G_TYPE_BOOLEAN, true },
	{ NULL },
};
const struct kl_qmp_arg kl_qmp_migrate_incoming_args[] = {
	{ "uri", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ NULL },
};

static bool opt_bool(JsonObject *args, const char *name)
{
	return json_object_has_member(args, name) && json_object_get_boolean_member(args, name);
}

enum kl_qmp_err kl_qmp_migrate(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
			       char **desc)
{
	(void)ret;
	if (opt_bool(args, "blk") || opt_bool(args, "inc")) {
		*desc = g_strdup("kvmlite has no block migration (blk/inc): disks are shared "
				 "storage; migrate without them");
		return KL_QMP_GENERIC;
	}
	if (opt_bool(args, "resume")) {
		*desc = g_strdup("Cannot resume if there is no paused migration");
		return KL_QMP_GENERIC;
	}
	const char *uri = json_object_get_string_member(args, "uri");
	return kl_migrate(s->vm, uri, desc) < 0 ? KL_QMP_GENERIC : KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_migrate_incoming(struct kl_qmp_session *s, JsonObject *args,
					JsonNode **ret, char **desc)
{
	(void)ret;
	const char *uri = json_object_get_string_member(args, "uri");
	return kl_migrate_incoming_qmp(s->vm, uri, desc) < 0 ? KL_QMP_GENERIC : KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_migrate_cancel(struct kl_qmp_session *s, JsonObject *args,
				      JsonNode **ret, char **desc)
{
	/* A stop-and-copy migration runs to its end within the 'migrate'
	 * command: there is never one in flight to cancel; as QEMU with no
	 * active migration, this is a no-op. */
	(void)s, (void)args, (void)ret, (void)desc;
	return KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_query_migrate(struct kl_qmp_session *s, JsonObject *args,
				     JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	const struct kl_mig_info *m = kl_mig_info();
	JsonObject *o = json_object_new();
	if (m->status != KL_MIG_NONE)
		json_object_set_string_member(o, "status", kl_mig_status_name(m->status));
	if (m->has_times && !m->incoming) {
		json_object_set_int_member(o, "total-time", m->total_time_ms);
		json_object_set_int_member(o, "setup-time", m->setup_time_ms);
		if (m->status == KL_MIG_COMPLETED)
			json_object_set_int_member(o, "downtime", m->downtime_ms);
		else
			json_object_set_int_member(o, "expected-downtime", m->expected_downtime_ms);
		JsonObject *r = json_object_new();
		json_object_set_int_member(r, "transferred", (gint64)m->st.bytes);
		json_object_set_int_member(r, "remaining", (gint64)m->remaining);
		json_object_set_int_member(r, "total", (gint64)m->st.total_ram);
		json_object_set_int_member(r, "duplicate", (gint64)m->st.zero_pages);
		json_object_set_int_member(r, "skipped", 0);
		json_object_set_int_member(r, "normal", (gint64)m->st.normal_pages);
		json_object_set_int_member(r, "normal-bytes", (gint64)m->st.ram_bytes);
		json_object_set_int_member(r, "dirty-pages-rate", 0);
		json_object_set_double_member(r, "mbps", m->mbps);
		json_object_set_int_member(r, "dirty-sync-count", (gint64)m->dirty_sync_count);
		json_object_set_int_member(r, "postcopy-requests", 0);
		json_object_set_int_member(r, "page-size", KL_MIG_PAGE);
		json_object_set_int_member(r, "multifd-bytes", 0);
		json_object_set_int_member(r, "pages-per-second", 0);
		json_object_set_int_member(r, "precopy-bytes", 0);
		json_object_set_int_member(r, "downtime-bytes", (gint64)m->st.bytes);
		json_object_set_int_member(r, "postcopy-bytes", 0);
		json_object_set_int_member(r, "dirty-sync-missed-zero-copy", 0);
		json_object_set_object_member(o, "ram", r);
	}
	if (m->status == KL_MIG_FAILED && m->error)
		json_object_set_string_member(o, "error-desc", m->error);
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}
