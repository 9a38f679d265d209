/*
 * encoder.c - one batched cache-aware FastConformer step on the CPU (see encoder.h).
 *
 * The step follows NeMo's ConformerEncoder.forward_internal literally:
 *   subsampling (causal convs, length masks) -> drop the pre-encode frames -> x * sqrt(d)
 *   -> per layer: x += 0.5 FF1(LN x); x += MHA_relpos(LN x | cache); x += Conv(LN x | cache);
 *      x += 0.5 FF2(LN x); x = LN x
 *   -> keep valid_out_len frames (unless it is the stream's last chunk, chunked_limited style).
 * The attention of a stream runs over [its cache | its chunk], with the mask NeMo builds over
 * that combined length, and relative positions counted over it too. NeMo's cache holds the
 * LayerNorm'ed attention inputs and recomputes their keys and values at every step; here the
 * slot also keeps those keys and values, so a step projects only its new frames. The positional
 * projections depend only on (layer, cache length, chunk length) and are computed once.
 *
 * Parallelism: all streams' frames are stacked, so every linear layer is one call over all of
 * them (split across threads by output panels, see ops.c); subsampling, attention and the
 * depthwise convolution, which depend on a stream's own cache, run one stream per thread.
 *
 * Buffers grow on demand and are kept between steps, so a steady stream of steps allocates
 * nothing.
 */
#include "encoder.h"

#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    BUF_X, BUF_Y, BUF_Q, BUF_KNEW, BUF_VNEW, BUF_O, BUF_H, BUF_Z, BUF_SCORES, BUF_QU, BUF_QV, BUF_POS, BUF_PE,
    BUF_DWIN, N_BUFS
};

/* Regions of a slot, relative to the encoder's first region. */
enum { REG_CHANNEL, REG_TIME, REG_LEN, REG_KEY, REG_VALUE };

/* linear_pos of the positional embeddings depends only on (layer, klen, T): a streaming
   session sees a handful of (klen, T) pairs, so their projections are computed once. */
#define POS_CACHE_ENTRIES 32
typedef struct {
    int klen, T;
    float *proj; /* [n_layers][klen + T - 1][d_model] */
} pos_entry;

/* One thread's buffers for the subsampling of one stream at a time. */
enum { SUB_A, SUB_B, SUB_COLS, SUB_OUT, N_SUB_BUFS };
typedef struct {
    float *buf[N_SUB_BUFS];
    size_t cap[N_SUB_BUFS];
} sub_scratch;

typedef struct {
    int rows;      /* first row of this stream in the stacked frame matrix */
    int T;         /* encoder frames of this chunk (after the pre-encode drop) */
    int len;       /* valid frames (== T when streaming) */
    int C;         /* attention cache length (0 offline) */
    int pos_group; /* index of the stream whose positional projection this one reuses */
    int pos_row;   /* first row of that projection in BUF_POS (when not cached) */
    const float *pos_cached; /* [n_layers][klen+T-1][d] from the cache, or NULL */
    size_t scratch;          /* offset of this stream's attention scratch */
} stream_plan;

struct es_encoder {
    const es_model *m;
    es_slot_pool *pool;
    int region;
    float *buf[N_BUFS];
    size_t cap[N_BUFS];
    stream_plan *plan;
    int plan_cap;
    float *pe;    /* sinusoid table for positions 0..pe_rows-1 (negatives by symmetry) */
    int pe_rows;
    pos_entry pos_cache[POS_CACHE_ENTRIES];
    int n_pos_cache;
    sub_scratch *sub; /* one per compute thread */
    int n_sub;
};

/* A growable float buffer: returns *b with room for n floats, or NULL when out of memory. */
static float *grow(float **b, size_t *cap, size_t n)
{
    if (n == 0)
        n = 1;
    if (*cap < n) {
        size_t want = n + n / 4;
        float *p = realloc(*b, want * sizeof(float));
        if (!p)
            return NULL;
        *b = p;
        *cap = want;
    }
    return *b;
}

static float *buf(es_encoder *e, int id, size_t n)
{
    return grow(&e->buf[id], &e->cap[id], n);
}

