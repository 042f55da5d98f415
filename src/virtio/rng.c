/* virtio-rng (virtio 1.x 5.4): -device virtio-rng-pci[,rng=ID]
 * [,max-bytes=N][,period=MS][,id=,bus=,addr=], and virtio-rng-device (the
 * same on a virtio-mmio transport of -M microvm, without addr=)
 *
 * One request queue (8 entries, as QEMU); every device-writable buffer the
 * driver makes available is filled with bytes from the back-end
 * (kvmlite/rng.h; without rng= an anonymous rng-builtin, as QEMU 7.2).
 * Back-end reads are non-blocking on the main loop: when it has nothing,
 * the device waits for the back-end's fd to become readable (rng-builtin:
 * retries after RETRY_MS).
 *
 * Rate limit as QEMU's hw/virtio/virtio-rng.c: at most max-bytes (default
 * INT64_MAX) per period ms (default 65536).  The first request of a period
 * arms the period timer; requests beyond the quota stay on the ring (not
 * dropped) until the timer refills the quota.  Nothing is served while the
 * VM is not running (QEMU's runstate check): a request seen then is
 * retried every RETRY_MS.  The back-end is read on the main loop only: a
 * kick or status write handled on a vCPU thread defers the work there. */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "kvmlite/device.h"
#include "kvmlite/iov.h"
#include "kvmlite/loop.h"
#include "kvmlite/pci.h"
#include "kvmlite/rng.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define VIRTIO_ID_RNG 4
#define QUEUE_SIZE 8
#define DEFAULT_MAX_BYTES INT64_MAX
#define DEFAULT_PERIOD_MS (1u << 16)
#define RETRY_MS 10
#define CHUNK 4096   /* bytes read from the back-end per step */

struct vrng {
	struct kl_virtio_dev *vd;
	struct kl_rng *rng;
	struct kl_rng *own_rng;     /* the default back-end (rng= absent) */
	uint64_t max_bytes;
	uint32_t period_ms;
	int64_t quota_remaining;
	bool activate_timer;        /* the next request arms the period timer */
	struct kl_ptimer *period_timer;
	guint fd_watch;             /* waiting for the back-end's fd */
	guint retry_timer;          /* rng-builtin had nothing / VM not running */
	bool broken_backend;        /* rng-random file ended or failed: reported once */
};

static void vrng_process(struct vrng *s);

static bool on_readable(int fd, GIOCondition cond, void *opaque)
{
	(void)fd;
	(void)cond;
	struct vrng *s = opaque;
	s->fd_watch = 0;
	vrng_process(s);
	return false;
}

static gboolean on_retry(gpointer opaque)
{
	struct vrng *s = opaque;
	s->retry_timer = 0;
	vrng_process(s);
	return G_SOURCE_REMOVE;
}

static void wait_retry(struct vrng *s, unsigned ms)
{
	if (!s->retry_timer)
		s->retry_timer = kl_timer_add_ms(ms, on_retry, s);
}

static void wait_backend(struct vrng *s)
{
	int fd = kl_rng_fd(s->rng);
	if (fd < 0)
		wait_retry(s, RETRY_MS);
	else if (!s->fd_watch)
		s->fd_watch = kl_fd_add(fd, G_IO_IN, on_readable, s);
}

static void on_period(void *opaque)
{
	struct vrng *s = opaque;
	s->quota_remaining = (int64_t)s->max_bytes;
	vrng_process(s);
	s->activate_timer = true;
}

/* Serve available requests within the quota: each popped chain gets as
 * many bytes as its writable buffers hold (or what is left of the quota /
 * what the back-end had), and is completed with that length. */
