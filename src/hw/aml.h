/* Minimal AML encoder (ACPI 6.x, chapter 20) for the DSDT (src/hw/aml.c).
 *
 * Every builder appends to a GByteArray.  Functions taking a `body` wrap it
 * (op, PkgLength, name, body) and free it: build the body in a fresh
 * aml_new() array first, then hand it over.  Names are NameStrings: a
 * NameSeg ("PCNT"; shorter segments are padded with '_'), a path with dots
 * ("\\_SB.PCI0.PCNT", "S08.PCNT") or a root/parent prefix ("\\", "^").
 */
#ifndef KVMLITE_HW_AML_H
#define KVMLITE_HW_AML_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AML_ZERO 0x00
#define AML_ONE 0x01
#define AML_NAME 0x08
#define AML_BYTE 0x0a
#define AML_WORD 0x0b
#define AML_DWORD 0x0c
#define AML_QWORD 0x0e
#define AML_SCOPE 0x10
#define AML_BUFFER 0x11
#define AML_PACKAGE 0x12
#define AML_METHOD 0x14
#define AML_LOCAL0 0x60
#define AML_ARG0 0x68
#define AML_STORE 0x70
#define AML_SHIFT_LEFT 0x79
#define AML_AND 0x7b
#define AML_NOTIFY 0x86
#define AML_IF 0xa0
#define AML_EXT 0x5b
#define AML_OPREGION 0x80 /* after AML_EXT */
#define AML_FIELD 0x81    /* after AML_EXT */
#define AML_DEVICE 0x82   /* after AML_EXT */

#define AML_REGION_SYSTEM_IO 0x01

GByteArray *aml_new(void);
void aml_bytes(GByteArray *a, const void *p, size_t n);
void aml_byte(GByteArray *a, uint8_t b);
/* Integer with the shortest encoding (ZeroOp/OneOp/Byte/Word/DWord/QWord). */
void aml_int(GByteArray *a, uint64_t v);
/* PkgLength for `len` bytes of content following it. */
void aml_pkglen(GByteArray *a, size_t len);
/* NameString (see above). */
void aml_name_string(GByteArray *a, const char *name);
/* op [ext] PkgLength [NameString] body; frees body. */
void aml_wrap(GByteArray *a, const uint8_t *op, size_t oplen, const char *name, GByteArray *body);
/* Name (seg, integer) */
void aml_name_int(GByteArray *a, const char *seg, uint64_t v);
/* Scope (name) { body } / Device (name) { body } */
void aml_scope(GByteArray *a, const char *name, GByteArray *body);
void aml_device(GByteArray *a, const char *name, GByteArray *body);
/* Method (name, nargs, NotSerialized|Serialized) { body } */
void aml_method(GByteArray *a, const char *name, unsigned nargs, bool serialized, GByteArray *body);
/* If (predicate) { body }: predicate is a TermArg array (freed too). */
void aml_if(GByteArray *a, GByteArray *predicate, GByteArray *body);
/* OperationRegion (name, space, offset, len) */
void aml_opregion(GByteArray *a, const char *name, uint8_t space, uint64_t offset, uint64_t len);
/* Field (region, DWordAcc, NoLock, WriteAsZeros) { names[i], bits[i] ... } */
void aml_field_dword(GByteArray *a, const char *region, const char *const *names,
		     const unsigned *bits, unsigned n);
/* Notify (object, value) */
void aml_notify(GByteArray *a, const char *object, uint64_t value);
/* Store (src, dst): src/dst are single-byte operands (LocalN/ArgN) or
 * names, written by the callers with the helpers below. */
void aml_store_name_local(GByteArray *a, const char *name, unsigned local);
/* And (LocalN, mask, Zero) as a TermArg */
void aml_and_local_int(GByteArray *a, unsigned local, uint64_t mask);

#endif
