/* The migration stream: header (machine shape), RAM (ram.c), device
 * sections, end marker; the reader checks the shape against this VM and
 * each record's bounds and CRC-32 (include/kvmlite/migration.h). */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "kvmlite/mem.h"
#include "kvmlite/vm.h"
#include "stream_int.h"

#define MAX_HEADER (1u << 20)

static char *cpu_model;

void kl_mig_set_cpu_model(const char *model)
{
	g_free(cpu_model);
	cpu_model = model ? g_strdup(model) : NULL;
}

static const char *model_name(void)
{
	return cpu_model ? cpu_model : "";
}

/* ---- raw I/O ---- */
int kl_mig_write(struct kl_mig_out *out, const void *p, size_t n)
{
	const uint8_t *b = p;
	if (out->mem) {
		if (n > G_MAXUINT - out->mem->len) {
			if (!out->err)
				out->err = g_strdup("the VM state exceeds 4 GiB");
			return -1;
		}
		g_byte_array_append(out->mem, b, (guint)n);
		out->pos += n;
		return 0;
	}
	while (n) {
		ssize_t r = write(out->fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (!out->err)
				out->err = g_strdup_printf("cannot write the migration stream: %s",
							   r < 0 ? g_strerror(errno) : "short write");
			return -1;
		}
		b += r;
		n -= (size_t)r;
		out->pos += (uint64_t)r;
	}
	return 0;
}

int kl_mig_write_vms(struct kl_mig_out *out, struct kl_vms_out *o)
{
	return kl_mig_write(out, o->buf->data, o->buf->len);
}

int kl_mig_skip_out(struct kl_mig_out *out, uint64_t n)
{
	if (!n)
		return 0;
	if (out->file) {
		if (lseek(out->fd, (off_t)n, SEEK_CUR) < 0) {
			if (!out->err)
				out->err = g_strdup_printf("cannot seek in the migration file: %s",
							   g_strerror(errno));
			return -1;
		}
		out->pos += n;
		return 0;
	}
	static const uint8_t zeros[4096];
	while (n) {
		size_t k = n < sizeof(zeros) ? (size_t)n : sizeof(zeros);
		if (kl_mig_write(out, zeros, k) < 0)
			return -1;
		n -= k;
	}
	return 0;
}

int kl_mig_read(struct kl_mig_in *in, void *p, size_t n, char **err)
{
	uint8_t *b = p;
	if (in->fd < 0) {
		if (in->pos > in->len || n > in->len - in->pos) {
			*err = g_strdup_printf("the migration stream ends early (at byte %llu)",
					       (unsigned long long)in->len);
			return -1;
		}
		memcpy(b, in->buf + in->pos, n);
		in->pos += n;
		return 0;
	}
	while (n) {
		ssize_t r = read(in->fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			*err = r < 0 ? g_strdup_printf("cannot read the migration stream: %s",
						       g_strerror(errno))
				     : g_strdup_printf("the migration stream ends early (at byte %llu)",
						       (unsigned long long)in->pos);
			return -1;
		}
		b += r;
		n -= (size_t)r;
		in->pos += (uint64_t)r;
	}
	return 0;
}

int kl_mig_skip_in(struct kl_mig_in *in, uint64_t n, char **err)
{
	if (!n)
		return 0;
	if (in->fd < 0) {
		if (in->pos > in->len || n > in->len - in->pos) {
			*err = g_strdup_printf("the migration stream ends early (at byte %llu)",
					       (unsigned long long)in->len);
			return -1;
		}
		in->pos += n;
		return 0;
	}
	if (in->file) {
		if (lseek(in->fd, (off_t)n, SEEK_CUR) < 0) {
			*err = g_strdup_printf("cannot seek in the migration file: %s", g_strerror(errno));
			return -1;
		}
		in->pos += n;
		return 0;
	}
	uint8_t tmp[4096];
	while (n) {
		size_t k = n < sizeof(tmp) ? (size_t)n : sizeof(tmp);
		if (kl_mig_read(in, tmp, k, err) < 0)
			return -1;
		n -= k;
	}
	return 0;
}

