/* The balloon, as QEMU's softmmu/balloon.c sees it: one balloon device at
 * most (virtio-balloon-pci, src/virtio/balloon.c) registers itself; the QMP
 * commands (src/monitor/qmp_balloon.c: balloon, query-balloon, the
 * BALLOON_CHANGE event) and qom-get/qom-set of its guest-stats properties
 * go through these functions.  Everything runs with the BQL held. */
#ifndef KVMLITE_BALLOON_H
#define KVMLITE_BALLOON_H

#include <stdbool.h>
#include <stdint.h>

/* virtio 1.x 5.5.6.3: VIRTIO_BALLOON_S_* tags (QEMU 7.2 knows 10). */
#define KL_BALLOON_NSTATS 10
extern const char *const kl_balloon_stat_names[KL_BALLOON_NSTATS]; /* "stat-swap-in", ... */

struct kl_balloon_ops {
	/* Ask the guest to leave target bytes of RAM to itself (num_pages =
	 * (ram - target) / 4 KiB; target 0 < target <= ram). */
	void (*set_target)(void *opaque, uint64_t target);
	/* RAM the guest has now: ram - actual * 4 KiB. */
	uint64_t (*actual)(void *opaque);
};

/* The device registers once it exists (a second one is refused: -1). */
int kl_balloon_register(const struct kl_balloon_ops *ops, void *opaque);
void kl_balloon_unregister(void *opaque);
bool kl_balloon_present(void);
/* -1 when no balloon is registered. */
int kl_balloon_set_target(uint64_t target);
uint64_t kl_balloon_actual(void);
/* The device reports a change of actual: the BALLOON_CHANGE event
 * {"actual": bytes}, at most one a second (QEMU's monitor throttling: the
 * first at once, the last of a burst when the second is over). */
void kl_balloon_changed(uint64_t actual);

#endif
