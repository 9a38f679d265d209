/*
 * batch_limit.h - how many streams the scheduler may put into one engine step, per latency
 * mode, so that a step stays well under that mode's chunk duration.
 *
 * A live stream brings one chunk every chunk duration. If a step of B streams takes longer than
 * a chunk, the streams it serves fall behind; if it takes nearly a chunk, the other latency
 * modes and the file jobs get no turn. So every mode has a time budget (a fraction of its chunk
 * duration, --step-budget) and a batch limit: the largest B whose expected step time fits the
 * budget, never below 1 and never above --max-batch.
 *
 * The expected step time comes from what steps have cost: per mode, steps are sorted into
 * buckets by batch size (1, 2, 3-4, 5-8, ... powers of two) and each bucket keeps a moving
 * average of its batch size and step time. That gives a few (B, seconds) points of the mode's
 * cost curve; the limit is where the curve crosses the budget, interpolated linearly between
 * the last point under it and the first point over it. Beyond the largest point measured, the
 * cost is assumed to grow in proportion to B, which overestimates it (a step has a fixed part),
 * so the limit grows geometrically as larger batches prove fast, and a server whose steps are
 * fast keeps the whole --max-batch. With nothing measured yet the limit is --max-batch.
 *
 * A point that has not been refreshed for BL_FORGET steps of its mode is forgotten: a slow
 * step during a transient stall must not cap the batch for good, since batches that large
 * would never be tried again to correct it.
 *
 * Pure logic, no clock and no threads (the caller passes the times it measured): it is unit
 * tested on its own (tests/test_batch_limit.c).
 */
#ifndef EARSHOT_BATCH_LIMIT_H
#define EARSHOT_BATCH_LIMIT_H

#define BL_MAX_MODES 16
#define BL_BUCKETS 24 /* batch sizes up to 2^23 */
#define BL_FORGET 256 /* steps of a mode after which an unrefreshed point is dropped */
#define BL_ALPHA 0.25 /* weight of a new step in a bucket's moving averages */

typedef struct {
    double b, t;    /* moving averages of batch size and step seconds; n == 0: empty */
    long n;         /* steps seen */
    long last_step; /* the mode's step count when last refreshed */
} bl_point;

typedef struct {
    int n_modes, max_batch;
    double target[BL_MAX_MODES]; /* budget x chunk duration, seconds */
    long steps[BL_MAX_MODES];
    int limit[BL_MAX_MODES];
    bl_point pt[BL_MAX_MODES][BL_BUCKETS];
} batch_limit;

/* n_modes latency modes (at most BL_MAX_MODES; more are clamped) with their chunk durations in
   seconds; budget: the fraction of a chunk a step may take (e.g. 0.5); max_batch >= 1. */
void batch_limit_init(batch_limit *bl, int n_modes, const double *chunk_s, double budget, int max_batch);

/* One step of `batch` streams of `mode` took step_s seconds. Nonsense (unknown mode, batch < 1,
   a negative or non-finite time) is ignored. */
void batch_limit_observe(batch_limit *bl, int mode, int batch, double step_s);

/* The current limit of a mode: 1 <= limit <= max_batch (max_batch for an unknown mode). */
int batch_limit_get(const batch_limit *bl, int mode);

#endif