int es_encoder_cache_regions(const es_model *m, size_t *region_bytes)
{
    size_t channel = sizeof(float) * (size_t)m->n_layers * (size_t)m->max_cache_size * (size_t)m->d_model;
    region_bytes[REG_CHANNEL] = channel;
    region_bytes[REG_TIME] = sizeof(float) * (size_t)m->n_layers * (size_t)(m->conv_kernel - 1) * (size_t)m->d_model;
    region_bytes[REG_LEN] = sizeof(int32_t);
    region_bytes[REG_KEY] = channel;
    region_bytes[REG_VALUE] = channel;
    return ES_ENCODER_REGIONS;
}

es_encoder *es_encoder_create(const es_model *m, es_slot_pool *pool, int first_region)
{
    es_encoder *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->m = m;
    e->pool = pool;
    e->region = first_region;
    return e;
}

void es_encoder_free(es_encoder *e)
{
    if (!e)
        return;
    for (int i = 0; i < N_BUFS; i++)
        free(e->buf[i]);
    free(e->plan);
    free(e->pe);
    for (int i = 0; i < e->n_pos_cache; i++)
        free(e->pos_cache[i].proj);
    for (int t = 0; t < e->n_sub; t++)
        for (int i = 0; i < N_SUB_BUFS; i++)
            free(e->sub[t].buf[i]);
    free(e->sub);
    free(e);
}

static float *layer_cache(es_encoder *e, int slot, int region, int layer)
{
    const es_model *m = e->m;
    float *base = es_slot_region(e->pool, slot, e->region + region);
    return base + (size_t)layer * m->max_cache_size * m->d_model;
}

float *es_encoder_channel_cache(es_encoder *e, int slot, int layer)
{
    return layer_cache(e, slot, REG_CHANNEL, layer);
}

float *es_encoder_time_cache(es_encoder *e, int slot, int layer)
{
    const es_model *m = e->m;
    float *base = es_slot_region(e->pool, slot, e->region + REG_TIME);
    return base + (size_t)layer * (m->conv_kernel - 1) * m->d_model;
}

int *es_encoder_channel_len(es_encoder *e, int slot)
{
    return es_slot_region(e->pool, slot, e->region + REG_LEN);
}

/* ---- subsampling ---- */

static int conv_out_len(int n)
{
    /* causal padding 2 left + 1 right, kernel 3, stride 2 */
    return n / 2 + 1;
}

int es_encoder_subsampled_length(const es_model *m, int columns)
{
    int n = columns;
    for (int i = 0; i < m->n_sub; i++)
        if (m->sub[i].stride == 2)
            n = conv_out_len(n);
    return n;
}

/* Zero time rows >= len of a [ch][time][freq] volume: MaskedConvSequential's length mask. */
static void mask_time(float *x, int ch, int time, int freq, int len)
{
    if (len >= time)
        return;
    if (len < 0)
        len = 0;
    for (int c = 0; c < ch; c++)
        memset(x + ((size_t)c * time + len) * freq, 0, sizeof(float) * (size_t)(time - len) * freq);
}

/* 3x3 stride-2 conv with causal padding (2 before, 1 after, in time and frequency).
   Full convs go through im2col + GEMM; depthwise ones are direct loops. */
static int sub_conv(sub_scratch *sc, const es_sub_stage *st, const float *in, int T, int F, float *out, int To,
                    int Fo)
{
    size_t plane = (size_t)To * Fo;
    if (st->kind == ES_CONV_DEPTHWISE) {
        for (int c = 0; c < st->out_ch; c++) {
            const float *w = st->w + (size_t)c * 9;
            const float *src = in + (size_t)c * T * F;
            float *dst = out + (size_t)c * plane;
            for (int t = 0; t < To; t++)
                for (int f = 0; f < Fo; f++) {
                    float acc = st->b[c];
                    for (int kt = 0; kt < 3; kt++) {
                        int ti = 2 * t + kt - 2;
                        if (ti < 0 || ti >= T)
                            continue;
                        for (int kf = 0; kf < 3; kf++) {
                            int fi = 2 * f + kf - 2;
                            if (fi >= 0 && fi < F)
                                acc += w[kt * 3 + kf] * src[(size_t)ti * F + fi];
                        }
                    }
                    dst[(size_t)t * Fo + f] = acc;
                }
        }
        return 0;
    }
    /* im2col: cols[(ci*9 + kt*3 + kf)][t*Fo + f] */
    int K = st->in_ch * 9;
    float *cols = grow(&sc->buf[SUB_COLS], &sc->cap[SUB_COLS], (size_t)K * plane);
    if (!cols)
        return -1;
    for (int ci = 0; ci < st->in_ch; ci++)
        for (int kt = 0; kt < 3; kt++)
            for (int kf = 0; kf < 3; kf++) {
                float *row = cols + (size_t)(ci * 9 + kt * 3 + kf) * plane;
                const float *src = in + (size_t)ci * T * F;
                for (int t = 0; t < To; t++) {
                    int ti = 2 * t + kt - 2;
                    for (int f = 0; f < Fo; f++) {
                        int fi = 2 * f + kf - 2;
                        row[(size_t)t * Fo + f] =
                            (ti >= 0 && ti < T && fi >= 0 && fi < F) ? src[(size_t)ti * F + fi] : 0.0f;
                    }
                }
            }
    for (int co = 0; co < st->out_ch; co++)
        for (size_t i = 0; i < plane; i++)
            out[(size_t)co * plane + i] = st->b[co];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, st->out_ch, (int)plane, K, 1.0f, st->w, K, cols,
                (int)plane, 1.0f, out, (int)plane);
    return 0;
}

