/* The probe virtio-blk driver of t_virtio_blk.c for other probe tests
 * (t_migrate.c): the first virtio-blk device, one queue, synchronous
 * polled requests. */
#ifndef PROBE_T_BLK_H
#define PROBE_T_BLK_H

#include "probe.h"

/* Open the first virtio-blk device; its capacity in sectors, or 0
 * (with probe_fail). */
uint64_t probe_blk_open(void);
/* One synchronous request of len bytes (a multiple of 512) at sector:
 * the status byte (0 OK), or -1 on timeout (with probe_fail). */
int probe_blk_rw(bool write, uint64_t sector, void *buf, uint32_t len);

/* The same for the inst-th (0-based, in slot order) virtio-blk device, one
 * at a time: each probe_blk_open_nth replaces the previous one. */
uint64_t probe_blk_open_nth(unsigned inst);
int probe_blk_rw_nth(bool write, uint64_t sector, void *buf, uint32_t len);
/* Queue a write (no wait): its status byte (0xff until completed), NULL if
 * the queue is full; the used ring's index (completions so far). */
volatile uint8_t *probe_blk_submit_write_nth(uint64_t sector, void *buf, uint32_t len);
unsigned probe_blk_used_nth(void);

#endif
