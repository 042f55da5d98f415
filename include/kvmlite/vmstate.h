/* VM state sections: how each part of the machine saves and loads its state
 * for live migration and snapshot/restore (src/migration/).
 *
 * Every piece of state that is not guest RAM -- the vCPUs, the in-kernel
 * irqchip/PIT/clock, each device -- registers ONE section with
 * kl_vmstate_register(), beside its own code, when it is created, and
 * unregisters it in its exit path (symmetric lifecycle).  The migration code
 * saves the sections in registration order; the destination loads each by
 * name.  A destination whose set of section names differs refuses with a
 * message naming the first missing or unexpected section.
 *
 * Encoding: little-endian fixed-width integers through kl_vms_put_* /
 * kl_vms_get_*.  The reader is bounds-checked and its error is sticky: after
 * the first short read or kl_vms_fail() every get returns 0 (or leaves the
 * buffer zeroed) and kl_vms_failed() is true, so a load function may read
 * its fields straight through and check once at the end.  A load function
 * MUST validate every value it will later use as an index, a length, a guest
 * address or a register value the kernel or device code trusts (the stream
 * is untrusted input: tests/fuzz has a target for it), and must not change
 * device state it cannot undo before it knows the section is valid (decode
 * into a local copy, check, then commit).
 *
 * Threads: every callback runs on the main thread with the BQL held and the
 * vCPUs parked (paused).
 */
#ifndef KVMLITE_VMSTATE_H
#define KVMLITE_VMSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

struct kl_vm;

/* ---- writer ---- */
struct kl_vms_out {
	GByteArray *buf;
};
void kl_vms_out_init(struct kl_vms_out *o);
void kl_vms_out_free(struct kl_vms_out *o);
void kl_vms_put_u8(struct kl_vms_out *o, uint8_t v);
void kl_vms_put_u16(struct kl_vms_out *o, uint16_t v);
void kl_vms_put_u32(struct kl_vms_out *o, uint32_t v);
void kl_vms_put_u64(struct kl_vms_out *o, uint64_t v);
void kl_vms_put_bytes(struct kl_vms_out *o, const void *p, size_t n);
/* u32 length then the bytes; NULL is written as length 0xffffffff */
void kl_vms_put_str(struct kl_vms_out *o, const char *s);

/* ---- reader ---- */
struct kl_vms_in {
	const uint8_t *p;
	size_t len;
	size_t pos;
	char *err;          /* first error, g_free'd by kl_vms_in_free */
};
void kl_vms_in_init(struct kl_vms_in *in, const void *p, size_t len);
void kl_vms_in_free(struct kl_vms_in *in);
uint8_t kl_vms_get_u8(struct kl_vms_in *in);
uint16_t kl_vms_get_u16(struct kl_vms_in *in);
uint32_t kl_vms_get_u32(struct kl_vms_in *in);
uint64_t kl_vms_get_u64(struct kl_vms_in *in);
/* Copies n bytes or, on a short stream, zero-fills dst and fails. */
void kl_vms_get_bytes(struct kl_vms_in *in, void *dst, size_t n);
/* Returns a newly allocated string (NULL for the NULL marker); fails when
 * longer than max or not NUL-free. */
char *kl_vms_get_str(struct kl_vms_in *in, size_t max);
/* A u32/u64 that must be <= max; fails naming `what` otherwise. */
uint32_t kl_vms_get_u32_max(struct kl_vms_in *in, uint32_t max, const char *what);
uint64_t kl_vms_get_u64_max(struct kl_vms_in *in, uint64_t max, const char *what);
/* Record an error (the first one wins). */
void kl_vms_fail(struct kl_vms_in *in, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
bool kl_vms_failed(const struct kl_vms_in *in);
size_t kl_vms_remaining(const struct kl_vms_in *in);

/* ---- sections ---- */
struct kl_vmstate_ops {
	const char *kind;       /* "vcpu", "ioapic", "16550", "virtio-blk", ... */
	uint32_t version;       /* the version save() writes */
	uint32_t min_version;   /* the oldest version load() accepts */
	/* Optional: called before save() of ANY section, once the vCPUs are
	 * parked: finish or drain in-flight work (block requests, TX) so that
	 * nothing acknowledged is lost and nothing is done twice.  Returns 0 or
	 * -1 with *err. */
	int (*quiesce)(void *opaque, char **err);
	int (*save)(void *opaque, struct kl_vms_out *out, char **err);
	/* Decode and apply.  Return 0, or -1 with *err (or with the reader
	 * failed: the caller reports kl_vms_in's error).  The caller checks that
	 * the whole section was consumed. */
	int (*load)(void *opaque, struct kl_vms_in *in, uint32_t version, char **err);
	/* Optional: after every section has loaded (re-create KVM routes,
	 * irqfds, re-arm timers, restart the device's processing). */
	int (*post_load)(void *opaque, char **err);
};

struct kl_vmstate_entry {
	char *name;             /* kind + "/" + instance, e.g. "vcpu/1",
				   "virtio-blk/0000:00:04.0" */
	const struct kl_vmstate_ops *ops;
	void *opaque;
};

/* instance: what tells two sections of one kind apart (a PCI address, a
 * vCPU index, "0" for a singleton).  Names must be unique within a VM. */
void kl_vmstate_register(struct kl_vm *vm, const char *instance,
			 const struct kl_vmstate_ops *ops, void *opaque);
/* Removes the section registered with this (ops, opaque); no-op if none. */
void kl_vmstate_unregister(struct kl_vm *vm, const struct kl_vmstate_ops *ops, void *opaque);
/* Iteration, in registration order (for src/migration/). */
unsigned kl_vmstate_count(const struct kl_vm *vm);
const struct kl_vmstate_entry *kl_vmstate_get(const struct kl_vm *vm, unsigned i);
const struct kl_vmstate_entry *kl_vmstate_find(const struct kl_vm *vm, const char *name);
/* Load one section's payload as the migration loader does: the section's
 * load(), then the reader's error and any bytes left over count as a
 * failure.  0, or -1 with *err (the section's own message, the reader's, or
 * "N bytes left over").  post_load is the caller's. */
int kl_vmstate_load_section(const struct kl_vmstate_entry *e, const void *p, size_t len,
			    uint32_t version, char **err);
/* Frees the registry (kl_vm_destroy calls it). */
void kl_vmstate_free_all(struct kl_vm *vm);

#endif
