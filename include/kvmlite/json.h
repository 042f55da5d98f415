/* JSON text as QEMU reads it (src/util/json.c): the one entry point to
 * json-glib for untrusted input (QMP messages, -blockdev '{...}'), a
 * splitter of a byte stream into top-level values and QEMU's serializer.
 *
 *   JsonNode *n = kl_json_parse_text(arg, strlen(arg), &err);
 *                       exactly one value, or NULL and *err:
 *                       "JSON parse error, ...", "Expecting at most one JSON value"
 */
#ifndef KVMLITE_JSON_H
#define KVMLITE_JSON_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stddef.h>

#define KL_JSON_MAX_LEN (1u << 20)  /* bytes per JSON value */
#define KL_JSON_MAX_DEPTH 1024      /* nesting of arrays/objects (as QEMU) */

/* Called once per top-level value (error == NULL: msg/len is the text) or
 * per rejected value (error != NULL: the QMP error description). */
typedef void (*kl_split_fn)(void *opaque, const char *msg, size_t len, const char *error);

struct kl_json_splitter {
	GString *buf;
	size_t max_len;
	unsigned max_depth;
	unsigned depth;
	bool in_str, esc;
	char quote;         /* '"' or '\'' (QEMU and json-glib accept both) */
	bool bare;          /* inside a top-level scalar (number, keyword) */
	bool skipping;      /* dropping an oversized / too deep value */
	const char *skip_err;
	kl_split_fn fn;
	void *opaque;
};

void kl_json_splitter_init(struct kl_json_splitter *sp, size_t max_len, unsigned max_depth,
			   kl_split_fn fn, void *opaque);
void kl_json_splitter_feed(struct kl_json_splitter *sp, const char *data, size_t len);
void kl_json_splitter_destroy(struct kl_json_splitter *sp);

/* Parse one value (the text of exactly one value, as the splitter hands
 * it over) with json-glib.  NULL with *err ("JSON parse error, ...") on
 * failure, "JSON parse error, duplicate key" for an object member given
 * twice (QEMU's). */
JsonNode *kl_json_parse(const char *msg, size_t len, char **err);
/* A whole text that must hold one value (whitespace around it is fine):
 * split first (size and nesting limits KL_JSON_MAX_*), so json-glib never
 * sees trailing data.  NULL with *err: QEMU's "Expecting at most one JSON
 * value" for more than one, "Expecting a JSON value" for none, else
 * kl_json_parse's message. */
JsonNode *kl_json_parse_text(const char *text, size_t len, char **err);
/* QEMU's output format: {"a": 1, "b": [true, null]}, non-ASCII as \uXXXX. */
char *kl_json_to_string(JsonNode *n);

#endif
