/* Unit tests: the first pass of a live migration finds the never-touched
 * pages of guest RAM (kl_mig_ram_find_holes, src/migration/ram.c) and sends
 * them as zero markers without reading them (a read of a hole of shared
 * memory would allocate it); so does a stop-and-copy save (migrate file:,
 * snapshot-save), whose file block keeps a CRC that a load verifies. */
#include <check.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <sys/ioctl.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvmlite/vm.h"
#include "../../../src/migration/dirty_int.h"
#include "../../../src/migration/stream_int.h"

#define NPAGES 64u

static bool swap_configured(void)
{
	gchar *s = NULL;
	bool some = true;
	if (g_file_get_contents("/proc/meminfo", &s, NULL, NULL)) {
		const char *t = strstr(s, "\nSwapTotal:");
		some = !t || strtoull(t + 11, NULL, 10) != 0;
	}
	g_free(s);
	return some;
}

static bool resident(const uint8_t *p)
{
	unsigned char v = 0;
	ck_assert_int_eq(mincore((void *)p, 4096, &v), 0);
	return v & 1;
}

static void first_pass(bool memfd)
{
	struct kl_vm vm;
	memset(&vm, 0, sizeof(vm));
	struct kl_mem_opts o = { .memfd = memfd };
	char *err = NULL;
	ck_assert_msg(kl_mem_init(&vm.mem, NPAGES * 4096, &o, &err) == 0, "%s", err);
	ck_assert_uint_eq(vm.mem.nregions, 1);
	uint8_t *ram = vm.mem.regions[0].hva;
	ram[3 * 4096 + 5] = 0x11;
	ram[7 * 4096] = 0x22;
	volatile uint8_t r = ram[5 * 4096]; /* read: allocated, zero */
	(void)r;
	bool expect = memfd || !swap_configured();

	struct kl_ram_cursor c;
	memset(&c, 0, sizeof(c));
	kl_mig_ram_find_holes(&vm, &c);
	if (!expect) {
		ck_assert_ptr_null(c.holes[0]);
	} else {
		ck_assert_ptr_nonnull(c.holes[0]);
		for (unsigned p = 0; p < NPAGES; p++) {
			bool hole = (c.holes[0][p / 64] >> (p % 64)) & 1;
			ck_assert_msg(hole == (p != 3 && p != 5 && p != 7), "page %u: hole %d", p, hole);
		}
	}

	/* a whole pass: every page dirty */
	struct kl_dirty d;
	memset(&d, 0, sizeof(d));
	d.vm = &vm;
	d.n = 1;
	d.words[0] = NPAGES / 64;
	d.map[0] = g_new(uint64_t, NPAGES / 64);
	memset(d.map[0], 0xff, NPAGES / 64 * 8);
	int fd = memfd_create("mig", MFD_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	struct kl_mig_out out = { .fd = fd };
	struct kl_mig_stats st;
	memset(&st, 0, sizeof(st));
	ck_assert_int_eq(kl_mig_ram_send_dirty(&vm, &out, &d, &c, UINT64_MAX, &st), 1);
	ck_assert_uint_eq(st.normal_pages, 2);
	ck_assert_uint_eq(st.zero_pages, NPAGES - 2);
	for (unsigned w = 0; w < NPAGES / 64; w++)
		ck_assert_uint_eq(d.map[0][w], 0);
	ck_assert_ptr_null(c.holes[0]); /* the first pass only */
	if (expect)
		for (unsigned p = 8; p < NPAGES; p++)
			ck_assert_msg(!resident(ram + p * 4096), "page %u was read", p);

	/* a second pass reads the pages: a hole written meanwhile is data */
	ram[20 * 4096] = 0x33;
	d.map[0][0] = 1ull << 20;
	memset(&st, 0, sizeof(st));
	ck_assert_int_eq(kl_mig_ram_send_dirty(&vm, &out, &d, &c, UINT64_MAX, &st), 1);
	ck_assert_uint_eq(st.normal_pages, 1);
	ck_assert_uint_eq(st.zero_pages, 0);
	close(fd);
	g_free(d.map[0]);
	kl_mem_destroy(&vm.mem);
}

/* A device write (kl_mem_write: the VMM's DMA) into a never-touched page
 * before the first pass reaches it: the pass sends the page as a hole, and
 * the write must still be sent by a later pass.  (A mark ORed straight
 * into the send bitmap was cleared with the hole's bit, and the data lost:
 * probe-migrate-io-smp2's "word 0 holds 0".)  Needs /dev/kvm for the
 * dirty log: the real kl_dirty_start/kl_dirty_sync run. */
static void device_write_into_hole(bool memfd)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		fprintf(stderr, "device_write_into_hole: no /dev/kvm: not run\n");
		return;
	}
	struct kl_vm vm;
	memset(&vm, 0, sizeof(vm));
	vm.vm_fd = ioctl(kvm, KVM_CREATE_VM, 0);
	ck_assert_int_ge(vm.vm_fd, 0);
	struct kl_mem_opts o = { .memfd = memfd };
	char *err = NULL;
	ck_assert_msg(kl_mem_init(&vm.mem, NPAGES * 4096, &o, &err) == 0, "%s", err);
	struct kl_mem_region *r = &vm.mem.regions[0];
	struct kvm_userspace_memory_region ur = {
		.slot = 0, .guest_phys_addr = r->gpa, .memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};
	ck_assert_int_eq(ioctl(vm.vm_fd, KVM_SET_USER_MEMORY_REGION, &ur), 0);

	struct kl_dirty d;
	ck_assert_msg(kl_dirty_start(&vm, &d, &err) == 0, "%s", err);
	kl_dirty_set_all(&d);
	struct kl_ram_cursor c;
	memset(&c, 0, sizeof(c));
	kl_mig_ram_find_holes(&vm, &c);
	bool holes = c.holes[0] != NULL;
	/* the device writes page 9 after the holes were found */
	uint8_t data[16];
	memset(data, 0x5a, sizeof(data));
	ck_assert_int_eq(kl_mem_write(&vm.mem, r->gpa + 9 * 4096 + 100, data, sizeof(data)), 0);

	int fd = memfd_create("mig", MFD_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	struct kl_mig_out out = { .fd = fd };
	struct kl_mig_stats st;
	memset(&st, 0, sizeof(st));
	ck_assert_int_eq(kl_mig_ram_send_dirty(&vm, &out, &d, &c, UINT64_MAX, &st), 1);
	uint64_t first_normal = st.normal_pages;
	/* the next pass: the write is dirty again and sent as data */
	ck_assert_int_ge(kl_dirty_sync(&d, &err), 1);
	ck_assert_msg((d.map[0][0] >> 9) & 1, "page 9's device write was lost by the pass");
	memset(&st, 0, sizeof(st));
	ck_assert_int_eq(kl_mig_ram_send_dirty(&vm, &out, &d, &c, UINT64_MAX, &st), 1);
	ck_assert_uint_ge(st.normal_pages, 1);
	if (holes) /* pass 1 sent page 9 as a zero hole: pass 2 sends its data */
		ck_assert_uint_eq(first_normal, 0);
	close(fd);
	kl_dirty_stop(&d);
	kl_mem_destroy(&vm.mem);
	close(vm.vm_fd);
	close(kvm);
}

