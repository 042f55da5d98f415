/* Probe test: migrate - every CPU counts in memory and prints each count
 * on the serial port as "MIG <cpu> <n>", for tests/guest/run-migrate,
 * which moves the running guest between kvmlite processes (and through a
 * snapshot file) and checks that each CPU's numbers continue with no gap
 * or repeat.  Each count also writes a word of a 256 KiB ring per CPU and
 * checks the previous one, so RAM that did not move intact fails the test.
 * Command line: n=N (stop with PASS once CPU 0 has counted to N; default:
 * count until killed), delay=US between counts (default 1000), dirty=P
 * (CPU 0 writes P pages of a dirtymb=M MiB buffer per count, round-robin,
 * for bench/migrate's dirtying rows; default 0 and 16).
 * With blk=1, CPU 0 also writes block n of the first virtio-blk disk at
 * each count n (magic, n, a pattern of n), prints "ACK n" once the write
 * completed, and reads block n/2 back into one of 16 pages, checking it
 * at the next count and then poisoning it (so that a read DMA into a page
 * the migration did not resend shows on the destination).  With net=virtio
 * or net=e1000 it sends one broadcast frame (ethertype 0x88b5, "KLMIGNET",
 * big-endian n) per count on that NIC and prints "TX n" once the NIC took
 * it (tests/guest/run-migrate --io).
 * With blk=1 gen=1, sector 0 holds the generation: the count whose block
 * was written last (magic, n); each count first reads it back and checks
 * it is the previous count, then writes its block and the new generation.
 * Memory and disk restored from different instants (snapshot-load,
 * tests/guest/run-snapshot-vm) disagree there: "MIGFAIL generation". */
#include "probe.h"
#include "t_blk.h"
#include "t_net.h"

#define RING_WORDS (32768u)  /* 256 KiB of u64 per CPU */
#define MAX_CPUS 4

static volatile uint32_t print_lock;
static uint64_t *ring[MAX_CPUS];
static uint64_t delay_us = 1000, limit;
static volatile int failed;
static uint8_t *dirty_buf;
static uint64_t dirty_pages, dirty_total, dirty_next;

#define BLK_MAGIC 0x47494d4c4b4c4bull /* "KLKLMIG" */
#define NREAD 16
static uint64_t blk_cap, *wblk, *rblk[NREAD], pending_read; /* 0: none */
static uint64_t *genblk; /* gen=1: sector 0 buffer */
static struct netif *nif;
static uint8_t *frame;

static uint64_t blk_word(uint64_t n, unsigned k)
{
	return k == 0 ? BLK_MAGIC : k == 1 ? n : n * 0x9e3779b97f4a7c15ull ^ k;
}

/* the I/O of count n on CPU 0; 0 or -1 (MIGFAIL printed) */
static int io_step(uint64_t n)
{
	if (blk_cap) {
		if (pending_read) {
			uint64_t m = pending_read / 2, *r = rblk[pending_read % NREAD];
			for (unsigned k = 0; k < 64; k++)
				if (r[k] != blk_word(m, k)) {
					printf("MIGFAIL read-back of block %llu (count %llu): word %u "
					       "holds %llx\n", (unsigned long long)m,
					       (unsigned long long)pending_read, k,
					       (unsigned long long)r[k]);
					return -1;
				}
			/* poisoned now, read into again NREAD counts later: the
			 * CPU's write is long synced by then, so only the device's
			 * dirty marking resends that page */
			memset(r, 0xee, 512);
		}
		if (n >= blk_cap) {
			printf("MIGFAIL disk full at count %llu\n", (unsigned long long)n);
			return -1;
		}
		if (genblk && n > 1) {
			int gs = probe_blk_rw(false, 0, genblk, 512);
			if (gs || genblk[0] != BLK_MAGIC || genblk[1] != n - 1) {
				printf("MIGFAIL generation at count %llu: the disk's is %llu "
				       "(status %d)\n", (unsigned long long)n,
				       (unsigned long long)genblk[1], gs);
				return -1;
			}
		}
		for (unsigned k = 0; k < 64; k++)
			wblk[k] = blk_word(n, k);
		int st = probe_blk_rw(true, n, wblk, 512);
		if (!st && genblk) {
			genblk[0] = BLK_MAGIC;
			genblk[1] = n;
			st = probe_blk_rw(true, 0, genblk, 512);
		}
		if (st) {
			printf("MIGFAIL write of block %llu: status %d\n", (unsigned long long)n, st);
			return -1;
		}
		printf("ACK %llu\n", (unsigned long long)n);
		pending_read = 0;
		if (n >= 2) { /* block n/2 >= 1: written at an earlier count */
			st = probe_blk_rw(false, n / 2, rblk[n % NREAD], 512);
			if (st) {
				printf("MIGFAIL read of block %llu: status %d\n",
				       (unsigned long long)(n / 2), st);
				return -1;
			}
			pending_read = n;
		}
	}
	if (nif) {
		memset(frame, 0xff, 6);
		memcpy(frame + 6, nif->mac, 6);
		net_put16(frame + 12, 0x88b5);
		memcpy(frame + 14, "KLMIGNET", 8);
		net_put32(frame + 22, (uint32_t)n);
		if (nif->send(nif, frame, 60, 0)) {
			printf("MIGFAIL TX of frame %llu\n", (unsigned long long)n);
			return -1;
		}
		printf("TX %llu\n", (unsigned long long)n);
	}
	return 0;
}

