/* QEMU-style option strings: "value,key=val,key=val" (",," escapes a comma).
 *
 *   struct kl_opts *o = kl_opts_parse("virtio-blk-pci,drive=d0", "driver", &err);
 *   const char *drv = kl_opts_get(o, "drive");      marks "drive" as used
 *   if (kl_opts_check_unused(o, "virtio-blk-pci", &err) < 0) ...  error names
 *                                                    the first unknown key
 */
#ifndef KVMLITE_OPTS_H
#define KVMLITE_OPTS_H

#include <stdbool.h>
#include <stdint.h>

struct kl_opt {
	char *key;
	char *val;
	bool used;
};

struct kl_opts {
	char *src;          /* the original string, for messages */
	struct kl_opt *v;
	unsigned n;
};

/* implied_key names the key of a leading element without '=' (NULL: none
 * allowed).  Elements without '=' are flags: "server" is server=on,
 * "nowait" wait=off.  Returns NULL with *err set on syntax errors (a key
 * given twice in any spelling, empty key). */
struct kl_opts *kl_opts_parse(const char *s, const char *implied_key, char **err);
/* QEMU's keyval syntax (-blockdev a=b,c.d=e): every element is KEY=VALUE
 * (only a leading element without '=' is the implied key's value); key
 * fragments between '.' are QAPI names (or digits after the first); the last
 * of repeated keys counts; "a=1,a.b=2" is an error.  Errors are QEMU 7.2's
 * texts ("Expected '=' after parameter 'x'", "Invalid parameter 'x y'",
 * "Parameters 'a.*' used inconsistently"). */
struct kl_opts *kl_keyval_parse(const char *s, const char *implied_key, char **err);
void kl_opts_free(struct kl_opts *o);

const char *kl_opts_get(struct kl_opts *o, const char *key); /* NULL: absent */
/* Typed getters: return 0 (value or default stored) or -1 with *err naming
 * key and value. */
int kl_opts_get_bool(struct kl_opts *o, const char *key, bool def, bool *out, char **err);
int kl_opts_get_u64(struct kl_opts *o, const char *key, uint64_t def, uint64_t *out, char **err);
/* Sizes with QEMU suffixes: k/K, M, G, T (binary); a bare number means
 * default_unit bytes-multiplier (1 for bytes, 1<<20 for -m). */
int kl_parse_size(const char *s, uint64_t default_unit, uint64_t *out);
int kl_opts_get_size(struct kl_opts *o, const char *key, uint64_t def, uint64_t *out, char **err);
/* Error "WHAT: unknown parameter 'KEY'" (what NULL: without the prefix). */
int kl_opts_check_unused(const struct kl_opts *o, const char *what, char **err);

/* Building option sets (-blockdev / blockdev-add flatten nested objects to
 * dotted keys "file.filename"; JSON null is stored as ""). */
struct kl_opts *kl_opts_new(const char *src);
int kl_opts_add(struct kl_opts *o, const char *key, const char *val); /* -1: duplicate */
/* Some key is "PREFIX.something". */
bool kl_opts_has_prefix(const struct kl_opts *o, const char *prefix);
/* New set of the keys "PREFIX.k" as "k" (marked used in o). */
struct kl_opts *kl_opts_sub(struct kl_opts *o, const char *prefix);

#endif
