/* The DSDT part of the ACPI PCI hot-plug (kvmlite/hotplug.h): slot devices,
 * PCNT and \_GPE._E01 (linked with the boot tables, no device state). */
#include <stdio.h>

#include "aml.h"
#include "kvmlite/hotplug.h"
#include "kvmlite/pci.h"

/* Scope (\_SB.PCI0) {
 *   OperationRegion (PCST, SystemIO, 0xae00, 8)
 *   Field (PCST, DWordAcc, NoLock, WriteAsZeros) { PCIU, 32, PCID, 32 }
 *   OperationRegion (SEJ, SystemIO, 0xae08, 4)
 *   Field (SEJ, DWordAcc, NoLock, WriteAsZeros) { B0EJ, 32 }
 *   Device (Sxx) { Name (_ADR, slot << 16)  Name (_SUN, slot)
 *                  Method (_EJ0, 1) { Store (ShiftLeft (One, _SUN), B0EJ) } }
 *   ... for slots 1-31 (xx = devfn in hex, QEMU's names)
 *   Method (PCNT, 0) { Store (PCIU, Local0)  Store (PCID, Local1)
 *     If (And (Local0, 1 << slot)) { Notify (Sxx, 1) }   bus check
 *     If (And (Local1, 1 << slot)) { Notify (Sxx, 3) }   eject request  ... }
 * }
 * Scope (\_GPE) { Method (_E01, 0) { \_SB.PCI0.PCNT () } } */
void kl_acpi_pcihp_aml(GByteArray *aml)
{
	GByteArray *sc = aml_new();
	aml_opregion(sc, "PCST", AML_REGION_SYSTEM_IO, KL_PCIHP_BASE, 8);
	static const char *const f1[] = { "PCIU", "PCID" };
	static const unsigned b1[] = { 32, 32 };
	aml_field_dword(sc, "PCST", f1, b1, 2);
	aml_opregion(sc, "SEJ_", AML_REGION_SYSTEM_IO, KL_PCIHP_BASE + 8, 4);
	static const char *const f2[] = { "B0EJ" };
	static const unsigned b2[] = { 32 };
	aml_field_dword(sc, "SEJ_", f2, b2, 1);
	GByteArray *pcnt = aml_new();
	aml_store_name_local(pcnt, "PCIU", 0);
	aml_store_name_local(pcnt, "PCID", 1);
	for (unsigned s = 1; s < KL_PCI_NSLOTS; s++) {
		char name[5];
		snprintf(name, sizeof(name), "S%02X", s << 3);
		GByteArray *dev = aml_new();
		aml_name_int(dev, "_ADR", (uint64_t)s << 16);
		aml_name_int(dev, "_SUN", s);
		GByteArray *ej = aml_new();
		aml_byte(ej, AML_STORE);
		aml_byte(ej, AML_SHIFT_LEFT);
		aml_int(ej, 1);
		aml_name_string(ej, "_SUN");
		aml_byte(ej, 0x00);                     /* Target: none */
		aml_name_string(ej, "B0EJ");
		aml_method(dev, "_EJ0", 1, false, ej);
		aml_device(sc, name, dev);
		for (unsigned l = 0; l < 2; l++) {
			GByteArray *pred = aml_new(), *body = aml_new();
			aml_and_local_int(pred, l, 1u << s);
			aml_notify(body, name, l == 0 ? 1 : 3);
			aml_if(pcnt, pred, body);
		}
	}
	aml_method(sc, "PCNT", 0, false, pcnt);
	aml_scope(aml, "\\_SB.PCI0", sc);
	GByteArray *gpe = aml_new(), *e01 = aml_new();
	aml_name_string(e01, "\\_SB.PCI0.PCNT");
	aml_method(gpe, "_E01", 0, false, e01);
	aml_scope(aml, "\\_GPE", gpe);
}
