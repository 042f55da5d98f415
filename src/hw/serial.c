/* 16550A UART with stdio / file / unix-socket / null back-ends. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "kvmlite/bus.h"
#include "kvmlite/hw.h"
#include "kvmlite/loop.h"
#include "kvmlite/opts.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define UART_IER_RDI 0x01
#define UART_IER_THRI 0x02
#define UART_IER_RLSI 0x04
#define UART_IER_MSI 0x08
#define UART_IIR_NO_INT 0x01
#define UART_IIR_MSI 0x00
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI 0x04
#define UART_IIR_FIFO 0xc0
#define UART_LCR_DLAB 0x80
#define UART_MCR_DTR 0x01
#define UART_MCR_RTS 0x02
#define UART_MCR_OUT1 0x04
#define UART_MCR_OUT2 0x08
#define UART_MCR_LOOP 0x10
#define UART_LSR_DR 0x01
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_MSR_CTS 0x10
#define UART_MSR_DSR 0x20
#define UART_MSR_RI 0x40
#define UART_MSR_DCD 0x80
#define RX_SIZE 256

enum backend { BE_NULL, BE_STDIO, BE_FILE, BE_UNIX };

struct serial {
	struct kl_vm *vm;
	unsigned irq;
	uint8_t ier, lcr, mcr, lsr, msr, scr, fcr, dll, dlm;
	bool thr_ipending;
	int irq_level;
	uint8_t rx[RX_SIZE];
	unsigned rx_head, rx_count;
	enum backend be;
	int out_fd, in_fd;
	int listen_fd;
	guint in_watch, listen_watch;
};

static const struct kl_vmstate_ops serial_vmstate;
static struct termios saved_tty;
static bool tty_saved;

void kl_serial_restore_tty(void)
{
	if (tty_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
		tty_saved = false;
	}
}

/* Highest-priority pending interrupt source (IIR bits 3:0). */
static uint8_t pending_source(const struct serial *s)
{
	if ((s->ier & UART_IER_RDI) && s->rx_count)
		return UART_IIR_RDI;
	if ((s->ier & UART_IER_THRI) && s->thr_ipending)
		return UART_IIR_THRI;
	return UART_IIR_NO_INT;
}

static void update_irq(struct serial *s)
{
	/* OUT2 gates the interrupt line on PCs. */
	int level = pending_source(s) != UART_IIR_NO_INT && (s->mcr & UART_MCR_OUT2);
	if (level != s->irq_level) {
		s->irq_level = level;
		kl_vm_set_irq(s->vm, s->irq, level);
	}
}

static uint8_t iir_value(const struct serial *s)
{
	return pending_source(s) | ((s->fcr & 1) ? UART_IIR_FIFO : 0);
}

static void rx_push(struct serial *s, uint8_t b)
{
	if (s->rx_count == RX_SIZE)
		return; /* overrun: drop */
	s->rx[(s->rx_head + s->rx_count) % RX_SIZE] = b;
	s->rx_count++;
}

static bool in_ready(int fd, GIOCondition cond, void *opaque);

static void watch_input(struct serial *s)
{
	if (s->in_fd >= 0 && !s->in_watch && s->rx_count < RX_SIZE)
		s->in_watch = kl_fd_add(s->in_fd, G_IO_IN | G_IO_HUP | G_IO_ERR, in_ready, s);
}

static void transmit(struct serial *s, uint8_t b)
{
	if (s->mcr & UART_MCR_LOOP) {
		rx_push(s, b);
		return;
	}
	if (s->out_fd < 0)
		return;
	ssize_t r;
	do {
		r = write(s->out_fd, &b, 1);
	} while (r < 0 && errno == EINTR);
	/* A full socket buffer or a gone client drops the byte, as a UART
	 * with nothing listening does. */
}

static void drop_client(struct serial *s)
{
	if (s->in_watch) {
		kl_source_remove(s->in_watch);
		s->in_watch = 0;
	}
	if (s->out_fd >= 0)
		close(s->out_fd);
	s->out_fd = s->in_fd = -1;
}

