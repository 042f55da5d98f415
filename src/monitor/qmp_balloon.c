/* The balloon's QMP (QEMU 7.2's softmmu/balloon.c and monitor throttling):
 *   balloon {"value": bytes}   ask the guest to keep `value` bytes of RAM
 *   query-balloon -> {"actual": bytes}
 *   event BALLOON_CHANGE {"actual": bytes}, at most one a second
 * and the registry of the one balloon device (kvmlite/balloon.h). */
#include <string.h>

#include "kvmlite/balloon.h"
#include "kvmlite/loop.h"
#include "monitor_int.h"

static const struct kl_balloon_ops *bops;
static void *bopaque;

int kl_balloon_register(const struct kl_balloon_ops *ops, void *opaque)
{
	if (bops)
		return -1;
	bops = ops;
	bopaque = opaque;
	return 0;
}

void kl_balloon_unregister(void *opaque)
{
	if (bops && bopaque == opaque)
		bops = NULL, bopaque = NULL;
}

bool kl_balloon_present(void)
{
	return bops != NULL;
}

int kl_balloon_set_target(uint64_t target)
{
	if (!bops)
		return -1;
	bops->set_target(bopaque, target);
	return 0;
}

uint64_t kl_balloon_actual(void)
{
	return bops ? bops->actual(bopaque) : 0;
}

/* ---- BALLOON_CHANGE throttling (QEMU: monitor_qapi_event_conf, 1000 ms):
 * the first event goes out at once and opens a 1 s window; events inside
 * the window replace each other; when it closes the last one goes out and
 * a new window opens, else the throttle goes idle. */
#define BALLOON_CHANGE_RATE_MS 1000

static guint throttle_timer;
static bool pending;
static uint64_t pending_actual;

static void emit(uint64_t actual)
{
	JsonObject *o = json_object_new();
	json_object_set_int_member(o, "actual", (gint64)actual);
	kl_monitor_broadcast("BALLOON_CHANGE", kl_qmp_obj_node(o));
}

static gboolean throttle_tick(gpointer opaque)
{
	(void)opaque;
	if (!pending) {
		throttle_timer = 0;
		return G_SOURCE_REMOVE;
	}
	pending = false;
	emit(pending_actual);
	return G_SOURCE_CONTINUE;
}

void kl_balloon_changed(uint64_t actual)
{
	if (throttle_timer) {
		pending = true;
		pending_actual = actual;
		return;
	}
	emit(actual);
	throttle_timer = kl_timer_add_ms(BALLOON_CHANGE_RATE_MS, throttle_tick, NULL);
}

/* ---- commands ---- */

static bool have_balloon(char **desc)
{
	if (bops)
		return true;
	*desc = g_strdup("No balloon device has been activated");
	return false;
}

const struct kl_qmp_arg kl_qmp_balloon_args[] = {
	{ "value", JSON_NODE_VALUE, G_TYPE_INT64, false },
	{ NULL },
};

enum kl_qmp_err kl_qmp_balloon(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
			       char **desc)
{
	(void)s, (void)ret;
	if (!have_balloon(desc))
		return KL_QMP_DEVICE_NOT_ACTIVE;
	int64_t v = json_object_get_int_member(args, "value");
	if (v <= 0) {
		*desc = g_strdup("Parameter 'target' expects a size");
		return KL_QMP_GENERIC;
	}
	kl_balloon_set_target((uint64_t)v);
	return KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_query_balloon(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				     char **desc)
{
	(void)s, (void)args;
	if (!have_balloon(desc))
		return KL_QMP_DEVICE_NOT_ACTIVE;
	JsonObject *o = json_object_new();
	json_object_set_int_member(o, "actual", (gint64)kl_balloon_actual());
	*ret = kl_qmp_obj_node(o);
	return KL_QMP_OK;
}
