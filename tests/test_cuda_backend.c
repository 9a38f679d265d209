/*
 * test_cuda_backend.c - the CUDA backend's host-side logic, checked against the CPU encoder's
 * numbers, and the backend's availability and failure paths.
 *
 *   test_cuda_backend GOLDEN_MODELS_DIR
 *
 * Runs on every machine: without a GPU (or in a build without CUDA) it checks that
 * es_backend_available says why and that an engine asked for CUDA fails cleanly with that
 * sentence; the step plan (validation messages, rows, lengths through the subsampling, frames
 * returned), the device cache layout, batch norm folded into the depthwise conv and the
 * position table are compared with what the CPU encoder computes, for every golden model.
 * With a usable GPU it also runs a ragged batch (every look-ahead, first and later chunks, an
 * offline pass) on both backends and compares outputs and caches within DESIGN.md's GPU
 * tolerance (relative L2 <= 1e-2).
 */
#include "check.h"
#include "cuda/cuda_backend.h"
#include "decoder.h"
#include "earshot.h"
#include "encoder.h"
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CASES[] = {"ctc_tiny", "hybrid_multi", "bn_striding4", "rnnt_regular"};
#define N_CASES (int)(sizeof CASES / sizeof CASES[0])
#define MAX_BATCH (2 * ES_MAX_LOOKAHEADS + 2)

