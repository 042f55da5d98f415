/* QMP protocol engine: greeting, capabilities negotiation, request
 * validation (QEMU 7.2 texts), dispatch, replies and events. */
#include <string.h>

#include "monitor_int.h"

#define KL_QMP_VERSION_MAJOR 7
#define KL_QMP_VERSION_MINOR 2
#define KL_QMP_VERSION_MICRO 0
#ifndef KL_VERSION
#define KL_VERSION "0.1.0"
#endif

const char *kl_qmp_err_class(enum kl_qmp_err e)
{
	switch (e) {
	case KL_QMP_NOT_FOUND: return "CommandNotFound";
	case KL_QMP_DEVICE_NOT_FOUND: return "DeviceNotFound";
	case KL_QMP_DEVICE_NOT_ACTIVE: return "DeviceNotActive";
	default: return "GenericError";
	}
}

static void put_line(struct kl_qmp_session *s, JsonNode *n)
{
	char *t = kl_json_to_string(n);
	g_string_append(s->out, t);
	g_string_append(s->out, "\r\n");
	g_free(t);
}

static void reply_error(struct kl_qmp_session *s, JsonNode *id, enum kl_qmp_err cls,
			const char *desc)
{
	JsonObject *e = json_object_new();
	json_object_set_string_member(e, "class", kl_qmp_err_class(cls));
	json_object_set_string_member(e, "desc", desc);
	JsonObject *o = json_object_new();
	json_object_set_object_member(o, "error", e);
	if (id)
		json_object_set_member(o, "id", json_node_copy(id));
	JsonNode *n = json_node_init_object(json_node_alloc(), o);
	put_line(s, n);
	json_object_unref(o);
	json_node_unref(n);
}

static void reply_return(struct kl_qmp_session *s, JsonNode *id, JsonNode *ret)
{
	JsonObject *o = json_object_new();
	json_object_set_member(o, "return", ret);
	if (id)
		json_object_set_member(o, "id", json_node_copy(id));
	JsonNode *n = json_node_init_object(json_node_alloc(), o);
	put_line(s, n);
	json_object_unref(o);
	json_node_unref(n);
}

JsonNode *kl_qmp_version_node(void)
{
	JsonObject *q = json_object_new();
	json_object_set_int_member(q, "micro", KL_QMP_VERSION_MICRO);
	json_object_set_int_member(q, "minor", KL_QMP_VERSION_MINOR);
	json_object_set_int_member(q, "major", KL_QMP_VERSION_MAJOR);
	JsonObject *v = json_object_new();
	json_object_set_object_member(v, "qemu", q);
	json_object_set_string_member(v, "package", "kvmlite-" KL_VERSION);
	JsonNode *n = json_node_init_object(json_node_alloc(), v);
	json_object_unref(v);
	return n;
}

void kl_qmp_session_greeting(struct kl_qmp_session *s)
{
	JsonObject *g = json_object_new();
	json_object_set_member(g, "version", kl_qmp_version_node());
	/* QEMU 7.2 offers ["oob"]; kvmlite has no out-of-band execution. */
	json_object_set_array_member(g, "capabilities", json_array_new());
	JsonObject *o = json_object_new();
	json_object_set_object_member(o, "QMP", g);
	JsonNode *n = json_node_init_object(json_node_alloc(), o);
	put_line(s, n);
	json_object_unref(o);
	json_node_unref(n);
}

static void split_cb(void *opaque, const char *msg, size_t len, const char *error)
{
	struct kl_qmp_session *s = opaque;
	if (error) {
		reply_error(s, NULL, KL_QMP_GENERIC, error);
		return;
	}
	kl_qmp_handle(s, msg, len);
}

void kl_qmp_session_init(struct kl_qmp_session *s, struct kl_vm *vm)
{
	memset(s, 0, sizeof(*s));
	s->vm = vm;
	s->out = g_string_new(NULL);
	kl_json_splitter_init(&s->sp, KL_QMP_MAX_MSG, KL_QMP_MAX_DEPTH, split_cb, s);
}

void kl_qmp_session_destroy(struct kl_qmp_session *s)
{
	kl_json_splitter_destroy(&s->sp);
	if (s->out)
		g_string_free(s->out, TRUE);
	s->out = NULL;
}

void kl_qmp_session_input(struct kl_qmp_session *s, const char *data, size_t len)
{
	kl_json_splitter_feed(&s->sp, data, len);
}

static const char *type_name(const struct kl_qmp_arg *a)
{
	if (a->type == JSON_NODE_ARRAY)
		return "array";
	if (a->type == JSON_NODE_OBJECT)
		return "object";
	if (a->vtype == G_TYPE_STRING)
		return "string";
	if (a->vtype == G_TYPE_BOOLEAN)
		return "boolean";
	if (a->vtype == G_TYPE_INT64)
		return "integer";
	return "value";
}

static bool arg_type_ok(const struct kl_qmp_arg *a, JsonNode *v)
{
	if (json_node_get_node_type(v) != a->type)
		return false;
	if (a->type == JSON_NODE_VALUE)
		return json_node_get_value_type(v) == a->vtype;
	return true;
}

/* QEMU's input visitor messages. */
static bool check_args(const struct kl_qmp_cmd *c, JsonObject *args, char **desc)
{
	JsonObjectIter it;
	const char *k;
	JsonNode *v;
	if (!c->args)
		return true; /* free-form: the command checks its arguments */
	json_object_iter_init_ordered(&it, args);
	while (json_object_iter_next_ordered(&it, &k, &v)) {
		const struct kl_qmp_arg *a = c->args;
		while (a && a->name && strcmp(a->name, k))
			a++;
		if (!a || !a->name) {
			*desc = g_strdup_printf("Parameter '%s' is unexpected", k);
			return false;
		}
		if (!arg_type_ok(a, v)) {
			*desc = g_strdup_printf("Invalid parameter type for '%s', expected: %s",
						k, type_name(a));
			return false;
		}
	}
	for (const struct kl_qmp_arg *a = c->args; a && a->name; a++) {
		if (!a->optional && !json_object_has_member(args, a->name)) {
			*desc = g_strdup_printf("Parameter '%s' is missing", a->name);
			return false;
		}
	}
	return true;
}

