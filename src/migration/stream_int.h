/* Internal interfaces of the migration stream (stream.c, ram.c). */
#ifndef KVMLITE_MIGRATION_STREAM_INT_H
#define KVMLITE_MIGRATION_STREAM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvmlite/migration.h"
#include "kvmlite/mem.h"
#include "kvmlite/vmstate.h"

/* record types */
#define KL_REC_RAM 0x01       /* u64 gpa, u64 len, u32 pad; pad zero bytes; data; u32 crc */
#define KL_REC_ZERO 0x02      /* u64 gpa, u64 len: pages that are all zero */
#define KL_REC_SECTION 0x03   /* str name, u32 version, u32 len, payload, u32 crc */
#define KL_REC_SHARED 0x04    /* u64 st_dev, u64 st_ino, u64 size: RAM is that shared file,
				 not sent (x-ignore-shared) */
#define KL_REC_END 0xff       /* u32 number of sections, u32 "END!" */
#define KL_REC_END_TAG 0x21444e45u
#define KL_MIG_RAM_RUN (256u * KL_MIG_PAGE) /* socket RAM records: at most 1 MiB */

struct kl_vm;

/* raw I/O: 0 or -1 (with out->err / *err) */
int kl_mig_write(struct kl_mig_out *out, const void *p, size_t n);
int kl_mig_write_vms(struct kl_mig_out *out, struct kl_vms_out *o); /* and frees nothing */
int kl_mig_skip_out(struct kl_mig_out *out, uint64_t n); /* file: a hole; else zeros */
int kl_mig_read(struct kl_mig_in *in, void *p, size_t n, char **err);
int kl_mig_skip_in(struct kl_mig_in *in, uint64_t n, char **err);
uint32_t kl_mig_get_u32(const uint8_t *p);
uint64_t kl_mig_get_u64(const uint8_t *p);

bool kl_mig_page_is_zero(const void *p);

/* stream.c: the pieces of kl_mig_save for a live migration */
int kl_mig_quiesce(struct kl_vm *vm, char **err);
int kl_mig_save_header(struct kl_vm *vm, struct kl_mig_out *out);     /* -1: out->err */
int kl_mig_save_devices(struct kl_vm *vm, struct kl_mig_out *out, char **err); /* + END */

/* ram.c */
struct kl_dirty;
/* Send dirty pages (clearing their bits) from the cursor on, until about
 * budget bytes of page data went out.  Returns 1 when the bitmap is
 * exhausted (cursor back at the start), 0 when the budget ran out, -1 on a
 * write error (out->err). */
struct kl_ram_cursor {
	unsigned region;
	uint64_t page;
	/* the first pass only: pages that were holes of guest RAM (never
	 * touched, so zero) when it began, per region; NULL when unknown */
	uint64_t *holes[KL_MAX_MEM_REGIONS];
};
/* Fill c->holes (after dirty logging started: a hole the guest writes
 * later is in the dirty log) and free them. */
void kl_mig_ram_find_holes(struct kl_vm *vm, struct kl_ram_cursor *c);
void kl_mig_ram_holes_free(struct kl_ram_cursor *c);
int kl_mig_ram_send_dirty(struct kl_vm *vm, struct kl_mig_out *out, struct kl_dirty *d,
			  struct kl_ram_cursor *c, uint64_t budget, struct kl_mig_stats *st);
int kl_mig_ram_save(struct kl_vm *vm, struct kl_mig_out *out, struct kl_mig_stats *st);
void kl_mig_ram_load_begin(struct kl_vm *vm, struct kl_mig_in *in);
void kl_mig_ram_load_end(struct kl_vm *vm, struct kl_mig_in *in);
/* after the record type byte */
int kl_mig_ram_load(struct kl_vm *vm, struct kl_mig_in *in, char **err);
int kl_mig_zero_load(struct kl_vm *vm, struct kl_mig_in *in, char **err);
/* x-ignore-shared: the SHARED record (source) and its check (destination) */
int kl_mig_shared_save(struct kl_vm *vm, struct kl_mig_out *out);
int kl_mig_shared_load(struct kl_vm *vm, struct kl_mig_in *in, char **err);

#endif