/* Runs the subsampling of one stream's chunk; writes [To][d_model] to out. Returns To, or -1. */
static int subsample(const es_model *m, sub_scratch *sc, const es_encoder_input *in, float *out)
{
    int T = in->width, F = m->n_mels, len = in->length;
    int maxc = m->sub_channels > 1 ? m->sub_channels : 1;
    /* largest volume is the first conv's output: ch x (T/2+1) x (F/2+1); the input is 1 x T x F */
    size_t need = (size_t)maxc * (size_t)conv_out_len(T) * (size_t)conv_out_len(F);
    if (need < (size_t)T * F)
        need = (size_t)T * F;
    float *a = grow(&sc->buf[SUB_A], &sc->cap[SUB_A], need), *b = grow(&sc->buf[SUB_B], &sc->cap[SUB_B], need);
    if (!a || !b)
        return -1;
    memcpy(a, in->features, sizeof(float) * (size_t)T * F);
    int ch = 1;
    mask_time(a, ch, T, F, len);
    for (int i = 0; i < m->n_sub; i++) {
        const es_sub_stage *st = &m->sub[i];
        int To = T, Fo = F;
        if (st->kind == ES_CONV_POINTWISE) {
            size_t plane = (size_t)T * F;
            for (int co = 0; co < st->out_ch; co++)
                for (size_t p = 0; p < plane; p++)
                    b[(size_t)co * plane + p] = st->b[co];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, st->out_ch, (int)plane, st->in_ch, 1.0f, st->w,
                        st->in_ch, a, (int)plane, 1.0f, b, (int)plane);
        } else {
            To = conv_out_len(T);
            Fo = conv_out_len(F);
            if (sub_conv(sc, st, a, T, F, b, To, Fo) != 0)
                return -1;
            len = conv_out_len(len);
        }
        ch = st->out_ch;
        size_t n = (size_t)ch * To * Fo;
        if (st->relu_after)
            for (size_t p = 0; p < n; p++)
                b[p] = b[p] > 0.0f ? b[p] : 0.0f;
        mask_time(b, ch, To, Fo, len);
        float *t = a;
        a = b;
        b = t;
        T = To;
        F = Fo;
    }
    /* [ch][T][F] -> [T][ch*F], then the output projection */
    float *flat = b;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < ch; c++)
            memcpy(flat + (size_t)t * ch * F + (size_t)c * F, a + ((size_t)c * T + t) * F, sizeof(float) * F);
    es_linear_forward(&m->sub_out, flat, T, out);
    return T;
}

/* ---- relative positions ---- */

/* Ensures the sinusoid table covers positions 0..n-1 (NeMo's RelPositionalEncoding, in fp32). */
static int ensure_pe(es_encoder *e, int n)
{
    if (n <= e->pe_rows)
        return 0;
    const es_model *m = e->m;
    int d = m->d_model, rows = n + 64;
    float *pe = realloc(e->pe, sizeof(float) * (size_t)rows * d);
    if (!pe)
        return -1;
    e->pe = pe;
    float k = -(float)(log(10000.0) / d);
    for (int p = e->pe_rows; p < rows; p++)
        for (int i = 0; i < d; i += 2) {
            float div = expf((float)i * k);
            float arg = (float)p * div;
            pe[(size_t)p * d + i] = sinf(arg);
            if (i + 1 < d)
                pe[(size_t)p * d + i + 1] = cosf(arg);
        }
    e->pe_rows = rows;
    return 0;
}

