/* virtio-balloon (virtio 1.x 5.5):
 *   -device virtio-balloon-pci[,id=ID][,deflate-on-oom=on|off]
 *           [,free-page-reporting=on|off][,bus=pci.0][,addr=SLOT]
 *   -device virtio-balloon-device[,...]  (virtio-mmio, -M microvm; no addr=)
 *
 * Queues as QEMU 7.2 creates them: 0 inflate, 1 deflate, 2 stats, and 3
 * free page reporting when free-page-reporting=on.  Features: STATS_VQ and
 * PAGE_POISON always (QEMU's defaults), DEFLATE_ON_OOM and PAGE_REPORTING
 * on request.  Config: le32 num_pages (the host's target, in 4 KiB pages),
 * le32 actual (written by the driver), le32 free_page_hint_cmd_id (unused),
 * le32 poison_val.
 *
 * Inflate: every 4-byte PFN of the device-readable buffers names a 4 KiB
 * guest page the driver gave up; runs of consecutive pages are released to
 * the host at once (kl_mem_discard_hva: punch hole / MADV_REMOVE /
 * MADV_DONTNEED by backing), so the host's RSS falls.  Deflate needs
 * nothing: pages fault back in on the next guest access.  Reported free
 * pages (device-writable buffers of the reporting queue) are released the
 * same way unless the driver promised a non-zero poison value.  Hostile
 * input: a PFN outside guest RAM is skipped (logged, first few), at most
 * MAX_PFNS_PER_ELEM PFNs and MAX_STATS records are read from one buffer;
 * the rest is ignored.  Nothing a driver sends makes the device fail.
 *
 * Stats: the driver keeps one buffer of {le16 tag, le64 val} records on the
 * stats queue; the device holds it and, every guest-stats-polling-interval
 * seconds (0: never, the default), gives it back for the driver to refill
 * (QEMU's protocol).  The values are QOM property guest-stats, -1 for the
 * ones never reported. */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "kvmlite/balloon.h"
#include "kvmlite/byteorder.h"
#include "kvmlite/device.h"
#include "kvmlite/iov.h"
#include "kvmlite/loop.h"
#include "kvmlite/pci.h"
#include "kvmlite/qom.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define VIRTIO_ID_BALLOON 5

#define F_STATS_VQ 1
#define F_DEFLATE_ON_OOM 2
#define F_PAGE_POISON 4
#define F_REPORTING 5

#define Q_INFLATE 0
#define Q_DEFLATE 1
#define Q_STATS 2
#define Q_REPORTING 3

#define C_NUM_PAGES 0
#define C_ACTUAL 4
#define C_POISON 12
#define CONFIG_LEN 16

#define QUEUE_SIZE 128
#define PFN_SHIFT 12
#define BPAGE (1ull << PFN_SHIFT)
#define MAX_PFNS_PER_ELEM 65536   /* 256 MiB per buffer; Linux sends <= 256 */
#define MAX_STATS 64              /* records read per stats buffer */
#define STAT_LEN 10               /* le16 tag + le64 val, packed */
#define LOG_MAX 8                 /* warnings about bad PFNs, per device */

const char *const kl_balloon_stat_names[KL_BALLOON_NSTATS] = {
	"stat-swap-in", "stat-swap-out", "stat-major-faults", "stat-minor-faults",
	"stat-free-memory", "stat-total-memory", "stat-available-memory", "stat-disk-caches",
	"stat-htlb-pgalloc", "stat-htlb-pgfail",
};

struct vballoon {
	struct kl_virtio_dev *vd;
	bool deflate_on_oom, reporting;
	uint32_t num_pages, actual, poison_val;
	int64_t stats[KL_BALLOON_NSTATS];
	int64_t last_update;
	int64_t poll_interval;          /* seconds, 0: off */
	guint poll_timer;
	struct kl_vq_elem *stats_elem;  /* held until the next poll */
	uint32_t stats_len;             /* bytes read from it */
	char *qom_path;
	unsigned logged;                /* warnings printed (LOG_MAX at most) */
	uint64_t pfns_bad, pfns_over;   /* PFNs ignored: outside RAM, over the cap */
};

static void vb_log(struct vballoon *b, const char *fmt, uint64_t v)
{
	if (b->logged >= LOG_MAX)
		return;
	b->logged++;
	fprintf(stderr, "kvmlite: virtio-balloon: ");
	fprintf(stderr, fmt, (unsigned long long)v);
	fprintf(stderr, "%s\n", b->logged == LOG_MAX ? " (no further warnings)" : "");
}

