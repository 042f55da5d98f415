/* The DSDT part of the ACPI CPU hot-plug (kvmlite/cpu_hotplug.h), after
 * QEMU's build_cpus_aml for -M pc (Processor objects, names as QEMU's):
 *
 * Device (\_SB.PCI0.PRES) { _HID PNP0A06, _UID "CPU Hotplug resources",
 *   _CRS IO(0xaf00, 12), OperationRegion (PRST, SystemIO, 0xaf00, 12),
 *   Field (PRST, ByteAcc, NoLock, WriteAsZeros) { Offset (4), CPEN, 1,
 *     CINS, 1, CRMV, 1, CEJ0, 1, , 4, CCMD, 8 }
 *   Field (PRST, DWordAcc, NoLock, Preserve) { CSEL, 32, , 32, CDAT, 32 }
 *   Method (_INI, Serialized) { CSEL = 0 } }
 * Device (\_SB.CPUS) { _HID "ACPI0010", _CID PNP0A05,
 *   Method (CTFY, 2) { If (Arg0 == N) { Notify (CN, Arg1) } ... }
 *   Method (CSTA, 1, Serialized) { CSEL = Arg0; Local0 = 0;
 *     If (CPEN == 1) { Local0 = 0xF }; Return (Local0) }
 *   Method (CEJ0, 1, Serialized) { CSEL = Arg0; CEJ0 = 1 }
 *   Method (CSCN, 0, Serialized) { Local0 = 1; While (Local0 == 1) {
 *     Local0 = 0; CCMD = 0;
 *     If (CINS == 1) { CTFY (CDAT, 1); CINS = 1; Local0 = 1 }
 *     Else { If (CRMV == 1) { CTFY (CDAT, 3); CRMV = 1; Local0 = 1 } } } }
 *   Processor (CN, N, 0, 0) { _STA: Return (CSTA (N)), _MAT: the MADT LAPIC
 *     entry (enabled), _EJ0 (not on CPU 0): CEJ0 (N) } ... }
 * Method (\_GPE._E02) { \_SB.CPUS.CSCN () }
 * Unlike QEMU there is no CPLK mutex: the methods are Serialized and one
 * GPE handler runs at a time; CN is C%03X as QEMU's CPU_NAME_FMT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aml.h"
#include "kvmlite/cpu_hotplug.h"

#define RES "\\_SB.PCI0.PRES"

#define OP_LEQUAL 0x93
#define OP_ELSE 0xa1
#define OP_WHILE 0xa2
#define OP_RETURN 0xa4
#define OP_STRING 0x0d
#define OP_PROCESSOR 0x83 /* after AML_EXT */

static void field(GByteArray *a, const char *region, uint8_t flags, const char *const *names,
		  const unsigned *bits, unsigned n)
{
	GByteArray *b = aml_new();
	aml_byte(b, flags);
	for (unsigned i = 0; i < n; i++) {
		if (names[i]) {
			char seg[4] = { '_', '_', '_', '_' };
			memcpy(seg, names[i], strlen(names[i]) < 4 ? strlen(names[i]) : 4);
			aml_bytes(b, seg, 4);
		} else {
			aml_byte(b, 0x00);      /* ReservedField */
		}
		aml_byte(b, (uint8_t)bits[i]);  /* PkgLength: bits < 64, one byte */
	}
	static const uint8_t op[] = { AML_EXT, AML_FIELD };
	aml_wrap(a, op, 2, region, b);
}

static void name_string_obj(GByteArray *a, const char *seg, const char *str)
{
	aml_byte(a, AML_NAME);
	aml_name_string(a, seg);
	aml_byte(a, OP_STRING);
	aml_bytes(a, str, strlen(str) + 1);
}

static void name_buffer(GByteArray *a, const char *seg, const uint8_t *p, size_t n)
{
	aml_byte(a, AML_NAME);
	aml_name_string(a, seg);
	GByteArray *b = aml_new();
	aml_int(b, n);
	aml_bytes(b, p, n);
	static const uint8_t op[] = { AML_BUFFER };
	aml_wrap(a, op, 1, NULL, b);
}