uint32_t kl_mig_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t kl_mig_get_u64(const uint8_t *p)
{
	return (uint64_t)kl_mig_get_u32(p) | (uint64_t)kl_mig_get_u32(p + 4) << 32;
}

/* ---- header ---- */
static void put_header(struct kl_vm *vm, struct kl_vms_out *o)
{
	struct kl_vms_out p;
	kl_vms_out_init(&p);
	kl_vms_put_u64(&p, vm->mem.ram_size);
	kl_vms_put_u32(&p, vm->mem.nregions);
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		kl_vms_put_u64(&p, vm->mem.regions[i].gpa);
		kl_vms_put_u64(&p, vm->mem.regions[i].size);
	}
	kl_vms_put_u32(&p, vm->ncpus);
	kl_vms_put_str(&p, model_name());
	unsigned n = kl_vmstate_count(vm);
	kl_vms_put_u32(&p, n);
	for (unsigned i = 0; i < n; i++) {
		const struct kl_vmstate_entry *e = kl_vmstate_get(vm, i);
		kl_vms_put_str(&p, e->name);
		kl_vms_put_u32(&p, e->ops->version);
	}
	kl_vms_put_bytes(o, KL_MIG_MAGIC, 8);
	kl_vms_put_u32(o, KL_MIG_VERSION);
	kl_vms_put_u32(o, p.buf->len);
	kl_vms_put_bytes(o, p.buf->data, p.buf->len);
	kl_vms_put_u32(o, (uint32_t)crc32_z(0, p.buf->data, p.buf->len));
	kl_vms_out_free(&p);
}

static int save_section(const struct kl_vmstate_entry *e, struct kl_mig_out *out, char **err)
{
	struct kl_vms_out s, h;
	kl_vms_out_init(&s);
	char *e2 = NULL;
	if (e->ops->save(e->opaque, &s, &e2) < 0) {
		*err = g_strdup_printf("cannot save %s: %s", e->name, e2 ? e2 : "error");
		g_free(e2);
		kl_vms_out_free(&s);
		return -1;
	}
	kl_vms_out_init(&h);
	kl_vms_put_u8(&h, KL_REC_SECTION);
	kl_vms_put_str(&h, e->name);
	kl_vms_put_u32(&h, e->ops->version);
	kl_vms_put_u32(&h, s.buf->len);
	kl_vms_put_bytes(&h, s.buf->data, s.buf->len);
	kl_vms_put_u32(&h, (uint32_t)crc32_z(0, s.buf->data, s.buf->len));
	int r = kl_mig_write_vms(out, &h);
	kl_vms_out_free(&h);
	kl_vms_out_free(&s);
	return r;
}

int kl_mig_quiesce(struct kl_vm *vm, char **err)
{
	for (unsigned i = 0; i < kl_vmstate_count(vm); i++) {
		const struct kl_vmstate_entry *e = kl_vmstate_get(vm, i);
		char *e2 = NULL;
		if (e->ops->quiesce && e->ops->quiesce(e->opaque, &e2) < 0) {
			*err = g_strdup_printf("cannot quiesce %s: %s", e->name, e2 ? e2 : "error");
			g_free(e2);
			return -1;
		}
	}
	return 0;
}

int kl_mig_save_header(struct kl_vm *vm, struct kl_mig_out *out)
{
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	put_header(vm, &o);
	int r = kl_mig_write_vms(out, &o);
	kl_vms_out_free(&o);
	return r;
}