static uint64_t ram_size(const struct vballoon *b)
{
	return b->vd->mem->ram_size;
}

/* ---- inflate / deflate ---- */

struct run {
	uint8_t *hva;
	uint64_t len;
};

static void run_flush(struct vballoon *b, struct run *r)
{
	if (r->len && kl_mem_discard_hva(b->vd->mem, r->hva, r->len) < 0)
		vb_log(b, "releasing guest pages failed (%llu bytes)", r->len);
	r->len = 0;
}

static void inflate_elem(struct vballoon *b, const struct kl_vq_elem *e)
{
	uint8_t buf[1024];
	struct run r = { NULL, 0 };
	uint64_t npfn = e->out_len / 4;
	if (npfn > MAX_PFNS_PER_ELEM) {
		b->pfns_over += npfn - MAX_PFNS_PER_ELEM;
		vb_log(b, "inflate buffer of %llu PFNs: only the first 65536 are used", npfn);
		npfn = MAX_PFNS_PER_ELEM;
	}
	for (uint64_t i = 0; i < npfn; i += sizeof(buf) / 4) {
		uint64_t n = npfn - i < sizeof(buf) / 4 ? npfn - i : sizeof(buf) / 4;
		if (kl_iov_to_buf(e->iov, e->out_num, i * 4, buf, n * 4) != n * 4)
			break;
		for (uint64_t k = 0; k < n; k++) {
			uint64_t gpa = (uint64_t)kl_le32(buf + 4 * k) << PFN_SHIFT;
			uint8_t *hva = kl_gpa_to_hva(b->vd->mem, gpa, BPAGE);
			if (!hva) {
				b->pfns_bad++;
				vb_log(b, "ignoring inflated page 0x%llx outside guest RAM", gpa);
				continue;
			}
			if (r.len && hva == r.hva + r.len) {
				r.len += BPAGE;
				continue;
			}
			run_flush(b, &r);
			r.hva = hva;
			r.len = BPAGE;
		}
	}
	run_flush(b, &r);
}

static void report_elem(struct vballoon *b, const struct kl_vq_elem *e)
{
	if (b->poison_val)
		return; /* the driver expects the poison pattern back: keep them */
	for (unsigned i = e->out_num; i < e->out_num + e->in_num; i++)
		if (e->iov[i].iov_len &&
		    kl_mem_discard_hva(b->vd->mem, e->iov[i].iov_base, e->iov[i].iov_len) < 0)
			vb_log(b, "releasing a reported range failed (%llu bytes)", e->iov[i].iov_len);
}

/* ---- stats ---- */

static void stats_reset(struct vballoon *b)
{
	for (unsigned i = 0; i < KL_BALLOON_NSTATS; i++)
		b->stats[i] = -1;
}

static void stats_give_back(struct vballoon *b)
{
	if (!b->stats_elem)
		return;
	struct kl_vq_elem *e = b->stats_elem;
	b->stats_elem = NULL;
	kl_virtio_complete(b->vd, Q_STATS, e, 0);
}

static void stats_receive(struct vballoon *b)
{
	struct kl_vq_elem *e;
	while ((e = kl_virtio_pop(b->vd, Q_STATS))) {
		/* a second buffer while one is held: the driver broke the
		 * protocol; return the old one (as QEMU) */
		stats_give_back(b);
		b->stats_elem = e;
		stats_reset(b);
		uint8_t rec[STAT_LEN];
		uint64_t off = 0;
		for (unsigned n = 0; n < MAX_STATS && off + STAT_LEN <= e->out_len; n++, off += STAT_LEN) {
			if (kl_iov_to_buf(e->iov, e->out_num, off, rec, STAT_LEN) != STAT_LEN)
				break;
			uint16_t tag = kl_le16(rec);
			if (tag < KL_BALLOON_NSTATS)
				b->stats[tag] = (int64_t)kl_le64(rec + 2);
		}
		b->stats_len = (uint32_t)off;
		b->last_update = g_get_real_time() / G_USEC_PER_SEC;
	}
}

static gboolean poll_tick(gpointer opaque)
{
	struct vballoon *b = opaque;
	if (kl_virtio_ready(b->vd))
		stats_receive(b); /* a buffer left on the ring (a cancelled migration) */
	if (kl_virtio_ready(b->vd) && kl_virtio_has_feature(b->vd, F_STATS_VQ))
		stats_give_back(b);
	return G_SOURCE_CONTINUE;
}

