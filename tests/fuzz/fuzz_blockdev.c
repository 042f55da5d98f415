/* libFuzzer target: a -blockdev argument, and the same text as a QemuOpts
 * option string (-drive, -device, -chardev, ...).
 *
 * Input: the argument text (up to the first NUL, as on a command line).
 * It goes through kl_blockdev_parse_spec (src/block/blockdev.c: a JSON
 * object when it starts with '{' - src/util/json.c's kl_json_parse_text,
 * then kl_opts_from_json's flattener - else src/util/opts.c's
 * kl_keyval_parse with the implied key "driver"), then kl_blockdev_check.
 * A spec that passes opens its nodes for real (kl_blockdev_add: node.c's
 * option handling, child references, the raw / qcow2 / file drivers' own
 * options), with every "filename" value replaced by a 64 KiB memfd of
 * zeroes, so no file outside the process is touched (the hostile images
 * are fuzz_qcow2's); a node "f0" (driver file on another memfd, read-only,
 * not user-added) exists for references like file=f0.  The user-added
 * nodes are released after each input.  A text not starting with '{' also
 * goes through kl_opts_parse, with and without an implied key.
 *
 * Asserted: a parser returns options or an error message, never both or
 * neither; the options have no key twice and no empty key; options
 * written back as "key=value" (commas doubled) parse to the same keys and
 * values in the same order (keyval; QemuOpts unless a key starts with
 * ','; JSON whose keys are valid keyval keys); a spec that passes the
 * check names a known driver and a non-empty node-name; an open that
 * fails leaves no node behind, and after the release only f0 is left.
 */
#include <glib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>
#include <unistd.h>

#include "../../src/block/node.h"
#include "kvmlite/loop.h"
#include "kvmlite/opts.h"

#include "fuzz_util.h"

static char img_path[64];

static char *memfd_path(const char *name)
{
	int fd = memfd_create(name, 0);
	FUZZ_ASSERT(fd >= 0 && ftruncate(fd, 64 << 10) == 0);
	return g_strdup_printf("/proc/self/fd/%d", fd);
}

static void count_node(struct kl_bnode *bs, void *opaque)
{
	(void)bs;
	(*(unsigned *)opaque)++;
}

static unsigned nodes(void)
{
	unsigned n = 0;
	kl_bnode_foreach(count_node, &n);
	return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_init_glib(*argv);
	kl_loop_init();
	char *p = memfd_path("fuzz-blockdev");
	snprintf(img_path, sizeof(img_path), "%s", p);
	g_free(p);
	/* f0: a reference target that stays (not user-added) */
	char *f0 = memfd_path("fuzz-blockdev-f0");
	struct kl_opts *o = kl_opts_new("f0");
	kl_opts_add(o, "driver", "file");
	kl_opts_add(o, "filename", f0);
	kl_opts_add(o, "node-name", "f0");
	kl_opts_add(o, "locking", "off");
	struct kl_bnode_inherit in = kl_block_inherit(KL_CACHE_WRITEBACK, KL_AIO_THREADS, true);
	char *err = NULL;
	struct kl_bnode *bs = kl_bnode_open(o, &in, &err);
	if (!bs)
		fprintf(stderr, "f0: %s\n", err);
	FUZZ_ASSERT(bs != NULL);
	kl_opts_free(o);
	g_free(f0);
	FUZZ_ASSERT(nodes() == 1);
	return 0;
}

/* Open the nodes of a checked spec with every filename on the memfd. */
static void open_nodes(struct kl_opts *o)
{
	for (unsigned i = 0; i < o->n; i++) {
		const char *k = o->v[i].key;
		if (!strcmp(k, "filename") || g_str_has_suffix(k, ".filename")) {
			g_free(o->v[i].val);
			o->v[i].val = g_strdup(img_path);
		}
	}
	char *err = NULL;
	struct kl_bnode *bs = kl_blockdev_add(o, &err);
	FUZZ_ASSERT((bs == NULL) != (err == NULL));
	if (!bs) {
		FUZZ_TRACE("open: %s\n", err);
		FUZZ_ASSERT(*err);
		FUZZ_ASSERT(nodes() == 1);
		g_free(err);
		return;
	}
	FUZZ_TRACE("open: node %s, driver %s\n", bs->node_name, bs->drv->name);
	FUZZ_ASSERT(bs->user_added && bs->node_name);
	FUZZ_ASSERT(!strcmp(bs->node_name, kl_opts_get(o, "node-name")));
	kl_blockdev_release_user_nodes();
	FUZZ_ASSERT(nodes() == 1);
}

