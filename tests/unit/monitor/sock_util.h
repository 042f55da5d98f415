/* Socket helpers shared by the monitor unit tests (test_monitor.c,
 * test_chardev.c): the test side of a QMP connection, with the main loop
 * pumped while waiting. */
#ifndef KL_TEST_SOCK_UTIL_H
#define KL_TEST_SOCK_UTIL_H

#include <glib.h>
#include <netinet/in.h>
#include <stdbool.h>

#include <check.h>

/* Run every ready main-loop source. */
void pump(void);
/* One "\r\n"-terminated line from fd (NULL: EOF or ~2 s without one). */
char *read_line(int fd, GString *acc);
/* Nothing to read on fd (after pumping). */
bool quiet(int fd);
void send_str(int fd, const char *s);
/* A TCP socket bound to 127.0.0.1 on a free port; *sa gets its address. */
int loopback_bound(struct sockaddr_in *sa);
/* Connect to a unix socket (asserts success). */
int connect_unix(const char *path);
/* The next line starts with prefix (asserts). */
void expect_line(int fd, GString *acc, const char *prefix);
/* A fresh path "qmp.sock" in a new temporary directory (g_free it). */
char *tmp_sock(void);
/* The sockets TCase of test_chardev.c: wait=on and client mode. */
TCase *chardev_modes_tcase(void);
TCase *schema_tcase(void);   /* test_schema.c */

#endif
