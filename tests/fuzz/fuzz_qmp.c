/* libFuzzer target: bytes a QMP socket client sends (src/monitor/: the
 * JSON value splitter, json-glib parsing, the session state machine,
 * argument checking and every command) against a fake VM
 * (tests/unit/monitor/fake_vm.c: 2 vCPUs, 2 block devices).
 *
 * The input is fed to a fresh session (after the greeting) in chunks of
 * 1, 2, ... 17 bytes, so values are split at many places.  Asserted: the
 * output is a sequence of "\r\n"-terminated lines, each a JSON object (our
 * own parser accepts it: valid UTF-8, no NUL) with exactly one of "QMP",
 * "return" or "error" (whose "class" and "desc" are strings). */
#include <glib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/monitor/monitor_int.h"
#include "../unit/monitor/fake_vm.h"
#include "kvmlite/chardev.h"
#include "kvmlite/monitor.h"

#include "fuzz_util.h"

static struct kl_vm vm;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_init_glib(*argv);
	/* query-kvm must not look at the real /dev/kvm */
	setenv("KVMLITE_KVM_DEV", "/nonexistent/kvm", 1);
	char *e = NULL; /* a ringbuf for query-chardev and ringbuf-read/-write */
	if (kl_chardev_add("ringbuf,id=serial0,size=4096", &e) < 0)
		abort();
	return 0;
}

static void check_line(const char *line, size_t len)
{
	FUZZ_TRACE("<- %.*s\n", (int)len, line);
	char *err = NULL;
	JsonNode *n = kl_json_parse(line, len, &err);
	if (!n)
		fprintf(stderr, "bad reply line (%s): %.*s\n", err, (int)len, line);
	FUZZ_ASSERT(n != NULL);
	FUZZ_ASSERT(JSON_NODE_HOLDS_OBJECT(n));
	JsonObject *o = json_node_get_object(n);
	unsigned kinds = json_object_has_member(o, "QMP") + json_object_has_member(o, "return") +
			 json_object_has_member(o, "error");
	FUZZ_ASSERT(kinds == 1);
	if (json_object_has_member(o, "error")) {
		JsonNode *e = json_object_get_member(o, "error");
		FUZZ_ASSERT(JSON_NODE_HOLDS_OBJECT(e));
		JsonObject *eo = json_node_get_object(e);
		JsonNode *c = json_object_get_member(eo, "class");
		JsonNode *d = json_object_get_member(eo, "desc");
		FUZZ_ASSERT(c && json_node_get_value_type(c) == G_TYPE_STRING);
		FUZZ_ASSERT(d && json_node_get_value_type(d) == G_TYPE_STRING);
	}
	json_node_unref(n);
}

static void drain(struct kl_qmp_session *s)
{
	const char *p = s->out->str, *end = p + s->out->len;
	while (p < end) {
		const char *nl = g_strstr_len(p, end - p, "\r\n");
		FUZZ_ASSERT(nl != NULL);
		check_line(p, nl - p);
		p = nl + 2;
	}
	g_string_truncate(s->out, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fake_vm_init(&vm, 2);
	fake_nblockdevs = 2;
	struct kl_qmp_session s;
	kl_qmp_session_init(&s, &vm);
	kl_qmp_session_greeting(&s);
	drain(&s);
	size_t chunk = 1;
	for (size_t off = 0; off < size; off += chunk, chunk = chunk % 17 + 1) {
		if (chunk > size - off)
			chunk = size - off;
		kl_qmp_session_input(&s, (const char *)data + off, chunk);
		drain(&s);
	}
	kl_qmp_session_destroy(&s);
	fake_vm_free(&vm);
	return 0;
}
