/* Unit tests: QEMU-style option strings and sizes. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/opts.h"

START_TEST(implied_and_keys)
{
	char *err = NULL;
	struct kl_opts *o = kl_opts_parse("virtio-blk-pci,drive=d0,num-queues=2", "driver", &err);
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(kl_opts_get(o, "driver"), "virtio-blk-pci");
	ck_assert_str_eq(kl_opts_get(o, "drive"), "d0");
	uint64_t n;
	ck_assert_int_eq(kl_opts_get_u64(o, "num-queues", 1, &n, &err), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(kl_opts_check_unused(o, "x", &err), 0);
	kl_opts_free(o);
}
END_TEST

START_TEST(unused_key_named)
{
	char *err = NULL;
	struct kl_opts *o = kl_opts_parse("e1000,netdev=n0,bogus=1", "driver", &err);
	ck_assert_ptr_nonnull(o);
	kl_opts_get(o, "driver");
	kl_opts_get(o, "netdev");
	ck_assert_int_eq(kl_opts_check_unused(o, "-device e1000", &err), -1);
	ck_assert_str_eq(err, "-device e1000: unknown parameter 'bogus'");
	g_free(err);
	ck_assert_int_eq(kl_opts_check_unused(o, NULL, &err), -1);
	ck_assert_str_eq(err, "unknown parameter 'bogus'");
	g_free(err);
	kl_opts_free(o);
}
END_TEST

START_TEST(comma_escape_and_flags)
{
	char *err = NULL;
	struct kl_opts *o = kl_opts_parse("file=a,,b.img,server,nowait", NULL, &err);
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(kl_opts_get(o, "file"), "a,b.img");
	bool b;
	ck_assert_int_eq(kl_opts_get_bool(o, "server", false, &b, &err), 0);
	ck_assert(b);
	ck_assert_int_eq(kl_opts_get_bool(o, "wait", true, &b, &err), 0);
	ck_assert(!b);
	kl_opts_free(o);
}
END_TEST

START_TEST(syntax_errors)
{
	char *err = NULL;
	ck_assert_ptr_null(kl_opts_parse("a=1,a=2", NULL, &err));
	ck_assert_ptr_nonnull(strstr(err, "given twice"));
	g_free(err);
	err = NULL;
	ck_assert_ptr_null(kl_opts_parse("=1", NULL, &err));
	g_free(err);
	err = NULL;
	struct kl_opts *o = kl_opts_parse("x=maybe,n=-1,m=12abc", NULL, &err);
	ck_assert_ptr_nonnull(o);
	bool b;
	uint64_t n;
	ck_assert_int_eq(kl_opts_get_bool(o, "x", false, &b, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "'maybe'"));
	g_free(err);
	ck_assert_int_eq(kl_opts_get_u64(o, "n", 0, &n, &err), -1);
	g_free(err);
	ck_assert_int_eq(kl_opts_get_u64(o, "m", 0, &n, &err), -1);
	g_free(err);
	kl_opts_free(o);
}
END_TEST

/* A key given twice is an error however it is spelled (flags included). */
START_TEST(duplicates_any_spelling)
{
	static const char *const dup[] = { "server,server", "x=1,x", "x,x=1", "wait=on,nowait",
					   "nowait,wait", "nowait,nowait", "a=1,b=2,a=3" };
	for (unsigned i = 0; i < sizeof(dup) / sizeof(dup[0]); i++) {
		char *err = NULL;
		struct kl_opts *o = kl_opts_parse(dup[i], NULL, &err);
		ck_assert_msg(o == NULL, "'%s' parsed", dup[i]);
		ck_assert_ptr_nonnull(strstr(err, "given twice"));
		g_free(err);
	}
	char *err = NULL;
	ck_assert_ptr_null(kl_opts_parse("e1000,driver", "driver", &err));
	ck_assert_str_eq(err, "parameter 'driver' given twice in 'e1000,driver'");
	g_free(err);
	/* different keys that look alike are fine */
	struct kl_opts *o = kl_opts_parse("no,nox,wait", NULL, &err);
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(kl_opts_get(o, "no"), "on");
	ck_assert_str_eq(kl_opts_get(o, "x"), "off");
	ck_assert_str_eq(kl_opts_get(o, "wait"), "on");
	kl_opts_free(o);
}
END_TEST

