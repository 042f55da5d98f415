/* Node driver "file" (the protocol node): opens a kl_bfile (file.c) with
 * the inherited cache flags and aio=, passes requests to it, and does the
 * synchronous metadata I/O formats use (through the same fd). */
#include "block_int.h"
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the "file" protocol driver ---- */

static struct kl_bfile *node_file(struct kl_bnode *bs)
{
	return bs->bfile;
}

static int file_open(struct kl_bnode *bs, struct kl_opts *o, const struct kl_bnode_inherit *in,
		     char **err)
{
	struct kl_bfile_opts fo = { .readonly = in->readonly, .direct = in->direct,
				    .dsync = in->writethrough, .no_flush = in->no_flush,
				    .engine = in->engine };
	const char *v;

	fo.filename = kl_opts_get(o, "filename");
	if (!fo.filename || !*fo.filename) {
		*err = g_strdup("Parameter 'filename' is required for driver 'file'");
		return -1;
	}
	if ((v = kl_opts_get(o, "aio")) && kl_blk_engine_parse(v, &fo.engine) < 0) {
		*err = g_strdup_printf("Parameter 'aio' does not accept value '%s'", v);
		return -1;
	}
	if ((v = kl_opts_get(o, "locking")) && strcmp(v, "auto") && strcmp(v, "on") &&
	    strcmp(v, "off")) {
		*err = g_strdup_printf("Parameter 'locking' does not accept value '%s'", v);
		return -1;
	}
	uint64_t mb;
	if (kl_opts_get_u64(o, "aio-max-batch", 0, &mb, err) < 0)
		return -1;
	fo.max_batch = mb > UINT_MAX ? UINT_MAX : (unsigned)mb; /* 0: the default */
	bs->bfile = kl_bfile_open(&fo, err);
	if (!bs->bfile)
		return -1;
	bs->in.engine = fo.engine;
	bs->filename = g_strdup(fo.filename);
	bs->size = bs->bfile->size;
	return 0;
}

static void file_close(struct kl_bnode *bs)
{
	kl_bfile_close(node_file(bs));
	bs->bfile = NULL;
}

static int file_preadv(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		       uint64_t len, kl_blk_cb cb, void *opaque)
{
	return kl_bfile_submit(node_file(bs), KL_BLK_READ, off, iov, iovcnt, len, cb, opaque);
}

static int file_pwritev(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
			uint64_t len, kl_blk_cb cb, void *opaque)
{
	return kl_bfile_submit(node_file(bs), KL_BLK_WRITE, off, iov, iovcnt, len, cb, opaque);
}

static int file_flush(struct kl_bnode *bs, kl_blk_cb cb, void *opaque)
{
	return kl_bfile_submit(node_file(bs), KL_BLK_FLUSH, 0, NULL, 0, 0, cb, opaque);
}

/* A discard passed to the file, counted as QEMU's file-posix does
 * (query-blockstats driver-specific discard-nb-ok/-failed, -bytes-ok). */
struct file_discard_req {
	struct kl_bnode *bs;
	uint64_t len;
	kl_blk_cb cb;
	void *opaque;
};

static void file_discard_done(void *opaque, long ret)
{
	struct file_discard_req *d = opaque;
	if (ret < 0) {
		d->bs->stats.discard_nb_failed++;
	} else {
		d->bs->stats.discard_nb_ok++;
		d->bs->stats.discard_bytes_ok += d->len;
	}
	kl_blk_cb cb = d->cb;
	void *o = d->opaque;
	g_free(d);
	cb(o, ret);
}

static int file_discard(struct kl_bnode *bs, uint64_t off, uint64_t len, kl_blk_cb cb,
			void *opaque)
{
	if (!bs->discard_unmap)
		return kl_bnode_complete_later(cb, opaque, 0), 0;
	struct file_discard_req *d = g_new(struct file_discard_req, 1);
	*d = (struct file_discard_req){ bs, len, cb, opaque };
	int r = kl_bfile_submit(node_file(bs), KL_BLK_DISCARD, off, NULL, 0, len,
				file_discard_done, d);
	if (r < 0)
		g_free(d);
	return r;
}

static int file_write_zeroes(struct kl_bnode *bs, uint64_t off, uint64_t len, unsigned flags,
			     kl_blk_cb cb, void *opaque)
{
	(void)flags;
	return kl_bfile_submit(node_file(bs), KL_BLK_WRITE_ZEROES, off, NULL, 0, len, cb, opaque);
}

/* Synchronous metadata I/O goes through the data fd, so with
 * cache.direct=on it bypasses the page cache as QEMU's does.  A buffered
 * second fd would leave the metadata's pages cached, and while a file has
 * any cached page every O_DIRECT write to it must also flush and invalidate
 * its range of the page cache: on this host that cost allocated qcow2
 * writes about a quarter of their IOPS, and the next run on the file too
 * (bench/README.md, "qcow2 metadata and the page cache").  An unaligned
 * request is done on the aligned blocks that cover it, through a bounce
 * buffer: read them, and for a write patch and write them back.  Those
 * blocks may hold a neighbouring cluster only when clusters are smaller
 * than the O_DIRECT alignment (512 B clusters on a 4 KiB-sector disk): a
 * write-back waits for the writes in flight to those blocks first
 * (kl_bfile_wait_span), or it would undo them; later ones start after it,
 * from the main loop. */
