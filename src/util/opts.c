/* QEMU-style "a,b=c,d=e" option strings: see include/kvmlite/opts.h. */
#include "kvmlite/opts.h"

#include <errno.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>

static void add(struct kl_opts *o, char *key, char *val)
{
	o->v = g_renew(struct kl_opt, o->v, o->n + 1);
	o->v[o->n].key = key;
	o->v[o->n].val = val;
	o->v[o->n].used = false;
	o->n++;
}

/* Read one element up to an unescaped ',' (",," is a literal comma). */
static char *next_elem(const char **p)
{
	GString *s = g_string_new(NULL);
	const char *c = *p;
	while (*c) {
		if (*c == ',') {
			if (c[1] == ',') {
				g_string_append_c(s, ',');
				c += 2;
				continue;
			}
			break;
		}
		g_string_append_c(s, *c++);
	}
	*p = *c ? c + 1 : c;
	return g_string_free(s, FALSE);
}

struct kl_opts *kl_opts_parse(const char *s, const char *implied_key, char **err)
{
	struct kl_opts *o = g_new0(struct kl_opts, 1);
	o->src = g_strdup(s);
	const char *p = s;
	bool first = true;
	if (!*p) {
		if (implied_key) {
			*err = g_strdup_printf("'%s' must not be empty", implied_key);
			kl_opts_free(o);
			return NULL;
		}
		return o;
	}
	while (true) {
		bool last = false;
		char *e = next_elem(&p);
		if (!*p && !(p > s && p[-1] == ','))
			last = true;
		char *eq = strchr(e, '=');
		if (!eq) {
			if (first && implied_key) {
				add(o, g_strdup(implied_key), e);
			} else if (*e) {
				/* "server" / "nowait" style: boolean flag */
				if (g_str_has_prefix(e, "no") && strlen(e) > 2) {
					add(o, g_strdup(e + 2), g_strdup("off"));
				} else {
					add(o, g_strdup(e), g_strdup("on"));
				}
				g_free(e);
			} else {
				g_free(e);
				if (!last) {
					*err = g_strdup_printf("empty parameter in '%s'", s);
					kl_opts_free(o);
					return NULL;
				}
			}
		} else {
			*eq = '\0';
			if (!*e) {
				*err = g_strdup_printf("missing parameter name in '%s'", s);
				g_free(e);
				kl_opts_free(o);
				return NULL;
			}
			for (unsigned i = 0; i < o->n; i++) {
				if (!strcmp(o->v[i].key, e)) {
					*err = g_strdup_printf("parameter '%s' given twice in '%s'", e, s);
					g_free(e);
					kl_opts_free(o);
					return NULL;
				}
			}
			add(o, g_strdup(e), g_strdup(eq + 1));
			g_free(e);
		}
		first = false;
		if (last || !*p)
			break;
	}
	return o;
}

void kl_opts_free(struct kl_opts *o)
{
	if (!o)
		return;
	for (unsigned i = 0; i < o->n; i++) {
		g_free(o->v[i].key);
		g_free(o->v[i].val);
	}
	g_free(o->v);
	g_free(o->src);
	g_free(o);
}

const char *kl_opts_get(struct kl_opts *o, const char *key)
{
	for (unsigned i = 0; i < o->n; i++) {
		if (!strcmp(o->v[i].key, key)) {
			o->v[i].used = true;
			return o->v[i].val;
		}
	}
	return NULL;
}

int kl_opts_get_bool(struct kl_opts *o, const char *key, bool def, bool *out, char **err)
{
	const char *v = kl_opts_get(o, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1")) {
		*out = true;
		return 0;
	}
	if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0")) {
		*out = false;
		return 0;
	}
	*err = g_strdup_printf("parameter '%s' expects on or off, not '%s'", key, v);
	return -1;
}

int kl_opts_get_u64(struct kl_opts *o, const char *key, uint64_t def, uint64_t *out, char **err)
{
	const char *v = kl_opts_get(o, key);
	if (!v) {
		*out = def;
		return 0;
	}
	char *end;
	errno = 0;
	if (!*v || *v == '-') {
		*err = g_strdup_printf("parameter '%s' expects a non-negative number, not '%s'", key, v);
		return -1;
	}
	unsigned long long x = strtoull(v, &end, 0);
	if (errno || *end) {
		*err = g_strdup_printf("parameter '%s' expects a non-negative number, not '%s'", key, v);
		return -1;
	}
	*out = x;
	return 0;
}

int kl_parse_size(const char *s, uint64_t default_unit, uint64_t *out)
{
	if (!s || !*s || *s == '-' || *s == ' ')
		return -1;
	char *end;
	errno = 0;
	double d = strtod(s, &end);
	if (errno || end == s || d < 0)
		return -1;
	uint64_t mul = default_unit;
	switch (*end) {
	case '\0': break;
	case 'b': case 'B': mul = 1; end++; break;
	case 'k': case 'K': mul = 1ULL << 10; end++; break;
	case 'm': case 'M': mul = 1ULL << 20; end++; break;
	case 'g': case 'G': mul = 1ULL << 30; end++; break;
	case 't': case 'T': mul = 1ULL << 40; end++; break;
	default: return -1;
	}
	if (*end)
		return -1;
	double r = d * (double)mul;
	if (r >= 18446744073709551615.0)
		return -1;
	uint64_t v = (uint64_t)r;
	if ((double)v != r) /* fractional bytes */
		return -1;
	*out = v;
	return 0;
}

int kl_opts_get_size(struct kl_opts *o, const char *key, uint64_t def, uint64_t *out, char **err)
{
	const char *v = kl_opts_get(o, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (kl_parse_size(v, 1, out) < 0) {
		*err = g_strdup_printf("parameter '%s' expects a size (like 4K, 1M, 2G), not '%s'", key, v);
		return -1;
	}
	return 0;
}

int kl_opts_check_unused(const struct kl_opts *o, const char *what, char **err)
{
	for (unsigned i = 0; i < o->n; i++) {
		if (!o->v[i].used) {
			*err = what ? g_strdup_printf("%s: unknown parameter '%s'", what, o->v[i].key)
				    : g_strdup_printf("unknown parameter '%s'", o->v[i].key);
			return -1;
		}
	}
	return 0;
}

struct kl_opts *kl_opts_new(const char *src)
{
	struct kl_opts *o = g_new0(struct kl_opts, 1);
	o->src = g_strdup(src ? src : "");
	return o;
}

int kl_opts_add(struct kl_opts *o, const char *key, const char *val)
{
	for (unsigned i = 0; i < o->n; i++)
		if (!strcmp(o->v[i].key, key))
			return -1;
	add(o, g_strdup(key), g_strdup(val));
	return 0;
}

bool kl_opts_has_prefix(const struct kl_opts *o, const char *prefix)
{
	size_t n = strlen(prefix);
	for (unsigned i = 0; i < o->n; i++)
		if (!strncmp(o->v[i].key, prefix, n) && o->v[i].key[n] == '.')
			return true;
	return false;
}

struct kl_opts *kl_opts_sub(struct kl_opts *o, const char *prefix)
{
	size_t n = strlen(prefix);
	struct kl_opts *s = kl_opts_new(o->src);
	for (unsigned i = 0; i < o->n; i++) {
		if (strncmp(o->v[i].key, prefix, n) || o->v[i].key[n] != '.')
			continue;
		o->v[i].used = true;
		add(s, g_strdup(o->v[i].key + n + 1), g_strdup(o->v[i].val));
	}
	return s;
}