/* Rows of positional embeddings for positions klen-1 down to -(T-1), into dst [klen+T-1][d]. */
static void fill_pos_rows(es_encoder *e, int klen, int T, float *dst)
{
    int d = e->m->d_model;
    for (int r = 0; r < klen + T - 1; r++) {
        int pos = klen - 1 - r;
        const float *src = e->pe + (size_t)abs(pos) * d;
        float *o = dst + (size_t)r * d;
        if (pos >= 0) {
            memcpy(o, src, sizeof(float) * d);
        } else {
            for (int i = 0; i < d; i += 2) {
                o[i] = -src[i]; /* sin is odd, cos even */
                if (i + 1 < d)
                    o[i + 1] = src[i + 1];
            }
        }
    }
}

/* ---- positional projections ---- */

/* The projections of all layers for (klen, T), from the cache or newly computed into it;
   NULL when the cache is full (the caller then projects per step). */
static const float *cached_pos(es_encoder *e, int klen, int T)
{
    const es_model *m = e->m;
    for (int i = 0; i < e->n_pos_cache; i++)
        if (e->pos_cache[i].klen == klen && e->pos_cache[i].T == T)
            return e->pos_cache[i].proj;
    if (e->n_pos_cache == POS_CACHE_ENTRIES)
        return NULL;
    size_t rows = (size_t)(klen + T - 1), d = (size_t)m->d_model;
    float *pe = malloc(sizeof(float) * rows * d);
    float *proj = malloc(sizeof(float) * rows * d * (size_t)m->n_layers);
    if (!pe || !proj) {
        free(pe);
        free(proj);
        return NULL;
    }
    fill_pos_rows(e, klen, T, pe);
    for (int l = 0; l < m->n_layers; l++)
        es_linear_forward(&m->layers[l].pos, pe, (int)rows, proj + (size_t)l * rows * d);
    free(pe);
    e->pos_cache[e->n_pos_cache++] = (pos_entry){.klen = klen, .T = T, .proj = proj};
    return proj;
}

/* ---- attention of one stream ---- */

static int allowed(const es_model *m, const es_streaming_cfg *s, int q_abs, int key)
{
    if (!s)
        return 1; /* full context: the buffered baseline */
    int left = s->att_context[0], right = s->att_context[1];
    if (m->att_style == ES_ATT_REGULAR)
        return key >= q_abs - left && key <= q_abs + right;
    int chunk = right + 1;
    int left_chunks = left / chunk;
    int diff = q_abs / chunk - key / chunk;
    return diff >= 0 && diff <= left_chunks;
}

/* Scores over [cache | chunk] for every head, NeMo's rel_shift, mask, softmax, weighted sum.
   Keys and values are read where they lie: the first C rows from the stream's K/V caches, the
   rest from this step's projections. The matrices are tiny (a few queries, about a hundred
   keys, one head's width), so plain dot products beat a BLAS call and need no copies. All
   scratch is the stream's own, so streams run in parallel. */
