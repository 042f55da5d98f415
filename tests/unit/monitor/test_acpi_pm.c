/* ACPI PM1a block: register semantics, SCI level, S5, reset, power button. */
#include <check.h>

#include "../kl_check.h"
#include <stdlib.h>
#include <string.h>

#include "fake_vm.h"
#include "kvmlite/acpi_pm.h"
#include "kvmlite/boot.h"

static struct kl_vm vm;

static void setup(void)
{
	fake_vm_init(&vm, 1);
	char *err = NULL;
	ck_assert_msg(kl_acpi_pm_init(&vm, &err) == 0, "%s", err);
}

static void teardown(void)
{
	fake_vm_free(&vm);
}

static uint64_t rd(uint64_t port, unsigned size)
{
	uint64_t v = 0;
	ck_assert(kl_bus_read(&vm.pio, port, size, &v));
	return v;
}

static void wr(uint64_t port, unsigned size, uint64_t v)
{
	ck_assert(kl_bus_write(&vm.pio, port, size, v));
}

#define STS KL_ACPI_PM1A_EVT
#define EN (KL_ACPI_PM1A_EVT + 2)
#define CNT KL_ACPI_PM1A_CNT

#define GSTS KL_ACPI_GPE0_BLK
#define GEN (KL_ACPI_GPE0_BLK + 2)

/* GPE0 block (PCI hot-plug's bit 1): status raised by the device model,
 * SCI while STS & EN, write-1-to-clear, byte access, cleared by reset. */
START_TEST(gpe_sci)
{
	ck_assert_uint_eq(rd(GSTS, 2), 0);
	ck_assert_uint_eq(rd(GEN, 2), 0);
	kl_acpi_gpe_raise(&vm, KL_ACPI_GPE_PCI_HOTPLUG);
	ck_assert_uint_eq(rd(GSTS, 1), 0x02);
	ck_assert_int_eq(fake.irq_calls, 0);            /* not enabled: no SCI */
	wr(GEN, 1, 0x02);
	ck_assert_uint_eq(rd(GEN, 1), 0x02);
	ck_assert_int_eq(fake.irq_calls, 1);
	ck_assert_uint_eq(fake.irq_gsi, KL_ACPI_SCI_IRQ);
	ck_assert_int_eq(fake.irq_level, 1);
	ck_assert_uint_eq(rd(GSTS, 4), 0x02 | 0x02 << 16);
	wr(GSTS, 1, 0x01);                               /* another bit: no effect */
	ck_assert_uint_eq(rd(GSTS, 1), 0x02);
	ck_assert_int_eq(fake.irq_level, 1);
	wr(GSTS, 1, 0x02);                               /* acknowledge */
	ck_assert_uint_eq(rd(GSTS, 1), 0);
	ck_assert_int_eq(fake.irq_level, 0);
	kl_acpi_gpe_raise(&vm, KL_ACPI_GPE_PCI_HOTPLUG);
	ck_assert_int_eq(fake.irq_level, 1);
	kl_acpi_gpe_raise(&vm, 16);                      /* out of the block: ignored */
	ck_assert_uint_eq(rd(GSTS, 2), 0x02);
	fake.reset_fn(fake.reset_opaque);
	ck_assert_uint_eq(rd(GSTS, 2), 0);
	ck_assert_uint_eq(rd(GEN, 2), 0);
	ck_assert_int_eq(fake.irq_level, 0);
}
END_TEST

START_TEST(reset_values)
{
	ck_assert_uint_eq(rd(STS, 2), 0);
	ck_assert_uint_eq(rd(EN, 2), 0);
	ck_assert_uint_eq(rd(CNT, 2), KL_ACPI_PM1_SCI_EN);
	ck_assert_ptr_nonnull(vm.powerdown_fn);
	ck_assert_ptr_nonnull(fake.reset_fn);
	ck_assert_int_eq(fake.irq_calls, 0);
	/* ports next to the block are not ours */
	uint64_t v;
	ck_assert(!kl_bus_read(&vm.pio, KL_ACPI_PM1A_CNT + 2, 1, &v));
}
END_TEST

