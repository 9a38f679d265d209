/*
 * cuda_plan.c - the host-side logic of the CUDA backend that needs no GPU (see cuda_backend.h).
 *
 * Everything here is plain C and built in every configuration, so the unit tests check it
 * against the CPU encoder's numbers on machines without a GPU: the step plan (validation, row
 * offsets, lengths through the subsampling, what the caches keep, how many frames come back),
 * the batch-size buckets a step is padded to for CUDA graphs, the device cache layout, batch
 * norm folded into the depthwise convolution, and the sinusoidal position table.
 */
#include "cuda_backend.h"
#include "../decoder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* causal padding 2 left + 1 right, kernel 3, stride 2 (as encoder.c) */
static int conv_out_len(int n)
{
    return n / 2 + 1;
}

int es_cuda_plan(const es_model *m, const es_encoder_input *in, int n, es_cuda_stream *streams, int *row_stream,
                 es_cuda_totals *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    int N = 0;
    for (int b = 0; b < n; b++) {
        const es_encoder_input *x = &in[b];
        int T; /* the CPU encoder's checks and words */
        if (es_encoder_check_input(m, x, &T, err, errlen) != 0)
            return -1;
        const es_streaming_cfg *s = x->lookahead >= 0 ? &m->streaming[x->lookahead] : NULL;

        es_cuda_stream *p = &streams[b];
        memset(p, 0, sizeof *p);
        p->rows = N;
        p->T = T;
        p->drop = x->drop_extra;
        p->slot = x->slot;
        /* valid time rows through the subsampling: MaskedConvSequential's lengths */
        p->sub_len[0] = x->length;
        for (int i = 0; i < m->n_sub; i++)
            p->sub_len[i + 1] = m->sub[i].stride == 2 ? conv_out_len(p->sub_len[i]) : p->sub_len[i];
        int sub_len = p->sub_len[m->n_sub];
        int len = sub_len - x->drop_extra;
        p->len = len < 0 ? 0 : (len > T ? T : len);
        p->C = x->slot >= 0 ? s->last_channel_cache_size : 0;
        p->keep = x->slot >= 0 ? T - s->cache_drop_size : 0;
        p->full = s == NULL;
        p->left = s ? s->att_context[0] : 0;
        p->right = s ? s->att_context[1] : 0;
        p->regular = m->att_style == ES_ATT_REGULAR;
        /* frames returned: the CPU encoder's rule */
        int frames = p->len;
        if (x->slot >= 0) {
            frames = T;
            if (s->valid_out_len > 0 && (!x->keep_all || m->att_style == ES_ATT_REGULAR) && frames > s->valid_out_len)
                frames = s->valid_out_len;
        }
        p->n_out = frames;
        if (row_stream)
            for (int r = 0; r < T; r++)
                row_stream[N + r] = b;
        N += T;
        if (x->width > t->max_width)
            t->max_width = x->width;
        if (p->C + T > t->max_klen)
            t->max_klen = p->C + T;
        if (T > t->max_T)
            t->max_T = T;
    }
    t->N = N;
    t->pos_rows = n > 0 ? t->max_klen + t->max_T - 1 : 0;
    /* the position table runs from max_klen - 1 down to -(max_T - 1); a stream's own rows
       (positions klen - 1 down to -(T - 1)) start where position klen - 1 lies */
    for (int b = 0; b < n; b++)
        streams[b].pos_row0 = t->max_klen - (streams[b].C + streams[b].T);
    /* shapes of the subsampling volumes, for the widest chunk (others are zero-masked in it) */
    t->sub_T[0] = t->max_width;
    t->sub_F[0] = m->n_mels;
    t->sub_C[0] = 1;
    for (int i = 0; i < m->n_sub; i++) {
        int two = m->sub[i].stride == 2;
        t->sub_T[i + 1] = two ? conv_out_len(t->sub_T[i]) : t->sub_T[i];
        t->sub_F[i + 1] = two ? conv_out_len(t->sub_F[i]) : t->sub_F[i];
        t->sub_C[i + 1] = m->sub[i].out_ch;
    }
    return 0;
}

/* ---- batch-size buckets ---- */

int es_cuda_bucket(int n)
{
    if (n < 1 || n > ES_CUDA_BUCKET_MAX)
        return n;
    int p = 1;
    while (p < n)
        p <<= 1;
    if (p <= ES_CUDA_BUCKET_POW2_MAX)
        return p;
    /* p/2 < n <= p: four buckets in (p/2, p], p/8 apart, so the padding stays under a quarter
       of p/2 < n */
    int step = p / 8;
    return (n + step - 1) / step * step;
}

/* T and C of a streaming input (what it adds to the step's shape), or 0 for an input that
   does not stream or that es_cuda_plan would refuse. */
