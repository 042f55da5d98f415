/* Network back-ends (src/net/): -netdev user (libslirp), tap, socket.
 *
 * A back-end ("netdev") has an id and at most one peer: the NIC model that
 * attached to it.  Frames flow
 *
 *   NIC -> back-end   kl_netdev_send(nd, iov, iovcnt)
 *   back-end -> NIC   peer->receive(opaque, iov, iovcnt)
 *
 * Threads and locking: everything here runs with the BQL held.  Back-end
 * I/O (fd watches, slirp timers, queue flushing) runs on the main loop.
 * kl_netdev_send() may be called from a vCPU thread (e.g. an e1000 TDT
 * write): the frame is then copied to the back-end's queue and transmitted
 * by a bottom half on the main loop, so a vCPU never waits for the host.
 *
 * Flow control: before delivering, the back-end asks peer->can_receive().
 * When it says no (or receive() returns 0), the frame stays queued and the
 * back-end stops reading its fd until the NIC calls kl_netdev_rx_ready()
 * after the guest posted new RX buffers.  receive() is never called
 * re-entrantly from inside kl_netdev_send() on the same netdev.
 *
 * vnet header: a back-end that can carry a struct virtio_net_hdr_v1
 * (12 bytes, KL_VNET_HDR_LEN) with each frame (tap with IFF_VNET_HDR) says
 * so through kl_netdev_has_vnet_hdr(); a NIC that wants it calls
 * kl_netdev_set_vnet_hdr(nd, true) and then every frame in both directions
 * starts with that header.  Otherwise frames are plain Ethernet frames with
 * complete checksums (NICs finish offloaded checksums in software first:
 * see kl_net_csum_* below).
 */
#ifndef KVMLITE_NET_H
#define KVMLITE_NET_H

#include "kvmlite/byteorder.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "kvmlite/iov.h"
#include "kvmlite/opts.h"

#define KL_VNET_HDR_LEN 12     /* struct virtio_net_hdr_v1 / _mrg_rxbuf */
#define KL_NET_MAX_FRAME 65536 /* largest frame (incl. vnet header) moved */

struct kl_netdev;

struct kl_net_peer {
	const char *model;  /* "e1000", "virtio-net-pci": for messages */
	/* Can the NIC take a frame now?  NULL = always. */
	bool (*can_receive)(void *opaque);
	/* Deliver one frame.  Return its length when consumed (also when the
	 * NIC filtered it out), 0 when it cannot take it now (the back-end
	 * keeps it queued until kl_netdev_rx_ready()), -1 to drop it. */
	ssize_t (*receive)(void *opaque, const struct iovec *iov, int iovcnt);
	/* Transmit flow control: called on the main loop once the back-end's
	 * queue has drained after kl_netdev_can_send() said no.  May be NULL. */
	void (*tx_ready)(void *opaque);
	void *opaque;
};

/* Statistics of one back-end (frames handed over in each direction). */
struct kl_netdev_stats {
	uint64_t tx_frames, tx_bytes;   /* NIC -> host */
	uint64_t rx_frames, rx_bytes;   /* host -> NIC (delivered) */
	uint64_t tx_dropped, rx_dropped;
};

/* -netdev: parse and create (registered under its id).
 *   user,id=ID[,net=A.B.C.D/N][,host=IP][,dhcpstart=IP][,dns=IP]
 *        [,hostfwd=tcp|udp:[HOSTIP]:HOSTPORT-[GUESTIP]:GUESTPORT]...
 *        [,restrict=on|off][,ipv6=on|off][,hostname=NAME]
 *   tap,id=ID,ifname=NAME[,script=no][,downscript=no][,vhost=off][,vnet_hdr=on|off]
 *   socket,id=ID,listen=[HOST]:PORT | connect=HOST:PORT   (4-byte BE length
 *        + frame, like QEMU's -netdev socket / stream)
 *   socket,id=ID,udp=HOST:PORT,localaddr=HOST:PORT        (one frame per
 *        datagram, like QEMU's -netdev dgram)
 * Several hostfwd= keys may be given (",hostfwd=...,hostfwd=..." is
 * accepted in addition to kl_opts's rules).  NULL with *err (one line naming
 * the key/value) on failure. */