static void lock(void)
{
	uint32_t one = 1;
	for (;;) {
		uint32_t old = one;
		__asm__ volatile("xchgl %0, %1" : "+r"(old), "+m"(print_lock) : : "memory");
		if (!old)
			return;
		cpu_relax();
	}
}

static void unlock(void)
{
	barrier();
	print_lock = 0;
}

/* count on this CPU forever (or to the limit on CPU 0) */
static void count_loop(unsigned cpu)
{
	uint64_t *r = ring[cpu];
	for (uint64_t n = 1;; n++) {
		if (n > 1 && r[(n - 1) % RING_WORDS] != ((n - 1) ^ 0x5a5a5a5a00000000ull) && !failed) {
			failed = 1;
			lock();
			printf("MIGFAIL cpu %u: ring word %llu holds %llx\n", cpu,
			       (unsigned long long)((n - 1) % RING_WORDS),
			       (unsigned long long)r[(n - 1) % RING_WORDS]);
			unlock();
		}
		r[n % RING_WORDS] = n ^ 0x5a5a5a5a00000000ull;
		if (cpu == 0)
			for (uint64_t k = 0; k < dirty_pages; k++) {
				dirty_buf[dirty_next * 4096] = (uint8_t)n;
				dirty_next = (dirty_next + 1) % dirty_total;
			}
		lock();
		printf("MIG %u %llu\n", cpu, (unsigned long long)n);
		if (cpu == 0 && !failed && io_step(n))
			failed = 1;
		unlock();
		if (cpu == 0 && failed && (blk_cap || nif))
			return;
		if (cpu == 0 && limit && n >= limit)
			return;
		udelay(delay_us);
	}
}

static void ap_hook(unsigned slot)
{
	if (slot + 1 < MAX_CPUS)
		count_loop(slot + 1);
}

static int test_migrate(void)
{
	delay_us = probe_cmdline_num("delay", 1000);
	limit = probe_cmdline_num("n", 0);
	dirty_pages = probe_cmdline_num("dirty", 0);
	if (dirty_pages) {
		dirty_total = probe_cmdline_num("dirtymb", 16) * 256;
		if (!dirty_total)
			return probe_fail("dirtymb=0");
		/* not zeroed: a memset of M MiB takes seconds in ring 0 here */
		dirty_buf = probe_alloc_raw(dirty_total * 4096, 4096);
		if (!dirty_buf)
			return probe_fail("no room for a %llu-page dirty buffer",
					  (unsigned long long)dirty_total);
	}
	if (probe_cmdline_num("blk", 0)) {
		if (!(blk_cap = probe_blk_open()))
			return -1;
		wblk = probe_alloc(512, 512);
		for (unsigned i = 0; i < NREAD; i++)
			rblk[i] = probe_alloc(4096, 4096);
		if (probe_cmdline_num("gen", 0))
			genblk = probe_alloc(512, 512);
	}
	char nv[16];
	if (probe_cmdline_get("net", nv, sizeof(nv))) {
		if (!strcmp(nv, "virtio"))
			nif = net_virtio_open();
		else if (!strcmp(nv, "e1000"))
			nif = net_e1000_open();
		else
			return probe_fail("net=%s: virtio or e1000", nv);
		if (!nif)
			return -1;
		frame = probe_alloc(64, 64);
	}
	for (unsigned i = 0; i < MAX_CPUS; i++)
		ring[i] = probe_alloc(RING_WORDS * sizeof(uint64_t), 4096);
	struct probe_cpus cpus;
	if (probe_find_cpus(&cpus))
		return -1;
	if (cpus.count > MAX_CPUS)
		return probe_fail("%u CPUs: the migrate probe counts on at most %u", cpus.count,
				  MAX_CPUS);
	if (cpus.count > 1) {
		probe_ap_hook = ap_hook;
		if (probe_smp_start())
			return -1;
	}
	printf("migrate: counting on %u CPU(s)\n", cpus.count);
	count_loop(0);
	if (failed)
		return probe_fail("RAM or I/O did not survive a migration (MIGFAIL above)");
	lock(); /* the APs print no more: the verdict line stays whole */
	return 0;
}
PROBE_TEST(migrate, test_migrate);
