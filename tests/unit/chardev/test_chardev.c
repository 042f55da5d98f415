/* Unit tests for the character back-end layer (src/chardev/): file
 * (append=on), ringbuf (wrap-around, QMP read/write), pipe (PATH.in/.out and
 * PATH), pty, socket server and client (events, one peer at a time, input
 * pausing), fd=N (inherited listening / connected sockets), the legacy
 * -serial spellings and bad options (each error names the option). */
#include <check.h>

#include "../kl_check.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "kvmlite/chardev.h"
#include "kvmlite/loop.h"

/* ---------------- a recording front-end ---------------- */

struct rec {
	GString *in;
	int opened, closed;
	size_t room; /* what can_read answers */
};

static size_t rec_can_read(void *opaque)
{
	return ((struct rec *)opaque)->room;
}

static void rec_read(void *opaque, const uint8_t *buf, size_t len)
{
	struct rec *r = opaque;
	ck_assert_uint_le(len, r->room);
	g_string_append_len(r->in, (const char *)buf, (gssize)len);
}

static void rec_event(void *opaque, enum kl_chr_event ev)
{
	struct rec *r = opaque;
	if (ev == KL_CHR_EVENT_OPENED)
		r->opened++;
	else
		r->closed++;
}

static const struct kl_chr_fe_ops rec_ops = { rec_can_read, rec_read, rec_event };

static void rec_init(struct rec *r)
{
	r->in = g_string_new(NULL);
	r->opened = r->closed = 0;
	r->room = 4096;
}

static void pump(void)
{
	while (g_main_context_iteration(kl_loop_context(), FALSE))
		;
}

/* pump until cond or ~2 s */
#define PUMP_UNTIL(cond)                                      \
	do {                                                  \
		for (int i_ = 0; i_ < 2000 && !(cond); i_++) { \
			pump();                               \
			g_usleep(1000);                       \
		}                                             \
	} while (0)

static char *tmpdir(void)
{
	char *d = g_strdup("/tmp/klchr-XXXXXX");
	ck_assert_ptr_nonnull(g_mkdtemp(d));
	return d;
}

static struct kl_chardev *add(const char *spec)
{
	char *err = NULL;
	int r = kl_chardev_add(spec, &err);
	ck_assert_msg(r == 0, "%s: %s", spec, err);
	const char *id = strstr(spec, "id=") + 3;
	char *label = g_strndup(id, strcspn(id, ","));
	struct kl_chardev *cd = kl_chardev_find(label);
	g_free(label);
	ck_assert_ptr_nonnull(cd);
	return cd;
}

static char *slurp(const char *path)
{
	gchar *s = NULL;
	ck_assert(g_file_get_contents(path, &s, NULL, NULL));
	return s;
}

static const struct kl_chardev_info *info(GPtrArray *l, const char *label)
{
	for (guint i = 0; i < l->len; i++) {
		const struct kl_chardev_info *ci = g_ptr_array_index(l, i);
		if (!strcmp(ci->label, label))
			return ci;
	}
	ck_abort_msg("no chardev %s", label);
	return NULL;
}

/* ---------------- file ---------------- */

START_TEST(file_append_and_truncate)
{
	kl_loop_init();
	char *d = tmpdir();
	char *a = g_build_filename(d, "a.log", NULL), *t = g_build_filename(d, "t.log", NULL);
	ck_assert(g_file_set_contents(a, "old\n", -1, NULL));
	ck_assert(g_file_set_contents(t, "old\n", -1, NULL));
	char *sa = g_strdup_printf("file,id=fa,path=%s,append=on", a);
	char *st = g_strdup_printf("file,id=ft,path=%s", t);
	struct kl_chardev *ca = add(sa), *ct = add(st);
	struct rec ra, rt;
	rec_init(&ra);
	rec_init(&rt);
	char *err = NULL;
	ck_assert_int_eq(kl_chr_fe_attach(ca, &rec_ops, &ra, &err), 0);
	ck_assert_int_eq(ra.opened, 1); /* a file is connected from the start */
	ck_assert_int_eq(kl_chr_fe_attach(ca, &rec_ops, &rt, &err), -1);
	ck_assert_msg(strstr(err, "chardev 'fa' is already in use"), "%s", err);
	g_free(err);
	ck_assert_int_eq(kl_chr_fe_attach(ct, &rec_ops, &rt, &err), 0);
	ck_assert_uint_eq(kl_chr_fe_write(ca, "new\n", 4), 4);
	ck_assert_uint_eq(kl_chr_fe_write(ct, "new\n", 4), 4);
	GPtrArray *l = kl_chardev_list();
	ck_assert_str_eq(info(l, "fa")->filename, "file");
	ck_assert(info(l, "fa")->frontend_open);
	g_ptr_array_unref(l);
	kl_chardev_cleanup();
	char *ga = slurp(a), *gt = slurp(t);
	ck_assert_str_eq(ga, "old\nnew\n");
	ck_assert_str_eq(gt, "new\n");
	g_free(ga);
	g_free(gt);
	unlink(a);
	unlink(t);
	rmdir(d);
	g_free(a), g_free(t), g_free(sa), g_free(st), g_free(d);
	g_string_free(ra.in, TRUE);
	g_string_free(rt.in, TRUE);
}
END_TEST