struct kl_netdev *kl_netdev_add(const char *optstr, char **err);
/* The back-end a NIC without netdev= gets: a fresh user netdev with the
 * default 10.0.2.0/24 network (id "__default_user0", "...1"...). */
struct kl_netdev *kl_netdev_default_user(char **err);
struct kl_netdev *kl_netdev_find(const char *id);
void kl_netdev_foreach(void (*fn)(struct kl_netdev *nd, void *opaque), void *opaque);
void kl_netdev_free(struct kl_netdev *nd);  /* detaches and unregisters */
void kl_netdev_free_all(void);

const char *kl_netdev_id(const struct kl_netdev *nd);
const char *kl_netdev_type(const struct kl_netdev *nd);   /* "user", "tap", "socket" */
void kl_netdev_get_stats(const struct kl_netdev *nd, struct kl_netdev_stats *out);

/* Attach a NIC; -1 with *err when another NIC already uses the netdev. */
int kl_netdev_attach(struct kl_netdev *nd, const struct kl_net_peer *peer, char **err);
void kl_netdev_detach(struct kl_netdev *nd);
bool kl_netdev_attached(const struct kl_netdev *nd);  /* a NIC uses it */
/* The NIC that attached the netdev registers the back-end's VM state
 * section ("netdev-user/ID": libslirp's state) in its VM; no-op for
 * back-ends without state (tap, socket).  kl_netdev_detach removes it. */
struct kl_vm;
void kl_netdev_vmstate_register(struct kl_vm *vm, struct kl_netdev *nd);
/* Find the netdev by id and attach; *err names the id when it is unknown. */
struct kl_netdev *kl_netdev_attach_id(const char *id, const struct kl_net_peer *peer, char **err);

/* Send one frame from the NIC (BQL held, any thread).  Returns the frame's
 * length (sent or queued) or -1 (dropped: too large, queue full, back-end
 * error). */
ssize_t kl_netdev_send(struct kl_netdev *nd, const struct iovec *iov, int iovcnt);
/* Should the NIC hand over more frames now?  false when the back-end
 * already holds KL_NET_TXQ_SOFT frames it could not write yet: the NIC
 * stops taking frames from the guest until peer->tx_ready(). */
#define KL_NET_TXQ_SOFT 64
bool kl_netdev_can_send(struct kl_netdev *nd);
/* The NIC has room again: flush queued frames and resume reading (any
 * thread, BQL held; the work is done on the main loop). */
void kl_netdev_rx_ready(struct kl_netdev *nd);

/* Rate limits (kvmlite extension, docs/networking.md): every -netdev takes
 *   throttling.bps-tx=N, throttling.pps-tx=N, throttling.bps-rx=N,
 *   throttling.pps-rx=N, each also as NAME-max=N and NAME-max-length=S
 * (QEMU's throttle semantics, include/kvmlite/throttle.h: tx is the write
 * direction, rx the read direction).  TX beyond the limit stays in the
 * guest's ring (kl_netdev_can_send says no until the limiter allows the
 * next frame, then peer->tx_ready); RX beyond it stays in the back-end
 * (rxq, and the back-end stops reading).  Set live (QMP
 * netdev_set_throttle): -1 with *err when the limits are invalid. */
struct kl_throttle_config;
int kl_netdev_set_throttle(struct kl_netdev *nd, const struct kl_throttle_config *cfg, char **err);
void kl_netdev_get_throttle(const struct kl_netdev *nd, struct kl_throttle_config *out);

bool kl_netdev_has_vnet_hdr(const struct kl_netdev *nd);
/* Enable/disable the 12-byte vnet header on every frame; -1 if the
 * back-end cannot carry it. */
