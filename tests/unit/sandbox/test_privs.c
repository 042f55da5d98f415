/* src/sandbox/privs.c: the user spec (-run-with user= / -runas) and the
 * -run-with / -runas / -chroot command line forms. */
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "../kl_check.h"
#include "kvmlite/cli.h"
#include "kvmlite/privs.h"

START_TEST(user_numeric)
{
	struct kl_privs p = { .task_dir = -1 };
	char *err = NULL;
	ck_assert_int_eq(kl_privs_set_user(&p, "1234:5678", &err), 0);
	ck_assert(p.change_id);
	ck_assert_uint_eq(p.uid, 1234);
	ck_assert_uint_eq(p.gid, 5678);
	ck_assert_ptr_null(p.user_name);
	ck_assert_int_eq(p.ngroups, 1);    /* as QEMU: setgroups(1, &gid) */
	ck_assert_uint_eq(p.groups[0], 5678);
	ck_assert_int_eq(kl_privs_set_user(&p, "0x10:020", &err), 0); /* strtoul base 0 */
	ck_assert_uint_eq(p.uid, 16);
	ck_assert_uint_eq(p.gid, 16);
	kl_privs_free(&p);
}
END_TEST

START_TEST(user_bad)
{
	static const char *const bad[] = { "kl-no-such-user", "12", "12:", ":12", "12:x", "-1:5",
					   "5:-1", "4294967295:1", "1:4294967295", "1:2:3", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kl_privs p = { .task_dir = -1 };
		char *err = NULL;
		ck_assert_msg(kl_privs_set_user(&p, bad[i], &err) < 0, "accepted '%s'", bad[i]);
		ck_assert_ptr_nonnull(err);
		ck_assert_msg(strstr(err, "does not exist") && strstr(err, bad[i]), "%s", err);
		ck_assert(!p.change_id);
		g_free(err);
		kl_privs_free(&p);
	}
}
END_TEST

START_TEST(user_by_name)
{
	struct passwd *pw = getpwuid(0);
	ck_assert_ptr_nonnull(pw);
	char *name = g_strdup(pw->pw_name);
	struct kl_privs p = { .task_dir = -1 };
	char *err = NULL;
	ck_assert_int_eq(kl_privs_set_user(&p, name, &err), 0);
	ck_assert_str_eq(p.user_name, name);
	ck_assert_uint_eq(p.uid, 0);
	ck_assert_int_ge(p.ngroups, 1);
	bool has_primary = false;
	for (int i = 0; i < p.ngroups; i++)
		has_primary |= p.groups[i] == p.gid;
	ck_assert(has_primary); /* getgrouplist includes the primary group */
	kl_privs_free(&p);
	g_free(name);
}
END_TEST

static int parse(const char *a, const char *b, struct kl_cli *c, char **err)
{
	char *argv[] = { "kvmlite", (char *)a, (char *)b, NULL };
	return kl_cli_parse(b ? 3 : 2, argv, c, err);
}

START_TEST(cli_forms)
{
	struct kl_cli c;
	char *err = NULL;
	ck_assert_int_eq(parse("-run-with", "user=nobody,chroot=/var/empty", &c, &err), 0);
	ck_assert_str_eq(c.run_user, "nobody");
	ck_assert_str_eq(c.run_chroot, "/var/empty");
	ck_assert_str_eq(c.run_user_flag, "-run-with user=");
	kl_cli_free(&c);
	ck_assert_int_eq(parse("-run-with", "async-teardown=off", &c, &err), 0);
	ck_assert_ptr_null(c.run_user);
	kl_cli_free(&c);
	ck_assert_int_eq(parse("-runas", "1:2", &c, &err), 0);
	ck_assert_str_eq(c.run_user, "1:2");
	ck_assert_str_eq(c.run_user_flag, "-runas ");
	kl_cli_free(&c);
	ck_assert_int_eq(parse("-chroot", "/x", &c, &err), 0);
	ck_assert_str_eq(c.run_chroot, "/x");
	kl_cli_free(&c);
	static const char *const bad[][2] = {
		{ "user=a,frob=1", "frob" }, { "async-teardown=on", "async-teardown=on" },
		{ "async-teardown=maybe", "async-teardown" }, { "user=", "must not be empty" },
		{ "chroot=", "must not be empty" } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		ck_assert_int_lt(parse("-run-with", bad[i][0], &c, &err), 0);
		ck_assert_msg(err && strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
		g_free(err);
		kl_cli_free(&c);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("privs");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, user_numeric);
	tcase_add_test(tc, user_bad);
	tcase_add_test(tc, user_by_name);
	tcase_add_test(tc, cli_forms);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
