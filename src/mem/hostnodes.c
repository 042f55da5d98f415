/* host-nodes= / policy= of memory back-ends: mbind(2) (kvmlite/hostmem.h). */
#include "kvmlite/hostmem.h"

#include <errno.h>
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MPOL_MF_STRICT (1 << 0)
#define MPOL_MF_MOVE (1 << 1)
#define BITS (8 * sizeof(unsigned long))

static const char *const policy_names[] = { "default", "preferred", "bind", "interleave" };

const char *kl_hostmem_policy_name(enum kl_hostmem_policy p)
{
	return (unsigned)p < G_N_ELEMENTS(policy_names) ? policy_names[p] : "?";
}

/* highest node set + 1, 0 when none */
static unsigned maxnode(const struct kl_hostmem_bind *b)
{
	for (int i = KL_HOSTMEM_MAX_NODES - 1; i >= 0; i--)
		if (b->nodes[i / BITS] & (1UL << (i % BITS)))
			return (unsigned)i + 1;
	return 0;
}

static int parse_nodes(const char *s, struct kl_hostmem_bind *b, char **err)
{
	/* "N" or "N-M" (QEMU's uint16 list element) */
	char *end;
	errno = 0;
	unsigned long a = strtoul(s, &end, 10), z;
	if (end == s || errno || s[0] == '-')
		goto bad;
	z = a;
	if (*end == '-') {
		const char *t = end + 1;
		z = strtoul(t, &end, 10);
		if (end == t || errno || *t == '-' || z < a)
			goto bad;
	}
	if (*end)
		goto bad;
	for (unsigned long i = a; i <= z; i++) {
		if (i >= KL_HOSTMEM_MAX_NODES) {
			*err = g_strdup_printf("Invalid host-nodes value: %lu", i);
			return -1;
		}
		b->nodes[i / BITS] |= 1UL << (i % BITS);
	}
	return 0;
bad:
	*err = g_strdup_printf("Parameter 'host-nodes' expects a uint16_t value or range, not '%s'",
			       s);
	return -1;
}

int kl_hostmem_parse(const char *host_nodes, const char *policy, struct kl_hostmem_bind *b,
		     char **err)
{
	memset(b, 0, sizeof(*b));
	if (policy) {
		unsigned i;
		for (i = 0; i < G_N_ELEMENTS(policy_names); i++)
			if (!strcmp(policy, policy_names[i]))
				break;
		if (i == G_N_ELEMENTS(policy_names)) {
			*err = g_strdup_printf("Parameter 'policy' does not accept value '%s'", policy);
			return -1;
		}
		b->policy = (enum kl_hostmem_policy)i;
	}
	if (host_nodes && parse_nodes(host_nodes, b, err) < 0)
		return -1;
	unsigned mx = maxnode(b);
	if (mx && b->policy == KL_HOSTMEM_DEFAULT) {
		*err = g_strdup("host-nodes must be empty for policy default, or you should explicitly "
				"specify a policy other than default");
		return -1;
	}
	if (!mx && b->policy != KL_HOSTMEM_DEFAULT) {
		*err = g_strdup_printf("host-nodes must be set for policy %s",
				       kl_hostmem_policy_name(b->policy));
		return -1;
	}
	return 0;
}

bool kl_hostmem_is_default(const struct kl_hostmem_bind *b)
{
	return b->policy == KL_HOSTMEM_DEFAULT && !maxnode(b);
}

int kl_hostmem_apply(void *p, size_t len, const struct kl_hostmem_bind *b, char **err)
{
	unsigned mx = maxnode(b);
	if (!mx || !len)
		return 0;
	if (syscall(SYS_mbind, p, (unsigned long)len, (unsigned long)b->policy, b->nodes,
		    (unsigned long)mx + 1, (unsigned long)(MPOL_MF_STRICT | MPOL_MF_MOVE)) != 0) {
		*err = g_strdup_printf("cannot bind memory to host NUMA nodes: %s", g_strerror(errno));
		return -1;
	}
	return 0;
}