int kl_netdev_set_vnet_hdr(struct kl_netdev *nd, bool on);
bool kl_netdev_using_vnet_hdr(const struct kl_netdev *nd);
/* Offloads the host may use in frames it sends to the NIC (vnet header
 * mode only: TUNSETOFFLOAD on tap).  No-op on other back-ends. */
int kl_netdev_set_offload(struct kl_netdev *nd, bool csum, bool tso4, bool tso6, bool ecn);

/* ---- Helpers shared by the NIC models (src/net/csum.c) ---------------- */

/* Parse a MAC "52:54:00:12:34:56"; 0 or -1. */
int kl_net_parse_mac(const char *s, uint8_t mac[6]);
/* A locally administered 52:54:00:12:34:(56+n) default MAC, n per NIC. */
void kl_net_default_mac(uint8_t mac[6]);

/* Internet checksum helpers. kl_net_csum_add() sums big-endian 16-bit
 * words into a 32-bit accumulator (odd length pads with a zero byte). */
uint32_t kl_net_csum_add(uint32_t sum, const void *buf, size_t len);
uint16_t kl_net_csum_fold(uint32_t sum); /* fold + one's complement */

/* Write the 16-bit one's-complement sum of frame[start..len) at
 * frame[start+off] (the checksum field must already hold the pseudo-header
 * sum or 0, as for virtio NEEDS_CSUM and e1000 TUCSS/TUCSO).  -1 when
 * start/off lie outside the frame. */
int kl_net_csum_insert(uint8_t *frame, size_t len, size_t start, size_t off);

/* Compute every checksum of an Ethernet frame from scratch: IPv4 header,
 * and TCP/UDP over IPv4 or IPv6 (ignores other protocols, fragments).
 * Returns 0 when something was recognised and fixed, -1 otherwise. */
int kl_net_csum_fill(uint8_t *frame, size_t len);

/* Segment a TCP/IPv4 or TCP/IPv6 super-frame (Ethernet + IP + TCP headers
 * of hdr_len bytes, then payload) into frames carrying at most mss bytes
 * of payload each: per segment the IPv4 total length, id (+1 per segment)
 * and header checksum, the IPv6 payload length, the TCP sequence number
 * (advancing by the payload sent), FIN/PSH only on the last segment, CWR
 * only on the first, and the TCP checksum are rewritten.  emit() gets
 * each segment (valid until it returns).  Returns the number of segments
 * or -1 on a malformed frame.  hdr_len 0 = derive it from the headers. */
typedef void (*kl_net_emit_fn)(void *opaque, const uint8_t *frame, size_t len);
int kl_net_tso_segment(const uint8_t *frame, size_t len, size_t hdr_len, size_t mss,
		       kl_net_emit_fn emit, void *opaque);

/* virtio_net_hdr_v1 fields (little-endian on the wire) */
#define KL_VNET_HDR_F_NEEDS_CSUM 1
#define KL_VNET_HDR_F_DATA_VALID 2
#define KL_VNET_HDR_GSO_NONE 0
#define KL_VNET_HDR_GSO_TCPV4 1
#define KL_VNET_HDR_GSO_UDP 3
#define KL_VNET_HDR_GSO_TCPV6 4
#define KL_VNET_HDR_GSO_ECN 0x80

/* Software fallback for a frame a virtio driver sent with offloads, for a
 * back-end without vnet headers: GSO (TCPv4/TCPv6) is segmented with
 * kl_net_tso_segment(gso_size), else NEEDS_CSUM is completed at
 * csum_start + csum_offset.  frame may be modified.  emit() gets each
 * resulting frame.  Returns the number of frames or -1 (malformed: drop). */
int kl_net_vnet_hdr_apply(const uint8_t hdr[KL_VNET_HDR_LEN], uint8_t *frame, size_t len,
			  kl_net_emit_fn emit, void *opaque);



#endif