/* ---------------- ringbuf ---------------- */

START_TEST(ringbuf_wraps)
{
	kl_loop_init();
	struct kl_chardev *cd = add("ringbuf,id=rb,size=8");
	struct rec r;
	rec_init(&r);
	char *err = NULL;
	ck_assert_int_eq(kl_chr_fe_attach(cd, &rec_ops, &r, &err), 0);
	ck_assert_uint_eq(kl_chr_fe_write(cd, "0123456789ab", 12), 12);
	uint8_t *out;
	size_t len;
	ck_assert_int_eq(kl_chardev_ringbuf_read("rb", 3, &out, &len, &err), 0);
	ck_assert_uint_eq(len, 3);
	ck_assert_mem_eq(out, "456", 3); /* the oldest 4 were overwritten */
	g_free(out);
	ck_assert_int_eq(kl_chardev_ringbuf_write("rb", (const uint8_t *)"XYZ", 3, &err), 0);
	ck_assert_int_eq(kl_chardev_ringbuf_read("rb", 100, &out, &len, &err), 0);
	ck_assert_uint_eq(len, 8);
	ck_assert_mem_eq(out, "789abXYZ", 8);
	g_free(out);
	ck_assert_int_eq(kl_chardev_ringbuf_read("rb", 100, &out, &len, &err), 0);
	ck_assert_uint_eq(len, 0);
	g_free(out);
	ck_assert_int_eq(kl_chardev_ringbuf_read("nope", 1, &out, &len, &err), -1);
	ck_assert_str_eq(err, "Device 'nope' not found");
	g_free(err);
	add("null,id=n0");
	ck_assert_int_eq(kl_chardev_ringbuf_write("n0", (const uint8_t *)"x", 1, &err), -1);
	ck_assert_str_eq(err, "n0 is not a ringbuffer device");
	g_free(err);
	kl_chardev_cleanup();
	g_string_free(r.in, TRUE);
}
END_TEST

/* ---------------- pipe ---------------- */

