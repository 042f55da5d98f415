/* Unit tests: I/O bus registration and dispatch. */
#include <check.h>

#include "../kl_check.h"
#include <stdlib.h>

#include "kvmlite/bus.h"

struct dev {
	uint64_t last_off, last_val;
	unsigned last_size, writes;
};

static uint64_t d_read(void *o, uint64_t off, unsigned size)
{
	(void)o;
	return off * 0x10 + size;
}

static void d_write(void *o, uint64_t off, uint64_t val, unsigned size)
{
	struct dev *d = o;
	d->last_off = off;
	d->last_val = val;
	d->last_size = size;
	d->writes++;
}

static const struct kl_io_ops ops = { d_read, d_write };

START_TEST(dispatch)
{
	struct kl_bus b;
	struct dev a = {0}, c = {0};
	kl_bus_init(&b, "t");
	ck_assert_int_eq(kl_bus_register(&b, 0x3f8, 8, &ops, &a, "a"), 0);
	ck_assert_int_eq(kl_bus_register(&b, 0x100, 4, &ops, &c, "c"), 0);
	uint64_t v;
	ck_assert(kl_bus_read(&b, 0x3fd, 1, &v));
	ck_assert_uint_eq(v, 5 * 0x10 + 1);
	ck_assert(kl_bus_write(&b, 0x101, 2, 0xbeef));
	ck_assert_uint_eq(c.last_off, 1);
	ck_assert_uint_eq(c.last_val, 0xbeef);
	ck_assert_uint_eq(c.last_size, 2);
	ck_assert_uint_eq(a.writes, 0);
	/* unclaimed: all ones, write dropped */
	ck_assert(!kl_bus_read(&b, 0x400, 2, &v));
	ck_assert_uint_eq(v, 0xffff);
	ck_assert(!kl_bus_read(&b, 0x400, 8, &v));
	ck_assert_uint_eq(v, ~0ULL);
	ck_assert(!kl_bus_write(&b, 0x3f7, 1, 1));
	ck_assert(!kl_bus_write(&b, 0x400, 1, 1));
	kl_bus_destroy(&b);
}
END_TEST

START_TEST(overlaps_and_unregister)
{
	struct kl_bus b;
	struct dev a = {0};
	kl_bus_init(&b, "t");
	ck_assert_int_eq(kl_bus_register(&b, 0x1000, 0x100, &ops, &a, "a"), 0);
	ck_assert_int_eq(kl_bus_register(&b, 0x10ff, 1, &ops, &a, "x"), -1);
	ck_assert_int_eq(kl_bus_register(&b, 0xfff, 2, &ops, &a, "x"), -1);
	ck_assert_int_eq(kl_bus_register(&b, 0x0, 0, &ops, &a, "x"), -1);
	ck_assert_int_eq(kl_bus_register(&b, ~0ULL - 1, 4, &ops, &a, "x"), -1);
	ck_assert_int_eq(kl_bus_register(&b, 0x1100, 1, &ops, &a, "adjacent"), 0);
	ck_assert_int_eq(kl_bus_unregister(&b, 0x1000, NULL), -1);
	ck_assert_int_eq(kl_bus_unregister(&b, 0x1000, &a), 0);
	ck_assert_ptr_null(kl_bus_find(&b, 0x1050));
	ck_assert_ptr_nonnull(kl_bus_find(&b, 0x1100));
	/* many ranges keep sorted lookup right */
	for (unsigned i = 0; i < 100; i++)
		ck_assert_int_eq(kl_bus_register(&b, 0x20000 + (99 - i) * 0x10, 8, &ops, &a, "m"), 0);
	for (unsigned i = 0; i < 100; i++) {
		const struct kl_bus_range *r = kl_bus_find(&b, 0x20000 + i * 0x10 + 7);
		ck_assert_ptr_nonnull(r);
		ck_assert_uint_eq(r->base, 0x20000 + i * 0x10);
		ck_assert_ptr_null(kl_bus_find(&b, 0x20000 + i * 0x10 + 8));
	}
	kl_bus_destroy(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bus");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, dispatch);
	tcase_add_test(tc, overlaps_and_unregister);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
