/* libFuzzer target: the CPUID table inside an incoming "vcpu" migration
 * section (src/cpu/cpuid_state.c), checked against the destination vCPU's
 * own table.
 *
 * Input: [n][version][n entries of 7 little-endian u32: function, index,
 * flags, EAX..EDX -- the destination's table][the section bytes].
 * n is taken modulo 9, version modulo 3 (0 and 1 read a CRC-32, 2 the table).
 *
 * Asserted, for version 2: the check returns 0 or -1, -1 exactly when it
 * left a message; a stream that passed and did not fail the reader began
 * with exactly the bytes kl_cpuid_state_save() writes for our table
 * (accepted <=> identical); and our own save always passes, reading all of
 * its bytes.  For versions 0-1 the same message rule, exactly 4 bytes read,
 * and the CRC-32 of our table's words passes.  ASan: no read past the input or the table. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "kvmlite/cpu.h"
#include "kvmlite/vmstate.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_init_glib(*argv);
	return 0;
}

static int check(const struct kvm_cpuid2 *t, const void *p, size_t len, uint32_t version,
		 bool *failed, size_t *used)
{
	struct kl_vms_in in;
	kl_vms_in_init(&in, p, len);
	char *err = NULL;
	int r = kl_cpuid_state_check(t, 3, &in, version, &err);
	FUZZ_ASSERT(r == 0 || r == -1);
	FUZZ_ASSERT((r == -1) == (err != NULL));
	FUZZ_TRACE("v%u r=%d err=%s failed=%d\n", version, r, err ? err : "-",
		   kl_vms_failed(&in));
	*failed = kl_vms_failed(&in);
	*used = len - kl_vms_remaining(&in);
	g_free(err);
	kl_vms_in_free(&in);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in f = { data, size };
	unsigned n = fuzz_u8(&f) % 9;
	uint32_t version = fuzz_u8(&f) % 3;
	struct kvm_cpuid2 *t = g_malloc0(sizeof(*t) + n * sizeof(struct kvm_cpuid_entry2));
	t->nent = n;
	for (unsigned i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 *e = &t->entries[i];
		e->function = fuzz_u32(&f);
		e->index = fuzz_u32(&f);
		e->flags = fuzz_u32(&f);
		e->eax = fuzz_u32(&f);
		e->ebx = fuzz_u32(&f);
		e->ecx = fuzz_u32(&f);
		e->edx = fuzz_u32(&f);
	}
	/* the rest, in a buffer of its own so ASan sees a read past it */
	uint8_t *s = g_malloc(f.len ? f.len : 1);
	if (f.len)
		memcpy(s, f.p, f.len);
	bool failed;
	size_t used;
	int r = check(t, s, f.len, version, &failed, &used);

	struct kl_vms_out o;
	kl_vms_out_init(&o);
	kl_cpuid_state_save(t, &o);
	if (version == 2) {
		bool same = f.len >= o.buf->len && memcmp(s, o.buf->data, o.buf->len) == 0;
		if (same)
			FUZZ_ASSERT(r == 0 && !failed && used == o.buf->len);
		if (r == 0 && !failed)
			FUZZ_ASSERT(same);
		/* our own save passes, every byte read */
		FUZZ_ASSERT(check(t, o.buf->data, o.buf->len, 2, &failed, &used) == 0);
		FUZZ_ASSERT(!failed && used == o.buf->len);
	} else {
		/* a version-1 section carries only the CRC-32 of the table: its
		 * length says nothing about ours, and a 4-byte CRC always reads */
		FUZZ_ASSERT(failed == (f.len < 4));
		if (!failed)
			FUZZ_ASSERT(used == 4);
		/* the CRC-32 of our table's words passes */
		uLong crc = 0;
		for (unsigned i = 0; i < n; i++) {
			const struct kvm_cpuid_entry2 *e = &t->entries[i];
			uint32_t w[7] = { e->function, e->index, e->flags, e->eax, e->ebx, e->ecx,
					  e->edx };
			crc = crc32_z(crc, (const Bytef *)w, sizeof(w));
		}
		uint8_t le[4] = { (uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16),
				  (uint8_t)(crc >> 24) };
		FUZZ_ASSERT(check(t, le, 4, version, &failed, &used) == 0 && !failed);
	}
	kl_vms_out_free(&o);
	g_free(s);
	g_free(t);
	return 0;
}
