/* Entropy back-ends (src/rng/rng.c), the -object types of QEMU 7.2:
 *   -object rng-random,id=R[,filename=/dev/urandom]   reads a file/device
 *   -object rng-builtin,id=R                           getrandom(2)
 * Users (virtio-rng) find them by id.  Reads never block: the file is opened
 * O_NONBLOCK and getrandom is called with GRND_NONBLOCK; when no bytes are
 * available the caller waits for kl_rng_fd() to become readable (or, with
 * no fd, retries later).  Main thread only (BQL held). */
#ifndef KVMLITE_RNG_H
#define KVMLITE_RNG_H

#include <stddef.h>
#include <sys/types.h>

struct kl_rng;

struct kl_rng *kl_rng_find(const char *id);
/* The default back-end of a virtio-rng device without rng= (an anonymous
 * rng-builtin owned by the caller): free it with kl_rng_free_default. */
struct kl_rng *kl_rng_new_default(void);
void kl_rng_free_default(struct kl_rng *r);
/* Up to len bytes: > 0 read, 0 none available now, -1 with errno (an
 * rng-random file at its end reads as -1 with EIO). */
ssize_t kl_rng_read(struct kl_rng *r, void *buf, size_t len);
/* The fd to wait on for readability, -1 for rng-builtin. */
int kl_rng_fd(const struct kl_rng *r);
const char *kl_rng_id(const struct kl_rng *r);     /* NULL for a default */
const char *kl_rng_type(const struct kl_rng *r);   /* "rng-random" / "rng-builtin" */

#endif
