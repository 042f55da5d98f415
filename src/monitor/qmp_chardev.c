/* QMP commands of the chardev layer (QEMU 7.2 qapi/char.json):
 *   ringbuf-write {device, data, format?: utf8|base64}
 *   ringbuf-read {device, size, format?} -> the bytes (as a string) */
#include <string.h>

#include "kvmlite/chardev.h"
#include "monitor_int.h"

const struct kl_qmp_arg kl_qmp_ringbuf_write_args[] = {
	{ "device", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "data", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "format", JSON_NODE_VALUE, G_TYPE_STRING, true },
	{ NULL },
};

const struct kl_qmp_arg kl_qmp_ringbuf_read_args[] = {
	{ "device", JSON_NODE_VALUE, G_TYPE_STRING, false },
	{ "size", JSON_NODE_VALUE, G_TYPE_INT64, false },
	{ "format", JSON_NODE_VALUE, G_TYPE_STRING, true },
	{ NULL },
};

/* 1: base64, 0: utf8, -1: bad value (desc set) */
static int data_format(JsonObject *args, char **desc)
{
	const char *f = json_object_has_member(args, "format")
				? json_object_get_string_member(args, "format") : "utf8";
	if (!strcmp(f, "utf8"))
		return 0;
	if (!strcmp(f, "base64"))
		return 1;
	*desc = g_strdup_printf("Parameter 'format' does not accept value '%s'", f);
	return -1;
}

enum kl_qmp_err kl_qmp_ringbuf_write(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				     char **desc)
{
	(void)s, (void)ret;
	int b64 = data_format(args, desc);
	if (b64 < 0)
		return KL_QMP_GENERIC;
	const char *data = json_object_get_string_member(args, "data");
	gsize len = strlen(data);
	guchar *bytes = b64 ? g_base64_decode(data, &len) : (guchar *)g_strdup(data);
	int r = kl_chardev_ringbuf_write(json_object_get_string_member(args, "device"), bytes, len,
					 desc);
	g_free(bytes);
	return r < 0 ? KL_QMP_GENERIC : KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_ringbuf_read(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				    char **desc)
{
	(void)s;
	int b64 = data_format(args, desc);
	if (b64 < 0)
		return KL_QMP_GENERIC;
	gint64 size = json_object_get_int_member(args, "size");
	if (size <= 0) {
		*desc = g_strdup("size must be greater than zero");
		return KL_QMP_GENERIC;
	}
	uint8_t *buf;
	size_t len;
	if (kl_chardev_ringbuf_read(json_object_get_string_member(args, "device"), (size_t)size,
				    &buf, &len, desc) < 0)
		return KL_QMP_GENERIC;
	/* utf8: bytes that are not UTF-8 become U+FFFD, as QEMU documents */
	char *text = b64 ? g_base64_encode(buf, len) : g_utf8_make_valid((const char *)buf, len);
	*ret = json_node_init_string(json_node_alloc(), text);
	g_free(text);
	g_free(buf);
	return KL_QMP_OK;
}
