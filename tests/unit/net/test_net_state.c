/* The user-mode stack's VM state section (src/net/slirp.c, "netdev-user/ID"):
 * a DHCP lease given by one libslirp instance is saved, loaded into a fresh
 * one, and saved again identically; bad versions, lengths and truncations
 * are refused.  tap/socket back-ends register no section. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kvmlite/loop.h"
#include "kvmlite/net.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"
#include "../../../src/net/net_int.h"

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static unsigned frames;
static bool can_rx(void *o) { (void)o; return true; }
static ssize_t rx(void *o, const struct iovec *iov, int n)
{
	(void)o;
	frames++;
	return (ssize_t)kl_iov_size(iov, (unsigned)n);
}

static void pump(int ms)
{
	gint64 end = g_get_monotonic_time() + ms * 1000;
	while (g_get_monotonic_time() < end)
		if (!g_main_context_iteration(kl_loop_context(), FALSE))
			g_usleep(500);
}

static struct kl_vm vm;

static struct kl_netdev *user(const char *opts)
{
	char *err = NULL;
	struct kl_netdev *nd = kl_netdev_add(opts, &err);
	ck_assert_msg(nd, "%s", err ? err : "");
	struct kl_net_peer p = { .model = "fake", .can_receive = can_rx, .receive = rx };
	ck_assert_int_eq(kl_netdev_attach(nd, &p, &err), 0);
	kl_netdev_vmstate_register(&vm, nd);
	return nd;
}

static GByteArray *save(const char *name)
{
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, name);
	ck_assert_ptr_nonnull(e);
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	char *err = NULL;
	ck_assert_int_eq(e->ops->save(e->opaque, &o, &err), 0);
	return o.buf;
}

static int load(const char *name, const uint8_t *p, size_t n, char **msg)
{
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, name);
	return kl_vmstate_load_section(e, p, n, e->ops->version, msg);
}

static void dhcp_discover(struct kl_netdev *nd)
{
	uint8_t d[14 + 20 + 8 + 240 + 8];
	memset(d, 0, sizeof(d));
	memset(d, 0xff, 6);
	memcpy(d + 6, guest_mac, 6);
	d[12] = 0x08;
	uint8_t *ip = d + 14;
	ip[0] = 0x45; ip[8] = 64; ip[9] = 17;
	size_t iplen = 20 + 8 + 240 + 8;
	ip[2] = (uint8_t)(iplen >> 8); ip[3] = (uint8_t)iplen;
	memset(ip + 16, 0xff, 4);
	uint8_t *udp = ip + 20;
	udp[1] = 68; udp[3] = 67;
	udp[4] = (uint8_t)((8 + 248) >> 8); udp[5] = (uint8_t)(8 + 248);
	uint8_t *bp = udp + 8;
	bp[0] = 1; bp[1] = 1; bp[2] = 6;
	memcpy(bp + 4, "\xde\xad\xbe\xef", 4);
	memcpy(bp + 28, guest_mac, 6);
	memcpy(bp + 236, "\x63\x82\x53\x63", 4);
	memcpy(bp + 240, "\x35\x01\x01\xff", 4);
	kl_net_csum_fill(d, sizeof(d));
	struct iovec iov = { d, sizeof(d) };
	ck_assert_int_eq(kl_netdev_send(nd, &iov, 1), (ssize_t)sizeof(d));
}

START_TEST(slirp_state)
{
	kl_loop_init();
	memset(&vm, 0, sizeof(vm));
	struct kl_netdev *a = user("user,id=a");
	GByteArray *fresh = save("netdev-user/a");
	frames = 0;
	dhcp_discover(a);
	pump(50);
	ck_assert_uint_ge(frames, 1); /* the offer */
	GByteArray *sa = save("netdev-user/a");
	/* the lease is in the state */
	ck_assert(sa->len != fresh->len || memcmp(sa->data, fresh->data, sa->len) != 0);
	struct kl_netdev *b = user("user,id=b");
	char *msg = NULL;
	ck_assert_msg(load("netdev-user/b", sa->data, sa->len, &msg) == 0, "%s", msg);
	GByteArray *sb = save("netdev-user/b");
	ck_assert_uint_eq(sb->len, sa->len);
	ck_assert_mem_eq(sb->data, sa->data, sa->len);
	/* refusals */
	struct kl_netdev *c = user("user,id=c");
	for (size_t n = 0; n < 8 && n < sa->len; n++) {
		ck_assert_int_lt(load("netdev-user/c", sa->data, n, &msg), 0);
		g_free(msg);
	}
	uint8_t *bad = g_memdup2(sa->data, sa->len);
	memset(bad, 0, 4);
	ck_assert_int_lt(load("netdev-user/c", bad, sa->len, &msg), 0);
	ck_assert_msg(strstr(msg, "libslirp state version 0"), "%s", msg);
	g_free(msg);
	memcpy(bad, sa->data, sa->len);
	uint32_t big = (uint32_t)sa->len;
	memcpy(bad + 4, &big, 4);
	ck_assert_int_lt(load("netdev-user/c", bad, sa->len, &msg), 0);
	ck_assert_msg(strstr(msg, "libslirp state length"), "%s", msg);
	g_free(msg);
	g_free(bad);
	/* tap / socket carry no state: no section */
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	char *err = NULL;
	struct kl_netdev *s = kl_net_socket_new_fd("s", sv[0], &err);
	ck_assert_msg(s, "%s", err ? err : "");
	unsigned before = kl_vmstate_count(&vm);
	kl_netdev_vmstate_register(&vm, s);
	ck_assert_uint_eq(kl_vmstate_count(&vm), before);
	close(sv[1]);
	/* detaching removes the section */
	kl_netdev_detach(a);
	ck_assert_ptr_null(kl_vmstate_find(&vm, "netdev-user/a"));
	kl_netdev_detach(b);
	kl_netdev_detach(c);
	ck_assert_uint_eq(kl_vmstate_count(&vm), 0);
	g_byte_array_free(fresh, TRUE);
	g_byte_array_free(sa, TRUE);
	g_byte_array_free(sb, TRUE);
	kl_netdev_free_all();
	kl_vmstate_free_all(&vm);
	pump(5);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("net-state");
	TCase *tc = tcase_create("slirp");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, slirp_state);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
