/* iovec helpers: see include/kvmlite/iov.h. */
#include "kvmlite/iov.h"

#include <string.h>

uint64_t kl_iov_size(const struct iovec *iov, unsigned cnt)
{
	uint64_t s = 0;
	for (unsigned i = 0; i < cnt; i++)
		s += iov[i].iov_len;
	return s;
}

enum xfer { TO_BUF, FROM_BUF, SET };

/* Walk iov[off, off+len) and copy to/from buf or fill it with c. */
static size_t xfer(const struct iovec *iov, unsigned cnt, size_t off, char *buf, int c,
		   size_t len, enum xfer how)
{
	size_t done = 0;
	for (unsigned i = 0; i < cnt && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t n = iov[i].iov_len - off;
		if (n > len - done)
			n = len - done;
		char *p = (char *)iov[i].iov_base + off;
		if (how == TO_BUF)
			memcpy(buf + done, p, n);
		else if (how == FROM_BUF)
			memcpy(p, buf + done, n);
		else
			memset(p, c, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t kl_iov_to_buf(const struct iovec *iov, unsigned cnt, size_t off, void *buf, size_t len)
{
	return xfer(iov, cnt, off, buf, 0, len, TO_BUF);
}

size_t kl_iov_from_buf(const struct iovec *iov, unsigned cnt, size_t off, const void *buf,
		       size_t len)
{
	return xfer(iov, cnt, off, (char *)buf, 0, len, FROM_BUF);
}

size_t kl_iov_memset(const struct iovec *iov, unsigned cnt, size_t off, int c, size_t len)
{
	return xfer(iov, cnt, off, NULL, c, len, SET);
}

int kl_iov_slice(const struct iovec *iov, unsigned cnt, size_t off, size_t len,
		 struct iovec *out, unsigned max)
{
	unsigned n = 0;
	for (unsigned i = 0; i < cnt && len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		if (n == max)
			return -1;
		size_t take = (iov[i].iov_len - off < len ? iov[i].iov_len - off : len);
		out[n].iov_base = (char *)iov[i].iov_base + off;
		out[n].iov_len = take;
		n++;
		len -= take;
		off = 0;
	}
	return len ? -1 : (int)n;
}
