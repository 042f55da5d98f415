/* QEMU command-line options libvirt passes on every start (kvmlite/cli.h).
 * Each accepts exactly the values whose meaning kvmlite already has, and
 * refuses the others with a one-line error. */
#include <string.h>

#include "cli_compat.h"
#include "kvmlite/fdset.h"
#include "kvmlite/json.h"
#include "kvmlite/opts.h"

KL_COMPAT_FLAGFN(kl_cli_no_user_config)
{
	(void)c, (void)flag, (void)v, (void)err;
	return 0;
}

/* Keys whose value must be one of allowed[] ("*": any value). */
struct key_rule {
	const char *key;
	const char *const *allowed;
};

static const char *const any[] = { "*", NULL };
static const char *const on_off[] = { "on", "off", NULL };
static const char *const off[] = { "off", NULL };

static int check_opts(const char *flag, const char *v, const char *implied,
		      const struct key_rule *rules, char **err)
{
	struct kl_opts *o = kl_opts_parse(v, implied, err);
	if (!o)
		return -1;
	int r = -1;
	for (const struct key_rule *k = rules; k->key; k++) {
		const char *val = kl_opts_get(o, k->key);
		if (!val || !strcmp(k->allowed[0], "*"))
			continue;
		bool ok = false;
		for (const char *const *a = k->allowed; *a; a++)
			ok |= !strcmp(*a, val);
		if (!ok) {
			GString *s = g_string_new(NULL);
			for (const char *const *a = k->allowed; *a; a++)
				g_string_append_printf(s, "%s%s", a == k->allowed ? "" : ", ", *a);
			*err = g_strdup_printf("%s %s: %s=%s is not supported by kvmlite (only %s)",
					       flag, v, k->key, val, s->str);
			g_string_free(s, TRUE);
			goto out;
		}
	}
	r = kl_opts_check_unused(o, flag, err);
out:
	kl_opts_free(o);
	return r;
}

KL_COMPAT_FLAGFN(kl_cli_msg)
{
	(void)c;
	static const struct key_rule r[] = { { "timestamp", on_off }, { "guest-name", on_off },
					     { NULL, NULL } };
	return check_opts(flag, v, NULL, r, err);
}

KL_COMPAT_FLAGFN(kl_cli_overcommit)
{
	(void)c;
	static const struct key_rule r[] = { { "mem-lock", off }, { "cpu-pm", off },
					     { NULL, NULL } };
	return check_opts(flag, v, NULL, r, err);
}

KL_COMPAT_FLAGFN(kl_cli_rtc)
{
	(void)c;
	static const char *const utc[] = { "utc", NULL };
	static const char *const host[] = { "host", NULL };
	static const char *const drift[] = { "none", "slew", NULL };
	static const struct key_rule r[] = { { "base", utc }, { "clock", host },
					     { "driftfix", drift }, { NULL, NULL } };
	return check_opts(flag, v, NULL, r, err);
}

KL_COMPAT_FLAGFN(kl_cli_boot)
{
	(void)c;
	static const struct key_rule r[] = {
		{ "order", any }, { "once", any }, { "menu", off }, { "strict", on_off },
		{ "reboot-timeout", any }, { "splash-time", any }, { NULL, NULL },
	};
	return check_opts(flag, v, "order", r, err);
}

KL_COMPAT_FLAGFN(kl_cli_audiodev)
{
	(void)c;
	if (v[0] == '{') {
		JsonNode *n = kl_json_parse_text(v, strlen(v), err);
		if (!n)
			return -1;
		int r = 0;
		JsonObject *o = JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
		JsonNode *d = o ? json_object_get_member(o, "driver") : NULL;
		const char *drv = d && JSON_NODE_HOLDS_VALUE(d) &&
			json_node_get_value_type(d) == G_TYPE_STRING ? json_node_get_string(d) : NULL;
		if (!drv || strcmp(drv, "none")) {
			*err = g_strdup_printf("%s %s: kvmlite has no sound: only driver 'none'", flag, v);
			r = -1;
		}
		json_node_unref(n);
		return r;
	}
	static const char *const none[] = { "none", NULL };
	static const struct key_rule r[] = { { "driver", none }, { "id", any }, { NULL, NULL } };
	return check_opts(flag, v, "driver", r, err);
}

KL_COMPAT_FLAGFN(kl_cli_add_fd)
{
	(void)c;
	char *e = NULL;
	if (kl_fdset_add_opts(v, &e) < 0) {
		*err = g_strdup_printf("%s %s: %s", flag, v, e);
		g_free(e);
		return -1;
	}
	return 0;
}
