/* -object type registry (beside the memory back-ends and throttle-group
 * that main.c handles itself).
 *
 * A file that implements a user-creatable object type registers it with
 * KL_OBJECT_TYPE(...) at file scope; main.c's add_object() looks the
 * qom-type up here first.  add() reads every key it supports (main.c
 * rejects unknown keys afterwards) and keeps the object in its own registry
 * (found by id by its users); free_all() (may be NULL) frees them at exit.
 */
#ifndef KVMLITE_OBJECT_H
#define KVMLITE_OBJECT_H

#include "kvmlite/opts.h"

struct kl_object_type {
	const char *name;   /* qom-type: "rng-random" ... */
	/* 0, or -1 with *err (QEMU 7.2's text, without the "-object X:" prefix) */
	int (*add)(const char *type, struct kl_opts *opts, char **err);
	void (*free_all)(void);
};

void kl_object_type_register(const struct kl_object_type *t);
const struct kl_object_type *kl_object_type_find(const char *name);
/* free_all() of every registered type (once, at exit). */
void kl_object_types_free_all(void);

#define KL_OBJECT_TYPE(var)                                            \
	static void __attribute__((constructor)) var##_register(void) \
	{                                                              \
		kl_object_type_register(&(var));                       \
	}

#endif
