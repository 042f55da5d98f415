/* The QMP monitor as a front-end of a chardev (src/chardev/): -qmp,
 * -mon chardev=ID,mode=control; one QMP session per connection of the
 * chardev (a new greeting each time a peer connects), event broadcast. */
#include <stdio.h>
#include <string.h>

#include "kvmlite/chardev.h"
#include "kvmlite/monitor.h"
#include "kvmlite/opts.h"
#include "kvmlite/vm.h"
#include "monitor_int.h"

struct kl_monitor {
	struct kl_vm *vm;
	struct kl_chardev *cd;
	bool open;                /* a session exists (the chardev is connected) */
	struct kl_qmp_session s;
};

static GPtrArray *monitors;
static struct kl_vm *listener_vm;
static unsigned compat_idx;

/* Hand the session's replies / events to the chardev. */
static void push_out(struct kl_monitor *mon)
{
	if (!mon->open || !mon->s.out->len)
		return;
	kl_chr_fe_write(mon->cd, mon->s.out->str, mon->s.out->len);
	g_string_truncate(mon->s.out, 0);
}

static size_t mon_can_read(void *opaque)
{
	struct kl_monitor *mon = opaque;
	return mon->open ? 65536 : 0;
}

static void mon_read(void *opaque, const uint8_t *buf, size_t len)
{
	struct kl_monitor *mon = opaque;
	if (!mon->open)
		return;
	kl_qmp_session_input(&mon->s, (const char *)buf, len);
	push_out(mon);
}

static void session_end(struct kl_monitor *mon)
{
	if (mon->open)
		kl_qmp_session_destroy(&mon->s);
	mon->open = false;
}

static void mon_event(void *opaque, enum kl_chr_event ev)
{
	struct kl_monitor *mon = opaque;
	session_end(mon);
	if (ev == KL_CHR_EVENT_OPENED) {
		kl_qmp_session_init(&mon->s, mon->vm);
		mon->open = true;
		kl_qmp_session_greeting(&mon->s);
		push_out(mon);
	}
}

static const struct kl_chr_fe_ops mon_ops = {
	.can_read = mon_can_read, .read = mon_read, .event = mon_event,
};

static void ensure_listener(struct kl_vm *vm)
{
	if (listener_vm == vm)
		return;
	listener_vm = vm;
	kl_vm_add_event_listener(vm, kl_monitor_vm_event, NULL);
}

/* Make mon the front-end of cd; a connection made at start-up (wait=on,
 * client mode, stdio) gets the greeting now. */
static struct kl_monitor *monitor_attach(struct kl_vm *vm, struct kl_chardev *cd, char **err)
{
	struct kl_monitor *mon = g_new0(struct kl_monitor, 1);
	mon->vm = vm;
	mon->cd = cd;
	if (kl_chr_fe_attach(cd, &mon_ops, mon, err) < 0) {
		g_free(mon);
		return NULL;
	}
	if (!monitors)
		monitors = g_ptr_array_new();
	g_ptr_array_add(monitors, mon);
	ensure_listener(vm);
	return mon;
}

struct kl_monitor *kl_monitor_add_client(struct kl_vm *vm, int fd)
{
	char label[32];
	snprintf(label, sizeof(label), "client%d", fd);
	char *err = NULL;
	struct kl_monitor *mon = monitor_attach(vm, kl_chardev_new_connected_fd(label, fd), &err);
	g_free(err); /* a new chardev has no front-end yet */
	return mon;
}

bool kl_monitor_connected(const struct kl_monitor *mon)
{
	return mon->open;
}

void kl_monitor_broadcast(const char *event, JsonNode *data)
{
	char *line = kl_qmp_event_line(event, data);
	for (guint m = 0; monitors && m < monitors->len; m++) {
		struct kl_monitor *mon = g_ptr_array_index(monitors, m);
		if (!mon->open || !mon->s.negotiated)
			continue;
		g_string_append(mon->s.out, line);
		g_string_append(mon->s.out, "\r\n");
		push_out(mon);
	}
	g_free(line);
}

void kl_monitor_vserport_change(const char *id, bool open)
{
	JsonObject *d = json_object_new();
	json_object_set_string_member(d, "id", id);
	json_object_set_boolean_member(d, "open", open);
	kl_monitor_broadcast("VSERPORT_CHANGE", kl_qmp_obj_node(d));
}

int kl_monitor_add_qmp(struct kl_vm *vm, const char *spec, char **err)
{
	char *label = g_strdup_printf("compat_monitor%u", compat_idx);
	struct kl_chardev *cd = kl_chardev_legacy("-qmp", spec, label, err);
	g_free(label);
	if (!cd)
		return -1;
	compat_idx++;
	char *e = NULL;
	if (!monitor_attach(vm, cd, &e)) {
		*err = g_strdup_printf("-qmp '%s': %s", spec, e);
		g_free(e);
		return -1;
	}
	return 0;
}

int kl_monitor_add_mon(struct kl_vm *vm, const char *spec, char **err)
{
	char *e = NULL;
	struct kl_opts *o = kl_opts_parse(spec, "chardev", &e);
	if (!o) {
		*err = g_strdup_printf("-mon '%s': %s", spec, e);
		g_free(e);
		return -1;
	}
	int ret = -1;
	const char *id = kl_opts_get(o, "chardev");
	const char *mode = kl_opts_get(o, "mode");
	bool pretty = false;
	kl_opts_get(o, "id"); /* the monitor's own id (libvirt: id=monitor) */
	struct kl_chardev *cd = id ? kl_chardev_find(id) : NULL;
	if (!id) {
		*err = g_strdup_printf("-mon '%s': chardev= is required", spec);
	} else if (!mode || strcmp(mode, "control")) {
		*err = g_strdup_printf("-mon '%s': only mode=control (QMP) is supported", spec);
	} else if (kl_opts_get_bool(o, "pretty", false, &pretty, &e) < 0 || pretty) {
		*err = g_strdup_printf("-mon '%s': %s", spec, e ? e : "pretty=on is not supported");
	} else if (kl_opts_check_unused(o, "-mon", &e) < 0) {
		*err = g_strdup_printf("-mon '%s': %s", spec, e);
	} else if (!cd) {
		*err = g_strdup_printf("-mon '%s': no chardev with id '%s' (give -chardev "
				       "...,id=%s first)", spec, id, id);
	} else if (!monitor_attach(vm, cd, &e)) {
		*err = g_strdup_printf("-mon '%s': %s", spec, e);
	} else {
		ret = 0;
	}
	g_free(e);
	kl_opts_free(o);
	return ret;
}

void kl_monitor_cleanup(void)
{
	for (guint m = 0; monitors && m < monitors->len; m++) {
		struct kl_monitor *mon = g_ptr_array_index(monitors, m);
		push_out(mon); /* the chardev layer flushes it at its cleanup */
		kl_chr_fe_detach(mon->cd);
		session_end(mon);
		g_free(mon);
	}
	if (monitors)
		g_ptr_array_free(monitors, TRUE);
	monitors = NULL;
	listener_vm = NULL;
	compat_idx = 0;
}
