/* Probe guest core: main, test dispatch, console, formatting, strings,
 * command line, page allocator, page-table extension. */
#include "probe.h"

#define COM1 0x3f8
#define DEBUG_EXIT_PORT 0xf4

struct hvm_start_info *probe_boot_info;
const char *probe_cmdline = "";
const char *probe_test_name = "?";
static char fail_reason[256];
static volatile uint32_t console_lock;

extern const struct probe_test probe_tests_start[], probe_tests_end[];
void idt_init(void);

/* ---- strings ------------------------------------------------------------- */
void *memset(void *d, int c, size_t n)
{
	void *ret = d;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return ret;
}

void *memcpy(void *d, const void *s, size_t n)
{
	void *ret = d;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return ret;
}

void *memmove(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;

	if (dp <= sp || dp >= sp + n)
		return memcpy(d, s, n);
	while (n--)
		dp[n] = sp[n];
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i] != b[i])
			return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
		if (!a[i])
			return 0;
	}
	return 0;
}

int strcmp(const char *a, const char *b)
{
	return strncmp(a, b, (size_t)-1);
}

/* ---- 16550 console -------------------------------------------------------- */
void serial_init(void)
{
	outb(COM1 + 1, 0x00);  /* IER: no interrupts */
	outb(COM1 + 3, 0x80);  /* LCR: DLAB */
	outb(COM1 + 0, 0x01);  /* 115200 */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);  /* 8N1 */
	outb(COM1 + 2, 0xc7);  /* FIFO on, cleared */
	outb(COM1 + 4, 0x03);  /* DTR RTS */
}

static void serial_raw(char c)
{
	/* THRE (LSR bit 5); bounded so a broken UART cannot hang the probe */
	for (unsigned i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
		cpu_relax();
	outb(COM1, (uint8_t)c);
}

void serial_putc(char c)
{
	if (c == '\n')
		serial_raw('\r');
	serial_raw(c);
}

static void console_acquire(void)
{
	/* bounded: a CPU that died holding the lock must not hang the rest */
	for (unsigned i = 0; i < 1000000; i++) {
		if (!__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE))
			return;
		cpu_relax();
	}
}

static void console_release(void)
{
	__atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

void serial_puts(const char *s)
{
	console_acquire();
	while (*s)
		serial_putc(*s++);
	console_release();
}

/* ---- formatting ----------------------------------------------------------- */
struct outbuf {
	char *buf;
	size_t len, pos;
};

static void out_c(struct outbuf *o, char c)
{
	if (o->pos + 1 < o->len)
		o->buf[o->pos] = c;
	o->pos++;
}

static void out_num(struct outbuf *o, uint64_t v, unsigned base, bool upper, bool neg,
		    unsigned width, char pad)
{
	char tmp[24];
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	unsigned n = 0;

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	if (neg)
		tmp[n++] = '-';
	/* zero padding goes after the sign */
	if (neg && pad == '0') {
		out_c(o, '-');
		n--;
		if (width)
			width--;
	}
	for (unsigned i = n; i < width; i++)
		out_c(o, pad);
	while (n)
		out_c(o, tmp[--n]);
}

int vsnprintf(char *buf, size_t len, const char *fmt, va_list ap)
{
	struct outbuf o = { buf, len, 0 };

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			out_c(&o, *fmt);
			continue;
		}
		fmt++;
		char pad = ' ';
		unsigned width = 0, lng = 0;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (unsigned)(*fmt++ - '0');
		while (*fmt == 'l' || *fmt == 'z') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
			out_num(&o, v < 0 ? -(uint64_t)v : (uint64_t)v, 10, false, v < 0, width, pad);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
			out_num(&o, v, *fmt == 'u' ? 10 : 16, *fmt == 'X', false, width, pad);
			break;
		}
		case 'p':
			out_c(&o, '0');
			out_c(&o, 'x');
			out_num(&o, (uintptr_t)va_arg(ap, void *), 16, false, false, width, pad);
			break;
		case 'c':
			out_c(&o, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			size_t n;
			if (!s)
				s = "(null)";
			n = strlen(s);
			for (size_t i = n; i < width; i++)
				out_c(&o, ' ');
			while (*s)
				out_c(&o, *s++);
			break;
		}
		case '%':
			out_c(&o, '%');
			break;
		case '\0':
			fmt--;
			break;
		default:
			out_c(&o, '%');
			out_c(&o, *fmt);
			break;
		}
	}
	if (len)
		buf[o.pos < len ? o.pos : len - 1] = '\0';
	return (int)o.pos;
}

