/* Split virtqueue core against fake guest memory and hand-built rings. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kvmlite/mem.h"
#include "kvmlite/virtio.h"

#define RAM_SIZE (1u << 20)
#define QSZ 16
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define BUF 0x10000

static struct kl_guest_mem mem;
static uint8_t *ram;
static struct kl_virtq vq;

static struct kl_vring_desc *desc(unsigned i) { return (struct kl_vring_desc *)(ram + DESC) + i; }
static uint16_t *avail16(unsigned i) { return (uint16_t *)(ram + AVAIL) + i; }
static uint16_t *used16(unsigned i) { return (uint16_t *)(ram + USED) + i; }
static uint32_t *used_ring(unsigned i) { return (uint32_t *)(ram + USED + 4) + i; }

static void set_desc(struct kl_vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	d->addr = addr;
	d->len = len;
	d->flags = flags;
	d->next = next;
}

/* make head available (avail idx++) */
static void offer(uint16_t head)
{
	uint16_t idx = *avail16(1);
	*avail16(2 + (idx % QSZ)) = head;
	*avail16(1) = idx + 1;
}

static void setup_q(bool event_idx, bool indirect)
{
	ram = calloc(1, RAM_SIZE);
	kl_mem_init_empty(&mem);
	ck_assert_int_eq(kl_mem_add_region(&mem, 0, RAM_SIZE, ram), 0);
	kl_virtq_init(&vq, &mem, 0, QSZ);
	vq.desc_gpa = DESC;
	vq.avail_gpa = AVAIL;
	vq.used_gpa = USED;
	vq.event_idx = event_idx;
	vq.indirect = indirect;
	ck_assert_int_eq(kl_virtq_enable(&vq), 0);
}

static void teardown_q(void)
{
	free(ram);
	ram = NULL;
}

static int pop_err(void)
{
	struct kl_vq_elem *e = NULL;
	int r = kl_virtq_pop(&vq, &e);
	ck_assert_ptr_null(e);
	return r;
}

START_TEST(normal_chain)
{
	setup_q(false, false);
	memcpy(ram + BUF, "hello", 5);
	memcpy(ram + BUF + 0x100, " world", 6);
	set_desc(desc(3), BUF, 5, KL_VRING_DESC_F_NEXT, 7);
	set_desc(desc(7), BUF + 0x100, 6, KL_VRING_DESC_F_NEXT, 1);
	set_desc(desc(1), BUF + 0x200, 64, KL_VRING_DESC_F_WRITE, 0);
	offer(3);
	struct kl_vq_elem *e;
	ck_assert_int_eq(kl_virtq_pop(&vq, &e), 1);
	ck_assert_uint_eq(e->head, 3);
	ck_assert_uint_eq(e->out_num, 2);
	ck_assert_uint_eq(e->in_num, 1);
	ck_assert_uint_eq(e->out_len, 11);
	ck_assert_uint_eq(e->in_len, 64);
	char buf[16] = { 0 };
	ck_assert_uint_eq(kl_iov_to_buf(e->iov, e->out_num, 0, buf, sizeof(buf)), 11);
	ck_assert_str_eq(buf, "hello world");
	ck_assert_ptr_eq(e->iov[2].iov_base, ram + BUF + 0x200);
	ck_assert_uint_eq(kl_iov_from_buf(e->iov + e->out_num, e->in_num, 2, "xy", 2), 2);
	ck_assert_int_eq(memcmp(ram + BUF + 0x202, "xy", 2), 0);
	/* queue empty now */
	struct kl_vq_elem *e2;
	ck_assert_int_eq(kl_virtq_pop(&vq, &e2), 0);
	ck_assert(kl_virtq_push(&vq, e, 42));
	ck_assert_uint_eq(*used16(1), 1);
	ck_assert_uint_eq(*used_ring(0), 3);
	ck_assert_uint_eq(*used_ring(1), 42);
	ck_assert(kl_virtq_should_notify(&vq));
	*avail16(0) = KL_VRING_AVAIL_F_NO_INTERRUPT;
	ck_assert(!kl_virtq_should_notify(&vq));
	g_free(e);
	teardown_q();
}
END_TEST

