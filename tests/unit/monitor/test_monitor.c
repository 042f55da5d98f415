/* Unit tests for the QMP monitor: splitter, parser/serializer, protocol,
 * commands (fake vm), sockets and event broadcast. */
#include <check.h>

#include "../kl_check.h"
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../../src/monitor/monitor_int.h"
#include "fake_vm.h"
#include "sock_util.h"
#include "kvmlite/chardev.h"
#include "kvmlite/loop.h"
#include "kvmlite/monitor.h"

/* ---------------- splitter ---------------- */

struct collect {
	GPtrArray *vals; /* "V:<text>" or "E:<error>" */
};

static void collect_cb(void *opaque, const char *msg, size_t len, const char *error)
{
	struct collect *c = opaque;
	if (error)
		g_ptr_array_add(c->vals, g_strdup_printf("E:%s", error));
	else
		g_ptr_array_add(c->vals, g_strdup_printf("V:%.*s", (int)len, msg));
}

static struct collect split_all(const char *in, size_t chunk, size_t max_len, unsigned max_depth)
{
	struct collect c = { g_ptr_array_new_with_free_func(g_free) };
	struct kl_json_splitter sp;
	kl_json_splitter_init(&sp, max_len, max_depth, collect_cb, &c);
	size_t n = strlen(in);
	for (size_t i = 0; i < n; i += chunk)
		kl_json_splitter_feed(&sp, in + i, MIN(chunk, n - i));
	kl_json_splitter_destroy(&sp);
	return c;
}

#define VAL(c, i) ((const char *)g_ptr_array_index((c).vals, (i)))

START_TEST(split_stream)
{
	const char *in = "{\"a\":1}{\"b\":[1,{\"c\":\"}]\\\"{\"}]}\n \"s}tr\" 12 true [] ";
	for (size_t chunk = 1; chunk <= 64; chunk *= 4) {
		struct collect c = split_all(in, chunk, 1024, 16);
		ck_assert_uint_eq(c.vals->len, 6);
		ck_assert_str_eq(VAL(c, 0), "V:{\"a\":1}");
		ck_assert_str_eq(VAL(c, 1), "V:{\"b\":[1,{\"c\":\"}]\\\"{\"}]}");
		ck_assert_str_eq(VAL(c, 2), "V:\"s}tr\"");
		ck_assert_str_eq(VAL(c, 3), "V:12");
		ck_assert_str_eq(VAL(c, 4), "V:true");
		ck_assert_str_eq(VAL(c, 5), "V:[]");
		g_ptr_array_unref(c.vals);
	}
}
END_TEST

START_TEST(split_single_quotes)
{
	struct collect c = split_all("{'a}':\"'\"} 'x]' {}", 2, 1024, 16);
	ck_assert_uint_eq(c.vals->len, 3);
	ck_assert_str_eq(VAL(c, 0), "V:{'a}':\"'\"}");
	ck_assert_str_eq(VAL(c, 1), "V:'x]'");
	ck_assert_str_eq(VAL(c, 2), "V:{}");
	g_ptr_array_unref(c.vals);
}
END_TEST

START_TEST(split_stray_close)
{
	struct collect c = split_all("} ]{}", 1, 1024, 16);
	ck_assert_uint_eq(c.vals->len, 3);
	ck_assert_str_eq(VAL(c, 0), "E:JSON parse error, expecting value");
	ck_assert_str_eq(VAL(c, 1), "E:JSON parse error, expecting value");
	ck_assert_str_eq(VAL(c, 2), "V:{}");
	g_ptr_array_unref(c.vals);
}
END_TEST

START_TEST(split_oversize_skips_value)
{
	GString *s = g_string_new("{\"x\":\"");
	for (int i = 0; i < 300; i++)
		g_string_append(s, "a{[\\\"");
	g_string_append(s, "\", \"y\": [1,2,{}]} {\"ok\":1}");
	struct collect c = split_all(s->str, 7, 100, 16);
	ck_assert_uint_eq(c.vals->len, 2);
	ck_assert_str_eq(VAL(c, 0), "E:JSON message size limit exceeded");
	ck_assert_str_eq(VAL(c, 1), "V:{\"ok\":1}");
	g_ptr_array_unref(c.vals);
	g_string_free(s, TRUE);
}
END_TEST

START_TEST(split_nesting_limit)
{
	struct collect c = split_all("[[[[[[\"]\"]]]]]] [[[[[]]]]] {}", 3, 1024, 5);
	ck_assert_uint_eq(c.vals->len, 3);
	ck_assert_str_eq(VAL(c, 0), "E:JSON nesting depth limit exceeded");
	ck_assert_str_eq(VAL(c, 1), "V:[[[[[]]]]]");
	ck_assert_str_eq(VAL(c, 2), "V:{}");
	g_ptr_array_unref(c.vals);
}
END_TEST

