/*
 * earshot-bench-decode - what decoding adds to the engine's step: many streams of real speech
 * through es_engine_step with greedy CTC (the baseline) and with the LM's beam search, in one run.
 *
 *   earshot-bench-decode [--model PATH] [--lm FILE] [--audio FILE] [--streams 1,8,32]
 *                        [--beams 64,128] [--threads N] [--chunk-ms N] [--seconds S]
 *
 * Defaults: the shipped model and the LM beside it, a 3 s sentence of the test data looped to
 * --seconds 20 per stream, the model's first latency mode, all cores. Each stream starts the
 * audio at a different point, so the streams are not copies of one another. All of a stream's
 * audio is pushed before the clock starts (features are not timed: the server computes them as
 * audio arrives, outside the step); then every step takes every stream that has a chunk ready,
 * as the server's batcher does, and only es_engine_step is timed: the encoder and the decoding.
 *
 * Prints a markdown table: per stream count and decoder, the step time p50 and p99, and the
 * streams' audio seconds per wall second of stepping, which is how many live streams of that
 * batch the machine keeps up with. The last column is what the LM's search costs on top of
 * greedy decoding. With several --beams, each width is a row of its own, so the accuracy a wider
 * beam buys (bench/lm_decode.sh) can be weighed against what it costs here.
 */
#include "audio_file.h"
#include "bench_timing.h"
#include "earshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COUNTS 16
#define MAX_BEAMS 4

static void usage(FILE *f)
{
    fprintf(f, "Usage: earshot-bench-decode [options]\n"
               "The engine's step with greedy CTC and with the LM's beam search, on many streams.\n\n"
               "  --model PATH      model (default " EARSHOT_DEFAULT_MODEL ")\n"
               "  --lm FILE         the LM (default: MODEL.arpa.gz beside the model)\n"
               "  --audio FILE      speech, looped to --seconds (default " EARSHOT_BENCH_AUDIO ")\n"
               "  --streams LIST    stream counts, comma-separated (default 1,8,32)\n"
               "  --beams LIST      beam widths of the search, comma-separated, 1..1024 (default: the engine's, %d)\n"
               "  --threads N       compute threads, 0 = one per core (default 0)\n"
               "  --chunk-ms N      latency mode (default: the model's first)\n"
               "  --seconds S       audio per stream (default 20)\n"
               "  --help            this text\n",
            es_engine_default_params().lm_beam);
}

/* A comma-separated list of up to max whole numbers in [lo, hi] into out; its length, or -1. */
static int parse_list(const char *text, int lo, int hi, int *out, int max)
{
    int n = 0;
    for (const char *p = text; *p;) {
        char *end;
        long c = strtol(p, &end, 10);
        /* a comma must be followed by another number: "64," is a typo, not a list of one */
        if (end == p || c < lo || c > hi || n == max || (*end && (*end != ',' || !end[1])))
            return -1;
        out[n++] = (int)c;
        p = *end ? end + 1 : end;
    }
    return n > 0 ? n : -1;
}

/* The file's samples at rate, looped to n; NULL with err on failure. */
static float *load_looped(const char *path, int rate, size_t n, char *err, size_t errlen)
{
    float *one;
    long len = af_read_all(path, rate, AF_QUALITY_BEST, &one, err, errlen);
    if (len <= 0) {
        if (len == 0)
            snprintf(err, errlen, "%s holds no audio", path);
        free(one);
        return NULL;
    }
    float *out = malloc(sizeof *out * n);
    for (size_t i = 0; out && i < n; i++)
        out[i] = one[i % (size_t)len];
    free(one);
    if (!out)
        snprintf(err, errlen, "out of memory");
    return out;
}

typedef struct {
    double p50_ms, p99_ms, audio_per_wall;
    int steps;
} result;

