/* QMP job commands (qapi/job.json): query-jobs, job-dismiss; and the jobs
 * of qapi/migration.json that kvmlite has: snapshot-save, snapshot-load,
 * snapshot-delete (src/migration/snapshot.c). */
#include <string.h>

#include "kvmlite/job.h"
#include "kvmlite/migration.h"
#include "monitor_int.h"

const struct kl_qmp_arg kl_qmp_job_id_args[] = {
	{ "id", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ NULL },
};
const struct kl_qmp_arg kl_qmp_snapshot_save_args[] = {
	{ "job-id", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "tag", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "vmstate", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "devices", JSON_NODE_ARRAY, G_TYPE_INVALID, false },
	{ NULL },
};
const struct kl_qmp_arg kl_qmp_snapshot_delete_args[] = {
	{ "job-id", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "tag", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "devices", JSON_NODE_ARRAY, G_TYPE_INVALID, false },
	{ NULL },
};

static void job_event(const char *id, const char *status)
{
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "status", status);
	json_object_set_string_member(o, "id", id);
	kl_monitor_broadcast("JOB_STATUS_CHANGE", kl_qmp_obj_node(o));
}

enum kl_qmp_err kl_qmp_query_jobs(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				  char **desc)
{
	(void)s, (void)args, (void)desc;
	JsonArray *a = json_array_new();
	for (unsigned i = 0; i < kl_job_count(); i++) {
		const struct kl_job_info *j = kl_job_get(i);
		JsonObject *o = json_object_new();
		json_object_set_string_member(o, "id", j->id);
		json_object_set_string_member(o, "type", j->type);
		json_object_set_string_member(o, "status", kl_job_status_name(j->status));
		json_object_set_int_member(o, "current-progress", (gint64)j->current_progress);
		json_object_set_int_member(o, "total-progress", (gint64)j->total_progress);
		if (j->error)
			json_object_set_string_member(o, "error", j->error);
		json_array_add_object_element(a, o);
	}
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_job_dismiss(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				   char **desc)
{
	(void)s, (void)ret;
	kl_job_set_event_fn(job_event);
	return kl_job_dismiss(json_object_get_string_member(args, "id"), desc) < 0 ?
		KL_QMP_GENERIC : KL_QMP_OK;
}

static enum kl_qmp_err snapshot_cmd(struct kl_qmp_session *s, JsonObject *args,
				    enum kl_snapshot_op op, char **desc)
{
	JsonArray *a = json_object_get_array_member(args, "devices");
	guint n = json_array_get_length(a);
	const char **devs = g_new0(const char *, n + 1);
	for (guint i = 0; i < n; i++) {
		JsonNode *e = json_array_get_element(a, i);
		if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING) {
			*desc = g_strdup_printf("Invalid parameter type for 'devices[%u]', expected: "
						"string", i);
			g_free(devs);
			return KL_QMP_GENERIC;
		}
		devs[i] = json_node_get_string(e);
	}
	kl_job_set_event_fn(job_event);
	const char *vmstate = op == KL_SNAP_DELETE ? NULL :
		json_object_get_string_member(args, "vmstate");
	int r = kl_snapshot_job(s->vm, op, json_object_get_string_member(args, "job-id"),
				json_object_get_string_member(args, "tag"), vmstate, devs, n, desc);
	g_free(devs);
	return r < 0 ? KL_QMP_GENERIC : KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_snapshot_save(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				     char **desc)
{
	(void)ret;
	return snapshot_cmd(s, args, KL_SNAP_SAVE, desc);
}

enum kl_qmp_err kl_qmp_snapshot_load(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				     char **desc)
{
	(void)ret;
	return snapshot_cmd(s, args, KL_SNAP_LOAD, desc);
}

enum kl_qmp_err kl_qmp_snapshot_delete(struct kl_qmp_session *s, JsonObject *args,
				       JsonNode **ret, char **desc)
{
	(void)ret;
	return snapshot_cmd(s, args, KL_SNAP_DELETE, desc);
}