START_TEST(zero_length_desc_skipped)
{
	setup_q(false, false);
	set_desc(desc(0), BUF, 0, KL_VRING_DESC_F_NEXT, 1);
	set_desc(desc(1), BUF, 8, KL_VRING_DESC_F_WRITE, 0);
	offer(0);
	struct kl_vq_elem *e;
	ck_assert_int_eq(kl_virtq_pop(&vq, &e), 1);
	ck_assert_uint_eq(e->out_num, 0);
	ck_assert_uint_eq(e->in_num, 1);
	g_free(e);
	teardown_q();
}
END_TEST

START_TEST(indirect_chain)
{
	setup_q(false, true);
	struct kl_vring_desc *t = (struct kl_vring_desc *)(ram + 0x4000);
	set_desc(&t[0], BUF, 16, KL_VRING_DESC_F_NEXT, 2);
	set_desc(&t[2], BUF + 0x100, 512, KL_VRING_DESC_F_NEXT | KL_VRING_DESC_F_WRITE, 1);
	set_desc(&t[1], BUF + 0x400, 1, KL_VRING_DESC_F_WRITE, 0);
	set_desc(desc(5), 0x4000, 3 * 16, KL_VRING_DESC_F_INDIRECT, 0);
	offer(5);
	struct kl_vq_elem *e;
	ck_assert_int_eq(kl_virtq_pop(&vq, &e), 1);
	ck_assert_uint_eq(e->head, 5);
	ck_assert_uint_eq(e->out_num, 1);
	ck_assert_uint_eq(e->in_num, 2);
	ck_assert_uint_eq(e->in_len, 513);
	ck_assert_ptr_eq(e->iov[2].iov_base, ram + BUF + 0x400);
	ck_assert(kl_virtq_push(&vq, e, 513));
	ck_assert_uint_eq(*used_ring(0), 5);
	g_free(e);
	teardown_q();
}
END_TEST

START_TEST(event_idx_used_event)
{
	setup_q(true, false);
	for (unsigned i = 0; i < 4; i++) {
		set_desc(desc(i), BUF + i * 0x100, 16, KL_VRING_DESC_F_WRITE, 0);
		offer(i);
	}
	struct kl_vq_elem *e[4];
	for (unsigned i = 0; i < 4; i++)
		ck_assert_int_eq(kl_virtq_pop(&vq, &e[i]), 1);
	/* avail_event (after used ring) tracks our consumption */
	ck_assert_uint_eq(*used16(2 + 4 * QSZ), 4);
	uint16_t *used_event = avail16(2 + QSZ);
	*used_event = 0;
	/* first push: no previous signal, always notify */
	ck_assert(kl_virtq_push(&vq, e[0], 1));
	ck_assert(kl_virtq_should_notify(&vq));
	/* used_event 0 already passed: suppressed */
	ck_assert(kl_virtq_push(&vq, e[1], 1));
	ck_assert(!kl_virtq_should_notify(&vq));
	/* driver asks for an interrupt after entry 2 (used idx goes 2 -> 3) */
	*used_event = 2;
	ck_assert(kl_virtq_push(&vq, e[2], 1));
	ck_assert(kl_virtq_should_notify(&vq));
	/* used_event far in the future: suppressed */
	*used_event = 100;
	ck_assert(kl_virtq_push(&vq, e[3], 1));
	ck_assert(!kl_virtq_should_notify(&vq));
	for (unsigned i = 0; i < 4; i++)
		g_free(e[i]);
	teardown_q();
}
END_TEST

START_TEST(event_idx_avail_event)
{
	setup_q(true, false);
	/* disabling notifications with EVENT_IDX leaves avail_event alone;
	 * enabling publishes last_avail and re-checks */
	ck_assert(!kl_virtq_set_notification(&vq, false));
	set_desc(desc(0), BUF, 16, 0, 0);
	offer(0);
	ck_assert(kl_virtq_set_notification(&vq, true));
	ck_assert_uint_eq(*used16(2 + 4 * QSZ), 0);
	struct kl_vq_elem *e;
	ck_assert_int_eq(kl_virtq_pop(&vq, &e), 1);
	ck_assert_uint_eq(*used16(2 + 4 * QSZ), 1);
	ck_assert(!kl_virtq_set_notification(&vq, true));
	g_free(e);
	teardown_q();
}
END_TEST