static int stream_shape(const es_model *m, const es_encoder_input *x, int *T, int *C)
{
    if (x->slot < 0 || x->lookahead < 0 || x->lookahead >= m->n_lookaheads || x->width < 1 || x->drop_extra < 0)
        return 0;
    *T = es_encoder_subsampled_length(m, x->width) - x->drop_extra;
    *C = m->streaming[x->lookahead].last_channel_cache_size;
    return *T >= 1;
}

int es_cuda_pad_template(const es_model *m, const es_encoder_input *in, int n)
{
    /* the step's totals are n, N = sum T, max C + T, max T and the widest width; with one T
       and one C for every stream they depend on n and the widest width alone, and a copy of
       the widest stream keeps them so (first chunks are narrower but usually as many frames) */
    int T0, C0, widest = 0;
    if (n < 1 || !stream_shape(m, &in[0], &T0, &C0))
        return -1;
    for (int b = 1; b < n; b++) {
        int T, C;
        if (!stream_shape(m, &in[b], &T, &C) || T != T0 || C != C0)
            return -1;
        if (in[b].width > in[widest].width)
            widest = b;
    }
    return widest;
}

int es_cuda_padded_n(const es_model *m, const es_encoder_input *in, int n)
{
    return es_cuda_pad_template(m, in, n) >= 0 ? es_cuda_bucket(n) : n;
}

void es_cuda_pad_inputs(const es_encoder_input *in, int n, int n_pad, int tmpl, int scratch_slot,
                        es_encoder_input *padded)
{
    if (n < 1 || tmpl < 0 || tmpl >= n)
        return; /* no shape to copy */
    const es_encoder_input *x = &in[tmpl];
    if (padded != in)
        memcpy(padded, in, sizeof *in * (size_t)n);
    for (int b = n; b < n_pad; b++)
        padded[b] = (es_encoder_input){.features = NULL, .width = x->width, .length = x->width,
                                       .lookahead = x->lookahead, .drop_extra = x->drop_extra, .keep_all = 0,
                                       .slot = scratch_slot};
}

int es_cuda_real_rows(const es_cuda_stream *plan, int n)
{
    return n > 0 ? plan[n - 1].rows + plan[n - 1].T : 0;
}

void es_cuda_map_outputs(const es_cuda_stream *plan, int n, const float *frames, int d, es_encoder_output *out)
{
    for (int b = 0; b < n; b++) {
        out[b].frames = frames ? frames + (size_t)plan[b].rows * d : NULL;
        out[b].n_frames = plan[b].n_out;
    }
}

static size_t round256(size_t x)
{
    return (x + 255) & ~(size_t)255;
}

es_cuda_layout es_cuda_cache_layout(const es_model *m)
{
    es_cuda_layout l;
    size_t kv = (size_t)m->n_layers * (size_t)m->max_cache_size * (size_t)m->d_model * 2; /* 16-bit */
    l.key = round256(kv);
    l.value = round256(kv);
    l.time = round256(sizeof(float) * (size_t)m->n_layers * (size_t)(m->conv_kernel - 1) * (size_t)m->d_model);
    l.length = round256(sizeof(int32_t));
    l.rnnt = m->has_rnnt ? round256(es_rnnt_state_bytes(m)) : 0;
    return l;
}

size_t es_cuda_layout_bytes(const es_cuda_layout *l)
{
    return l->key + l->value + l->time + l->length + l->rnnt;
}

void es_cuda_fold_dw(const es_model *m, const es_layer *L, float *w_out, float *b_out)
{
    int d = m->d_model, k = m->conv_kernel;
    for (int c = 0; c < d; c++) {
        /* batch norm after the conv is y * scale + shift per channel: fold it into the conv */
        float scale = m->conv_norm == ES_NORM_BATCH ? L->bn_scale[c] : 1.0f;
        float shift = m->conv_norm == ES_NORM_BATCH ? L->bn_shift[c] : 0.0f;
        for (int s = 0; s < k; s++)
            w_out[(size_t)c * k + s] = L->dw_w[(size_t)c * k + s] * scale;
        b_out[c] = L->dw_b[c] * scale + shift;
    }
}

void es_cuda_fill_positions(int d, int top, int rows, float *dst)
{
    /* the CPU encoder's ensure_pe + fill_pos_rows, expression for expression, so both
       backends start from the same fp32 table */
    float k = -(float)(log(10000.0) / d);
    for (int r = 0; r < rows; r++) {
        int pos = top - r, a = abs(pos);
        float *o = dst + (size_t)r * d;
        for (int i = 0; i < d; i += 2) {
            float div = expf((float)i * k);
            float arg = (float)a * div;
            o[i] = pos >= 0 ? sinf(arg) : -sinf(arg); /* sin is odd, cos even */
            if (i + 1 < d)
                o[i + 1] = cosf(arg);
        }
    }
}