/* EISAID("PNPxxxx") as the 32-bit compressed id */
static uint32_t eisaid(const char *id)
{
	uint32_t v = ((uint32_t)(id[0] - '@') << 26) | ((uint32_t)(id[1] - '@') << 21) |
		     ((uint32_t)(id[2] - '@') << 16) | (uint32_t)strtoul(id + 3, NULL, 16);
	return ((v >> 24) & 0xff) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24);
}

static void store_int_name(GByteArray *a, uint64_t v, const char *name)
{
	aml_byte(a, AML_STORE);
	aml_int(a, v);
	aml_name_string(a, name);
}

static void store_arg_name(GByteArray *a, unsigned arg, const char *name)
{
	aml_byte(a, AML_STORE);
	aml_byte(a, (uint8_t)(AML_ARG0 + arg));
	aml_name_string(a, name);
}

static void store_int_local(GByteArray *a, uint64_t v, unsigned local)
{
	aml_byte(a, AML_STORE);
	aml_int(a, v);
	aml_byte(a, (uint8_t)(AML_LOCAL0 + local));
}

/* LEqual (name, v) */
static GByteArray *lequal_name(const char *name, uint64_t v)
{
	GByteArray *p = aml_new();
	aml_byte(p, OP_LEQUAL);
	aml_name_string(p, name);
	aml_int(p, v);
	return p;
}

static void res_device(GByteArray *a)
{
	GByteArray *d = aml_new();
	aml_byte(d, AML_NAME);
	aml_name_string(d, "_HID");
	aml_byte(d, AML_DWORD);
	uint32_t id = eisaid("PNP0A06");
	aml_bytes(d, &id, 4);
	name_string_obj(d, "_UID", "CPU Hotplug resources");
	const uint8_t crs[] = { 0x47, 0x01, KL_CPUHP_BASE & 0xff, KL_CPUHP_BASE >> 8,
				KL_CPUHP_BASE & 0xff, KL_CPUHP_BASE >> 8, 0x01, KL_CPUHP_LEN,
				0x79, 0x00 };
	name_buffer(d, "_CRS", crs, sizeof(crs));
	aml_opregion(d, "PRST", AML_REGION_SYSTEM_IO, KL_CPUHP_BASE, KL_CPUHP_LEN);
	static const char *const n1[] = { NULL, "CPEN", "CINS", "CRMV", "CEJ0", NULL, "CCMD" };
	static const unsigned b1[] = { 32, 1, 1, 1, 1, 4, 8 };
	field(d, "PRST", 0x01 | 0x40, n1, b1, 7);        /* ByteAcc, NoLock, WriteAsZeros */
	static const char *const n2[] = { "CSEL", NULL, "CDAT" };
	static const unsigned b2[] = { 32, 32, 32 };
	field(d, "PRST", 0x03, n2, b2, 3);               /* DWordAcc, NoLock, Preserve */
	GByteArray *ini = aml_new();
	store_int_name(ini, 0, "CSEL");
	aml_method(d, "_INI", 0, true, ini);
	aml_device(a, RES, d);
}

static void cpu_name(char *buf, size_t n, unsigned i)
{
	snprintf(buf, n, "C%03X", i & 0xfff);
}

