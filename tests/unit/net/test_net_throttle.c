/* Netdev throttling (throttling.* on -netdev) on the real main loop: TX
 * back-pressure through kl_netdev_can_send + tx_ready at the limiter's
 * time, RX held in the socket back-end (not read, not dropped), live
 * changes and -netdev option errors. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "kvmlite/loop.h"
#include "kvmlite/net.h"
#include "kvmlite/throttle.h"
#include "../../../src/net/net_int.h"

static unsigned rx_frames, tx_ready_calls;

static ssize_t peer_receive(void *opaque, const struct iovec *iov, int iovcnt)
{
	(void)opaque;
	rx_frames++;
	return (ssize_t)kl_iov_size(iov, (unsigned)iovcnt);
}

static void peer_tx_ready(void *opaque)
{
	(void)opaque;
	tx_ready_calls++;
}

static const struct kl_net_peer peer = { .model = "fake", .receive = peer_receive,
					 .tx_ready = peer_tx_ready };

static void pump_us(gint64 us)
{
	gint64 end = g_get_monotonic_time() + us;
	while (g_get_monotonic_time() < end)
		if (!g_main_context_iteration(kl_loop_context(), FALSE))
			g_usleep(100);
}

static struct kl_netdev *sock_pair(int *other)
{
	int sv[2];
	char *err = NULL;
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct kl_netdev *nd = kl_net_socket_new_fd("t0", sv[0], &err);
	ck_assert_ptr_nonnull(nd);
	ck_assert_int_eq(kl_netdev_attach(nd, &peer, &err), 0);
	*other = sv[1];
	rx_frames = tx_ready_calls = 0;
	return nd;
}

static void setup(void) { kl_loop_init(); }
static void teardown(void)
{
	kl_netdev_free_all();
	pump_us(5000);
}

static void set_limit(struct kl_netdev *nd, enum kl_thr_bucket b, double avg)
{
	struct kl_throttle_config cfg;
	char *err = NULL;
	kl_throttle_config_init(&cfg);
	cfg.b[b].avg = avg;
	ck_assert_int_eq(kl_netdev_set_throttle(nd, &cfg, &err), 0);
}

START_TEST(tx_backpressure)
{
	int other;
	struct kl_netdev *nd = sock_pair(&other);
	set_limit(nd, KL_THR_OPS_WRITE, 1000);   /* burst: 100 frames */
	static uint8_t f[60];
	struct iovec iov = { f, sizeof(f) };
	unsigned sent = 0;
	gint64 t0 = g_get_monotonic_time();
	/* a NIC that sends while can_send says yes, and waits for tx_ready */
	while (g_get_monotonic_time() - t0 < 1000000) {
		while (kl_netdev_can_send(nd)) {
			ck_assert_int_eq(kl_netdev_send(nd, &iov, 1), (ssize_t)sizeof(f));
			sent++;
		}
		unsigned before = tx_ready_calls;
		while (tx_ready_calls == before && g_get_monotonic_time() - t0 < 1000000)
			g_main_context_iteration(kl_loop_context(), TRUE);
	}
	/* 100 at once, then 1000/s for 1 s (timer wake-up slack aside) */
	ck_assert_msg(sent >= 1080 && sent <= 1110, "sent %u", sent);
	ck_assert_uint_ge(tx_ready_calls, 500);   /* a late wake-up sends 2 */
	struct kl_netdev_stats st;
	kl_netdev_get_stats(nd, &st);
	ck_assert_uint_eq(st.tx_dropped, 0);
	/* removing the limit resumes at once */
	set_limit(nd, KL_THR_OPS_WRITE, 0);
	ck_assert(kl_netdev_can_send(nd));
	close(other);
}
END_TEST

START_TEST(rx_held_in_backend)
{
	int other;
	struct kl_netdev *nd = sock_pair(&other);
	set_limit(nd, KL_THR_OPS_READ, 200);   /* burst: 20 frames */
	uint8_t rec[4 + 60] = { 0, 0, 0, 60 };
	for (int i = 0; i < 200; i++)
		ck_assert_int_eq(write(other, rec, sizeof(rec)), (ssize_t)sizeof(rec));
	pump_us(250000);
	/* 20 + 200/s * 0.25 s, the rest still in the socket, nothing dropped */
	ck_assert_msg(rx_frames >= 65 && rx_frames <= 75, "rx %u", rx_frames);
	struct kl_netdev_stats st;
	kl_netdev_get_stats(nd, &st);
	ck_assert_uint_eq(st.rx_dropped, 0);
	ck_assert_uint_le(g_queue_get_length(&nd->rxq), 1);
	/* live: a higher limit delivers the rest quickly */
	set_limit(nd, KL_THR_OPS_READ, 100000);
	pump_us(100000);
	ck_assert_uint_eq(rx_frames, 200);
	kl_netdev_get_stats(nd, &st);
	ck_assert_uint_eq(st.rx_dropped, 0);
	close(other);
}
END_TEST

START_TEST(netdev_options)
{
	char *err = NULL;
	struct kl_netdev *nd = kl_netdev_add("user,id=u0,throttling.pps-rx=100,throttling.bps-tx=1M,"
					     "throttling.bps-tx-max=2M,throttling.bps-tx-max-length=4", &err);
	ck_assert_msg(nd != NULL, "%s", err ? err : "");
	struct kl_throttle_config cfg;
	kl_netdev_get_throttle(nd, &cfg);
	ck_assert(cfg.b[KL_THR_OPS_READ].avg == 100);
	ck_assert(cfg.b[KL_THR_BPS_WRITE].max == 2 << 20);
	ck_assert_uint_eq(cfg.b[KL_THR_BPS_WRITE].burst_length, 4);
	static const char *const bad[] = {
		"user,id=u1,throttling.pps-rx=x",
		"user,id=u2,throttling.pps-rx-max=10",                       /* max without avg */
		"user,id=u3,throttling.pps-rx=10,throttling.pps-rx-max=5",   /* max < avg */
		"user,id=u4,throttling.pps-rx=10,throttling.pps-rx-max-length=2",
		"user,id=u5,throttling.iops-total=10",                       /* disk key */
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		ck_assert_msg(kl_netdev_add(bad[i], &err) == NULL, "%s accepted", bad[i]);
		ck_assert_ptr_nonnull(err);
		g_clear_pointer(&err, g_free);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("net-throttle");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, tx_backpressure);
	tcase_add_test(tc, rx_held_in_backend);
	tcase_add_test(tc, netdev_options);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
