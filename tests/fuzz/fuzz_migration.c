/* libFuzzer target: the incoming migration loader (src/migration/stream.c,
 * ram.c; vmstate.c's reader).
 *
 * The input is the stream.  It is loaded into a VM with 64 KiB of fake RAM
 * and the two test sections of tests/unit/migration/mig_fake.h (a u32 and
 * a string; a counted array), as kvmlite -incoming would load it.
 *
 * Asserted: the load returns 0, or -1 with a message; on success every
 * section was loaded and post_load ran once.  ASan catches any write
 * outside the RAM buffer (RAM records with out-of-range GPAs or lengths)
 * and any read past the input. */
#include <stdint.h>
#include <stdlib.h>

#include "../unit/migration/mig_fake.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_vm m;
	mig_vm_init(&m, 16 * 4096, 1);
	struct kl_mig_in in = { .fd = -1, .buf = data, .len = size };
	char *err = NULL;
	int r = kl_mig_load(&m.vm, &in, &err);
	FUZZ_ASSERT(r == 0 || r == -1);
	FUZZ_ASSERT((r == -1) == (err != NULL));
	if (r == 0)
		FUZZ_ASSERT(m.dev.post_loads == 1);
	g_free(err);
	mig_vm_free(&m);
	return 0;
}
