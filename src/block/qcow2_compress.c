/* qcow2 compressed clusters: zlib (raw deflate, 4 KiB window as written by
 * QEMU) and zstd.  Decompression stops once a whole cluster is produced;
 * the input may carry trailing bytes of the last 512-byte sector. */
#include <errno.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "qcow2.h"

static int dec_zlib(const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -12) != Z_OK)
		return -EIO;
	z.next_in = (Bytef *)src;
	z.avail_in = (uInt)slen;
	z.next_out = dst;
	z.avail_out = (uInt)dlen;
	int r = inflate(&z, Z_FINISH);
	int ret = ((r == Z_STREAM_END || r == Z_BUF_ERROR || r == Z_OK) && z.avail_out == 0) ?
		  0 : -EIO;
	inflateEnd(&z);
	return ret;
}

static int dec_zstd(const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	if (!d)
		return -ENOMEM;
	ZSTD_inBuffer in = { src, slen, 0 };
	ZSTD_outBuffer out = { dst, dlen, 0 };
	int ret = -EIO;
	while (out.pos < out.size) {
		size_t prev_in = in.pos, prev_out = out.pos;
		size_t r = ZSTD_decompressStream(d, &out, &in);
		if (ZSTD_isError(r))
			break;
		if (out.pos == out.size) {
			ret = 0;
			break;
		}
		if (r == 0 || (in.pos == prev_in && out.pos == prev_out))
			break;
	}
	if (out.pos == out.size)
		ret = 0;
	ZSTD_freeDCtx(d);
	return ret;
}

int qc_decompress(int type, const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen)
{
	return type == 1 ? dec_zstd(src, slen, dst, dlen) : dec_zlib(src, slen, dst, dlen);
}
