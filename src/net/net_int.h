/* Internal interface between the netdev core (net.c) and the back-ends
 * (slirp.c, tap.c, socket.c).  Not for NIC models: they use net.h. */
#ifndef KVMLITE_NET_INT_H
#define KVMLITE_NET_INT_H

#include <glib.h>

#include "kvmlite/net.h"
#include "kvmlite/throttle.h"

#define KL_NET_QUEUE_MAX 1024    /* frames queued per direction */

struct kl_netdev;
struct kl_vm;
struct kl_vmstate_ops;

struct kl_netdev_ops {
	const char *type;
	/* Transmit one frame (vnet header first when using_vnet_hdr).
	 * 0 = sent, 1 = cannot now (the core keeps it queued; the back-end
	 * calls kl_netdev_tx_flush() once it can write again), -1 = dropped. */
	int (*transmit)(struct kl_netdev *nd, const struct iovec *iov, int iovcnt);
	/* The peer can receive again: resume reading (may be NULL). */
	void (*rx_resume)(struct kl_netdev *nd);
	int (*set_vnet_hdr)(struct kl_netdev *nd, bool on);            /* may be NULL */
	int (*set_offload)(struct kl_netdev *nd, bool csum, bool tso4, bool tso6, bool ecn);
	void (*cleanup)(struct kl_netdev *nd);
	/* The back-end's VM state section (kvmlite/vmstate.h; opaque = the
	 * netdev, instance = its id), or NULL when it has none. */
	const struct kl_vmstate_ops *vmstate;
};

struct kl_net_pkt {
	size_t len;
	uint8_t data[];
};

struct kl_netdev {
	char *id;
	const struct kl_netdev_ops *ops;
	void *be;                   /* back-end state */
	struct kl_net_peer peer;
	bool attached;
	bool vnet_hdr_capable;
	bool using_vnet_hdr;
	GQueue rxq;                 /* host -> NIC frames waiting for the NIC */
	GQueue txq;                 /* NIC -> host frames waiting for the back-end */
	bool bh_pending;
	bool dead;                  /* freed while a bottom half was pending */
	bool in_send;               /* inside ops->transmit */
	bool delivering;            /* inside peer.receive */
	bool rx_blocked;            /* back-end paused reading; resume on rx_ready */
	bool tx_blocked;            /* told the NIC to stop; call peer.tx_ready */
	struct kl_netdev_stats stats;
	/* throttling.*: write = TX (NIC -> host), read = RX (host -> NIC) */
	struct kl_throttle thr;
	struct kl_vm *vmstate_vm;   /* VM its section is registered in, or NULL */
};

/* Create and register a netdev (the id must be unique: NULL + *err). */
struct kl_netdev *kl_netdev_new(const char *id, const struct kl_netdev_ops *ops,
				void *be, char **err);
/* Hand a frame from the host to the NIC.  Returns true when the back-end
 * may continue producing frames, false when the peer is full (the frame
 * was queued or dropped and rx_blocked is set: stop reading until
 * ops->rx_resume). */
bool kl_netdev_deliver(struct kl_netdev *nd, const void *buf, size_t len);
/* Held by the RX limiter: frames are waiting in rxq for the throttle timer
 * (back-ends that cannot stop reading on their own, like slirp, stop
 * polling while this is true). */
bool kl_netdev_rx_throttled(const struct kl_netdev *nd);
/* Whether the back-end should read more frames for the peer now; when not,
 * rx_blocked is set and ops->rx_resume will be called later. */
bool kl_netdev_can_deliver(struct kl_netdev *nd);
/* The back-end can write again: transmit queued frames. */
void kl_netdev_tx_flush(struct kl_netdev *nd);

/* Back-end constructors (options already parsed by kl_opts). */
struct kl_netdev *kl_net_user_new(const char *id, struct kl_opts *o, char **hostfwd,
				  unsigned nhostfwd, char **err);
struct kl_netdev *kl_net_tap_new(const char *id, struct kl_opts *o, char **err);
struct kl_netdev *kl_net_socket_new(const char *id, struct kl_opts *o, char **err);

/* Socket back-end on an already connected stream fd (unit tests, and
 * internally after accept/connect). */
struct kl_netdev *kl_net_socket_new_fd(const char *id, int fd, char **err);

/* Parse "HOST:PORT" ("" host or ":PORT" = any/loopback per def_any). */
int kl_net_parse_hostport(const char *s, bool def_any, struct sockaddr_in *out, char **err);

#endif