START_TEST(pipe_in_out_and_single)
{
	kl_loop_init();
	char *d = tmpdir();
	char *p = g_build_filename(d, "p", NULL);
	char *pin = g_strconcat(p, ".in", NULL), *pout = g_strconcat(p, ".out", NULL);
	ck_assert_int_eq(mkfifo(pin, 0600), 0);
	ck_assert_int_eq(mkfifo(pout, 0600), 0);
	char *spec = g_strdup_printf("pipe,id=pp,path=%s", p);
	struct kl_chardev *cd = add(spec);
	int win = open(pin, O_WRONLY | O_NONBLOCK), rout = open(pout, O_RDONLY | O_NONBLOCK);
	ck_assert_int_ge(win, 0);
	ck_assert_int_ge(rout, 0);
	struct rec r;
	rec_init(&r);
	char *err = NULL;
	ck_assert_int_eq(kl_chr_fe_attach(cd, &rec_ops, &r, &err), 0);
	ck_assert_int_eq(write(win, "to-guest", 8), 8);
	PUMP_UNTIL(r.in->len >= 8);
	ck_assert_str_eq(r.in->str, "to-guest");
	kl_chr_fe_write(cd, "to-host", 7);
	char buf[32] = { 0 };
	ck_assert_int_eq(read(rout, buf, sizeof(buf)), 7);
	ck_assert_str_eq(buf, "to-host");
	/* can_read 0: the layer stops reading until accept_input */
	r.room = 0;
	g_string_truncate(r.in, 0);
	ck_assert_int_eq(write(win, "later", 5), 5);
	for (int i = 0; i < 20; i++)
		pump();
	ck_assert_uint_eq(r.in->len, 0);
	r.room = 2;
	kl_chr_fe_accept_input(cd);
	PUMP_UNTIL(r.in->len >= 5);
	ck_assert_str_eq(r.in->str, "later");
	close(win);
	close(rout);
	/* without PATH.in/.out: PATH both ways */
	char *single = g_build_filename(d, "s", NULL);
	ck_assert_int_eq(mkfifo(single, 0600), 0);
	char *spec2 = g_strdup_printf("pipe,id=ps,path=%s", single);
	struct kl_chardev *cs = add(spec2);
	struct rec rs;
	rec_init(&rs);
	ck_assert_int_eq(kl_chr_fe_attach(cs, &rec_ops, &rs, &err), 0);
	kl_chr_fe_write(cs, "loop", 4); /* a FIFO opened O_RDWR reads back its own bytes */
	PUMP_UNTIL(rs.in->len >= 4);
	ck_assert_str_eq(rs.in->str, "loop");
	kl_chardev_cleanup();
	unlink(pin), unlink(pout), unlink(single);
	rmdir(d);
	g_free(p), g_free(pin), g_free(pout), g_free(spec), g_free(single), g_free(spec2), g_free(d);
	g_string_free(r.in, TRUE);
	g_string_free(rs.in, TRUE);
}
END_TEST

/* ---------------- pty ---------------- */

START_TEST(pty_slave_talks)
{
	kl_loop_init();
	struct kl_chardev *cd = add("pty,id=pt");
	GPtrArray *l = kl_chardev_list();
	const char *fname = info(l, "pt")->filename;
	ck_assert_msg(g_str_has_prefix(fname, "pty:/dev/pts/"), "%s", fname);
	int s = open(fname + 4, O_RDWR | O_NOCTTY | O_NONBLOCK);
	g_ptr_array_unref(l);
	ck_assert_int_ge(s, 0);
	struct rec r;
	rec_init(&r);
	char *err = NULL;
	ck_assert_int_eq(kl_chr_fe_attach(cd, &rec_ops, &r, &err), 0);
	ck_assert_int_eq(write(s, "abc", 3), 3);
	PUMP_UNTIL(r.in->len >= 3);
	ck_assert_str_eq(r.in->str, "abc");
	kl_chr_fe_write(cd, "xyz", 3);
	char buf[8] = { 0 };
	struct pollfd p = { .fd = s, .events = POLLIN };
	ck_assert_int_eq(poll(&p, 1, 2000), 1);
	ck_assert_int_eq(read(s, buf, sizeof(buf)), 3);
	ck_assert_str_eq(buf, "xyz");
	close(s);
	kl_chardev_cleanup();
	g_string_free(r.in, TRUE);
}
END_TEST

/* ---------------- sockets ---------------- */

static int unix_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static int unix_listen(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	return fd;
}

static void recv_exact(int fd, const char *want)
{
	char buf[256] = { 0 };
	size_t n = 0, wl = strlen(want);
	for (int i = 0; i < 2000 && n < wl; i++) {
		pump();
		ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, MSG_DONTWAIT);
		if (r > 0)
			n += (size_t)r;
		else
			g_usleep(1000);
	}
	ck_assert_str_eq(buf, want);
}

