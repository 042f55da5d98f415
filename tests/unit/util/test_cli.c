/* Unit tests: QEMU-compatible command line parsing, good and bad. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/cli.h"

static int parse(struct kl_cli *c, char **err, ...)
{
	const char *argv[64] = { "kvmlite" };
	int argc = 1;
	va_list ap;
	va_start(ap, err);
	const char *a;
	while ((a = va_arg(ap, const char *)) != NULL)
		argv[argc++] = a;
	va_end(ap);
	return kl_cli_parse(argc, (char **)argv, c, err);
}

START_TEST(full_qemu_line)
{
	struct kl_cli c;
	char *err = NULL;
	int r = parse(&c, &err, "-m", "512", "-smp", "2", "-kernel", "bzImage", "-initrd", "rd.img",
		      "-append", "console=ttyS0", "-drive", "file=disk.img,if=virtio,cache=none,aio=native",
		      "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0", "-qmp",
		      "unix:/tmp/q.sock,server=on,wait=off", "-nographic", "-enable-kvm", "-M", "microvm",
		      "-cpu", "host", "-name", "vm1", "-uuid", "12345678-1234-5678-9abc-def012345678",
		      "-S", "--nodefaults", NULL);
	ck_assert_msg(r == 0, "%s", err);
	ck_assert_uint_eq(c.ram_size, 512ULL << 20);
	ck_assert_uint_eq(c.smp, 2);
	ck_assert_str_eq(c.kernel, "bzImage");
	ck_assert_str_eq(c.initrd, "rd.img");
	ck_assert_str_eq(c.append, "console=ttyS0");
	ck_assert_uint_eq(c.drives->len, 1);
	ck_assert_uint_eq(c.netdevs->len, 1);
	ck_assert_uint_eq(c.devices->len, 1);
	ck_assert_uint_eq(c.qmps->len, 1);
	ck_assert(c.nographic && c.start_paused && c.nodefaults);
	ck_assert_str_eq(c.name, "vm1");
	ck_assert_str_eq(c.cpu, "host");
	kl_cli_free(&c);
}
END_TEST

START_TEST(mem_forms)
{
	struct kl_cli c;
	char *err = NULL;
	ck_assert_int_eq(parse(&c, &err, "-m", "size=5G", NULL), 0);
	ck_assert_uint_eq(c.ram_size, 5ULL << 30);
	kl_cli_free(&c);
	ck_assert_int_eq(parse(&c, &err, "-m", "64M", NULL), 0);
	ck_assert_uint_eq(c.ram_size, 64ULL << 20);
	kl_cli_free(&c);
	ck_assert_int_eq(parse(&c, &err, NULL), 0);
	ck_assert_uint_eq(c.ram_size, 128ULL << 20); /* QEMU's default */
	kl_cli_free(&c);
}
END_TEST

START_TEST(smp_topology)
{
	struct kl_cli c;
	char *err = NULL;
	ck_assert_int_eq(parse(&c, &err, "-smp", "4,sockets=2,cores=2", NULL), 0);
	ck_assert_uint_eq(c.smp, 4);
	ck_assert_uint_eq(c.sockets, 2);
	ck_assert_uint_eq(c.cores, 2);
	kl_cli_free(&c);
	ck_assert_int_eq(parse(&c, &err, "-smp", "sockets=1,cores=3,threads=2", NULL), 0);
	ck_assert_uint_eq(c.smp, 6);
	kl_cli_free(&c);
}
END_TEST

struct bad {
	const char *a, *b;
	const char *needle;
};

START_TEST(bad_lines)
{
	static const struct bad cases[] = {
		{ "-m", "0", "-m 0: RAM size must be at least 1 MiB" },
		{ "-m", "lots", "-m lots: invalid RAM size" },
		{ "-m", "2000000", "above 1 TiB" },
		{ "-smp", "0", "-smp 0: the number of CPUs must be at least 1" },
		{ "-smp", "two", "'cpus' must be a number" },
		{ "-smp", "4,sockets=1,cores=1,threads=1", "Invalid CPU topology: product of the hierarchy must match maxcpus: sockets (1) * dies (1) * cores (1) * threads (1) != maxcpus (4)" },
		{ "-smp", "2,maxcpus=1", "maxcpus must be equal to or greater than smp: sockets (1) * dies (1) * cores (1) * threads (1) == maxcpus (1) < smp_cpus (2)" },
		{ "-smp", "300", "at most 255" },
		{ "-bogus", NULL, "-bogus: invalid option" },
		{ "-hda", "x.img", "-hda: invalid option" },
		{ "-M", "virt", "unsupported machine type 'virt'" },
		{ "-M", "microvm,foo=1", "unknown parameter 'foo'" },
		{ "-accel", "tcg", "accelerator 'tcg' is not supported" },
		{ "-uuid", "nope", "invalid UUID" },
		{ "-display", "gtk", "only 'none'" },
		{ "disk.img", NULL, "unexpected argument" },
		{ "-kernel", NULL, "-kernel: requires an argument" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		struct kl_cli c;
		char *err = NULL;
		int r = cases[i].b ? parse(&c, &err, cases[i].a, cases[i].b, NULL)
				   : parse(&c, &err, cases[i].a, NULL);
		ck_assert_msg(r == -1, "case %zu (%s) accepted", i, cases[i].a);
		ck_assert_msg(err && strstr(err, cases[i].needle), "case %zu: error '%s' lacks '%s'", i,
			      err ? err : "(null)", cases[i].needle);
		ck_assert_msg(!strchr(err, '\n'), "case %zu: error is not one line", i);
		g_free(err);
		kl_cli_free(&c);
	}
}
END_TEST

START_TEST(uuid_parse)
{
	uint8_t u[16];
	ck_assert_int_eq(kl_parse_uuid("12345678-1234-5678-9abc-def012345678", u), 0);
	ck_assert_uint_eq(u[0], 0x12);
	ck_assert_uint_eq(u[15], 0x78);
	ck_assert_int_eq(kl_parse_uuid("12345678-1234-5678-9abc-def01234567", u), -1);
	ck_assert_int_eq(kl_parse_uuid("12345678x1234-5678-9abc-def012345678", u), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, full_qemu_line);
	tcase_add_test(tc, mem_forms);
	tcase_add_test(tc, smp_topology);
	tcase_add_test(tc, bad_lines);
	tcase_add_test(tc, uuid_parse);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
