/*
 * stats.h - a latency distribution in constant memory: count, sum, min, max exactly, and
 * percentiles from log-spaced buckets 2% wide (0.01 ms to ~10^6 ms), so a run of millions of
 * messages costs a few kilobytes and a percentile a walk over ~930 counters.
 */
#ifndef EARSHOT_LT_STATS_H
#define EARSHOT_LT_STATS_H

#define STATS_BUCKETS 940

typedef struct {
    unsigned long long count;
    double sum, min, max; /* milliseconds */
    unsigned int bucket[STATS_BUCKETS];
} stats;

void stats_reset(stats *s);
void stats_add(stats *s, double ms);
void stats_merge(stats *into, const stats *from);
/* The q-quantile (0..1) in ms, within 2%; 0 when empty. */
double stats_quantile(const stats *s, double q);
double stats_mean(const stats *s);

#endif
