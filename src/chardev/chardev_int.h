/* Internals of src/chardev/: the chardev object and the back-end ops. */
#ifndef KVMLITE_CHARDEV_INT_H
#define KVMLITE_CHARDEV_INT_H

#include "kvmlite/chardev.h"
#include "kvmlite/opts.h"

#define KL_CHR_PAUSE_INPUT_AT (1u << 20) /* stop reading while this much is unsent */

struct kl_chr_be {
	const char *name;
	/* Read the back-end's keys from o and open; set in_fd/out_fd (or a
	 * socket listener) and cd->connected.  0, or -1 with *err (the
	 * message without the "-chardev 'spec':" prefix). */
	int (*open)(struct kl_chardev *cd, struct kl_opts *o, char **err);
	/* write hook for back-ends without an out_fd (ringbuf, null) */
	void (*write)(struct kl_chardev *cd, const uint8_t *buf, size_t len);
	void (*close)(struct kl_chardev *cd); /* free back-end state (may be NULL) */
};

struct kl_chardev {
	char *label;
	char *filename;             /* query-chardev (sockets: "disconnected:" when idle) */
	const struct kl_chr_be *be;
	bool connected;
	int in_fd, out_fd;          /* -1: none; equal for sockets */
	bool close_in, close_out;   /* ours to close (never stdin/stdout) */
	guint in_watch, out_watch;
	GString *out;               /* pending output from out_off */
	size_t out_off;
	guint retry_timer;          /* pty: re-poll a slave-less master */
	guint lost_timer;           /* a write failed: drop the peer from the loop */
	/* front-end */
	const struct kl_chr_fe_ops *fe;
	void *fe_opaque;
	bool fe_open;
	/* socket */
	bool is_socket, server;
	int listen_fd;
	guint listen_watch;
	char *unlink_path;
	/* ringbuf */
	uint8_t *rb;
	size_t rb_size, rb_prod, rb_cons;
};

extern const struct kl_chr_be kl_chr_null, kl_chr_stdio, kl_chr_file, kl_chr_pipe, kl_chr_pty,
	kl_chr_ringbuf, kl_chr_socket;

/* chardev.c: the generic fd machinery the back-ends use */
void kl_chr_set_connected(struct kl_chardev *cd, int in_fd, int out_fd, bool close_fds);
void kl_chr_lost(struct kl_chardev *cd);          /* peer gone: close, CLOSED */
void kl_chr_update_read(struct kl_chardev *cd);   /* (re-)arm the input watch */
void kl_chr_deliver(struct kl_chardev *cd, const uint8_t *buf, size_t len);

/* socket.c */
void kl_chr_socket_close(struct kl_chardev *cd);
/* unix / loopback TCP sockets (also for the unit tests) */
int kl_sock_listen_unix(const char *path, char **err);
int kl_sock_connect_unix(const char *path, char **err);
int kl_sock_tcp(const char *host, const char *port, bool server, char **err);

#endif
