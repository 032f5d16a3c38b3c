/*  check_main: the main() of every unit suite: runs one Check suite, prints
    Check's "Checks: N, Failures: F, Errors: E" line (test/run counts it) and
    exits non-zero on any failure.
*/
#ifndef SH_CHECK_MAIN_H
#define SH_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

#define SH_CHECK_MAIN(suite_fn) \
    int main (void) \
    { \
        SRunner *runner = srunner_create (suite_fn ()); \
        srunner_run_all (runner, CK_NORMAL); \
        int failed = srunner_ntests_failed (runner); \
        srunner_free (runner); \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE; \
    }

#endif