static void poll_set(struct vballoon *b, int64_t secs)
{
	if (b->poll_timer)
		kl_source_remove(b->poll_timer);
	b->poll_timer = 0;
	b->poll_interval = secs;
	if (secs > 0) {
		b->poll_timer = kl_timer_add_ms((unsigned)(secs * 1000), poll_tick, b);
		poll_tick(b); /* QEMU: a new timer fires at once */
	}
}

/* ---- virtio ops ---- */

static void vb_notify(struct kl_virtio_dev *vd, unsigned q)
{
	struct vballoon *b = vd->opaque;
	if (q == Q_STATS) {
		stats_receive(b);
		return;
	}
	struct kl_virtq *vq = &vd->vqs[q];
	for (;;) {
		kl_virtq_set_notification(vq, false);
		struct kl_vq_elem *e;
		while ((e = kl_virtio_pop(vd, q))) {
			if (q == Q_INFLATE)
				inflate_elem(b, e);
			else if (q == Q_REPORTING)
				report_elem(b, e);
			/* deflate: the pages come back on the guest's next touch */
			kl_virtio_complete(vd, q, e, 0);
		}
		if (!kl_virtio_ready(vd) || !kl_virtq_set_notification(vq, true))
			break;
	}
}

static void set_actual(struct vballoon *b, uint32_t actual)
{
	if (actual == b->actual)
		return;
	b->actual = actual;
	kl_put32(b->vd->config + C_ACTUAL, actual);
	kl_balloon_changed(ram_size(b) - ((uint64_t)actual << PFN_SHIFT));
}

static void vb_config_write(struct kl_virtio_dev *vd, unsigned off, const void *buf, unsigned len)
{
	struct vballoon *b = vd->opaque;
	uint8_t cfg[CONFIG_LEN];
	memcpy(cfg, vd->config, CONFIG_LEN);
	memcpy(cfg + off, buf, len); /* the transport checked off + len <= CONFIG_LEN */
	if (kl_virtio_has_feature(vd, F_PAGE_POISON)) {
		b->poison_val = kl_le32(cfg + C_POISON);
		kl_put32(vd->config + C_POISON, b->poison_val);
	}
	uint32_t a = kl_le32(cfg + C_ACTUAL);
	/* more than all of RAM cannot be ballooned: the driver is confused */
	if ((uint64_t)a << PFN_SHIFT > ram_size(b))
		a = (uint32_t)(ram_size(b) >> PFN_SHIFT);
	set_actual(b, a);
}

static void vb_reset(struct kl_virtio_dev *vd)
{
	struct vballoon *b = vd->opaque;
	if (b->stats_elem)
		kl_virtio_discard(vd, b->stats_elem);
	b->stats_elem = NULL;
	b->poison_val = 0;
	kl_put32(vd->config + C_POISON, 0);
	/* a new driver starts with all of its RAM */
	set_actual(b, 0);
}

static void set_target(void *opaque, uint64_t target)
{
	struct vballoon *b = opaque;
	uint64_t ram = ram_size(b);
	if (target > ram)
		target = ram;
	uint64_t pages = (ram - target) >> PFN_SHIFT;
	b->num_pages = pages > UINT32_MAX ? UINT32_MAX : (uint32_t)pages;
	kl_put32(b->vd->config + C_NUM_PAGES, b->num_pages);
	kl_virtio_config_changed(b->vd);
}

static uint64_t get_actual(void *opaque)
{
	struct vballoon *b = opaque;
	return ram_size(b) - ((uint64_t)b->actual << PFN_SHIFT);
}

static const struct kl_balloon_ops vb_balloon_ops = {
	.set_target = set_target,
	.actual = get_actual,
};

/* ---- QOM properties ---- */

static JsonNode *qom_guest_stats(void *opaque)
{
	struct vballoon *b = opaque;
	JsonObject *st = json_object_new();
	for (unsigned i = 0; i < KL_BALLOON_NSTATS; i++)
		json_object_set_int_member(st, kl_balloon_stat_names[i], b->stats[i]);
	JsonObject *o = json_object_new();
	json_object_set_object_member(o, "stats", st);
	json_object_set_int_member(o, "last-update", b->last_update);
	JsonNode *n = json_node_init_object(json_node_alloc(), o);
	json_object_unref(o);
	return n;
}

static JsonNode *qom_poll_get(void *opaque)
{
	struct vballoon *b = opaque;
	return json_node_init_int(json_node_alloc(), b->poll_interval);
}