static unsigned rng = 12345u;
static float frand(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* ---- availability and the engine's failure path ---- */

static void test_availability(const char *models)
{
    char msg[256] = "unchanged", err[256] = "";
    CHECK(es_backend_available(ES_BACKEND_CPU, msg, sizeof msg) == 1 && msg[0] == '\0', "CPU is always available");
    CHECK(es_backend_available((es_backend)7, msg, sizeof msg) == 0 && msg[0], "an unknown backend is refused");
    int gpu = es_backend_available(ES_BACKEND_CUDA, msg, sizeof msg);
    printf("CUDA backend available: %d%s%s\n", gpu, gpu ? "" : " - ", gpu ? "" : msg);
#ifdef EARSHOT_HAVE_CUDA
    if (!gpu)
        CHECK(strncmp(msg, "no CUDA-capable GPU found: ", 27) == 0 || strstr(msg, "compute capability"),
              "reason: %s", msg);
#else
    CHECK(!gpu && strstr(msg, "this build has no CUDA backend"), "reason: %s", msg);
#endif
    char path[1024];
    snprintf(path, sizeof path, "%s/ctc_tiny.safetensors", models);
    es_engine_params ep = es_engine_default_params();
    ep.max_streams = 4;
    es_engine *cpu = es_engine_create(path, &ep, err, sizeof err);
    CHECK(cpu != NULL, "CPU engine: %s", err);
    if (cpu) {
        CHECK(es_engine_device_bytes(cpu) == 0 && es_engine_device_bytes_per_stream(cpu) == 0,
              "the CPU engine holds no device memory");
        es_engine_free(cpu);
    }
    ep.backend = ES_BACKEND_CUDA;
    es_engine *e = es_engine_create(path, &ep, err, sizeof err);
    if (!gpu) {
        CHECK(e == NULL, "a CUDA engine without a GPU");
        CHECK(strcmp(err, msg) == 0, "the engine's error is the availability reason: '%s' vs '%s'", err, msg);
    } else {
        CHECK(e != NULL, "CUDA engine: %s", err);
    }
    if (e) {
        es_model *m = es_model_load(path, err, sizeof err);
        es_cuda_layout l = es_cuda_cache_layout(m);
        CHECK(es_engine_device_bytes_per_stream(e) == es_cuda_layout_bytes(&l), "device bytes per stream");
        CHECK(es_engine_device_bytes(e) > 4 * es_cuda_layout_bytes(&l), "device bytes cover slots and weights");
        es_model_free(m);
        es_engine_free(e);
    }
}

/* ---- the plan against the CPU encoder ---- */

/* A ragged batch: for every look-ahead a first and a later chunk, one of them the stream's last
   (keep_all), plus an offline pass with padding. Features are random; slots 0.. */
static int make_batch(const es_model *m, es_encoder_input *in, float **feats)
{
    int n = 0;
    for (int la = 0; la < m->n_lookaheads; la++) {
        const es_streaming_cfg *s = &m->streaming[la];
        for (int k = 0; k < 2; k++) {
            int width = k == 0 ? s->chunk_size[0] : s->pre_encode_cache_size + s->chunk_size[1];
            float *f = malloc(sizeof(float) * (size_t)width * m->n_mels);
            for (int i = 0; i < width * m->n_mels; i++)
                f[i] = frand();
            feats[n] = f;
            in[n] = (es_encoder_input){.features = f, .width = width, .length = width, .lookahead = la,
                                       .drop_extra = k == 0 ? 0 : s->drop_extra_pre_encoded, .keep_all = k,
                                       .slot = n};
            n++;
        }
    }
    int width = 61;
    float *f = malloc(sizeof(float) * (size_t)width * m->n_mels);
    for (int i = 0; i < width * m->n_mels; i++)
        f[i] = frand();
    feats[n] = f;
    in[n] = (es_encoder_input){.features = f, .width = width, .length = 50, .lookahead = 0, .slot = -1};
    return n + 1;
}

static void test_plan(const es_model *m, const char *name)
{
    es_encoder_input in[MAX_BATCH];
    float *feats[MAX_BATCH];
    int n = make_batch(m, in, feats);
    size_t regions[ES_ENCODER_REGIONS];
    es_encoder_cache_regions(m, regions);
    es_slot_pool *pool = es_slot_pool_create(n, regions, ES_ENCODER_REGIONS);
    es_encoder *enc = es_encoder_create(m, pool, 0);
    for (int i = 0; i < n; i++)
        es_slot_acquire(pool);
    es_encoder_output out[MAX_BATCH];
    char err[256] = "", perr[256] = "";
    CHECK(es_encoder_step(enc, in, n, out, err, sizeof err) == 0, "%s: CPU step: %s", name, err);

    es_cuda_stream plan[MAX_BATCH];
    es_cuda_totals t;
    CHECK(es_cuda_plan(m, in, n, plan, NULL, &t, perr, sizeof perr) == 0, "%s: plan: %s", name, perr);
    int *row_stream = malloc(sizeof(int) * (size_t)t.N + 1);
    es_cuda_plan(m, in, n, plan, row_stream, &t, perr, sizeof perr);
    int rows = 0, max_klen = 0, max_T = 0;
    for (int b = 0; b < n; b++) {
        const es_cuda_stream *p = &plan[b];
        CHECK(p->n_out == out[b].n_frames, "%s stream %d: %d frames returned, CPU %d", name, b, p->n_out,
              out[b].n_frames);
        CHECK(p->rows == rows, "%s stream %d: first row %d, expected %d", name, b, p->rows, rows);
        int To = es_encoder_subsampled_length(m, in[b].width);
        CHECK(p->T == To - in[b].drop_extra, "%s stream %d: T", name, b);
        CHECK(p->sub_len[m->n_sub] == es_encoder_subsampled_length(m, in[b].length),
              "%s stream %d: valid length through the subsampling", name, b);
        if (in[b].slot >= 0) {
            const es_streaming_cfg *s = &m->streaming[in[b].lookahead];
            CHECK(p->C == s->last_channel_cache_size && p->keep == p->T - s->cache_drop_size && !p->full,
                  "%s stream %d: cache size and kept frames", name, b);
            /* after one step from an empty cache, the CPU's length is min(keep, C) */
            int want = p->keep < p->C ? p->keep : p->C;
            CHECK(*es_encoder_channel_len(enc, in[b].slot) == want, "%s stream %d: cache length", name, b);
        } else {
            CHECK(p->C == 0 && p->keep == 0 && p->len < p->T, "%s offline stream: no cache, padded", name);
        }
        for (int r = 0; r < p->T; r++)
            CHECK(row_stream[p->rows + r] == b, "%s: row %d belongs to stream %d", name, p->rows + r, b);
        rows += p->T;
        if (p->C + p->T > max_klen)
            max_klen = p->C + p->T;
        if (p->T > max_T)
            max_T = p->T;
    }
    CHECK(t.N == rows && t.max_klen == max_klen && t.max_T == max_T && t.pos_rows == max_klen + max_T - 1,
          "%s: totals", name);
    /* every relative position a query/key pair reads lies inside the step's table, and is the
       one NeMo's rel_shift gives: position (C + i) - j for query i, key j */
    int pos_ok = 1;
    for (int b = 0; b < n; b++)
        for (int i = 0; i < plan[b].T; i++)
            for (int j = 0; j < plan[b].C + plan[b].T; j++) {
                int row = plan[b].pos_row0 + plan[b].T - 1 - i + j;
                int pos = (t.max_klen - 1) - row;
                if (row < 0 || row >= t.pos_rows || pos != (plan[b].C + i) - j)
                    pos_ok = 0;
            }
    CHECK(pos_ok, "%s: relative positions of every query/key pair", name);
    CHECK(t.sub_T[m->n_sub] == es_encoder_subsampled_length(m, t.max_width), "%s: subsampled volume", name);

    /* the same refusals, in the same words */
    es_encoder_input bad[4] = {in[0], in[0], in[0], in[0]};
    bad[0].lookahead = m->n_lookaheads;
    bad[1].width = 0;
    bad[2].drop_extra = 1000;
    bad[3].length = bad[3].width + 1;
    for (int i = 0; i < 4; i++) {
        err[0] = perr[0] = '\0';
        int a = es_encoder_step(enc, &bad[i], 1, out, err, sizeof err);
        int b = es_cuda_plan(m, &bad[i], 1, plan, NULL, &t, perr, sizeof perr);
        CHECK(a == -1 && b == -1 && strcmp(err, perr) == 0, "%s: bad input %d: CPU '%s', plan '%s'", name, i, err,
              perr);
    }
    free(row_stream);
    es_encoder_free(enc);
    es_slot_pool_free(pool);
    for (int i = 0; i < n; i++)
        free(feats[i]);
}

/* ---- cache layout, batch norm folding, positions ---- */

static void test_layout(const es_model *m, const char *name)
{
    es_cuda_layout l = es_cuda_cache_layout(m);
    size_t kv = (size_t)m->n_layers * m->max_cache_size * m->d_model * 2;
    size_t tc = sizeof(float) * (size_t)m->n_layers * (m->conv_kernel - 1) * m->d_model;
    CHECK(l.key >= kv && l.key < kv + 256 && l.value == l.key, "%s: key/value regions", name);
    CHECK(l.time >= tc && l.time < tc + 256 && l.length == 256, "%s: time and length regions", name);
    CHECK(l.key % 256 == 0 && l.time % 256 == 0, "%s: regions aligned", name);
    CHECK(l.rnnt == (m->has_rnnt ? (es_rnnt_state_bytes(m) + 255) / 256 * 256 : 0), "%s: RNNT region", name);
    CHECK(es_cuda_layout_bytes(&l) == l.key + l.value + l.time + l.length + l.rnnt, "%s: bytes per slot", name);
}

static void test_fold(const es_model *m, const char *name)
{
    int d = m->d_model, k = m->conv_kernel;
    float *w = malloc(sizeof(float) * (size_t)d * k), *b = malloc(sizeof(float) * (size_t)d);
    float *x = malloc(sizeof(float) * (size_t)k);
    double worst = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const es_layer *L = &m->layers[l];
        es_cuda_fold_dw(m, L, w, b);
        for (int c = 0; c < d; c++) {
            for (int s = 0; s < k; s++)
                x[s] = frand();
            /* the CPU encoder: conv + bias, then the norm's scale and shift */
            float ref = L->dw_b[c], got = b[c];
            for (int s = 0; s < k; s++) {
                ref += L->dw_w[(size_t)c * k + s] * x[s];
                got += w[(size_t)c * k + s] * x[s];
            }
            if (m->conv_norm == ES_NORM_BATCH)
                ref = ref * L->bn_scale[c] + L->bn_shift[c];
            double e = fabs((double)got - ref) / (fabs(ref) + 1.0);
            if (e > worst)
                worst = e;
        }
    }
    CHECK(worst < 1e-5, "%s: folded depthwise conv (%s) differs by %.3g", name,
          m->conv_norm == ES_NORM_BATCH ? "batch norm" : "layer norm, unchanged", worst);
    free(w);
    free(b);
    free(x);
}

