/* Unit tests for -numa parsing and validation (src/numa/numa.c) and the
 * host-nodes/policy binding of memory back-ends (src/mem/hostnodes.c). */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvmlite/hostmem.h"
#include "kvmlite/numa.h"

#define MIB (1024 * 1024ULL)

static struct kl_numa n;

/* memdevs m0..m3 of 32 MiB, "big" of 64 MiB */
static bool memdev(const char *id, uint64_t *size, void *opaque)
{
	(void)opaque;
	if (!strcmp(id, "big")) {
		*size = 64 * MIB;
		return true;
	}
	if (strlen(id) == 2 && id[0] == 'm' && id[1] >= '0' && id[1] <= '3') {
		*size = 32 * MIB;
		return true;
	}
	return false;
}

static void setup(void)
{
	kl_numa_init(&n, 4, 1, 1);
}

static void teardown(void)
{
	kl_numa_free(&n);
}

static void ok(const char *spec)
{
	char *err = NULL;
	int r = kl_numa_parse(&n, spec, memdev, NULL, &err);
	ck_assert_msg(r == 0, "%s: %s", spec, err ? err : "?");
}

static void bad(const char *spec, const char *msg)
{
	char *err = NULL;
	ck_assert_int_eq(kl_numa_parse(&n, spec, memdev, NULL, &err), -1);
	ck_assert_msg(err && strstr(err, msg), "%s: got '%s', want '%s'", spec, err ? err : "",
		      msg);
	g_free(err);
}

static void finish_bad(uint64_t ram, const char *msg)
{
	char *err = NULL;
	ck_assert_int_eq(kl_numa_finish(&n, ram, &err), -1);
	ck_assert_msg(err && strstr(err, msg), "got '%s', want '%s'", err ? err : "", msg);
	g_free(err);
}

START_TEST(test_nodes)
{
	ok("node,nodeid=1,cpus=1-2,memdev=m1");
	ok("node,nodeid=0,cpus=0,cpus=3,memdev=big");
	ck_assert_uint_eq(n.nnodes, 2);
	char *err = NULL;
	ck_assert_int_eq(kl_numa_finish(&n, 96 * MIB, &err), 0);
	/* memory in node-id order: node 0 first */
	ck_assert_uint_eq(n.node[0].ram_offset, 0);
	ck_assert_uint_eq(n.node[0].size, 64 * MIB);
	ck_assert_uint_eq(n.node[1].ram_offset, 64 * MIB);
	ck_assert_uint_eq(n.node[1].size, 32 * MIB);
	ck_assert_int_eq(n.cpu_node[0], 0);
	ck_assert_int_eq(n.cpu_node[1], 1);
	ck_assert_int_eq(n.cpu_node[2], 1);
	ck_assert_int_eq(n.cpu_node[3], 0);
	ck_assert(!n.have_dist);
	ck_assert_uint_eq(kl_numa_distance(&n, 0, 0), 10);
	ck_assert_uint_eq(kl_numa_distance(&n, 0, 1), 20);
	/* the active configuration (query-cpus-fast) */
	ck_assert_int_eq(kl_numa_cpu_node(2), -1);
	kl_numa_set_active(&n);
	ck_assert_int_eq(kl_numa_cpu_node(2), 1);
	ck_assert_int_eq(kl_numa_cpu_node(4), -1);
	kl_numa_set_active(NULL);
}
END_TEST

START_TEST(test_node_errors)
{
	bad("node,mem=32M", "Parameter -numa node,mem is not supported by this machine type");
	bad("node,memdev=m0,mem=32M", "mixing both is not allowed");
	bad("node,memdev=nope", "memdev=nope is ambiguous");
	bad("node,memdev=m0,cpus=4", "CPU index (4) should be smaller than maxcpus (4)");
	bad("node,memdev=m0,cpus=x", "Parameter 'cpus' expects a uint64 value or range");
	bad("node,memdev=m0,cpus=3-1", "Parameter 'cpus' expects");
	bad("node,nodeid=128,memdev=m0", "Max number of NUMA nodes reached: 128");
	bad("node,memdev=m0,foo=1", "Invalid parameter 'foo'");
	bad("bogus", "Parameter 'type' does not accept value 'bogus'");
	bad("nodeid=0", "Parameter 'type' is missing");
	bad("hmat-lb,initiator=0", "HMAT");
	bad("dist,src=0,dst=0,val=10,cpus=1", "Invalid parameter 'cpus'");
	ok("node,nodeid=0,cpus=0,memdev=m0");
	bad("node,nodeid=0,memdev=m1", "Duplicate NUMA nodeid: 0");
	bad("node,nodeid=1,cpus=0,memdev=m1", "CPU is already assigned to node-id: 0");
}
END_TEST