static bool in_ready(int fd, GIOCondition cond, void *opaque)
{
	struct serial *s = opaque;
	uint8_t buf[64];
	size_t room = RX_SIZE - s->rx_count;
	if (room > sizeof(buf))
		room = sizeof(buf);
	ssize_t n = room ? read(fd, buf, room) : 0;
	if (n <= 0 && (cond & (G_IO_HUP | G_IO_ERR) || n == 0)) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return true;
		s->in_watch = 0;
		if (s->be == BE_UNIX)
			drop_client(s);
		else
			s->in_fd = -1; /* stdin closed: stop reading */
		return false;
	}
	if (n < 0)
		return true;
	for (ssize_t i = 0; i < n; i++)
		rx_push(s, buf[i]);
	s->lsr |= UART_LSR_DR;
	update_irq(s);
	if (s->rx_count >= RX_SIZE) {
		s->in_watch = 0;
		return false; /* resume once the guest drains */
	}
	return true;
}

static bool accept_ready(int fd, GIOCondition cond, void *opaque)
{
	(void)cond;
	struct serial *s = opaque;
	int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return true;
	if (s->out_fd >= 0) {
		close(c); /* one client at a time */
		return true;
	}
	s->out_fd = s->in_fd = c;
	watch_input(s);
	return true;
}

static uint64_t serial_read(void *opaque, uint64_t off, unsigned size)
{
	struct serial *s = opaque;
	(void)size;
	uint8_t v = 0xff;
	switch (off) {
	case 0:
		if (s->lcr & UART_LCR_DLAB) {
			v = s->dll;
		} else {
			v = 0;
			if (s->rx_count) {
				v = s->rx[s->rx_head];
				s->rx_head = (s->rx_head + 1) % RX_SIZE;
				s->rx_count--;
			}
			if (!s->rx_count)
				s->lsr &= ~UART_LSR_DR;
			update_irq(s);
			watch_input(s);
		}
		break;
	case 1:
		v = (s->lcr & UART_LCR_DLAB) ? s->dlm : s->ier;
		break;
	case 2:
		v = iir_value(s);
		if ((v & 0x0f) == UART_IIR_THRI) {
			s->thr_ipending = false;
			update_irq(s);
		}
		break;
	case 3: v = s->lcr; break;
	case 4: v = s->mcr; break;
	case 5: v = s->lsr | UART_LSR_THRE | UART_LSR_TEMT; break;
	case 6:
		if (s->mcr & UART_MCR_LOOP) {
			v = 0;
			if (s->mcr & UART_MCR_RTS) v |= UART_MSR_CTS;
			if (s->mcr & UART_MCR_DTR) v |= UART_MSR_DSR;
			if (s->mcr & UART_MCR_OUT1) v |= UART_MSR_RI;
			if (s->mcr & UART_MCR_OUT2) v |= UART_MSR_DCD;
		} else {
			v = s->msr;
		}
		break;
	case 7: v = s->scr; break;
	}
	return v;
}

static void serial_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct serial *s = opaque;
	(void)size;
	uint8_t v = (uint8_t)val;
	switch (off) {
	case 0:
		if (s->lcr & UART_LCR_DLAB) {
			s->dll = v;
		} else {
			transmit(s, v);
			if (s->mcr & UART_MCR_LOOP)
				s->lsr |= UART_LSR_DR;
			s->thr_ipending = true; /* transmitted at once: THR empty again */
			update_irq(s);
		}
		break;
	case 1:
		if (s->lcr & UART_LCR_DLAB) {
			s->dlm = v;
		} else {
			uint8_t old = s->ier;
			s->ier = v & 0x0f;
			/* Enabling THRI with an empty THR raises it at once. */
			if (!(old & UART_IER_THRI) && (s->ier & UART_IER_THRI))
				s->thr_ipending = true;
			update_irq(s);
		}
		break;
	case 2:
		s->fcr = v & 0xc9;
		if (v & 0x02) { /* clear RX FIFO */
			s->rx_count = 0;
			s->lsr &= ~UART_LSR_DR;
			watch_input(s);
		}
		update_irq(s);
		break;
	case 3: s->lcr = v; break;
	case 4:
		s->mcr = v & 0x1f;
		update_irq(s);
		break;
	case 7: s->scr = v; break;
	default: break;
	}
}