START_TEST(socket_server_one_peer_at_a_time)
{
	kl_loop_init();
	char *d = tmpdir();
	char *path = g_build_filename(d, "s.sock", NULL);
	char *spec = g_strdup_printf("socket,id=ss,path=%s,server=on,wait=off", path);
	struct kl_chardev *cd = add(spec);
	struct rec r;
	rec_init(&r);
	char *err = NULL;
	ck_assert_int_eq(kl_chr_fe_attach(cd, &rec_ops, &r, &err), 0);
	ck_assert_int_eq(r.opened, 0);
	ck_assert(!kl_chr_fe_connected(cd));
	ck_assert_uint_eq(kl_chr_fe_write(cd, "dropped", 7), 0); /* nobody connected */
	GPtrArray *l = kl_chardev_list();
	char *want = g_strdup_printf("disconnected:unix:%s,server=on", path);
	ck_assert_str_eq(info(l, "ss")->filename, want);
	g_ptr_array_unref(l);
	int a = unix_connect(path);
	PUMP_UNTIL(r.opened == 1);
	ck_assert_int_eq(r.opened, 1);
	int b = unix_connect(path); /* waits in the backlog */
	ck_assert_int_eq(send(a, "from-a", 6, 0), 6);
	PUMP_UNTIL(r.in->len >= 6);
	ck_assert_str_eq(r.in->str, "from-a");
	kl_chr_fe_write(cd, "to-a", 4);
	recv_exact(a, "to-a");
	ck_assert_int_eq(send(b, "from-b", 6, 0), 6);
	for (int i = 0; i < 20; i++)
		pump();
	ck_assert_str_eq(r.in->str, "from-a"); /* b is not served yet */
	close(a);
	PUMP_UNTIL(r.closed == 1 && r.opened == 2);
	ck_assert_int_eq(r.closed, 1);
	ck_assert_int_eq(r.opened, 2);
	PUMP_UNTIL(r.in->len >= 12);
	ck_assert_str_eq(r.in->str, "from-afrom-b");
	kl_chr_fe_write(cd, "to-b", 4);
	recv_exact(b, "to-b");
	close(b);
	PUMP_UNTIL(r.closed == 2);
	kl_chardev_cleanup();
	ck_assert(access(path, F_OK) != 0); /* unlinked */
	rmdir(d);
	g_free(path), g_free(spec), g_free(want), g_free(d);
	g_string_free(r.in, TRUE);
}
END_TEST

