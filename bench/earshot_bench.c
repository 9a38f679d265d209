/*
 * earshot-bench - how many live streams one machine sustains, cache-aware against buffered.
 *
 *   earshot-bench [--model PATH] [--layers 17] [--d-model 512] [--heads 8] [--threads N]
 *                 [--batch 1,4,16] [--seconds 3] [--window-s 4] [--modes all|160,80] [--json OUT]
 *
 * With a --model that does not exist yet, it writes the random model there and keeps it.
 * Without --model it writes a random-weights model of the given size (default: the size of
 * NVIDIA's 114M streaming FastConformer, 17 x 512) and measures, on the same weights:
 *   cache-aware: one batched es_encoder_step over B streams, each bringing one steady-state
 *                chunk (pre-encode cache + chunk columns) and its caches, as the server runs it;
 *   buffered:    the way buffered streaming works, every chunk re-encodes a sliding window of
 *                the last --window-s seconds with full attention context (B windows per step).
 * For each latency mode and batch size it prints step time p50/p90 and the number of real-time
 * streams the step rate sustains (B x chunk duration / step time), and the ratio of the two.
 * The encoder dominates a stream's cost; features and greedy decoding are not timed here.
 */
#include "encoder.h"
#include "model.h"
#include "ops.h"
#include "random_model.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double p50, p90;
    int steps;
} timing;

/* Repeats step() for about `seconds` (at least 3 times) after one warm-up call. */
static timing time_steps(int (*step)(void *), void *ctx, double seconds)
{
    timing t = {0};
    if (step(ctx) != 0)
        return t;
    double *samples = malloc(sizeof(double) * 10000);
    double start = now();
    int n = 0;
    while (n < 10000 && (n < 3 || now() - start < seconds)) {
        double t0 = now();
        if (step(ctx) != 0)
            break;
        samples[n++] = now() - t0;
    }
    qsort(samples, (size_t)n, sizeof(double), cmp_double);
    if (n > 0) {
        t.p50 = samples[n / 2];
        t.p90 = samples[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1];
    }
    t.steps = n;
    free(samples);
    return t;
}

typedef struct {
    es_encoder *enc;
    es_encoder_input *in;
    es_encoder_output *out;
    int B;
} step_ctx;

