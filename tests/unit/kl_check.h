/* Shared Check runner for the unit tests. */
#ifndef KL_CHECK_H
#define KL_CHECK_H

#include <check.h>
#include <stdlib.h>

static inline int kl_check_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
