/* VM state sections (include/kvmlite/vmstate.h): the byte-order-fixed
 * stream primitives and the per-VM registry of sections. */
#include <stdarg.h>
#include <string.h>

#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

/* ---- writer ---- */
void kl_vms_out_init(struct kl_vms_out *o)
{
	o->buf = g_byte_array_new();
}

void kl_vms_out_free(struct kl_vms_out *o)
{
	if (o->buf)
		g_byte_array_free(o->buf, TRUE);
	o->buf = NULL;
}

void kl_vms_put_bytes(struct kl_vms_out *o, const void *p, size_t n)
{
	if (n)
		g_byte_array_append(o->buf, p, (guint)n);
}

static void put_le(struct kl_vms_out *o, uint64_t v, unsigned n)
{
	uint8_t b[8];
	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	kl_vms_put_bytes(o, b, n);
}

void kl_vms_put_u8(struct kl_vms_out *o, uint8_t v) { put_le(o, v, 1); }
void kl_vms_put_u16(struct kl_vms_out *o, uint16_t v) { put_le(o, v, 2); }
void kl_vms_put_u32(struct kl_vms_out *o, uint32_t v) { put_le(o, v, 4); }
void kl_vms_put_u64(struct kl_vms_out *o, uint64_t v) { put_le(o, v, 8); }

void kl_vms_put_str(struct kl_vms_out *o, const char *s)
{
	if (!s) {
		kl_vms_put_u32(o, 0xffffffffu);
		return;
	}
	size_t n = strlen(s);
	kl_vms_put_u32(o, (uint32_t)n);
	kl_vms_put_bytes(o, s, n);
}

/* ---- reader ---- */
void kl_vms_in_init(struct kl_vms_in *in, const void *p, size_t len)
{
	in->p = p;
	in->len = len;
	in->pos = 0;
	in->err = NULL;
}

void kl_vms_in_free(struct kl_vms_in *in)
{
	g_free(in->err);
	in->err = NULL;
}

void kl_vms_fail(struct kl_vms_in *in, const char *fmt, ...)
{
	if (in->err)
		return;
	va_list ap;
	va_start(ap, fmt);
	in->err = g_strdup_vprintf(fmt, ap);
	va_end(ap);
}

bool kl_vms_failed(const struct kl_vms_in *in)
{
	return in->err != NULL;
}

size_t kl_vms_remaining(const struct kl_vms_in *in)
{
	return in->err ? 0 : in->len - in->pos;
}

void kl_vms_get_bytes(struct kl_vms_in *in, void *dst, size_t n)
{
	if (in->err || n > in->len - in->pos) {
		if (!in->err)
			kl_vms_fail(in, "state ends %zu bytes short", n - (in->len - in->pos));
		if (n)
			memset(dst, 0, n);
		return;
	}
	if (n)
		memcpy(dst, in->p + in->pos, n);
	in->pos += n;
}

