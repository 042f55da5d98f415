/* -numa node / dist / cpu (include/kvmlite/numa.h), with QEMU 7.2's rules
 * and messages (hw/core/numa.c, hw/core/machine.c). */
#include "kvmlite/numa.h"

#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/opts.h"

static const struct kl_numa *active;

void kl_numa_init(struct kl_numa *n, unsigned ncpus, unsigned cores, unsigned threads)
{
	memset(n, 0, sizeof(*n));
	n->ncpus = ncpus > KL_NUMA_MAX_CPUS ? KL_NUMA_MAX_CPUS : ncpus;
	n->cores = cores ? cores : 1;
	n->threads = threads ? threads : 1;
	for (unsigned i = 0; i < KL_NUMA_MAX_CPUS; i++)
		n->cpu_node[i] = -1;
}

void kl_numa_free(struct kl_numa *n)
{
	if (active == n)
		active = NULL;
	for (unsigned i = 0; i < KL_NUMA_MAX_NODES; i++) {
		g_free(n->node[i].memdev);
		n->node[i].memdev = NULL;
	}
}

static void cpu_topo(const struct kl_numa *n, unsigned i, unsigned *socket, unsigned *core,
		     unsigned *thread)
{
	*thread = i % n->threads;
	*core = (i / n->threads) % n->cores;
	*socket = i / (n->threads * n->cores);
}

/* QEMU's machine_set_cpu_numa_node for one CPU. */
static int set_cpu_node(struct kl_numa *n, unsigned cpu, unsigned node, char **err)
{
	if (n->cpu_node[cpu] >= 0 && (unsigned)n->cpu_node[cpu] != node) {
		*err = g_strdup_printf("CPU is already assigned to node-id: %d", n->cpu_node[cpu]);
		return -1;
	}
	n->cpu_node[cpu] = (int)node;
	return 0;
}

/* Number with an upper bound, QEMU's visitor wording on a bad value. */
static int get_num(struct kl_opts *o, const char *key, uint64_t max, const char *type,
		   bool *has, uint64_t *out, char **err)
{
	const char *v = kl_opts_get(o, key);
	*has = v != NULL;
	if (!v)
		return 0;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 0);
	if (!*v || *end || errno || v[0] == '-' || x > max) {
		*err = g_strdup_printf("Parameter '%s' expects %s", key, type);
		return -1;
	}
	*out = x;
	return 0;
}

/* "A" or "A-B" (QEMU's uint16 list element). */
static int parse_cpu_range(const char *v, unsigned *a, unsigned *b)
{
	char *end;
	unsigned long x = strtoul(v, &end, 10);
	if (end == v || x > 0xffff)
		return -1;
	unsigned long y = x;
	if (*end == '-') {
		const char *s = end + 1;
		y = strtoul(s, &end, 10);
		if (end == s || y > 0xffff || y < x)
			return -1;
	}
	if (*end)
		return -1;
	*a = (unsigned)x;
	*b = (unsigned)y;
	return 0;
}

/* Splits "node,cpus=0-1,cpus=3,memdev=m" into the cpus= values and the
 * rest (an option string without them; ",," escapes kept). */
static char *take_cpus(const char *spec, GPtrArray *cpus)
{
	GString *rest = g_string_new(NULL);
	const char *p = spec;
	while (*p) {
		const char *e = p;
		while (*e && !(e[0] == ',' && e[1] != ',')) {
			if (e[0] == ',' && e[1] == ',')
				e++;
			e++;
		}
		if (!strncmp(p, "cpus=", 5)) {
			g_ptr_array_add(cpus, g_strndup(p + 5, (gsize)(e - p - 5)));
		} else {
			if (rest->len)
				g_string_append_c(rest, ',');
			g_string_append_len(rest, p, e - p);
		}
		p = *e ? e + 1 : e;
	}
	return g_string_free(rest, FALSE);
}

