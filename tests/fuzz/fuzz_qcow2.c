/* libFuzzer target: hostile qcow2 images (src/block/qcow2*.c).
 *
 * Input layout: 32 bytes of script, then the image file.  The image is put
 * in a memfd and opened through the real file driver (/proc/self/fd/N) as
 * format qcow2, read-write unless script[0] bit 0 is set, with small caches
 * and no backing file.  Then script[1] % 8 requests (read, write,
 * write-zeroes, discard, flush, internal snapshot create, delete of the
 * first snapshot, create with VM state, revert to the first snapshot, read
 * of the first snapshot's VM state: snapshot-save / -load) at offsets and
 * lengths from the script, one at a time, then close (metadata write-back).
 *
 * Asserted: open either succeeds or fails with a message; every request
 * completes exactly once, outside its submitting call, with the byte count
 * or -errno; reads fill the whole buffer; a snapshot operation succeeds
 * or fails with a message.  ASan/UBSan catch the rest. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvmlite/loop.h"
#include "kvmlite/opts.h"
#include "../../src/block/node.h"

#include "fuzz_util.h"

#define SCRIPT 32
#define MAX_IMAGE (4u << 20)
#define MAX_IO (256u << 10)

static int img_fd = -1;
static char img_path[64];
static uint8_t *iobuf;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_init_glib(*argv);
	kl_loop_init();
	img_fd = memfd_create("fuzz-qcow2", 0);
	FUZZ_ASSERT(img_fd >= 0);
	snprintf(img_path, sizeof(img_path), "/proc/self/fd/%d", img_fd);
	iobuf = malloc(MAX_IO);
	return 0;
}

struct op {
	int calls;
	long ret;
	bool in_submit;
};

static void op_cb(void *opaque, long ret)
{
	struct op *o = opaque;
	FUZZ_ASSERT(!o->in_submit);
	o->calls++;
	o->ret = ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < SCRIPT + 8 || size > SCRIPT + MAX_IMAGE)
		return 0;
	struct fuzz_in in = { data, SCRIPT };
	FUZZ_ASSERT(ftruncate(img_fd, 0) == 0);
	FUZZ_ASSERT(pwrite(img_fd, data + SCRIPT, size - SCRIPT, 0) == (ssize_t)(size - SCRIPT));
	uint8_t flags = fuzz_u8(&in);
	unsigned nops = fuzz_u8(&in) % 8;
	struct kl_bnode_inherit inh = { 0 };
	inh.readonly = flags & 1;
	inh.discard_unmap = flags & 2;
	char *err = NULL;
	struct kl_opts *o = kl_opts_parse("backing=,l2-cache-size=16k,refcount-cache-size=4k",
					  NULL, &err);
	FUZZ_ASSERT(o);
	struct kl_bnode *bs = kl_bnode_open_image(img_path, "qcow2", &inh, o, &err);
	kl_opts_free(o);
	if (!bs) {
		FUZZ_ASSERT(err && *err);
		FUZZ_TRACE("open: %s\n", err);
		g_free(err);
		return 0;
	}
	g_free(err);
	for (unsigned i = 0; i < nops; i++) {
		uint8_t kind = fuzz_u8(&in) % 10;
		uint64_t off = bs->size ? fuzz_u32(&in) % bs->size : 0;
		uint64_t len = fuzz_u16(&in) % MAX_IO + 1;
		if (len > bs->size - off)
			len = bs->size - off;
		struct iovec v = { iobuf, len };
		struct op op = { 0, 0, true };
		int r;
		memset(iobuf, 0x5c, len);
		if (kind >= 5) {
			/* snapshot metadata transactions (qcow2_txn.c), VM state */
			char *e = NULL;
			GArray *a = g_array_new(false, false, sizeof(struct kl_snapshot_info));
			bs->drv->snapshot_list(bs, a);
			struct kl_snapshot_info *first =
				a->len ? &g_array_index(a, struct kl_snapshot_info, 0) : NULL;
			if (kind == 5)
				r = bs->drv->snapshot_create(bs, NULL, "fz", &e);
			else if (kind == 7)
				r = bs->drv->snapshot_create_vm(bs, NULL, "fzvm", iobuf, len, off, &e);
			else if (kind == 8 && first)
				r = bs->drv->snapshot_goto(bs, first->id, &e);
			else if (kind == 9 && first)
				r = bs->drv->snapshot_vmstate_read(bs, first->id, iobuf,
								   first->vm_state_size < MAX_IO ?
								   first->vm_state_size : MAX_IO, &e);
			else if (kind == 6 && first)
				r = bs->drv->snapshot_delete(bs, g_array_index(a, struct kl_snapshot_info,
									     0).id, NULL, &e);
			else
				r = 0;
			FUZZ_ASSERT(r == 0 || (e && *e));
			FUZZ_TRACE("snapshot op %u: %d %s\n", kind, r, e ? e : "");
			g_free(e);
			g_array_free(a, true);
			continue;
		}
		switch (kind) {
		case 0: r = kl_bnode_preadv(bs, off, &v, 1, op_cb, &op); break;
		case 1: r = kl_bnode_pwritev(bs, off, &v, 1, op_cb, &op); break;
		case 2: r = kl_bnode_write_zeroes(bs, off, len, flags & 4 ? KL_BZ_MAY_UNMAP : 0,
						 op_cb, &op); break;
		case 3: r = kl_bnode_discard(bs, off, len, op_cb, &op); break;
		default: r = kl_bnode_flush(bs, op_cb, &op); break;
		}
		op.in_submit = false;
		if (r < 0) {
			FUZZ_ASSERT(op.calls == 0);
			continue;
		}
		FUZZ_ASSERT(op.calls == 0);
		kl_bnode_drain(bs);
		FUZZ_ASSERT(op.calls == 1);
		FUZZ_TRACE("op %u at %lu+%lu: %ld\n", kind, (unsigned long)off, (unsigned long)len,
			   op.ret);
		if (op.ret >= 0 && kind <= 1)
			FUZZ_ASSERT(op.ret == (long)len);
		else if (op.ret >= 0)
			FUZZ_ASSERT(op.ret == 0);
	}
	kl_bnode_unref(bs);
	return 0;
}