/* B streams of the audio through the engine; 0, or -1 with err. */
static int run(es_engine *e, int lookahead, const float *audio, size_t n, int B, double seconds, result *res,
               char *err, size_t errlen)
{
    es_stream **s = calloc((size_t)B, sizeof *s), **ready = calloc((size_t)B, sizeof *ready);
    double *times = NULL;
    size_t n_times = 0, cap_times = 0;
    int rc = -1;
    if (!s || !ready) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    es_stream_params sp = es_stream_default_params(e);
    sp.lookahead = lookahead;
    sp.decoder = ES_DECODER_CTC;
    int rate = es_engine_sample_rate(e);
    size_t per_stream = (size_t)(seconds * rate);
    for (int i = 0; i < B; i++) {
        if (!(s[i] = es_stream_create(e, &sp, err, errlen)))
            goto done;
        /* each stream starts the loop at its own point: 0.37 s apart */
        size_t start = ((size_t)i * (size_t)(0.37 * rate)) % n, done_n = 0;
        while (done_n < per_stream) {
            size_t take = n - start < per_stream - done_n ? n - start : per_stream - done_n;
            if (es_stream_accept_audio(s[i], audio + start, take) != 0) {
                snprintf(err, errlen, "out of memory");
                goto done;
            }
            done_n += take;
            start = 0;
        }
        es_stream_end_audio(s[i]);
    }
    double t0 = bench_now();
    for (;;) {
        int k = 0;
        for (int i = 0; i < B; i++)
            if (es_stream_ready(s[i]))
                ready[k++] = s[i];
        if (k == 0)
            break;
        double a = bench_now();
        if (es_engine_step(e, ready, k, err, errlen) != 0)
            goto done;
        if (n_times == cap_times) {
            cap_times = cap_times ? cap_times * 2 : 256;
            double *p = realloc(times, sizeof *p * cap_times);
            if (!p) {
                snprintf(err, errlen, "out of memory");
                goto done;
            }
            times = p;
        }
        times[n_times++] = bench_now() - a;
    }
    double wall = bench_now() - t0;
    bench_sort(times, n_times);
    res->steps = (int)n_times;
    res->p50_ms = bench_quantile(times, n_times, 0.50) * 1e3;
    res->p99_ms = bench_quantile(times, n_times, 0.99) * 1e3;
    res->audio_per_wall = wall > 0 ? B * seconds / wall : 0;
    rc = 0;
done:
    for (int i = 0; s && i < B; i++)
        es_stream_free(s[i]);
    free(s);
    free(ready);
    free(times);
    return rc;
}

