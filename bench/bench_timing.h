/*
 * bench_timing.h - the clock and the percentiles every benchmark under bench/ reports.
 *
 * One definition, so that the programs' p50 and p99 columns mean the same thing: after
 * sorting, the sample at rank round(q x (n - 1)), i.e. the median is the middle sample and p99
 * is the slowest but one of 100 steps.
 */
#ifndef EARSHOT_BENCH_TIMING_H
#define EARSHOT_BENCH_TIMING_H

#include <stdlib.h>
#include <time.h>

/* Seconds on a monotonic clock (only differences mean anything). */
static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts the n samples in place. */
static inline void bench_sort(double *samples, size_t n)
{
    qsort(samples, n, sizeof *samples, bench_cmp_double);
}

/* The q-quantile (0..1) of n sorted samples; 0 when there are none. */
static inline double bench_quantile(const double *sorted, size_t n, double q)
{
    if (n == 0)
        return 0.0;
    return sorted[(size_t)(q * (double)(n - 1) + 0.5)];
}

#endif
