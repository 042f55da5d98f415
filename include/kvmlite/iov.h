/* iovec helpers, one copy for the whole tree (virtio, block, qcow2).
 * Every copy is bounded by the iovec; they return the bytes done. */
#ifndef KVMLITE_IOV_H
#define KVMLITE_IOV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

uint64_t kl_iov_size(const struct iovec *iov, unsigned cnt);
/* iov[off, off+len) -> buf */
size_t kl_iov_to_buf(const struct iovec *iov, unsigned cnt, size_t off, void *buf, size_t len);
/* buf -> iov[off, off+len) */
size_t kl_iov_from_buf(const struct iovec *iov, unsigned cnt, size_t off, const void *buf,
		       size_t len);
/* iov[off, off+len) = c */
size_t kl_iov_memset(const struct iovec *iov, unsigned cnt, size_t off, int c, size_t len);
/* Copy the sub-range [off, off+len) of iov into out (max out entries);
 * returns the entry count, or -1 if it does not fit. */
int kl_iov_slice(const struct iovec *iov, unsigned cnt, size_t off, size_t len,
		 struct iovec *out, unsigned max);

#endif