START_TEST(power_button_sci)
{
	/* button pressed while PWRBTN_EN is clear: status set, no SCI */
	vm.powerdown_fn(vm.powerdown_opaque);
	ck_assert_uint_eq(rd(STS, 2), KL_ACPI_PM1_PWRBTN);
	ck_assert_int_eq(fake.irq_calls, 0);
	/* enabling raises the SCI (level high, IRQ 9) */
	wr(EN, 2, KL_ACPI_PM1_PWRBTN);
	ck_assert_uint_eq(rd(EN, 2), KL_ACPI_PM1_PWRBTN);
	ck_assert_int_eq(fake.irq_calls, 1);
	ck_assert_uint_eq(fake.irq_gsi, KL_ACPI_SCI_IRQ);
	ck_assert_int_eq(fake.irq_level, 1);
	/* writing 0 to STS clears nothing (write-1-to-clear) */
	wr(STS, 2, 0);
	ck_assert_uint_eq(rd(STS, 2), KL_ACPI_PM1_PWRBTN);
	ck_assert_int_eq(fake.irq_calls, 1);
	/* 32-bit read sees STS | EN << 16 */
	ck_assert_uint_eq(rd(STS, 4), KL_ACPI_PM1_PWRBTN | (KL_ACPI_PM1_PWRBTN << 16));
	/* clearing SCI_EN lowers the line, setting it raises it again */
	wr(CNT, 2, 0);
	ck_assert_int_eq(fake.irq_level, 0);
	wr(CNT, 2, KL_ACPI_PM1_SCI_EN);
	ck_assert_int_eq(fake.irq_level, 1);
	ck_assert_int_eq(fake.irq_calls, 3);
	/* byte write of 1 to the high byte of STS acknowledges */
	wr(STS + 1, 1, 0x01);
	ck_assert_uint_eq(rd(STS, 2), 0);
	ck_assert_int_eq(fake.irq_level, 0);
	ck_assert_int_eq(fake.irq_calls, 4);
	/* a 32-bit write: ack (nothing pending) + keep EN */
	vm.powerdown_fn(vm.powerdown_opaque);
	ck_assert_int_eq(fake.irq_level, 1);
	wr(STS, 4, KL_ACPI_PM1_PWRBTN | (KL_ACPI_PM1_PWRBTN << 16));
	ck_assert_uint_eq(rd(STS, 2), 0);
	ck_assert_uint_eq(rd(EN, 2), KL_ACPI_PM1_PWRBTN);
	ck_assert_int_eq(fake.irq_level, 0);
}
END_TEST

START_TEST(s5_shutdown)
{
	/* S3 (SLP_TYP 1) and SLP_TYP 5 without SLP_EN are ignored */
	wr(CNT, 2, KL_ACPI_PM1_SCI_EN | (1 << 10) | KL_ACPI_PM1_SLP_EN);
	wr(CNT, 2, KL_ACPI_PM1_SCI_EN | (5 << 10));
	ck_assert_int_eq(fake.shutdown, 0);
	/* SLP_EN is write-only */
	ck_assert_uint_eq(rd(CNT, 2), KL_ACPI_PM1_SCI_EN | (5 << 10));
	wr(CNT, 2, KL_ACPI_PM1_SCI_EN | (5 << 10) | KL_ACPI_PM1_SLP_EN);
	ck_assert_int_eq(fake.shutdown, 1);
	ck_assert(fake.shutdown_guest);
	ck_assert_int_eq(fake.shutdown_code, 0);
	ck_assert_str_eq(fake.shutdown_reason, "guest-shutdown");
	ck_assert_uint_eq(rd(CNT, 2) & KL_ACPI_PM1_SLP_EN, 0);
	/* high-byte-only write works too */
	wr(CNT + 1, 1, (KL_ACPI_PM1_SLP_EN | (5 << 10)) >> 8);
	ck_assert_int_eq(fake.shutdown, 2);
}
END_TEST

START_TEST(reset_clears)
{
	wr(EN, 2, KL_ACPI_PM1_PWRBTN);
	vm.powerdown_fn(vm.powerdown_opaque);
	ck_assert_int_eq(fake.irq_level, 1);
	wr(CNT, 2, KL_ACPI_PM1_SCI_EN | (3 << 10));
	fake.reset_fn(fake.reset_opaque);
	ck_assert_uint_eq(rd(STS, 2), 0);
	ck_assert_uint_eq(rd(EN, 2), 0);
	ck_assert_uint_eq(rd(CNT, 2), KL_ACPI_PM1_SCI_EN);
	ck_assert_int_eq(fake.irq_level, 0);
}
END_TEST

START_TEST(ports_taken)
{
	struct kl_vm v2;
	fake_vm_init(&v2, 1);
	static const struct kl_io_ops none;
	ck_assert_int_eq(kl_bus_register(&v2.pio, KL_ACPI_PM1A_CNT, 1, &none, NULL, "x"), 0);
	char *err = NULL;
	ck_assert_int_eq(kl_acpi_pm_init(&v2, &err), -1);
	ck_assert(strstr(err, "0x604"));
	g_free(err);
	/* the event block was rolled back */
	ck_assert_ptr_null(kl_bus_find(&v2.pio, KL_ACPI_PM1A_EVT));
	fake_vm_free(&v2);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("acpi_pm");
	TCase *t = tcase_create("pm1a");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, reset_values);
	tcase_add_test(t, power_button_sci);
	tcase_add_test(t, gpe_sci);
	tcase_add_test(t, s5_shutdown);
	tcase_add_test(t, reset_clears);
	tcase_add_test(t, ports_taken);
	suite_add_tcase(s, t);
	return kl_check_run(s);
}
