/* Page-cache helpers shared by the block unit tests: how many pages of a
 * file are cached (mmap + mincore), and dropping them. */
#ifndef KL_TEST_PAGECACHE_H
#define KL_TEST_PAGECACHE_H

#include <check.h>
#include <fcntl.h>
#include <glib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static inline size_t kl_test_cached_pages(const char *path)
{
	int fd = open(path, O_RDONLY);
	ck_assert_msg(fd >= 0, "open %s", path);
	struct stat st;
	ck_assert(fstat(fd, &st) == 0);
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = ((size_t)st.st_size + pg - 1) / pg, res = 0;
	void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	ck_assert(m != MAP_FAILED);
	unsigned char *v = g_malloc(n);
	ck_assert(mincore(m, (size_t)st.st_size, v) == 0);
	for (size_t i = 0; i < n; i++)
		res += v[i] & 1;
	g_free(v);
	munmap(m, (size_t)st.st_size);
	close(fd);
	return res;
}

/* Write the file's dirty pages and drop the file from the page cache. */
static inline void kl_test_drop_cached(const char *path)
{
	int fd = open(path, O_RDONLY);
	ck_assert_msg(fd >= 0, "open %s", path);
	ck_assert(fdatasync(fd) == 0);
	ck_assert(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
	close(fd);
}

#endif
