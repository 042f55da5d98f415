/* QMP commands of the NIC limiter (kvmlite extension, docs/networking.md):
 *   netdev_set_throttle {id, bps-tx, bps-tx-max, bps-tx-max-length, pps-tx,
 *                        ..., bps-rx..., pps-rx...}   all limits, live
 *   query-netdev-throttle -> [{id, type, bps-tx, ...}] per netdev */
#include <string.h>

#include "kvmlite/net.h"
#include "kvmlite/throttle.h"
#include "monitor_int.h"

#define ARG(n) { n, JSON_NODE_VALUE, G_TYPE_INT64, true }
#define ARGS3(n) ARG(n), ARG(n "-max"), ARG(n "-max-length")

const struct kl_qmp_arg kl_qmp_netdev_set_throttle_args[] = {
	{ "id", JSON_NODE_VALUE, G_TYPE_STRING, false },
	ARGS3("bps-tx"), ARGS3("pps-tx"), ARGS3("bps-rx"), ARGS3("pps-rx"),
	{ NULL },
};

static const char *const suffixes[] = { "", "-max", "-max-length" };

enum kl_qmp_err kl_qmp_cmd_netdev_set_throttle(struct kl_qmp_session *s, JsonObject *args,
					       JsonNode **ret, char **desc)
{
	(void)s;
	const char *id = json_object_get_string_member(args, "id");
	struct kl_netdev *nd = kl_netdev_find(id);
	if (!nd) {
		*desc = g_strdup_printf("Device '%s' not found", id);
		return KL_QMP_DEVICE_NOT_FOUND;
	}
	struct kl_throttle_config cfg;
	kl_throttle_config_init(&cfg);
	for (const struct kl_throttle_key *k = kl_throttle_net_keys; k->name; k++) {
		for (unsigned i = 0; i < 3; i++) {
			char *key = g_strconcat(k->name, suffixes[i], NULL);
			if (json_object_has_member(args, key)) {
				int64_t v = json_object_get_int_member(args, key);
				char *val = g_strdup_printf("%lld", (long long)v);
				char *e = NULL;
				int r = v < 0 ? -1 : kl_throttle_config_set(&cfg, kl_throttle_net_keys, false,
									    key, val, &e);
				g_free(val);
				if (r != 0) {
					*desc = e ? e : g_strdup_printf("%s must be at least 0", key);
					g_free(key);
					return KL_QMP_GENERIC;
				}
			}
			g_free(key);
		}
	}
	if (kl_netdev_set_throttle(nd, &cfg, desc) < 0)
		return KL_QMP_GENERIC;
	JsonObject *o = json_object_new();
	*ret = json_node_init_object(json_node_alloc(), o);
	json_object_unref(o);
	return KL_QMP_OK;
}

static void add_one(struct kl_netdev *nd, void *opaque)
{
	JsonArray *a = opaque;
	struct kl_throttle_config cfg;
	kl_netdev_get_throttle(nd, &cfg);
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "id", kl_netdev_id(nd));
	json_object_set_string_member(o, "type", kl_netdev_type(nd));
	for (const struct kl_throttle_key *k = kl_throttle_net_keys; k->name; k++) {
		for (unsigned i = 0; i < 3; i++) {
			char *key = g_strconcat(k->name, suffixes[i], NULL);
			uint64_t v = 0;
			kl_throttle_config_get(&cfg, kl_throttle_net_keys, key, &v);
			json_object_set_int_member(o, key, (gint64)v);
			g_free(key);
		}
	}
	json_array_add_object_element(a, o);
}

enum kl_qmp_err kl_qmp_cmd_query_netdev_throttle(struct kl_qmp_session *s, JsonObject *args,
						 JsonNode **ret, char **desc)
{
	(void)s, (void)args, (void)desc;
	JsonArray *a = json_array_new();
	kl_netdev_foreach(add_one, a);
	*ret = json_node_init_array(json_node_alloc(), a);
	json_array_unref(a);
	return KL_QMP_OK;
}