/* The key/value rings against NeMo's update_cache (shift out the oldest keep rows, append the
   kept fresh ones, or only the last C of them), over random steps. */
static void test_ring(void)
{
    int ok = 1;
    for (int C = 1; C <= 12 && ok; C++) {
        int ref[12], ring[12], head = 0, next = 1;
        memset(ref, 0, sizeof ref);
        memset(ring, 0, sizeof ring);
        for (int step = 0; step < 40 && ok; step++) {
            int keep = (int)((rng = rng * 1103515245u + 12345u) >> 16) % (C + 4), fresh[16];
            for (int r = 0; r < keep; r++)
                fresh[r] = next++;
            /* NeMo */
            if (keep >= C) {
                memcpy(ref, fresh + keep - C, sizeof(int) * (size_t)C);
            } else if (keep > 0) {
                memmove(ref, ref + keep, sizeof(int) * (size_t)(C - keep));
                memcpy(ref + C - keep, fresh, sizeof(int) * (size_t)keep);
            }
            /* the ring, as the kernels do it */
            for (int r = ES_RING_FIRST(keep, C); r < keep; r++)
                ring[ES_RING_ROW(head, r, C)] = fresh[r];
            head = ES_RING_ADVANCE(head, keep, C);
            for (int j = 0; j < C; j++)
                if (ring[ES_RING_ROW(head, j, C)] != ref[j])
                    ok = 0;
        }
    }
    CHECK(ok, "key/value rings hold NeMo's cache rows in order");
}