static int parse_node(struct kl_numa *n, struct kl_opts *o, GPtrArray *cpus,
		      kl_numa_memdev_fn memdev_fn, void *opaque, char **err)
{
	uint64_t id = n->nnodes;
	bool has;
	if (get_num(o, "nodeid", 0xffff, "uint16_t", &has, &id, err) < 0)
		return -1;
	if (!has)
		id = n->nnodes;
	if (id >= KL_NUMA_MAX_NODES) {
		*err = g_strdup_printf("Max number of NUMA nodes reached: %u", (unsigned)id);
		return -1;
	}
	if (n->node[id].present) {
		*err = g_strdup_printf("Duplicate NUMA nodeid: %u", (unsigned)id);
		return -1;
	}
	if (kl_opts_get(o, "initiator")) {
		*err = g_strdup("ACPI Heterogeneous Memory Attribute Table (HMAT) is disabled, "
				"enable it with -machine hmat=on before using any of hmat specific "
				"options (kvmlite has no HMAT)");
		return -1;
	}
	for (guint i = 0; i < cpus->len; i++) {
		unsigned a, b;
		if (parse_cpu_range(g_ptr_array_index(cpus, i), &a, &b) < 0) {
			*err = g_strdup("Parameter 'cpus' expects a uint64 value or range");
			return -1;
		}
		for (unsigned c = a; c <= b; c++) {
			if (c >= n->ncpus) {
				*err = g_strdup_printf("CPU index (%u) should be smaller than maxcpus (%u)",
						       c, n->ncpus);
				return -1;
			}
			if (set_cpu_node(n, c, (unsigned)id, err) < 0)
				return -1;
		}
	}
	const char *memdev = kl_opts_get(o, "memdev");
	if (kl_opts_get(o, "mem")) {
		*err = g_strdup(memdev ? "numa configuration should use either mem= or memdev=,"
					 "mixing both is not allowed"
				       : "Parameter -numa node,mem is not supported by this machine "
					 "type (use -numa node,memdev instead)");
		return -1;
	}
	uint64_t size = 0;
	if (memdev && (!memdev_fn || !memdev_fn(memdev, &size, opaque))) {
		*err = g_strdup_printf("memdev=%s is ambiguous", memdev);
		return -1;
	}
	n->node[id].present = true;
	n->node[id].memdev = g_strdup(memdev);
	n->node[id].size = size;
	if (id + 1 > n->max_nodeid)
		n->max_nodeid = (unsigned)id + 1;
	n->nnodes++;
	return 0;
}

static int parse_dist(struct kl_numa *n, struct kl_opts *o, char **err)
{
	uint64_t src = 0, dst = 0, val = 0;
	bool hs, hd, hv;
	if (get_num(o, "src", 0xffff, "uint16_t", &hs, &src, err) < 0 ||
	    get_num(o, "dst", 0xffff, "uint16_t", &hd, &dst, err) < 0 ||
	    get_num(o, "val", 0xff, "uint8_t", &hv, &val, err) < 0)
		return -1;
	const char *missing = !hs ? "src" : !hd ? "dst" : !hv ? "val" : NULL;
	if (missing) {
		*err = g_strdup_printf("Parameter '%s' is missing", missing);
		return -1;
	}
	if (src >= KL_NUMA_MAX_NODES || dst >= KL_NUMA_MAX_NODES) {
		*err = g_strdup_printf("Parameter '%s' expects an integer between 0 and %d",
				       src >= KL_NUMA_MAX_NODES ? "src" : "dst", KL_NUMA_MAX_NODES - 1);
		return -1;
	}
	if (!n->node[src].present || !n->node[dst].present) {
		*err = g_strdup("Source/Destination NUMA node is missing. Please use '-numa node' "
				"option to declare it first.");
		return -1;
	}
	if (val < KL_NUMA_DISTANCE_MIN) {
		*err = g_strdup_printf("NUMA distance (%u) is invalid, it shouldn't be less than %d.",
				       (unsigned)val, KL_NUMA_DISTANCE_MIN);
		return -1;
	}
	if (src == dst && val != KL_NUMA_DISTANCE_MIN) {
		*err = g_strdup_printf("Local distance of node %u should be %d.", (unsigned)src,
				       KL_NUMA_DISTANCE_MIN);
		return -1;
	}
	n->dist[src][dst] = (uint8_t)val;
	n->have_dist = true;
	return 0;
}

