/* Unit tests: guest memory layout, bounds-checked translation, e820. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/mem.h"

START_TEST(layout_small)
{
	struct kl_guest_mem m;
	char *err = NULL;
	ck_assert_int_eq(kl_mem_init(&m, 64ULL << 20, NULL, &err), 0);
	ck_assert_uint_eq(m.nregions, 1);
	ck_assert_uint_eq(m.regions[0].gpa, 0);
	ck_assert_uint_eq(m.regions[0].size, 64ULL << 20);
	kl_mem_destroy(&m);
}
END_TEST

START_TEST(layout_above_4g)
{
	struct kl_guest_mem m;
	char *err = NULL;
	/* MAP_NORESERVE: 5 GiB of address space, nothing touched. */
	ck_assert_int_eq(kl_mem_init(&m, 5ULL << 30, NULL, &err), 0);
	ck_assert_uint_eq(m.nregions, 2);
	ck_assert_uint_eq(m.regions[0].size, KL_PCI_HOLE_START);
	ck_assert_uint_eq(m.regions[1].gpa, KL_4G);
	ck_assert_uint_eq(m.regions[1].size, (5ULL << 30) - KL_PCI_HOLE_START);
	/* The PCI hole is not RAM. */
	ck_assert_ptr_null(kl_gpa_to_hva(&m, KL_PCI_HOLE_START, 1));
	ck_assert_ptr_null(kl_gpa_to_hva(&m, 0xfee00000, 4));
	ck_assert_ptr_null(kl_gpa_to_hva(&m, KL_PCI_HOLE_START - 2, 4)); /* straddles */
	ck_assert_ptr_nonnull(kl_gpa_to_hva(&m, KL_4G, 4096));
	uint8_t *last = kl_gpa_to_hva(&m, KL_4G + m.regions[1].size - 1, 1);
	ck_assert_ptr_nonnull(last);
	*last = 0x5a;
	ck_assert_ptr_null(kl_gpa_to_hva(&m, KL_4G + m.regions[1].size, 1));
	struct kl_e820_entry e[KL_E820_MAX];
	int n = kl_mem_e820(&m, e, KL_E820_MAX);
	uint64_t ram = 0;
	for (int i = 0; i < n; i++)
		if (e[i].type == KL_E820_RAM)
			ram += e[i].size;
	/* Everything but the 0x9fc00-0x100000 legacy hole is usable RAM. */
	ck_assert_uint_eq(ram, (5ULL << 30) - (0x100000 - 0x9fc00));
	ck_assert_uint_eq(e[n - 1].addr, KL_4G);
	kl_mem_destroy(&m);
}
END_TEST

START_TEST(bad_sizes)
{
	struct kl_guest_mem m;
	char *err = NULL;
	ck_assert_int_eq(kl_mem_init(&m, 0, NULL, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "invalid RAM size"));
	g_free(err);
	err = NULL;
	ck_assert_int_eq(kl_mem_init(&m, 4097, NULL, &err), -1);
	g_free(err);
}
END_TEST

START_TEST(bounds)
{
	struct kl_guest_mem m;
	uint8_t *buf = g_malloc0(0x10000);
	kl_mem_init_empty(&m);
	ck_assert_int_eq(kl_mem_add_region(&m, 0x1000, 0x10000, buf), 0);
	/* overlapping and overflowing regions are refused */
	ck_assert_int_eq(kl_mem_add_region(&m, 0x8000, 0x1000, buf), -1);
	ck_assert_int_eq(kl_mem_add_region(&m, ~0ULL - 10, 100, buf), -1);
	ck_assert_ptr_eq(kl_gpa_to_hva(&m, 0x1000, 0x10000), buf);
	ck_assert_ptr_null(kl_gpa_to_hva(&m, 0x1000, 0x10001));
	ck_assert_ptr_null(kl_gpa_to_hva(&m, 0xfff, 2));
	ck_assert_ptr_null(kl_gpa_to_hva(&m, 0, 1));
	ck_assert_ptr_null(kl_gpa_to_hva(&m, ~0ULL, 2));          /* gpa+len wraps */
	ck_assert_ptr_null(kl_gpa_to_hva(&m, 0x2000, ~0ULL - 0x1000)); /* huge len */
	ck_assert_ptr_nonnull(kl_gpa_to_hva(&m, 0x10fff, 1));
	ck_assert_ptr_nonnull(kl_gpa_to_hva(&m, 0x10fff, 0));      /* len 0 = 1 */
	uint32_t v = 0xdeadbeef, r = 0;
	ck_assert_int_eq(kl_mem_write(&m, 0x1004, &v, 4), 0);
	ck_assert_int_eq(kl_mem_read(&m, 0x1004, &r, 4), 0);
	ck_assert_uint_eq(r, v);
	ck_assert_uint_eq(buf[4], 0xef);
	ck_assert_int_eq(kl_mem_write(&m, 0x10ffe, &v, 4), -1);
	ck_assert_int_eq(kl_mem_read(&m, 0x10ffe, &r, 4), -1);
	g_free(buf);
}
END_TEST

START_TEST(memfd_backing)
{
	struct kl_guest_mem m;
	char *err = NULL;
	struct kl_mem_opts o = { .memfd = true, .thp = true };
	ck_assert_int_eq(kl_mem_init(&m, 16ULL << 20, &o, &err), 0);
	ck_assert_int_ge(m.memfd, 0);
	uint8_t *p = kl_gpa_to_hva(&m, 0x1000, 1);
	*p = 7;
	kl_mem_destroy(&m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mem");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, layout_small);
	tcase_add_test(tc, layout_above_4g);
	tcase_add_test(tc, bad_sizes);
	tcase_add_test(tc, bounds);
	tcase_add_test(tc, memfd_backing);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
