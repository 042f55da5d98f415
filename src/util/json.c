/* JSON as QEMU reads and writes it (QMP, -blockdev): split a byte stream
 * into top-level JSON values (brace/string aware, with size and nesting
 * limits), parse one value with json-glib, and serialize the way QEMU
 * does.  See include/kvmlite/json.h. */
#include "kvmlite/json.h"

#include <math.h>
#include <string.h>

void kl_json_splitter_init(struct kl_json_splitter *sp, size_t max_len, unsigned max_depth,
			   kl_split_fn fn, void *opaque)
{
	memset(sp, 0, sizeof(*sp));
	sp->buf = g_string_new(NULL);
	sp->max_len = max_len;
	sp->max_depth = max_depth;
	sp->fn = fn;
	sp->opaque = opaque;
}

void kl_json_splitter_destroy(struct kl_json_splitter *sp)
{
	if (sp->buf)
		g_string_free(sp->buf, TRUE);
	sp->buf = NULL;
}

static void reset(struct kl_json_splitter *sp)
{
	g_string_truncate(sp->buf, 0);
	sp->depth = 0;
	sp->in_str = sp->esc = sp->bare = sp->skipping = false;
	sp->skip_err = NULL;
}

static void complete(struct kl_json_splitter *sp)
{
	if (sp->skipping) {
		const char *e = sp->skip_err;
		reset(sp);
		sp->fn(sp->opaque, NULL, 0, e);
		return;
	}
	/* Hand over a copy of the pointer: reset only after the callback. */
	sp->fn(sp->opaque, sp->buf->str, sp->buf->len, NULL);
	reset(sp);
}