START_TEST(parse_and_serialize)
{
	char *err = NULL;
	const char *in = "{\"z\":1,\"a\":[true,null,-5,2.5,\"\\u00e9\\ud83d\\ude00\\n\\\"\"],\"m\":{}}";
	JsonNode *n = kl_json_parse(in, strlen(in), &err);
	ck_assert_ptr_nonnull(n);
	char *out = kl_json_to_string(n);
	ck_assert_str_eq(out, "{\"z\": 1, \"a\": [true, null, -5, 2.5, \"\\u00E9\\uD83D\\uDE00\\n\\\"\"], \"m\": {}}");
	g_free(out);
	json_node_unref(n);

	const char bad[] = "{\"a\":\"\xff\"}";
	ck_assert_ptr_null(kl_json_parse(bad, strlen(bad), &err));
	ck_assert_str_eq(err, "JSON parse error, invalid UTF-8 sequence");
	g_free(err);
	err = NULL;
	ck_assert_ptr_null(kl_json_parse("{\"a\":tru}", 9, &err));
	ck_assert(g_str_has_prefix(err, "JSON parse error, "));
	g_free(err);
	err = NULL;
	const char nul[] = "{\"a\":\"\0\"}";
	ck_assert_ptr_null(kl_json_parse(nul, sizeof(nul) - 1, &err));
	ck_assert(g_str_has_prefix(err, "JSON parse error, "));
	g_free(err);
	/* bad Unicode escapes and unpaired surrogates (json-glib 1.6 leaks on
	 * some: found by tests/fuzz/fuzz_qmp) */
	static const char *const bad_hex[] = { "[\"\\u12G4\"]", "[\"\\u123\"]", "[\"\\u\"]" };
	for (unsigned i = 0; i < G_N_ELEMENTS(bad_hex); i++) {
		err = NULL;
		ck_assert_ptr_null(kl_json_parse(bad_hex[i], strlen(bad_hex[i]), &err));
		ck_assert_str_eq(err, "JSON parse error, invalid Unicode escape");
		g_free(err);
	}
	static const char *const bad_pairs[] = {
		"[\"\\ud800\\u0041\"]", "[\"\\ud83d\\u0001\"]", "[\"\\udc00\\udc00\"]",
		"[\"\\ud800\"]", "[\"x\\udfff\"]", "['\\ud83d\\ud83d']",
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(bad_pairs); i++) {
		err = NULL;
		ck_assert_ptr_null(kl_json_parse(bad_pairs[i], strlen(bad_pairs[i]), &err));
		ck_assert_str_eq(err, "JSON parse error, scanner: malformed surrogate pair");
		g_free(err);
	}
	static const char *const good[] = { "[\"\\\\ud800\"]", "[\"\\udbff\\udfff\\u0041\"]" };
	for (unsigned i = 0; i < G_N_ELEMENTS(good); i++) {
		err = NULL;
		n = kl_json_parse(good[i], strlen(good[i]), &err);
		ck_assert_msg(n != NULL, "%s: %s", good[i], err);
		json_node_unref(n);
	}
}
END_TEST

/* ---------------- protocol with a hand-built vm ---------------- */

static struct kl_vm vm;
static struct kl_qmp_session S;

static void sess_setup(void)
{
	fake_vm_init(&vm, 2);
	kl_qmp_session_init(&S, &vm);
}

static void sess_teardown(void)
{
	kl_qmp_session_destroy(&S);
	fake_vm_free(&vm);
}

/* Feed in, return all output lines (NULL-terminated, g_strfreev). */
static gchar **run(const char *in)
{
	g_string_truncate(S.out, 0);
	kl_qmp_session_input(&S, in, strlen(in));
	ck_assert(S.out->len == 0 || g_str_has_suffix(S.out->str, "\r\n"));
	char *t = g_strndup(S.out->str, S.out->len >= 2 ? S.out->len - 2 : 0);
	gchar **l = S.out->len ? g_strsplit(t, "\r\n", -1) : g_new0(gchar *, 1);
	g_free(t);
	return l;
}

static char *run1(const char *in)
{
	gchar **l = run(in);
	ck_assert_msg(l[0] && !l[1], "expected one line for %s, got %u", in, g_strv_length(l));
	char *r = g_strdup(l[0]);
	g_strfreev(l);
	return r;
}

static void expect(const char *in, const char *want)
{
	char *r = run1(in);
	ck_assert_str_eq(r, want);
	g_free(r);
}

static void negotiate(void)
{
	expect("{\"execute\":\"qmp_capabilities\"}", "{\"return\": {}}");
}

START_TEST(greeting_shape)
{
	kl_qmp_session_greeting(&S);
	ck_assert_str_eq(S.out->str,
			 "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
			 "\"package\": \"kvmlite-0.1.0\"}, \"capabilities\": []}}\r\n");
}
END_TEST

START_TEST(negotiation)
{
	expect("{\"execute\":\"query-status\",\"id\":1}",
	       "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities "
	       "negotiation with 'qmp_capabilities'\"}, \"id\": 1}");
	expect("{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Capability 'oob' not available\"}}");
	expect("{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"x\"]}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'null' does not accept value 'x'\"}}");
	expect("{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":\"oob\"}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid parameter type for 'enable', expected: array\"}}");
	ck_assert(!S.negotiated);
	expect("{\"execute\":\"qmp_capabilities\",\"id\":\"n\"}", "{\"return\": {}, \"id\": \"n\"}");
	ck_assert(S.negotiated);
	expect("{\"execute\":\"qmp_capabilities\"}",
	       "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Capabilities negotiation "
	       "is already complete, command ignored\"}}");
}
END_TEST