START_TEST(socket_client_and_fd)
{
	kl_loop_init();
	char *d = tmpdir();
	char *path = g_build_filename(d, "peer.sock", NULL);
	int lfd = unix_listen(path);
	char *spec = g_strdup_printf("socket,id=sc,path=%s", path); /* server=off */
	struct kl_chardev *cd = add(spec);
	int peer = accept(lfd, NULL, NULL);
	ck_assert_int_ge(peer, 0);
	struct rec r;
	rec_init(&r);
	char *err = NULL;
	ck_assert_int_eq(kl_chr_fe_attach(cd, &rec_ops, &r, &err), 0);
	ck_assert_int_eq(r.opened, 1); /* connected before the front-end came */
	kl_chr_fe_write(cd, "hello-peer", 10);
	recv_exact(peer, "hello-peer");
	close(peer);
	PUMP_UNTIL(r.closed == 1);
	ck_assert_int_eq(r.closed, 1);

	/* fd=N listening (libvirt's charmonitor): server=on */
	char *lpath = g_build_filename(d, "inherited.sock", NULL);
	int ifd = unix_listen(lpath);
	char *fspec = g_strdup_printf("socket,id=fl,fd=%d,server=on,wait=off", ifd);
	struct kl_chardev *cf = add(fspec);
	struct rec rf;
	rec_init(&rf);
	ck_assert_int_eq(kl_chr_fe_attach(cf, &rec_ops, &rf, &err), 0);
	GPtrArray *l = kl_chardev_list();
	char *want = g_strdup_printf("disconnected:fd:%d,server=on", ifd);
	ck_assert_str_eq(info(l, "fl")->filename, want);
	g_ptr_array_unref(l);
	int c = unix_connect(lpath);
	PUMP_UNTIL(rf.opened == 1);
	ck_assert_int_eq(send(c, "via-fd", 6, 0), 6);
	PUMP_UNTIL(rf.in->len >= 6);
	ck_assert_str_eq(rf.in->str, "via-fd");
	close(c);
	/* fd=N connected: server=off */
	int sp[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	char *cspec = g_strdup_printf("socket,id=fc,fd=%d", sp[1]);
	struct kl_chardev *cc = add(cspec);
	struct rec rc;
	rec_init(&rc);
	ck_assert_int_eq(kl_chr_fe_attach(cc, &rec_ops, &rc, &err), 0);
	ck_assert_int_eq(rc.opened, 1);
	kl_chr_fe_write(cc, "pair", 4);
	recv_exact(sp[0], "pair");
	/* the wrong kind of fd */
	char *l2path = g_build_filename(d, "l2.sock", NULL);
	int lfd2 = unix_listen(l2path);
	char *bad = g_strdup_printf("socket,id=b1,fd=%d", lfd2);
	ck_assert_int_eq(kl_chardev_add(bad, &err), -1);
	ck_assert_msg(strstr(err, "is a listening socket: add server=on"), "%s", err);
	g_free(err);
	g_free(bad);
	bad = g_strdup_printf("socket,id=b2,fd=%d,server=on", sp[0]);
	ck_assert_int_eq(kl_chardev_add(bad, &err), -1);
	ck_assert_msg(strstr(err, "is not a listening socket (server=on)"), "%s", err);
	g_free(err);
	g_free(bad);
	int nul = open("/dev/null", O_RDONLY);
	bad = g_strdup_printf("socket,id=b3,fd=%d", nul);
	ck_assert_int_eq(kl_chardev_add(bad, &err), -1);
	ck_assert_msg(strstr(err, "is not an open socket"), "%s", err);
	g_free(err);
	g_free(bad);
	close(nul);
	close(lfd2);
	close(sp[0]);
	close(lfd);
	kl_chardev_cleanup(); /* closes the inherited fds it took */
	unlink(path);
	unlink(lpath);
	unlink(l2path);
	rmdir(d);
	g_free(l2path);
	g_free(path), g_free(spec), g_free(lpath), g_free(fspec), g_free(want), g_free(cspec);
	g_free(d);
	g_string_free(r.in, TRUE);
	g_string_free(rf.in, TRUE);
	g_string_free(rc.in, TRUE);
}
END_TEST

/* ---------------- legacy spellings, bad options ---------------- */

START_TEST(legacy_and_errors)
{
	kl_loop_init();
	char *err = NULL;
	struct kl_chardev *cd = kl_chardev_legacy("-serial", "null", "serial0", &err);
	ck_assert_ptr_nonnull(cd);
	ck_assert_ptr_eq(kl_chardev_legacy("-serial", "chardev:serial0", "serial1", &err), cd);
	char *d = tmpdir();
	char *f = g_build_filename(d, "x", NULL);
	char *spec = g_strdup_printf("file:%s", f);
	ck_assert_ptr_nonnull(kl_chardev_legacy("-serial", spec, "serial2", &err));
	GPtrArray *l = kl_chardev_list();
	ck_assert_str_eq(info(l, "serial2")->filename, spec); /* the legacy spelling */
	ck_assert_str_eq(info(l, "serial0")->filename, "null");
	ck_assert(!info(l, "serial0")->frontend_open);
	g_ptr_array_unref(l);
	static const char *const bad[][2] = {
		{ "file,id=f1", "-chardev 'file,id=f1': parameter 'path' is missing" },
		{ "file,id=f2,path=/nonexistent/dir/x",
		  "-chardev 'file,id=f2,path=/nonexistent/dir/x': cannot open '/nonexistent/dir/x': "
		  "No such file or directory" },
		{ "file,id=f3,path=/tmp/klchr-x,append=maybe", "append" },
		{ "socket,id=s1,path=/tmp/klchr-s,server=on,wait=off,bogus=1",
		  "unknown parameter 'bogus'" },
		{ "socket,id=s2", "needs path= (unix), host=,port= (TCP) or fd=" },
		{ "socket,id=s3,path=/tmp/a,host=127.0.0.1,port=1", "only one of path=, host=/port= and fd=" },
		{ "socket,id=s4,host=10.1.2.3,port=4444,server=on,wait=off", "is not a loopback address" },
		{ "socket,id=s5,fd=abc,server=on", "fd=abc is not a file descriptor number" },
		{ "ringbuf,id=r1,size=1000", "size=1000: the size of a ringbuf chardev must be a power of two" },
		{ "ringbuf,id=r2,size=0", "power of two" },
		{ "vc,id=v1", "backend 'vc' is not supported" },
		{ "null", "id= is required" },
		{ "null,id=serial0", "duplicate chardev id 'serial0'" },
		{ "null,id=m1,mux=on", "mux=on is not supported" },
		{ "null,id=m2,logfile=/tmp/x", "logfile= is not supported" },
		{ "pipe,id=p1,path=/nonexistent/pipe", "cannot open '/nonexistent/pipe'" },
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		ck_assert_int_eq(kl_chardev_add(bad[i][0], &err), -1);
		ck_assert_msg(strstr(err, bad[i][1]), "%s -> %s", bad[i][0], err);
		ck_assert_msg(g_str_has_prefix(err, "-chardev '"), "%s", err);
		g_free(err);
		err = NULL;
	}
	ck_assert(access("/tmp/klchr-s", F_OK) != 0); /* refused before it listened */
	/* one stdio chardev per process; a refused second one does not free
	 * the first one's claim */
	ck_assert_msg(kl_chardev_add("stdio,id=io1", &err) == 0, "%s", err);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(kl_chardev_add(i ? "stdio,id=io3" : "stdio,id=io2", &err), -1);
		ck_assert_msg(strstr(err, "cannot use stdio by multiple character devices"), "%s", err);
		g_free(err);
		err = NULL;
	}
	static const char *const lbad[][2] = {
		{ "tcp:1.2.3.4:5", "-serial 'tcp:1.2.3.4:5': host '1.2.3.4' is not a loopback address" },
		{ "chardev:nope", "-serial 'chardev:nope': no chardev with id 'nope'" },
		{ "vc:80Cx24C", "-serial 'vc:80Cx24C': unsupported back-end" },
		{ "unix:/tmp/klchr-u,server=on,wait=off,telnet=on", "unknown parameter 'telnet'" },
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(lbad); i++) {
		ck_assert_ptr_null(kl_chardev_legacy("-serial", lbad[i][0], "serialX", &err));
		ck_assert_msg(strstr(err, lbad[i][1]), "%s -> %s", lbad[i][0], err);
		g_free(err);
		err = NULL;
	}
	kl_chardev_cleanup();
	unlink(f);
	rmdir(d);
	g_free(f), g_free(spec), g_free(d);
}
END_TEST