static void test_positions(void)
{
    int d = 64, top = 80, rows = 2 * top + 1;
    float *p = malloc(sizeof(float) * (size_t)rows * d);
    es_cuda_fill_positions(d, top, rows, p);
    double worst = 0;
    int symmetric = 1;
    for (int r = 0; r < rows; r++) {
        int pos = top - r;
        for (int i = 0; i < d; i += 2) {
            double arg = pos * exp(-(double)i * log(10000.0) / d);
            worst = fmax(worst, fabs(p[(size_t)r * d + i] - sin(arg)));
            worst = fmax(worst, fabs(p[(size_t)r * d + i + 1] - cos(arg)));
            /* sin odd, cos even: row of -pos mirrors row of pos */
            int mr = top + pos;
            if (p[(size_t)mr * d + i] != -p[(size_t)r * d + i] || p[(size_t)mr * d + i + 1] != p[(size_t)r * d + i + 1])
                symmetric = 0;
        }
    }
    CHECK(worst < 1e-4, "position table vs double precision: %.3g", worst);
    CHECK(symmetric, "position table symmetric in the sign of the position");
    free(p);
}

/* ---- with a GPU: a ragged batch on both backends ---- */

#ifdef EARSHOT_HAVE_CUDA
static double rel_l2(const float *got, const float *ref, size_t n)
{
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        e += d * d;
        r += (double)ref[i] * ref[i];
    }
    return r > 0 ? sqrt(e / r) : sqrt(e);
}

