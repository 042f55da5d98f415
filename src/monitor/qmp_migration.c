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
const struct kl_qmp_arg kl_qmp_migrate_set_caps_args[] = {
	{ "capabilities", JSON_NODE_ARRAY, G_TYPE_INVALID, false },
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
	/* as QEMU: a no-op without a migration in flight */
	(void)args, (void)ret, (void)desc;
	kl_migrate_cancel(s->vm);
	return KL_QMP_OK;
}

static void send_event(const char *event, const char *key, const char *sval, int64_t ival)
{
	JsonObject *o = json_object_new();
	if (sval)
		json_object_set_string_member(o, key, sval);
	else
		json_object_set_int_member(o, key, ival);
	kl_monitor_broadcast(event, kl_qmp_obj_node(o));
}

/* ---- parameters ---- */
static const char *const param_names[] = { "downtime-limit", "max-bandwidth",
	"cpu-throttle-initial", "cpu-throttle-increment", "x-iterations" };

enum kl_qmp_err kl_qmp_migrate_set_parameters(struct kl_qmp_session *s, JsonObject *args,
					      JsonNode **ret, char **desc)
{
	(void)s, (void)ret;
	struct kl_mig_params *p = kl_mig_params(), n = *p;
	GList *members = json_object_get_members(args);
	enum kl_qmp_err rc = KL_QMP_OK;
	for (GList *l = members; l && rc == KL_QMP_OK; l = l->next) {
		const char *k = l->data;
		JsonNode *v = json_object_get_member(args, k);
		unsigned i;
		for (i = 0; i < G_N_ELEMENTS(param_names); i++)
			if (!strcmp(k, param_names[i]))
				break;
		if (i == G_N_ELEMENTS(param_names)) {
			*desc = g_strdup_printf("Parameter '%s' is unexpected (kvmlite supports "
						"downtime-limit, max-bandwidth, cpu-throttle-initial, "
						"cpu-throttle-increment, x-iterations)", k);
			rc = KL_QMP_GENERIC;
			break;
		}
		if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_INT64) {
			*desc = g_strdup_printf("Invalid parameter type for '%s', expected: integer", k);
			rc = KL_QMP_GENERIC;
			break;
		}
		gint64 x = json_node_get_int(v);
		if (i == 0 && (x < 0 || x > 2000000)) {
			*desc = g_strdup("Parameter 'downtime_limit' expects an integer in the range "
					 "of 0 to 2000000 milliseconds");
			rc = KL_QMP_GENERIC;
		} else if (i == 1 && x < 0) {
			*desc = g_strdup("Parameter 'max_bandwidth' expects an integer in the range of "
					 "0 to 18446744073709551615 bytes/second");
			rc = KL_QMP_GENERIC;
		} else if ((i == 2 || i == 3) && (x < 1 || x > 99)) {
			*desc = g_strdup_printf("Parameter '%s' expects an integer in the range of "
						"1 to 99", i == 2 ? "cpu_throttle_initial" :
						"cpu_throttle_increment");
			rc = KL_QMP_GENERIC;
		} else if (i == 4 && (x < 1 || x > 1000)) {
			*desc = g_strdup("Parameter 'x-iterations' expects an integer in the range of "
					 "1 to 1000");
			rc = KL_QMP_GENERIC;
		} else {
			uint64_t *dst[] = { &n.downtime_limit_ms, &n.max_bandwidth, &n.throttle_initial,
					    &n.throttle_increment, &n.max_iterations };
			*dst[i] = (uint64_t)x;
		}
	}
	g_list_free(members);
	if (rc == KL_QMP_OK)
		*p = n;
	return rc;
}

enum kl_qmp_err kl_qmp_query_migrate_parameters(struct kl_qmp_session *s, JsonObject *args,
						JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	const struct kl_mig_params *p = kl_mig_params();
	JsonObject *o = json_object_new();
	json_object_set_int_member(o, "downtime-limit", (gint64)p->downtime_limit_ms);
	json_object_set_int_member(o, "max-bandwidth", (gint64)p->max_bandwidth);
	json_object_set_int_member(o, "cpu-throttle-initial", (gint64)p->throttle_initial);
	json_object_set_int_member(o, "cpu-throttle-increment", (gint64)p->throttle_increment);
	json_object_set_boolean_member(o, "cpu-throttle-tailslow", false);
	json_object_set_int_member(o, "multifd-channels", 1);
	json_object_set_int_member(o, "x-iterations", (gint64)p->max_iterations);
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}