int kl_mig_save_devices(struct kl_vm *vm, struct kl_mig_out *out, char **err)
{
	unsigned n = kl_vmstate_count(vm);
	for (unsigned i = 0; i < n; i++)
		if (save_section(kl_vmstate_get(vm, i), out, err) < 0) {
			if (!*err)
				goto io_err;
			return -1;
		}
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	kl_vms_put_u8(&o, KL_REC_END);
	kl_vms_put_u32(&o, n);
	kl_vms_put_u32(&o, KL_REC_END_TAG);
	int r = kl_mig_write_vms(out, &o);
	kl_vms_out_free(&o);
	if (r == 0)
		return 0;
io_err:
	*err = g_strdup(out->err ? out->err : "cannot write the migration stream");
	return -1;
}

int kl_mig_save(struct kl_vm *vm, struct kl_mig_out *out, struct kl_mig_stats *st, char **err)
{
	/* in-flight work first: it may still write guest RAM */
	if (kl_mig_quiesce(vm, err) < 0)
		return -1;
	uint64_t start = out->pos;
	if (kl_mig_save_header(vm, out) < 0 || kl_mig_ram_save(vm, out, st) < 0) {
		*err = g_strdup(out->err ? out->err : "cannot write the migration stream");
		return -1;
	}
	if (kl_mig_save_devices(vm, out, err) < 0)
		return -1;
	st->bytes = out->pos - start;
	return 0;
}

/* ---- reader ---- */
struct load_ctx {
	struct kl_vm *vm;
	uint32_t *src_version;   /* per destination section: the source's version */
	bool *loaded;
	unsigned nsections;
};

static int check_shape(struct load_ctx *c, const uint8_t *p, size_t len, char **err)
{
	struct kl_vm *vm = c->vm;
	struct kl_vms_in in;
	kl_vms_in_init(&in, p, len);
	int rc = -1;
	char *model = NULL;
	uint64_t ram = kl_vms_get_u64(&in);
	uint32_t nreg = kl_vms_get_u32_max(&in, KL_MAX_MEM_REGIONS, "number of RAM regions");
	uint64_t gpa[KL_MAX_MEM_REGIONS], size[KL_MAX_MEM_REGIONS];
	for (uint32_t i = 0; i < nreg; i++) {
		gpa[i] = kl_vms_get_u64(&in);
		size[i] = kl_vms_get_u64(&in);
	}
	uint32_t ncpus = kl_vms_get_u32(&in);
	model = kl_vms_get_str(&in, KL_MIG_MAX_NAME);
	if (kl_vms_failed(&in))
		goto bad;
	if (ram != vm->mem.ram_size) {
		*err = g_strdup_printf("RAM size differs: the source has %llu KiB (-m %lluM), this "
				       "destination %llu KiB", (unsigned long long)(ram >> 10),
				       (unsigned long long)(ram >> 20),
				       (unsigned long long)(vm->mem.ram_size >> 10));
		goto out;
	}
	bool same = nreg == vm->mem.nregions;
	for (uint32_t i = 0; same && i < nreg; i++)
		same = gpa[i] == vm->mem.regions[i].gpa && size[i] == vm->mem.regions[i].size;
	if (!same) {
		*err = g_strdup("the RAM layout differs from this destination's");
		goto out;
	}
	if (ncpus != vm->ncpus) {
		*err = g_strdup_printf("vCPU count differs: the source has %u (-smp %u), this "
				       "destination %u", ncpus, ncpus, vm->ncpus);
		goto out;
	}
	if (!model || strcmp(model, model_name())) {
		*err = g_strdup_printf("CPU model differs: the source has -cpu '%s', this destination "
				       "-cpu '%s' ('' = the default)", model ? model : "(none)",
				       model_name());
		goto out;
	}
	uint32_t n = kl_vms_get_u32_max(&in, KL_MIG_MAX_SECTIONS, "number of sections");
	for (uint32_t i = 0; i < n && !kl_vms_failed(&in); i++) {
		char *name = kl_vms_get_str(&in, KL_MIG_MAX_NAME);
		uint32_t ver = kl_vms_get_u32(&in);
		if (kl_vms_failed(&in) || !name) {
			g_free(name);
			kl_vms_fail(&in, "bad section name");
			break;
		}
		unsigned k;
		for (k = 0; k < c->nsections; k++)
			if (!strcmp(kl_vmstate_get(vm, k)->name, name))
				break;
		if (k == c->nsections) {
			*err = g_strdup_printf("the source has section '%s' that this destination "
					       "lacks (a device missing here?)", name);
			g_free(name);
			goto out;
		}
		const struct kl_vmstate_ops *ops = kl_vmstate_get(vm, k)->ops;
		if (c->src_version[k]) {
			*err = g_strdup_printf("section '%s' is listed twice", name);
			g_free(name);
			goto out;
		}
		if (ver == 0 || ver < ops->min_version || ver > ops->version) {
			*err = g_strdup_printf("section '%s' has version %u; this destination loads "
					       "versions %u to %u", name, ver, ops->min_version,
					       ops->version);
			g_free(name);
			goto out;
		}
		c->src_version[k] = ver;
		g_free(name);
	}
	if (kl_vms_failed(&in))
		goto bad;
	for (unsigned k = 0; k < c->nsections; k++)
		if (!c->src_version[k]) {
			*err = g_strdup_printf("this destination has section '%s' that the source "
					       "lacks (a device missing on the source?)",
					       kl_vmstate_get(vm, k)->name);
			goto out;
		}
	if (kl_vms_remaining(&in)) {
		*err = g_strdup("the stream header has trailing bytes");
		goto out;
	}
	rc = 0;
	goto out;
bad:
	*err = g_strdup_printf("bad stream header: %s", in.err ? in.err : "malformed");
out:
	g_free(model);
	kl_vms_in_free(&in);
	return rc;
}

