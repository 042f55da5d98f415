/* Identity, capabilities and process limits (src/sandbox/privs.c).
 *
 * Two steps, both on the main thread:
 *   kl_privs_set_user() (for -run-with user=), then
 *   kl_privs_init()  before any thread exists: resolves -run-with user=
 *                    and chroot=, raises RLIMIT_NOFILE to its hard limit,
 *                    clears the ambient and inheritable sets, shrinks the
 *                    bounding set and sets no_new_privs (every thread
 *                    created later inherits all of these).
 *   kl_privs_drop()  once everything privileged is open (/dev/kvm, images,
 *                    tap, sockets, pidfile): chroot, then the uid/gid and
 *                    groups change, then the effective and permitted sets
 *                    of EVERY thread of the process shrink to what is kept;
 *                    it checks /proc for each thread before returning.
 * docs/sandbox.md ("Privileges") has the rules. */
#ifndef KVMLITE_PRIVS_H
#define KVMLITE_PRIVS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct kl_privs {
	bool change_id;          /* -run-with user= / -runas given */
	char *user;              /* as given (for messages) */
	char *user_name;         /* the passwd name; NULL for the uid:gid form */
	uid_t uid;
	gid_t gid;
	gid_t *groups;           /* supplementary groups after the change */
	int ngroups;
	char *chroot_dir;        /* -run-with chroot= / -chroot; NULL: none */
	uint64_t keep;           /* capability mask kept after set-up */
	bool had_caps;           /* the process started with capabilities */
	bool bounds_dropped;     /* the bounding set was shrunk to keep */
	int task_dir;            /* /proc/self/task, opened before chroot */
};

/* The capabilities kvmlite keeps after set-up when it does not change
 * identity (root without -run-with user=): CAP_DAC_OVERRIDE, for QMP
 * blockdev-add of images that root could open at start-up. */
uint64_t kl_privs_runtime_caps(void);

/* Parse the value of -runas / -run-with user=: a passwd name, or UID:GID
 * (QEMU's os_parse_runas_uid_gid).  Errors name the user. */
int kl_privs_set_user(struct kl_privs *p, const char *user, char **err);

/* Everything before threads exist (after kl_privs_set_user, if any);
 * chroot_dir may be NULL. */
int kl_privs_init(struct kl_privs *p, const char *chroot_dir, char **err);
int kl_privs_drop(struct kl_privs *p, char **err);
void kl_privs_free(struct kl_privs *p);

/* RLIMIT_NOFILE soft limit := hard limit (QEMU >= 9.0 does the same). */
void kl_raise_nofile_limit(void);

#endif