static void vrng_process(struct vrng *s)
{
	struct kl_virtio_dev *vd = s->vd;
	if (!kl_virtio_ready(vd) || !vd->vqs[0].enabled || s->broken_backend)
		return;
	if (!kl_loop_is_main_thread()) {
		/* a vCPU (MMIO notify, status write): the back-end is read on
		 * the main loop only (seccomp: getrandom is a main-thread call) */
		wait_retry(s, 0);
		return;
	}
	if (s->vd->vm->state != KL_RS_RUNNING) {
		if (kl_virtq_has_avail(&vd->vqs[0]))
			wait_retry(s, RETRY_MS);
		return;
	}
	if (s->activate_timer && kl_virtq_has_avail(&vd->vqs[0])) {
		kl_ptimer_arm_ns(s->period_timer, (uint64_t)s->period_ms * 1000000ull);
		s->activate_timer = false;
	}
	bool pushed = false;
	uint8_t buf[CHUNK];
	while (s->quota_remaining > 0) {
		struct kl_vq_elem *e = kl_virtio_pop(vd, 0);
		if (!e)
			break;
		uint64_t want = e->in_len;
		if (want > (uint64_t)s->quota_remaining)
			want = (uint64_t)s->quota_remaining;
		const struct iovec *in = e->iov + e->out_num;
		uint64_t done = 0;
		bool dry = false;
		while (done < want) {
			size_t n = want - done > CHUNK ? CHUNK : (size_t)(want - done);
			ssize_t got = kl_rng_read(s->rng, buf, n);
			if (got < 0) {
				fprintf(stderr, "kvmlite: virtio-rng: reading the %s back-end%s%s: %s\n",
					kl_rng_type(s->rng), kl_rng_id(s->rng) ? " " : "",
					kl_rng_id(s->rng) ? kl_rng_id(s->rng) : "", g_strerror(errno));
				s->broken_backend = true;
				break;
			}
			if (got == 0) {
				dry = true;
				break;
			}
			kl_iov_from_buf(in, e->in_num, done, buf, (size_t)got);
			done += (uint64_t)got;
		}
		if (done == 0 && e->in_len > 0) {
			/* nothing to give yet: the chain goes back to the ring */
			kl_virtq_unpop(&vd->vqs[0], 1);
			kl_virtio_discard(vd, e);
			if (dry)
				wait_backend(s);
			break;
		}
		s->quota_remaining -= (int64_t)done;
		kl_virtio_push(vd, 0, e, (uint32_t)done);
		pushed = true;
		if (dry) {
			wait_backend(s);
			break;
		}
		if (s->broken_backend)
			break;
	}
	if (pushed)
		kl_virtio_notify(vd, 0);
}

static void vrng_notify(struct kl_virtio_dev *vd, unsigned q)
{
	(void)q;
	vrng_process(vd->opaque);
}

static void vrng_driver_ok(struct kl_virtio_dev *vd)
{
	vrng_process(vd->opaque);
}

static void vrng_reset(struct kl_virtio_dev *vd)
{
	struct vrng *s = vd->opaque;
	if (s->fd_watch)
		kl_source_remove(s->fd_watch);
	if (s->retry_timer)
		kl_source_remove(s->retry_timer);
	s->fd_watch = s->retry_timer = 0;
}

/* ---- VM state: section "virtio-rng/INST" (kvmlite/vmstate.h; INST is
 * vd->inst: "0000:00:SS.0" on PCI, "0xBASE" on virtio-mmio) ----
 * The transport and the queue are in its own section; this one holds
 * the rate limit the destination must agree on and the quota left in the
 * current period: v1 = u64 max-bytes, u32 period, u64 quota_remaining
 * (<= max-bytes; QEMU can let it go below 0 by one request, kvmlite never
 * does).  After a load a new period starts with the next request. */
#define VRNG_STATE_VERSION 1

static int vrng_save(void *opaque, struct kl_vms_out *out, char **err)
{
	(void)err;
	struct vrng *s = opaque;
	kl_vms_put_u64(out, s->max_bytes);
	kl_vms_put_u32(out, s->period_ms);
	kl_vms_put_u64(out, (uint64_t)(s->quota_remaining < 0 ? 0 : s->quota_remaining));
	return 0;
}

static int vrng_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)version;
	struct vrng *s = opaque;
	uint64_t max = kl_vms_get_u64(in);
	uint32_t period = kl_vms_get_u32(in);
	uint64_t quota = kl_vms_get_u64(in);
	if (kl_vms_failed(in))
		return -1;
	if (max != s->max_bytes) {
		*err = g_strdup_printf("max-bytes differs: stream %" G_GUINT64_FORMAT ", here %"
				       G_GUINT64_FORMAT, (guint64)max, (guint64)s->max_bytes);
		return -1;
	}
	if (period != s->period_ms) {
		*err = g_strdup_printf("period differs: stream %u, here %u", period, s->period_ms);
		return -1;
	}
	if (quota > max) {
		*err = g_strdup_printf("quota %" G_GUINT64_FORMAT " is above max-bytes %" G_GUINT64_FORMAT,
				       (guint64)quota, (guint64)max);
		return -1;
	}
	s->quota_remaining = (int64_t)quota;
	return 0;
}