void kl_acpi_cpuhp_aml(GByteArray *aml, unsigned slots)
{
	res_device(aml);
	GByteArray *c = aml_new();
	name_string_obj(c, "_HID", "ACPI0010");
	aml_byte(c, AML_NAME);
	aml_name_string(c, "_CID");
	aml_byte(c, AML_DWORD);
	uint32_t cid = eisaid("PNP0A05");
	aml_bytes(c, &cid, 4);

	/* CTFY (uid, event) */
	GByteArray *m = aml_new();
	for (unsigned i = 0; i < slots; i++) {
		char nm[5];
		cpu_name(nm, sizeof(nm), i);
		GByteArray *p = aml_new(), *b = aml_new();
		aml_byte(p, OP_LEQUAL);
		aml_byte(p, AML_ARG0);
		aml_int(p, i);
		aml_byte(b, AML_NOTIFY);
		aml_name_string(b, nm);
		aml_byte(b, AML_ARG0 + 1);
		aml_if(m, p, b);
	}
	aml_method(c, "CTFY", 2, false, m);

	/* CSTA (uid) */
	m = aml_new();
	store_arg_name(m, 0, RES ".CSEL");
	store_int_local(m, 0, 0);
	GByteArray *b = aml_new();
	store_int_local(b, 0xf, 0);
	aml_if(m, lequal_name(RES ".CPEN", 1), b);
	aml_byte(m, OP_RETURN);
	aml_byte(m, AML_LOCAL0);
	aml_method(c, "CSTA", 1, true, m);

	/* CEJ0 (uid) */
	m = aml_new();
	store_arg_name(m, 0, RES ".CSEL");
	store_int_name(m, 1, RES ".CEJ0");
	aml_method(c, "CEJ0", 1, true, m);

	/* CSCN */
	m = aml_new();
	store_int_local(m, 1, 0);
	GByteArray *w = aml_new();
	aml_byte(w, OP_LEQUAL);                 /* predicate: Local0 == 1 */
	aml_byte(w, AML_LOCAL0);
	aml_int(w, 1);
	store_int_local(w, 0, 0);
	store_int_name(w, 0, RES ".CCMD");
	for (unsigned k = 0; k < 2; k++) {
		const char *flag = k == 0 ? RES ".CINS" : RES ".CRMV";
		GByteArray *t = aml_new();
		aml_name_string(t, "CTFY");
		aml_name_string(t, RES ".CDAT");
		aml_int(t, k == 0 ? 1 : 3);
		store_int_name(t, 1, flag);
		store_int_local(t, 1, 0);
		if (k == 0) {
			aml_if(w, lequal_name(flag, 1), t);
		} else {
			GByteArray *e = aml_new();
			aml_if(e, lequal_name(flag, 1), t);
			static const uint8_t op[] = { OP_ELSE };
			aml_wrap(w, op, 1, NULL, e);
		}
	}
	static const uint8_t wop[] = { OP_WHILE };
	aml_wrap(m, wop, 1, NULL, w);
	aml_method(c, "CSCN", 0, true, m);

	for (unsigned i = 0; i < slots; i++) {
		char nm[5];
		cpu_name(nm, sizeof(nm), i);
		GByteArray *p = aml_new();
		aml_byte(p, (uint8_t)i);        /* ProcID */
		aml_bytes(p, "\0\0\0\0", 4);    /* PblkAddr */
		aml_byte(p, 0);                 /* PblkLen */
		GByteArray *sta = aml_new();
		aml_byte(sta, OP_RETURN);
		aml_name_string(sta, "CSTA");
		aml_int(sta, i);
		aml_method(p, "_STA", 0, true, sta);
		const uint8_t mat[8] = { 0, 8, (uint8_t)i, (uint8_t)i, 1, 0, 0, 0 };
		name_buffer(p, "_MAT", mat, sizeof(mat));
		if (i != 0) {
			GByteArray *ej = aml_new();
			aml_name_string(ej, "CEJ0");
			aml_int(ej, i);
			aml_method(p, "_EJ0", 1, false, ej);
		}
		static const uint8_t op[] = { AML_EXT, OP_PROCESSOR };
		aml_wrap(c, op, 2, nm, p);
	}
	aml_device(aml, "\\_SB.CPUS", c);

	GByteArray *gpe = aml_new(), *e02 = aml_new();
	aml_name_string(e02, "\\_SB.CPUS.CSCN");
	aml_method(gpe, "_E02", 0, false, e02);
	aml_scope(aml, "\\_GPE", gpe);
}
