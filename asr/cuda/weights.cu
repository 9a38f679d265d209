/*
 * weights.cu - uploads a loaded model's weights to the GPU (see weights.h).
 *
 * Conversions happen on the host (to_lowp, and es_cuda_fold_dw in cuda_plan.c, which the unit
 * tests check without a GPU), then each tensor is one synchronous cudaMemcpy: loading is done
 * once per engine, so simplicity wins over overlap.
 */
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    dweights *w;
    char *err;
    size_t errlen;
    int failed;
} uploader;

/* Copies n bytes to a new device block (zeroed when src is NULL); NULL after a failure. */
static void *up_bytes(uploader *u, const void *src, size_t n)
{
    if (u->failed)
        return NULL;
    dweights *w = u->w;
    if (w->n_allocs == w->cap_allocs) {
        int cap = w->cap_allocs ? 2 * w->cap_allocs : 64;
        void **a = (void **)realloc(w->allocs, sizeof(void *) * (size_t)cap);
        if (!a) {
            snprintf(u->err, u->errlen, "out of memory");
            u->failed = 1;
            return NULL;
        }
        w->allocs = a;
        w->cap_allocs = cap;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, n ? n : 1);
    if (e == cudaSuccess)
        e = src ? cudaMemcpy(p, src, n, cudaMemcpyHostToDevice) : cudaMemset(p, 0, n);
    if (e != cudaSuccess) {
        snprintf(u->err, u->errlen, "uploading the model to the GPU: %s", cudaGetErrorString(e));
        if (p)
            cudaFree(p);
        u->failed = 1;
        return NULL;
    }
    w->allocs[w->n_allocs++] = p;
    w->bytes += n;
    return p;
}

static float *up_f32(uploader *u, const float *src, size_t n)
{
    return (float *)up_bytes(u, src, sizeof(float) * n);
}