static int read_header(struct load_ctx *c, struct kl_mig_in *in, char **err)
{
	uint8_t h[16];
	if (kl_mig_read(in, h, sizeof(h), err) < 0)
		return -1;
	if (memcmp(h, KL_MIG_MAGIC, 8)) {
		*err = g_strdup("not a kvmlite migration stream (bad magic)");
		return -1;
	}
	uint32_t ver = kl_mig_get_u32(h + 8), len = kl_mig_get_u32(h + 12);
	if (ver != KL_MIG_VERSION) {
		*err = g_strdup_printf("migration stream version %u is not supported (this kvmlite "
				       "reads version %u)", ver, KL_MIG_VERSION);
		return -1;
	}
	if (len > MAX_HEADER) {
		*err = g_strdup_printf("stream header of %u bytes is too long", len);
		return -1;
	}
	uint8_t *p = g_malloc(len + 4);
	int rc = kl_mig_read(in, p, len + 4, err);
	if (rc == 0 && kl_mig_get_u32(p + len) != (uint32_t)crc32_z(0, p, len)) {
		*err = g_strdup("the stream header's CRC-32 does not match");
		rc = -1;
	}
	if (rc == 0)
		rc = check_shape(c, p, len, err);
	g_free(p);
	return rc;
}

static int load_section(struct load_ctx *c, struct kl_mig_in *in, char **err)
{
	uint8_t b[4];
	if (kl_mig_read(in, b, 4, err) < 0)
		return -1;
	uint32_t nlen = kl_mig_get_u32(b);
	if (nlen == 0 || nlen > KL_MIG_MAX_NAME) {
		*err = g_strdup_printf("section name of %u bytes", nlen);
		return -1;
	}
	char name[KL_MIG_MAX_NAME + 1];
	if (kl_mig_read(in, name, nlen, err) < 0)
		return -1;
	name[nlen] = '\0';
	if (strlen(name) != nlen) {
		*err = g_strdup("section name holds a NUL byte");
		return -1;
	}
	unsigned k;
	for (k = 0; k < c->nsections; k++)
		if (!strcmp(kl_vmstate_get(c->vm, k)->name, name))
			break;
	if (k == c->nsections) {
		*err = g_strdup_printf("section '%s' was not announced in the header", name);
		return -1;
	}
	if (c->loaded[k]) {
		*err = g_strdup_printf("section '%s' appears twice", name);
		return -1;
	}
	uint8_t vl[8];
	if (kl_mig_read(in, vl, 8, err) < 0)
		return -1;
	uint32_t ver = kl_mig_get_u32(vl), len = kl_mig_get_u32(vl + 4);
	if (ver != c->src_version[k]) {
		*err = g_strdup_printf("section '%s': version %u, the header said %u", name, ver,
				       c->src_version[k]);
		return -1;
	}
	if (len > KL_MIG_MAX_SECTION_LEN) {
		*err = g_strdup_printf("section '%s' of %u bytes is too long", name, len);
		return -1;
	}
	uint8_t *p = g_malloc(len + 4);
	int rc = -1;
	if (kl_mig_read(in, p, len + 4, err) < 0)
		goto out;
	if (kl_mig_get_u32(p + len) != (uint32_t)crc32_z(0, p, len)) {
		*err = g_strdup_printf("section '%s': CRC-32 does not match", name);
		goto out;
	}
	const struct kl_vmstate_entry *e = kl_vmstate_get(c->vm, k);
	char *e2 = NULL;
	rc = kl_vmstate_load_section(e, p, len, ver, &e2);
	if (rc < 0)
		*err = g_strdup_printf("cannot load section '%s': %s", name, e2);
	g_free(e2);
	c->loaded[k] = rc == 0;
out:
	g_free(p);
	return rc;
}

