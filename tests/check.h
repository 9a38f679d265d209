/*
 * check.h - the assertion the small C test programs share: counts passes and failures, prints
 * each failure with its place, and the closing "N passed, N failed" line ctest's readers expect.
 */
#ifndef EARSHOT_CHECK_H
#define EARSHOT_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (cond) {                                                                                                    \
            passed++;                                                                                                  \
        } else {                                                                                                       \
            failed++;                                                                                                  \
            printf("  FAIL %s:%d: ", __FILE__, __LINE__);                                                              \
            printf(__VA_ARGS__);                                                                                       \
            printf("\n");                                                                                              \
        }                                                                                                              \
    } while (0)

#endif