static int full_pread(int fd, char *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0 || (size_t)r < len) {
			/* a short read is the end of the file: zeroes after it
			 * (a second read from where it stopped would be
			 * unaligned, which O_DIRECT may refuse) */
			memset(p + r, 0, len - (size_t)r);
			break;
		}
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

static int full_pwrite(int fd, const char *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t r = pwrite(fd, p, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		p += r;
		off += (uint64_t)r;
		len -= (size_t)r;
	}
	return 0;
}

/* The aligned blocks [*boff, *boff + *blen) that cover [off, off + len),
 * and in *bounce a buffer for them that the O_DIRECT fd accepts, or NULL
 * when the request can go as it is.  -ENOMEM when no buffer. */
static int dio_bounce(const struct kl_bfile *bf, uint64_t off, size_t len, const void *buf,
		      uint64_t *boff, size_t *blen, char **bounce)
{
	uint64_t a = bf->align;
	*boff = off & ~(a - 1);
	*blen = (size_t)(((off + len + a - 1) & ~(a - 1)) - *boff);
	*bounce = NULL;
	if (!bf->direct || (*boff == off && *blen == len &&
			    !((uintptr_t)buf & (bf->mem_align - 1))))
		return 0;
	void *b;
	size_t ma = bf->mem_align > 4096 ? bf->mem_align : 4096;
	if (posix_memalign(&b, ma, *blen) != 0)
		return -ENOMEM;
	*bounce = b;
	return 0;
}

static int file_pread_sync(struct kl_bnode *bs, uint64_t off, void *buf, size_t len)
{
	struct kl_bfile *bf = node_file(bs);
	uint64_t boff;
	size_t blen;
	char *b;
	int r = dio_bounce(bf, off, len, buf, &boff, &blen, &b);
	if (r < 0 || !b)
		return r < 0 ? r : full_pread(bf->fd, buf, len, off);
	r = full_pread(bf->fd, b, blen, boff);
	if (r == 0)
		memcpy(buf, b + (off - boff), len);
	free(b);
	return r;
}

static int file_pwrite_sync(struct kl_bnode *bs, uint64_t off, const void *buf, size_t len)
{
	struct kl_bfile *bf = node_file(bs);
	if (bf->readonly)
		return -EROFS;
	uint64_t boff;
	size_t blen;
	char *b;
	int r = dio_bounce(bf, off, len, buf, &boff, &blen, &b);
	if (r < 0)
		return r;
	if (!b) {
		r = full_pwrite(bf->fd, buf, len, off);
	} else {
		/* read-modify-write of the covering blocks, unless the
		 * request covers them exactly (only the buffer was misaligned) */
		bool rmw = boff != off || blen != len;
		if (rmw)
			kl_bfile_wait_span(bf, boff, boff + blen);
		r = rmw ? full_pread(bf->fd, b, blen, boff) : 0;
		if (r == 0) {
			memcpy(b + (off - boff), buf, len);
			r = full_pwrite(bf->fd, b, blen, boff);
		}
		free(b);
		/* The tail block may have grown the file past the request's end:
		 * cut it back, so the file ends where a buffered write would. */
		uint64_t want = off + len > bf->size ? off + len : bf->size;
		if (r == 0 && !bf->is_bdev && boff + blen > want && ftruncate(bf->fd, (off_t)want) < 0)
			r = -errno;
	}
	if (r == 0 && !bf->is_bdev && off + len > bf->size)
		bf->size = off + len;
	return r;
}

static int file_flush_sync(struct kl_bnode *bs)
{
	struct kl_bfile *bf = node_file(bs);
	if (bf->no_flush || bf->readonly)
		return 0;
	return fdatasync(bf->fd) < 0 ? -errno : 0;
}

static int file_truncate_sync(struct kl_bnode *bs, uint64_t size)
{
	struct kl_bfile *bf = node_file(bs);
	if (bf->is_bdev)
		return size <= bf->size ? 0 : -ENOSPC;
	if (ftruncate(bf->fd, (off_t)size) < 0)
		return -errno;
	bf->size = size;
	return 0;
}

/* The size at open, grown by every write, truncate and fallocate this
 * process submits (file.c, above): no fstat() per call (qcow2 asks on each
 * cluster allocation). */
static uint64_t file_length(struct kl_bnode *bs)
{
	return node_file(bs)->size;
}

const struct kl_bdrv kl_bdrv_file = {
	.name = "file",
	.protocol = true,
	.open = file_open,
	.close = file_close,
	.preadv = file_preadv,
	.pwritev = file_pwritev,
	.flush = file_flush,
	.discard = file_discard,
	.write_zeroes = file_write_zeroes,
	.pread_sync = file_pread_sync,
	.pwrite_sync = file_pwrite_sync,
	.flush_sync = file_flush_sync,
	.truncate_sync = file_truncate_sync,
	.file_length = file_length,
};