static int parse_cpu(struct kl_numa *n, struct kl_opts *o, char **err)
{
	uint64_t node = 0, v[3] = { 0, 0, 0 };
	bool has_node, has[3];
	static const char *const keys[3] = { "socket-id", "core-id", "thread-id" };
	if (get_num(o, "node-id", INT64_MAX, "int64", &has_node, &node, err) < 0)
		return -1;
	for (unsigned k = 0; k < 3; k++)
		if (get_num(o, keys[k], INT64_MAX, "int64", &has[k], &v[k], err) < 0)
			return -1;
	if (kl_opts_get(o, "die-id")) {   /* pc has one die per socket */
		uint64_t die;
		bool hd;
		if (get_num(o, "die-id", INT64_MAX, "int64", &hd, &die, err) < 0)
			return -1;
		if (die != 0) {
			*err = g_strdup("no match found");
			return -1;
		}
	}
	if (!has_node) {
		*err = g_strdup("Missing mandatory node-id property");
		return -1;
	}
	if (node >= KL_NUMA_MAX_NODES || !n->node[node].present) {
		*err = g_strdup_printf("Invalid node-id=%" G_GUINT64_FORMAT ", NUMA node must be defined "
				       "with -numa node,nodeid=ID before it's used with -numa "
				       "cpu,node-id=ID", (guint64)node);
		return -1;
	}
	bool match = false;
	for (unsigned i = 0; i < n->ncpus; i++) {
		unsigned t[3];
		cpu_topo(n, i, &t[0], &t[1], &t[2]);
		bool m = true;
		for (unsigned k = 0; k < 3; k++)
			if (has[k] && v[k] != t[k])
				m = false;
		if (!m)
			continue;
		match = true;
		if (set_cpu_node(n, i, (unsigned)node, err) < 0)
			return -1;
	}
	if (!match) {
		*err = g_strdup("no match found");
		return -1;
	}
	return 0;
}

int kl_numa_parse(struct kl_numa *n, const char *spec, kl_numa_memdev_fn memdev, void *opaque,
		  char **err)
{
	GPtrArray *cpus = g_ptr_array_new_with_free_func(g_free);
	char *rest = take_cpus(spec, cpus);
	struct kl_opts *o = kl_opts_parse(rest, "type", err);
	g_free(rest);
	int r = -1;
	if (!o)
		goto out;
	const char *type = kl_opts_get(o, "type");
	if (!type) {
		*err = g_strdup("Parameter 'type' is missing");
		goto out;
	}
	if (cpus->len && strcmp(type, "node")) {
		*err = g_strdup("Invalid parameter 'cpus'");
		goto out;
	}
	/* unknown keys first (QEMU's opts visitor), before anything is set */
	static const char *const node_keys[] = { "type", "nodeid", "memdev", "mem", "initiator", NULL };
	static const char *const dist_keys[] = { "type", "src", "dst", "val", NULL };
	static const char *const cpu_keys[] = { "type", "node-id", "socket-id", "die-id", "core-id",
						"thread-id", NULL };
	const char *const *keys = !strcmp(type, "node") ? node_keys : !strcmp(type, "dist") ? dist_keys
				  : !strcmp(type, "cpu") ? cpu_keys : NULL;
	for (unsigned i = 0; keys && i < o->n; i++) {
		unsigned k = 0;
		while (keys[k] && strcmp(keys[k], o->v[i].key))
			k++;
		if (!keys[k]) {
			*err = g_strdup_printf("Invalid parameter '%s'", o->v[i].key);
			goto out;
		}
	}
	if (!strcmp(type, "node"))
		r = parse_node(n, o, cpus, memdev, opaque, err);
	else if (!strcmp(type, "dist"))
		r = parse_dist(n, o, err);
	else if (!strcmp(type, "cpu"))
		r = parse_cpu(n, o, err);
	else if (!strcmp(type, "hmat-lb") || !strcmp(type, "hmat-cache"))
		*err = g_strdup("ACPI Heterogeneous Memory Attribute Table (HMAT) is disabled, enable "
				"it with -machine hmat=on before using any of hmat specific options "
				"(kvmlite has no HMAT)");
	else
		*err = g_strdup_printf("Parameter 'type' does not accept value '%s'", type);
out:
	kl_opts_free(o);
	g_ptr_array_free(cpus, TRUE);
	return r;
}

