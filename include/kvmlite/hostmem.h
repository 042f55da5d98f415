/* Host NUMA placement of memory back-ends (src/mem/hostnodes.c):
 * host-nodes=N[-M] and policy=default|preferred|bind|interleave on
 * -object memory-backend-*, applied with mbind(2) (raw syscall, no libnuma)
 * as QEMU 7.2's backends/hostmem.c: MPOL_MF_STRICT | MPOL_MF_MOVE, maxnode
 * one past the highest node + 1. */
#ifndef KVMLITE_HOSTMEM_H
#define KVMLITE_HOSTMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KL_HOSTMEM_MAX_NODES 128   /* QEMU's MAX_NODES */

/* Linux's MPOL_* values */
enum kl_hostmem_policy {
	KL_HOSTMEM_DEFAULT = 0,
	KL_HOSTMEM_PREFERRED = 1,
	KL_HOSTMEM_BIND = 2,
	KL_HOSTMEM_INTERLEAVE = 3,
};

struct kl_hostmem_bind {
	/* one bit more than the nodes: mbind's maxnode quirk */
	unsigned long nodes[(KL_HOSTMEM_MAX_NODES + 1 + 8 * sizeof(unsigned long) - 1) /
			    (8 * sizeof(unsigned long))];
	enum kl_hostmem_policy policy;
};

/* Parse the backend's "host-nodes" (NULL: none) and "policy" (NULL:
 * default) values and check them together as QEMU does.  0, or -1 with
 * *err (QEMU's text). */
int kl_hostmem_parse(const char *host_nodes, const char *policy, struct kl_hostmem_bind *b,
		     char **err);
/* Nothing to do (no host-nodes, policy default)? */
bool kl_hostmem_is_default(const struct kl_hostmem_bind *b);
/* Apply b to [p, p+len) (page aligned).  0 (also when b is default), or
 * -1 with *err "cannot bind memory to host NUMA nodes: <errno text>". */
int kl_hostmem_apply(void *p, size_t len, const struct kl_hostmem_bind *b, char **err);
const char *kl_hostmem_policy_name(enum kl_hostmem_policy p);

#endif
