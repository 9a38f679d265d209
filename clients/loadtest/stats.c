/*
 * stats.c - see stats.h. Bucket i holds values in [0.01 * 1.02^i, 0.01 * 1.02^(i+1)) ms; a
 * quantile is the geometric middle of its bucket, clamped to the exact min and max.
 */
#include "stats.h"

#include <math.h>
#include <string.h>

#define BASE_MS 0.01
#define GROWTH 1.02

void stats_reset(stats *s) { memset(s, 0, sizeof *s); }

void stats_add(stats *s, double ms)
{
    if (!(ms >= 0)) /* NaN */
        return;
    int b = ms <= BASE_MS ? 0 : (int)(log(ms / BASE_MS) / log(GROWTH));
    if (b >= STATS_BUCKETS)
        b = STATS_BUCKETS - 1;
    s->bucket[b]++;
    if (s->count == 0 || ms < s->min)
        s->min = ms;
    if (s->count == 0 || ms > s->max)
        s->max = ms;
    s->count++;
    s->sum += ms;
}

void stats_merge(stats *into, const stats *from)
{
    if (from->count == 0)
        return;
    if (into->count == 0 || from->min < into->min)
        into->min = from->min;
    if (into->count == 0 || from->max > into->max)
        into->max = from->max;
    into->count += from->count;
    into->sum += from->sum;
    for (int i = 0; i < STATS_BUCKETS; i++)
        into->bucket[i] += from->bucket[i];
}

double stats_quantile(const stats *s, double q)
{
    if (s->count == 0)
        return 0;
    unsigned long long rank = (unsigned long long)ceil(q * (double)s->count);
    if (rank < 1)
        rank = 1;
    unsigned long long seen = 0;
    for (int i = 0; i < STATS_BUCKETS; i++) {
        seen += s->bucket[i];
        if (seen >= rank) {
            double v = BASE_MS * pow(GROWTH, i + 0.5);
            return v < s->min ? s->min : v > s->max ? s->max : v;
        }
    }
    return s->max;
}

double stats_mean(const stats *s) { return s->count ? s->sum / (double)s->count : 0; }