/* QEMU's validate_numa_distance + complete_init_numa_distance. */
static int finish_distance(struct kl_numa *n, char **err)
{
	unsigned nn = n->nnodes;
	bool asym = false;
	for (unsigned s = 0; s < nn; s++) {
		for (unsigned d = s; d < nn; d++) {
			if (!n->dist[s][d] && !n->dist[d][s] && s != d) {
				*err = g_strdup_printf("The distance between node %u and %u is missing, at "
						       "least one distance value between each nodes "
						       "should be provided.", s, d);
				return -1;
			}
			if (n->dist[s][d] && n->dist[d][s] && n->dist[s][d] != n->dist[d][s])
				asym = true;
		}
	}
	if (asym) {
		for (unsigned s = 0; s < nn; s++)
			for (unsigned d = 0; d < nn; d++)
				if (s != d && !n->dist[s][d]) {
					*err = g_strdup("At least one asymmetrical pair of distances is "
							"given, please provide distances for both "
							"directions of all node pairs.");
					return -1;
				}
	}
	for (unsigned s = 0; s < nn; s++)
		for (unsigned d = 0; d < nn; d++)
			if (!n->dist[s][d])
				n->dist[s][d] = s == d ? KL_NUMA_DISTANCE_MIN : n->dist[d][s];
	return 0;
}

int kl_numa_finish(struct kl_numa *n, uint64_t ram_size, char **err)
{
	if (!n->nnodes)
		return 0;
	for (int i = (int)n->max_nodeid - 1; i >= 0; i--) {
		if (!n->node[i].present) {
			*err = g_strdup_printf("numa: Node ID missing: %d", i);
			return -1;
		}
	}
	uint64_t total = 0;
	for (unsigned i = 0; i < n->nnodes; i++) {
		n->node[i].ram_offset = total;
		total += n->node[i].size;
	}
	if (total != ram_size) {
		*err = g_strdup_printf("total memory for NUMA nodes (0x%" G_GINT64_MODIFIER "x) should "
				       "equal RAM size (0x%" G_GINT64_MODIFIER "x)", (guint64)total,
				       (guint64)ram_size);
		return -1;
	}
	if (n->have_dist && finish_distance(n, err) < 0)
		return -1;
	/* CPUs without a node: QEMU's x86 default (socket-id % nodes), with
	 * its warning when the mapping was partial */
	bool any = false;
	for (unsigned i = 0; i < n->ncpus; i++)
		any |= n->cpu_node[i] >= 0;
	GString *unset = g_string_new(NULL);
	for (unsigned i = 0; i < n->ncpus; i++) {
		if (n->cpu_node[i] >= 0)
			continue;
		unsigned s, c, t;
		cpu_topo(n, i, &s, &c, &t);
		n->cpu_node[i] = (int)(s % n->nnodes);
		if (any)
			g_string_append_printf(unset, "%sCPU %u [socket-id: %u, core-id: %u, thread-id: %u]",
					       unset->len ? ", " : "", i, s, c, t);
	}
	if (unset->len)
		fprintf(stderr, "kvmlite: warning: CPU(s) not present in any NUMA nodes: %s\n"
			"kvmlite: warning: All CPU(s) up to maxcpus should be described in NUMA "
			"config, ability to start up with partial NUMA mappings is obsoleted and "
			"will be removed in future\n", unset->str);
	g_string_free(unset, TRUE);
	return 0;
}

unsigned kl_numa_distance(const struct kl_numa *n, unsigned src, unsigned dst)
{
	if (src >= KL_NUMA_MAX_NODES || dst >= KL_NUMA_MAX_NODES)
		return 0;
	if (n->have_dist && n->dist[src][dst])
		return n->dist[src][dst];
	return src == dst ? KL_NUMA_DISTANCE_MIN : KL_NUMA_DISTANCE_DEFAULT;
}

void kl_numa_set_active(const struct kl_numa *n)
{
	active = n && n->nnodes ? n : NULL;
}

const struct kl_numa *kl_numa_active(void)
{
	return active;
}

int kl_numa_cpu_node(unsigned cpu)
{
	if (!active || cpu >= active->ncpus)
		return -1;
	return active->cpu_node[cpu];
}