static int run_step(void *p)
{
    step_ctx *c = p;
    char err[256];
    if (es_encoder_step(c->enc, c->in, c->B, c->out, err, sizeof err) != 0) {
        fprintf(stderr, "earshot-bench: step failed: %s\n", err);
        return -1;
    }
    return 0;
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && n < max; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end || v < 1 || v > 100000) {
            free(copy);
            return -1;
        }
        out[n++] = (int)v;
    }
    free(copy);
    return n;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: earshot-bench [--model PATH] [--layers N] [--d-model N] [--heads N] [--threads N]\n"
               "                     [--batch 1,4,16] [--seconds S] [--window-s S] [--modes all|160,80]\n"
               "                     [--no-buffered] [--json OUT]\n"
               "Measures real-time streams per machine: cache-aware steps against a buffered baseline.\n");
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *json_path = NULL;
    es_random_model_params rp = {.n_layers = 17, .d_model = 512, .n_heads = 8, .sub_channels = 256, .vocab = 1024};
    int threads = 0, batches[16] = {1, 4, 16}, n_batches = 3, modes[8], n_modes = 0, buffered = 1;
    double seconds = 3, window_s = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-buffered")) {
            buffered = 0;
        } else if (!v) {
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "--model")) {
            model_path = v, i++;
        } else if (!strcmp(a, "--json")) {
            json_path = v, i++;
        } else if (!strcmp(a, "--layers")) {
            rp.n_layers = atoi(v), i++;
        } else if (!strcmp(a, "--d-model")) {
            rp.d_model = atoi(v), rp.sub_channels = rp.d_model / 2, i++;
        } else if (!strcmp(a, "--heads")) {
            rp.n_heads = atoi(v), i++;
        } else if (!strcmp(a, "--threads")) {
            threads = atoi(v), i++;
        } else if (!strcmp(a, "--seconds")) {
            seconds = atof(v), i++;
        } else if (!strcmp(a, "--window-s")) {
            window_s = atof(v), i++;
        } else if (!strcmp(a, "--batch")) {
            if ((n_batches = parse_list(v, batches, 16)) < 1) {
                fprintf(stderr, "earshot-bench: bad --batch list '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--modes")) {
            if (strcmp(v, "all") != 0 && (n_modes = parse_list(v, modes, 8)) < 1) {
                fprintf(stderr, "earshot-bench: bad --modes list '%s'\n", v);
                return 2;
            }
            i++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (rp.n_layers < 1 || rp.d_model < 8 || rp.n_heads < 1 || rp.d_model % rp.n_heads || seconds <= 0 ||
        window_s <= 0) {
        fprintf(stderr, "earshot-bench: invalid model size or timing options\n");
        return 2;
    }
    char err[512], generated[256];
    if (model_path && access(model_path, F_OK) != 0) {
        /* a --model that does not exist yet is written there and kept, for repeated runs */
        fprintf(stderr, "writing a random %d x %d model to %s ...\n", rp.n_layers, rp.d_model, model_path);
        if (es_write_random_model(model_path, &rp, err, sizeof err) != 0) {
            fprintf(stderr, "earshot-bench: %s\n", err);
            return 1;
        }
    }
    if (!model_path) {
        snprintf(generated, sizeof generated, "/tmp/earshot-bench-%dx%d-%d.safetensors", rp.n_layers, rp.d_model,
                 (int)getpid());
        fprintf(stderr, "writing a random %d x %d model to %s ...\n", rp.n_layers, rp.d_model, generated);
        if (es_write_random_model(generated, &rp, err, sizeof err) != 0) {
            fprintf(stderr, "earshot-bench: %s\n", err);
            return 1;
        }
        model_path = generated;
    }
    es_model *m = es_model_load(model_path, err, sizeof err);
    if (!model_path || !m) {
        fprintf(stderr, "earshot-bench: %s\n", err);
        return 1;
    }
    if (threads <= 0)
        threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    es_set_compute_threads(threads);

    int max_B = 0;
    for (int i = 0; i < n_batches; i++)
        if (batches[i] > max_B)
            max_B = batches[i];
    size_t regions[ES_ENCODER_REGIONS];
    es_encoder_cache_regions(m, regions);
    es_slot_pool *pool = es_slot_pool_create(max_B, regions, ES_ENCODER_REGIONS);
    es_encoder *enc = es_encoder_create(m, pool, 0);
    es_encoder_input *in = calloc((size_t)max_B, sizeof *in);
    es_encoder_output *out = calloc((size_t)max_B, sizeof *out);
    int window_cols = (int)(window_s * 100);
    int widest = window_cols + m->streaming[0].chunk_size[1] + m->streaming[0].pre_encode_cache_size + 64;
    float *features = malloc(sizeof(float) * (size_t)widest * m->n_mels);
    for (size_t i = 0; i < (size_t)widest * m->n_mels; i++)
        features[i] = (float)((i * 2654435761u) % 1000) / 100.0f - 12.0f; /* log-mel-like range */
    for (int b = 0; b < max_B; b++)
        es_slot_acquire(pool);
    if (!pool || !enc || !in || !out || !features) {
        fprintf(stderr, "earshot-bench: out of memory\n");
        return 1;
    }

    FILE *json = json_path ? fopen(json_path, "w") : NULL;
    if (json)
        fprintf(json, "{\"model\": \"%d x %d\", \"threads\": %d, \"results\": [", m->n_layers, m->d_model, threads);
    printf("Earshot encoder benchmark: %d layers x d_model %d, %d threads, window %.1f s for buffered, "
           "state %.2f MB per stream\n",
           m->n_layers, m->d_model, threads, window_s, es_slot_pool_bytes_per_slot(pool) / 1048576.0);
    printf("%-8s %5s | %10s %10s %12s | %10s %12s | %7s\n", "mode", "B", "cache p50", "cache p90", "RT streams",
           "buffer p50", "RT streams", "ratio");
    int first_row = 1;
    for (int la = 0; la < m->n_lookaheads; la++) {
        const es_streaming_cfg *s = &m->streaming[la];
        int wanted = n_modes == 0;
        for (int i = 0; i < n_modes; i++)
            wanted |= modes[i] == s->chunk_ms;
        if (!wanted)
            continue;
        double chunk_s = s->chunk_ms / 1000.0;
        for (int bi = 0; bi < n_batches; bi++) {
            int B = batches[bi];
            /* steady state: a later chunk, caches full (as after a few seconds of audio) */
            for (int b = 0; b < B; b++) {
                *es_encoder_channel_len(enc, b) = s->last_channel_cache_size;
                in[b] = (es_encoder_input){.features = features + (size_t)b % 7 * m->n_mels,
                                           .width = s->pre_encode_cache_size + s->chunk_size[1],
                                           .length = s->pre_encode_cache_size + s->chunk_size[1],
                                           .lookahead = la, .drop_extra = s->drop_extra_pre_encoded, .slot = b};
            }
            step_ctx ctx = {enc, in, out, B};
            timing cache = time_steps(run_step, &ctx, seconds);
            double cache_streams = cache.p50 > 0 ? B * chunk_s / cache.p50 : 0;
            timing buf = {0};
            double buf_streams = 0;
            if (buffered) {
                for (int b = 0; b < B; b++)
                    in[b] = (es_encoder_input){.features = features + (size_t)b % 7 * m->n_mels, .width = window_cols,
                                               .length = window_cols, .lookahead = -1, .slot = -1};
                buf = time_steps(run_step, &ctx, seconds);
                buf_streams = buf.p50 > 0 ? B * chunk_s / buf.p50 : 0;
            }
            printf("%5d ms %5d | %8.2f ms %8.2f ms %12.1f | %7.2f ms %12.1f | %6.1fx\n", s->chunk_ms, B,
                   cache.p50 * 1e3, cache.p90 * 1e3, cache_streams, buf.p50 * 1e3, buf_streams,
                   buf_streams > 0 ? cache_streams / buf_streams : 0);
            fflush(stdout);
            if (json) {
                fprintf(json,
                        "%s\n  {\"chunk_ms\": %d, \"batch\": %d, \"cache_aware_p50_ms\": %.4f, "
                        "\"cache_aware_p90_ms\": %.4f, \"cache_aware_streams\": %.2f, \"buffered_p50_ms\": %.4f, "
                        "\"buffered_streams\": %.2f}",
                        first_row ? "" : ",", s->chunk_ms, B, cache.p50 * 1e3, cache.p90 * 1e3, cache_streams,
                        buf.p50 * 1e3, buf_streams);
                first_row = 0;
            }
        }
    }
    if (json) {
        fprintf(json, "\n]}\n");
        fclose(json);
    }
    printf("RT streams = B x chunk duration / p50 step time: live streams this machine keeps up with.\n");
    free(features);
    free(in);
    free(out);
    es_encoder_free(enc);
    es_slot_pool_free(pool);
    es_model_free(m);
    if (model_path == generated)
        unlink(generated);
    return 0;
}