int snprintf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return n;
}

int printf(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	serial_puts(buf);
	return n;
}

/* ---- pass / fail / exit ---------------------------------------------------- */
int probe_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fail_reason, sizeof(fail_reason), fmt, ap);
	va_end(ap);
	return -1;
}

void probe_halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void probe_finish(bool pass)
{
	if (pass)
		printf("PROBE PASS %s\n", probe_test_name);
	else
		printf("PROBE FAIL %s: %s\n", probe_test_name,
		       fail_reason[0] ? fail_reason : "no reason given");
	/* wait for the transmitter to drain (LSR TEMT), bounded */
	for (unsigned i = 0; i < 100000 && !(inb(COM1 + 5) & 0x40); i++)
		cpu_relax();
	/* isa-debug-exit: exit status (v << 1) | 1 -> pass 1, fail 3 */
	outl(DEBUG_EXIT_PORT, pass ? 0 : 1);
	printf("probe: no isa-debug-exit at port 0x%x; halting\n", DEBUG_EXIT_PORT);
	probe_halt_forever();
}

/* ---- command line ---------------------------------------------------------- */
const char *probe_cmdline_get(const char *key, char *buf, size_t len)
{
	size_t klen = strlen(key);
	const char *p = probe_cmdline;

	if (!len)
		return NULL;
	while (*p) {
		while (*p == ' ')
			p++;
		if (!strncmp(p, key, klen) && p[klen] == '=') {
			size_t n = 0;
			p += klen + 1;
			while (p[n] && p[n] != ' ' && n + 1 < len) {
				buf[n] = p[n];
				n++;
			}
			buf[n] = '\0';
			return buf;
		}
		while (*p && *p != ' ')
			p++;
	}
	return NULL;
}

unsigned long probe_cmdline_num(const char *key, unsigned long def)
{
	char v[32];
	if (!probe_cmdline_get(key, v, sizeof(v)))
		return def;
	unsigned long n = 0;
	for (const char *p = v; *p >= '0' && *p <= '9'; p++)
		n = n * 10 + (unsigned long)(*p - '0');
	return n;
}

/* ---- memory ---------------------------------------------------------------- */
static uint64_t alloc_next, alloc_limit;

static void alloc_init(void)
{
	const struct hvm_start_info *si = probe_boot_info;
	uint64_t start = ((uint64_t)(uintptr_t)_image_end + 4095) & ~4095ull;

	alloc_next = start;
	alloc_limit = start + (1u << 20);  /* at least 1 MiB after the image */
	if (si->version >= 1 && si->memmap_paddr && si->memmap_entries) {
		const struct hvm_memmap_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
		for (uint32_t i = 0; i < si->memmap_entries; i++)
			if (e[i].type == HVM_MEMMAP_RAM && e[i].addr <= start &&
			    e[i].addr + e[i].size > start)
				alloc_limit = e[i].addr + e[i].size;
	}
	/* stay inside the permanently mapped first 8 GiB */
	if (alloc_limit > (8ull << 30))
		alloc_limit = 8ull << 30;
}

void *probe_alloc_raw(size_t size, size_t align)
{
	uint64_t p;

	if (align < 16)
		align = 16;
	p = (alloc_next + align - 1) & ~(uint64_t)(align - 1);
	if (p + size > alloc_limit || p + size < p)
		return NULL;
	alloc_next = p + size;
	return (void *)(uintptr_t)p;
}

void *probe_alloc(size_t size, size_t align)
{
	uint64_t p;

	if (align < 16)
		align = 16;
	p = (alloc_next + align - 1) & ~(uint64_t)(align - 1);
	if (p + size > alloc_limit || p + size < p)
		return NULL;
	alloc_next = p + size;
	memset((void *)(uintptr_t)p, 0, size);
	return (void *)(uintptr_t)p;
}

void *probe_alloc_pages(size_t npages)
{
	return probe_alloc(npages * 4096, 4096);
}

uint64_t probe_alloc_end(void)
{
	return alloc_next;
}

