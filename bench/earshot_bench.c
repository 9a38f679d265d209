/*
 * earshot-bench - how many live streams one machine sustains: the cache-aware encoder step on
 * the CPU or the GPU, against buffered streaming.
 *
 *   earshot-bench [--backend cpu|cuda] [--model PATH] [--layers 17] [--d-model 512] [--heads 8]
 *                 [--ff 2048] [--conv-kernel 9] [--sub-channels 256] [--vocab 1024]
 *                 [--batch 1,4,16] [--modes all|160,80] [--seconds 3] [--steps 1000]
 *                 [--threads N] [--window-s 4] [--buffered | --no-buffered] [--json OUT]
 *
 * With a --model that does not exist yet, it writes the random model there and keeps it.
 * Without --model it writes a random-weights model of the given shape (default: NVIDIA's 114M
 * streaming FastConformer, 17 x 512) and measures, on the same weights:
 *   cache-aware: one batched encoder step over B streams, each bringing one steady-state chunk
 *                (pre-encode cache + chunk columns) with full attention caches, as the server
 *                runs it (on the GPU with the CTC head and its argmax, which the engine's step
 *                also runs there);
 *   buffered:    the way buffered streaming works, every chunk re-encodes a sliding window of
 *                the last --window-s seconds with full attention context (B windows per step);
 *                on by default on the CPU only.
 * For each latency mode and batch size it prints, as a markdown table, the step time p50 and
 * p99 (over up to --steps steps or --seconds, after a warm-up that fills the caches), the
 * real-time streams the step rate sustains (B x chunk duration / p50), and the memory of the
 * streams' state: per session, and for B sessions (on the GPU: all the device memory the
 * backend holds, weights and workspace included, less the slots this batch does not use). A
 * batch larger than what fits in memory is skipped with a note, not an error.
 * The encoder dominates a stream's cost; features and greedy decoding are not timed here.
 */
#include "bench_timing.h"
#include "earshot.h"
#include "encoder.h"
#include "model.h"
#include "ops.h"
#include "random_model.h"
#ifdef EARSHOT_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BATCHES 16

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* ---- one backend behind one step function ---- */

typedef struct {
    int cuda;
    const es_model *m;
    int n_slots;
    es_slot_pool *pool; /* CPU */
    es_encoder *enc;
#ifdef EARSHOT_HAVE_CUDA
    es_cuda *gpu;
#endif
    es_encoder_input *in;
    es_encoder_output *out;
    int B;
} bench_backend;

/* Creates the backend with caches for n_slots streams; 0, or -1 with the reason. */
static int backend_create(bench_backend *k, const es_model *m, int cuda, int n_slots, char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    k->cuda = cuda;
    k->m = m;
    k->n_slots = n_slots;
    k->in = calloc((size_t)n_slots, sizeof *k->in);
    k->out = calloc((size_t)n_slots, sizeof *k->out);
    if (!k->in || !k->out) {
        snprintf(err, errlen, "out of host memory for %d streams", n_slots);
        return -1;
    }
    if (cuda) {
#ifdef EARSHOT_HAVE_CUDA
        k->gpu = es_cuda_create(m, n_slots, err, errlen);
        if (!k->gpu)
            return -1;
        for (int s = 0; s < n_slots; s++)
            if (es_cuda_clear_slot(k->gpu, s) != 0) {
                snprintf(err, errlen, "clearing cache slot %d failed", s);
                return -1;
            }
        return 0;
#else
        snprintf(err, errlen, "this build has no CUDA backend");
        return -1;
#endif
    }
    size_t regions[ES_ENCODER_REGIONS];
    es_encoder_cache_regions(m, regions);
    k->pool = es_slot_pool_create(n_slots, regions, ES_ENCODER_REGIONS);
    if (!k->pool) {
        snprintf(err, errlen, "cannot allocate the state of %d streams", n_slots);
        return -1;
    }
    for (int b = 0; b < n_slots; b++)
        es_slot_acquire(k->pool);
    k->enc = es_encoder_create(m, k->pool, 0);
    if (!k->enc) {
        snprintf(err, errlen, "cannot create the encoder");
        return -1;
    }
    return 0;
}

