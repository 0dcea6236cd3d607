/* A minimal test harness for the C tests of the tdmr C ABI: counts checks, prints each
 * failure with its location, and ends with "N passed, N failed". */
#ifndef TDMR_CHECK_H
#define TDMR_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tdmr.h"

static unsigned long checks_passed, checks_failed;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (cond) {                                                          \
            checks_passed++;                                                 \
        } else {                                                             \
            checks_failed++;                                                 \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

/* `call` returns `want`; on a mismatch print both names and the detailed message of `e`. */
#define CHECK_CODE(call, want, e)                                            \
    do {                                                                     \
        tdmr_code got_ = (call);                                             \
        CHECK(got_ == (want), "%s returned %s (%s), wanted %s", #call,       \
              tdmr_error_name(got_), (e)->message, tdmr_error_name(want));   \
        CHECK((e)->code == got_, "err->code %d, returned %d", (e)->code,     \
              (int)got_);                                                    \
    } while (0)

static int checks_finish(void)
{
    printf("%lu passed, %lu failed\n", checks_passed, checks_failed);
    return checks_failed == 0 && checks_passed > 0 ? 0 : 1;
}

#endif