extern uint64_t pml4[];

int probe_map(uint64_t pa, uint64_t len, bool mmio)
{
	uint64_t end = (pa + len + (2u << 20) - 1) & ~((2ull << 20) - 1);

	for (uint64_t a = pa & ~((2ull << 20) - 1); a < end; a += 2u << 20) {
		unsigned i4 = (a >> 39) & 511, i3 = (a >> 30) & 511, i2 = (a >> 21) & 511;
		uint64_t *pdpt, *pd;

		if (a >> 48)
			return -1;
		if (!(pml4[i4] & 1)) {
			void *p = probe_alloc_pages(1);
			if (!p)
				return -1;
			pml4[i4] = (uintptr_t)p | 3;
		}
		pdpt = (uint64_t *)(uintptr_t)(pml4[i4] & ~0xfffull);
		if (!(pdpt[i3] & 1)) {
			void *p = probe_alloc_pages(1);
			if (!p)
				return -1;
			pdpt[i3] = (uintptr_t)p | 3;
		}
		pd = (uint64_t *)(uintptr_t)(pdpt[i3] & ~0xfffull);
		if (!(pd[i2] & 1))
			pd[i2] = a | 0x83 | (mmio ? 0x18 : 0);  /* PCD|PWT for MMIO */
	}
	/* new entries only (no stale translations to drop), but be safe */
	__asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
	return 0;
}

int probe_map_user(uint64_t pa, uint64_t len)
{
	uint64_t end = (pa + len + (2u << 20) - 1) & ~((2ull << 20) - 1);

	for (uint64_t a = pa & ~((2ull << 20) - 1); a < end; a += 2u << 20) {
		uint64_t *e4 = &pml4[(a >> 39) & 511], *e3, *e2;

		if (a >> 48 || !(*e4 & 1))
			return -1;
		e3 = (uint64_t *)(uintptr_t)(*e4 & 0x000ffffffffff000ull) + ((a >> 30) & 511);
		if (!(*e3 & 1) || (*e3 & 0x80))
			return -1;
		e2 = (uint64_t *)(uintptr_t)(*e3 & 0x000ffffffffff000ull) + ((a >> 21) & 511);
		if (!(*e2 & 1) || !(*e2 & 0x80))
			return -1;
		*e4 |= 4;
		*e3 |= 4;
		*e2 |= 4;
	}
	__asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
	return 0;
}

/* ---- main ------------------------------------------------------------------ */
void probe_main(uint32_t info_pa);
void probe_main(uint32_t info_pa)
{
	char name[64];
	const struct probe_test *t;

	serial_init();
	probe_boot_info = (struct hvm_start_info *)(uintptr_t)info_pa;
	if (!info_pa || probe_boot_info->magic != HVM_START_MAGIC) {
		probe_fail("bad hvm_start_info at 0x%x (magic 0x%x, want 0x%x)", info_pa,
			   info_pa ? probe_boot_info->magic : 0, HVM_START_MAGIC);
		probe_finish(false);
	}
	if (probe_boot_info->cmdline_paddr)
		probe_cmdline = (const char *)(uintptr_t)probe_boot_info->cmdline_paddr;
	idt_init();
	alloc_init();
	printf("probe: start_info v%u at 0x%x, cmdline \"%s\"\n", probe_boot_info->version,
	       info_pa, probe_cmdline);
	if (!probe_cmdline_get("test", name, sizeof(name))) {
		probe_fail("no test=NAME on the command line");
		probe_finish(false);
	}
	probe_test_name = name;
	for (t = probe_tests_start; t < probe_tests_end; t++) {
		if (!strcmp(t->name, name)) {
			fail_reason[0] = '\0';
			probe_finish(t->fn() == 0);
		}
	}
	{
		/* name the known tests in the reason */
		size_t n = (size_t)snprintf(fail_reason, sizeof(fail_reason), "unknown test (known:");
		for (t = probe_tests_start; t < probe_tests_end; t++) {
			size_t l = strlen(t->name);
			if (n + l + 3 >= sizeof(fail_reason))
				break;
			fail_reason[n++] = ' ';
			memcpy(fail_reason + n, t->name, l);
			n += l;
		}
		fail_reason[n++] = ')';
		fail_reason[n] = '\0';
	}
	probe_finish(false);
}