static void start_skip(struct kl_json_splitter *sp, const char *why)
{
	sp->skipping = true;
	sp->skip_err = why;
	g_string_truncate(sp->buf, 0);
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool ends_bare(char c)
{
	return is_ws(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == '"' || c == '\'';
}

static void append(struct kl_json_splitter *sp, char c)
{
	if (sp->skipping)
		return;
	g_string_append_c(sp->buf, c);
	if (sp->buf->len > sp->max_len)
		start_skip(sp, "JSON message size limit exceeded");
}

void kl_json_splitter_feed(struct kl_json_splitter *sp, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = data[i];
		if (sp->bare) {
			if (!ends_bare(c)) {
				append(sp, c);
				continue;
			}
			complete(sp);
			/* fall through: c starts something at top level */
		}
		if (sp->depth == 0 && !sp->in_str) {
			if (is_ws(c))
				continue;
			if (c == '{' || c == '[') {
				sp->depth = 1;
				append(sp, c);
			} else if (c == '"' || c == '\'') {
				sp->in_str = true;
				sp->quote = c;
				append(sp, c);
			} else if (c == '}' || c == ']') {
				sp->fn(sp->opaque, NULL, 0, "JSON parse error, expecting value");
			} else {
				sp->bare = true;
				append(sp, c);
			}
			continue;
		}
		if (sp->in_str) {
			append(sp, c);
			if (sp->esc) {
				sp->esc = false;
			} else if (c == '\\') {
				sp->esc = true;
			} else if (c == sp->quote) {
				sp->in_str = false;
				if (sp->depth == 0)
					complete(sp);
			}
			continue;
		}
		append(sp, c);
		if (c == '"' || c == '\'') {
			sp->in_str = true;
			sp->quote = c;
		} else if (c == '{' || c == '[') {
			sp->depth++;
			if (sp->depth > sp->max_depth && !sp->skipping)
				start_skip(sp, "JSON nesting depth limit exceeded");
		} else if (c == '}' || c == ']') {
			sp->depth--;
			if (sp->depth == 0)
				complete(sp);
		}
	}
}

/* Strings must be valid UTF-8 throughout (json-glib decodes \uXXXX escapes
 * itself; a lone surrogate escape must not reach our output unnoticed). */
static bool node_valid(JsonNode *n, unsigned depth)
{
	if (depth > KL_JSON_MAX_DEPTH + 1)
		return false;
	switch (json_node_get_node_type(n)) {
	case JSON_NODE_OBJECT: {
		JsonObjectIter it;
		const char *k;
		JsonNode *v;
		json_object_iter_init(&it, json_node_get_object(n));
		while (json_object_iter_next(&it, &k, &v)) {
			if (!g_utf8_validate(k, -1, NULL) || !node_valid(v, depth + 1))
				return false;
		}
		return true;
	}
	case JSON_NODE_ARRAY: {
		JsonArray *a = json_node_get_array(n);
		for (guint i = 0; i < json_array_get_length(a); i++)
			if (!node_valid(json_array_get_element(a, i), depth + 1))
				return false;
		return true;
	}
	case JSON_NODE_VALUE:
		if (json_node_get_value_type(n) == G_TYPE_STRING)
			return g_utf8_validate(json_node_get_string(n), -1, NULL);
		return true;
	default:
		return true;
	}
}

/* json-glib wraps integers outside int64 (1e23 written as digits becomes -1);
 * rewrite such tokens as floats ("...0.0") so an echoed id keeps its value
 * (QEMU likewise turns them into doubles).  NULL: nothing to rewrite. */
static bool int_overflows(const char *p, size_t n)
{
	bool neg = *p == '-';
	if (neg) {
		p++;
		n--;
	}
	while (n > 1 && *p == '0') {
		p++;
		n--;
	}
	const char *lim = neg ? "9223372036854775808" : "9223372036854775807";
	if (n != 19)
		return n > 19;
	return memcmp(p, lim, 19) > 0;
}

static GString *widen_big_ints(const char *msg, size_t len)
{
	GString *out = NULL;
	bool in_str = false, esc = false;
	char quote = 0;
	size_t copied = 0;
	for (size_t i = 0; i < len; i++) {
		char c = msg[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == quote)
				in_str = false;
			continue;
		}
		if (c == '"' || c == '\'') {
			in_str = true;
			quote = c;
			continue;
		}
		if (!(c == '-' || (c >= '0' && c <= '9')))
			continue;
		if (i > 0 && (g_ascii_isalnum(msg[i - 1]) || msg[i - 1] == '.' || msg[i - 1] == '_'))
			continue;
		size_t j = i + (c == '-');
		while (j < len && msg[j] >= '0' && msg[j] <= '9')
			j++;
		bool frac = j < len && (msg[j] == '.' || msg[j] == 'e' || msg[j] == 'E');
		if (j > i + (c == '-') && !frac && int_overflows(msg + i, j - i)) {
			if (!out)
				out = g_string_sized_new(len + 16);
			g_string_append_len(out, msg + copied, (gssize)(j - copied));
			g_string_append(out, ".0");
			copied = j;
		}
		i = j - 1;
	}
	if (out)
		g_string_append_len(out, msg + copied, (gssize)(len - copied));
	return out;
}

static int hex4(const char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		int d = g_ascii_xdigit_value(p[i]);
		if (d < 0)
			return -1;
		v = v << 4 | d;
	}
	return v;
}

/* Check every \uXXXX escape before json-glib sees it: json-glib 1.6 takes
 * fewer than 4 hex digits (and then the next character, even the closing
 * quote), and leaks its string buffer when a surrogate escape is followed by
 * a \u escape that does not complete a high + low pair (found by
 * tests/fuzz/fuzz_qmp).  Strict JSON (and QEMU) reject both.  Backslash
 * pairs are skipped as inside a string.  NULL when all escapes are fine. */
static const char *bad_unicode_escape(const char *msg, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (msg[i] != '\\')
			continue;
		if (msg[i + 1] != 'u') {
			i++; /* the escaped character */
			continue;
		}
		int u = len - i >= 6 ? hex4(msg + i + 2) : -1;
		if (u < 0)
			return "JSON parse error, invalid Unicode escape";
		if (u >= 0xd800 && u <= 0xdfff) {
			int lo = u < 0xdc00 && len - i >= 12 && msg[i + 6] == '\\' &&
				 msg[i + 7] == 'u' ? hex4(msg + i + 8) : -1;
			if (lo < 0xdc00 || lo > 0xdfff)
				return "JSON parse error, scanner: malformed surrogate pair";
			i += 6;
		}
		i += 5;
	}
	return NULL;
}

/* json-glib keeps the last of repeated object members; QEMU rejects them.
 * Count the members json-glib reports per object and compare with the
 * object's size at its end. */