int kl_mig_load(struct kl_vm *vm, struct kl_mig_in *in, char **err)
{
	struct load_ctx c = { .vm = vm, .nsections = kl_vmstate_count(vm) };
	c.src_version = g_new0(uint32_t, c.nsections + 1);
	c.loaded = g_new0(bool, c.nsections + 1);
	int rc = read_header(&c, in, err);
	if (rc == 0)
		kl_mig_ram_load_begin(vm, in);
	while (rc == 0) {
		uint8_t t;
		if (kl_mig_read(in, &t, 1, err) < 0) {
			rc = -1;
			break;
		}
		if (t == KL_REC_RAM) {
			rc = kl_mig_ram_load(vm, in, err);
		} else if (t == KL_REC_ZERO) {
			rc = kl_mig_zero_load(vm, in, err);
		} else if (t == KL_REC_SHARED) {
			rc = kl_mig_shared_load(vm, in, err);
		} else if (t == KL_REC_SECTION) {
			rc = load_section(&c, in, err);
		} else if (t == KL_REC_END) {
			uint8_t e[8];
			if (kl_mig_read(in, e, 8, err) < 0) {
				rc = -1;
				break;
			}
			if (kl_mig_get_u32(e + 4) != KL_REC_END_TAG ||
			    kl_mig_get_u32(e) != c.nsections) {
				*err = g_strdup("bad end marker");
				rc = -1;
			}
			break;
		} else {
			*err = g_strdup_printf("unknown record type 0x%02x at byte %llu", t,
					       (unsigned long long)(in->pos - 1));
			rc = -1;
		}
	}
	for (unsigned k = 0; rc == 0 && k < c.nsections; k++)
		if (!c.loaded[k]) {
			*err = g_strdup_printf("the stream ends without section '%s'",
					       kl_vmstate_get(vm, k)->name);
			rc = -1;
		}
	for (unsigned k = 0; rc == 0 && k < c.nsections; k++) {
		const struct kl_vmstate_entry *e = kl_vmstate_get(vm, k);
		char *e2 = NULL;
		if (e->ops->post_load && e->ops->post_load(e->opaque, &e2) < 0) {
			*err = g_strdup_printf("%s: %s", e->name, e2 ? e2 : "post-load failed");
			rc = -1;
		}
		g_free(e2);
	}
	kl_mig_ram_load_end(vm, in);
	g_free(c.src_version);
	g_free(c.loaded);
	return rc;
}
