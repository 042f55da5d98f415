/* QMP monitor (src/monitor/): QEMU-compatible JSON control protocol, a
 * front-end of a chardev (include/kvmlite/chardev.h), driven by the main
 * loop.  One session per connection of its chardev (one peer at a time,
 * as QEMU).
 *
 * Command-line mapping (main.c):
 *   -qmp unix:PATH,server=on,wait=off      kl_monitor_add_qmp(vm, spec, &err)
 *   -qmp unix:PATH,server,nowait           (old spelling, same)
 *   -qmp unix:PATH,server=on               wait=on (the default): blocks until
 *                                          the first client connects
 *   -qmp unix:PATH                         client mode (server=off): connects
 *                                          to PATH now; kvmlite sends the greeting
 *   -qmp tcp:HOST:PORT,server=on,wait=off  HOST must be a loopback address
 *                                          (when connecting too)
 *   -qmp stdio                             (any legacy chardev spelling)
 *   -mon chardev=ID,mode=control[,id=]     kl_monitor_add_mon(vm, spec, &err)
 *                                          on any -chardev (kl_chardev_add)
 * Call every kl_chardev_add() before any kl_monitor_add_mon() (QEMU creates
 * chardevs first too).  Everything must be called on the main thread with the
 * BQL held, after kl_loop_init() and after vm->vcpus/ncpus/name/uuid are set
 * (the functions only read vm at command time, so kl_vm_create may come
 * later, but before kl_loop_run()), and before the vCPUs start: wait=on
 * blocks the caller in poll()/accept4().  A connection made by
 * kl_chardev_add() is held until its -mon attaches (closed at cleanup if
 * none does).  All return 0, or -1 with a one-line *err (g_free it).
 *
 * At exit (after kl_loop_run() returns) call kl_monitor_cleanup() and then
 * kl_chardev_cleanup(): the latter flushes pending replies/events (e.g. the
 * reply to "quit" and the SHUTDOWN event) with a short timeout, closes
 * every connection and unlinks unix socket paths.
 */
#ifndef KVMLITE_MONITOR_H
#define KVMLITE_MONITOR_H

#include <stdbool.h>

struct kl_vm;

int kl_monitor_add_qmp(struct kl_vm *vm, const char *spec, char **err);
int kl_monitor_add_mon(struct kl_vm *vm, const char *spec, char **err);

void kl_monitor_cleanup(void);

/* Event VSERPORT_CHANGE {id, open}: the guest opened/closed a virtio
 * serial port with that -device id (src/virtio/serial.c). */
void kl_monitor_vserport_change(const char *id, bool open);

#endif