static void attend_stream(const es_model *m, const es_layer *L, const es_streaming_cfg *s, const stream_plan *p,
                          int cache_valid, const float *Q, const float *Kc, const float *Kn, const float *Vc,
                          const float *Vn, const float *P, float *O, float *scores, float *qu, float *qv)
{
    int d = m->d_model, dh = m->d_head, T = p->T, C = p->C, klen = C + T;
    int offset = C - cache_valid; /* cache slots before this are empty */
    int valid_end = C + p->len;   /* keys/queries at or after this are padding */
    float scale = 1.0f / sqrtf((float)dh);
    for (int h = 0; h < m->n_heads; h++) {
        const float *u = L->pos_bias_u + (size_t)h * dh, *v = L->pos_bias_v + (size_t)h * dh;
        for (int i = 0; i < T; i++)
            for (int c = 0; c < dh; c++) {
                float q = Q[((size_t)p->rows + i) * d + h * dh + c];
                qu[(size_t)i * dh + c] = q + u[c];
                qv[(size_t)i * dh + c] = q + v[c];
            }
        for (int i = 0; i < T; i++) {
            int q_abs = C + i;
            float *row = scores + (size_t)i * klen;
            const float *qui = qu + (size_t)i * dh, *qvi = qv + (size_t)i * dh;
            int q_valid = q_abs >= offset && q_abs < valid_end;
            float maxv = -INFINITY;
            for (int j = 0; j < klen; j++) {
                if (!(q_valid && j >= offset && j < valid_end && allowed(m, s, q_abs, j))) {
                    row[j] = NAN; /* marker: masked */
                    continue;
                }
                const float *k = j < C ? Kc + (size_t)j * d : Kn + (size_t)(j - C) * d;
                /* NeMo's rel_shift: key j of query i sees relative position row T-1-i+j */
                const float *pos = P + (size_t)(T - 1 - i + j) * d;
                row[j] = (es_dot(qui, k + h * dh, dh) + es_dot(qvi, pos + h * dh, dh)) * scale;
                if (row[j] > maxv)
                    maxv = row[j];
            }
            float *o = O + ((size_t)p->rows + i) * d + h * dh;
            memset(o, 0, sizeof(float) * dh);
            if (maxv == -INFINITY)
                continue; /* every key masked: NeMo zeroes the attention weights of the row */
            double sum = 0.0;
            for (int j = 0; j < klen; j++) {
                row[j] = isnan(row[j]) ? 0.0f : expf(row[j] - maxv);
                sum += row[j];
            }
            float inv = (float)(1.0 / sum);
            for (int j = 0; j < klen; j++) {
                if (row[j] == 0.0f)
                    continue;
                const float *val = (j < C ? Vc + (size_t)j * d : Vn + (size_t)(j - C) * d) + h * dh;
                es_add_scaled(o, val, (size_t)dh, row[j] * inv);
            }
        }
    }
}

/* Shifts a [C][d] cache left by `keep` rows and appends `keep` fresh rows (or keeps the last C
   of them when keep > C), as NeMo's update_cache does. */
static void push_cache(float *cache, int C, const float *fresh, int keep, int d)
{
    if (C <= 0 || keep <= 0)
        return;
    if (keep >= C) {
        memcpy(cache, fresh + (size_t)(keep - C) * d, sizeof(float) * (size_t)C * d);
    } else {
        memmove(cache, cache + (size_t)keep * d, sizeof(float) * (size_t)(C - keep) * d);
        memcpy(cache + (size_t)(C - keep) * d, fresh, sizeof(float) * (size_t)keep * d);
    }
}

/* ---- the step ---- */

static int fail(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return -1;
}

/* Fills plan[] and validates; returns 0 or -1 with err. */
int es_encoder_check_input(const es_model *m, const es_encoder_input *x, int *T, char *err, size_t errlen)
{
    if (x->lookahead < -1 || x->lookahead >= m->n_lookaheads || (x->lookahead == -1 && x->slot >= 0))
        return fail(err, errlen, "look-ahead index out of range");
    if (x->width < 1 || x->length < 0 || x->length > x->width)
        return fail(err, errlen, "chunk has no columns or a bad length");
    *T = es_encoder_subsampled_length(m, x->width) - x->drop_extra;
    if (x->drop_extra < 0 || *T < 1)
        return fail(err, errlen, "chunk too short for the pre-encode drop");
    if (x->slot >= 0 && *T < m->streaming[x->lookahead].cache_drop_size)
        return fail(err, errlen, "chunk shorter than the cache drop size (regular style)");
    return 0;
}

static int plan_step(es_encoder *e, const es_encoder_input *in, int n, int *N_out, int *max_T_out,
                     char *err, size_t errlen)
{
    const es_model *m = e->m;
    stream_plan *plan = e->plan;
    int N = 0, max_T = 0;
    size_t scratch = 0;
    for (int b = 0; b < n; b++) {
        const es_encoder_input *x = &in[b];
        int T;
        if (es_encoder_check_input(m, x, &T, err, errlen) != 0)
            return -1;
        if (x->slot >= 0 && !e->pool)
            return fail(err, errlen, "streaming step without a cache pool");
        int To = T + x->drop_extra;
        int sub_len = x->length == x->width ? To : es_encoder_subsampled_length(m, x->length);
        const es_streaming_cfg *s = x->lookahead >= 0 ? &m->streaming[x->lookahead] : NULL;
        stream_plan *p = &plan[b];
        p->rows = N;
        p->T = T;
        p->len = sub_len - x->drop_extra < 0 ? 0 : (sub_len - x->drop_extra > T ? T : sub_len - x->drop_extra);
        p->C = x->slot >= 0 ? s->last_channel_cache_size : 0;
        p->scratch = scratch;
        scratch += (size_t)T * (p->C + T);
        N += T;
        if (To > max_T)
            max_T = To;
    }
    *N_out = N;
    *max_T_out = max_T;
    return 0;
}

