/* Format driver "raw": the guest's disk is the file's bytes, optionally a
 * window of it (`offset`, `size`, as QEMU's raw driver).  Every request is
 * passed to the file child with the offset added; nothing else. */
#include "node.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

struct raw {
	uint64_t offset;
};

static int raw_open(struct kl_bnode *bs, struct kl_opts *o, const struct kl_bnode_inherit *in,
		    char **err)
{
	struct raw *r = g_new0(struct raw, 1);
	uint64_t flen = kl_bnode_file_length(bs->file), size;
	(void)in;
	if (kl_opts_get_size(o, "offset", 0, &r->offset, err) < 0 ||
	    kl_opts_get_size(o, "size", UINT64_MAX, &size, err) < 0) {
		g_free(r);
		return -1;
	}
	if (r->offset > flen) {
		*err = g_strdup_printf("The sum of offset (%" G_GUINT64_FORMAT ") and size (0) "
				       "has to be smaller or equal to the actual size of the "
				       "containing file (%" G_GUINT64_FORMAT ")", r->offset, flen);
		g_free(r);
		return -1;
	}
	if (size == UINT64_MAX) {
		size = flen - r->offset;
	} else if (size > flen - r->offset) {
		*err = g_strdup_printf("The sum of offset (%" G_GUINT64_FORMAT ") and size (%"
				       G_GUINT64_FORMAT ") has to be smaller or equal to the actual "
				       "size of the containing file (%" G_GUINT64_FORMAT ")",
				       r->offset, size, flen);
		g_free(r);
		return -1;
	}
	bs->size = size;
	bs->opaque = r;
	return 0;
}

static void raw_close(struct kl_bnode *bs)
{
	g_free(bs->opaque);
	bs->opaque = NULL;
}

static uint64_t base(struct kl_bnode *bs)
{
	return ((struct raw *)bs->opaque)->offset;
}

static int raw_preadv(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		      uint64_t len, kl_blk_cb cb, void *opaque)
{
	(void)len;
	return kl_bnode_preadv(bs->file, off + base(bs), iov, iovcnt, cb, opaque);
}

/* A probed raw image must not turn into another format by a guest write to
 * its first sector (QEMU's restriction; the probing warning says so). */
static bool changes_format(struct kl_bnode *bs, uint64_t off, const struct iovec *iov,
			   int iovcnt)
{
	uint8_t sec[512];
	if (kl_bnode_pread_sync(bs->file, base(bs), sec, sizeof(sec)) < 0)
		return true;
	uint64_t pos = off;
	for (int i = 0; i < iovcnt && pos < sizeof(sec); i++) {
		size_t n = iov[i].iov_len;
		if (n > sizeof(sec) - pos)
			n = sizeof(sec) - (size_t)pos;
		memcpy(sec + pos, iov[i].iov_base, n);
		pos += iov[i].iov_len;
	}
	return kl_bdrv_probe_buf(sec, sizeof(sec)) != NULL;
}

static int raw_pwritev(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		       uint64_t len, kl_blk_cb cb, void *opaque)
{
	if (bs->probed && off < 512 && len && changes_format(bs, off, iov, iovcnt)) {
		kl_bnode_complete_later(cb, opaque, -EPERM);
		return 0;
	}
	return kl_bnode_pwritev(bs->file, off + base(bs), iov, iovcnt, cb, opaque);
}

static int raw_flush(struct kl_bnode *bs, kl_blk_cb cb, void *opaque)
{
	return kl_bnode_flush(bs->file, cb, opaque);
}

static int raw_discard(struct kl_bnode *bs, uint64_t off, uint64_t len, kl_blk_cb cb,
		       void *opaque)
{
	return kl_bnode_discard(bs->file, off + base(bs), len, cb, opaque);
}

static int raw_write_zeroes(struct kl_bnode *bs, uint64_t off, uint64_t len, unsigned flags,
			    kl_blk_cb cb, void *opaque)
{
	return kl_bnode_write_zeroes(bs->file, off + base(bs), len, flags, cb, opaque);
}

const struct kl_bdrv kl_bdrv_raw = {
	.name = "raw",
	.open = raw_open,
	.close = raw_close,
	.preadv = raw_preadv,
	.pwritev = raw_pwritev,
	.flush = raw_flush,
	.discard = raw_discard,
	.write_zeroes = raw_write_zeroes,
};