struct member_count {
	GHashTable *n; /* JsonObject * -> members reported */
	bool dup;
};

static void on_member(JsonParser *p, JsonObject *o, const char *name, gpointer opaque)
{
	(void)p, (void)name;
	struct member_count *mc = opaque;
	guint n = GPOINTER_TO_UINT(g_hash_table_lookup(mc->n, o));
	g_hash_table_insert(mc->n, o, GUINT_TO_POINTER(n + 1));
}

static void on_object_end(JsonParser *p, JsonObject *o, gpointer opaque)
{
	(void)p;
	struct member_count *mc = opaque;
	if (GPOINTER_TO_UINT(g_hash_table_lookup(mc->n, o)) != json_object_get_size(o))
		mc->dup = true;
	g_hash_table_remove(mc->n, o);
}

JsonNode *kl_json_parse(const char *msg, size_t len, char **err)
{
	if (memchr(msg, '\0', len)) {
		*err = g_strdup("JSON parse error, invalid character NUL");
		return NULL;
	}
	if (!g_utf8_validate(msg, (gssize)len, NULL)) {
		*err = g_strdup("JSON parse error, invalid UTF-8 sequence");
		return NULL;
	}
	const char *bad = bad_unicode_escape(msg, len);
	if (bad) {
		*err = g_strdup(bad);
		return NULL;
	}
	GString *wide = widen_big_ints(msg, len);
	if (wide) {
		msg = wide->str;
		len = wide->len;
	}
	JsonParser *p = json_parser_new_immutable();
	struct member_count mc = { g_hash_table_new(NULL, NULL), false };
	g_signal_connect(p, "object-member", G_CALLBACK(on_member), &mc);
	g_signal_connect(p, "object-end", G_CALLBACK(on_object_end), &mc);
	GError *gerr = NULL;
	JsonNode *root = NULL;
	gboolean ok = json_parser_load_from_data(p, msg, (gssize)len, &gerr);
	if (wide)
		g_string_free(wide, TRUE);
	g_hash_table_destroy(mc.n);
	if (ok && mc.dup) {
		*err = g_strdup("JSON parse error, duplicate key");
		g_object_unref(p);
		return NULL;
	}
	if (!ok) {
		/* json-glib: "<data>:1:7: Parse error: unexpected ..." */
		const char *m = gerr ? gerr->message : "unknown error";
		const char *pe = strstr(m, "Parse error: ");
		*err = g_strdup_printf("JSON parse error, %s", pe ? pe + 13 : m);
		if (gerr)
			g_error_free(gerr);
		g_object_unref(p);
		return NULL;
	}
	if (json_parser_get_root(p))
		root = json_node_copy(json_parser_get_root(p));
	g_object_unref(p);
	if (!root) {
		*err = g_strdup("JSON parse error, expecting value");
		return NULL;
	}
	if (!node_valid(root, 0)) {
		json_node_unref(root);
		*err = g_strdup("JSON parse error, invalid Unicode escape");
		return NULL;
	}
	return root;
}

struct one_value {
	GString *text; /* the first value */
	unsigned n;    /* values seen */
	char *err;     /* the first rejected one's message */
};

static void one_value_cb(void *opaque, const char *msg, size_t len, const char *error)
{
	struct one_value *v = opaque;
	if (v->n++ == 0) {
		if (error)
			v->err = g_strdup(error);
		else
			v->text = g_string_new_len(msg, (gssize)len);
	}
}

JsonNode *kl_json_parse_text(const char *text, size_t len, char **err)
{
	struct one_value v = { 0 };
	struct kl_json_splitter sp;
	kl_json_splitter_init(&sp, KL_JSON_MAX_LEN, KL_JSON_MAX_DEPTH, one_value_cb, &v);
	kl_json_splitter_feed(&sp, text, len);
	/* a top-level scalar ends at whitespace; an unfinished object or
	 * string goes to json-glib, which names what is missing */
	if (sp.skipping)
		one_value_cb(&v, NULL, 0, sp.skip_err);
	else if (sp.bare)
		kl_json_splitter_feed(&sp, " ", 1);
	else if (sp.buf->len)
		one_value_cb(&v, sp.buf->str, sp.buf->len, NULL);
	kl_json_splitter_destroy(&sp);
	JsonNode *root = NULL;
	if (v.n > 1) {
		*err = g_strdup("Expecting at most one JSON value");
	} else if (v.err) {
		*err = g_strdup(v.err);
	} else if (!v.text) {
		*err = g_strdup("Expecting a JSON value");
	} else {
		root = kl_json_parse(v.text->str, v.text->len, err);
	}
	g_free(v.err);
	if (v.text)
		g_string_free(v.text, TRUE);
	return root;
}

