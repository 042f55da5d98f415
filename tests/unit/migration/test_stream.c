/* Unit tests: the migration stream (src/migration/stream.c, ram.c) and the
 * vmstate reader/writer (src/migration/vmstate.c): round trips in the
 * socket and the file layout, truncation at every byte, bad lengths,
 * out-of-range GPAs, corrupted bytes, machine-shape refusals. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mig_fake.h"
#include "../../../src/migration/stream_int.h"

#define RAM (16u * 4096u)

static void fill(struct mig_vm *m)
{
	/* pages 1, 2 and 9 non-zero, the rest zero */
	for (unsigned i = 0; i < 4096; i++) {
		m->ram[4096 + i] = (uint8_t)(i * 7 + 1);
		m->ram[2 * 4096 + i] = (uint8_t)(i ^ 0x5a);
	}
	m->ram[9 * 4096 + 100] = 0xee;
	m->dev.a = 0xdeadbeef;
	m->dev.name = g_strdup("sixteen-fifty");
	m->dev.narr = 5;
	memcpy(m->dev.arr, "hello", 5);
}

/* Save m into a buffer (file layout or socket layout). */
static GByteArray *save(struct mig_vm *m, bool file, struct kl_mig_stats *st)
{
	int fd = memfd_create("mig", MFD_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	struct kl_mig_out out = { .fd = fd, .file = file };
	struct kl_mig_stats s0;
	memset(&s0, 0, sizeof(s0));
	char *err = NULL;
	ck_assert_msg(kl_mig_save(&m->vm, &out, st ? st : &s0, &err) == 0, "%s", err);
	ck_assert_ptr_null(out.err);
	off_t len = lseek(fd, 0, SEEK_END);
	ck_assert_int_eq((uint64_t)len, out.pos);
	GByteArray *b = g_byte_array_sized_new((guint)len);
	g_byte_array_set_size(b, (guint)len);
	ck_assert_int_eq(pread(fd, b->data, (size_t)len, 0), len);
	close(fd);
	return b;
}

static int load(struct mig_vm *m, const uint8_t *p, size_t n, char **err)
{
	struct kl_mig_in in = { .fd = -1, .buf = p, .len = n };
	return kl_mig_load(&m->vm, &in, err);
}

static void round_trip(bool file)
{
	struct mig_vm a, b;
	mig_vm_init(&a, RAM, 1);
	mig_vm_init(&b, RAM, 1);
	fill(&a);
	memset(b.ram + 5 * 4096, 0x77, 4096); /* a zero page of the source: must be cleared */
	struct kl_mig_stats st;
	memset(&st, 0, sizeof(st));
	GByteArray *s = save(&a, file, &st);
	ck_assert_uint_eq(st.normal_pages, 3);
	ck_assert_uint_eq(st.zero_pages, 13);
	ck_assert_uint_eq(st.total_ram, RAM);
	if (file) {
		/* RAM data page-aligned in the file: the restore can mmap it */
		ck_assert_uint_ge(s->len, RAM);
	} else {
		ck_assert_uint_lt(s->len, 4 * 4096); /* zero pages are markers */
	}
	char *err = NULL;
	ck_assert_msg(load(&b, s->data, s->len, &err) == 0, "%s", err);
	ck_assert_int_eq(memcmp(a.ram, b.ram, RAM), 0);
	ck_assert_uint_eq(b.dev.a, 0xdeadbeef);
	ck_assert_str_eq(b.dev.name, "sixteen-fifty");
	ck_assert_uint_eq(b.dev.narr, 5);
	ck_assert_int_eq(memcmp(b.dev.arr, "hello", 5), 0);
	ck_assert_int_eq(b.dev.post_loads, 1);
	g_byte_array_free(s, TRUE);
	mig_vm_free(&a);
	mig_vm_free(&b);
}

START_TEST(round_trip_socket) { round_trip(false); }
END_TEST
START_TEST(round_trip_file) { round_trip(true); }
END_TEST

START_TEST(file_layout_aligned)
{
	struct mig_vm a;
	mig_vm_init(&a, RAM, 1);
	fill(&a);
	GByteArray *s = save(&a, true, NULL);
	/* the RAM record: type, gpa, len, pad, then data at a page boundary */
	const uint8_t *p = s->data;
	size_t hdr = 16 + kl_mig_get_u32(p + 12) + 4;
	ck_assert_uint_eq(p[hdr], KL_REC_RAM);
	ck_assert_uint_eq(kl_mig_get_u64(p + hdr + 1), 0);
	ck_assert_uint_eq(kl_mig_get_u64(p + hdr + 9), RAM);
	size_t data = hdr + 21 + kl_mig_get_u32(p + hdr + 17);
	ck_assert_uint_eq(data % 4096, 0);
	ck_assert_int_eq(memcmp(p + data, a.ram, RAM), 0);
	g_byte_array_free(s, TRUE);
	mig_vm_free(&a);
}
END_TEST

static void truncate_all(bool file)
{
	struct mig_vm a;
	mig_vm_init(&a, RAM, 1);
	fill(&a);
	GByteArray *s = save(&a, file, NULL);
	for (size_t n = 0; n < s->len; n++) {
		struct mig_vm b;
		mig_vm_init(&b, RAM, 1);
		char *err = NULL;
		/* an exact-size copy: ASan sees any read past the end */
		uint8_t *cut = g_memdup2(s->data, n ? n : 1);
		ck_assert_msg(load(&b, cut, n, &err) == -1, "a stream cut at %zu loaded", n);
		ck_assert_ptr_nonnull(err);
		ck_assert_int_eq(b.dev.post_loads, 0);
		g_free(err);
		g_free(cut);
		mig_vm_free(&b);
	}
	g_byte_array_free(s, TRUE);
	mig_vm_free(&a);
}

START_TEST(truncated_socket) { truncate_all(false); }
END_TEST
START_TEST(truncated_file) { truncate_all(true); }
END_TEST

/* Load s with byte off XORed by x; returns the error (or NULL on success). */
static char *load_flipped(const GByteArray *s, size_t off, uint8_t x)
{
	struct mig_vm b;
	mig_vm_init(&b, RAM, 1);
	uint8_t *c = g_memdup2(s->data, s->len);
	c[off] ^= x;
	char *err = NULL;
	int r = load(&b, c, s->len, &err);
	g_free(c);
	mig_vm_free(&b);
	if (r == 0) {
		g_free(err);
		return NULL;
	}
	ck_assert_ptr_nonnull(err);
	return err;
}

START_TEST(every_byte_corrupted)
{
	/* flipping any byte must fail the load (CRCs cover header, RAM and
	 * sections; record fields are bounds-checked) -- except bytes the
	 * format ignores: the padding of RAM records (none in this layout) */
	struct mig_vm a;
	mig_vm_init(&a, RAM, 1);
	fill(&a);
	GByteArray *s = save(&a, false, NULL);
	for (size_t off = 0; off < s->len; off++) {
		char *err = load_flipped(s, off, 0x01);
		ck_assert_msg(err != NULL, "flipping byte %zu went unnoticed", off);
		g_free(err);
	}
	g_byte_array_free(s, TRUE);
	mig_vm_free(&a);
}
END_TEST

/* A stream built by hand: header of vm m, then the given records. */
static GByteArray *with_records(struct mig_vm *m, const void *rec, size_t n)
{
	struct mig_vm e;
	mig_vm_init(&e, m->ram_size, m->vm.ncpus);
	kl_vmstate_free_all(&e.vm); /* a header listing no section */
	GByteArray *s = save(&e, false, NULL);
	mig_vm_free(&e);
	/* drop RAM records and the end marker: keep the header only */
	size_t hdr = 16 + kl_mig_get_u32(s->data + 12) + 4;
	g_byte_array_set_size(s, (guint)hdr);
	g_byte_array_append(s, rec, (guint)n);
	return s;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

START_TEST(ram_outside)
{
	struct mig_vm b;
	mig_vm_init(&b, RAM, 1);
	kl_vmstate_free_all(&b.vm);
	static const uint64_t bad[][2] = {
		{ RAM, 4096 },                  /* just past the end */
		{ RAM - 4096, 8192 },           /* straddles the end */
		{ 0xfffffffffffff000ull, 8192 },/* wraps */
		{ 100, 4096 },                  /* not page-aligned */
		{ 0, 100 },                     /* partial page */
		{ 0, 0 },                       /* empty */
	};
	for (int zero = 0; zero < 2; zero++)
		for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
			uint8_t rec[1 + 16 + 4] = { zero ? KL_REC_ZERO : KL_REC_RAM };
			put64(rec + 1, bad[i][0]);
			put64(rec + 9, bad[i][1]);
			GByteArray *s = with_records(&b, rec, zero ? 17 : sizeof(rec));
			/* RAM records: enough bytes behind to cover the claimed length */
			if (!zero)
				g_byte_array_set_size(s, s->len + 16384);
			char *err = NULL;
			ck_assert_int_eq(load(&b, s->data, s->len, &err), -1);
			ck_assert_msg(strstr(err, "outside guest RAM") || strstr(err, "page-aligned"),
				      "%s", err);
			g_free(err);
			g_byte_array_free(s, TRUE);
		}
	mig_vm_free(&b);
}
END_TEST

START_TEST(bad_lengths)
{
	struct mig_vm b;
	mig_vm_init(&b, RAM, 1);
	char *err = NULL;
	/* header length past the limit */
	uint8_t h[16];
	memcpy(h, KL_MIG_MAGIC, 8);
	h[8] = 1, h[9] = h[10] = h[11] = 0;
	h[12] = h[13] = h[14] = h[15] = 0xff;
	ck_assert_int_eq(load(&b, h, sizeof(h), &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "too long"));
	g_free(err);
	err = NULL;
	/* bad magic / version */
	h[0] = 'X';
	ck_assert_int_eq(load(&b, h, sizeof(h), &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "magic"));
	g_free(err);
	err = NULL;
	memcpy(h, KL_MIG_MAGIC, 8);
	h[8] = 9;
	ck_assert_int_eq(load(&b, h, sizeof(h), &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "version 9"));
	g_free(err);
	err = NULL;
	/* a section record with a huge length (after a valid header) */
	struct mig_vm a;
	mig_vm_init(&a, RAM, 1);
	fill(&a);
	GByteArray *s = save(&a, false, NULL);
	size_t hdr = 16 + kl_mig_get_u32(s->data + 12) + 4;
	size_t off = hdr;
	/* skip RAM records (socket layout: RAM/ZERO) to the first section */
	while (s->data[off] != KL_REC_SECTION) {
		if (s->data[off] == KL_REC_ZERO)
			off += 17;
		else
			off += 21 + kl_mig_get_u32(s->data + off + 17) + kl_mig_get_u64(s->data + off + 9) + 4;
	}
	uint32_t nlen = kl_mig_get_u32(s->data + off + 1);
	size_t lenoff = off + 1 + 4 + nlen + 4;
	uint8_t *c = g_memdup2(s->data, s->len);
	c[lenoff] = c[lenoff + 1] = c[lenoff + 2] = c[lenoff + 3] = 0xff;
	ck_assert_int_eq(load(&b, c, s->len, &err), -1);
	ck_assert_msg(strstr(err, "too long"), "%s", err);
	g_free(err);
	err = NULL;
	/* a section whose payload is one byte short of what load reads: the
	 * length says 1 less, CRC recomputed -> the load runs short */
	g_free(c);
	g_byte_array_free(s, TRUE);
	mig_vm_free(&a);
	mig_vm_free(&b);
}
END_TEST

START_TEST(shape_refusals)
{
	struct mig_vm a;
	mig_vm_init(&a, RAM, 1);
	fill(&a);
	GByteArray *s = save(&a, false, NULL);
	char *err = NULL;
	struct mig_vm b;
	mig_vm_init(&b, 2 * RAM, 1);
	ck_assert_int_eq(load(&b, s->data, s->len, &err), -1);
	ck_assert_msg(strstr(err, "RAM size differs"), "%s", err);
	g_free(err);
	err = NULL;
	mig_vm_free(&b);
	mig_vm_init(&b, RAM, 2);
	ck_assert_int_eq(load(&b, s->data, s->len, &err), -1);
	ck_assert_msg(strstr(err, "vCPU count differs"), "%s", err);
	g_free(err);
	err = NULL;
	mig_vm_free(&b);
	/* a destination without the "devb" section */
	mig_vm_init(&b, RAM, 1);
	kl_vmstate_unregister(&b.vm, &dev_b_ops, &b.dev);
	ck_assert_int_eq(load(&b, s->data, s->len, &err), -1);
	ck_assert_msg(strstr(err, "'devb/0' that this destination lacks"), "%s", err);
	g_free(err);
	err = NULL;
	mig_vm_free(&b);
	/* a destination with one more section */
	mig_vm_init(&b, RAM, 1);
	struct mig_dev extra = { 0 };
	kl_vmstate_register(&b.vm, "x", &dev_a_ops, &extra);
	ck_assert_int_eq(load(&b, s->data, s->len, &err), -1);
	ck_assert_msg(strstr(err, "'dev/x' that the source lacks"), "%s", err);
	g_free(err);
	err = NULL;
	mig_vm_free(&b);
	/* another CPU model */
	kl_mig_set_cpu_model("Skylake-Server");
	mig_vm_init(&b, RAM, 1);
	ck_assert_int_eq(load(&b, s->data, s->len, &err), -1);
	ck_assert_msg(strstr(err, "CPU model differs"), "%s", err);
	g_free(err);
	mig_vm_free(&b);
	kl_mig_set_cpu_model(NULL);
	g_byte_array_free(s, TRUE);
	mig_vm_free(&a);
}
END_TEST

/* ---- the vmstate reader / writer ---- */
START_TEST(vms_round_trip)
{
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	kl_vms_put_u8(&o, 0x12);
	kl_vms_put_u16(&o, 0x3456);
	kl_vms_put_u32(&o, 0x789abcde);
	kl_vms_put_u64(&o, 0x0123456789abcdefull);
	kl_vms_put_str(&o, "abc");
	kl_vms_put_str(&o, NULL);
	ck_assert_uint_eq(o.buf->len, 1 + 2 + 4 + 8 + 7 + 4);
	ck_assert_uint_eq(o.buf->data[1], 0x56); /* little-endian */
	for (size_t cut = 0; cut <= o.buf->len; cut++) {
		struct kl_vms_in in;
		uint8_t *c = g_memdup2(o.buf->data, cut ? cut : 1);
		kl_vms_in_init(&in, c, cut);
		uint8_t a = kl_vms_get_u8(&in);
		uint16_t b = kl_vms_get_u16(&in);
		uint32_t d = kl_vms_get_u32(&in);
		uint64_t e = kl_vms_get_u64(&in);
		char *s1 = kl_vms_get_str(&in, 16);
		char *s2 = kl_vms_get_str(&in, 16);
		if (cut == o.buf->len) {
			ck_assert(!kl_vms_failed(&in));
			ck_assert_uint_eq(a, 0x12);
			ck_assert_uint_eq(b, 0x3456);
			ck_assert_uint_eq(d, 0x789abcde);
			ck_assert_uint_eq(e, 0x0123456789abcdefull);
			ck_assert_str_eq(s1, "abc");
			ck_assert_ptr_null(s2);
			ck_assert_uint_eq(kl_vms_remaining(&in), 0);
		} else {
			ck_assert_msg(kl_vms_failed(&in), "cut at %zu not noticed", cut);
			ck_assert_ptr_null(s2);
		}
		g_free(s1);
		g_free(s2);
		g_free(c);
		kl_vms_in_free(&in);
	}
	kl_vms_out_free(&o);
}
END_TEST

START_TEST(vms_bad_values)
{
	uint8_t b[12] = { 5, 0, 0, 0, 'a', 'b', 0, 'd', 'e', 0, 0, 0 };
	struct kl_vms_in in;
	kl_vms_in_init(&in, b, sizeof(b));
	char *s = kl_vms_get_str(&in, 16);
	ck_assert_ptr_null(s);
	ck_assert(kl_vms_failed(&in));
	ck_assert_ptr_nonnull(strstr(in.err, "NUL"));
	kl_vms_in_free(&in);
	kl_vms_in_init(&in, b, sizeof(b));
	s = kl_vms_get_str(&in, 4); /* longer than max */
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(strstr(in.err, "too long"));
	kl_vms_in_free(&in);
	kl_vms_in_init(&in, b, sizeof(b));
	ck_assert_uint_eq(kl_vms_get_u32_max(&in, 4, "count"), 0);
	ck_assert_ptr_nonnull(strstr(in.err, "count 5 is out of range (max 4)"));
	/* sticky: later gets read zero */
	ck_assert_uint_eq(kl_vms_get_u8(&in), 0);
	ck_assert_uint_eq(kl_vms_remaining(&in), 0);
	kl_vms_in_free(&in);
}
END_TEST

/* x-ignore-shared: RAM that is a shared file is left out; the SHARED record
 * names the file and a destination mapping another file (or none) refuses. */
static void share_file(struct mig_vm *m, int fd)
{
	m->vm.mem.file_shared = fd >= 0;
	m->vm.mem.memfd = fd;
	m->vm.mem.map_size = m->ram_size;
}

START_TEST(shared_ram)
{
	struct mig_vm a, b;
	mig_vm_init(&a, RAM, 1);
	mig_vm_init(&b, RAM, 1);
	fill(&a);
	int fd1 = memfd_create("ram1", MFD_CLOEXEC), fd2 = memfd_create("ram2", MFD_CLOEXEC);
	ck_assert(fd1 >= 0 && fd2 >= 0);
	int out_fd = memfd_create("mig", MFD_CLOEXEC);
	char *err = NULL;
	struct kl_mig_stats st;
	memset(&st, 0, sizeof(st));
	/* not a shared file: the save refuses */
	struct kl_mig_out o0 = { .fd = out_fd, .skip_shared_ram = true };
	ck_assert_int_eq(kl_mig_save(&a.vm, &o0, &st, &err), -1);
	ck_assert_msg(strstr(err, "not a shared file"), "%s", err);
	g_free(err);
	err = NULL;
	g_free(o0.err);
	/* a shared file: no page in the stream */
	share_file(&a, fd1);
	ck_assert_int_eq(ftruncate(out_fd, 0), 0);
	ck_assert_int_eq(lseek(out_fd, 0, SEEK_SET), 0);
	struct kl_mig_out o = { .fd = out_fd, .skip_shared_ram = true };
	memset(&st, 0, sizeof(st));
	ck_assert_msg(kl_mig_save(&a.vm, &o, &st, &err) == 0, "%s", err);
	ck_assert_uint_eq(st.normal_pages, 0);
	ck_assert_uint_eq(st.zero_pages, 0);
	ck_assert_uint_lt(o.pos, 4096);
	GByteArray *s = g_byte_array_sized_new((guint)o.pos);
	g_byte_array_set_size(s, (guint)o.pos);
	ck_assert_int_eq(pread(out_fd, s->data, o.pos, 0), (ssize_t)o.pos);
	/* the same file: loads, devices only (RAM untouched) */
	share_file(&b, fd1);
	b.ram[9 * 4096] = 0x77;
	ck_assert_msg(load(&b, s->data, s->len, &err) == 0, "%s", err);
	ck_assert_uint_eq(b.dev.a, 0xdeadbeef);
	ck_assert_uint_eq(b.ram[9 * 4096], 0x77);
	/* another file, or RAM that is no shared file: refused, naming it */
	share_file(&b, fd2);
	ck_assert_int_eq(load(&b, s->data, s->len, &err), -1);
	ck_assert_msg(strstr(err, "x-ignore-shared") && strstr(err, "is not this destination"),
		      "%s", err);
	g_free(err);
	err = NULL;
	share_file(&b, -1);
	ck_assert_int_eq(load(&b, s->data, s->len, &err), -1);
	ck_assert_msg(strstr(err, "must map the same file"), "%s", err);
	g_free(err);
	/* truncated inside the record */
	share_file(&b, fd1);
	for (size_t n = s->len - 30; n < s->len; n++) {
		err = NULL;
		ck_assert_int_eq(load(&b, s->data, n, &err), -1);
		g_free(err);
	}
	g_byte_array_free(s, TRUE);
	close(out_fd);
	close(fd1);
	close(fd2);
	mig_vm_free(&a);
	mig_vm_free(&b);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("migration");
	TCase *t = tcase_create("stream");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, round_trip_socket);
	tcase_add_test(t, round_trip_file);
	tcase_add_test(t, file_layout_aligned);
	tcase_add_test(t, truncated_socket);
	tcase_add_test(t, truncated_file);
	tcase_add_test(t, every_byte_corrupted);
	tcase_add_test(t, ram_outside);
	tcase_add_test(t, bad_lengths);
	tcase_add_test(t, shape_refusals);
	tcase_add_test(t, vms_round_trip);
	tcase_add_test(t, vms_bad_values);
	tcase_add_test(t, shared_ram);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return kl_check_run(suite());
}