static void check_result(struct kl_opts *o, char *err)
{
	FUZZ_ASSERT((o == NULL) != (err == NULL));
	if (!o) {
		FUZZ_TRACE("error: %s\n", err);
		FUZZ_ASSERT(*err);
		return;
	}
	for (unsigned i = 0; i < o->n; i++) {
		FUZZ_TRACE("  %s = %s\n", o->v[i].key, o->v[i].val);
		FUZZ_ASSERT(o->v[i].key && o->v[i].val);
		FUZZ_ASSERT(*o->v[i].key);
		for (unsigned j = 0; j < i; j++)
			FUZZ_ASSERT(strcmp(o->v[i].key, o->v[j].key) != 0);
	}
}

/* "k=v,k=v" with every comma in keys and values doubled. */
static char *unparse(const struct kl_opts *o)
{
	GString *s = g_string_new(NULL);
	for (unsigned i = 0; i < o->n; i++) {
		if (i)
			g_string_append_c(s, ',');
		for (int part = 0; part < 2; part++) {
			for (const char *c = part ? o->v[i].val : o->v[i].key; *c; c++) {
				if (*c == ',')
					g_string_append_c(s, ',');
				g_string_append_c(s, *c);
			}
			if (!part)
				g_string_append_c(s, '=');
		}
	}
	return g_string_free(s, FALSE);
}

static void check_same(const struct kl_opts *a, const struct kl_opts *b)
{
	FUZZ_ASSERT(a->n == b->n);
	for (unsigned i = 0; i < a->n; i++) {
		FUZZ_ASSERT(!strcmp(a->v[i].key, b->v[i].key));
		FUZZ_ASSERT(!strcmp(a->v[i].val, b->v[i].val));
	}
}

/* Keyval-written options read back the same (with the keyval parser or
 * the QemuOpts one). */
static void roundtrip(const struct kl_opts *o, bool keyval)
{
	char *text = unparse(o);
	char *err = NULL;
	struct kl_opts *back = keyval ? kl_keyval_parse(text, NULL, &err)
				      : kl_opts_parse(text, NULL, &err);
	if (!back)
		fprintf(stderr, "'%s' does not parse back: %s\n", text, err);
	FUZZ_ASSERT(back != NULL);
	check_same(o, back);
	kl_opts_free(back);
	g_free(text);
}

/* Every key of o is a valid keyval key (checked by parsing "KEY=" alone)
 * and none is both a value and an object ("a" and "a.b"). */
static bool keyval_keys(const struct kl_opts *o)
{
	for (unsigned i = 0; i < o->n; i++) {
		char *err = NULL;
		struct kl_opts *one = strchr(o->v[i].key, ',') ? NULL
				      : kl_keyval_parse(o->v[i].key, NULL, &err);
		/* "KEY" alone is "Expected '='" exactly when KEY is a valid key */
		bool ok = err && g_str_has_prefix(err, "Expected '='");
		kl_opts_free(one);
		g_free(err);
		if (!ok)
			return false;
		size_t n = strlen(o->v[i].key);
		for (unsigned j = 0; j < o->n; j++)
			if (!strncmp(o->v[j].key, o->v[i].key, n) && o->v[j].key[n] == '.')
				return false;
	}
	return true;
}

static void blockdev(const char *spec)
{
	char *err = NULL;
	struct kl_opts *o = kl_blockdev_parse_spec(spec, &err);
	bool json = spec[0] == '{';
	check_result(o, err);
	if (!o) {
		g_free(err);
		return;
	}
	if (!json || keyval_keys(o))
		roundtrip(o, true);
	if (kl_blockdev_check(o, &err) < 0) {
		FUZZ_ASSERT(err && *err);
		FUZZ_TRACE("check: %s\n", err);
		g_free(err);
	} else {
		FUZZ_ASSERT(err == NULL);
		const char *drv = NULL, *name = NULL;
		for (unsigned i = 0; i < o->n; i++) {
			if (!strcmp(o->v[i].key, "driver"))
				drv = o->v[i].val;
			if (!strcmp(o->v[i].key, "node-name"))
				name = o->v[i].val;
		}
		FUZZ_ASSERT(drv && kl_bdrv_find(drv));
		FUZZ_ASSERT(name && *name);
		open_nodes(o);
	}
	kl_opts_free(o);
}

static void qemuopts(const char *s, const char *implied)
{
	char *err = NULL;
	struct kl_opts *o = kl_opts_parse(s, implied, &err);
	check_result(o, err);
	/* a key starting with ',' ("no,,x": ",x" off) cannot be written after
	 * a separator: ",,," reads as an escaped comma, then the separator */
	bool representable = o != NULL;
	for (unsigned i = 0; o && i < o->n; i++)
		if (o->v[i].key[0] == ',')
			representable = false;
	if (representable)
		roundtrip(o, false);
	kl_opts_free(o);
	g_free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *spec = g_strndup((const char *)data, size);
	FUZZ_TRACE("-blockdev %s\n", spec);
	blockdev(spec);
	if (spec[0] != '{') {
		qemuopts(spec, NULL);
		qemuopts(spec, "driver");
	}
	g_free(spec);
	return 0;
}
