/* ACPI PM1a event/control registers: power button + S5 soft-off.
 * See include/kvmlite/acpi_pm.h. */
#include <glib.h>

#include "kvmlite/acpi_pm.h"
#include "kvmlite/boot.h"
#include "kvmlite/bus.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

struct acpi_pm {
	struct kl_vm *vm;
	uint16_t sts, en, cnt;
	uint16_t gpe_sts, gpe_en;   /* GPE0 block (not in the migration section) */
	bool sci;
};

static void update_sci(struct acpi_pm *pm)
{
	bool level = (pm->cnt & KL_ACPI_PM1_SCI_EN) &&
		     ((pm->sts & pm->en & KL_ACPI_PM1_PWRBTN) || (pm->gpe_sts & pm->gpe_en));
	if (level == pm->sci)
		return;
	pm->sci = level;
	kl_vm_set_irq(pm->vm, KL_ACPI_SCI_IRQ, level);
}

/* Split an access of size bytes at byte offset off into the 16-bit register
 * at reg_off: returns the byte mask and the value aligned to the register. */
static bool reg_part(uint64_t off, unsigned size, uint64_t val, unsigned reg_off,
		     uint16_t *mask, uint16_t *v)
{
	*mask = 0;
	*v = 0;
	for (unsigned b = 0; b < 2; b++) {
		unsigned abs = reg_off + b;
		if (abs < off || abs >= off + size)
			continue;
		*mask |= (uint16_t)(0xff << (8 * b));
		*v |= (uint16_t)(((val >> (8 * (abs - off))) & 0xff) << (8 * b));
	}
	return *mask != 0;
}

static uint64_t evt_read(void *opaque, uint64_t off, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint8_t regs[4] = { pm->sts & 0xff, pm->sts >> 8, pm->en & 0xff, pm->en >> 8 };
	uint64_t v = 0;
	for (unsigned i = 0; i < size; i++)
		if (off + i < 4)
			v |= (uint64_t)regs[off + i] << (8 * i);
	return v;
}

static void evt_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint16_t mask, v;
	if (reg_part(off, size, val, 0, &mask, &v))
		pm->sts &= (uint16_t)~(v & mask); /* write 1 to clear */
	if (reg_part(off, size, val, 2, &mask, &v))
		pm->en = (uint16_t)((pm->en & ~mask) | (v & mask));
	update_sci(pm);
}

static uint64_t cnt_read(void *opaque, uint64_t off, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint64_t v = 0;
	for (unsigned i = 0; i < size; i++)
		if (off + i < 2)
			v |= (uint64_t)((pm->cnt >> (8 * (off + i))) & 0xff) << (8 * i);
	return v;
}

static void cnt_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint16_t mask, v;
	if (!reg_part(off, size, val, 0, &mask, &v))
		return;
	uint16_t n = (uint16_t)((pm->cnt & ~mask) | (v & mask));
	pm->cnt = n & (uint16_t)~KL_ACPI_PM1_SLP_EN; /* SLP_EN reads as 0 */
	update_sci(pm);
	if ((n & KL_ACPI_PM1_SLP_EN) && ((n >> KL_ACPI_PM1_SLP_TYP_SHIFT) & 7) == KL_ACPI_S5_SLP_TYP)
		kl_vm_request_shutdown(pm->vm, 0, true, "guest-shutdown");
	/* other sleep types (S1-S4) are not implemented: ignored */
}

static uint64_t gpe_read(void *opaque, uint64_t off, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint8_t regs[4] = { pm->gpe_sts & 0xff, pm->gpe_sts >> 8, pm->gpe_en & 0xff, pm->gpe_en >> 8 };
	uint64_t v = 0;
	for (unsigned i = 0; i < size; i++)
		if (off + i < 4)
			v |= (uint64_t)regs[off + i] << (8 * i);
	return v;
}

static void gpe_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint16_t mask, v;
	if (reg_part(off, size, val, 0, &mask, &v))
		pm->gpe_sts &= (uint16_t)~(v & mask);
	if (reg_part(off, size, val, 2, &mask, &v))
		pm->gpe_en = (uint16_t)((pm->gpe_en & ~mask) | (v & mask));
	update_sci(pm);
}

static const struct kl_io_ops gpe_ops = { .read = gpe_read, .write = gpe_write };
static const struct kl_io_ops evt_ops = { .read = evt_read, .write = evt_write };
static const struct kl_io_ops cnt_ops = { .read = cnt_read, .write = cnt_write };

