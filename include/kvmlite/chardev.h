/* Character back-end layer (src/chardev/): every device that talks bytes
 * (16550, virtio consoles and ports, the QMP monitor) is a front-end of one
 * chardev; the chardev is one back-end (QEMU 7.2's -chardev):
 *
 *   -chardev null,id=ID
 *   -chardev stdio,id=ID[,signal=on|off]
 *   -chardev file,id=ID,path=P[,append=on]
 *   -chardev pipe,id=ID,path=P        P.in / P.out (or P for both)
 *   -chardev pty,id=ID                "char device redirected to /dev/pts/N (label ID)"
 *   -chardev socket,id=ID,path=P|host=H,port=N|fd=N[,server=on][,wait=off]
 *   -chardev ringbuf,id=ID[,size=65536]   (QMP ringbuf-read / ringbuf-write)
 *
 * All functions run on the main thread with the BQL held (vCPU device
 * handlers hold it too).  Output is buffered in the layer: a front-end's
 * write never blocks; a socket peer that never reads is disconnected once
 * KL_CHR_MAX_OUT bytes are pending, other back-ends drop the excess.
 */
#ifndef KVMLITE_CHARDEV_H
#define KVMLITE_CHARDEV_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct kl_opts;
struct kl_chardev;

#define KL_CHR_MAX_OUT (16u << 20)

enum kl_chr_event {
	KL_CHR_EVENT_OPENED, /* the back-end is connected (at attach if already) */
	KL_CHR_EVENT_CLOSED, /* the peer went away (socket hang-up) */
};

struct kl_chr_fe_ops {
	/* bytes the front-end can take now (0: the layer stops reading until
	 * kl_chr_fe_accept_input) */
	size_t (*can_read)(void *opaque);
	void (*read)(void *opaque, const uint8_t *buf, size_t len);
	void (*event)(void *opaque, enum kl_chr_event ev); /* may be NULL */
};

/* -chardev SPEC: 0, or -1 with *err ("-chardev 'SPEC': ..."). */
int kl_chardev_add(const char *spec, char **err);
/* Create from parsed options (backend= holds the type); what names the
 * flag for messages.  Unknown keys are an error. */
struct kl_chardev *kl_chardev_new_opts(const char *what, const char *label, struct kl_opts *o,
				       char **err);
/* -serial / -qmp legacy forms: "stdio", "null", "none", "file:P", "pipe:P",
 * "pty", "unix:P[,server=on,...]", "tcp:H:P[,...]", "chardev:ID" (an
 * existing chardev).  New chardevs get label. */
struct kl_chardev *kl_chardev_legacy(const char *what, const char *spec, const char *label,
				     char **err);
/* An anonymous socket chardev on a connected socket (unit tests). */
struct kl_chardev *kl_chardev_new_connected_fd(const char *label, int fd);
struct kl_chardev *kl_chardev_find(const char *label);
const char *kl_chardev_label(const struct kl_chardev *cd);
bool kl_chardev_is_socket(const struct kl_chardev *cd);

/* Open a path named on the command line (file=, path=): the one place
 * where a later /dev/fdset/N lookup goes.  -1 with *err naming the path. */
int kl_chardev_open_path(const char *path, int flags, mode_t mode, char **err);

/* ---- front-end API ---- */
/* -1 with *err if another front-end holds it.  Sends OPENED at once when
 * the back-end is already connected. */
int kl_chr_fe_attach(struct kl_chardev *cd, const struct kl_chr_fe_ops *ops, void *opaque,
		     char **err);
void kl_chr_fe_detach(struct kl_chardev *cd);
/* Queue bytes for the back-end; returns how many were taken (fewer only
 * when the output buffer is full or nothing is connected: a UART with no
 * listener drops them). */
size_t kl_chr_fe_write(struct kl_chardev *cd, const void *buf, size_t len);
/* The front-end can take input again (after can_read returned 0). */
void kl_chr_fe_accept_input(struct kl_chardev *cd);
bool kl_chr_fe_connected(const struct kl_chardev *cd);
/* query-chardev frontend-open (attach sets it; virtio ports follow the guest). */
void kl_chr_fe_set_open(struct kl_chardev *cd, bool open);
/* Drop the connection of a socket chardev (server: listen again). */
void kl_chr_fe_disconnect(struct kl_chardev *cd);
/* Output bytes not yet written to the back-end. */
size_t kl_chr_fe_pending(const struct kl_chardev *cd);

/* ---- query-chardev ---- */
struct kl_chardev_info {
	char *label;
	char *filename;
	bool frontend_open;
};
GPtrArray *kl_chardev_list(void); /* of kl_chardev_info, frees them */

/* ---- ringbuf (QMP ringbuf-write / ringbuf-read) ---- */
int kl_chardev_ringbuf_write(const char *label, const uint8_t *buf, size_t len, char **err);
/* up to size bytes (removed from the ring); *out g_malloc'ed */
int kl_chardev_ringbuf_read(const char *label, size_t size, uint8_t **out, size_t *len,
			    char **err);

/* At exit: flush pending output (bounded wait), close everything, unlink
 * listening unix socket paths, restore the terminal. */
void kl_chardev_cleanup(void);
/* Restore the terminal of a stdio chardev (also from die()). */
void kl_chardev_restore_tty(void);

#endif