static void test_gpu_step(const es_model *m, const char *name)
{
    char err[256] = "";
    es_encoder_input in[MAX_BATCH];
    float *feats[MAX_BATCH];
    void *states[MAX_BATCH] = {0};
    int n = make_batch(m, in, feats);
    size_t regions[ES_ENCODER_REGIONS];
    es_encoder_cache_regions(m, regions);
    es_slot_pool *pool = es_slot_pool_create(n, regions, ES_ENCODER_REGIONS);
    es_encoder *enc = es_encoder_create(m, pool, 0);
    es_cuda *cu = es_cuda_create(m, n, err, sizeof err);
    CHECK(cu != NULL, "%s: CUDA backend: %s", name, err);
    if (!cu)
        goto out;
    for (int i = 0; i < n; i++)
        es_slot_acquire(pool);
    /* RNNT: the host's decoder on the GPU's frames, state per stream, against the GPU's */
    int rnnt = m->has_rnnt && es_cuda_rnnt_on(cu), rnnt_ok = 1, rnnt_tokens = 0;
    for (int b = 0; rnnt && b < n; b++)
        states[b] = calloc(1, es_rnnt_state_bytes(m));
    /* three steps of one shape: the second reads the caches the first wrote; with graphs on,
       the first runs directly, the second is captured and the third replays the graph */
    for (int step = 0; step < 3; step++) {
        es_encoder_output co[MAX_BATCH], go[MAX_BATCH];
        CHECK(es_encoder_step(enc, in, n, co, err, sizeof err) == 0, "%s: CPU step: %s", name, err);
        /* copy the CPU's frames: the GPU step below does not touch them, but keep it obvious */
        float *cpu_frames[MAX_BATCH];
        for (int b = 0; b < n; b++) {
            cpu_frames[b] = malloc(sizeof(float) * (size_t)co[b].n_frames * m->d_model + 1);
            memcpy(cpu_frames[b], co[b].frames, sizeof(float) * (size_t)co[b].n_frames * m->d_model);
        }
        int rc = es_cuda_step(cu, in, n, ES_CUDA_FRAMES | (m->has_ctc ? ES_CUDA_CTC_IDS : 0), go, err, sizeof err);
        CHECK(rc == 0, "%s: GPU step: %s", name, err);
        for (int b = 0; rc == 0 && b < n; b++) {
            CHECK(go[b].n_frames == co[b].n_frames, "%s step %d stream %d: frames", name, step, b);
            double e = rel_l2(go[b].frames, cpu_frames[b], (size_t)co[b].n_frames * m->d_model);
            CHECK(e <= 1e-2, "%s step %d stream %d: rel L2 %.3g", name, step, b, e);
            if (in[b].slot >= 0) {
                int len = -1, k1 = m->conv_kernel - 1;
                es_cuda_read_channel_len(cu, in[b].slot, &len);
                CHECK(len == *es_encoder_channel_len(enc, in[b].slot), "%s stream %d: cache length", name, b);
                float *tc = malloc(sizeof(float) * (size_t)k1 * m->d_model + 1);
                es_cuda_read_time_cache(cu, in[b].slot, m->n_layers - 1, tc);
                double te = rel_l2(tc, es_encoder_time_cache(enc, in[b].slot, m->n_layers - 1), (size_t)k1 * m->d_model);
                CHECK(te <= 1e-2, "%s stream %d: conv cache rel L2 %.3g", name, b, te);
                free(tc);
            }
        }
        if (rc == 0 && rnnt) {
            int which[MAX_BATCH], B = 0;
            for (int b = 0; b < n; b++)
                if (in[b].slot >= 0)
                    which[B++] = b;
            CHECK(es_cuda_rnnt(cu, which, B, err, sizeof err) == 0, "%s: GPU RNNT: %s", name, err);
            for (int k = 0; k < B; k++) {
                int b = which[k], got = 0, cap = go[b].n_frames * m->max_symbols + 1;
                es_token *tok = malloc(sizeof(es_token) * (size_t)cap);
                int want = es_rnnt_greedy(m, states[b], go[b].frames, go[b].n_frames, 0, tok, cap);
                const int *g = es_cuda_rnnt_tokens(cu, k, &got);
                int same = got == want;
                for (int j = 0; same && j < got; j++)
                    same = g[2 * j] == tok[j].id && g[2 * j + 1] == tok[j].frame;
                rnnt_ok &= same;
                rnnt_tokens += want;
                free(tok);
            }
        }
        for (int b = 0; b < n; b++)
            free(cpu_frames[b]);
    }
    if (rnnt)
        CHECK(rnnt_ok, "%s: GPU RNNT tokens and frames equal the host's on the same frames (%d tokens)", name,
              rnnt_tokens);
    const char *gv = getenv("EARSHOT_CUDA_GRAPHS");
    printf("%s: %lu of 3 steps ran as CUDA graphs\n", name, es_cuda_graph_launches(cu));
    if (!(gv && strcmp(gv, "0") == 0))
        CHECK(es_cuda_graph_launches(cu) >= 1, "%s: a repeated shape ran as a graph (capture failed?)", name);
out:
    for (int b = 0; b < n; b++)
        free(states[b]);
    es_cuda_free(cu);
    es_encoder_free(enc);
    es_slot_pool_free(pool);
    for (int i = 0; i < n; i++)
        free(feats[i]);
}
#endif

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_cuda_backend GOLDEN_MODELS_DIR\n");
        return 2;
    }
    test_availability(argv[1]);
    test_positions();
    test_ring();
    int gpu = es_backend_available(ES_BACKEND_CUDA, NULL, 0);
    for (int i = 0; i < N_CASES; i++) {
        char path[1024], err[256];
        snprintf(path, sizeof path, "%s/%s.safetensors", argv[1], CASES[i]);
        es_model *m = es_model_load(path, err, sizeof err);
        CHECK(m != NULL, "%s: %s", CASES[i], err);
        if (!m)
            continue;
        test_plan(m, CASES[i]);
        test_layout(m, CASES[i]);
        test_fold(m, CASES[i]);
#ifdef EARSHOT_HAVE_CUDA
        if (gpu)
            test_gpu_step(m, CASES[i]);
#endif
        es_model_free(m);
    }
    if (!gpu)
        printf("skipped: no GPU (the GPU step comparison did not run)\n");
    printf("%s: %d passed, %d failed\n", failed ? "FAIL" : "PASS", passed, failed);
    return failed ? 1 : 0;
}
