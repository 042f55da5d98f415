/* Character back-ends without a peer to accept: null, stdio, file, pipe,
 * pty, ringbuf (socket.c has the socket). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "chardev_int.h"

/* ---------------- null ---------------- */

static void null_write(struct kl_chardev *cd, const uint8_t *buf, size_t len)
{
	(void)cd, (void)buf, (void)len;
}

static int null_open(struct kl_chardev *cd, struct kl_opts *o, char **err)
{
	(void)o, (void)err;
	cd->connected = true;
	return 0;
}

const struct kl_chr_be kl_chr_null = { .name = "null", .open = null_open, .write = null_write };

/* ---------------- stdio ---------------- */

static struct termios saved_tty;
static bool tty_saved, stdio_taken;

void kl_chardev_restore_tty(void)
{
	if (tty_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
		tty_saved = false;
	}
}

static int stdio_open(struct kl_chardev *cd, struct kl_opts *o, char **err)
{
	bool sig;
	if (kl_opts_get_bool(o, "signal", true, &sig, err) < 0)
		return -1;
	if (stdio_taken) {
		*err = g_strdup("cannot use stdio by multiple character devices");
		return -1;
	}
	int in = STDIN_FILENO;
	struct stat st;
	if (fstat(STDIN_FILENO, &st) < 0) {
		in = -1;
	} else if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tty) == 0) {
		struct termios t = saved_tty;
		t.c_lflag &= ~(ICANON | ECHO | ECHONL | IEXTEN);
		if (!sig)
			t.c_lflag &= ~ISIG;
		t.c_iflag &= ~(ICRNL | INLCR | IGNCR | IXON);
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		/* signal=on (the default): Ctrl-C stops kvmlite like a signal */
		tty_saved = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
	}
	if (in >= 0)
		fcntl(in, F_SETFL, fcntl(in, F_GETFL) | O_NONBLOCK);
	stdio_taken = true;
	kl_chr_set_connected(cd, in, STDOUT_FILENO, false);
	return 0;
}

static void stdio_close(struct kl_chardev *cd)
{
	(void)cd;
	stdio_taken = false;
}

const struct kl_chr_be kl_chr_stdio = { .name = "stdio", .open = stdio_open, .close = stdio_close };

/* ---------------- file ---------------- */

static int file_open(struct kl_chardev *cd, struct kl_opts *o, char **err)
{
	const char *path = kl_opts_get(o, "path");
	bool append;
	if (kl_opts_get_bool(o, "append", false, &append, err) < 0)
		return -1;
	if (!path || !*path) {
		*err = g_strdup("parameter 'path' is missing");
		return -1;
	}
	int fd = kl_chardev_open_path(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC),
				      0666, err);
	if (fd < 0)
		return -1;
	kl_chr_set_connected(cd, -1, fd, true);
	return 0;
}

const struct kl_chr_be kl_chr_file = { .name = "file", .open = file_open };

/* ---------------- pipe ---------------- */

/* PATH.in and PATH.out (both), or else PATH for both ways, as QEMU. */
static int pipe_open(struct kl_chardev *cd, struct kl_opts *o, char **err)
{
	const char *path = kl_opts_get(o, "path");
	if (!path || !*path) {
		*err = g_strdup("parameter 'path' is missing");
		return -1;
	}
	char *pin = g_strconcat(path, ".in", NULL), *pout = g_strconcat(path, ".out", NULL);
	char *e = NULL;
	int in = kl_chardev_open_path(pin, O_RDWR | O_NONBLOCK, 0, &e);
	g_free(e);
	e = NULL;
	int out = kl_chardev_open_path(pout, O_RDWR, 0, &e);
	g_free(e);
	g_free(pin);
	g_free(pout);
	if (in < 0 || out < 0) {
		if (in >= 0)
			close(in);
		if (out >= 0)
			close(out);
		in = kl_chardev_open_path(path, O_RDWR | O_NONBLOCK, 0, err);
		if (in < 0)
			return -1;
		out = in;
	}
	kl_chr_set_connected(cd, in, out, true);
	return 0;
}

const struct kl_chr_be kl_chr_pipe = { .name = "pipe", .open = pipe_open };

/* ---------------- pty ---------------- */

static int pty_open(struct kl_chardev *cd, struct kl_opts *o, char **err)
{
	(void)o;
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) {
		*err = g_strdup_printf("cannot open a pty: %s", g_strerror(errno));
		if (m >= 0)
			close(m);
		return -1;
	}
	const char *name = ptsname(m);
	/* raw mode, as QEMU sets it (through the master: same termios) */
	struct termios t;
	if (tcgetattr(m, &t) == 0) {
		cfmakeraw(&t);
		tcsetattr(m, TCSANOW, &t);
	}
	cd->filename = g_strdup_printf("pty:%s", name ? name : "?");
	fprintf(stderr, "char device redirected to %s (label %s)\n", name ? name : "?", cd->label);
	kl_chr_set_connected(cd, m, m, true);
	return 0;
}

const struct kl_chr_be kl_chr_pty = { .name = "pty", .open = pty_open };

/* ---------------- ringbuf ---------------- */

static void rb_put(struct kl_chardev *cd, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		cd->rb[cd->rb_prod++ & (cd->rb_size - 1)] = buf[i];
		if (cd->rb_prod - cd->rb_cons > cd->rb_size)
			cd->rb_cons = cd->rb_prod - cd->rb_size; /* overwrite the oldest */
	}
}

static int ringbuf_open(struct kl_chardev *cd, struct kl_opts *o, char **err)
{
	uint64_t size;
	if (kl_opts_get_size(o, "size", 65536, &size, err) < 0)
		return -1;
	if (size == 0 || (size & (size - 1)) || size > (1u << 30)) {
		*err = g_strdup_printf("size=%llu: the size of a ringbuf chardev must be a power "
				       "of two (at most 1G)", (unsigned long long)size);
		return -1;
	}
	cd->rb_size = size;
	cd->rb = g_malloc0(size);
	cd->connected = true;
	return 0;
}

const struct kl_chr_be kl_chr_ringbuf = { .name = "ringbuf", .open = ringbuf_open,
					  .write = rb_put };

static struct kl_chardev *ringbuf_find(const char *label, char **err)
{
	struct kl_chardev *cd = kl_chardev_find(label);
	if (!cd)
		*err = g_strdup_printf("Device '%s' not found", label);
	else if (cd->be != &kl_chr_ringbuf)
		*err = g_strdup_printf("%s is not a ringbuffer device", label);
	else
		return cd;
	return NULL;
}

int kl_chardev_ringbuf_write(const char *label, const uint8_t *buf, size_t len, char **err)
{
	struct kl_chardev *cd = ringbuf_find(label, err);
	if (!cd)
		return -1;
	rb_put(cd, buf, len);
	return 0;
}

int kl_chardev_ringbuf_read(const char *label, size_t size, uint8_t **out, size_t *len,
			    char **err)
{
	struct kl_chardev *cd = ringbuf_find(label, err);
	if (!cd)
		return -1;
	size_t n = cd->rb_prod - cd->rb_cons;
	if (n > size)
		n = size;
	*out = g_malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		(*out)[i] = cd->rb[cd->rb_cons++ & (cd->rb_size - 1)];
	(*out)[n] = 0;
	*len = n;
	return 0;
}
