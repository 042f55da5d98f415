/* Byte order: little- and big-endian field access on unaligned byte
 * buffers (guest memory, images, frames).  The one copy of these helpers. */
#ifndef KVMLITE_BYTEORDER_H
#define KVMLITE_BYTEORDER_H

#include <stdint.h>

static inline uint16_t kl_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t kl_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static inline uint64_t kl_le64(const uint8_t *p)
{
	return (uint64_t)kl_le32(p) | (uint64_t)kl_le32(p + 4) << 32;
}
static inline void kl_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void kl_put32(uint8_t *p, uint32_t v)
{
	kl_put16(p, (uint16_t)v);
	kl_put16(p + 2, (uint16_t)(v >> 16));
}
static inline void kl_put64(uint8_t *p, uint64_t v)
{
	kl_put32(p, (uint32_t)v);
	kl_put32(p + 4, (uint32_t)(v >> 32));
}

/* Big-endian (network order). */
static inline uint16_t kl_get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t kl_get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void kl_put_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void kl_put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint64_t kl_get_be64(const uint8_t *p)
{
	return (uint64_t)kl_get_be32(p) << 32 | kl_get_be32(p + 4);
}
static inline void kl_put_be64(uint8_t *p, uint64_t v)
{
	kl_put_be32(p, (uint32_t)(v >> 32));
	kl_put_be32(p + 4, (uint32_t)v);
}

#endif