START_TEST(test_finish_errors)
{
	ok("node,nodeid=1,memdev=m1");
	finish_bad(32 * MIB, "numa: Node ID missing: 0");
	ok("node,nodeid=0,memdev=m0");
	finish_bad(128 * MIB, "total memory for NUMA nodes (0x4000000) should equal RAM size "
			      "(0x8000000)");
}
END_TEST

START_TEST(test_memless_node)
{
	ok("node,memdev=big,cpus=0-1");
	ok("node,cpus=2-3");   /* no memory: CPUs only */
	char *err = NULL;
	ck_assert_int_eq(kl_numa_finish(&n, 64 * MIB, &err), 0);
	ck_assert_uint_eq(n.node[1].size, 0);
	ck_assert_ptr_null(n.node[1].memdev);
	ck_assert_int_eq(n.cpu_node[3], 1);
}
END_TEST

START_TEST(test_dist)
{
	ok("node,memdev=m0");
	ok("node,memdev=m1");
	ok("node,memdev=m2");
	bad("dist,src=0,dst=1", "Parameter 'val' is missing");
	bad("dist,src=0,dst=3,val=20", "Source/Destination NUMA node is missing");
	bad("dist,src=0,dst=128,val=20", "Parameter 'dst' expects an integer between 0 and 127");
	bad("dist,src=0,dst=1,val=9", "NUMA distance (9) is invalid, it shouldn't be less than 10.");
	bad("dist,src=1,dst=1,val=11", "Local distance of node 1 should be 10.");
	bad("dist,src=0,dst=1,val=256", "Parameter 'val' expects uint8_t");
	ok("dist,src=0,dst=1,val=21");
	ok("dist,src=2,dst=0,val=31");
	/* 1 <-> 2 missing */
	finish_bad(96 * MIB, "The distance between node 1 and 2 is missing");
	ok("dist,src=1,dst=2,val=41");
	char *err = NULL;
	ck_assert_int_eq(kl_numa_finish(&n, 96 * MIB, &err), 0);
	/* symmetric completion, local 10 */
	static const unsigned want[3][3] = { { 10, 21, 31 }, { 21, 10, 41 }, { 31, 41, 10 } };
	for (unsigned i = 0; i < 3; i++)
		for (unsigned j = 0; j < 3; j++)
			ck_assert_uint_eq(kl_numa_distance(&n, i, j), want[i][j]);
}
END_TEST

START_TEST(test_dist_asymmetric)
{
	ok("node,memdev=m0");
	ok("node,memdev=m1");
	ok("node,memdev=m2");
	ok("dist,src=0,dst=1,val=21");
	ok("dist,src=1,dst=0,val=22");   /* asymmetric: then every pair both ways */
	ok("dist,src=0,dst=2,val=31");
	ok("dist,src=1,dst=2,val=41");
	finish_bad(96 * MIB, "At least one asymmetrical pair of distances is given");
	ok("dist,src=2,dst=0,val=31");
	ok("dist,src=2,dst=1,val=41");
	char *err = NULL;
	ck_assert_int_eq(kl_numa_finish(&n, 96 * MIB, &err), 0);
	ck_assert_uint_eq(kl_numa_distance(&n, 0, 1), 21);
	ck_assert_uint_eq(kl_numa_distance(&n, 1, 0), 22);
}
END_TEST

START_TEST(test_cpu_and_defaults)
{
	kl_numa_free(&n);
	kl_numa_init(&n, 8, 2, 2);   /* 2 sockets x 2 cores x 2 threads */
	ok("node,memdev=m0");
	ok("node,memdev=m1");
	bad("cpu,socket-id=0", "Missing mandatory node-id property");
	bad("cpu,node-id=5,socket-id=0", "Invalid node-id=5, NUMA node must be defined");
	bad("cpu,node-id=0,socket-id=2", "no match found");
	ok("cpu,node-id=1,socket-id=0,core-id=1");   /* CPUs 2, 3 */
	bad("cpu,node-id=0,socket-id=0,core-id=1,thread-id=0", "CPU is already assigned to node-id: 1");
	char *err = NULL;
	ck_assert_int_eq(kl_numa_finish(&n, 64 * MIB, &err), 0);
	/* the rest: socket-id % 2 (QEMU's x86 default), with a warning */
	static const int want[8] = { 0, 0, 1, 1, 1, 1, 1, 1 };
	for (unsigned i = 0; i < 8; i++)
		ck_assert_int_eq(n.cpu_node[i], want[i]);
}
END_TEST