/* A peer that never reads is dropped once KL_CHR_MAX_OUT is pending; input
 * pauses while more than 1 MiB waits. */
START_TEST(socket_slow_peer_dropped)
{
	kl_loop_init();
	int sp[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	char *spec = g_strdup_printf("socket,id=slow,fd=%d", sp[1]);
	struct kl_chardev *cd = add(spec);
	struct rec r;
	rec_init(&r);
	char *err = NULL;
	ck_assert_int_eq(kl_chr_fe_attach(cd, &rec_ops, &r, &err), 0);
	static char chunk[65536];
	memset(chunk, 'x', sizeof(chunk));
	size_t taken = 0;
	for (int i = 0; i < 300; i++)
		taken += kl_chr_fe_write(cd, chunk, sizeof(chunk));
	ck_assert_uint_le(taken, KL_CHR_MAX_OUT + (1u << 20)); /* (plus the socket buffer) */
	ck_assert_uint_gt(kl_chr_fe_pending(cd), 1u << 20);
	ck_assert_int_eq(send(sp[0], "ignored", 7, 0), 7);
	for (int i = 0; i < 20; i++)
		pump();
	PUMP_UNTIL(r.closed == 1);
	ck_assert_int_eq(r.closed, 1);
	ck_assert_uint_eq(r.in->len, 0); /* input was paused meanwhile */
	ck_assert(!kl_chr_fe_connected(cd));
	close(sp[0]);
	kl_chardev_cleanup();
	g_free(spec);
	g_string_free(r.in, TRUE);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("chardev");
	TCase *t = tcase_create("backends");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, file_append_and_truncate);
	tcase_add_test(t, ringbuf_wraps);
	tcase_add_test(t, pipe_in_out_and_single);
	tcase_add_test(t, pty_slave_talks);
	tcase_add_test(t, socket_server_one_peer_at_a_time);
	tcase_add_test(t, socket_client_and_fd);
	tcase_add_test(t, legacy_and_errors);
	tcase_add_test(t, socket_slow_peer_dropped);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return kl_check_run(suite());
}