static int vrng_post_load(void *opaque, char **err)
{
	(void)err;
	struct vrng *s = opaque;
	kl_ptimer_cancel(s->period_timer);
	s->activate_timer = true;
	vrng_process(s);
	return 0;
}

static const struct kl_vmstate_ops vrng_vmstate_ops = {
	.kind = "virtio-rng",
	.version = VRNG_STATE_VERSION,
	.min_version = VRNG_STATE_VERSION,
	.save = vrng_save,
	.load = vrng_load,
	.post_load = vrng_post_load,
};

static void vrng_destroy(struct kl_virtio_dev *vd)
{
	struct vrng *s = vd->opaque;
	kl_vmstate_unregister(vd->vm, &vrng_vmstate_ops, s);
	vrng_reset(vd);
	kl_ptimer_free(s->period_timer);
	kl_rng_free_default(s->own_rng);
	g_free((void *)vd->ops);
	g_free(s);
}

static int vrng_create(struct kl_vm *vm, struct kl_opts *opts, enum kl_virtio_transport_kind t,
		       char **err)
{
	const char *tname = kl_virtio_type_name("virtio-rng", t);
	const char *rng = kl_opts_get(opts, "rng");
	uint64_t max_bytes, period, slot = 0;
	if (kl_opts_get_u64(opts, "max-bytes", DEFAULT_MAX_BYTES, &max_bytes, err) < 0 ||
	    kl_opts_get_u64(opts, "period", DEFAULT_PERIOD_MS, &period, err) < 0 ||
	    (t == KL_VIRTIO_TRANSPORT_PCI && kl_opts_get_u64(opts, "addr", 0, &slot, err) < 0))
		return -1;
	if (period > UINT32_MAX) {
		*err = g_strdup_printf("Property '%s.period' doesn't take value '%" G_GUINT64_FORMAT "'",
				       tname, (guint64)period);
		return -1;
	}
	if (period == 0) {
		*err = g_strdup("'period' parameter expects a positive integer");
		return -1;
	}
	if (max_bytes > INT64_MAX) {
		*err = g_strdup("'max-bytes' parameter must be non-negative, and less than 2^63");
		return -1;
	}
	if (slot >= KL_PCI_NSLOTS) {
		*err = g_strdup_printf("%s: addr=%" G_GUINT64_FORMAT " is not a PCI slot (1..31)",
				       tname, (guint64)slot);
		return -1;
	}
	struct kl_rng *r = NULL;
	if (rng) {
		r = kl_rng_find(rng);
		if (!r) {
			*err = g_strdup_printf("Property '%s.rng' can't find value '%s'", tname, rng);
			return -1;
		}
	}
	struct vrng *s = g_new0(struct vrng, 1);
	s->own_rng = r ? NULL : kl_rng_new_default();
	s->rng = r ? r : s->own_rng;
	s->max_bytes = max_bytes;
	s->period_ms = (uint32_t)period;
	s->quota_remaining = (int64_t)max_bytes;
	s->activate_timer = true;
	s->period_timer = kl_ptimer_new(on_period, s);
	if (!s->period_timer) {
		*err = g_strdup_printf("%s: cannot create the rate-limit timer (timerfd)", tname);
		kl_rng_free_default(s->own_rng);
		g_free(s);
		return -1;
	}
	struct kl_virtio_ops *ops = g_new0(struct kl_virtio_ops, 1);
	ops->queue_notify = vrng_notify;
	ops->driver_ok = vrng_driver_ok;
	ops->reset = vrng_reset;
	ops->destroy = vrng_destroy;
	struct kl_virtio_pci_info info = {
		.name = tname, .device_id = VIRTIO_ID_RNG, .class_code = 0x00ff00,
		.num_queues = 1, .queue_size = QUEUE_SIZE, .config_len = 0,
		.slot = slot ? (int)slot : -1,
	};
	s->vd = kl_virtio_create(vm, t, &info, ops, s, err);
	if (!s->vd) {
		g_free(ops);
		kl_ptimer_free(s->period_timer);
		kl_rng_free_default(s->own_rng);
		g_free(s);
		return -1;
	}
	kl_vmstate_register(vm, s->vd->inst, &vrng_vmstate_ops, s);
	return 0;
}

KL_VIRTIO_DEVICE_TYPES(virtio_rng, "virtio-rng",
		       "virtio entropy device (rng=ID, max-bytes=N, period=MS, addr=SLOT on PCI)",
		       vrng_create, false)