int main(int argc, char **argv)
{
    es_prefer_passive_threads(argv);
    const char *model = EARSHOT_DEFAULT_MODEL, *lm = NULL, *audio_path = EARSHOT_BENCH_AUDIO;
    int counts[MAX_COUNTS] = {1, 8, 32}, n_counts = 3, threads = 0, chunk_ms = -1;
    int beams[MAX_BEAMS] = {es_engine_default_params().lm_beam}, n_beams = 1;
    double seconds = 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "earshot-bench-decode: %s needs a value (see --help)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--lm"))
            lm = v;
        else if (!strcmp(a, "--audio"))
            audio_path = v;
        else if (!strcmp(a, "--threads") && (threads = (int)strtol(v, &end, 10)) >= 0 && !*end && threads <= 1024)
            ;
        else if (!strcmp(a, "--chunk-ms") && (chunk_ms = (int)strtol(v, &end, 10)) > 0 && !*end)
            ;
        else if (!strcmp(a, "--seconds") && (seconds = strtod(v, &end)) > 0 && !*end && seconds <= 3600)
            ;
        else if (!strcmp(a, "--streams")) {
            if ((n_counts = parse_list(v, 1, 4096, counts, MAX_COUNTS)) < 0) {
                fprintf(stderr, "earshot-bench-decode: --streams wants up to %d counts from 1 to 4096, not '%s'\n",
                        MAX_COUNTS, v);
                return 2;
            }
        } else if (!strcmp(a, "--beams")) {
            if ((n_beams = parse_list(v, 1, 1024, beams, MAX_BEAMS)) < 0) {
                fprintf(stderr, "earshot-bench-decode: --beams wants up to %d widths from 1 to 1024, not '%s'\n",
                        MAX_BEAMS, v);
                return 2;
            }
        } else {
            fprintf(stderr, "earshot-bench-decode: bad option or value: %s %s (see --help)\n", a, v);
            return 2;
        }
    }
    static char beside[4096];
    if (!lm && es_lm_beside_model(model, beside, sizeof beside))
        lm = beside;
    if (!lm) {
        fprintf(stderr, "earshot-bench-decode: %s has no LM beside it; name one with --lm\n", model);
        return 2;
    }
    int max_b = 0;
    for (int i = 0; i < n_counts; i++)
        max_b = counts[i] > max_b ? counts[i] : max_b;

    /* engine 0 decodes greedily (the baseline); engine k > 0 searches with beams[k - 1] */
    char err[512];
    int n_engines = 1 + n_beams;
    es_engine *engines[1 + MAX_BEAMS] = {0};
    char names[1 + MAX_BEAMS][48] = {"greedy CTC (baseline)"};
    for (int k = 0; k < n_engines; k++) {
        es_engine_params ep = es_engine_default_params();
        ep.max_streams = max_b;
        ep.n_threads = threads;
        ep.lm_path = k ? lm : NULL;
        if (k) {
            ep.lm_beam = beams[k - 1];
            snprintf(names[k], sizeof names[k], "beam %d + LM", beams[k - 1]);
        }
        if (!(engines[k] = es_engine_create(model, &ep, err, sizeof err))) {
            fprintf(stderr, "earshot-bench-decode: %s\n", err);
            for (int j = 0; j < k; j++)
                es_engine_free(engines[j]);
            return 3;
        }
    }
    int rate = es_engine_sample_rate(engines[0]);
    size_t n = (size_t)rate * 8; /* the loop's length: a few sentences' worth is plenty */
    float *audio = load_looped(audio_path, rate, n, err, sizeof err);
    if (!audio) {
        fprintf(stderr, "earshot-bench-decode: %s: %s\n", audio_path, err);
        for (int k = 0; k < n_engines; k++)
            es_engine_free(engines[k]);
        return 1;
    }
    int la = chunk_ms > 0 ? es_engine_pick_lookahead(engines[0], chunk_ms) : 0;
    char threads_text[32] = "one per core";
    if (threads > 0)
        snprintf(threads_text, sizeof threads_text, "%d", threads);
    printf("model %s, LM %s (%.1f MB), %d ms chunks, %g s of audio per stream, threads: %s\n\n", model, lm,
           es_engine_lm_bytes(engines[1]) / 1048576.0, es_engine_lookahead(engines[0], la).chunk_ms, seconds, threads_text);
    printf("| streams | decoder | steps | step p50 | step p99 | audio s per wall s | search's cost |\n");
    printf("| ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
    int rc = 0;
    for (int c = 0; c < n_counts && rc == 0; c++) {
        result r[1 + MAX_BEAMS];
        for (int k = 0; k < n_engines && rc == 0; k++) {
            if (run(engines[k], la, audio, n, counts[c], seconds, &r[k], err, sizeof err) != 0) {
                fprintf(stderr, "earshot-bench-decode: %s\n", err);
                rc = 1;
                break;
            }
            char cost[32] = "";
            if (k > 0)
                snprintf(cost, sizeof cost, "%+.0f %%", 100.0 * (r[0].audio_per_wall / r[k].audio_per_wall - 1));
            printf("| %d | %s | %d | %.2f ms | %.2f ms | %.1f | %s |\n", counts[c], names[k], r[k].steps, r[k].p50_ms,
                   r[k].p99_ms, r[k].audio_per_wall, cost);
            fflush(stdout);
        }
    }
    free(audio);
    for (int k = 0; k < n_engines; k++)
        es_engine_free(engines[k]);
    return rc;
}