START_TEST(id_echo_any_type)
{
	negotiate();
	expect("{\"id\":[1,{\"a\":null}],\"execute\":\"query-name\"}", "{\"return\": {}, \"id\": [1, {\"a\": null}]}");
	expect("{\"execute\":\"query-name\",\"id\":null}", "{\"return\": {}, \"id\": null}");
	expect("{\"execute\":\"query-name\",\"id\":\"\\u00e9\"}", "{\"return\": {}, \"id\": \"\\u00E9\"}");
	/* integers beyond int64 keep their value (as doubles), not -1 */
	expect("{\"execute\":\"query-name\",\"id\":[100000000000000000000000,9223372036854775807,"
	       "-9223372036854775808,9223372036854775808,\"99999999999999999999\"]}",
	       "{\"return\": {}, \"id\": [9.9999999999999992e+22, 9223372036854775807, "
	       "-9223372036854775808, 9.2233720368547758e+18, \"99999999999999999999\"]}");
	char *r = run1("{'execute':'query-name','id':'it''s'}");
	ck_assert(g_str_has_prefix(r, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, "));
	g_free(r);
	expect("{'execute':'query-name','id':'x'}", "{\"return\": {}, \"id\": \"x\"}");
	expect("{\"execute\":\"nope\",\"id\":false}",
	       "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command nope has not been found\"}, \"id\": false}");
}
END_TEST

START_TEST(error_shapes)
{
	negotiate();
	static const char *const cases[][2] = {
		{ "[1]", "QMP input must be a JSON object" },
		{ "\"x\"", "QMP input must be a JSON object" },
		{ "{}", "QMP input lacks member 'execute'" },
		{ "{\"execute\":1}", "QMP input member 'execute' must be a string" },
		{ "{\"execute\":\"stop\",\"arguments\":[]}", "QMP input member 'arguments' must be an object" },
		{ "{\"execute\":\"stop\",\"foo\":1}", "QMP input member 'foo' is unexpected" },
		{ "{\"exec-oob\":\"stop\"}", "QMP input member 'exec-oob' is unexpected" },
		{ "{\"execute\":\"query-status\",\"arguments\":{\"x\":1}}", "Parameter 'x' is unexpected" },
		{ "{\"execute\":\"human-monitor-command\",\"arguments\":{}}", "Parameter 'command-line' is missing" },
		{ "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":1}}",
		  "Invalid parameter type for 'command-line', expected: string" },
		{ "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"\",\"cpu-index\":\"0\"}}",
		  "Invalid parameter type for 'cpu-index', expected: integer" },
		{ "}", "JSON parse error, expecting value" },
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
		char *want = g_strdup_printf("{\"error\": {\"class\": \"GenericError\", \"desc\": \"%s\"}}", cases[i][1]);
		expect(cases[i][0], want);
		g_free(want);
	}
	char *r = run1("{\"execute\":tru}");
	ck_assert(g_str_has_prefix(r, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, "));
	g_free(r);
	expect("{\"execute\":\"query-name\",\"id\":\"\xc3\x28\"}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, invalid UTF-8 sequence\"}}");
	/* still usable */
	expect("{\"execute\":\"query-name\"}", "{\"return\": {}}");
}
END_TEST

START_TEST(limits_keep_connection)
{
	negotiate();
	/* 2 MiB string, then a request in the same stream */
	GString *s = g_string_new("{\"execute\":\"query-name\",\"id\":\"");
	while (s->len < (2u << 20))
		g_string_append(s, "xxxxxxxxxxxxxxx\\\"");
	g_string_append(s, "\"}{\"execute\":\"query-status\"}");
	gchar **l = run(s->str);
	ck_assert_uint_eq(g_strv_length(l), 2);
	ck_assert_str_eq(l[0], "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON message size limit exceeded\"}}");
	ck_assert_str_eq(l[1], "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}}");
	g_strfreev(l);
	g_string_free(s, TRUE);
	/* nesting beyond 1024 */
	s = g_string_new(NULL);
	for (int i = 0; i < 5000; i++)
		g_string_append_c(s, '[');
	for (int i = 0; i < 5000; i++)
		g_string_append_c(s, ']');
	g_string_append(s, "{\"execute\":\"query-name\",\"id\":7}");
	l = run(s->str);
	ck_assert_uint_eq(g_strv_length(l), 2);
	ck_assert_str_eq(l[0], "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON nesting depth limit exceeded\"}}");
	ck_assert_str_eq(l[1], "{\"return\": {}, \"id\": 7}");
	g_strfreev(l);
	g_string_free(s, TRUE);
	/* 1000 deep is accepted (and is not an object) */
	s = g_string_new(NULL);
	for (int i = 0; i < 1000; i++)
		g_string_append_c(s, '[');
	for (int i = 0; i < 1000; i++)
		g_string_append_c(s, ']');
	expect(s->str, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input must be a JSON object\"}}");
	g_string_free(s, TRUE);
}
END_TEST

START_TEST(cmd_status_stop_cont)
{
	negotiate();
	expect("{\"execute\":\"stop\"}", "{\"return\": {}}"); /* no-op in prelaunch */
	ck_assert_int_eq(fake.pause, 0);
	expect("{\"execute\":\"cont\"}", "{\"return\": {}}");
	ck_assert_int_eq(fake.resume, 1);
	expect("{\"execute\":\"query-status\"}",
	       "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}}");
	expect("{\"execute\":\"cont\"}", "{\"return\": {}}");
	ck_assert_int_eq(fake.resume, 1);
	expect("{\"execute\":\"stop\"}", "{\"return\": {}}");
	ck_assert_int_eq(fake.pause, 1);
	expect("{\"execute\":\"query-status\"}",
	       "{\"return\": {\"status\": \"paused\", \"singlestep\": false, \"running\": false}}");
	expect("{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info status\"}}",
	       "{\"return\": \"VM status: paused\\r\\n\"}");
	vm.state = KL_RS_PRELAUNCH;
	expect("{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\" info  status \"}}",
	       "{\"return\": \"VM status: paused (prelaunch)\\r\\n\"}");
	vm.state = KL_RS_SHUTDOWN;
	expect("{\"execute\":\"cont\"}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Resetting the Virtual Machine is required\"}}");
	vm.state = KL_RS_RUNNING;
	expect("{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info status\"}}",
	       "{\"return\": \"VM status: running\\r\\n\"}");
}
END_TEST

START_TEST(cmd_power)
{
	negotiate();
	expect("{\"execute\":\"system_reset\"}", "{\"return\": {}}");
	ck_assert_int_eq(fake.reset, 1);
	ck_assert(!fake.reset_guest);
	ck_assert_str_eq(fake.reset_reason, "host-qmp-system-reset");
	expect("{\"execute\":\"system_powerdown\"}", "{\"return\": {}}");
	ck_assert_int_eq(fake.powerdown, 1);
	expect("{\"execute\":\"quit\"}", "{\"return\": {}}");
	ck_assert_int_eq(fake.shutdown, 1);
	ck_assert_int_eq(fake.shutdown_code, 0);
	ck_assert(!fake.shutdown_guest);
	ck_assert_str_eq(fake.shutdown_reason, "host-qmp-quit");
}
END_TEST

START_TEST(cmd_queries)
{
	negotiate();
	expect("{\"execute\":\"query-version\"}",
	       "{\"return\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"kvmlite-0.1.0\"}}");
	expect("{\"execute\":\"query-name\"}", "{\"return\": {}}");
	vm.name = "vm1";
	expect("{\"execute\":\"query-name\"}", "{\"return\": {\"name\": \"vm1\"}}");
	expect("{\"execute\":\"query-uuid\"}", "{\"return\": {\"UUID\": \"00000000-0000-0000-0000-000000000000\"}}");
	static const uint8_t u[16] = { 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8 };
	memcpy(vm.uuid, u, 16);
	vm.has_uuid = true;
	expect("{\"execute\":\"query-uuid\"}", "{\"return\": {\"UUID\": \"12345678-9abc-def0-0102-030405060708\"}}");
	vm.vm_fd = 5;
	expect("{\"execute\":\"query-kvm\"}", "{\"return\": {\"enabled\": true, \"present\": true}}");
	expect("{\"execute\":\"x-query-emulation-assist\"}",
	       "{\"return\": {\"enabled\": false, \"count\": 0, \"time-ns\": 0, \"assists\": []}}");
	vm.assist = (struct kl_assist *)&vm;	/* the fake counters ignore it */
	expect("{\"execute\":\"x-query-emulation-assist\"}",
	       "{\"return\": {\"enabled\": true, \"count\": 8, \"time-ns\": 3500, \"assists\": ["
	       "{\"name\": \"xsave\", \"count\": 3, \"time-ns\": 3000}, "
	       "{\"name\": \"syscall\", \"count\": 5, \"time-ns\": 500}]}}");
	vm.assist = NULL;
	vm.cores = 1;
	vm.threads = 2;
	expect("{\"execute\":\"query-cpus-fast\"}",
	       "{\"return\": [{\"cpu-index\": 0, \"qom-path\": \"/machine/unattached/device[0]\", \"thread-id\": 1000, "
	       "\"props\": {\"core-id\": 0, \"thread-id\": 0, \"socket-id\": 0}, \"target\": \"x86_64\"}, "
	       "{\"cpu-index\": 1, \"qom-path\": \"/machine/unattached/device[1]\", \"thread-id\": 1001, "
	       "\"props\": {\"core-id\": 0, \"thread-id\": 1, \"socket-id\": 0}, \"target\": \"x86_64\"}]}");
	expect("{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info cpus\"}}",
	       "{\"return\": \"* CPU #0: thread_id=1000\\r\\n  CPU #1: thread_id=1001\\r\\n\"}");
	expect("{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info cpus\",\"cpu-index\":1}}",
	       "{\"return\": \"  CPU #0: thread_id=1000\\r\\n* CPU #1: thread_id=1001\\r\\n\"}");
	expect("{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info nope\"}}",
	       "{\"return\": \"unknown command: 'info nope'\\r\\n\"}");
	char *r = run1("{\"execute\":\"query-commands\"}");
	ck_assert(strstr(r, "{\"name\": \"query-cpus-fast\"}"));
	ck_assert(strstr(r, "{\"name\": \"human-monitor-command\"}"));
	g_free(r);
}
END_TEST

/* Hot-plug commands on the fake machine (no devices, no PCI): replies and
 * errors pass through as the lower layers give them. */
START_TEST(cmd_hotplug)
{
	negotiate();
	expect("{\"execute\":\"query-pci\"}", "{\"return\": [{\"bus\": 0, \"devices\": []}]}");
	expect("{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine/peripheral/\"}}",
	       "{\"return\": [{\"name\": \"type\", \"type\": \"string\"}]}");
	/* /machine exists on every machine, as in QEMU (libvirt lists it) */
	expect("{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/machine\"}}",
	       "{\"return\": [{\"name\": \"type\", \"type\": \"string\"}]}");
	expect("{\"execute\":\"qom-list\",\"arguments\":{\"path\":\"/nowhere\"}}",
	       "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device '/nowhere' not found\"}}");
	expect("{\"execute\":\"device_del\",\"arguments\":{\"id\":\"d9\"}}",
	       "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'd9' not found\"}}");
	expect("{\"execute\":\"device_del\",\"arguments\":{}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'id' is missing\"}}");
	expect("{\"execute\":\"device_add\",\"arguments\":{\"driver\":\"e1000\"}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fake: no block graph\"}}");
	expect("{\"execute\":\"netdev_add\",\"arguments\":{\"id\":\"n0\"}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'type' is missing\"}}");
	expect("{\"execute\":\"netdev_add\",\"arguments\":{\"type\":\"user\"}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'id' is missing\"}}");
	expect("{\"execute\":\"netdev_add\",\"arguments\":{\"type\":\"user\",\"id\":\"n0\",\"x\":[1]}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid parameter type for 'x', expected: string\"}}");
	expect("{\"execute\":\"netdev_del\",\"arguments\":{\"id\":\"n0\"}}",
	       "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Device 'n0' not found\"}}");
}
END_TEST

START_TEST(cmd_block)
{
	negotiate();
	expect("{\"execute\":\"query-block\"}", "{\"return\": []}");
	fake_nblockdevs = 2;
	char *r = run1("{\"execute\":\"query-block\"}");
	ck_assert_msg(strstr(r, "{\"return\": [{\"device\": \"drive0\", \"qdev\": \"/machine/peripheral-anon/device[0]\", "
			 "\"type\": \"unknown\", \"removable\": false, \"locked\": false, \"inserted\": {\"file\": "
			 "\"/nonexistent/disk0.img\", \"node-name\": \"#block000\", \"ro\": false, \"drv\": \"raw\""), "%s", r);
	ck_assert(strstr(r, "\"image\": {\"filename\": \"/nonexistent/disk0.img\", \"format\": \"raw\", \"virtual-size\": 8388608, \"dirty-flag\": false}"));
	ck_assert(strstr(r, "\"cache\": {\"writeback\": true, \"direct\": true, \"no-flush\": false}"));
	ck_assert(strstr(r, "\"cache\": {\"writeback\": true, \"direct\": false, \"no-flush\": true}"));
	ck_assert(strstr(r, "\"io-status\": \"ok\""));
	ck_assert(strstr(r, "{\"device\": \"drive1\", \"type\": \"unknown\""));
	g_free(r);
	r = run1("{\"execute\":\"query-blockstats\"}");
	ck_assert_msg(strstr(r, "{\"return\": [{\"device\": \"drive0\", \"node-name\": \"#block000\", \"qdev\": "
			 "\"/machine/peripheral-anon/device[0]\", \"stats\": {\"rd_bytes\": 1536, \"wr_bytes\": 1024, "), "%s", r);
	ck_assert(strstr(r, "\"rd_operations\": 3, \"wr_operations\": 2, \"flush_operations\": 1"));
	/* QEMU 7.2: the backend's counters, the root node's wr_highest_offset;
	 * at node level the counters are zero, wr_highest_offset and the file's
	 * discards are the node's */
	ck_assert_msg(strstr(r, "\"wr_highest_offset\": 8192, \"rd_merged\": 0"), "%s", r);
	ck_assert(strstr(r, "\"parent\": {\"node-name\": \"#file000\", \"stats\": {\"rd_bytes\": 0, "
			    "\"wr_bytes\": 0, "));
	ck_assert(strstr(r, "\"driver-specific\": {\"driver\": \"file\", \"discard-nb-ok\": 1, "
			    "\"discard-nb-failed\": 0, \"discard-bytes-ok\": 4096}}}, {\"device\": \"drive1\""));
	g_free(r);
	fake_nblockdevs = 0;
}
END_TEST

START_TEST(cmd_block_nodes)
{
	negotiate();
	fake_nblockdevs = 2;
	/* newest node first (QEMU), each a BlockDeviceInfo */
	char *r = run1("{\"execute\":\"query-named-block-nodes\",\"arguments\":{\"flat\":true}}");
	ck_assert_msg(strstr(r, "{\"return\": [{\"file\": \"/nonexistent/disk1.img\", \"node-name\": "
			 "\"#block001\", \"ro\": true, \"drv\": \"raw\", \"backing_file_depth\": 0"), "%s", r);
	ck_assert(strstr(r, "{\"file\": \"/nonexistent/disk0.img\", \"node-name\": \"#file000\", "
			    "\"ro\": false, \"drv\": \"file\""));
	ck_assert(strstr(r, "\"image\": {\"filename\": \"/nonexistent/disk0.img\", \"format\": \"file\", "
			    "\"virtual-size\": 8388608, \"dirty-flag\": false}"));
	/* the oldest (drive0's file node, cache=none) last */
	ck_assert(strstr(r, "\"cache\": {\"writeback\": true, \"direct\": true, \"no-flush\": false}, "
			    "\"write_threshold\": 0}]}"));
	g_free(r);
	r = run1("{\"execute\":\"query-blockstats\",\"arguments\":{\"query-nodes\":true}}");
	ck_assert_msg(strstr(r, "{\"return\": [{\"node-name\": \"#file000\", \"stats\": "), "%s", r);
	ck_assert(strstr(r, "{\"node-name\": \"#block000\", \"stats\": "));
	ck_assert(!strstr(r, "\"device\""));
	g_free(r);
	/* arguments are checked by the table; the block layer's error is the reply */
	expect("{\"execute\":\"query-named-block-nodes\",\"arguments\":{\"flat\":1}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Invalid parameter type for "
	       "'flat', expected: boolean\"}}");
	expect("{\"execute\":\"blockdev-del\"}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'node-name' is missing\"}}");
	expect("{\"execute\":\"blockdev-del\",\"arguments\":{\"node-name\":\"x\"}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fake: no block graph\"}}");
	expect("{\"execute\":\"blockdev-add\",\"arguments\":{\"anything\":[1]}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fake: no block graph\"}}");
	expect("{\"execute\":\"blockdev-snapshot-internal-sync\",\"arguments\":{\"device\":\"d\"}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'name' is missing\"}}");
	expect("{\"execute\":\"blockdev-snapshot-sync\",\"arguments\":{\"snapshot-file\":\"f\","
	       "\"mode\":\"relative\"}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'mode' does not accept "
	       "value 'relative'\"}}");
	expect("{\"execute\":\"blockdev-snapshot\",\"arguments\":{\"node\":\"a\",\"overlay\":\"b\"}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fake: no block graph\"}}");
	expect("{\"execute\":\"blockdev-snapshot-delete-internal-sync\",\"arguments\":{\"device\":\"a\","
	       "\"id\":\"1\"}}",
	       "{\"error\": {\"class\": \"GenericError\", \"desc\": \"fake: no block graph\"}}");
	fake_nblockdevs = 0;
}
END_TEST

/* ---------------- sockets, several clients, events ---------------- */

START_TEST(sock_events_to_every_negotiated_client)
{
	kl_loop_init();
	fake_vm_init(&vm, 1);
	/* one peer per socket, as QEMU: three -qmp sockets */
	char *path = tmp_sock(), *path2 = tmp_sock(), *path3 = tmp_sock();
	char *spec = g_strdup_printf("unix:%s,server,nowait", path);
	char *err = NULL;
	ck_assert_msg(kl_monitor_add_qmp(&vm, spec, &err) == 0, "%s", err);
	char *spec2 = g_strdup_printf("unix:%s,server=on,wait=off", path2);
	ck_assert_msg(kl_monitor_add_qmp(&vm, spec2, &err) == 0, "%s", err);
	char *spec3 = g_strdup_printf("unix:%s,server=on,wait=off", path3);
	ck_assert_msg(kl_monitor_add_qmp(&vm, spec3, &err) == 0, "%s", err);
	ck_assert_int_eq(fake.listeners, 1);
	ck_assert_ptr_nonnull(fake.listener);

	int a = connect_unix(path), b = connect_unix(path2), c = connect_unix(path3);
	/* a second peer on a busy socket waits for the first to leave */
	int a2 = connect_unix(path);
	GString *a2a = g_string_new(NULL);
	GString *aa = g_string_new(NULL), *ba = g_string_new(NULL), *ca = g_string_new(NULL);
	expect_line(a, aa, "{\"QMP\": {\"version\": ");
	expect_line(b, ba, "{\"QMP\": {\"version\": ");
	expect_line(c, ca, "{\"QMP\": {\"version\": ");
	/* a socketpair client too */
	int sp[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	kl_monitor_add_client(&vm, sp[1]);
	GString *da = g_string_new(NULL);
	expect_line(sp[0], da, "{\"QMP\": ");

	/* pipelined, split across writes */
	send_str(a, "{\"execute\":\"qmp_capabilities\"}{\"execute\":\"query-st");
	send_str(a, "atus\",\"id\":\"a1\"}");
	expect_line(a, aa, "{\"return\": {}}");
	expect_line(a, aa, "{\"return\": {\"status\": \"prelaunch\", \"singlestep\": false, \"running\": false}, \"id\": \"a1\"}");
	send_str(b, "{\"execute\":\"qmp_capabilities\"}");
	expect_line(b, ba, "{\"return\": {}}");
	send_str(sp[0], "{\"execute\":\"qmp_capabilities\"}");
	expect_line(sp[0], da, "{\"return\": {}}");
	/* c stays in negotiation mode: gets no events */

	send_str(b, "{\"execute\":\"cont\",\"id\":2}");
	expect_line(b, ba, "{\"timestamp\": {\"seconds\": ");
	expect_line(b, ba, "{\"return\": {}, \"id\": 2}");
	char *ev = read_line(a, aa);
	ck_assert(ev && g_str_has_prefix(ev, "{\"timestamp\": {\"seconds\": "));
	ck_assert(strstr(ev, "\"microseconds\": "));
	ck_assert(g_str_has_suffix(ev, "}, \"event\": \"RESUME\"}"));
	g_free(ev);
	expect_line(sp[0], da, "{\"timestamp\"");
	ck_assert(quiet(c));

	/* events with data, from the vm listener */
	struct kl_event_info info = { true, "guest-shutdown" };
	fake.listener(fake.listener_opaque, KL_EV_SHUTDOWN, &info);
	ev = read_line(a, aa);
	ck_assert(ev && g_str_has_suffix(ev, "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}"));
	g_free(ev);
	ev = read_line(b, ba);
	ck_assert(ev && g_str_has_suffix(ev, "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}"));
	g_free(ev);

	/* query-chardev lists the sockets and a ringbuf without front-end */
	ck_assert_msg(kl_chardev_add("ringbuf,id=serial0", &err) == 0, "%s", err);
	ck_assert_int_eq(kl_chardev_add("ringbuf,id=serial0", &err), -1);
	ck_assert_msg(strstr(err, "duplicate chardev id 'serial0'"), "%s", err);
	g_free(err);
	err = NULL;
	send_str(a, "{\"execute\":\"query-chardev\"}");
	char *want = g_strdup_printf("{\"return\": [{\"label\": \"compat_monitor0\", \"filename\": \"unix:%s,server=on\", "
				     "\"frontend-open\": true}, {\"label\": \"compat_monitor1\", \"filename\": \"unix:%s,server=on\", "
				     "\"frontend-open\": true}, {\"label\": \"compat_monitor2\", \"filename\": \"unix:%s,server=on\", "
				     "\"frontend-open\": true}, {\"label\": \"client%d\", \"filename\": \"fd:%d\", "
				     "\"frontend-open\": true}, {\"label\": \"serial0\", \"filename\": \"ringbuf\", "
				     "\"frontend-open\": false}]}", path, path2, path3, sp[1], sp[1]);
	char *l = read_line(a, aa);
	ck_assert_str_eq(l, want);
	g_free(l);
	g_free(want);

	ck_assert(quiet(a2));
	/* a client going away does not disturb the others; its socket takes
	 * the next peer, which gets a new session */
	close(b);
	pump();
	int b2 = connect_unix(path2);
	GString *b2a = g_string_new(NULL);
	expect_line(b2, b2a, "{\"QMP\": {\"version\": ");
	send_str(b2, "{\"execute\":\"query-status\"}");
	expect_line(b2, b2a, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"Expecting capabilities");
	close(b2);
	g_string_free(b2a, TRUE);
	close(a);
	pump();
	expect_line(a2, a2a, "{\"QMP\": {\"version\": ");
	a = a2;
	g_string_free(aa, TRUE);
	aa = a2a;
	send_str(a, "{\"execute\":\"qmp_capabilities\"}");
	expect_line(a, aa, "{\"return\": {}}");
	kl_monitor_broadcast("STOP", NULL);
	expect_line(a, aa, "{\"timestamp\"");
	ck_assert(quiet(c));
	send_str(c, "{\"execute\":\"qmp_capabilities\"}");
	expect_line(c, ca, "{\"return\": {}}");

	kl_monitor_cleanup();
	kl_chardev_cleanup();
	ck_assert(access(path, F_OK) != 0); /* unlinked */
	ck_assert(access(path2, F_OK) != 0);
	close(a);
	close(c);
	close(sp[0]);
	g_string_free(aa, TRUE);
	g_string_free(ba, TRUE);
	g_string_free(ca, TRUE);
	g_string_free(da, TRUE);
	g_free(spec);
	g_free(spec2);
	g_free(spec3);
	g_free(path);
	g_free(path2);
	unlink(path3);
	g_free(path3);
	fake_vm_free(&vm);
}
END_TEST

START_TEST(sock_flood_and_slow_reader)
{
	kl_loop_init();
	fake_vm_init(&vm, 1);
	int sp[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	struct kl_monitor *m = kl_monitor_add_client(&vm, sp[1]);
	GString *acc = g_string_new(NULL);
	expect_line(sp[0], acc, "{\"QMP\"");
	send_str(sp[0], "{\"execute\":\"qmp_capabilities\"}");
	expect_line(sp[0], acc, "{\"return\": {}}");
	/* 8000 requests written before reading all replies (reader pauses) */
	GString *req = g_string_new(NULL);
	for (int i = 0; i < 200; i++)
		g_string_append(req, "{\"execute\":\"query-version\"}");
	int fl = 1;
	for (int round = 0; round < 40; round++) {
		size_t off = 0;
		while (off < req->len) {
			ssize_t n = send(sp[0], req->str + off, req->len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0)
				off += n;
			pump();
			char buf[65536];
			ssize_t r = recv(sp[0], buf, sizeof(buf), MSG_DONTWAIT);
			if (r > 0)
				g_string_append_len(acc, buf, r);
		}
	}
	(void)fl;
	unsigned got = 0;
	for (;;) {
		char *nl;
		while ((nl = strstr(acc->str, "\r\n"))) {
			ck_assert(g_str_has_prefix(acc->str, "{\"return\": {\"qemu\""));
			g_string_erase(acc, 0, nl - acc->str + 2);
			got++;
		}
		if (got == 8000)
			break;
		char *l = read_line(sp[0], acc);
		ck_assert_ptr_nonnull(l);
		ck_assert(g_str_has_prefix(l, "{\"return\": {\"qemu\""));
		got++;
		g_free(l);
		if (got == 8000)
			break;
	}
	ck_assert(kl_monitor_connected(m));
	kl_monitor_cleanup();
	kl_chardev_cleanup();
	close(sp[0]);
	g_string_free(req, TRUE);
	g_string_free(acc, TRUE);
	fake_vm_free(&vm);
}
END_TEST

/* A client that writes 150,000 requests before reading anything: without
 * input pausing the ~18 MiB of replies would exceed KL_QMP_MAX_OUT and the
 * client would be dropped; with it, the sender is back-pressured and every
 * request is answered once it reads. */
START_TEST(sock_backpressure)
{
	kl_loop_init();
	fake_vm_init(&vm, 1);
	int sp[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
	struct kl_monitor *m = kl_monitor_add_client(&vm, sp[1]);
	GString *acc = g_string_new(NULL);
	expect_line(sp[0], acc, "{\"QMP\"");
	send_str(sp[0], "{\"execute\":\"qmp_capabilities\"}");
	expect_line(sp[0], acc, "{\"return\": {}}");
	const unsigned total = 150000;
	GString *req = g_string_new(NULL);
	for (unsigned i = 0; i < total; i++)
		g_string_append(req, "{\"execute\":\"query-version\"}");
	size_t off = 0;
	unsigned stalls = 0;
	while (off < req->len && stalls < 200) {
		ssize_t n = send(sp[0], req->str + off, req->len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			off += n;
			stalls = 0;
		} else {
			stalls++;
		}
		pump();
	}
	ck_assert_msg(off < req->len, "sender was never back-pressured");
	ck_assert(kl_monitor_connected(m));
	/* now read while sending the rest */
	size_t lines = 0, good = 0;
	const char *want = "{\"return\": {\"qemu\": ";
	GString *in = g_string_new(NULL);
	for (int spins = 0; lines < total && spins < 2000000; spins++) {
		if (off < req->len) {
			ssize_t n = send(sp[0], req->str + off, req->len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0)
				off += n;
		}
		pump();
		char buf[65536];
		ssize_t r = recv(sp[0], buf, sizeof(buf), MSG_DONTWAIT);
		if (r == 0)
			break;
		if (r < 0)
			continue;
		g_string_append_len(in, buf, r);
		char *p = in->str, *nl;
		while ((nl = strstr(p, "\r\n"))) {
			lines++;
			good += !strncmp(p, want, strlen(want));
			p = nl + 2;
		}
		g_string_erase(in, 0, p - in->str);
	}
	ck_assert_uint_eq(lines, total);
	ck_assert_uint_eq(good, total);
	ck_assert(kl_monitor_connected(m));
	kl_monitor_cleanup();
	kl_chardev_cleanup();
	close(sp[0]);
	g_string_free(in, TRUE);
	g_string_free(req, TRUE);
	g_string_free(acc, TRUE);
	fake_vm_free(&vm);
}
END_TEST

START_TEST(spec_errors)
{
	kl_loop_init();
	fake_vm_init(&vm, 1);
	char *err = NULL;
	static const char *const bad[][2] = {
		/* client mode (server=off, the default): connect now */
		{ "unix:/nonexistent/klqmp.sock", "cannot connect to /nonexistent/klqmp.sock: No such file" },
		{ "unix:/nonexistent/klqmp.sock,wait=on", "cannot connect to /nonexistent" }, /* wait ignored */
		{ "unix:/nonexistent/klqmp.sock,server=off,nowait", "cannot connect to /nonexistent" },
		{ "unix:", "empty unix socket path" },
		{ "tcp:0.0.0.0:4444", "is not a loopback address; a kvmlite socket only connects to" },
		{ "tcp::4444", "missing host to connect to" },
		{ "tcp:127.0.0.1:", "missing TCP port" },
		{ "unix:/nonexistent/klqmp.sock,reconnect=1", "unknown parameter 'reconnect'" },
		{ "unix:/tmp/klqmp-x.sock,server=on,wait=on,bogus=1", "bogus" }, /* before waiting */
		{ "tcp:0.0.0.0:4444,server=on,wait=off", "not a loopback address" },
		{ "tcp:0.0.0.0:4444,server=on", "not a loopback address" }, /* before waiting */
		{ "tcp::4444,server=on,wait=off", "all interfaces" },
		{ "tcp:127.0.0.1,server=on,wait=off", "lacks a port" },
		{ "vc", "unsupported back-end" },
		{ "unix:/tmp/klqmp-x.sock,server=on,wait=off,bogus=1", "bogus" },
	};
	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		ck_assert_int_eq(kl_monitor_add_qmp(&vm, bad[i][0], &err), -1);
		ck_assert_msg(strstr(err, bad[i][1]) && g_str_has_prefix(err, "-qmp '"), "%s -> %s", bad[i][0], err);
		ck_assert(!strchr(err, '\n'));
		g_free(err);
		err = NULL;
	}
	/* a unix socket that exists but nobody listens on */
	char *dead = tmp_sock();
	int ds = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un dsa = { .sun_family = AF_UNIX };
	g_strlcpy(dsa.sun_path, dead, sizeof(dsa.sun_path));
	ck_assert_int_eq(bind(ds, (struct sockaddr *)&dsa, sizeof(dsa)), 0);
	char *spec = g_strdup_printf("unix:%s", dead);
	char *want = g_strdup_printf("-qmp '%s': cannot connect to %s: Connection refused", spec, dead);
	ck_assert_int_eq(kl_monitor_add_qmp(&vm, spec, &err), -1);
	ck_assert_str_eq(err, want);
	g_free(err);
	g_free(spec);
	g_free(want);
	spec = g_strdup_printf("socket,id=c0,path=%s", dead);
	ck_assert_int_eq(kl_chardev_add(spec, &err), -1);
	ck_assert_msg(g_str_has_prefix(err, "-chardev 'socket,id=c0,") && strstr(err, "cannot connect to ") &&
		      strstr(err, "Connection refused"), "%s", err);
	g_free(err);
	g_free(spec);
	err = NULL;
	ck_assert(access(dead, F_OK) == 0); /* a peer's path is never unlinked */
	close(ds);
	unlink(dead);
	g_free(dead);

	ck_assert_int_eq(kl_chardev_add("vc,id=x", &err), -1);
	ck_assert_msg(strstr(err, "backend 'vc' is not supported"), "%s", err);
	g_free(err);
	err = NULL;
	ck_assert_int_eq(kl_monitor_add_mon(&vm, "chardev=nope,mode=control", &err), -1);
	ck_assert(strstr(err, "nope"));
	g_free(err);
	err = NULL;

	/* -chardev socket over loopback TCP + -mon */
	ck_assert_msg(kl_chardev_add("socket,id=m1,host=127.0.0.1,port=0,server=on,wait=off", &err) == 0, "%s", err);
	ck_assert_int_eq(kl_chardev_add("socket,id=m1,host=127.0.0.1,port=0,server=on,wait=off", &err), -1);
	g_free(err);
	err = NULL;
	ck_assert_int_eq(kl_monitor_add_mon(&vm, "chardev=m1", &err), -1); /* readline */
	ck_assert(strstr(err, "mode=control"));
	g_free(err);
	err = NULL;
	ck_assert_msg(kl_monitor_add_mon(&vm, "chardev=m1,mode=control", &err) == 0, "%s", err);
	ck_assert_int_eq(kl_monitor_add_mon(&vm, "chardev=m1,mode=control", &err), -1);
	ck_assert_msg(strstr(err, "chardev 'm1' is already in use"), "%s", err);
	g_free(err);
	GPtrArray *l = kl_chardev_list();
	ck_assert_uint_eq(l->len, 1);
	struct kl_chardev_info *ci = g_ptr_array_index(l, 0);
	ck_assert_str_eq(ci->label, "m1");
	ck_assert_str_eq(ci->filename, "disconnected:tcp:127.0.0.1:0,server=on");
	ck_assert(ci->frontend_open);
	g_ptr_array_unref(l);
	kl_monitor_cleanup();
	kl_chardev_cleanup();
	fake_vm_free(&vm);
}
END_TEST

START_TEST(tcp_loopback_client)
{
	kl_loop_init();
	fake_vm_init(&vm, 1);
	char *err = NULL;
	struct sockaddr_in sa;
	close(loopback_bound(&sa)); /* a free port */
	char *spec = g_strdup_printf("tcp:localhost:%u,server=on,wait=off", ntohs(sa.sin_port));
	ck_assert_msg(kl_monitor_add_qmp(&vm, spec, &err) == 0, "%s", err);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	GString *acc = g_string_new(NULL);
	expect_line(fd, acc, "{\"QMP\"");
	send_str(fd, "{\"execute\":\"qmp_capabilities\"} {\"execute\":\"query-kvm\"}");
	expect_line(fd, acc, "{\"return\": {}}");
	expect_line(fd, acc, "{\"return\": {\"enabled\": false, \"present\": ");
	kl_monitor_cleanup();
	kl_chardev_cleanup();
	close(fd);
	g_string_free(acc, TRUE);
	g_free(spec);
	fake_vm_free(&vm);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("monitor");
	TCase *t = tcase_create("json");
	tcase_add_test(t, split_stream);
	tcase_add_test(t, split_single_quotes);
	tcase_add_test(t, split_stray_close);
	tcase_add_test(t, split_oversize_skips_value);
	tcase_add_test(t, split_nesting_limit);
	tcase_add_test(t, parse_and_serialize);
	suite_add_tcase(s, t);
	t = tcase_create("qmp");
	tcase_add_checked_fixture(t, sess_setup, sess_teardown);
	tcase_add_test(t, greeting_shape);
	tcase_add_test(t, negotiation);
	tcase_add_test(t, id_echo_any_type);
	tcase_add_test(t, error_shapes);
	tcase_add_test(t, limits_keep_connection);
	tcase_add_test(t, cmd_status_stop_cont);
	tcase_add_test(t, cmd_power);
	tcase_add_test(t, cmd_queries);
	tcase_add_test(t, cmd_block);
	tcase_add_test(t, cmd_hotplug);
	tcase_add_test(t, cmd_block_nodes);
	suite_add_tcase(s, t);
	t = tcase_create("sockets");
	tcase_set_timeout(t, 180);
	tcase_add_test(t, sock_events_to_every_negotiated_client);
	tcase_add_test(t, sock_flood_and_slow_reader);
	tcase_add_test(t, sock_backpressure);
	tcase_add_test(t, spec_errors);
	tcase_add_test(t, tcp_loopback_client);
	suite_add_tcase(s, t);
	suite_add_tcase(s, chardev_modes_tcase());
	suite_add_tcase(s, schema_tcase());
	return s;
}

int main(void)
{
	return kl_check_run(suite());
}