START_TEST(test_default_mapping)
{
	ok("node,memdev=m0");
	ok("node,memdev=m1");
	ok("node");
	char *err = NULL;
	ck_assert_int_eq(kl_numa_finish(&n, 64 * MIB, &err), 0);
	/* one CPU per socket: socket % 3 */
	static const int want[4] = { 0, 1, 2, 0 };
	for (unsigned i = 0; i < 4; i++)
		ck_assert_int_eq(n.cpu_node[i], want[i]);
}
END_TEST

/* ---- host-nodes / policy ---- */

static void hm_bad(const char *nodes, const char *policy, const char *msg)
{
	struct kl_hostmem_bind b;
	char *err = NULL;
	ck_assert_int_eq(kl_hostmem_parse(nodes, policy, &b, &err), -1);
	ck_assert_msg(err && strstr(err, msg), "got '%s', want '%s'", err ? err : "", msg);
	g_free(err);
}

START_TEST(test_hostmem_parse)
{
	struct kl_hostmem_bind b;
	char *err = NULL;
	ck_assert_int_eq(kl_hostmem_parse(NULL, NULL, &b, &err), 0);
	ck_assert(kl_hostmem_is_default(&b));
	ck_assert_int_eq(kl_hostmem_parse(NULL, "default", &b, &err), 0);
	ck_assert(kl_hostmem_is_default(&b));
	ck_assert_int_eq(kl_hostmem_parse("0-2", "interleave", &b, &err), 0);
	ck_assert_int_eq(b.policy, KL_HOSTMEM_INTERLEAVE);
	ck_assert_uint_eq(b.nodes[0], 7);
	ck_assert_int_eq(kl_hostmem_parse("127", "preferred", &b, &err), 0);
	ck_assert(!kl_hostmem_is_default(&b));
	hm_bad("0", NULL, "host-nodes must be empty for policy default");
	hm_bad(NULL, "bind", "host-nodes must be set for policy bind");
	hm_bad("0", "foo", "Parameter 'policy' does not accept value 'foo'");
	hm_bad("200", "bind", "Invalid host-nodes value: 200");
	hm_bad("x", "bind", "Parameter 'host-nodes' expects");
	hm_bad("2-1", "bind", "Parameter 'host-nodes' expects");
}
END_TEST

START_TEST(test_hostmem_apply)
{
	size_t len = 2 * MIB;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	struct kl_hostmem_bind b;
	char *err = NULL;
	/* default: nothing to do */
	ck_assert_int_eq(kl_hostmem_parse(NULL, NULL, &b, &err), 0);
	ck_assert_int_eq(kl_hostmem_apply(p, len, &b, &err), 0);
	/* bind to host node 0 (every host has it): get_mempolicy reports it */
	ck_assert_int_eq(kl_hostmem_parse("0", "bind", &b, &err), 0);
	ck_assert_msg(kl_hostmem_apply(p, len, &b, &err) == 0, "%s", err ? err : "");
	int mode = -1;
	unsigned long mask[4] = { 0 };
	ck_assert_int_eq(syscall(SYS_get_mempolicy, &mode, mask, 8 * sizeof(mask), p, 2 /* MPOL_F_ADDR */),
			 0);
	ck_assert_int_eq(mode, 2 /* MPOL_BIND */);
	ck_assert_uint_eq(mask[0], 1);
	memset(p, 0x5a, len);   /* the memory is usable */
	/* a host node that does not exist: QEMU's error */
	if (access("/sys/devices/system/node/node127", F_OK) != 0) {
		ck_assert_int_eq(kl_hostmem_parse("127", "bind", &b, &err), 0);
		ck_assert_int_eq(kl_hostmem_apply(p, len, &b, &err), -1);
		ck_assert_ptr_nonnull(strstr(err, "cannot bind memory to host NUMA nodes: "));
		g_free(err);
	}
	munmap(p, len);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("numa");
	TCase *tc = tcase_create("numa");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_nodes);
	tcase_add_test(tc, test_node_errors);
	tcase_add_test(tc, test_finish_errors);
	tcase_add_test(tc, test_memless_node);
	tcase_add_test(tc, test_dist);
	tcase_add_test(tc, test_dist_asymmetric);
	tcase_add_test(tc, test_cpu_and_defaults);
	tcase_add_test(tc, test_default_mapping);
	suite_add_tcase(s, tc);
	tc = tcase_create("hostmem");
	tcase_add_test(tc, test_hostmem_parse);
	tcase_add_test(tc, test_hostmem_apply);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