/* QEMU 7.2's keyval (-blockdev): the last repeat counts, no flags. */
START_TEST(keyval_syntax)
{
	char *err = NULL;
	struct kl_opts *o = kl_keyval_parse("qcow2,node-name=a,file.filename=x,,y,node-name=b,"
					    "file.filename=z,", "driver", &err);
	ck_assert_ptr_nonnull(o);
	ck_assert_uint_eq(o->n, 3);
	ck_assert_str_eq(kl_opts_get(o, "driver"), "qcow2");
	ck_assert_str_eq(kl_opts_get(o, "node-name"), "b");
	ck_assert_str_eq(kl_opts_get(o, "file.filename"), "z");
	kl_opts_free(o);
	/* ",," escapes a comma in a value, but the implied value ends at the
	 * first ',' (QEMU: "raw,,x=1" is "Invalid parameter ''") */
	o = kl_keyval_parse("driver=null-co,,node-name=a", "driver", &err);
	ck_assert_ptr_nonnull(o);
	ck_assert_uint_eq(o->n, 1);
	ck_assert_str_eq(kl_opts_get(o, "driver"), "null-co,node-name=a");
	kl_opts_free(o);
	o = kl_keyval_parse("", "driver", &err);
	ck_assert_ptr_nonnull(o);
	ck_assert_uint_eq(o->n, 0);
	kl_opts_free(o);
	static const char *const bad[][2] = {
		{ "driver=raw,read-only", "Expected '=' after parameter 'read-only'" },
		{ "driver=raw,read-only=on,read-only", "Expected '=' after parameter 'read-only'" },
		{ "raw,null-co", "Expected '=' after parameter 'null-co'" },
		{ "raw,,x=1", "Invalid parameter ''" },
		{ "raw,,", "Invalid parameter ''" },
		{ "driver=raw,x y=1", "Invalid parameter 'x y'" },
		{ "driver=raw,=1", "Invalid parameter ''" },
		{ "a..b=1", "Invalid parameter 'a..b'" },
		{ "a.=1", "Invalid parameter 'a.'" },
		{ "0=1", "Invalid parameter '0'" },
		{ "size=1,size.x=2", "Parameters 'size.*' used inconsistently" },
		{ "file.a.b=1,file.a=2", "Parameters 'file.a.*' used inconsistently" },
		{ "file.a=2,file.a.b=1", "Parameters 'file.a.*' used inconsistently" },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		ck_assert_msg(kl_keyval_parse(bad[i][0], "driver", &err) == NULL, "'%s' parsed",
			      bad[i][0]);
		ck_assert_str_eq(err, bad[i][1]);
		g_free(err);
	}
	/* fragments: digits after the first, a downstream __RFQDN_ prefix */
	o = kl_keyval_parse("a.0=x,__com.example_b=y,aa=1,a1.b-c_d=2", NULL, &err);
	ck_assert_ptr_nonnull(o);
	ck_assert_uint_eq(o->n, 4);
	kl_opts_free(o);
	char key[200];
	memset(key, 'k', 128);
	strcpy(key + 128, "=1");
	ck_assert_ptr_null(kl_keyval_parse(key, NULL, &err));
	ck_assert_ptr_nonnull(strstr(err, "is too long"));
	g_free(err);
}
END_TEST

START_TEST(sizes)
{
	uint64_t v;
	ck_assert_int_eq(kl_parse_size("512", 1ULL << 20, &v), 0);
	ck_assert_uint_eq(v, 512ULL << 20);
	ck_assert_int_eq(kl_parse_size("5G", 1ULL << 20, &v), 0);
	ck_assert_uint_eq(v, 5ULL << 30);
	ck_assert_int_eq(kl_parse_size("1.5G", 1, &v), 0);
	ck_assert_uint_eq(v, 3ULL << 29);
	ck_assert_int_eq(kl_parse_size("4k", 1, &v), 0);
	ck_assert_uint_eq(v, 4096);
	ck_assert_int_eq(kl_parse_size("-1", 1, &v), -1);
	ck_assert_int_eq(kl_parse_size("", 1, &v), -1);
	ck_assert_int_eq(kl_parse_size("12Q", 1, &v), -1);
	ck_assert_int_eq(kl_parse_size("99999999999T", 1, &v), -1);
	ck_assert_int_eq(kl_parse_size("0.3", 1, &v), -1); /* fractional byte */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("opts");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, implied_and_keys);
	tcase_add_test(tc, unused_key_named);
	tcase_add_test(tc, comma_escape_and_flags);
	tcase_add_test(tc, syntax_errors);
	tcase_add_test(tc, duplicates_any_spelling);
	tcase_add_test(tc, keyval_syntax);
	tcase_add_test(tc, sizes);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