START_TEST(no_notify_flag)
{
	setup_q(false, false);
	kl_virtq_set_notification(&vq, false);
	ck_assert_uint_eq(*used16(0) & KL_VRING_USED_F_NO_NOTIFY, KL_VRING_USED_F_NO_NOTIFY);
	ck_assert(!kl_virtq_set_notification(&vq, true));
	ck_assert_uint_eq(*used16(0) & KL_VRING_USED_F_NO_NOTIFY, 0);
	teardown_q();
}
END_TEST

/* ---- hostile rings ---- */

START_TEST(bad_loop)
{
	setup_q(false, false);
	set_desc(desc(0), BUF, 16, KL_VRING_DESC_F_NEXT, 1);
	set_desc(desc(1), BUF, 16, KL_VRING_DESC_F_NEXT, 0);
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_LOOP);
	teardown_q();
}
END_TEST

START_TEST(bad_self_loop)
{
	setup_q(false, false);
	set_desc(desc(4), BUF, 16, KL_VRING_DESC_F_NEXT, 4);
	offer(4);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_LOOP);
	teardown_q();
}
END_TEST

START_TEST(bad_next)
{
	setup_q(false, false);
	set_desc(desc(0), BUF, 16, KL_VRING_DESC_F_NEXT, QSZ);
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_NEXT);
	teardown_q();
}
END_TEST

START_TEST(bad_head)
{
	setup_q(false, false);
	offer(QSZ + 3);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_HEAD);
	teardown_q();
}
END_TEST

START_TEST(bad_avail_jump)
{
	setup_q(false, false);
	*avail16(1) = QSZ + 1;
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_AVAIL_IDX);
	/* exactly size ahead is legal */
	for (unsigned i = 0; i < QSZ; i++)
		set_desc(desc(i), BUF, 1, 0, 0);
	*avail16(1) = QSZ;
	struct kl_vq_elem *e;
	ck_assert_int_eq(kl_virtq_pop(&vq, &e), 1);
	g_free(e);
	teardown_q();
}
END_TEST

START_TEST(bad_buf_outside_ram)
{
	setup_q(false, false);
	set_desc(desc(0), RAM_SIZE - 8, 16, 0, 0); /* crosses the end */
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_BUF);
	teardown_q();
}
END_TEST

START_TEST(bad_buf_wrap)
{
	setup_q(false, false);
	set_desc(desc(0), ~0ULL - 4, 0x100, KL_VRING_DESC_F_WRITE, 0);
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_BUF);
	teardown_q();
}
END_TEST

START_TEST(bad_huge_len)
{
	setup_q(false, false);
	set_desc(desc(0), BUF, 0xffffffffu, KL_VRING_DESC_F_WRITE, 0);
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_BUF);
	teardown_q();
}
END_TEST

START_TEST(bad_total_len)
{
	setup_q(false, false);
	/* a 3 GiB sparse region above 4 GiB makes two 2 GiB buffers "valid" */
	size_t big = 0xC0000000ull;
	void *p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	ck_assert_int_eq(kl_mem_add_region(&mem, KL_4G, big, p), 0);
	set_desc(desc(0), KL_4G, 0x80000000u, KL_VRING_DESC_F_NEXT, 1);
	set_desc(desc(1), KL_4G, 0x80000000u, KL_VRING_DESC_F_NEXT, 2);
	set_desc(desc(2), KL_4G, 0x80000000u, 0, 0);
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_LEN);
	munmap(p, big);
	teardown_q();
}
END_TEST

START_TEST(bad_order)
{
	setup_q(false, false);
	set_desc(desc(0), BUF, 16, KL_VRING_DESC_F_WRITE | KL_VRING_DESC_F_NEXT, 1);
	set_desc(desc(1), BUF, 16, 0, 0);
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_ORDER);
	teardown_q();
}
END_TEST

static int indirect_case(uint64_t addr, uint32_t len, uint16_t flags, bool feature)
{
	setup_q(false, feature);
	set_desc(desc(0), addr, len, KL_VRING_DESC_F_INDIRECT | flags, 1);
	offer(0);
	int r = pop_err();
	teardown_q();
	return r;
}