/* Decides where each stream's positional projections come from; returns the rows of the
   per-step projection buffer needed for the uncached ones, or -1 when out of memory. */
static int plan_positions(es_encoder *e, const es_encoder_input *in, int n)
{
    stream_plan *plan = e->plan;
    int pos_rows = 0, max_pos = 0;
    for (int b = 0; b < n; b++)
        if (plan[b].C + plan[b].T > max_pos)
            max_pos = plan[b].C + plan[b].T;
    if (ensure_pe(e, max_pos + 1) != 0)
        return -1;
    for (int b = 0; b < n; b++) {
        stream_plan *p = &plan[b];
        int klen = p->C + p->T;
        p->pos_cached = in[b].slot >= 0 ? cached_pos(e, klen, p->T) : NULL;
        p->pos_group = b;
        if (p->pos_cached)
            continue;
        for (int a = 0; a < b; a++)
            if (!plan[a].pos_cached && plan[a].pos_group == a && plan[a].C + plan[a].T == klen && plan[a].T == p->T) {
                p->pos_group = a;
                break;
            }
        if (p->pos_group == b) {
            p->pos_row = pos_rows;
            pos_rows += klen + p->T - 1;
        } else {
            p->pos_row = plan[p->pos_group].pos_row;
        }
    }
    return pos_rows;
}

