/* Migration and snapshot/restore (src/migration/, docs/migration.md).
 *
 * The stream (stream.c): a header (magic, version, machine shape: RAM size
 * and layout, vCPU count, CPU model, the list of sections with their
 * versions; CRC-32), then records: RAM blocks (page data), zero-page runs
 * (markers, no data), device sections (name, version, length, payload,
 * CRC-32) and an end marker.  On a file: migration each RAM region is one
 * page-aligned block, so a restore can map guest RAM privately from the
 * file (pages load on first touch).
 *
 * Transports: unix:PATH, tcp:HOST:PORT (loopback), file:PATH[,offset=N],
 * exec:CMD (/bin/sh -c CMD; needs -sandbox off: a command under kvmlite's
 * seccomp allow-list would die of SIGSYS).
 * The migration is stop-and-copy: the source pauses its vCPUs, sends RAM
 * and every section, and waits for the destination's verdict on socket
 * transports (a return path: "OK" or an error message), so a destination
 * that refuses makes the source's migration "failed" and the source runs
 * on.  Everything runs on the main thread with the BQL held.
 */
#ifndef KVMLITE_MIGRATION_H
#define KVMLITE_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

struct kl_vm;

#define KL_MIG_MAGIC "KVMLMIG\n"
#define KL_MIG_VERSION 1u
#define KL_MIG_PAGE 4096u
#define KL_MIG_MAX_SECTIONS 4096u
#define KL_MIG_MAX_NAME 256u
#define KL_MIG_MAX_SECTION_LEN (16u << 20)

/* QEMU's MigrationStatus values that kvmlite uses */
enum kl_mig_status {
	KL_MIG_NONE,
	KL_MIG_SETUP,
	KL_MIG_ACTIVE,
	KL_MIG_DEVICE,
	KL_MIG_COMPLETED,
	KL_MIG_FAILED,
	KL_MIG_CANCELLED,
};
const char *kl_mig_status_name(enum kl_mig_status s);

/* ---- the stream (stream.c, ram.c): used by migration.c, unit tests and
 * the fuzz target ---- */

/* Where a stream is written: an fd (socket or file) and, for a file, the
 * current offset (RAM blocks are page-aligned relative to the file). */
struct kl_mig_out {
	int fd;
	bool file;          /* a regular file: page-aligned RAM, holes for zero pages */
	uint64_t pos;       /* bytes written (file: the file offset) */
	char *err;
	GByteArray *mem;    /* non-NULL: the stream goes here, not to fd
			       (socket layout; snapshot-save) */
	/* x-ignore-shared with RAM that is a shared file: no RAM is sent,
	 * a SHARED record names the file for the destination to check */
	bool skip_shared_ram;
};
/* Reads a stream from an fd or from a memory buffer (fd < 0). */
struct kl_mig_in {
	int fd;
	bool file;          /* a regular file at offset pos: RAM may be mapped */
	const uint8_t *buf;
	size_t len;
	uint64_t pos;
	bool map_ram;       /* try mmap(MAP_PRIVATE) of page-aligned RAM blocks */
	unsigned mapped;    /* RAM blocks mapped rather than copied */
	/* set by kl_mig_load: pages this load wrote, per RAM region (a
	 * ZERO record need not touch the others: the load starts by
	 * discarding guest RAM); NULL = every page may be non-zero */
	uint64_t *written[8];
};

struct kl_mig_stats {
	uint64_t bytes;          /* stream bytes */
	uint64_t ram_bytes;      /* page data sent */
	uint64_t normal_pages;
	uint64_t zero_pages;     /* "duplicate" in query-migrate */
	uint64_t total_ram;
};

/* Write a whole stream of vm (vCPUs parked, sections quiesced by the
 * caller).  0, or -1 with *err. */
int kl_mig_save(struct kl_vm *vm, struct kl_mig_out *out, struct kl_mig_stats *st, char **err);
/* Read and apply a whole stream into vm (vCPUs parked).  Refuses a stream
 * whose machine shape differs from vm's with a message naming the
 * difference.  0, or -1 with *err. */
int kl_mig_load(struct kl_vm *vm, struct kl_mig_in *in, char **err);

/* The CPU model named in the header ("" = the default).  Set by main. */
void kl_mig_set_cpu_model(const char *model);

/* ---- snapshot-save / snapshot-load / snapshot-delete jobs (snapshot.c):
 * the VM state in a qcow2 internal snapshot ---- */