START_TEST(bad_indirect)
{
	ck_assert_int_eq(indirect_case(0x4000, 32, 0, false), KL_VQ_ERR_INDIRECT_FEAT);
	ck_assert_int_eq(indirect_case(0x4000, 24, 0, true), KL_VQ_ERR_INDIRECT);  /* len % 16 */
	ck_assert_int_eq(indirect_case(0x4000, 0, 0, true), KL_VQ_ERR_INDIRECT);   /* empty */
	ck_assert_int_eq(indirect_case(0x4000, 16 * (KL_VIRTQ_MAX_SIZE + 1), 0, true),
			 KL_VQ_ERR_INDIRECT);                                      /* too long */
	ck_assert_int_eq(indirect_case(RAM_SIZE - 16, 32, 0, true), KL_VQ_ERR_INDIRECT); /* RAM */
	ck_assert_int_eq(indirect_case(0x4000, 32, KL_VRING_DESC_F_NEXT, true),
			 KL_VQ_ERR_INDIRECT);                                      /* with NEXT */
}
END_TEST

/* Linux kmallocs indirect tables: only 8-byte aligned.  Must work (and be
 * read without misaligned accesses: UBSan checks this in build-asan). */
START_TEST(indirect_misaligned_ok)
{
	setup_q(false, true);
	struct kl_vring_desc d[2];
	set_desc(&d[0], BUF, 16, KL_VRING_DESC_F_NEXT, 1);
	set_desc(&d[1], BUF + 0x100, 1, KL_VRING_DESC_F_WRITE, 0);
	memcpy(ram + 0x4008, d, sizeof(d));
	set_desc(desc(0), 0x4008, 32, KL_VRING_DESC_F_INDIRECT, 0);
	offer(0);
	struct kl_vq_elem *e;
	ck_assert_int_eq(kl_virtq_pop(&vq, &e), 1);
	ck_assert_uint_eq(e->out_num, 1);
	ck_assert_uint_eq(e->in_num, 1);
	ck_assert_ptr_eq(e->iov[1].iov_base, ram + BUF + 0x100);
	g_free(e);
	/* an odd address too */
	memcpy(ram + 0x5003, d, sizeof(d));
	set_desc(desc(1), 0x5003, 32, KL_VRING_DESC_F_INDIRECT, 0);
	offer(1);
	ck_assert_int_eq(kl_virtq_pop(&vq, &e), 1);
	ck_assert_uint_eq(e->in_len, 1);
	g_free(e);
	teardown_q();
}
END_TEST

START_TEST(bad_indirect_nested)
{
	setup_q(false, true);
	struct kl_vring_desc *t = (struct kl_vring_desc *)(ram + 0x4000);
	set_desc(&t[0], BUF, 16, KL_VRING_DESC_F_NEXT, 1);
	set_desc(&t[1], 0x5000, 32, KL_VRING_DESC_F_INDIRECT, 0);
	set_desc(desc(0), 0x4000, 32, KL_VRING_DESC_F_INDIRECT, 0);
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_INDIRECT);
	teardown_q();
}
END_TEST

START_TEST(bad_indirect_loop_and_next)
{
	setup_q(false, true);
	struct kl_vring_desc *t = (struct kl_vring_desc *)(ram + 0x4000);
	set_desc(&t[0], BUF, 16, KL_VRING_DESC_F_NEXT, 1);
	set_desc(&t[1], BUF, 16, KL_VRING_DESC_F_NEXT, 0);
	set_desc(desc(0), 0x4000, 32, KL_VRING_DESC_F_INDIRECT, 0);
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_LOOP);
	teardown_q();

	setup_q(false, true);
	t = (struct kl_vring_desc *)(ram + 0x4000);
	set_desc(&t[0], BUF, 16, KL_VRING_DESC_F_NEXT, 2); /* table has 2 entries */
	set_desc(desc(0), 0x4000, 32, KL_VRING_DESC_F_INDIRECT, 0);
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_NEXT);
	teardown_q();
}
END_TEST

START_TEST(bad_indirect_not_head)
{
	setup_q(false, true);
	set_desc(desc(0), BUF, 16, KL_VRING_DESC_F_NEXT, 1);
	set_desc(desc(1), 0x4000, 32, KL_VRING_DESC_F_INDIRECT, 0);
	offer(0);
	ck_assert_int_eq(pop_err(), KL_VQ_ERR_INDIRECT);
	teardown_q();
}
END_TEST