static void backend_free(bench_backend *k)
{
#ifdef EARSHOT_HAVE_CUDA
    if (k->gpu)
        es_cuda_free(k->gpu);
#endif
    if (k->enc)
        es_encoder_free(k->enc);
    if (k->pool)
        es_slot_pool_free(k->pool);
    free(k->in);
    free(k->out);
    memset(k, 0, sizeof *k);
}

static int backend_step(bench_backend *k)
{
    char err[256] = "";
    int rc;
#ifdef EARSHOT_HAVE_CUDA
    if (k->cuda)
        rc = es_cuda_step(k->gpu, k->in, k->B, k->m->has_ctc ? ES_CUDA_CTC_IDS : 0, k->out, err, sizeof err);
    else
#endif
        rc = es_encoder_step(k->enc, k->in, k->B, k->out, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "earshot-bench: step of %d streams failed: %s\n", k->B, err);
    return rc;
}

/* State bytes of one stream: host caches on the CPU, device caches on the GPU. */
static size_t backend_bytes_per_stream(const bench_backend *k)
{
#ifdef EARSHOT_HAVE_CUDA
    if (k->cuda)
        return es_cuda_bytes_per_slot(k->gpu);
#endif
    return es_slot_pool_bytes_per_slot(k->pool);
}

/* Memory for B streams: on the GPU everything the backend holds (weights, workspace) less the
   slots B streams do not use; on the CPU the B streams' state. */
static double backend_bytes_for(const bench_backend *k, int B)
{
    double per = (double)backend_bytes_per_stream(k);
#ifdef EARSHOT_HAVE_CUDA
    if (k->cuda)
        return (double)es_cuda_device_bytes(k->gpu) - per * (k->n_slots - B);
#endif
    return per * B;
}

/* Brings the first B slots' attention caches to full length, as after a few seconds of audio:
   the CPU's cache length is set directly; on the GPU, steps run until it is full. Every step
   runs slots 0..B-1, so a lower slot has had at least as many steps as slot B-1: when that one
   is full, all are. Returns 1 when full, 0 when the warm-up hit its time limit first. */
static int fill_caches(bench_backend *k, int la, double max_s)
{
    int full = k->m->streaming[la].last_channel_cache_size;
    if (!k->cuda) {
        for (int b = 0; b < k->B; b++)
            *es_encoder_channel_len(k->enc, b) = full;
        return 1;
    }
#ifdef EARSHOT_HAVE_CUDA
    double t0 = bench_now();
    for (int i = 0; i < 1000; i++) {
        int len = 0;
        if (es_cuda_read_channel_len(k->gpu, k->B - 1, &len) != 0)
            return 0;
        if (len >= full)
            return 1;
        if (bench_now() - t0 > max_s || backend_step(k) != 0)
            return 0;
    }
#endif
    (void)max_s;
    return 0;
}

typedef struct {
    double p50, p90, p99;
    int steps;
    int failed;
} timing;

/* Two warm-up steps (CUDA graphs are captured, caches touched), then steps until max_steps or
   `seconds` have passed (at least 3). */
static timing time_steps(bench_backend *k, double seconds, int max_steps)
{
    timing t = {0};
    for (int i = 0; i < 2; i++)
        if (backend_step(k) != 0) {
            t.failed = 1;
            return t;
        }
    double *samples = malloc(sizeof(double) * (size_t)max_steps);
    if (!samples) {
        t.failed = 1;
        return t;
    }
    double start = bench_now();
    int n = 0;
    while (n < max_steps && (n < 3 || bench_now() - start < seconds)) {
        double t0 = bench_now();
        if (backend_step(k) != 0) {
            t.failed = 1;
            break;
        }
        samples[n++] = bench_now() - t0;
    }
    bench_sort(samples, (size_t)n);
    t.p50 = bench_quantile(samples, (size_t)n, 0.50);
    t.p90 = bench_quantile(samples, (size_t)n, 0.90);
    t.p99 = bench_quantile(samples, (size_t)n, 0.99);
    t.steps = n;
    free(samples);
    return t;
}