static void pm_reset(void *opaque)
{
	struct acpi_pm *pm = opaque;
	pm->sts = 0;
	pm->en = 0;
	pm->gpe_sts = 0;
	pm->gpe_en = 0;
	pm->cnt = KL_ACPI_PM1_SCI_EN;
	update_sci(pm);
}

static void pm_powerdown(void *opaque);

void kl_acpi_gpe_raise(struct kl_vm *vm, unsigned bit)
{
	if (vm->powerdown_fn != pm_powerdown || bit > 15)
		return;
	struct acpi_pm *pm = vm->powerdown_opaque;
	pm->gpe_sts |= (uint16_t)(1u << bit);
	update_sci(pm);
}

static void pm_powerdown(void *opaque)
{
	struct acpi_pm *pm = opaque;
	pm->sts |= KL_ACPI_PM1_PWRBTN;
	update_sci(pm);
}

/* Migration section "acpi-pm/0": PM1a status, enable, control, SCI line. */
static int pm_save(void *opaque, struct kl_vms_out *o, char **err)
{
	struct acpi_pm *pm = opaque;
	(void)err;
	kl_vms_put_u16(o, pm->sts);
	kl_vms_put_u16(o, pm->en);
	kl_vms_put_u16(o, pm->cnt);
	kl_vms_put_u8(o, pm->sci);
	return 0;
}

static int pm_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	struct acpi_pm *pm = opaque;
	(void)version, (void)err;
	uint16_t sts = kl_vms_get_u16(in), en = kl_vms_get_u16(in), cnt = kl_vms_get_u16(in);
	uint8_t sci = kl_vms_get_u8(in);
	if (kl_vms_failed(in))
		return -1;
	if (sci > 1) {
		kl_vms_fail(in, "acpi-pm: impossible SCI level %u", sci);
		return -1;
	}
	pm->sts = sts;
	pm->en = en;
	pm->cnt = cnt;
	pm->sci = sci;
	kl_vm_set_irq(pm->vm, KL_ACPI_SCI_IRQ, sci);
	update_sci(pm);
	return 0;
}

static const struct kl_vmstate_ops pm_vmstate = {
	.kind = "acpi-pm", .version = 1, .min_version = 1,
	.save = pm_save, .load = pm_load,
};

int kl_acpi_pm_init(struct kl_vm *vm, char **err)
{
	struct acpi_pm *pm = g_new0(struct acpi_pm, 1);
	pm->vm = vm;
	pm->cnt = KL_ACPI_PM1_SCI_EN;
	if (kl_bus_register(&vm->pio, KL_ACPI_PM1A_EVT, 4, &evt_ops, pm, "acpi-pm1a-evt") < 0) {
		*err = g_strdup_printf("acpi-pm: I/O ports 0x%x-0x%x are already in use",
				       KL_ACPI_PM1A_EVT, KL_ACPI_PM1A_EVT + 3);
		g_free(pm);
		return -1;
	}
	if (kl_bus_register(&vm->pio, KL_ACPI_PM1A_CNT, 2, &cnt_ops, pm, "acpi-pm1a-cnt") < 0) {
		kl_bus_unregister(&vm->pio, KL_ACPI_PM1A_EVT, pm);
		*err = g_strdup_printf("acpi-pm: I/O ports 0x%x-0x%x are already in use",
				       KL_ACPI_PM1A_CNT, KL_ACPI_PM1A_CNT + 1);
		g_free(pm);
		return -1;
	}
	if (kl_bus_register(&vm->pio, KL_ACPI_GPE0_BLK, KL_ACPI_GPE0_LEN, &gpe_ops, pm,
			    "acpi-gpe0") < 0) {
		kl_bus_unregister(&vm->pio, KL_ACPI_PM1A_EVT, pm);
		kl_bus_unregister(&vm->pio, KL_ACPI_PM1A_CNT, pm);
		*err = g_strdup_printf("acpi-pm: I/O ports 0x%x-0x%x are already in use",
				       KL_ACPI_GPE0_BLK, KL_ACPI_GPE0_BLK + KL_ACPI_GPE0_LEN - 1);
		g_free(pm);
		return -1;
	}
	kl_vm_add_reset_handler(vm, pm_reset, pm);
	kl_vmstate_register(vm, "0", &pm_vmstate, pm);
	vm->powerdown_fn = pm_powerdown;
	vm->powerdown_opaque = pm;
	return 0;
}
