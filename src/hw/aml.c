/* Minimal AML encoder: see aml.h.  Encodings from ACPI 6.4, 20.2. */
#include "aml.h"

#include <string.h>

GByteArray *aml_new(void)
{
	return g_byte_array_new();
}

void aml_bytes(GByteArray *a, const void *p, size_t n)
{
	g_byte_array_append(a, p, (guint)n);
}

void aml_byte(GByteArray *a, uint8_t b)
{
	g_byte_array_append(a, &b, 1);
}

void aml_int(GByteArray *a, uint64_t v)
{
	uint8_t b[9];
	if (v == 0 || v == 1) {
		aml_byte(a, v ? AML_ONE : AML_ZERO);
		return;
	}
	unsigned n = v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffULL ? 4 : 8;
	b[0] = n == 1 ? AML_BYTE : n == 2 ? AML_WORD : n == 4 ? AML_DWORD : AML_QWORD;
	for (unsigned i = 0; i < n; i++)
		b[1 + i] = (uint8_t)(v >> (8 * i));
	aml_bytes(a, b, 1 + n);
}

/* The encoding counts its own bytes: 1 byte up to 63, else 2-4 bytes, low
 * nibble first. */
void aml_pkglen(GByteArray *a, size_t len)
{
	if (len + 1 <= 0x3f) {
		aml_byte(a, (uint8_t)(len + 1));
		return;
	}
	unsigned n = len + 2 < (1u << 12) ? 2 : len + 3 < (1u << 20) ? 3 : 4;
	size_t total = len + n;
	aml_byte(a, (uint8_t)((n - 1) << 6 | (total & 0xf)));
	for (unsigned i = 1; i < n; i++)
		aml_byte(a, (uint8_t)(total >> (4 + 8 * (i - 1))));
}

/* One NameSeg: up to 4 characters, padded with '_'. */
static void nameseg(GByteArray *a, const char *s, size_t len)
{
	char seg[4] = { '_', '_', '_', '_' };
	memcpy(seg, s, len > 4 ? 4 : len);
	aml_bytes(a, seg, 4);
}

void aml_name_string(GByteArray *a, const char *name)
{
	while (*name == '\\' || *name == '^')
		aml_byte(a, (uint8_t)*name++);
	unsigned nseg = *name ? 1 : 0;
	for (const char *p = name; *p; p++)
		nseg += *p == '.';
	if (nseg == 0) {
		aml_byte(a, 0x00);              /* NullName */
		return;
	}
	if (nseg == 2) {
		aml_byte(a, 0x2e);              /* DualNamePrefix */
	} else if (nseg > 2) {
		aml_byte(a, 0x2f);              /* MultiNamePrefix */
		aml_byte(a, (uint8_t)nseg);
	}
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t len = dot ? (size_t)(dot - name) : strlen(name);
		nameseg(a, name, len);
		name += len + (dot ? 1 : 0);
	}
}

void aml_wrap(GByteArray *a, const uint8_t *op, size_t oplen, const char *name, GByteArray *body)
{
	GByteArray *n = aml_new();
	if (name)
		aml_name_string(n, name);
	aml_bytes(a, op, oplen);
	aml_pkglen(a, n->len + body->len);
	aml_bytes(a, n->data, n->len);
	aml_bytes(a, body->data, body->len);
	g_byte_array_free(n, TRUE);
	g_byte_array_free(body, TRUE);
}

void aml_name_int(GByteArray *a, const char *seg, uint64_t v)
{
	aml_byte(a, AML_NAME);
	aml_name_string(a, seg);
	aml_int(a, v);
}

void aml_scope(GByteArray *a, const char *name, GByteArray *body)
{
	static const uint8_t op[] = { AML_SCOPE };
	aml_wrap(a, op, 1, name, body);
}

void aml_device(GByteArray *a, const char *name, GByteArray *body)
{
	static const uint8_t op[] = { AML_EXT, AML_DEVICE };
	aml_wrap(a, op, 2, name, body);
}

void aml_method(GByteArray *a, const char *name, unsigned nargs, bool serialized, GByteArray *body)
{
	/* MethodFlags after the name: ArgCount bits 0-2, SerializeFlag bit 3 */
	GByteArray *b = aml_new();
	aml_byte(b, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
	aml_bytes(b, body->data, body->len);
	g_byte_array_free(body, TRUE);
	static const uint8_t op[] = { AML_METHOD };
	aml_wrap(a, op, 1, name, b);
}

void aml_if(GByteArray *a, GByteArray *predicate, GByteArray *body)
{
	GByteArray *b = aml_new();
	aml_bytes(b, predicate->data, predicate->len);
	aml_bytes(b, body->data, body->len);
	g_byte_array_free(predicate, TRUE);
	g_byte_array_free(body, TRUE);
	static const uint8_t op[] = { AML_IF };
	aml_wrap(a, op, 1, NULL, b);
}

void aml_opregion(GByteArray *a, const char *name, uint8_t space, uint64_t offset, uint64_t len)
{
	aml_byte(a, AML_EXT);
	aml_byte(a, AML_OPREGION);
	aml_name_string(a, name);
	aml_byte(a, space);
	aml_int(a, offset);
	aml_int(a, len);
}

void aml_field_dword(GByteArray *a, const char *region, const char *const *names,
		     const unsigned *bits, unsigned n)
{
	GByteArray *b = aml_new();
	aml_byte(b, 0x03 | 0x40);               /* DWordAcc, NoLock, WriteAsZeros */
	for (unsigned i = 0; i < n; i++) {
		nameseg(b, names[i], strlen(names[i]));
		aml_pkglen(b, bits[i] - 1);     /* NamedField: bit width as PkgLength */
	}
	static const uint8_t op[] = { AML_EXT, AML_FIELD };
	aml_wrap(a, op, 2, region, b);
}

void aml_notify(GByteArray *a, const char *object, uint64_t value)
{
	aml_byte(a, AML_NOTIFY);
	aml_name_string(a, object);
	aml_int(a, value);
}

void aml_store_name_local(GByteArray *a, const char *name, unsigned local)
{
	aml_byte(a, AML_STORE);
	aml_name_string(a, name);
	aml_byte(a, (uint8_t)(AML_LOCAL0 + local));
}

void aml_and_local_int(GByteArray *a, unsigned local, uint64_t mask)
{
	aml_byte(a, AML_AND);
	aml_byte(a, (uint8_t)(AML_LOCAL0 + local));
	aml_int(a, mask);
	aml_byte(a, 0x00);                      /* Target: NullName */
}
