/* -M microvm,acpi=on: the virtio-mmio transports in the DSDT, as QEMU 7.2's
 * hw/i386/acpi-microvm.c describes them (acpi_dsdt_add_virtio):
 *
 *   Scope (\_SB) {
 *     Device (VR00) {             one per transport with a device, VRnn = slot
 *       Name (_HID, "LNRO0005")   Linux: drivers/virtio/virtio_mmio.c ACPI match
 *       Name (_UID, 0)            the slot number
 *       Name (_CCA, One)          cache coherent
 *       Name (_CRS, ResourceTemplate () {
 *         Memory32Fixed (ReadWrite, BASE, 0x200)
 *         Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) { GSI }
 *       })
 *     }
 *   }
 *
 * Level/active high: the transport holds its GSI asserted while
 * InterruptStatus is non-zero (src/virtio/virtio_mmio.c). */
#include <glib.h>
#include <string.h>

#include "aml.h"
#include "boot_priv.h"
#include "kvmlite/microvm.h"
#include "kvmlite/virtio.h"

static void aml_string(GByteArray *a, const char *s)
{
	aml_byte(a, 0x0d); /* StringPrefix */
	aml_bytes(a, s, strlen(s) + 1);
}

void kl_microvm_acpi_aml(GByteArray *a, const struct kl_virtio_mmio_slots *s)
{
	if (!s || !s->used)
		return;
	static const uint8_t op_dev[] = { AML_EXT, AML_DEVICE };
	static const uint8_t op_buffer[] = { AML_BUFFER };
	static const uint8_t op_scope[] = { AML_SCOPE };
	GByteArray *scope = g_byte_array_new();
	for (unsigned i = 0; i < s->used && i < s->count; i++) {
		uint64_t base = s->base + (uint64_t)i * KL_VMMIO_SIZE;
		GByteArray *dev = g_byte_array_new();
		aml_byte(dev, AML_NAME);
		aml_bytes(dev, "_HID", 4);
		aml_string(dev, "LNRO0005");
		aml_name_int(dev, "_UID", i);
		aml_name_int(dev, "_CCA", 1);

		GByteArray *res = g_byte_array_new();
		/* Memory32Fixed: tag 0x86, length 9, RW, base, length */
		uint8_t mem[12] = { 0x86, 0x09, 0x00, 0x01 };
		kl_put32(mem + 4, (uint32_t)base);
		kl_put32(mem + 8, KL_VMMIO_SIZE);
		aml_bytes(res, mem, sizeof(mem));
		/* Extended Interrupt: tag 0x89, length 6, consumer | level |
		 * active high | exclusive, one interrupt */
		uint8_t irq[9] = { 0x89, 0x06, 0x00, 0x01, 0x01 };
		kl_put32(irq + 5, s->gsi[i]);
		aml_bytes(res, irq, sizeof(irq));
		static const uint8_t end_tag[] = { 0x79, 0x00 };
		aml_bytes(res, end_tag, sizeof(end_tag));
		GByteArray *buf = g_byte_array_new();
		aml_int(buf, res->len);
		aml_bytes(buf, res->data, res->len);
		g_byte_array_free(res, TRUE);
		aml_byte(dev, AML_NAME);
		aml_bytes(dev, "_CRS", 4);
		aml_wrap(dev, op_buffer, 1, NULL, buf);

		/* i < KL_VMMIO_MAX_SLOTS (8): VR00..VR07 */
		char name[5] = { 'V', 'R', (char)('0' + i / 10 % 10), (char)('0' + i % 10), 0 };
		aml_wrap(scope, op_dev, 2, name, dev);
	}
	aml_wrap(a, op_scope, 1, "\\_SB_", scope);
}