START_TEST(bad_ring_placement)
{
	uint8_t *buf = calloc(1, RAM_SIZE);
	struct kl_guest_mem m;
	kl_mem_init_empty(&m);
	kl_mem_add_region(&m, 0, RAM_SIZE, buf);
	struct kl_virtq q;
	kl_virtq_init(&q, &m, 0, QSZ);
	q.desc_gpa = DESC + 8; /* misaligned */
	q.avail_gpa = AVAIL;
	q.used_gpa = USED;
	ck_assert_int_eq(kl_virtq_enable(&q), KL_VQ_ERR_RING);
	q.desc_gpa = DESC;
	q.used_gpa = RAM_SIZE - 8; /* used ring does not fit */
	ck_assert_int_eq(kl_virtq_enable(&q), KL_VQ_ERR_RING);
	q.used_gpa = USED;
	q.size = 12; /* not a power of two */
	ck_assert_int_eq(kl_virtq_enable(&q), KL_VQ_ERR_RING);
	q.size = 2 * QSZ; /* larger than the maximum */
	ck_assert_int_eq(kl_virtq_enable(&q), KL_VQ_ERR_RING);
	q.size = 4;
	ck_assert_int_eq(kl_virtq_enable(&q), 0);
	ck_assert(q.enabled);
	free(buf);
}
END_TEST

START_TEST(stale_after_reset)
{
	setup_q(false, false);
	set_desc(desc(0), BUF, 16, KL_VRING_DESC_F_WRITE, 0);
	offer(0);
	struct kl_vq_elem *e;
	ck_assert_int_eq(kl_virtq_pop(&vq, &e), 1);
	kl_virtq_reset(&vq);
	ck_assert(!kl_virtq_push(&vq, e, 16));
	ck_assert_uint_eq(*used16(1), 0);
	g_free(e);
	teardown_q();
}
END_TEST

START_TEST(iov_slice)
{
	char a[10], b[10];
	struct iovec iov[2] = { { a, 10 }, { b, 10 } }, out[2];
	ck_assert_int_eq(kl_iov_slice(iov, 2, 5, 10, out, 2), 2);
	ck_assert_ptr_eq(out[0].iov_base, a + 5);
	ck_assert_uint_eq(out[0].iov_len, 5);
	ck_assert_uint_eq(out[1].iov_len, 5);
	ck_assert_int_eq(kl_iov_slice(iov, 2, 5, 16, out, 2), -1);
	ck_assert_int_eq(kl_iov_slice(iov, 2, 0, 20, out, 1), -1);
	ck_assert_uint_eq(kl_iov_size(iov, 2), 20);
}
END_TEST

Suite *virtqueue_suite(void);
Suite *virtqueue_suite(void)
{
	Suite *s = suite_create("virtqueue");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, normal_chain);
	tcase_add_test(tc, zero_length_desc_skipped);
	tcase_add_test(tc, indirect_chain);
	tcase_add_test(tc, indirect_misaligned_ok);
	tcase_add_test(tc, event_idx_used_event);
	tcase_add_test(tc, event_idx_avail_event);
	tcase_add_test(tc, no_notify_flag);
	tcase_add_test(tc, stale_after_reset);
	tcase_add_test(tc, iov_slice);
	suite_add_tcase(s, tc);
	TCase *th = tcase_create("hostile");
	tcase_add_test(th, bad_loop);
	tcase_add_test(th, bad_self_loop);
	tcase_add_test(th, bad_next);
	tcase_add_test(th, bad_head);
	tcase_add_test(th, bad_avail_jump);
	tcase_add_test(th, bad_buf_outside_ram);
	tcase_add_test(th, bad_buf_wrap);
	tcase_add_test(th, bad_huge_len);
	tcase_add_test(th, bad_total_len);
	tcase_add_test(th, bad_order);
	tcase_add_test(th, bad_indirect);
	tcase_add_test(th, bad_indirect_nested);
	tcase_add_test(th, bad_indirect_loop_and_next);
	tcase_add_test(th, bad_indirect_not_head);
	tcase_add_test(th, bad_ring_placement);
	suite_add_tcase(s, th);
	return s;
}

int main(void)
{
	return kl_check_run(virtqueue_suite());
}
