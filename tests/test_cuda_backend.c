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
 * The batch-size buckets and padded steps are checked on the plan (real streams unchanged,
 * padding on the scratch slot, one key per bucket, outputs of real streams only) and, through
 * the CPU encoder's identical ragged contract, on real frames. With a usable GPU it also runs a
 * ragged batch (every look-ahead, first and later chunks, an offline pass) and padded steady
 * steps on both backends and compares outputs and caches within DESIGN.md's GPU tolerance
 * (relative L2 <= 1e-2).
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

/* ---- batch-size buckets and padded steps ---- */

static void test_buckets(void)
{
    static const int want[][2] = {
        {1, 1},     {2, 2},     {3, 4},     {5, 8},       {129, 256},    {256, 256},    {257, 320},
        {320, 320}, {321, 384}, {513, 640}, {1025, 1280}, {4096, 4096},  {4097, 5120},  {0, 0},
        {(1 << 20) + 1, (1 << 20) + 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(es_cuda_bucket(want[i][0]) == want[i][1], "bucket of %d: %d, expected %d", want[i][0],
              es_cuda_bucket(want[i][0]), want[i][1]);
    int ok = 1, distinct = 0, prev = 0;
    for (int n = 1; n <= 8192; n++) {
        int b = es_cuda_bucket(n);
        /* covers n, is a bucket itself, never shrinks as n grows, bounded padding above 256 */
        if (b < n || es_cuda_bucket(b) != b || b < prev || (n > ES_CUDA_BUCKET_POW2_MAX && 4 * (b - n) >= n))
            ok = 0;
        if (n <= 4096 && b != prev)
            distinct++;
        prev = b;
    }
    CHECK(ok, "buckets cover n, are fixed points, grow with n and pad less than 25 %% above %d",
          ES_CUDA_BUCKET_POW2_MAX);
    CHECK(distinct == 25, "25 buckets up to 4096 streams, got %d", distinct);
}

/* A chunk of look-ahead la: first (no pre-encode columns, no drop) or later. */
static es_encoder_input chunk_input(const es_model *m, int la, int first, const float *f, int slot)
{
    const es_streaming_cfg *s = &m->streaming[la];
    int width = first ? s->chunk_size[0] : s->pre_encode_cache_size + s->chunk_size[1];
    return (es_encoder_input){.features = f, .width = width, .length = width, .lookahead = la,
                              .drop_extra = first ? 0 : s->drop_extra_pre_encoded, .slot = slot};
}

static int frames_of(const es_model *m, const es_encoder_input *x)
{
    return es_encoder_subsampled_length(m, x->width) - x->drop_extra;
}

/* Plans in[0..n) as the backend runs it (padded to its bucket when it can be) and checks the
   padded plan against the unpadded one. Returns the padded totals in *key. */
static void check_padded_plan(const es_model *m, const char *name, const es_encoder_input *in, int n,
                              es_cuda_totals *key)
{
    const int scratch = 1000;
    int tmpl = es_cuda_pad_template(m, in, n), n_pad = es_cuda_padded_n(m, in, n);
    CHECK(tmpl >= 0 && n_pad == es_cuda_bucket(n), "%s: %d streams can be padded to %d", name, n, es_cuda_bucket(n));
    if (tmpl < 0)
        return;
    for (int b = 0; b < n; b++)
        CHECK(in[b].width <= in[tmpl].width, "%s: the template is the widest stream", name);
    es_encoder_input *pin = malloc(sizeof *pin * (size_t)n_pad);
    es_cuda_pad_inputs(in, n, n_pad, tmpl, scratch, pin);
    es_cuda_stream *p0 = malloc(sizeof *p0 * (size_t)n), *p1 = malloc(sizeof *p1 * (size_t)n_pad);
    es_cuda_totals t0, t1;
    char err[256] = "";
    CHECK(es_cuda_plan(m, in, n, p0, NULL, &t0, err, sizeof err) == 0, "%s: plan: %s", name, err);
    CHECK(es_cuda_plan(m, pin, n_pad, p1, NULL, &t1, err, sizeof err) == 0, "%s: padded plan: %s", name, err);
    int *rs = malloc(sizeof(int) * (size_t)t1.N + 1);
    es_cuda_plan(m, pin, n_pad, p1, rs, &t1, err, sizeof err);

    int same = 1, pad_ok = 1, rows_ok = 1, T = p0[0].T;
    for (int b = 0; b < n; b++)
        same &= memcmp(&pin[b], &in[b], sizeof *in) == 0 && memcmp(&p1[b], &p0[b], sizeof *p0) == 0;
    for (int b = n; b < n_pad; b++) {
        const es_cuda_stream *p = &p1[b];
        pad_ok &= pin[b].slot == scratch && pin[b].features == NULL && !pin[b].keep_all && p->slot == scratch &&
                  p->T == T && p->C == p0[0].C && p->pos_row0 == 0;
    }
    for (int b = 0, r = 0; b < n_pad; r += p1[b].T, b++) {
        rows_ok &= p1[b].rows == r;
        for (int k = 0; k < p1[b].T; k++)
            rows_ok &= rs[p1[b].rows + k] == b;
    }
    CHECK(same, "%s, %d streams: real streams unchanged by the padding", name, n);
    CHECK(pad_ok, "%s, %d streams: padding streams on the scratch slot with the real streams' shape", name, n);
    CHECK(rows_ok, "%s, %d streams: padded rows contiguous, every row names its stream", name, n);
    CHECK(t1.n == n_pad && t1.N == n_pad * T && t1.max_width == t0.max_width && t1.max_klen == t0.max_klen &&
              t1.max_T == t0.max_T && t1.pos_rows == t0.pos_rows &&
              memcmp(t1.sub_T, t0.sub_T, sizeof t0.sub_T) == 0,
          "%s, %d streams: padded totals", name, n);
    CHECK(es_cuda_real_rows(p1, n) == t0.N, "%s: the real streams' rows are the unpadded step's", name);

    /* outputs: only the real streams', at their rows; nothing past them is written */
    es_encoder_output *out = malloc(sizeof *out * (size_t)(n_pad + 1));
    for (int b = 0; b <= n_pad; b++)
        out[b] = (es_encoder_output){.frames = (const float *)out, .n_frames = -7};
    const float base[1] = {0};
    int d = m->d_model, map_ok = 1;
    es_cuda_map_outputs(p1, n, base, d, out);
    for (int b = 0; b < n; b++)
        map_ok &= out[b].frames == base + (size_t)p0[b].rows * d && out[b].n_frames == p0[b].n_out;
    for (int b = n; b <= n_pad; b++)
        map_ok &= out[b].n_frames == -7 && out[b].frames == (const float *)out;
    es_cuda_map_outputs(p1, n, NULL, d, out);
    for (int b = 0; b < n; b++)
        map_ok &= out[b].frames == NULL && out[b].n_frames == p0[b].n_out;
    CHECK(map_ok, "%s, %d streams: outputs mapped for the real streams only", name, n);
    *key = t1;
    free(out);
    free(rs);
    free(p0);
    free(p1);
    free(pin);
}

static void test_padding(const es_model *m, const char *name)
{
    enum { MAXN = 40 };
    static const float zero[1];
    es_encoder_input in[MAXN + 2];
    for (int la = 0; la < m->n_lookaheads; la++) {
        /* steady streams of every count up to MAXN: one key per bucket, whatever the count,
           lengths, keep_all or cache slots */
        es_cuda_totals keys[8];
        int have[8] = {0}, keys_ok = 1;
        for (int n = 1; n <= MAXN; n++) {
            for (int b = 0; b < n; b++) {
                in[b] = chunk_input(m, la, 0, zero, (b * 7) % MAXN);
                in[b].keep_all = b % 3 == 1;
                in[b].length = in[b].width - b % 2;
            }
            es_cuda_totals t;
            check_padded_plan(m, name, in, n, &t);
            int k = 0;
            while ((1 << k) < es_cuda_bucket(n))
                k++;
            if (have[k])
                keys_ok &= memcmp(&keys[k], &t, sizeof t) == 0;
            keys[k] = t;
            have[k] = 1;
        }
        CHECK(keys_ok, "%s look-ahead %d: every count of steady streams in a bucket has the bucket's key", name, la);

        /* a stream's first chunk: narrower, no drop; it joins the bucket when it gives as many
           frames (then the template stays a later chunk, and the key is the steady one) */
        int n = 5;
        for (int b = 0; b < n; b++)
            in[b] = chunk_input(m, la, 0, zero, b);
        es_cuda_totals steady, t;
        check_padded_plan(m, name, in, n, &steady);
        in[n] = chunk_input(m, la, 1, zero, n);
        int joins = frames_of(m, &in[n]) == frames_of(m, &in[0]);
        CHECK((es_cuda_pad_template(m, in, n + 1) >= 0) == joins, "%s look-ahead %d: a first chunk %s the bucket",
              name, la, joins ? "joins" : "leaves");
        if (joins) {
            in[n - 1] = in[n]; /* still 5 streams, one of them a first chunk */
            check_padded_plan(m, name, in, n, &t);
            CHECK(es_cuda_pad_template(m, in, n) != n - 1 && memcmp(&t, &steady, sizeof t) == 0,
                  "%s look-ahead %d: a step with a first chunk has the steady key", name, la);
            in[n - 1] = chunk_input(m, la, 0, zero, n - 1);
        }
        /* a last chunk with fewer frames, an offline pass: exact shapes */
        in[n] = in[0];
        in[n].width = in[0].width - 8;
        in[n].length = in[n].width;
        in[n].keep_all = 1;
        int fewer = in[n].width >= 1 && frames_of(m, &in[n]) != frames_of(m, &in[0]);
        CHECK(!fewer || (es_cuda_pad_template(m, in, n + 1) < 0 && es_cuda_padded_n(m, in, n + 1) == n + 1),
              "%s look-ahead %d: a last chunk with fewer frames keeps the exact shape", name, la);
        in[n] = (es_encoder_input){.features = zero, .width = 61, .length = 50, .lookahead = 0, .slot = -1};
        CHECK(es_cuda_pad_template(m, in, n + 1) < 0, "%s: an offline pass keeps the exact shape", name);
        /* another look-ahead in the same step: padded only when T and C agree */
        for (int lb = 0; lb < m->n_lookaheads; lb++) {
            in[n] = chunk_input(m, lb, 0, zero, n);
            int agree = frames_of(m, &in[n]) == frames_of(m, &in[0]) &&
                        m->streaming[lb].last_channel_cache_size == m->streaming[la].last_channel_cache_size;
            CHECK((es_cuda_pad_template(m, in, n + 1) >= 0) == agree, "%s: look-aheads %d and %d %s", name, la, lb,
                  agree ? "share buckets" : "do not");
        }
        /* refused inputs are not padded (the plan reports them) */
        in[n] = in[0];
        in[n].lookahead = m->n_lookaheads;
        CHECK(es_cuda_pad_template(m, in, n + 1) < 0, "%s: a bad look-ahead is not padded", name);
    }
    CHECK(es_cuda_pad_template(m, in, 0) < 0 && es_cuda_padded_n(m, in, 0) == 0, "%s: an empty step", name);
}

/* The padding on the CPU encoder, which has the same ragged contract: a step padded with
   streams that share one scratch slot gives the real streams the frames and caches of the
   unpadded step, over two steps (the second reads caches written beside the padding). */
static void test_padding_cpu(const es_model *m, const char *name)
{
    enum { N = 5 };
    int n_pad = es_cuda_bucket(N), la = m->n_lookaheads - 1;
    size_t regions[ES_ENCODER_REGIONS];
    es_encoder_cache_regions(m, regions);
    es_slot_pool *pa = es_slot_pool_create(N, regions, ES_ENCODER_REGIONS);
    es_slot_pool *pb = es_slot_pool_create(N + 1, regions, ES_ENCODER_REGIONS);
    es_encoder *ea = es_encoder_create(m, pa, 0), *eb = es_encoder_create(m, pb, 0);
    for (int i = 0; i < N; i++) {
        es_slot_acquire(pa);
        es_slot_acquire(pb);
    }
    es_slot_acquire(pb); /* slot N: the scratch slot */
    es_encoder_input in[N], pin[8];
    float *feats[N];
    int width = chunk_input(m, la, 0, NULL, 0).width;
    float *zeros = calloc((size_t)width * m->n_mels, sizeof(float));
    for (int b = 0; b < N; b++) {
        feats[b] = malloc(sizeof(float) * (size_t)width * m->n_mels);
        in[b] = chunk_input(m, la, 0, feats[b], b);
    }
    double worst = 0;
    int frames_ok = 1, len_ok = 1;
    for (int step = 0; step < 2; step++) {
        for (int b = 0; b < N; b++)
            for (int i = 0; i < width * m->n_mels; i++)
                feats[b][i] = frand();
        es_cuda_pad_inputs(in, N, n_pad, es_cuda_pad_template(m, in, N), N, pin);
        for (int b = N; b < n_pad; b++)
            pin[b].features = zeros; /* the backend feeds padding streams zeros */
        es_encoder_output oa[N], ob[8];
        char err[256] = "";
        CHECK(es_encoder_step(ea, in, N, oa, err, sizeof err) == 0, "%s: CPU step: %s", name, err);
        /* oa's frames live until ea's next step: eb is another encoder */
        CHECK(es_encoder_step(eb, pin, n_pad, ob, err, sizeof err) == 0, "%s: padded CPU step: %s", name, err);
        for (int b = 0; b < N; b++) {
            frames_ok &= oa[b].n_frames == ob[b].n_frames;
            for (int i = 0; i < oa[b].n_frames * m->d_model && frames_ok; i++)
                worst = fmax(worst, fabs((double)oa[b].frames[i] - ob[b].frames[i]) / (fabs(oa[b].frames[i]) + 1));
            len_ok &= *es_encoder_channel_len(ea, b) == *es_encoder_channel_len(eb, b);
        }
    }
    CHECK(frames_ok && worst < 1e-5, "%s: padded CPU step gives the real streams the same frames (%.3g)", name,
          worst);
    CHECK(len_ok, "%s: padded CPU step leaves the real streams' cache lengths as the unpadded one", name);
    es_encoder_free(ea);
    es_encoder_free(eb);
    es_slot_pool_free(pa);
    es_slot_pool_free(pb);
    for (int b = 0; b < N; b++)
        free(feats[b]);
    free(zeros);
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

/* Padded steps on the GPU: 3 steady streams (bucket 4, one padding stream) for three steps,
   then 4 (the same bucket, no padding), against the CPU encoder; the step of 4 replays the
   graph the steps of 3 captured, and the padding never touches slot 3 before it is used. */
static void test_gpu_padding(const es_model *m, const char *name)
{
    enum { S = 4 };
    char err[256] = "";
    size_t regions[ES_ENCODER_REGIONS];
    es_encoder_cache_regions(m, regions);
    es_slot_pool *pool = es_slot_pool_create(S, regions, ES_ENCODER_REGIONS);
    es_encoder *enc = es_encoder_create(m, pool, 0);
    es_cuda *cu = es_cuda_create(m, S, err, sizeof err);
    CHECK(cu != NULL, "%s: CUDA backend: %s", name, err);
    float *feats[S];
    es_encoder_input in[S];
    int la = m->n_lookaheads - 1, width = chunk_input(m, la, 0, NULL, 0).width;
    for (int b = 0; b < S; b++) {
        es_slot_acquire(pool);
        feats[b] = malloc(sizeof(float) * (size_t)width * m->n_mels);
        in[b] = chunk_input(m, la, 0, feats[b], b);
    }
    const char *gv = getenv("EARSHOT_CUDA_GRAPHS");
    int graphs = !(gv && strcmp(gv, "0") == 0);
    unsigned long before = cu ? es_cuda_graph_launches(cu) : 0;
    for (int step = 0; cu && step < 4; step++) {
        int n = step < 3 ? S - 1 : S;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < width * m->n_mels; i++)
                feats[b][i] = frand();
        es_encoder_output co[S], go[S];
        CHECK(es_encoder_step(enc, in, n, co, err, sizeof err) == 0, "%s: CPU step: %s", name, err);
        float *ref[S];
        for (int b = 0; b < n; b++) {
            ref[b] = malloc(sizeof(float) * (size_t)co[b].n_frames * m->d_model + 1);
            memcpy(ref[b], co[b].frames, sizeof(float) * (size_t)co[b].n_frames * m->d_model);
        }
        unsigned long launches = es_cuda_graph_launches(cu);
        int rc = es_cuda_step(cu, in, n, ES_CUDA_FRAMES | (m->has_ctc ? ES_CUDA_CTC_IDS : 0), go, err, sizeof err);
        CHECK(rc == 0, "%s: padded GPU step: %s", name, err);
        for (int b = 0; rc == 0 && b < n; b++) {
            CHECK(go[b].n_frames == co[b].n_frames, "%s padded step %d stream %d: frames", name, step, b);
            double e = rel_l2(go[b].frames, ref[b], (size_t)co[b].n_frames * m->d_model);
            CHECK(e <= 1e-2, "%s padded step %d stream %d: rel L2 %.3g", name, step, b, e);
            int len = -1;
            es_cuda_read_channel_len(cu, b, &len);
            CHECK(len == *es_encoder_channel_len(enc, b), "%s padded step %d stream %d: cache length", name, step, b);
        }
        if (step < 3) {
            int len = -1;
            es_cuda_read_channel_len(cu, S - 1, &len);
            CHECK(len == 0, "%s: the padding left the unused slot alone (cache length %d)", name, len);
        }
        if (graphs && step == 3)
            CHECK(es_cuda_graph_launches(cu) == launches + 1, "%s: 4 streams replayed the graph of bucket 4", name);
        for (int b = 0; b < n; b++)
            free(ref[b]);
    }
    if (cu) {
        printf("%s: %lu of 4 padded steps ran as CUDA graphs\n", name, es_cuda_graph_launches(cu) - before);
        if (graphs)
            CHECK(es_cuda_graph_launches(cu) - before == 3, "%s: steps 2-4 ran as the bucket's graph", name);
    }
    es_cuda_free(cu);
    es_encoder_free(enc);
    es_slot_pool_free(pool);
    for (int b = 0; b < S; b++)
        free(feats[b]);
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
    test_buckets();
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
        test_padding(m, CASES[i]);
        test_padding_cpu(m, CASES[i]);
#ifdef EARSHOT_HAVE_CUDA
        if (gpu) {
            test_gpu_step(m, CASES[i]);
            test_gpu_padding(m, CASES[i]);
        }
#endif
        es_model_free(m);
    }
    if (!gpu)
        printf("skipped: no GPU (the GPU step comparison did not run)\n");
    printf("%s: %d passed, %d failed\n", failed ? "FAIL" : "PASS", passed, failed);
    return failed ? 1 : 0;
}