static const struct kl_io_ops serial_ops = { serial_read, serial_write };

static void serial_reset(void *opaque)
{
	struct serial *s = opaque;
	s->ier = s->lcr = s->mcr = s->scr = s->fcr = 0;
	s->dll = 0x0c;
	s->dlm = 0;
	s->lsr = UART_LSR_THRE | UART_LSR_TEMT;
	s->msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
	s->thr_ipending = false;
	s->rx_count = 0;
	update_irq(s);
}

static int open_backend(struct serial *s, const char *spec, char **err)
{
	s->out_fd = s->in_fd = s->listen_fd = -1;
	if (!strcmp(spec, "null") || !strcmp(spec, "none")) {
		s->be = BE_NULL;
		return 0;
	}
	if (!strcmp(spec, "stdio") || !strcmp(spec, "mon:stdio")) {
		s->be = BE_STDIO;
		s->out_fd = STDOUT_FILENO;
		s->in_fd = STDIN_FILENO;
		struct stat st;
		if (fstat(STDIN_FILENO, &st) < 0) {
			s->in_fd = -1;
		} else if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tty) == 0) {
			struct termios t = saved_tty;
			t.c_lflag &= ~(ICANON | ECHO | ECHONL | IEXTEN);
			t.c_iflag &= ~(ICRNL | INLCR | IGNCR | IXON);
			t.c_cc[VMIN] = 1;
			t.c_cc[VTIME] = 0;
			/* ISIG stays on: Ctrl-C stops kvmlite like a signal. */
			tty_saved = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
		}
		if (s->in_fd >= 0)
			fcntl(s->in_fd, F_SETFL, fcntl(s->in_fd, F_GETFL) | O_NONBLOCK);
		return 0;
	}
	if (g_str_has_prefix(spec, "file:")) {
		s->be = BE_FILE;
		s->out_fd = open(spec + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (s->out_fd < 0) {
			*err = g_strdup_printf("-serial %s: cannot open '%s': %s", spec, spec + 5,
					       g_strerror(errno));
			return -1;
		}
		return 0;
	}
	if (g_str_has_prefix(spec, "unix:")) {
		struct kl_opts *o = kl_opts_parse(spec + 5, "path", err);
		if (!o)
			return -1;
		bool server, wait;
		const char *path = kl_opts_get(o, "path");
		if (kl_opts_get_bool(o, "server", false, &server, err) < 0 ||
		    kl_opts_get_bool(o, "wait", true, &wait, err) < 0 ||
		    kl_opts_check_unused(o, "-serial unix", err) < 0) {
			kl_opts_free(o);
			return -1;
		}
		if (!server) {
			*err = g_strdup_printf("-serial %s: only server mode is supported (add ,server=on)", spec);
			kl_opts_free(o);
			return -1;
		}
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (!path || strlen(path) >= sizeof(sa.sun_path)) {
			*err = g_strdup_printf("-serial %s: bad socket path", spec);
			kl_opts_free(o);
			return -1;
		}
		strcpy(sa.sun_path, path);
		unlink(path);
		s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(s->listen_fd, 1) < 0) {
			*err = g_strdup_printf("-serial %s: cannot listen on '%s': %s", spec, path,
					       g_strerror(errno));
			kl_opts_free(o);
			return -1;
		}
		kl_opts_free(o);
		s->be = BE_UNIX;
		if (wait) {
			/* Like QEMU: block until a client connects. */
			fprintf(stderr, "kvmlite: waiting for connection on serial socket %s\n", path);
			fcntl(s->listen_fd, F_SETFL, fcntl(s->listen_fd, F_GETFL) & ~O_NONBLOCK);
			int c = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			fcntl(s->listen_fd, F_SETFL, fcntl(s->listen_fd, F_GETFL) | O_NONBLOCK);
			if (c >= 0)
				s->out_fd = s->in_fd = c;
		}
		s->listen_watch = kl_fd_add(s->listen_fd, G_IO_IN, accept_ready, s);
		return 0;
	}
	*err = g_strdup_printf("-serial '%s': unsupported back-end (use stdio, file:PATH, "
			       "unix:PATH,server=on,wait=off, null or none)", spec);
	return -1;
}

