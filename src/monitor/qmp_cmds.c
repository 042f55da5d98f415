/* QMP commands (reply shapes follow the QEMU 7.2 QAPI schema). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmlite/assist.h"
#include "kvmlite/block.h"
#include "kvmlite/chardev.h"
#include "kvmlite/cpu_hotplug.h"
#include "kvmlite/migration.h"
#include "kvmlite/vm.h"
#include "kvmlite/numa.h"
#include "monitor_int.h"

JsonNode *kl_qmp_obj_node(JsonObject *o)
{
	JsonNode *n = json_node_init_object(json_node_alloc(), o);
	json_object_unref(o);
	return n;
}

JsonNode *kl_qmp_arr_node(JsonArray *a)
{
	JsonNode *n = json_node_init_array(json_node_alloc(), a);
	json_array_unref(a);
	return n;
}

static enum kl_qmp_err cmd_qmp_capabilities(struct kl_qmp_session *s, JsonObject *args,
					    JsonNode **ret, char **desc)
{
	(void)ret;
	JsonArray *en = json_object_has_member(args, "enable")
		? json_object_get_array_member(args, "enable") : NULL;
	for (guint i = 0; en && i < json_array_get_length(en); i++) {
		JsonNode *v = json_array_get_element(en, i);
		/* QEMU 7.2's visitor names list elements 'null'. */
		if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_STRING) {
			*desc = g_strdup("Invalid parameter type for 'null', expected: string");
			return KL_QMP_GENERIC;
		}
		const char *cap = json_node_get_string(v);
		if (strcmp(cap, "oob")) {
			*desc = g_strdup_printf("Parameter 'null' does not accept value '%s'", cap);
			return KL_QMP_GENERIC;
		}
		/* Not offered in our greeting (no out-of-band execution). */
		*desc = g_strdup_printf("Capability '%s' not available", cap);
		return KL_QMP_GENERIC;
	}
	s->negotiated = true;
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_query_version(struct kl_qmp_session *s, JsonObject *args,
					 JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	*ret = kl_qmp_version_node();
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_query_commands(struct kl_qmp_session *s, JsonObject *args,
					  JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	JsonArray *a = json_array_new();
	for (const struct kl_qmp_cmd *c = kl_qmp_cmd_list(); c->name; c++) {
		JsonObject *o = json_object_new();
		json_object_set_string_member(o, "name", c->name);
		json_array_add_object_element(a, o);
	}
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_query_status(struct kl_qmp_session *s, JsonObject *args,
					JsonNode **ret, char **desc)
{
	(void)args, (void)desc;
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "status", kl_runstate_name(s->vm->state));
	json_object_set_boolean_member(o, "singlestep", false);
	json_object_set_boolean_member(o, "running", s->vm->state == KL_RS_RUNNING);
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}

static bool needs_reset(const struct kl_vm *vm)
{
	return vm->state == KL_RS_SHUTDOWN || vm->state == KL_RS_INTERNAL_ERROR;
}

static enum kl_qmp_err cmd_stop(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				char **desc)
{
	(void)args, (void)ret, (void)desc;
	/* As QEMU: stopping a VM that is not running is a successful no-op;
	 * during an incoming migration it keeps the guest paused once loaded. */
	if (s->vm->state == KL_RS_INMIGRATE)
		kl_mig_incoming_autostart(false);
	if (s->vm->state == KL_RS_RUNNING)
		kl_vm_pause(s->vm);
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_cont(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				char **desc)
{
	(void)args, (void)ret;
	if (needs_reset(s->vm)) {
		*desc = g_strdup("Resetting the Virtual Machine is required");
		return KL_QMP_GENERIC;
	}
	if (s->vm->state == KL_RS_INMIGRATE) /* as QEMU: run once loaded */
		kl_mig_incoming_autostart(true);
	if (s->vm->state == KL_RS_PRELAUNCH || s->vm->state == KL_RS_PAUSED ||
	    s->vm->state == KL_RS_POSTMIGRATE)
		kl_vm_resume(s->vm);
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_system_reset(struct kl_qmp_session *s, JsonObject *args,
					JsonNode **ret, char **desc)
{
	(void)args, (void)ret, (void)desc;
	kl_vm_request_reset(s->vm, false, "host-qmp-system-reset");
	kl_vm_reset_now(s->vm);
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_system_powerdown(struct kl_qmp_session *s, JsonObject *args,
					    JsonNode **ret, char **desc)
{
	(void)args, (void)ret, (void)desc;
	kl_vm_request_powerdown(s->vm);
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_quit(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				char **desc)
{
	(void)args, (void)ret, (void)desc;
	kl_vm_request_shutdown(s->vm, 0, false, "host-qmp-quit");
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_query_name(struct kl_qmp_session *s, JsonObject *args,
				      JsonNode **ret, char **desc)
{
	(void)args, (void)desc;
	JsonObject *o = json_object_new();
	if (s->vm->name)
		json_object_set_string_member(o, "name", s->vm->name);
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_query_uuid(struct kl_qmp_session *s, JsonObject *args,
				      JsonNode **ret, char **desc)
{
	(void)args, (void)desc;
	static const uint8_t zero[16];
	const uint8_t *u = s->vm->has_uuid ? s->vm->uuid : zero;
	char *str = g_strdup_printf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
				    "%02x%02x%02x%02x%02x%02x",
				    u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9],
				    u[10], u[11], u[12], u[13], u[14], u[15]);
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "UUID", str);
	g_free(str);
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_query_kvm(struct kl_qmp_session *s, JsonObject *args,
				     JsonNode **ret, char **desc)
{
	(void)args, (void)desc;
	const char *dev = getenv("KVMLITE_KVM_DEV");
	JsonObject *o = json_object_new();
	json_object_set_boolean_member(o, "enabled", s->vm->vm_fd >= 0);
	json_object_set_boolean_member(o, "present",
				       s->vm->vm_fd >= 0 || access(dev ? dev : "/dev/kvm", R_OK | W_OK) == 0);
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}

/* x-query-emulation-assist (kvmlite's own, docs/cpu.md): the assist's
 * counters per kind, summed over the vCPUs.
 *   {"enabled": bool, "count": N, "time-ns": N,
 *    "assists": [{"name": "xsave", "count": N, "time-ns": N}, ...]} */
static enum kl_qmp_err cmd_query_emulation_assist(struct kl_qmp_session *s, JsonObject *args,
						  JsonNode **ret, char **desc)
{
	(void)args, (void)desc;
	JsonObject *o = json_object_new();
	JsonArray *list = json_array_new();
	uint64_t count = 0, ns = 0;
	if (s->vm->assist) {
		struct kl_assist_counter c[64];
		unsigned n = kl_assist_counters(s->vm->assist, c, G_N_ELEMENTS(c));
		for (unsigned i = 0; i < n; i++) {
			JsonObject *e = json_object_new();
			json_object_set_string_member(e, "name", c[i].name);
			json_object_set_int_member(e, "count", (gint64)c[i].count);
			json_object_set_int_member(e, "time-ns", (gint64)c[i].ns);
			json_array_add_object_element(list, e);
			count += c[i].count;
			ns += c[i].ns;
		}
	}
	json_object_set_boolean_member(o, "enabled", s->vm->assist != NULL);
	json_object_set_int_member(o, "count", (gint64)count);
	json_object_set_int_member(o, "time-ns", (gint64)ns);
	json_object_set_array_member(o, "assists", list);
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}

static void cpu_props(const struct kl_vm *vm, int idx, int64_t *sock, int64_t *core, int64_t *thr)
{
	unsigned t = vm->threads ? vm->threads : 1;
	unsigned c = vm->cores ? vm->cores : 1;
	*thr = idx % t;
	*core = (idx / t) % c;
	*sock = idx / (t * c);
}

static enum kl_qmp_err cmd_query_cpus_fast(struct kl_qmp_session *s, JsonObject *args,
					   JsonNode **ret, char **desc)
{
	(void)args, (void)desc;
	JsonArray *a = json_array_new();
	for (unsigned i = 0; s->vm->vcpus && i < s->vm->ncpus; i++) {
		const struct kl_vcpu *c = s->vm->vcpus[i];
		if (!kl_vcpu_plugged(c))
			continue;
		int idx = kl_vcpu_index(c);
		int64_t so, co, th;
		cpu_props(s->vm, idx, &so, &co, &th);
		JsonObject *p = json_object_new();
		json_object_set_int_member(p, "core-id", co);
		json_object_set_int_member(p, "thread-id", th);
		json_object_set_int_member(p, "socket-id", so);
		if (kl_numa_cpu_node((unsigned)idx) >= 0)   /* with -numa, as QEMU */
			json_object_set_int_member(p, "node-id", kl_numa_cpu_node((unsigned)idx));
		JsonObject *o = json_object_new();
		json_object_set_int_member(o, "cpu-index", idx);
		char *qom = kl_cpuhp_qom_path(s->vm, (unsigned)idx);
		json_object_set_string_member(o, "qom-path", qom);
		g_free(qom);
		json_object_set_int_member(o, "thread-id", kl_vcpu_thread_id(c));
		json_object_set_object_member(o, "props", p);
		json_object_set_string_member(o, "target", "x86_64");
		json_array_add_object_element(a, o);
	}
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

static enum kl_qmp_err cmd_query_chardev(struct kl_qmp_session *s, JsonObject *args,
					 JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	GPtrArray *l = kl_chardev_list();
	JsonArray *a = json_array_new();
	for (guint i = 0; i < l->len; i++) {
		const struct kl_chardev_info *ci = g_ptr_array_index(l, i);
		JsonObject *o = json_object_new();
		json_object_set_string_member(o, "label", ci->label);
		json_object_set_string_member(o, "filename", ci->filename);
		json_object_set_boolean_member(o, "frontend-open", ci->frontend_open);
		json_array_add_object_element(a, o);
	}
	g_ptr_array_unref(l);
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

/* HMP text, formatted like QEMU 7.2's hmp_info_status / hmp_info_cpus. */
static char *hmp_run(struct kl_qmp_session *s, const char *line, int64_t cur_cpu)
{
	gchar **w = g_strsplit_set(line, " \t", -1);
	GPtrArray *words = g_ptr_array_new();
	for (gchar **p = w; *p; p++)
		if (**p)
			g_ptr_array_add(words, *p);
	GString *o = g_string_new(NULL);
	const char *c0 = words->len > 0 ? g_ptr_array_index(words, 0) : "";
	const char *c1 = words->len > 1 ? g_ptr_array_index(words, 1) : NULL;
	struct kl_vm *vm = s->vm;

	if (!strcmp(c0, "info") && c1 && words->len == 2 && !strcmp(c1, "status")) {
		bool running = vm->state == KL_RS_RUNNING;
		g_string_append_printf(o, "VM status: %s", running ? "running" : "paused");
		if (!running && vm->state != KL_RS_PAUSED)
			g_string_append_printf(o, " (%s)", kl_runstate_name(vm->state));
		g_string_append(o, "\r\n");
	} else if (!strcmp(c0, "info") && c1 && words->len == 2 && !strcmp(c1, "cpus")) {
		for (unsigned i = 0; vm->vcpus && i < vm->ncpus; i++) {
			if (!kl_vcpu_plugged(vm->vcpus[i]))
				continue;
			int idx = kl_vcpu_index(vm->vcpus[i]);
			g_string_append_printf(o, "%c CPU #%d: thread_id=%d\r\n",
					       idx == cur_cpu ? '*' : ' ', idx,
					       kl_vcpu_thread_id(vm->vcpus[i]));
		}
	} else if (words->len == 1 && !strcmp(c0, "stop")) {
		cmd_stop(s, NULL, NULL, NULL);
	} else if (words->len == 1 && (!strcmp(c0, "cont") || !strcmp(c0, "c"))) {
		char *d = NULL;
		if (cmd_cont(s, NULL, NULL, &d) != KL_QMP_OK)
			g_string_append_printf(o, "Error: %s\r\n", d);
		g_free(d);
	} else if (words->len == 1 && !strcmp(c0, "system_reset")) {
		cmd_system_reset(s, NULL, NULL, NULL);
	} else if (words->len == 1 && !strcmp(c0, "system_powerdown")) {
		cmd_system_powerdown(s, NULL, NULL, NULL);
	} else if (words->len > 0) {
		char *t = g_strstrip(g_strdup(line));
		g_string_append_printf(o, "unknown command: '%s'\r\n", t);
		g_free(t);
	}
	g_ptr_array_free(words, TRUE);
	g_strfreev(w);
	return g_string_free(o, FALSE);
}

static enum kl_qmp_err cmd_hmp(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
			       char **desc)
{
	(void)desc;
	const char *line = json_object_get_string_member(args, "command-line");
	int64_t cpu = 0;
	if (json_object_has_member(args, "cpu-index"))
		cpu = json_object_get_int_member(args, "cpu-index");
	else if (s->vm->vcpus && s->vm->ncpus && s->vm->vcpus[0])
		cpu = kl_vcpu_index(s->vm->vcpus[0]);
	char *out = hmp_run(s, line, cpu);
	*ret = json_node_init_string(json_node_alloc(), out);
	g_free(out);
	return KL_QMP_OK;
}

static const struct kl_qmp_arg no_args[] = { { NULL } };
static const struct kl_qmp_arg caps_args[] = {
	{ "enable", JSON_NODE_ARRAY, G_TYPE_INVALID, true },
	{ NULL },
};
static const struct kl_qmp_arg hmp_args[] = {
	{ "command-line", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "cpu-index", JSON_NODE_VALUE, G_TYPE_INT64, true },
	{ NULL },
};

static const struct kl_qmp_cmd cmds[] = {
	{ "qmp_capabilities", cmd_qmp_capabilities, caps_args },
	{ "query-version", cmd_query_version, no_args },
	{ "query-commands", cmd_query_commands, no_args },
	{ "query-status", cmd_query_status, no_args },
	{ "stop", cmd_stop, no_args },
	{ "cont", cmd_cont, no_args },
	{ "system_reset", cmd_system_reset, no_args },
	{ "system_powerdown", cmd_system_powerdown, no_args },
	{ "quit", cmd_quit, no_args },
	{ "query-name", cmd_query_name, no_args },
	{ "query-uuid", cmd_query_uuid, no_args },
	{ "query-kvm", cmd_query_kvm, no_args },
	{ "x-query-emulation-assist", cmd_query_emulation_assist, no_args },
	{ "query-cpus-fast", cmd_query_cpus_fast, no_args },
	KL_QMP_BLOCK_CMDS
	KL_QMP_MIGRATION_CMDS
	KL_QMP_JOB_CMDS
	{ "query-chardev", cmd_query_chardev, no_args },
	KL_QMP_CHARDEV_CMDS
	{ "human-monitor-command", cmd_hmp, hmp_args },
	{ "netdev_set_throttle", kl_qmp_cmd_netdev_set_throttle, kl_qmp_netdev_set_throttle_args },
	{ "query-netdev-throttle", kl_qmp_cmd_query_netdev_throttle, no_args },
	KL_QMP_BALLOON_CMDS
	KL_QMP_HOTPLUG_CMDS
	KL_QMP_PROBE_CMDS
	{ NULL },
};

const struct kl_qmp_cmd *kl_qmp_cmd_list(void)
{
	return cmds;
}

const struct kl_qmp_cmd *kl_qmp_cmd_find(const char *name)
{
	for (const struct kl_qmp_cmd *c = cmds; c->name; c++)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}
