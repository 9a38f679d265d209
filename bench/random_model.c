/*
 * random_model.c - writes an Earshot model file (docs/model-format.md) of any size with random
 * weights, for benchmarks: the arithmetic of a 17 x 512 FastConformer is the same whatever its
 * weights are, and NVIDIA's checkpoints cannot be downloaded here.
 *
 * The config is the one NeMo would save for a cache-aware CTC FastConformer (dw_striding 8x,
 * causal, chunked_limited with several look-aheads, layer-norm conv); weights are uniform in
 * +-1/sqrt(fan_in) like PyTorch's default initialisation, so activations stay finite.
 */
#include "random_model.h"

#include <cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[256];
    int ndim, shape[4];
    enum { FILL_UNIFORM, FILL_ONES, FILL_ZEROS, FILL_WINDOW, FILL_FILTERBANK } fill;
    int fan_in;
} tensor_spec;

typedef struct {
    tensor_spec *t;
    int n, cap;
} spec_list;

static void add(spec_list *l, const char *name, int fill, int fan_in, int ndim, int d0, int d1, int d2, int d3)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->t = realloc(l->t, sizeof(tensor_spec) * (size_t)l->cap);
    }
    tensor_spec *t = &l->t[l->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    int dims[4] = {d0, d1, d2, d3};
    memcpy(t->shape, dims, sizeof dims);
    t->fill = fill;
    t->fan_in = fan_in;
}

static size_t count(const tensor_spec *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

static void linear(spec_list *l, const char *prefix, int out, int in, int bias, int conv1d)
{
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    if (conv1d)
        add(l, name, FILL_UNIFORM, in, 3, out, in, 1, 0);
    else
        add(l, name, FILL_UNIFORM, in, 2, out, in, 0, 0);
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        add(l, name, FILL_UNIFORM, in, 1, out, 0, 0, 0);
    }
}