int es_encoder_step(es_encoder *e, const es_encoder_input *in, int n, es_encoder_output *out, char *err,
                    size_t errlen)
{
    const es_model *m = e->m;
    int d = m->d_model, k1 = m->conv_kernel - 1;
    if (n <= 0)
        return 0;
    if (n > e->plan_cap) {
        stream_plan *pl = realloc(e->plan, sizeof(stream_plan) * (size_t)n);
        if (!pl)
            return fail(err, errlen, "out of memory");
        e->plan = pl;
        e->plan_cap = n;
    }
    stream_plan *plan = e->plan;
    int N, max_T;
    if (plan_step(e, in, n, &N, &max_T, err, errlen) != 0)
        return -1;

    /* subsampling, pre-encode drop, xscaling: streams in parallel, each thread its own buffers */
    float *X = buf(e, BUF_X, (size_t)N * d);
    int threads = es_compute_threads();
    if (threads > e->n_sub) {
        sub_scratch *sc = realloc(e->sub, sizeof *sc * (size_t)threads);
        if (!sc)
            return fail(err, errlen, "out of memory");
        memset(sc + e->n_sub, 0, sizeof *sc * (size_t)(threads - e->n_sub));
        e->sub = sc;
        e->n_sub = threads;
    }
    if (!X)
        return fail(err, errlen, "out of memory");
    float xscale = m->xscaling ? sqrtf((float)d) : 1.0f;
    int out_of_memory = 0;
#pragma omp parallel for schedule(dynamic) if (n > 1)
    for (int b = 0; b < n; b++) {
        sub_scratch *sc = &e->sub[es_compute_thread_id()];
        float *sub = grow(&sc->buf[SUB_OUT], &sc->cap[SUB_OUT], (size_t)max_T * d);
        if (!sub || subsample(m, sc, &in[b], sub) < 0) {
#pragma omp atomic write
            out_of_memory = 1;
            continue;
        }
        float *dst = X + (size_t)plan[b].rows * d;
        const float *src = sub + (size_t)in[b].drop_extra * d;
        for (size_t i = 0; i < (size_t)plan[b].T * d; i++)
            dst[i] = src[i] * xscale;
    }
    if (out_of_memory)
        return fail(err, errlen, "out of memory");

    int pos_rows = plan_positions(e, in, n);
    if (pos_rows < 0)
        return fail(err, errlen, "out of memory");
    size_t scores_n = plan[n - 1].scratch + (size_t)plan[n - 1].T * (plan[n - 1].C + plan[n - 1].T);
    float *Y = buf(e, BUF_Y, (size_t)N * d);
    float *Q = buf(e, BUF_Q, (size_t)N * d);
    float *Knew = buf(e, BUF_KNEW, (size_t)N * d);
    float *Vnew = buf(e, BUF_VNEW, (size_t)N * d);
    float *O = buf(e, BUF_O, (size_t)N * 2 * d);
    float *Hbuf = buf(e, BUF_H, (size_t)N * m->ff_dim);
    float *Z = buf(e, BUF_Z, (size_t)N * d);
    float *PE = buf(e, BUF_PE, (size_t)pos_rows * d);
    float *POS = buf(e, BUF_POS, (size_t)pos_rows * d);
    float *dwin = buf(e, BUF_DWIN, (size_t)(N + (size_t)n * k1) * d);
    float *scores = buf(e, BUF_SCORES, scores_n);
    float *qu = buf(e, BUF_QU, (size_t)N * d);
    float *qv = buf(e, BUF_QV, (size_t)N * d);
    if (!Y || !Q || !Knew || !Vnew || !O || !Hbuf || !Z || !PE || !POS || !dwin || !scores || !qu || !qv)
        return fail(err, errlen, "out of memory");
    for (int b = 0; b < n; b++)
        if (!plan[b].pos_cached && plan[b].pos_group == b)
            fill_pos_rows(e, plan[b].C + plan[b].T, plan[b].T, PE + (size_t)plan[b].pos_row * d);

    for (int l = 0; l < m->n_layers; l++) {
        const es_layer *L = &m->layers[l];

        /* feed-forward 1, half-step residual */
        es_layer_norm_forward(&L->norm_ff1, X, N, d, Y);
        es_linear_forward(&L->ff1_in, Y, N, Hbuf);
        es_swish(Hbuf, (size_t)N * m->ff_dim);
        es_linear_forward(&L->ff1_out, Hbuf, N, Z);
        es_add_scaled(X, Z, (size_t)N * d, 0.5f);

        /* self-attention over [cache | chunk]: K/V of cached frames come from the K/V caches,
           which hold exactly linear_k / linear_v of NeMo's cache_last_channel rows */
        es_layer_norm_forward(&L->norm_att, X, N, d, Y);
        es_linear_forward(&L->q, Y, N, Q);
        es_linear_forward(&L->k, Y, N, Knew);
        es_linear_forward(&L->v, Y, N, Vnew);
        if (pos_rows > 0)
            es_linear_forward(&L->pos, PE, pos_rows, POS);
#pragma omp parallel for schedule(dynamic) if (n > 1)
        for (int b = 0; b < n; b++) {
            const stream_plan *p = &plan[b];
            size_t C = (size_t)p->C, T = (size_t)p->T;
            int slot = in[b].slot;
            const float *Kc = slot >= 0 ? layer_cache(e, slot, REG_KEY, l) : NULL;
            const float *Vc = slot >= 0 ? layer_cache(e, slot, REG_VALUE, l) : NULL;
            const es_streaming_cfg *s = in[b].lookahead >= 0 ? &m->streaming[in[b].lookahead] : NULL;
            int cache_valid = slot >= 0 ? *es_encoder_channel_len(e, slot) : 0;
            size_t npos = C + 2 * T - 1;
            const float *P = p->pos_cached ? p->pos_cached + (size_t)l * npos * d
                                           : POS + (size_t)plan[p->pos_group].pos_row * d;
            attend_stream(m, L, s, p, cache_valid, Q, Kc, Knew + (size_t)p->rows * d, Vc, Vnew + (size_t)p->rows * d,
                          P, O, scores + p->scratch, qu + (size_t)p->rows * d, qv + (size_t)p->rows * d);
            if (in[b].slot >= 0) {
                /* the new caches: old ones shifted by the kept frames, then those frames */
                int keep = p->T - s->cache_drop_size;
                push_cache(layer_cache(e, in[b].slot, REG_CHANNEL, l), p->C, Y + (size_t)p->rows * d, keep, d);
                push_cache(layer_cache(e, in[b].slot, REG_KEY, l), p->C, Knew + (size_t)p->rows * d, keep, d);
                push_cache(layer_cache(e, in[b].slot, REG_VALUE, l), p->C, Vnew + (size_t)p->rows * d, keep, d);
            }
        }
        es_linear_forward(&L->att_out, O, N, Z);
        es_add_scaled(X, Z, (size_t)N * d, 1.0f);

        /* convolution module: pointwise, GLU, causal depthwise with cache, norm, swish, pointwise */
        es_layer_norm_forward(&L->norm_conv, X, N, d, Y);
        es_linear_forward(&L->pw1, Y, N, O); /* O is [N][2d] here */
        es_glu(O, N, d, Y);
#pragma omp parallel for schedule(dynamic) if (n > 1)
        for (int b = 0; b < n; b++) {
            const stream_plan *p = &plan[b];
            float *g = Y + (size_t)p->rows * d;
            if (p->len < p->T)
                memset(g + (size_t)p->len * d, 0, sizeof(float) * (size_t)(p->T - p->len) * d);
            /* win = [cache (k-1 rows) | chunk] */
            float *win = dwin + ((size_t)p->rows + (size_t)b * k1) * d;
            float *tcache = in[b].slot >= 0 ? es_encoder_time_cache(e, in[b].slot, l) : NULL;
            if (tcache)
                memcpy(win, tcache, sizeof(float) * (size_t)k1 * d);
            else
                memset(win, 0, sizeof(float) * (size_t)k1 * d);
            memcpy(win + (size_t)k1 * d, g, sizeof(float) * (size_t)p->T * d);
            float *outr = Z + (size_t)p->rows * d;
            for (int t = 0; t < p->T; t++) {
                float *o = outr + (size_t)t * d;
                memcpy(o, L->dw_b, sizeof(float) * d);
                for (int s = 0; s <= k1; s++) {
                    const float *x = win + (size_t)(t + s) * d;
                    for (int c = 0; c < d; c++)
                        o[c] += L->dw_w[(size_t)c * m->conv_kernel + s] * x[c];
                }
            }
            if (tcache) {
                /* last k-1 rows of [cache | chunk] before the dropped look-ahead frames */
                int end = k1 + p->T - m->streaming[in[b].lookahead].cache_drop_size;
                memcpy(tcache, win + (size_t)(end - k1) * d, sizeof(float) * (size_t)k1 * d);
            }
        }
        if (m->conv_norm == ES_NORM_LAYER) {
            es_layer_norm_forward(&L->conv_ln, Z, N, d, Z);
        } else {
            for (int r = 0; r < N; r++)
                for (int c = 0; c < d; c++)
                    Z[(size_t)r * d + c] = Z[(size_t)r * d + c] * L->bn_scale[c] + L->bn_shift[c];
        }
        es_swish(Z, (size_t)N * d);
        es_linear_forward(&L->pw2, Z, N, Q); /* Q is free again */
        es_add_scaled(X, Q, (size_t)N * d, 1.0f);

        /* feed-forward 2, half-step residual, final norm */
        es_layer_norm_forward(&L->norm_ff2, X, N, d, Y);
        es_linear_forward(&L->ff2_in, Y, N, Hbuf);
        es_swish(Hbuf, (size_t)N * m->ff_dim);
        es_linear_forward(&L->ff2_out, Hbuf, N, Z);
        es_add_scaled(X, Z, (size_t)N * d, 0.5f);
        es_layer_norm_forward(&L->norm_out, X, N, d, X);
    }

    for (int b = 0; b < n; b++) {
        int frames = plan[b].len; /* offline: NeMo's encoded_len */
        if (in[b].slot >= 0) {
            const es_streaming_cfg *s = &m->streaming[in[b].lookahead];
            frames = plan[b].T;
            int32_t *len = (int32_t *)es_encoder_channel_len(e, in[b].slot);
            int keep = plan[b].T - s->cache_drop_size;
            *len = *len + keep < plan[b].C ? *len + keep : plan[b].C;
            if (s->valid_out_len > 0 && (!in[b].keep_all || m->att_style == ES_ATT_REGULAR) &&
                frames > s->valid_out_len)
                frames = s->valid_out_len;
        }
        out[b].frames = X + (size_t)plan[b].rows * d;
        out[b].n_frames = frames;
    }
    return 0;
}