static uint64_t get_le(struct kl_vms_in *in, unsigned n)
{
	uint8_t b[8];
	uint64_t v = 0;
	kl_vms_get_bytes(in, b, n);
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

uint8_t kl_vms_get_u8(struct kl_vms_in *in) { return (uint8_t)get_le(in, 1); }
uint16_t kl_vms_get_u16(struct kl_vms_in *in) { return (uint16_t)get_le(in, 2); }
uint32_t kl_vms_get_u32(struct kl_vms_in *in) { return (uint32_t)get_le(in, 4); }
uint64_t kl_vms_get_u64(struct kl_vms_in *in) { return get_le(in, 8); }

uint32_t kl_vms_get_u32_max(struct kl_vms_in *in, uint32_t max, const char *what)
{
	uint32_t v = kl_vms_get_u32(in);
	if (v > max) {
		kl_vms_fail(in, "%s %u is out of range (max %u)", what, v, max);
		return 0;
	}
	return v;
}

uint64_t kl_vms_get_u64_max(struct kl_vms_in *in, uint64_t max, const char *what)
{
	uint64_t v = kl_vms_get_u64(in);
	if (v > max) {
		kl_vms_fail(in, "%s %" G_GUINT64_FORMAT " is out of range (max %" G_GUINT64_FORMAT ")",
			    what, v, max);
		return 0;
	}
	return v;
}

char *kl_vms_get_str(struct kl_vms_in *in, size_t max)
{
	uint32_t n = kl_vms_get_u32(in);
	if (in->err || n == 0xffffffffu)
		return NULL;
	if (n > max || n > kl_vms_remaining(in)) {
		kl_vms_fail(in, "string of %u bytes is too long", n);
		return NULL;
	}
	char *s = g_malloc(n + 1);
	kl_vms_get_bytes(in, s, n);
	s[n] = '\0';
	if (memchr(s, '\0', n)) {
		kl_vms_fail(in, "string holds a NUL byte");
		g_free(s);
		return NULL;
	}
	return s;
}

/* ---- registry ---- */
static void entry_free(gpointer p)
{
	struct kl_vmstate_entry *e = p;
	g_free(e->name);
	g_free(e);
}

void kl_vmstate_register(struct kl_vm *vm, const char *instance,
			 const struct kl_vmstate_ops *ops, void *opaque)
{
	if (!vm->vmstate)
		vm->vmstate = g_ptr_array_new_with_free_func(entry_free);
	struct kl_vmstate_entry *e = g_new0(struct kl_vmstate_entry, 1);
	e->name = g_strdup_printf("%s/%s", ops->kind, instance ? instance : "0");
	g_assert(!kl_vmstate_find(vm, e->name)); /* a programming error */
	e->ops = ops;
	e->opaque = opaque;
	g_ptr_array_add(vm->vmstate, e);
}

void kl_vmstate_unregister(struct kl_vm *vm, const struct kl_vmstate_ops *ops, void *opaque)
{
	if (!vm->vmstate)
		return;
	for (guint i = 0; i < vm->vmstate->len; i++) {
		struct kl_vmstate_entry *e = g_ptr_array_index(vm->vmstate, i);
		if (e->ops == ops && e->opaque == opaque) {
			g_ptr_array_remove_index(vm->vmstate, i);
			return;
		}
	}
}

unsigned kl_vmstate_count(const struct kl_vm *vm)
{
	return vm->vmstate ? vm->vmstate->len : 0;
}

const struct kl_vmstate_entry *kl_vmstate_get(const struct kl_vm *vm, unsigned i)
{
	if (!vm->vmstate || i >= vm->vmstate->len)
		return NULL;
	return g_ptr_array_index(vm->vmstate, i);
}

const struct kl_vmstate_entry *kl_vmstate_find(const struct kl_vm *vm, const char *name)
{
	for (unsigned i = 0; i < kl_vmstate_count(vm); i++) {
		const struct kl_vmstate_entry *e = kl_vmstate_get(vm, i);
		if (strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

int kl_vmstate_load_section(const struct kl_vmstate_entry *e, const void *p, size_t len,
			    uint32_t version, char **err)
{
	struct kl_vms_in in;
	kl_vms_in_init(&in, p, len);
	char *e2 = NULL;
	int rc = e->ops->load(e->opaque, &in, version, &e2);
	if (rc == 0 && kl_vms_failed(&in))
		rc = -1;
	if (rc == 0 && kl_vms_remaining(&in)) {
		e2 = g_strdup_printf("%zu bytes left over", kl_vms_remaining(&in));
		rc = -1;
	}
	if (rc < 0)
		*err = e2 ? e2 : g_strdup(in.err ? in.err : "error");
	else
		g_free(e2);
	kl_vms_in_free(&in);
	return rc;
}

void kl_vmstate_free_all(struct kl_vm *vm)
{
	if (vm->vmstate)
		g_ptr_array_free(vm->vmstate, TRUE);
	vm->vmstate = NULL;
}