static void norm(spec_list *l, const char *prefix, int d)
{
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add(l, name, FILL_ONES, 0, 1, d, 0, 0, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    add(l, name, FILL_ZEROS, 0, 1, d, 0, 0, 0);
}

static cJSON *make_config(const es_random_model_params *p)
{
    cJSON *c = cJSON_CreateObject();
    cJSON *pre = cJSON_AddObjectToObject(c, "preprocessor");
    cJSON_AddStringToObject(pre, "_target_", "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor");
    cJSON_AddNumberToObject(pre, "sample_rate", 16000);
    cJSON_AddStringToObject(pre, "normalize", "NA");
    cJSON_AddNumberToObject(pre, "window_size", 0.025);
    cJSON_AddNumberToObject(pre, "window_stride", 0.01);
    cJSON_AddStringToObject(pre, "window", "hann");
    cJSON_AddNumberToObject(pre, "features", 80);
    cJSON_AddNumberToObject(pre, "n_fft", 512);
    cJSON *enc = cJSON_AddObjectToObject(c, "encoder");
    cJSON_AddStringToObject(enc, "_target_", "nemo.collections.asr.modules.ConformerEncoder");
    cJSON_AddNumberToObject(enc, "feat_in", 80);
    cJSON_AddNumberToObject(enc, "feat_out", -1);
    cJSON_AddStringToObject(enc, "subsampling", "dw_striding");
    cJSON_AddNumberToObject(enc, "subsampling_factor", 8);
    cJSON_AddNumberToObject(enc, "subsampling_conv_channels", p->sub_channels);
    cJSON_AddBoolToObject(enc, "causal_downsampling", 1);
    cJSON_AddNumberToObject(enc, "ff_expansion_factor", p->ff_dim / p->d_model);
    cJSON_AddStringToObject(enc, "self_attention_model", "rel_pos");
    cJSON_AddStringToObject(enc, "att_context_style", "chunked_limited");
    cJSON_AddBoolToObject(enc, "xscaling", 1);
    cJSON_AddBoolToObject(enc, "untie_biases", 1);
    cJSON_AddNumberToObject(enc, "conv_kernel_size", p->conv_kernel);
    cJSON_AddStringToObject(enc, "conv_norm_type", "layer_norm");
    cJSON_AddStringToObject(enc, "conv_context_size", "causal");
    cJSON_AddNumberToObject(enc, "n_layers", p->n_layers);
    cJSON_AddNumberToObject(enc, "d_model", p->d_model);
    cJSON_AddNumberToObject(enc, "n_heads", p->n_heads);
    cJSON *ctx = cJSON_AddArrayToObject(enc, "att_context_size");
    int right[] = {13, 6, 1, 0};
    for (int i = 0; i < 4; i++) {
        int pair[2] = {70, right[i]};
        cJSON_AddItemToArray(ctx, cJSON_CreateIntArray(pair, 2));
    }
    cJSON *dec = cJSON_AddObjectToObject(c, "decoder");
    cJSON_AddStringToObject(dec, "_target_", "nemo.collections.asr.modules.ConvASRDecoder");
    cJSON_AddNumberToObject(dec, "feat_in", p->d_model);
    cJSON_AddNumberToObject(dec, "num_classes", p->vocab);
    return c;
}

int es_write_random_model(const char *path, const es_random_model_params *params, char *err, size_t errlen)
{
    es_random_model_params full = *params, *p = &full;
    if (!p->ff_dim)
        p->ff_dim = 4 * p->d_model;
    if (!p->conv_kernel)
        p->conv_kernel = 9;
    if (p->n_layers < 1 || p->d_model < 8 || p->n_heads < 1 || p->d_model % p->n_heads || p->ff_dim < p->d_model ||
        p->ff_dim % p->d_model || p->conv_kernel < 1 || p->conv_kernel % 2 == 0 || p->sub_channels < 1 ||
        p->vocab < 2) {
        snprintf(err, errlen, "no such model: layers %d, d_model %d, heads %d (must divide d_model), ff %d (a multiple "
                 "of d_model), conv kernel %d (odd), subsampling channels %d, vocabulary %d",
                 p->n_layers, p->d_model, p->n_heads, p->ff_dim, p->conv_kernel, p->sub_channels, p->vocab);
        return -1;
    }
    int d = p->d_model, C = p->sub_channels, V1 = p->vocab + 1, F = p->ff_dim, K = p->conv_kernel;
    spec_list l = {0};
    char name[192];
    add(&l, "preprocessor.featurizer.window", FILL_WINDOW, 0, 1, 400, 0, 0, 0);
    add(&l, "preprocessor.featurizer.fb", FILL_FILTERBANK, 0, 3, 1, 80, 257, 0);
    /* dw_striding 8x: conv.0 full, then (depthwise, pointwise) twice; ReLUs take indices */
    add(&l, "encoder.pre_encode.conv.0.weight", FILL_UNIFORM, 9, 4, C, 1, 3, 3);
    add(&l, "encoder.pre_encode.conv.0.bias", FILL_UNIFORM, 9, 1, C, 0, 0, 0);
    for (int s = 0, idx = 2; s < 2; s++, idx += 3) {
        snprintf(name, sizeof name, "encoder.pre_encode.conv.%d.weight", idx);
        add(&l, name, FILL_UNIFORM, 9, 4, C, 1, 3, 3);
        snprintf(name, sizeof name, "encoder.pre_encode.conv.%d.bias", idx);
        add(&l, name, FILL_UNIFORM, 9, 1, C, 0, 0, 0);
        snprintf(name, sizeof name, "encoder.pre_encode.conv.%d.weight", idx + 1);
        add(&l, name, FILL_UNIFORM, C, 4, C, C, 1, 1);
        snprintf(name, sizeof name, "encoder.pre_encode.conv.%d.bias", idx + 1);
        add(&l, name, FILL_UNIFORM, C, 1, C, 0, 0, 0);
    }
    linear(&l, "encoder.pre_encode.out", d, C * 11, 1, 0); /* 80 mels -> 41 -> 21 -> 11 */
    for (int i = 0; i < p->n_layers; i++) {
#define P(s) (snprintf(name, sizeof name, "encoder.layers.%d.%s", i, s), name)
        norm(&l, P("norm_feed_forward1"), d);
        linear(&l, P("feed_forward1.linear1"), F, d, 1, 0);
        linear(&l, P("feed_forward1.linear2"), d, F, 1, 0);
        norm(&l, P("norm_self_att"), d);
        add(&l, P("self_attn.pos_bias_u"), FILL_UNIFORM, d, 2, p->n_heads, d / p->n_heads, 0, 0);
        add(&l, P("self_attn.pos_bias_v"), FILL_UNIFORM, d, 2, p->n_heads, d / p->n_heads, 0, 0);
        linear(&l, P("self_attn.linear_q"), d, d, 1, 0);
        linear(&l, P("self_attn.linear_k"), d, d, 1, 0);
        linear(&l, P("self_attn.linear_v"), d, d, 1, 0);
        linear(&l, P("self_attn.linear_out"), d, d, 1, 0);
        linear(&l, P("self_attn.linear_pos"), d, d, 0, 0);
        norm(&l, P("norm_conv"), d);
        linear(&l, P("conv.pointwise_conv1"), 2 * d, d, 1, 1);
        add(&l, P("conv.depthwise_conv.weight"), FILL_UNIFORM, K, 3, d, 1, K, 0);
        add(&l, P("conv.depthwise_conv.bias"), FILL_UNIFORM, K, 1, d, 0, 0, 0);
        norm(&l, P("conv.batch_norm"), d);
        linear(&l, P("conv.pointwise_conv2"), d, d, 1, 1);
        norm(&l, P("norm_feed_forward2"), d);
        linear(&l, P("feed_forward2.linear1"), F, d, 1, 0);
        linear(&l, P("feed_forward2.linear2"), d, F, 1, 0);
        norm(&l, P("norm_out"), d);
#undef P
    }
    linear(&l, "decoder.decoder_layers.0", V1, d, 1, 1);

    /* header: offsets aligned to 64 bytes from the file start */
    cJSON *hdr = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(hdr, "__metadata__");
    cJSON *cfg = make_config(p);
    char *cfg_text = cJSON_PrintUnformatted(cfg);
    cJSON *vocab = cJSON_CreateArray();
    for (int i = 0; i < p->vocab; i++) {
        char piece[32];
        snprintf(piece, sizeof piece, i % 4 == 0 ? "\xe2\x96\x81w%d" : "p%d", i);
        cJSON_AddItemToArray(vocab, cJSON_CreateString(piece));
    }
    char *vocab_text = cJSON_PrintUnformatted(vocab);
    cJSON_AddStringToObject(meta, "earshot.format", "1");
    cJSON_AddStringToObject(meta, "earshot.model_kind", "ctc");
    cJSON_AddStringToObject(meta, "earshot.config", cfg_text);
    cJSON_AddStringToObject(meta, "earshot.vocabulary", vocab_text);
    cJSON_AddStringToObject(meta, "earshot.source", "random-weights benchmark model");
    free(cfg_text);
    free(vocab_text);
    cJSON_Delete(cfg);
    cJSON_Delete(vocab);
    /* the header length depends on the offsets' digits, so lay out with a generous pad */
    size_t *offsets = malloc(sizeof(size_t) * (size_t)l.n * 2);
    size_t header_guess = 64 * 1024 + (size_t)l.n * 160;
    size_t data_start = (8 + header_guess + 63) & ~(size_t)63;
    size_t pos = 0;
    for (int i = 0; i < l.n; i++) {
        offsets[2 * i] = pos;
        pos += count(&l.t[i]) * sizeof(float);
        offsets[2 * i + 1] = pos;
        pos = ((data_start + pos + 63) & ~(size_t)63) - data_start;
    }
    for (int i = 0; i < l.n; i++) {
        cJSON *t = cJSON_AddObjectToObject(hdr, l.t[i].name);
        cJSON_AddStringToObject(t, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int k = 0; k < l.t[i].ndim; k++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber(l.t[i].shape[k]));
        cJSON *off = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offsets[2 * i]));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offsets[2 * i + 1]));
    }
    char *text = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(hdr);
    size_t text_len = strlen(text);
    int rc = -1;
    FILE *f = NULL;
    if (text_len > header_guess) {
        snprintf(err, errlen, "internal: header larger than reserved");
        goto out;
    }
    f = fopen(path, "wb");
    if (!f) {
        snprintf(err, errlen, "cannot write %s", path);
        goto out;
    }
    uint64_t n = data_start - 8;
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++)
        len_bytes[i] = (unsigned char)(n >> (8 * i));
    fwrite(len_bytes, 1, 8, f);
    fwrite(text, 1, text_len, f);
    for (size_t i = text_len; i < n; i++)
        fputc(' ', f);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    size_t written = 0;
    enum { BUF = 16384 };
    float buf[BUF]; /* the 24 x 1024 model is 2.4 GB: one fwrite per value would be slow */
    int nbuf = 0;
    for (int i = 0; i < l.n; i++) {
        while (written < offsets[2 * i]) {
            fputc(0, f);
            written++;
        }
        tensor_spec *t = &l.t[i];
        size_t cnt = count(t);
        float bound = t->fan_in > 0 ? 1.0f / sqrtf((float)t->fan_in) : 0.0f;
        for (size_t k = 0; k < cnt; k++) {
            float v;
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            float u = (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
            switch (t->fill) {
            case FILL_ONES: v = 1.0f; break;
            case FILL_ZEROS: v = 0.0f; break;
            case FILL_WINDOW: v = 0.5f - 0.5f * cosf(6.2831853f * (float)k / 399.0f); break;
            case FILL_FILTERBANK: v = (u + 1.0f) * 0.01f; break;
            default: v = u * bound; break;
            }
            buf[nbuf++] = v;
            if (nbuf == BUF) {
                fwrite(buf, sizeof buf[0], (size_t)nbuf, f);
                nbuf = 0;
            }
        }
        fwrite(buf, sizeof buf[0], (size_t)nbuf, f);
        nbuf = 0;
        written += cnt * sizeof(float);
    }
    rc = ferror(f) ? -1 : 0;
    if (fclose(f) != 0)
        rc = -1;
    if (rc != 0)
        snprintf(err, errlen, "writing %s failed", path);
out:
    free(text);
    free(offsets);
    free(l.t);
    return rc;
}