static void put_str(GString *o, const char *s)
{
	g_string_append_c(o, '"');
	const char *end = s + strlen(s);
	while (*s) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x80) {
			switch (c) {
			case '"': g_string_append(o, "\\\""); break;
			case '\\': g_string_append(o, "\\\\"); break;
			case '\b': g_string_append(o, "\\b"); break;
			case '\f': g_string_append(o, "\\f"); break;
			case '\n': g_string_append(o, "\\n"); break;
			case '\r': g_string_append(o, "\\r"); break;
			case '\t': g_string_append(o, "\\t"); break;
			default:
				if (c < 0x20 || c == 0x7f)
					g_string_append_printf(o, "\\u%04X", c);
				else
					g_string_append_c(o, (char)c);
			}
			s++;
			continue;
		}
		gunichar u = g_utf8_get_char_validated(s, end - s);
		if (u == (gunichar)-1 || u == (gunichar)-2) {
			g_string_append(o, "\\uFFFD");
			s++;
			continue;
		}
		if (u >= 0x10000) {
			u -= 0x10000;
			g_string_append_printf(o, "\\u%04X\\u%04X", 0xD800 + (u >> 10), 0xDC00 + (u & 0x3ff));
		} else {
			g_string_append_printf(o, "\\u%04X", u);
		}
		s = g_utf8_next_char(s);
	}
	g_string_append_c(o, '"');
}

static void put_node(GString *o, JsonNode *n)
{
	if (!n) {
		g_string_append(o, "null");
		return;
	}
	switch (json_node_get_node_type(n)) {
	case JSON_NODE_OBJECT: {
		JsonObjectIter it;
		const char *k;
		JsonNode *v;
		bool first = true;
		g_string_append_c(o, '{');
		json_object_iter_init_ordered(&it, json_node_get_object(n));
		while (json_object_iter_next_ordered(&it, &k, &v)) {
			if (!first)
				g_string_append(o, ", ");
			first = false;
			put_str(o, k);
			g_string_append(o, ": ");
			put_node(o, v);
		}
		g_string_append_c(o, '}');
		break;
	}
	case JSON_NODE_ARRAY: {
		JsonArray *a = json_node_get_array(n);
		g_string_append_c(o, '[');
		for (guint i = 0; i < json_array_get_length(a); i++) {
			if (i)
				g_string_append(o, ", ");
			put_node(o, json_array_get_element(a, i));
		}
		g_string_append_c(o, ']');
		break;
	}
	case JSON_NODE_NULL:
		g_string_append(o, "null");
		break;
	case JSON_NODE_VALUE: {
		GType t = json_node_get_value_type(n);
		if (t == G_TYPE_STRING) {
			put_str(o, json_node_get_string(n));
		} else if (t == G_TYPE_BOOLEAN) {
			g_string_append(o, json_node_get_boolean(n) ? "true" : "false");
		} else if (t == G_TYPE_INT64) {
			g_string_append_printf(o, "%" G_GINT64_FORMAT, json_node_get_int(n));
		} else if (t == G_TYPE_DOUBLE) {
			double d = json_node_get_double(n);
			char buf[G_ASCII_DTOSTR_BUF_SIZE];
			if (!isfinite(d))
				g_string_append(o, "null");
			else
				g_string_append(o, g_ascii_formatd(buf, sizeof(buf), "%.17g", d));
		} else {
			g_string_append(o, "null");
		}
		break;
	}
	}
}

char *kl_json_to_string(JsonNode *n)
{
	GString *o = g_string_new(NULL);
	put_node(o, n);
	return g_string_free(o, FALSE);
}
