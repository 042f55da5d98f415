/* Options of QEMU's command line that a management layer (libvirt) always
 * passes and that change nothing in kvmlite, or only what kvmlite can honour
 * (cli_compat.c; docs/libvirt.md lists them). */
#ifndef KVMLITE_CLI_COMPAT_H
#define KVMLITE_CLI_COMPAT_H

#include "kvmlite/cli.h"

#define KL_COMPAT_FLAGFN(n) int n(struct kl_cli *c, const char *flag, const char *v, char **err)
KL_COMPAT_FLAGFN(kl_cli_no_user_config);
KL_COMPAT_FLAGFN(kl_cli_msg);
KL_COMPAT_FLAGFN(kl_cli_overcommit);
KL_COMPAT_FLAGFN(kl_cli_rtc);
KL_COMPAT_FLAGFN(kl_cli_boot);
KL_COMPAT_FLAGFN(kl_cli_audiodev);
KL_COMPAT_FLAGFN(kl_cli_add_fd);

#define KL_CLI_COMPAT_FLAGS \
	{ "no-user-config", NOARG, kl_cli_no_user_config, "-no-user-config      (no-op: kvmlite reads no configuration files)" }, \
	{ "msg", ARG, kl_cli_msg, "-msg [timestamp=on|off][,guest-name=on|off]  (no-op: messages are not timestamped)" }, \
	{ "overcommit", ARG, kl_cli_overcommit, "-overcommit mem-lock=off[,cpu-pm=off]  (the defaults; 'on' is refused)" }, \
	{ "rtc", ARG, kl_cli_rtc, "-rtc base=utc[,clock=host][,driftfix=none|slew]  (the RTC runs on host UTC)" }, \
	{ "boot", ARG, kl_cli_boot, "-boot [order=D][,menu=off][,strict=on|off]...  (no-op: kvmlite boots -kernel)" }, \
	{ "audiodev", ARG, kl_cli_audiodev, "-audiodev none,id=ID | '{\"driver\":\"none\",...}'  (kvmlite has no sound)" }, \
	{ "add-fd", ARG, kl_cli_add_fd, "-add-fd fd=N,set=S[,opaque=T]  pass fd N as a member of /dev/fdset/S" },

#endif