static int qom_poll_set(void *opaque, JsonNode *v, char **err)
{
	struct vballoon *b = opaque;
	if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_INT64) {
		*err = g_strdup("Invalid parameter type for 'guest-stats-polling-interval', expected: integer");
		return -1;
	}
	int64_t secs = json_node_get_int(v);
	if (secs < 0) {
		*err = g_strdup("timer value must be greater than zero");
		return -1;
	}
	if (secs > UINT32_MAX / 1000) {
		*err = g_strdup("timer value is too big");
		return -1;
	}
	if (secs != b->poll_interval)
		poll_set(b, secs);
	return 0;
}

static JsonNode *qom_deflate(void *opaque)
{
	return json_node_init_boolean(json_node_alloc(), ((struct vballoon *)opaque)->deflate_on_oom);
}

static JsonNode *qom_reporting(void *opaque)
{
	return json_node_init_boolean(json_node_alloc(), ((struct vballoon *)opaque)->reporting);
}

static const struct kl_qom_prop vb_props[] = {
	{ "guest-stats", "guest statistics", qom_guest_stats, NULL },
	{ "guest-stats-polling-interval", "int", qom_poll_get, qom_poll_set },
	{ "deflate-on-oom", "bool", qom_deflate, NULL },
	{ "free-page-reporting", "bool", qom_reporting, NULL },
	{ NULL },
};

/* ---- VM state: section "virtio-balloon/INST" (vd->inst: "0000:00:SS.0"
 * on PCI, "0xBASE" on virtio-mmio) ----
 * The transport and queues are in the transport's section.  Quiesce gives the
 * held stats buffer back to the ring (the destination pops it again).
 * v1: u8 deflate-on-oom, u8 free-page-reporting (must match), u32
 * num_pages, u32 actual, u32 poison_val, u64 polling interval, u64
 * last-update, 10 x u64 stats. */
#define VB_STATE_VERSION 1

static int vb_quiesce(void *opaque, char **err)
{
	struct vballoon *b = opaque;
	if (b->stats_elem) {
		if (b->stats_elem->gen == b->vd->vqs[Q_STATS].gen)
			kl_virtq_unpop(&b->vd->vqs[Q_STATS], 1);
		kl_virtio_discard(b->vd, b->stats_elem);
		b->stats_elem = NULL;
	}
	if (b->vd->inflight) {
		*err = g_strdup_printf("virtio-balloon: %u buffers in flight", b->vd->inflight);
		return -1;
	}
	return 0;
}

static int vb_save(void *opaque, struct kl_vms_out *out, char **err)
{
	struct vballoon *b = opaque;
	if (b->stats_elem) {
		*err = g_strdup("virtio-balloon: stats buffer held (not quiesced)");
		return -1;
	}
	kl_vms_put_u8(out, b->deflate_on_oom);
	kl_vms_put_u8(out, b->reporting);
	kl_vms_put_u32(out, b->num_pages);
	kl_vms_put_u32(out, b->actual);
	kl_vms_put_u32(out, b->poison_val);
	kl_vms_put_u64(out, (uint64_t)b->poll_interval);
	kl_vms_put_u64(out, (uint64_t)b->last_update);
	for (unsigned i = 0; i < KL_BALLOON_NSTATS; i++)
		kl_vms_put_u64(out, (uint64_t)b->stats[i]);
	return 0;
}

static int vb_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)version;
	struct vballoon *b = opaque;
	uint8_t doom = kl_vms_get_u8(in), rep = kl_vms_get_u8(in);
	uint32_t num = kl_vms_get_u32(in);
	uint32_t act = kl_vms_get_u32_max(in, (uint32_t)(ram_size(b) >> PFN_SHIFT), "actual");
	uint32_t poison = kl_vms_get_u32(in);
	uint64_t poll = kl_vms_get_u64_max(in, UINT32_MAX / 1000, "guest-stats-polling-interval");
	int64_t last = (int64_t)kl_vms_get_u64(in);
	int64_t st[KL_BALLOON_NSTATS];
	for (unsigned i = 0; i < KL_BALLOON_NSTATS; i++)
		st[i] = (int64_t)kl_vms_get_u64(in);
	if (kl_vms_failed(in))
		return -1;
	if (doom != b->deflate_on_oom || rep != b->reporting) {
		*err = g_strdup_printf("virtio-balloon: deflate-on-oom/free-page-reporting differ: "
				       "stream %u/%u, here %u/%u", doom, rep, b->deflate_on_oom,
				       b->reporting);
		return -1;
	}
	b->num_pages = num;
	kl_put32(b->vd->config + C_NUM_PAGES, num);
	b->poison_val = poison;
	kl_put32(b->vd->config + C_POISON, poison);
	set_actual(b, act);
	b->last_update = last;
	memcpy(b->stats, st, sizeof(st));
	if ((int64_t)poll != b->poll_interval)
		poll_set(b, (int64_t)poll);
	return 0;
}

