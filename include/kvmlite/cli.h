/* QEMU-compatible command line (src/cli/cli.c). */
#ifndef KVMLITE_CLI_H
#define KVMLITE_CLI_H

#include <glib.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>

struct kl_cli {
	uint64_t ram_size;       /* bytes; default 128 MiB */
	unsigned smp, sockets, cores, threads;
	unsigned maxcpus;        /* -smp maxcpus= (= smp when not given) */
	char *kernel, *initrd, *append;
	char *cpu;               /* -cpu; NULL = default model */
	int assist;              /* -accel kvm,emulation-assist=on|off: enum kl_assist_mode */
	bool assist_log;         /* -d assist */
	bool log_cpu_reset;      /* -d cpu_reset */
	char *machine;           /* -M/-machine type */
	char *mem_backend;       /* -machine memory-backend=ID */
	int machine_pcie;        /* -M microvm,pcie=on|off: 1/0, -1 unset (off) */
	int machine_auto_cmdline; /* -M microvm,auto-kernel-cmdline=on|off: -1 unset (on) */
	int machine_acpi;        /* -M ...,acpi=on|off: 1/0, -1 unset */
	bool mem_merge;          /* -machine mem-merge=on|off (default on: KSM) */
	bool mem_prealloc;       /* -mem-prealloc */
	GPtrArray *drives, *blockdevs, *devices, *netdevs, *chardevs, *serials, *qmps, *mons, *objects;
	GPtrArray *numas;        /* -numa (kvmlite/numa.h) */
	char *name;
	char *uuid;
	char *pidfile;
	char *run_user;          /* -run-with user= / -runas */
	char *run_chroot;        /* -run-with chroot= / -chroot */
	const char *run_user_flag, *run_chroot_flag; /* "-runas " or "-run-with user=" */
	char *sandbox;           /* -sandbox: parsed by kl_sandbox_parse (kvmlite/seccomp.h) */
	char *incoming;          /* -incoming URI|defer (kvmlite/migration.h) */
	char *loadvm;            /* -loadvm TAG (kl_snapshot_loadvm) */
	bool start_paused;       /* -S */
	bool nographic, nodefaults, daemonize, no_reboot, no_shutdown;
	bool show_version, show_help;
};

/* Parse argv.  0 on success; -1 with *err = one line naming the flag/value.
 * Validation of values that need no device knowledge happens here (-m, -smp,
 * -M, -cpu syntax, -uuid, -display, -accel). */
int kl_cli_parse(int argc, char **argv, struct kl_cli *cli, char **err);
void kl_cli_free(struct kl_cli *cli);
void kl_cli_print_help(FILE *f);
int kl_parse_uuid(const char *s, uint8_t out[16]);

#endif
