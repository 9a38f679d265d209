/*
 * test_batch_limit.c - the scheduler's adaptive batch limit (server/batch_limit.c) against
 * simulated step costs: fast steps keep --max-batch, a linear cost curve settles just under the
 * budget from above and from below, a mode too slow for one stream gets 1, modes are
 * independent, a transient stall is forgotten, and nonsense observations change nothing.
 */
#include "batch_limit.h"
#include "check.h"

#include <math.h>

/* A step's simulated cost: fixed + per_stream x B seconds. */
static double cost(double fixed, double per_stream, int b) { return fixed + per_stream * b; }

/* Runs `steps` steps of one mode with `ready` streams waiting each time, as the scheduler does
   (a batch is min(ready, limit)); returns the last batch size. */
static int run(batch_limit *bl, int mode, int ready, int steps, double fixed, double per_stream)
{
    int b = 0;
    for (int i = 0; i < steps; i++) {
        int lim = batch_limit_get(bl, mode);
        b = ready < lim ? ready : lim;
        batch_limit_observe(bl, mode, b, cost(fixed, per_stream, b));
    }
    return b;
}

int main(void)
{
    batch_limit bl;
    double chunks[4] = {1.12, 0.56, 0.16, 0.08};

    /* nothing measured: the configured maximum */
    batch_limit_init(&bl, 4, chunks, 0.5, 32);
    for (int m = 0; m < 4; m++)
        CHECK(batch_limit_get(&bl, m) == 32, "mode %d starts at --max-batch, got %d", m, batch_limit_get(&bl, m));
    CHECK(batch_limit_get(&bl, 7) == 32 && batch_limit_get(&bl, -1) == 32, "unknown modes answer --max-batch");

    /* fast steps (the CPU with a small model): the limit stays at --max-batch */
    for (int b = 1; b <= 32; b++)
        batch_limit_observe(&bl, 3, b, 0.001 + 0.0001 * b);
    CHECK(batch_limit_get(&bl, 3) == 32, "fast steps keep --max-batch, got %d", batch_limit_get(&bl, 3));

    /* a linear cost, 5 ms + 1 ms per stream, 160 ms chunks, budget 0.5: at most 75 streams fit */
    batch_limit_init(&bl, 4, chunks, 0.5, 1024);
    batch_limit_observe(&bl, 2, 1024, cost(0.005, 0.001, 1024)); /* one huge, slow step */
    int lim = batch_limit_get(&bl, 2);
    CHECK(lim >= 1 && lim < 100, "after a 1 s step of 1024 the limit drops well below it, got %d", lim);
    run(&bl, 2, 5000, 40, 0.005, 0.001);
    lim = batch_limit_get(&bl, 2);
    CHECK(lim >= 60 && lim <= 75, "from above: settles under the budget (60..75), got %d", lim);
    CHECK(cost(0.005, 0.001, lim) <= 0.08, "the expected step at the limit fits 80 ms: %.4f", cost(0.005, 0.001, lim));

    /* the same curve approached from below: one stream measured, then many ready */
    batch_limit_init(&bl, 4, chunks, 0.5, 1024);
    batch_limit_observe(&bl, 2, 1, cost(0.005, 0.001, 1));
    lim = batch_limit_get(&bl, 2);
    CHECK(lim > 1 && lim <= 75, "one fast stream allows more, pessimistically (2..75), got %d", lim);
    run(&bl, 2, 5000, 40, 0.005, 0.001);
    lim = batch_limit_get(&bl, 2);
    CHECK(lim >= 60 && lim <= 75, "from below: grows to just under the budget (60..75), got %d", lim);

    /* a GPU-like curve (2 ms fixed, 5 us per stream): reaches --max-batch in a few steps */
    batch_limit_init(&bl, 4, chunks, 0.5, 1024);
    int steps = 0;
    batch_limit_observe(&bl, 3, 1, cost(0.002, 0.000005, 1));
    while (batch_limit_get(&bl, 3) < 1024 && steps < 20) {
        run(&bl, 3, 100000, 1, 0.002, 0.000005);
        steps++;
    }
    CHECK(batch_limit_get(&bl, 3) == 1024, "cheap large batches: --max-batch reached (after %d steps)", steps);
    CHECK(steps <= 5, "... geometrically, in at most 5 steps, took %d", steps);

    /* too slow for even one stream: 1, never 0 */
    batch_limit_init(&bl, 4, chunks, 0.5, 64);
    run(&bl, 3, 10, 5, 1.0, 0.01);
    CHECK(batch_limit_get(&bl, 3) == 1, "a step slower than the budget at B=1 gives 1, got %d",
          batch_limit_get(&bl, 3));

    /* modes are independent: a slow 80 ms mode does not limit the 1120 ms mode */
    batch_limit_init(&bl, 4, chunks, 0.5, 256);
    run(&bl, 3, 1000, 30, 0.005, 0.002);  /* 80 ms mode: (40 - 5) / 2 = 17 streams */
    run(&bl, 0, 1000, 30, 0.005, 0.002);  /* 1120 ms mode: (560 - 5) / 2 = 277 > 256 */
    CHECK(batch_limit_get(&bl, 3) >= 12 && batch_limit_get(&bl, 3) <= 17, "80 ms mode 12..17, got %d",
          batch_limit_get(&bl, 3));
    CHECK(batch_limit_get(&bl, 0) == 256, "1120 ms mode keeps --max-batch, got %d", batch_limit_get(&bl, 0));

    /* --step-budget scales the limit */
    batch_limit_init(&bl, 4, chunks, 0.25, 1024);
    run(&bl, 2, 5000, 40, 0.005, 0.001);
    lim = batch_limit_get(&bl, 2);
    CHECK(lim >= 28 && lim <= 35, "budget 0.25 of 160 ms: 28..35 streams, got %d", lim);

    /* a transient stall: one step of 64 took 2 s; later steps of 8 are fast. The stale point
       caps the limit until it is forgotten, then the limit comes back to --max-batch. */
    batch_limit_init(&bl, 4, chunks, 0.5, 64);
    batch_limit_observe(&bl, 2, 64, 2.0);
    CHECK(batch_limit_get(&bl, 2) < 64, "the stall lowers the limit, got %d", batch_limit_get(&bl, 2));
    for (int i = 0; i < BL_FORGET + 1; i++)
        batch_limit_observe(&bl, 2, 2, 0.001);
    CHECK(batch_limit_get(&bl, 2) == 64, "after %d steps without it the stall is forgotten, got %d", BL_FORGET,
          batch_limit_get(&bl, 2));

    /* nonsense is ignored */
    batch_limit_init(&bl, 2, chunks, 0.5, 16);
    batch_limit_observe(&bl, 0, 0, 5.0);
    batch_limit_observe(&bl, 0, -3, 5.0);
    batch_limit_observe(&bl, 0, 4, -1.0);
    batch_limit_observe(&bl, 0, 4, NAN);
    batch_limit_observe(&bl, 0, 4, INFINITY);
    batch_limit_observe(&bl, 5, 4, 5.0);
    batch_limit_observe(&bl, -1, 4, 5.0);
    CHECK(batch_limit_get(&bl, 0) == 16 && bl.steps[0] == 0, "bad batch, time or mode change nothing");

    /* a zero-time step (a coarse clock) does not divide by zero */
    batch_limit_observe(&bl, 1, 3, 0.0);
    CHECK(batch_limit_get(&bl, 1) == 16, "a 0 s step keeps --max-batch, got %d", batch_limit_get(&bl, 1));

    /* more modes than the table holds are clamped, not overrun */
    double many[BL_MAX_MODES + 4];
    for (int i = 0; i < BL_MAX_MODES + 4; i++)
        many[i] = 0.1;
    batch_limit_init(&bl, BL_MAX_MODES + 4, many, 0.5, 8);
    CHECK(bl.n_modes == BL_MAX_MODES, "modes clamped to %d, got %d", BL_MAX_MODES, bl.n_modes);
    batch_limit_observe(&bl, BL_MAX_MODES + 1, 4, 9.0);
    CHECK(batch_limit_get(&bl, BL_MAX_MODES + 1) == 8, "a mode beyond the table answers --max-batch");

    /* a huge batch lands in the last bucket without overflow */
    batch_limit_init(&bl, 1, chunks, 0.5, 1 << 20);
    batch_limit_observe(&bl, 0, 1 << 30, 1e6);
    lim = batch_limit_get(&bl, 0);
    CHECK(lim >= 1 && lim < (1 << 20), "a 2^30 batch over budget lowers the limit, got %d", lim);

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