enum kl_snapshot_op { KL_SNAP_SAVE, KL_SNAP_LOAD, KL_SNAP_DELETE };
/* Start the job (QEMU 7.2's checks and error texts happen in the job; the
 * command fails only for the job id).  vmstate: NULL for delete. */
int kl_snapshot_job(struct kl_vm *vm, enum kl_snapshot_op op, const char *job_id,
		    const char *tag, const char *vmstate, const char *const *devices,
		    unsigned ndevices, char **err);

/* -loadvm TAG (QEMU's load_snapshot without a device list): every writable
 * qcow2 node a device uses is reverted to TAG, the VM state comes from the
 * first of them; the guest stays stopped.  -1 with *err. */
int kl_snapshot_loadvm(struct kl_vm *vm, const char *tag, char **err);

/* ---- state machine, transports (migration.c) ---- */

/* QMP migrate: 0 once the migration has ended (query-migrate tells how),
 * -1 with *err when it cannot start (bad URI, state). */
int kl_migrate(struct kl_vm *vm, const char *uri, char **err);
/* -incoming URI / migrate-incoming: file: loads now; unix:/tcp: listen and
 * load when the source connects; "defer" waits for migrate-incoming.
 * start_paused: -S (the destination stays paused).  -1 with *err. */
int kl_migrate_incoming(struct kl_vm *vm, const char *uri, bool start_paused, char **err);
/* QMP migrate-incoming (after -incoming defer). */
int kl_migrate_incoming_qmp(struct kl_vm *vm, const char *uri, char **err);
/* QMP cont/stop while the incoming migration loads: run once loaded? */
void kl_mig_incoming_autostart(bool on);
/* exec: URIs fork /bin/sh: only without the sandbox; main tells. */
void kl_mig_set_spawn_allowed(bool on);
/* Check an -incoming/migrate URI's syntax without opening anything. */
int kl_mig_uri_check(const char *uri, bool incoming, char **err);
bool kl_mig_incoming_pending(void); /* -incoming given, not loaded yet */

/* Device code that writes guest RAM from the VMM (DMA: virtio used rings,
 * block reads, received frames) calls this after the write, so a live
 * migration sends the page again (KVM's dirty log sees only the guest's
 * own writes).  Cheap no-op when no migration runs.  Main thread or BQL. */
void kl_mig_mark_dirty(struct kl_vm *vm, uint64_t gpa, uint64_t len);

/* migrate-set-parameters / -capabilities (QEMU's names and defaults) */
struct kl_mig_params {
	uint64_t downtime_limit_ms;   /* downtime-limit: 300 */
	uint64_t max_bandwidth;       /* max-bandwidth, bytes/s: 134217728 */
	uint64_t max_iterations;      /* kvmlite: passes before it stops anyway (30) */
	uint64_t throttle_initial;    /* cpu-throttle-initial: 20 (%) */
	uint64_t throttle_increment;  /* cpu-throttle-increment: 10 (%) */
	bool events, auto_converge, ignore_shared;
};
struct kl_mig_params *kl_mig_params(void);
/* MIGRATION {status} and MIGRATION_PASS {pass} go here (set by the monitor
 * when a client turns the events capability on). */
void kl_mig_set_event_fn(void (*fn)(const char *event, const char *key, const char *sval,
				    int64_t ival));
/* QMP migrate_cancel: a migration in flight ends 'cancelled', the source
 * runs on. */
void kl_migrate_cancel(struct kl_vm *vm);

struct kl_mig_info {
	enum kl_mig_status status;
	bool has_times;
	int64_t total_time_ms, downtime_ms, setup_time_ms, expected_downtime_ms;
	struct kl_mig_stats st;
	uint64_t remaining;
	uint64_t downtime_bytes;      /* sent with the vCPUs stopped */
	uint64_t dirty_sync_count;
	double mbps;
	uint64_t dirty_pages_rate;    /* pages/s in the last pass */
	int64_t throttle_pct;         /* auto-converge: cpu-throttle-percentage */
	char *error;             /* error-desc of a failed migration (owned) */
	bool incoming;
};
const struct kl_mig_info *kl_mig_info(void);
/* Frees what the migration state holds (at exit). */
void kl_mig_cleanup(void);

/* Section registrations beside their code (src/cpu/vcpu_state.c,
 * src/cpu/vm_state.c) */
void kl_vcpu_state_register(struct kl_vm *vm);
void kl_vm_state_register(struct kl_vm *vm);

#endif