void kl_qmp_handle(struct kl_qmp_session *s, const char *msg, size_t len)
{
	char *err = NULL;
	JsonNode *root = kl_json_parse(msg, len, &err);
	if (!root) {
		reply_error(s, NULL, KL_QMP_GENERIC, err);
		g_free(err);
		return;
	}
	if (!JSON_NODE_HOLDS_OBJECT(root)) {
		reply_error(s, NULL, KL_QMP_GENERIC, "QMP input must be a JSON object");
		json_node_unref(root);
		return;
	}
	JsonObject *req = json_node_get_object(root);
	JsonNode *id = json_object_get_member(req, "id");
	JsonNode *exec = NULL, *argn = NULL;
	char *desc = NULL;

	JsonObjectIter it;
	const char *k;
	JsonNode *v;
	json_object_iter_init_ordered(&it, req);
	while (json_object_iter_next_ordered(&it, &k, &v)) {
		if (!strcmp(k, "execute")) {
			if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_STRING) {
				desc = g_strdup("QMP input member 'execute' must be a string");
				break;
			}
			exec = v;
		} else if (!strcmp(k, "arguments")) {
			if (!JSON_NODE_HOLDS_OBJECT(v)) {
				desc = g_strdup("QMP input member 'arguments' must be an object");
				break;
			}
			argn = v;
		} else if (strcmp(k, "id")) {
			/* includes "exec-oob" and "control": oob is not offered */
			desc = g_strdup_printf("QMP input member '%s' is unexpected", k);
			break;
		}
	}
	if (!desc && !exec)
		desc = g_strdup("QMP input lacks member 'execute'");
	if (desc) {
		reply_error(s, id, KL_QMP_GENERIC, desc);
		goto out;
	}

	const char *name = json_node_get_string(exec);
	const struct kl_qmp_cmd *c = kl_qmp_cmd_find(name);
	if (!s->negotiated && strcmp(name, "qmp_capabilities")) {
		reply_error(s, id, KL_QMP_NOT_FOUND,
			    "Expecting capabilities negotiation with 'qmp_capabilities'");
		goto out;
	}
	if (s->negotiated && !strcmp(name, "qmp_capabilities")) {
		reply_error(s, id, KL_QMP_NOT_FOUND,
			    "Capabilities negotiation is already complete, command ignored");
		goto out;
	}
	if (!c) {
		desc = g_strdup_printf("The command %s has not been found", name);
		reply_error(s, id, KL_QMP_NOT_FOUND, desc);
		goto out;
	}
	JsonObject *args = argn ? json_object_ref(json_node_get_object(argn)) : json_object_new();
	if (!check_args(c, args, &desc)) {
		reply_error(s, id, KL_QMP_GENERIC, desc);
		json_object_unref(args);
		goto out;
	}
	JsonNode *ret = NULL;
	enum kl_qmp_err e = c->fn(s, args, &ret, &desc);
	json_object_unref(args);
	if (e != KL_QMP_OK) {
		reply_error(s, id, e, desc ? desc : "Command failed");
		if (ret)
			json_node_unref(ret);
	} else {
		if (!ret) {
			JsonObject *empty = json_object_new();
			ret = json_node_init_object(json_node_alloc(), empty);
			json_object_unref(empty);
		}
		reply_return(s, id, ret);
	}
out:
	g_free(desc);
	json_node_unref(root);
}

char *kl_qmp_event_line(const char *event, JsonNode *data)
{
	gint64 now = g_get_real_time();
	JsonObject *ts = json_object_new();
	json_object_set_int_member(ts, "seconds", now / G_USEC_PER_SEC);
	json_object_set_int_member(ts, "microseconds", now % G_USEC_PER_SEC);
	JsonObject *o = json_object_new();
	json_object_set_object_member(o, "timestamp", ts);
	json_object_set_string_member(o, "event", event);
	if (data)
		json_object_set_member(o, "data", data);
	JsonNode *n = json_node_init_object(json_node_alloc(), o);
	char *t = kl_json_to_string(n);
	json_object_unref(o);
	json_node_unref(n);
	return t;
}

static JsonNode *cause_data(const struct kl_event_info *info)
{
	JsonObject *d = json_object_new();
	json_object_set_boolean_member(d, "guest", info ? info->guest : false);
	json_object_set_string_member(d, "reason", info && info->reason ? info->reason : "none");
	JsonNode *n = json_node_init_object(json_node_alloc(), d);
	json_object_unref(d);
	return n;
}

void kl_monitor_vm_event(void *opaque, enum kl_vm_event ev, const struct kl_event_info *info)
{
	(void)opaque;
	switch (ev) {
	case KL_EV_STOP: kl_monitor_broadcast("STOP", NULL); break;
	case KL_EV_RESUME: kl_monitor_broadcast("RESUME", NULL); break;
	case KL_EV_POWERDOWN: kl_monitor_broadcast("POWERDOWN", NULL); break;
	case KL_EV_RESET: kl_monitor_broadcast("RESET", cause_data(info)); break;
	case KL_EV_SHUTDOWN: kl_monitor_broadcast("SHUTDOWN", cause_data(info)); break;
	}
}