/* Rounds n floats to lowp and uploads them. */
static lowp *up_lowp(uploader *u, const float *src, size_t n)
{
    lowp *h = (lowp *)malloc(sizeof(lowp) * (n ? n : 1));
    if (!h) {
        if (!u->failed)
            snprintf(u->err, u->errlen, "out of memory");
        u->failed = 1;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        h[i] = to_lowp(src[i]);
    lowp *p = (lowp *)up_bytes(u, h, sizeof(lowp) * n);
    free(h);
    return p;
}

static dlinear up_linear(uploader *u, const es_linear *l)
{
    dlinear d;
    d.out = l->out;
    d.in = l->in;
    d.w = up_lowp(u, l->w, (size_t)l->out * l->in);
    d.b = l->b ? up_f32(u, l->b, (size_t)l->out) : NULL;
    return d;
}

static dlinear32 up_linear32(uploader *u, const es_linear *l)
{
    dlinear32 d;
    d.out = l->out;
    d.in = l->in;
    d.w = up_f32(u, l->w, (size_t)l->out * l->in);
    d.b = l->b ? up_f32(u, l->b, (size_t)l->out) : NULL;
    return d;
}

static dnorm up_norm(uploader *u, const es_layer_norm *n, int d)
{
    dnorm r = {NULL, NULL};
    if (n->gamma && n->beta) {
        r.gamma = up_f32(u, n->gamma, (size_t)d);
        r.beta = up_f32(u, n->beta, (size_t)d);
    }
    return r;
}

/* q, k and v stacked into one [3d][d] matrix with a [3d] bias (absent biases are zeros). */
static dlinear up_qkv(uploader *u, const es_layer *L, int d)
{
    dlinear r = {NULL, NULL, 3 * d, d};
    size_t dd = (size_t)d * d;
    float *w = (float *)malloc(sizeof(float) * 3 * dd), *b = (float *)calloc(3 * (size_t)d, sizeof(float));
    if (!w || !b) {
        if (!u->failed)
            snprintf(u->err, u->errlen, "out of memory");
        u->failed = 1;
    } else {
        const es_linear *parts[3] = {&L->q, &L->k, &L->v};
        for (int p = 0; p < 3; p++) {
            memcpy(w + p * dd, parts[p]->w, sizeof(float) * dd);
            if (parts[p]->b)
                memcpy(b + (size_t)p * d, parts[p]->b, sizeof(float) * (size_t)d);
        }
        r.w = up_lowp(u, w, 3 * dd);
        r.b = up_f32(u, b, 3 * (size_t)d);
    }
    free(w);
    free(b);
    return r;
}

static size_t sub_weight_count(const es_sub_stage *s)
{
    switch (s->kind) {
    case ES_CONV_FULL:
        return (size_t)s->out_ch * s->in_ch * 9;
    case ES_CONV_DEPTHWISE:
        return (size_t)s->out_ch * 9;
    default:
        return (size_t)s->out_ch * s->in_ch;
    }
}

int dweights_upload(dweights *w, const es_model *m, char *err, size_t errlen)
{
    uploader u = {w, err, errlen, 0};
    int d = m->d_model, k = m->conv_kernel;
    memset(w, 0, sizeof *w);
    w->layers = (dlayer *)calloc((size_t)m->n_layers, sizeof(dlayer));
    float *dw_w = (float *)malloc(sizeof(float) * (size_t)d * k), *dw_b = (float *)malloc(sizeof(float) * (size_t)d);
    if (!w->layers || !dw_w || !dw_b) {
        snprintf(err, errlen, "out of memory");
        free(dw_w);
        free(dw_b);
        return -1;
    }
    for (int i = 0; i < m->n_sub; i++) {
        w->sub[i].w = up_f32(&u, m->sub[i].w, sub_weight_count(&m->sub[i]));
        w->sub[i].b = up_f32(&u, m->sub[i].b, (size_t)m->sub[i].out_ch);
    }
    w->sub_out = up_linear(&u, &m->sub_out);
    for (int l = 0; l < m->n_layers && !u.failed; l++) {
        const es_layer *L = &m->layers[l];
        dlayer *D = &w->layers[l];
        D->norm_ff1 = up_norm(&u, &L->norm_ff1, d);
        D->ff1_in = up_linear(&u, &L->ff1_in);
        D->ff1_out = up_linear(&u, &L->ff1_out);
        D->norm_att = up_norm(&u, &L->norm_att, d);
        D->qkv = up_qkv(&u, L, d);
        D->att_out = up_linear(&u, &L->att_out);
        D->pos = up_linear(&u, &L->pos);
        D->pos_u = up_f32(&u, L->pos_bias_u, (size_t)d);
        D->pos_v = up_f32(&u, L->pos_bias_v, (size_t)d);
        D->norm_conv = up_norm(&u, &L->norm_conv, d);
        D->pw1 = up_linear(&u, &L->pw1);
        D->pw2 = up_linear(&u, &L->pw2);
        es_cuda_fold_dw(m, L, dw_w, dw_b);
        D->dw_w = up_f32(&u, dw_w, (size_t)d * k);
        D->dw_b = up_f32(&u, dw_b, (size_t)d);
        if (m->conv_norm == ES_NORM_LAYER)
            D->conv_ln = up_norm(&u, &L->conv_ln, d);
        D->norm_ff2 = up_norm(&u, &L->norm_ff2, d);
        D->ff2_in = up_linear(&u, &L->ff2_in);
        D->ff2_out = up_linear(&u, &L->ff2_out);
        D->norm_out = up_norm(&u, &L->norm_out, d);
    }
    if (m->has_ctc)
        w->ctc = up_linear(&u, &m->ctc);
    if (m->has_rnnt) {
        w->embed = up_f32(&u, m->embed, (size_t)(m->n_vocab + 1) * m->pred_hidden);
        w->lstm_ih = up_linear32(&u, &m->lstm_ih);
        w->lstm_hh = up_linear32(&u, &m->lstm_hh);
        w->joint_enc = up_linear32(&u, &m->joint_enc);
        w->joint_pred = up_linear32(&u, &m->joint_pred);
        w->joint_out = up_linear32(&u, &m->joint_out);
    }
    free(dw_w);
    free(dw_b);
    return u.failed ? -1 : 0;
}

void dweights_free(dweights *w)
{
    for (int i = 0; i < w->n_allocs; i++)
        cudaFree(w->allocs[i]);
    free(w->allocs);
    free(w->layers);
    memset(w, 0, sizeof *w);
}