/* ---- options ---- */

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end || v < 1 || v > 1000000 || n == max) {
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
    fprintf(f,
            "usage: earshot-bench [--backend cpu|cuda] [--model PATH] [--layers N] [--d-model N] [--heads N]\n"
            "                     [--ff N] [--conv-kernel N] [--sub-channels N] [--vocab N]\n"
            "                     [--batch 1,4,16] [--modes all|160,80] [--seconds S] [--steps N] [--threads N]\n"
            "                     [--window-s S] [--buffered | --no-buffered] [--json OUT]\n"
            "Measures real-time streams per machine: the cache-aware step (and on the CPU, by default, a\n"
            "buffered-streaming baseline) on a random-weights model of the given shape (default 17 x 512,\n"
            "8 heads, ff 2048, conv kernel 9, 256 subsampling channels, vocabulary 1024).\n");
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *json_path = NULL;
    es_random_model_params rp = {.n_layers = 17, .d_model = 512, .n_heads = 8, .ff_dim = 0, .conv_kernel = 9,
                                 .sub_channels = 256, .vocab = 1024};
    int threads = 0, batches[MAX_BATCHES] = {1, 4, 16}, n_batches = 3, modes[8], n_modes = 0, buffered = -1;
    int cuda = 0, max_steps = 1000;
    double seconds = 3, window_s = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-buffered")) {
            buffered = 0;
        } else if (!strcmp(a, "--buffered")) {
            buffered = 1;
        } else if (!v) {
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "--backend")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda")) {
                fprintf(stderr, "earshot-bench: --backend must be cpu or cuda\n");
                return 2;
            }
            cuda = !strcmp(v, "cuda"), i++;
        } else if (!strcmp(a, "--model")) {
            model_path = v, i++;
        } else if (!strcmp(a, "--json")) {
            json_path = v, i++;
        } else if (!strcmp(a, "--layers")) {
            rp.n_layers = atoi(v), i++;
        } else if (!strcmp(a, "--d-model")) {
            rp.d_model = atoi(v), i++;
        } else if (!strcmp(a, "--heads")) {
            rp.n_heads = atoi(v), i++;
        } else if (!strcmp(a, "--ff")) {
            rp.ff_dim = atoi(v), i++;
        } else if (!strcmp(a, "--conv-kernel")) {
            rp.conv_kernel = atoi(v), i++;
        } else if (!strcmp(a, "--sub-channels")) {
            rp.sub_channels = atoi(v), i++;
        } else if (!strcmp(a, "--vocab")) {
            rp.vocab = atoi(v), i++;
        } else if (!strcmp(a, "--threads")) {
            threads = atoi(v), i++;
        } else if (!strcmp(a, "--seconds")) {
            seconds = atof(v), i++;
        } else if (!strcmp(a, "--steps")) {
            max_steps = atoi(v), i++;
        } else if (!strcmp(a, "--window-s")) {
            window_s = atof(v), i++;
        } else if (!strcmp(a, "--batch")) {
            if ((n_batches = parse_list(v, batches, MAX_BATCHES)) < 1) {
                fprintf(stderr, "earshot-bench: bad --batch list '%s' (at most %d sizes)\n", v, MAX_BATCHES);
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
    if (seconds <= 0 || window_s <= 0 || max_steps < 3) {
        fprintf(stderr, "earshot-bench: --seconds and --window-s must be positive, --steps at least 3\n");
        return 2;
    }
    if (rp.ff_dim == 0)
        rp.ff_dim = 4 * rp.d_model;
    if (buffered < 0)
        buffered = !cuda; /* the GPU baseline is slow at large batches; ask for it with --buffered */
    char err[512] = "";
    if (cuda && !es_backend_available(ES_BACKEND_CUDA, err, sizeof err)) {
        fprintf(stderr, "earshot-bench: --backend cuda is not available: %s\n", err);
        return 2;
    }

    char generated[256];
    if (model_path && access(model_path, F_OK) != 0) {
        /* a --model that does not exist yet is written there and kept, for repeated runs */
        fprintf(stderr, "writing a random %d x %d model to %s ...\n", rp.n_layers, rp.d_model, model_path);
        if (es_write_random_model(model_path, &rp, err, sizeof err) != 0) {
            fprintf(stderr, "earshot-bench: %s\n", err);
            return 2;
        }
    }
    if (!model_path) {
        snprintf(generated, sizeof generated, "/tmp/earshot-bench-%dx%d-%d.safetensors", rp.n_layers, rp.d_model,
                 (int)getpid());
        fprintf(stderr, "writing a random %d x %d model to %s ...\n", rp.n_layers, rp.d_model, generated);
        if (es_write_random_model(generated, &rp, err, sizeof err) != 0) {
            fprintf(stderr, "earshot-bench: %s\n", err);
            return 2;
        }
        model_path = generated;
    }
    es_model *m = es_model_load(model_path, err, sizeof err);
    if (model_path == generated)
        unlink(generated); /* mapped: the pages stay readable until unmapped */
    if (!m) {
        fprintf(stderr, "earshot-bench: %s\n", err);
        return 1;
    }
    if (threads <= 0)
        threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    es_set_compute_threads(threads);

    /* the largest batch that fits in memory: the backend is made once, for it */
    int sorted[MAX_BATCHES];
    memcpy(sorted, batches, sizeof(int) * (size_t)n_batches);
    qsort(sorted, (size_t)n_batches, sizeof(int), cmp_int);
    bench_backend k;
    int fits = 0;
    char fit_err[512] = "";
    for (int i = n_batches - 1; i >= 0 && !fits; i--) {
        if (i < n_batches - 1 && sorted[i] == sorted[i + 1])
            continue;
        if (backend_create(&k, m, cuda, sorted[i], err, sizeof err) == 0) {
            fits = sorted[i];
        } else {
            if (!fit_err[0])
                snprintf(fit_err, sizeof fit_err, "%s", err);
            fprintf(stderr, "earshot-bench: %d streams do not fit: %s\n", sorted[i], err);
            backend_free(&k);
        }
    }
    if (!fits) {
        fprintf(stderr, "earshot-bench: not even %d stream(s) fit: %s\n", sorted[0], fit_err);
        es_model_free(m);
        return 1;
    }

    int window_cols = (int)(window_s * 100);
    int widest = window_cols + m->streaming[0].chunk_size[1] + m->streaming[0].pre_encode_cache_size + 64;
    float *features = malloc(sizeof(float) * (size_t)widest * m->n_mels);
    if (!features) {
        fprintf(stderr, "earshot-bench: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)widest * m->n_mels; i++)
        features[i] = (float)((i * 2654435761u) % 1000) / 100.0f - 12.0f; /* log-mel-like range */

    FILE *json = json_path ? fopen(json_path, "w") : NULL;
    if (json)
        fprintf(json, "{\"model\": \"%d x %d\", \"backend\": \"%s\", \"threads\": %d, \"results\": [", m->n_layers,
                m->d_model, cuda ? "cuda" : "cpu", threads);
    printf("\n### earshot-bench: %d layers x d_model %d (%d heads, ff %d, conv kernel %d, %d subsampling channels, "
           "vocabulary %d), backend %s\n\n",
           m->n_layers, m->d_model, m->n_heads, m->ff_dim, m->conv_kernel, m->sub_channels, m->n_vocab,
           cuda ? "cuda" : "cpu");
    if (!cuda)
        printf("%d threads. ", threads);
    printf("State per session: %.2f MB (%s). Up to %d steps or %.1f s per row after warm-up.\n\n",
           backend_bytes_per_stream(&k) / 1048576.0, cuda ? "device memory" : "host memory", max_steps, seconds);
    printf("| mode | B | p50 | p99 | RT streams | state / session | memory, B sessions | steps |%s note |\n",
           buffered ? " buffered p50 | buffered RT streams | ratio |" : "");
    printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |%s :--- |\n",
           buffered ? " ---: | ---: | ---: |" : "");
    fflush(stdout);
    int first_row = 1, rc = 0;
    for (int la = 0; la < m->n_lookaheads && rc == 0; la++) {
        const es_streaming_cfg *s = &m->streaming[la];
        int wanted = n_modes == 0;
        for (int i = 0; i < n_modes; i++)
            wanted |= modes[i] == s->chunk_ms;
        if (!wanted)
            continue;
        double chunk_s = s->chunk_ms / 1000.0;
        for (int bi = 0; bi < n_batches && rc == 0; bi++) {
            int B = batches[bi];
            printf("| %d ms [%d,%d] | %d |", s->chunk_ms, s->att_context[0], s->att_context[1], B);
            if (B > fits) {
                printf(" | | | | | |%s skipped: does not fit in memory (%s) |\n", buffered ? " | | |" : "", fit_err);
                fflush(stdout);
                continue;
            }
            /* steady state: a later chunk, caches full (as after a few seconds of audio) */
            k.B = B;
            for (int b = 0; b < B; b++)
                k.in[b] = (es_encoder_input){.features = features + (size_t)b % 7 * m->n_mels,
                                             .width = s->pre_encode_cache_size + s->chunk_size[1],
                                             .length = s->pre_encode_cache_size + s->chunk_size[1],
                                             .lookahead = la, .drop_extra = s->drop_extra_pre_encoded, .slot = b};
            int full = fill_caches(&k, la, 5.0);
            timing cache = time_steps(&k, seconds, max_steps);
            if (cache.failed) {
                printf(" | | | | | |%s the step failed (see above) |\n", buffered ? " | | |" : "");
                rc = 1;
                break;
            }
            double cache_streams = cache.p50 > 0 ? B * chunk_s / cache.p50 : 0;
            double per_mb = backend_bytes_per_stream(&k) / 1048576.0;
            double total_mb = backend_bytes_for(&k, B) / 1048576.0;
            printf(" %.3f ms | %.3f ms | %.0f | %.3f MB | %.*f %s | %d |", cache.p50 * 1e3, cache.p99 * 1e3,
                   cache_streams, per_mb, total_mb < 1024 ? 1 : 2, total_mb < 1024 ? total_mb : total_mb / 1024,
                   total_mb < 1024 ? "MB" : "GB", cache.steps);
            timing buf = {0};
            double buf_streams = 0;
            if (buffered) {
                for (int b = 0; b < B; b++)
                    k.in[b] = (es_encoder_input){.features = features + (size_t)b % 7 * m->n_mels,
                                                 .width = window_cols, .length = window_cols, .lookahead = -1,
                                                 .slot = -1};
                buf = time_steps(&k, seconds, max_steps);
                if (buf.failed)
                    rc = 1;
                buf_streams = buf.p50 > 0 ? B * chunk_s / buf.p50 : 0;
                printf(" %.2f ms | %.1f | %.1fx |", buf.p50 * 1e3, buf_streams,
                       buf_streams > 0 ? cache_streams / buf_streams : 0);
            }
            printf(" %s%s |\n", full ? "" : "caches not full after the 5 s warm-up; ",
                   cache.p99 > chunk_s ? "p99 over the chunk duration" : "");
            fflush(stdout);
            if (json) {
                fprintf(json,
                        "%s\n  {\"chunk_ms\": %d, \"batch\": %d, \"cache_aware_p50_ms\": %.4f, "
                        "\"cache_aware_p90_ms\": %.4f, \"cache_aware_p99_ms\": %.4f, \"cache_aware_streams\": %.2f, "
                        "\"steps\": %d, \"state_bytes_per_stream\": %zu, \"memory_bytes\": %.0f, "
                        "\"buffered_p50_ms\": %.4f, \"buffered_streams\": %.2f}",
                        first_row ? "" : ",", s->chunk_ms, B, cache.p50 * 1e3, cache.p90 * 1e3, cache.p99 * 1e3,
                        cache_streams, cache.steps, backend_bytes_per_stream(&k), backend_bytes_for(&k, B),
                        buf.p50 * 1e3, buf_streams);
                first_row = 0;
            }
        }
    }
    if (json) {
        fprintf(json, "\n]}\n");
        fclose(json);
    }
    printf("\nRT streams = B x chunk duration / p50 step time: the live streams this machine keeps up with.\n");
    free(features);
    backend_free(&k);
    es_model_free(m);
    return rc;
}
