/* Helpers shared by the libFuzzer targets in tests/fuzz. */
#ifndef KL_FUZZ_UTIL_H
#define KL_FUZZ_UTIL_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: abort() so libFuzzer records the
 * input as a crash (assert() would vanish under -DNDEBUG). */
#define FUZZ_ASSERT(cond)                                                              \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__,    \
				__LINE__, #cond);                                      \
			abort();                                                       \
		}                                                                      \
	} while (0)

/* Consume the input front to back; reads past the end give zeroes. */
struct fuzz_in {
	const uint8_t *p;
	size_t len;
};

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	if (!in->len)
		return 0;
	in->len--;
	return *in->p++;
}
static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
	uint16_t v = fuzz_u8(in);
	return (uint16_t)(v | fuzz_u8(in) << 8);
}
static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
	uint32_t v = fuzz_u16(in);
	return v | (uint32_t)fuzz_u16(in) << 16;
}
static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
	uint64_t v = fuzz_u32(in);
	return v | (uint64_t)fuzz_u32(in) << 32;
}

/* Devices report guest errors with g_printerr / g_warning: keep the fuzzer's
 * output readable (KL_FUZZ_VERBOSE=1 shows them, e.g. when reproducing)... */
static void fuzz_glib_drop(const gchar *s)
{
	(void)s;
}
/* ... but a g_critical (a failed g_return_if_fail) or g_error is a bug. */
static void fuzz_log_drop(const gchar *d, GLogLevelFlags l, const gchar *m, gpointer u)
{
	(void)u;
	if (l & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) {
		fprintf(stderr, "%s: %s\n", d ? d : "glib", m);
		abort();
	}
}
static bool fuzz_verbose;
#define FUZZ_TRACE(...)                                                                \
	do {                                                                           \
		if (fuzz_verbose)                                                      \
			fprintf(stderr, __VA_ARGS__);                                  \
	} while (0)

/* Call from LLVMFuzzerInitialize(argc, argv). */
static inline void fuzz_init_glib(char **argv)
{
	/* GSlice (GLib < 2.76) caches would hide use-after-free from ASan and
	 * make libFuzzer see more mallocs than frees (and rerun each input to
	 * look for leaks).  GLib reads G_SLICE before we get here: re-exec. */
	if (!getenv("G_SLICE")) {
		setenv("G_SLICE", "always-malloc", 1);
		execv("/proc/self/exe", argv);
	}
	g_log_set_always_fatal(G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL);
	fuzz_verbose = getenv("KL_FUZZ_VERBOSE") != NULL;
	if (fuzz_verbose)
		return;
	g_set_printerr_handler(fuzz_glib_drop);
	g_set_print_handler(fuzz_glib_drop);
	g_log_set_default_handler(fuzz_log_drop, NULL);
}

#endif