/* ---- capabilities ---- */
static const char *const cap_names[] = { "events", "auto-converge", "x-ignore-shared" };

static bool *cap_ptr(struct kl_mig_params *p, unsigned i)
{
	return i == 0 ? &p->events : i == 1 ? &p->auto_converge : &p->ignore_shared;
}

enum kl_qmp_err kl_qmp_migrate_set_capabilities(struct kl_qmp_session *s, JsonObject *args,
						JsonNode **ret, char **desc)
{
	(void)s, (void)ret;
	struct kl_mig_params *p = kl_mig_params(), n = *p;
	JsonArray *a = json_object_get_array_member(args, "capabilities");
	for (guint k = 0; k < json_array_get_length(a); k++) {
		JsonNode *e = json_array_get_element(a, k);
		JsonObject *c = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
		JsonNode *cn = c ? json_object_get_member(c, "capability") : NULL;
		JsonNode *sn = c ? json_object_get_member(c, "state") : NULL;
		if (!cn || !sn || !JSON_NODE_HOLDS_VALUE(cn) ||
		    json_node_get_value_type(cn) != G_TYPE_STRING || !JSON_NODE_HOLDS_VALUE(sn) ||
		    json_node_get_value_type(sn) != G_TYPE_BOOLEAN) {
			*desc = g_strdup("Invalid parameter type for 'capabilities', expected: "
					 "list of {capability: string, state: bool}");
			return KL_QMP_GENERIC;
		}
		const char *name = json_node_get_string(cn);
		unsigned i;
		for (i = 0; i < G_N_ELEMENTS(cap_names); i++)
			if (!strcmp(name, cap_names[i]))
				break;
		if (i == G_N_ELEMENTS(cap_names)) {
			*desc = g_strdup_printf("Parameter 'capability' does not accept value '%s' "
						"(kvmlite has events, auto-converge, x-ignore-shared)",
						name);
			return KL_QMP_GENERIC;
		}
		*cap_ptr(&n, i) = json_node_get_boolean(sn);
	}
	const struct kl_mig_info *m = kl_mig_info();
	if (m->status == KL_MIG_SETUP || m->status == KL_MIG_ACTIVE ||
	    m->status == KL_MIG_DEVICE) {
		*desc = g_strdup("There's a migration process in progress");
		return KL_QMP_GENERIC;
	}
	*p = n;
	kl_mig_set_event_fn(send_event);
	return KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_query_migrate_capabilities(struct kl_qmp_session *s, JsonObject *args,
						  JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	struct kl_mig_params *p = kl_mig_params();
	JsonArray *a = json_array_new();
	for (unsigned i = 0; i < G_N_ELEMENTS(cap_names); i++) {
		JsonObject *o = json_object_new();
		json_object_set_string_member(o, "capability", cap_names[i]);
		json_object_set_boolean_member(o, "state", *cap_ptr(p, i));
		json_array_add_object_element(a, o);
	}
	*ret = kl_qmp_arr_node(a);
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
	if (m->throttle_pct)
		json_object_set_int_member(o, "cpu-throttle-percentage", m->throttle_pct);
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
		json_object_set_int_member(r, "dirty-pages-rate", (gint64)m->dirty_pages_rate);
		json_object_set_double_member(r, "mbps", m->mbps);
		json_object_set_int_member(r, "dirty-sync-count", (gint64)m->dirty_sync_count);
		json_object_set_int_member(r, "postcopy-requests", 0);
		json_object_set_int_member(r, "page-size", KL_MIG_PAGE);
		json_object_set_int_member(r, "multifd-bytes", 0);
		json_object_set_int_member(r, "pages-per-second", 0);
		json_object_set_int_member(r, "precopy-bytes", (gint64)(m->st.bytes - m->downtime_bytes));
		json_object_set_int_member(r, "downtime-bytes", (gint64)m->downtime_bytes);
		json_object_set_int_member(r, "postcopy-bytes", 0);
		json_object_set_int_member(r, "dirty-sync-missed-zero-copy", 0);
		json_object_set_object_member(o, "ram", r);
	}
	if (m->status == KL_MIG_FAILED && m->error)
		json_object_set_string_member(o, "error-desc", m->error);
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}
