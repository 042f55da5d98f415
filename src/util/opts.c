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

static int find(const struct kl_opts *o, const char *key)
{
	for (unsigned i = 0; i < o->n; i++)
		if (!strcmp(o->v[i].key, key))
			return (int)i;
	return -1;
}

/* A key given twice is an error however it is spelled: "x=1,x=2",
 * "x=1,x", "server,server", "wait=on,nowait". */
static int add_unique(struct kl_opts *o, const char *key, const char *val, const char *s,
		      char **err)
{
	if (find(o, key) >= 0) {
		*err = g_strdup_printf("parameter '%s' given twice in '%s'", key, s);
		return -1;
	}
	add(o, g_strdup(key), g_strdup(val));
	return 0;
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
		int r = 0;
		if (!eq) {
			if (first && implied_key) {
				add(o, g_strdup(implied_key), g_strdup(e));
			} else if (*e) {
				/* "server" / "nowait" style: boolean flag */
				if (g_str_has_prefix(e, "no") && strlen(e) > 2)
					r = add_unique(o, e + 2, "off", s, err);
				else
					r = add_unique(o, e, "on", s, err);
			} else if (!last) {
				*err = g_strdup_printf("empty parameter in '%s'", s);
				r = -1;
			}
		} else {
			*eq = '\0';
			if (!*e) {
				*err = g_strdup_printf("missing parameter name in '%s'", s);
				r = -1;
			} else {
				r = add_unique(o, e, eq + 1, s, err);
			}
		}
		g_free(e);
		if (r < 0) {
			kl_opts_free(o);
			return NULL;
		}
		first = false;
		if (last || !*p)
			break;
	}
	return o;
}

/* QEMU's parse_qapi_name(s, false): the length of the name at s (a letter,
 * then letters, digits, '-', '_'; optionally after a "__RFQDN_" downstream
 * prefix), 0 if there is none. */
static size_t qapi_name_len(const char *s)
{
	const char *p = s;
	if (*p == '_') {
		p++;
		if (*p != '_')
			return 0;
		while (*++p)
			if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.')
				break;
		if (*p != '_')
			return 0;
		p++;
	}
	if (!g_ascii_isalpha(*p))
		return 0;
	while (*++p)
		if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_')
			break;
	return (size_t)(p - s);
}

/* A key "a.b.c" is a path through nested objects: no key may be both a
 * value and an object ("a=1,a.b=2").  keylen: the length of the new key. */
static int keyval_consistent(const struct kl_opts *o, const char *key, size_t keylen, char **err)
{
	for (unsigned i = 0; i < o->n; i++) {
		const char *k = o->v[i].key;
		size_t n = strlen(k);
		size_t shorter = n < keylen ? n : keylen;
		if (n == keylen || strncmp(k, key, shorter))
			continue;
		/* one is a proper prefix of the other: inconsistent at a '.' */
		if ((n < keylen && key[n] == '.') || (keylen < n && k[keylen] == '.')) {
			*err = g_strdup_printf("Parameters '%.*s.*' used inconsistently", (int)shorter,
					       key);
			return -1;
		}
	}
	return 0;
}

/* The key of len bytes at key: fragments between '.' are QAPI names, or
 * digits after the first (list indexes), 1..127 characters each. */
static int keyval_key_check(const char *key, size_t len, char **err)
{
	const char *f = key, *end = key + len;
	for (;;) {
		size_t fl = 0;
		if (f != key && g_ascii_isdigit(*f)) {
			while (f + fl < end && g_ascii_isdigit(f[fl]))
				fl++;
		} else {
			fl = qapi_name_len(f);
		}
		if (!fl || (f + fl < end && f[fl] != '.')) {
			*err = g_strdup_printf("Invalid parameter '%.*s'", (int)len, key);
			return -1;
		}
		if (fl >= 128) {
			*err = g_strdup_printf("Parameter%s '%.*s' is too long",
					       f != key || f + fl != end ? " fragment" : "", (int)fl, f);
			return -1;
		}
		f += fl;
		if (f == end)
			return 0;
		f++; /* '.' */
	}
}

struct kl_opts *kl_keyval_parse(const char *s, const char *implied_key, char **err)
{
	struct kl_opts *o = kl_opts_new(s);
	const char *p = s;
	while (*p) {
		size_t len = strcspn(p, "=,");
		if (implied_key && len && p[len] != '=') {
			/* "raw,..." is driver=raw: the value ends at the first ','
			 * (no ",," escape here, as QEMU) */
			add(o, g_strdup(implied_key), g_strndup(p, len));
			p += len;
			if (*p == ',')
				p++;
			implied_key = NULL;
			continue;
		}
		implied_key = NULL;
		if (keyval_key_check(p, len, err) < 0)
			goto fail;
		if (p[len] != '=') {
			*err = g_strdup_printf("Expected '=' after parameter '%.*s'", (int)len, p);
			goto fail;
		}
		if (keyval_consistent(o, p, len, err) < 0)
			goto fail;
		char *k = g_strndup(p, len);
		GString *val = g_string_new(NULL);
		for (p += len + 1; *p;) {
			if (*p == ',') {
				p++;
				if (*p != ',')
					break;
			}
			g_string_append_c(val, *p++);
		}
		/* the last of several values for a key counts (QEMU) */
		int i = find(o, k);
		if (i >= 0) {
			g_free(o->v[i].val);
			o->v[i].val = g_string_free(val, FALSE);
			g_free(k);
		} else {
			add(o, k, g_string_free(val, FALSE));
		}
	}
	return o;
fail:
	kl_opts_free(o);
	return NULL;
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
	int i = find(o, key);
	if (i < 0)
		return NULL;
	o->v[i].used = true;
	return o->v[i].val;
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
	if (find(o, key) >= 0)
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