static const struct kl_vmstate_ops vb_vmstate_ops = {
	.kind = "virtio-balloon",
	.version = VB_STATE_VERSION,
	.min_version = VB_STATE_VERSION,
	.quiesce = vb_quiesce,
	.save = vb_save,
	.load = vb_load,
};

static void vb_destroy(struct kl_virtio_dev *vd)
{
	struct vballoon *b = vd->opaque;
	kl_vmstate_unregister(vd->vm, &vb_vmstate_ops, b);
	kl_balloon_unregister(b);
	kl_qom_remove(b->qom_path);
	if (b->poll_timer)
		kl_source_remove(b->poll_timer);
	g_free(b->stats_elem); /* the transport is going away with it */
	g_free(b->qom_path);
	g_free((void *)vd->ops);
	g_free(b);
}

static int vb_create(struct kl_vm *vm, struct kl_opts *opts, enum kl_virtio_transport_kind t,
		     char **err)
{
	const char *tname = kl_virtio_type_name("virtio-balloon", t);
	bool doom, rep, b_;
	uint64_t slot = 0;
	if (kl_opts_get_bool(opts, "deflate-on-oom", false, &doom, err) < 0 ||
	    kl_opts_get_bool(opts, "free-page-reporting", false, &rep, err) < 0 ||
	    (t == KL_VIRTIO_TRANSPORT_PCI && kl_opts_get_u64(opts, "addr", 0, &slot, err) < 0))
		return -1;
	if (kl_opts_get_bool(opts, "free-page-hint", false, &b_, err) < 0)
		return -1;
	if (b_) {
		*err = g_strdup_printf("%s: free-page-hint=on is not supported", tname);
		return -1;
	}
	if (slot >= KL_PCI_NSLOTS) {
		*err = g_strdup_printf("%s: addr=%" G_GUINT64_FORMAT
				       " is not a PCI slot (1..31)", tname, (guint64)slot);
		return -1;
	}
	if (kl_balloon_present()) {
		*err = g_strdup_printf("%s: only one balloon device is supported", tname);
		return -1;
	}
	struct vballoon *b = g_new0(struct vballoon, 1);
	b->deflate_on_oom = doom;
	b->reporting = rep;
	stats_reset(b);
	struct kl_virtio_ops *ops = g_new0(struct kl_virtio_ops, 1);
	ops->device_features = 1ULL << F_STATS_VQ | 1ULL << F_PAGE_POISON |
			       (doom ? 1ULL << F_DEFLATE_ON_OOM : 0) | (rep ? 1ULL << F_REPORTING : 0);
	ops->config_write = vb_config_write;
	ops->queue_notify = vb_notify;
	ops->reset = vb_reset;
	ops->destroy = vb_destroy;
	struct kl_virtio_pci_info info = {
		.name = tname, .device_id = VIRTIO_ID_BALLOON,
		.class_code = 0x00ff00, /* QEMU: PCI_CLASS_OTHERS */
		.num_queues = rep ? 4 : 3, .queue_size = QUEUE_SIZE, .config_len = CONFIG_LEN,
		.slot = slot ? (int)slot : -1,
	};
	b->vd = kl_virtio_create(vm, t, &info, ops, b, err);
	if (!b->vd) {
		g_free(ops);
		g_free(b);
		return -1;
	}
	b->qom_path = g_strdup(kl_device_path() ? kl_device_path() : "/machine/peripheral-anon/balloon");
	kl_balloon_register(&vb_balloon_ops, b);
	kl_qom_add(b->qom_path, tname, vb_props, b);
	kl_vmstate_register(vm, b->vd->inst, &vb_vmstate_ops, b);
	return 0;
}

KL_VIRTIO_DEVICE_TYPES(virtio_balloon, "virtio-balloon",
		       "virtio memory balloon (deflate-on-oom=on|off, free-page-reporting=on|off, "
		       "addr=SLOT on PCI)",
		       vb_create, false)