/* Close the back-end: watches, the client / file / listening fds (never
 * the process's stdin/stdout), then the state.  From kl_vm_destroy. */
static void serial_free(void *opaque)
{
	struct serial *s = opaque;
	if (s->in_watch)
		kl_source_remove(s->in_watch);
	if (s->listen_watch)
		kl_source_remove(s->listen_watch);
	if (s->be != BE_STDIO && s->out_fd >= 0)
		close(s->out_fd);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	kl_vmstate_unregister(s->vm, &serial_vmstate, s);
	g_free(s);
}

/* Migration section "16550/<port>": the registers, the pending THR
 * interrupt, the line level and the unread receive bytes. */
static int serial_save(void *opaque, struct kl_vms_out *o, char **err)
{
	struct serial *s = opaque;
	(void)err;
	uint8_t regs[9] = { s->ier, s->lcr, s->mcr, s->lsr, s->msr, s->scr, s->fcr, s->dll, s->dlm };
	kl_vms_put_bytes(o, regs, sizeof(regs));
	kl_vms_put_u8(o, s->thr_ipending);
	kl_vms_put_u8(o, (uint8_t)s->irq_level);
	kl_vms_put_u32(o, s->rx_count);
	for (unsigned i = 0; i < s->rx_count; i++)
		kl_vms_put_u8(o, s->rx[(s->rx_head + i) % RX_SIZE]);
	return 0;
}

static int serial_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	struct serial *s = opaque;
	(void)version, (void)err;
	uint8_t regs[9], rx[RX_SIZE];
	kl_vms_get_bytes(in, regs, sizeof(regs));
	uint8_t thr = kl_vms_get_u8(in), level = kl_vms_get_u8(in);
	uint32_t n = kl_vms_get_u32_max(in, RX_SIZE, "16550 receive count");
	kl_vms_get_bytes(in, rx, n);
	if (kl_vms_failed(in))
		return -1;
	if (thr > 1 || level > 1) {
		kl_vms_fail(in, "16550: impossible THR-pending %u / line level %u", thr, level);
		return -1;
	}
	s->ier = regs[0] & 0x0f;
	s->lcr = regs[1];
	s->mcr = regs[2] & 0x1f;
	s->lsr = regs[3];
	s->msr = regs[4];
	s->scr = regs[5];
	s->fcr = regs[6];
	s->dll = regs[7];
	s->dlm = regs[8];
	s->thr_ipending = thr;
	memcpy(s->rx, rx, n);
	s->rx_head = 0;
	s->rx_count = n;
	/* the irqchip section (loaded before) holds the line; agree with it */
	s->irq_level = level;
	kl_vm_set_irq(s->vm, s->irq, level);
	update_irq(s);
	watch_input(s);
	return 0;
}

static const struct kl_vmstate_ops serial_vmstate = {
	.kind = "16550", .version = 1, .min_version = 1,
	.save = serial_save, .load = serial_load,
};

int kl_serial_create(struct kl_vm *vm, const char *spec, unsigned base, unsigned irq,
		     const char *label, char **err)
{
	(void)label;
	struct serial *s = g_new0(struct serial, 1);
	s->vm = vm;
	s->irq = irq;
	if (open_backend(s, spec, err) < 0) {
		g_free(s);
		return -1;
	}
	if (s->be == BE_UNIX)
		signal(SIGPIPE, SIG_IGN);
	serial_reset(s);
	if (kl_bus_register(&vm->pio, base, 8, &serial_ops, s, "serial") < 0) {
		*err = g_strdup_printf("serial port at 0x%x overlaps another device", base);
		serial_free(s);
		return -1;
	}
	kl_vm_add_reset_handler(vm, serial_reset, s);
	kl_vm_add_cleanup(vm, serial_free, s);
	char inst[16];
	snprintf(inst, sizeof(inst), "%x", base);
	kl_vmstate_register(vm, inst, &serial_vmstate, s);
	watch_input(s);
	return 0;
}