START_TEST(device_write_memfd) { device_write_into_hole(true); }
END_TEST
START_TEST(device_write_anon) { device_write_into_hole(false); }
END_TEST

static void stop_and_copy(bool memfd, bool file)
{
	struct kl_vm vm, vm2;
	memset(&vm, 0, sizeof(vm));
	memset(&vm2, 0, sizeof(vm2));
	struct kl_mem_opts o = { .memfd = memfd };
	char *err = NULL;
	ck_assert_msg(kl_mem_init(&vm.mem, NPAGES * 4096, &o, &err) == 0, "%s", err);
	ck_assert_msg(kl_mem_init(&vm2.mem, NPAGES * 4096, &o, &err) == 0, "%s", err);
	uint8_t *ram = vm.mem.regions[0].hva, *ram2 = vm2.mem.regions[0].hva;
	ram[3 * 4096 + 5] = 0x11;
	ram[7 * 4096] = 0x22;
	ram[NPAGES * 4096 - 1] = 0x44;
	bool expect = memfd || !swap_configured();
	int fd = memfd_create("mig", MFD_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	struct kl_mig_out out = { .fd = fd, .file = file };
	struct kl_mig_stats st;
	memset(&st, 0, sizeof(st));
	ck_assert_int_eq(kl_mig_ram_save(&vm, &out, &st), 0);
	ck_assert_uint_eq(st.normal_pages, 3);
	ck_assert_uint_eq(st.zero_pages, NPAGES - 3);
	if (expect)
		for (unsigned p = 8; p < NPAGES - 1; p++)
			ck_assert_msg(!resident(ram + p * 4096), "page %u was read", p);
	/* load it back (the copy path checks each RAM record's CRC) */
	memset(ram2 + 9 * 4096, 0x5a, 4096);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	struct kl_mig_in in = { .fd = fd, .file = file };
	while (in.pos < out.pos) {
		uint8_t t;
		ck_assert_int_eq(kl_mig_read(&in, &t, 1, &err), 0);
		int r = t == KL_REC_RAM ? kl_mig_ram_load(&vm2, &in, &err) :
			t == KL_REC_ZERO ? kl_mig_zero_load(&vm2, &in, &err) : -1;
		ck_assert_msg(r == 0, "record 0x%x: %s", t, err ? err : "?");
	}
	ck_assert_int_eq(memcmp(ram, ram2, NPAGES * 4096), 0);
	close(fd);
	kl_mem_destroy(&vm.mem);
	kl_mem_destroy(&vm2.mem);
}

START_TEST(save_file_memfd) { stop_and_copy(true, true); }
END_TEST
START_TEST(save_file_anon) { stop_and_copy(false, true); }
END_TEST
START_TEST(save_stream_anon) { stop_and_copy(false, false); }
END_TEST

START_TEST(holes_memfd) { first_pass(true); }
END_TEST
START_TEST(holes_anon) { first_pass(false); }
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("migration-holes");
	TCase *t = tcase_create("holes");
	tcase_add_test(t, holes_memfd);
	tcase_add_test(t, holes_anon);
	tcase_add_test(t, device_write_memfd);
	tcase_add_test(t, device_write_anon);
	tcase_add_test(t, save_file_memfd);
	tcase_add_test(t, save_file_anon);
	tcase_add_test(t, save_stream_anon);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return kl_check_run(suite());
}
