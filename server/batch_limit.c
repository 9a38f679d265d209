/*
 * batch_limit.c - the adaptive batch limit per latency mode (see batch_limit.h for the model).
 */
#include "batch_limit.h"

#include <math.h>
#include <string.h>

/* 1 -> 0, 2 -> 1, 3..4 -> 2, 5..8 -> 3, ... */
static int bucket_of(int batch)
{
    int k = 0;
    while (k < BL_BUCKETS - 1 && (1L << k) < batch)
        k++;
    return k;
}

static int clamp_limit(const batch_limit *bl, double b)
{
    if (!(b >= 1)) /* also NaN */
        return 1;
    if (b >= bl->max_batch)
        return bl->max_batch;
    return (int)b;
}

/* Where the mode's measured cost curve crosses its budget. */
static int compute_limit(const batch_limit *bl, int mode)
{
    double target = bl->target[mode];
    const bl_point *prev = NULL;
    for (int k = 0; k < BL_BUCKETS; k++) {
        const bl_point *p = &bl->pt[mode][k];
        if (p->n == 0)
            continue;
        if (p->t > target) {
            if (!prev) /* even the smallest batch measured is over: scale it down */
                return clamp_limit(bl, p->b * target / p->t);
            /* prev->t <= target < p->t, so the slope is positive */
            return clamp_limit(bl, prev->b + (target - prev->t) * (p->b - prev->b) / (p->t - prev->t));
        }
        prev = p;
    }
    if (!prev)
        return bl->max_batch; /* nothing measured yet */
    if (prev->t <= 0)
        return bl->max_batch;
    return clamp_limit(bl, prev->b * target / prev->t);
}

void batch_limit_init(batch_limit *bl, int n_modes, const double *chunk_s, double budget, int max_batch)
{
    memset(bl, 0, sizeof *bl);
    if (n_modes > BL_MAX_MODES)
        n_modes = BL_MAX_MODES;
    bl->n_modes = n_modes < 0 ? 0 : n_modes;
    bl->max_batch = max_batch < 1 ? 1 : max_batch;
    for (int m = 0; m < bl->n_modes; m++) {
        bl->target[m] = budget * chunk_s[m];
        bl->limit[m] = bl->max_batch;
    }
}

void batch_limit_observe(batch_limit *bl, int mode, int batch, double step_s)
{
    if (mode < 0 || mode >= bl->n_modes || batch < 1 || !(step_s >= 0) || isinf(step_s))
        return;
    long now = ++bl->steps[mode];
    bl_point *p = &bl->pt[mode][bucket_of(batch)];
    if (p->n == 0) {
        p->b = batch;
        p->t = step_s;
    } else {
        p->b += BL_ALPHA * (batch - p->b);
        p->t += BL_ALPHA * (step_s - p->t);
    }
    p->n++;
    p->last_step = now;
    for (int k = 0; k < BL_BUCKETS; k++) {
        bl_point *q = &bl->pt[mode][k];
        if (q->n && now - q->last_step > BL_FORGET)
            memset(q, 0, sizeof *q);
    }
    bl->limit[mode] = compute_limit(bl, mode);
}

int batch_limit_get(const batch_limit *bl, int mode)
{
    if (mode < 0 || mode >= bl->n_modes)
        return bl->max_batch;
    return bl->limit[mode];
}
