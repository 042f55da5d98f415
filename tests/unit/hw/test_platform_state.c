/* VM state of the PC platform odds and ends (src/hw/platform.c, section
 * "platform/0"): reset control register, CMOS index latch, CMOS RAM. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <string.h>

#include "kvmlite/bus.h"
#include "kvmlite/hw.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

/* The VM hooks platform.c uses (src/cpu/vm.c needs /dev/kvm): record them. */
static GDestroyNotify cleanup_fn;
static void *cleanup_opaque;
void kl_vm_add_cleanup(struct kl_vm *vm, GDestroyNotify fn, void *opaque)
{
	(void)vm;
	cleanup_fn = fn;
	cleanup_opaque = opaque;
}
void kl_vm_add_reset_handler(struct kl_vm *vm, kl_reset_fn fn, void *opaque)
{
	(void)vm; (void)fn; (void)opaque;
}
void kl_vm_request_reset(struct kl_vm *vm, bool guest, const char *reason)
{
	(void)vm; (void)guest; (void)reason;
}

static struct kl_vm vm;

static void make(void)
{
	memset(&vm, 0, sizeof(vm));
	kl_bus_init(&vm.pio, "pio");
	char *err = NULL;
	ck_assert_msg(kl_platform_init(&vm, &err) == 0, "%s", err);
}

static void destroy(void)
{
	cleanup_fn(cleanup_opaque);
	ck_assert_uint_eq(kl_vmstate_count(&vm), 0);
	kl_vmstate_free_all(&vm);
	kl_bus_destroy(&vm.pio);
}

static uint64_t in8(uint16_t port)
{
	uint64_t v = 0;
	kl_bus_read(&vm.pio, port, 1, &v);
	return v;
}

static int load(const uint8_t *p, size_t n, char **msg)
{
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, "platform/0");
	return kl_vmstate_load_section(e, p, n, e->ops->version, msg);
}

START_TEST(roundtrip_and_refusals)
{
	make();
	kl_bus_write(&vm.pio, 0xcf9, 1, 0x02);
	kl_bus_write(&vm.pio, 0x70, 1, 0x40);
	kl_bus_write(&vm.pio, 0x71, 1, 0x5a);
	kl_bus_write(&vm.pio, 0x70, 1, 0x41); /* index latched for a later read */
	kl_bus_write(&vm.pio, 0x71, 1, 0xa5);
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, "platform/0");
	ck_assert_ptr_nonnull(e);
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	char *err = NULL;
	ck_assert_int_eq(e->ops->save(e->opaque, &o, &err), 0);
	GByteArray *s = o.buf;
	ck_assert_uint_eq(s->len, 130);
	destroy();

	make();
	char *msg = NULL;
	for (size_t n = 0; n < s->len; n++) {
		ck_assert_int_lt(load(s->data, n, &msg), 0);
		g_free(msg);
		ck_assert_uint_eq(in8(0xcf9), 0);
	}
	uint8_t *bad = g_memdup2(s->data, s->len);
	bad[1] = 0x80;
	ck_assert_int_lt(load(bad, s->len, &msg), 0);
	ck_assert_msg(strstr(msg, "CMOS index 0x80"), "%s", msg);
	g_free(msg);
	bad[1] = s->data[1];
	bad[0] = 0x04;
	ck_assert_int_lt(load(bad, s->len, &msg), 0);
	ck_assert_msg(strstr(msg, "reset control 0x4"), "%s", msg);
	g_free(msg);
	g_free(bad);
	ck_assert_uint_eq(in8(0xcf9), 0);
	ck_assert_msg(load(s->data, s->len, &msg) == 0, "%s", msg);
	ck_assert_uint_eq(in8(0xcf9), 0x02);
	ck_assert_uint_eq(in8(0x71), 0xa5); /* the latched index 0x41 */
	kl_bus_write(&vm.pio, 0x70, 1, 0x40);
	ck_assert_uint_eq(in8(0x71), 0x5a);
	g_byte_array_free(s, TRUE);
	destroy();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("platform-state");
	TCase *tc = tcase_create("state");
	tcase_add_test(tc, roundtrip_and_refusals);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
