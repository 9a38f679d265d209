/*
 * model.c - maps an Earshot safetensors file, validates its configuration against the
 * supported model family (DESIGN.md section 3) and resolves every weight by NeMo's name.
 *
 * Every check that can fail writes one sentence into the caller's error buffer and the load
 * unwinds; nothing here aborts. Shapes are checked against the configuration so that a file
 * whose tensors do not match its own config is refused before any step runs.
 */
#include "model.h"

#include "ops.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    es_model *m;
    cJSON *header;      /* the safetensors JSON header */
    cJSON *config;      /* earshot.config parsed */
    const uint8_t *data;
    size_t data_size;
    char *err;
    size_t errlen;
    int failed;
} loader;

static void fail(loader *ld, const char *fmt, ...)
{
    if (ld->failed)
        return; /* keep the first, most specific reason */
    ld->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err, ld->errlen, fmt, ap);
    va_end(ap);
}

/* ---- configuration access: dotted paths into the config object ---- */

static const cJSON *cfg_get(const cJSON *root, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *node = root;
    for (char *save = NULL, *part = strtok_r(buf, ".", &save); part && node;
         part = strtok_r(NULL, ".", &save))
        node = cJSON_GetObjectItemCaseSensitive(node, part);
    return node;
}

static int cfg_int(loader *ld, const char *path, int fallback, int required)
{
    const cJSON *v = cfg_get(ld->config, path);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            fail(ld, "model config lacks %s", path);
        return fallback;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) {
        fail(ld, "unsupported config: %s is not an integer", path);
        return fallback;
    }
    return v->valueint;
}

static double cfg_num(loader *ld, const char *path, double fallback)
{
    const cJSON *v = cfg_get(ld->config, path);
    if (!v || cJSON_IsNull(v))
        return fallback;
    if (!cJSON_IsNumber(v)) {
        fail(ld, "unsupported config: %s is not a number", path);
        return fallback;
    }
    return v->valuedouble;
}

static const char *cfg_str(const cJSON *root, const char *path)
{
    const cJSON *v = cfg_get(root, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int cfg_bool(loader *ld, const char *path, int fallback)
{
    const cJSON *v = cfg_get(ld->config, path);
    if (!v || cJSON_IsNull(v))
        return fallback;
    if (!cJSON_IsBool(v)) {
        fail(ld, "unsupported config: %s is not a boolean", path);
        return fallback;
    }
    return cJSON_IsTrue(v);
}

/* Metadata keys contain dots themselves, so they are looked up whole. */
static const char *meta_str(const cJSON *meta, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A string field must be one of the listed values; returns its index or -1 after failing. */
static int cfg_choice(loader *ld, const char *path, const char *fallback, const char *const *choices,
                      int n_choices)
{
    const char *v = cfg_str(ld->config, path);
    if (!v) {
        if (!fallback) {
            fail(ld, "model config lacks %s", path);
            return -1;
        }
        v = fallback;
    }
    for (int i = 0; i < n_choices; i++)
        if (strcmp(v, choices[i]) == 0)
            return i;
    char list[256] = "";
    for (int i = 0; i < n_choices; i++) {
        strncat(list, choices[i], sizeof list - strlen(list) - 1);
        if (i + 1 < n_choices)
            strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    fail(ld, "unsupported config: %s = '%s' (supported: %s)", path, v, list);
    return -1;
}

/* ---- tensors ---- */

/* Returns the F32 tensor `name` if its shape is exactly dims[0..ndim). */
static const float *tensor(loader *ld, const char *name, int ndim, const int *dims)
{
    if (ld->failed)
        return NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ld->header, name);
    if (!t) {
        fail(ld, "model file lacks tensor %s", name);
        return NULL;
    }
    const char *dtype = meta_str(t, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
    if (!dtype || strcmp(dtype, "F32") != 0) {
        fail(ld, "tensor %s has dtype %s, expected F32", name, dtype ? dtype : "(none)");
        return NULL;
    }
    if (!cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
        fail(ld, "tensor %s has a malformed header entry", name);
        return NULL;
    }
    int n = cJSON_GetArraySize(shape);
    int ok = n == ndim;
    size_t count = 1;
    for (int i = 0; ok && i < n; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        ok = cJSON_IsNumber(d) && d->valueint == dims[i];
        count *= (size_t)dims[i];
    }
    if (!ok) {
        char want[128] = "", got[128] = "";
        for (int i = 0; i < ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "," : "", dims[i]);
        for (int i = 0; i < n; i++) {
            const cJSON *d = cJSON_GetArrayItem(shape, i);
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? "," : "",
                     cJSON_IsNumber(d) ? d->valueint : -1);
        }
        fail(ld, "tensor %s has shape [%s], expected [%s] from the config", name, got, want);
        return NULL;
    }
    double b = cJSON_GetArrayItem(offs, 0)->valuedouble, e = cJSON_GetArrayItem(offs, 1)->valuedouble;
    if (b < 0 || e < b || e > (double)ld->data_size || (size_t)(e - b) != count * sizeof(float)) {
        fail(ld, "tensor %s lies outside the file or has the wrong byte size (file truncated?)", name);
        return NULL;
    }
    size_t off = (size_t)b;
    if (((uintptr_t)(ld->data + off)) % sizeof(float) != 0) {
        fail(ld, "tensor %s is not aligned to 4 bytes", name);
        return NULL;
    }
    return (const float *)(ld->data + off);
}

static const float *tensor1(loader *ld, const char *name, int d0)
{
    return tensor(ld, name, 1, (int[]){d0});
}
static const float *tensor2(loader *ld, const char *name, int d0, int d1)
{
    return tensor(ld, name, 2, (int[]){d0, d1});
}

static int has_tensor(loader *ld, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(ld->header, name) != NULL;
}

static es_linear linear(loader *ld, const char *prefix, int out, int in, int with_bias, int conv1d)
{
    char name[256];
    es_linear l = {.out = out, .in = in};
    snprintf(name, sizeof name, "%s.weight", prefix);
    l.w = conv1d ? tensor(ld, name, 3, (int[]){out, in, 1}) : tensor2(ld, name, out, in);
    if (with_bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        l.b = tensor1(ld, name, out);
    }
    return l;
}

static es_layer_norm layer_norm(loader *ld, const char *prefix, int d)
{
    char name[256];
    es_layer_norm n;
    snprintf(name, sizeof name, "%s.weight", prefix);
    n.gamma = tensor1(ld, name, d);
    snprintf(name, sizeof name, "%s.bias", prefix);
    n.beta = tensor1(ld, name, d);
    return n;
}

/* ---- the parts of the model ---- */

/* One list of preprocessor.normalize's fixed form: n_mels finite numbers (positive for the std). */
static float *fixed_stats(loader *ld, const cJSON *list, const char *name, int positive)
{
    int n = ld->m->n_mels;
    if (ld->failed)
        return NULL;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != n) {
        fail(ld, "unsupported config: preprocessor.normalize.%s must be a list of %d numbers (one per mel bin)",
             name, n);
        return NULL;
    }
    float *out = malloc(sizeof(float) * (size_t)n);
    if (!out) {
        fail(ld, "out of memory");
        return NULL;
    }
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
        if (!isfinite(v) || fabs(v) > 1e30 || (positive && !(v > 1e-30))) {
            fail(ld, "unsupported config: preprocessor.normalize.%s[%d] is not a %s number", name, i,
                 positive ? "positive" : "finite");
            free(out);
            return NULL;
        }
        out[i++] = (float)v;
    }
    return out;
}

/* preprocessor.normalize: "NA" (none), or NeMo's fixed form {fixed_mean: [...], fixed_std: [...]}
 * (per mel bin statistics of the training set, which a stream applies frame by frame). NeMo's
 * per-utterance modes need the whole utterance before the first frame and are refused. */
static void load_normalisation(loader *ld)
{
    es_model *m = ld->m;
    const cJSON *v = cfg_get(ld->config, "preprocessor.normalize");
    if (cJSON_IsObject(v)) {
        m->feat_mean = fixed_stats(ld, cJSON_GetObjectItemCaseSensitive(v, "fixed_mean"), "fixed_mean", 0);
        m->feat_std = fixed_stats(ld, cJSON_GetObjectItemCaseSensitive(v, "fixed_std"), "fixed_std", 1);
        return;
    }
    static const char *const na[] = {"NA"};
    cfg_choice(ld, "preprocessor.normalize", "per_feature", na, 1);
}

static void load_preprocessor(loader *ld)
{
    es_model *m = ld->m;
    const char *target = cfg_str(ld->config, "preprocessor._target_");
    if (!target || !ends_with(target, "AudioToMelSpectrogramPreprocessor")) {
        fail(ld, "unsupported config: preprocessor._target_ = '%s' (supported: AudioToMelSpectrogramPreprocessor)",
             target ? target : "(none)");
        return;
    }
    m->sample_rate = cfg_int(ld, "preprocessor.sample_rate", 16000, 0);
    m->n_mels = cfg_int(ld, "preprocessor.features", 64, 0);
    m->n_fft = cfg_int(ld, "preprocessor.n_fft", 512, 0);
    double win = cfg_num(ld, "preprocessor.window_size", 0.02);
    double hop = cfg_num(ld, "preprocessor.window_stride", 0.01);
    m->win_length = (int)lround(win * m->sample_rate);
    m->hop_length = (int)lround(hop * m->sample_rate);
    static const char *const hann[] = {"hann"};
    cfg_choice(ld, "preprocessor.window", "hann", hann, 1);
    if (m->sample_rate != 16000)
        fail(ld, "unsupported config: preprocessor.sample_rate = %d (supported: 16000)", m->sample_rate);
    if (m->n_fft != 512)
        fail(ld, "unsupported config: preprocessor.n_fft = %d (supported: 512)", m->n_fft);
    if (m->win_length != 400 || m->hop_length != 160)
        fail(ld, "unsupported config: preprocessor window %g s / stride %g s (supported: 0.025 / 0.01)", win, hop);
    if (cfg_int(ld, "preprocessor.frame_splicing", 1, 0) != 1)
        fail(ld, "unsupported config: preprocessor.frame_splicing (supported: 1)");
    if (!cfg_bool(ld, "preprocessor.log", 1))
        fail(ld, "unsupported config: preprocessor.log = false (supported: true)");
    if (m->n_mels < 1 || m->n_mels > 512)
        fail(ld, "unsupported config: preprocessor.features = %d", m->n_mels);
    else
        load_normalisation(ld);
    m->window = tensor1(ld, "preprocessor.featurizer.window", m->win_length);
    m->filterbank = tensor(ld, "preprocessor.featurizer.fb", 3, (int[]){1, m->n_mels, m->n_fft / 2 + 1});
}

static void load_att_context(loader *ld)
{
    es_model *m = ld->m;
    const cJSON *ctx = cfg_get(ld->config, "encoder.att_context_size");
    if (!cJSON_IsArray(ctx) || cJSON_GetArraySize(ctx) == 0) {
        fail(ld, "unsupported config: encoder.att_context_size must be [left, right] or a list of them");
        return;
    }
    int nested = cJSON_IsArray(cJSON_GetArrayItem(ctx, 0));
    int n = nested ? cJSON_GetArraySize(ctx) : 1;
    if (n > ES_MAX_LOOKAHEADS) {
        fail(ld, "unsupported config: encoder.att_context_size has %d entries (at most %d)", n, ES_MAX_LOOKAHEADS);
        return;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *pair = nested ? cJSON_GetArrayItem(ctx, i) : ctx;
        const cJSON *l = cJSON_GetArrayItem(pair, 0), *r = cJSON_GetArrayItem(pair, 1);
        if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2 || !cJSON_IsNumber(l) || !cJSON_IsNumber(r)) {
            fail(ld, "unsupported config: encoder.att_context_size[%d] is not a pair of integers", i);
            return;
        }
        if (l->valueint < 1 || r->valueint < 0) {
            fail(ld, "unsupported config: encoder.att_context_size[%d] = [%d, %d] (streaming needs a finite left context >= 1 and a right context >= 0)",
                 i, l->valueint, r->valueint);
            return;
        }
        m->streaming[i].att_context[0] = l->valueint;
        m->streaming[i].att_context[1] = r->valueint;
    }
    m->n_lookaheads = n;
}

/* NeMo's ConformerEncoder.setup_streaming_params with sampling_frames = [1, f]. */
static void derive_streaming(es_model *m)
{
    int f = m->subsampling_factor;
    m->max_cache_size = 0;
    for (int i = 0; i < m->n_lookaheads; i++) {
        es_streaming_cfg *s = &m->streaming[i];
        int lookahead, drop;
        if (m->att_style == ES_ATT_CHUNKED_LIMITED) {
            lookahead = s->att_context[1];
            drop = 0;
        } else {
            lookahead = s->att_context[1] * m->n_layers; /* causal conv adds no look-ahead */
            drop = lookahead;
        }
        s->cache_drop_size = drop;
        s->last_channel_cache_size = s->att_context[0];
        s->chunk_size[0] = 1 + f * lookahead;
        s->chunk_size[1] = f + f * lookahead;
        s->shift_size[0] = 1 + f * (lookahead - drop);
        s->shift_size[1] = f + f * (lookahead - drop);
        s->valid_out_len = (s->shift_size[1] - f) / f + 1;
        s->pre_encode_cache_size = f + 1;
        s->drop_extra_pre_encoded = 1 + (s->pre_encode_cache_size - 1) / f;
        s->chunk_ms = s->shift_size[1] * 1000 * m->hop_length / m->sample_rate;
        if (s->last_channel_cache_size > m->max_cache_size)
            m->max_cache_size = s->last_channel_cache_size;
    }
}

static void load_subsampling(loader *ld)
{
    es_model *m = ld->m;
    int f = m->subsampling_factor, c = m->sub_channels;
    int n_stages = 0;
    while ((1 << n_stages) < f)
        n_stages++;
    char name[128];
    int freq = m->n_mels;
    m->n_sub = 0;
    /* Module indices follow NeMo's nn.Sequential: ReLUs take an index too. */
    int index = 0;
    for (int s = 0; s < n_stages && !ld->failed; s++) {
        es_sub_stage *st = &m->sub[m->n_sub++];
        int in = s == 0 ? 1 : c;
        st->stride = 2;
        st->in_ch = in;
        st->out_ch = c;
        if (m->sub_kind == ES_SUB_DW_STRIDING && s > 0) {
            st->kind = ES_CONV_DEPTHWISE;
            st->relu_after = 0;
            snprintf(name, sizeof name, "encoder.pre_encode.conv.%d.weight", index);
            st->w = tensor(ld, name, 4, (int[]){c, 1, 3, 3});
            snprintf(name, sizeof name, "encoder.pre_encode.conv.%d.bias", index);
            st->b = tensor1(ld, name, c);
            index++;
            es_sub_stage *pw = &m->sub[m->n_sub++];
            pw->kind = ES_CONV_POINTWISE;
            pw->stride = 1;
            pw->in_ch = c;
            pw->out_ch = c;
            pw->relu_after = 1;
            snprintf(name, sizeof name, "encoder.pre_encode.conv.%d.weight", index);
            pw->w = tensor(ld, name, 4, (int[]){c, c, 1, 1});
            snprintf(name, sizeof name, "encoder.pre_encode.conv.%d.bias", index);
            pw->b = tensor1(ld, name, c);
            index += 2;
        } else {
            st->kind = ES_CONV_FULL;
            st->relu_after = 1;
            snprintf(name, sizeof name, "encoder.pre_encode.conv.%d.weight", index);
            st->w = tensor(ld, name, 4, (int[]){c, in, 3, 3});
            snprintf(name, sizeof name, "encoder.pre_encode.conv.%d.bias", index);
            st->b = tensor1(ld, name, c);
            index += 2;
        }
        freq = freq / 2 + 1; /* causal padding (2 left, 1 right), kernel 3, stride 2 */
    }
    m->sub_freq_out = freq;
    m->sub_out = linear(ld, "encoder.pre_encode.out", m->d_model, c * freq, 1, 0);
}

static void load_layers(loader *ld)
{
    es_model *m = ld->m;
    int d = m->d_model, H = m->n_heads, dh = m->d_head, k = m->conv_kernel;
    m->layers = calloc((size_t)m->n_layers, sizeof(es_layer));
    if (!m->layers) {
        fail(ld, "out of memory");
        return;
    }
    char p[128], name[192];
    for (int i = 0; i < m->n_layers && !ld->failed; i++) {
        es_layer *L = &m->layers[i];
#define P(suffix) (snprintf(name, sizeof name, "%s.%s", p, suffix), name)
        snprintf(p, sizeof p, "encoder.layers.%d", i);
        L->norm_ff1 = layer_norm(ld, P("norm_feed_forward1"), d);
        L->ff1_in = linear(ld, P("feed_forward1.linear1"), m->ff_dim, d, 1, 0);
        L->ff1_out = linear(ld, P("feed_forward1.linear2"), d, m->ff_dim, 1, 0);
        L->norm_att = layer_norm(ld, P("norm_self_att"), d);
        L->q = linear(ld, P("self_attn.linear_q"), d, d, 1, 0);
        L->k = linear(ld, P("self_attn.linear_k"), d, d, 1, 0);
        L->v = linear(ld, P("self_attn.linear_v"), d, d, 1, 0);
        L->att_out = linear(ld, P("self_attn.linear_out"), d, d, 1, 0);
        L->pos = linear(ld, P("self_attn.linear_pos"), d, d, 0, 0);
        /* untie_biases: false keeps one pair of biases on the encoder, shared by all layers */
        if (has_tensor(ld, P("self_attn.pos_bias_u"))) {
            L->pos_bias_u = tensor2(ld, P("self_attn.pos_bias_u"), H, dh);
            L->pos_bias_v = tensor2(ld, P("self_attn.pos_bias_v"), H, dh);
        } else {
            L->pos_bias_u = tensor2(ld, "encoder.pos_bias_u", H, dh);
            L->pos_bias_v = tensor2(ld, "encoder.pos_bias_v", H, dh);
        }
        L->norm_conv = layer_norm(ld, P("norm_conv"), d);
        L->pw1 = linear(ld, P("conv.pointwise_conv1"), 2 * d, d, 1, 1);
        L->dw_w = tensor(ld, P("conv.depthwise_conv.weight"), 3, (int[]){d, 1, k});
        L->dw_b = tensor1(ld, P("conv.depthwise_conv.bias"), d);
        if (m->conv_norm == ES_NORM_LAYER) {
            L->conv_ln = layer_norm(ld, P("conv.batch_norm"), d);
        } else {
            const float *g = tensor1(ld, P("conv.batch_norm.weight"), d);
            const float *b = tensor1(ld, P("conv.batch_norm.bias"), d);
            const float *mean = tensor1(ld, P("conv.batch_norm.running_mean"), d);
            const float *var = tensor1(ld, P("conv.batch_norm.running_var"), d);
            L->bn_scale = malloc(sizeof(float) * (size_t)d);
            L->bn_shift = malloc(sizeof(float) * (size_t)d);
            if (!L->bn_scale || !L->bn_shift)
                fail(ld, "out of memory");
            if (!ld->failed)
                for (int c = 0; c < d; c++) {
                    /* eval-mode BatchNorm1d, eps 1e-5, folded into one multiply-add */
                    L->bn_scale[c] = g[c] / sqrtf(var[c] + 1e-5f);
                    L->bn_shift[c] = b[c] - mean[c] * L->bn_scale[c];
                }
        }
        L->pw2 = linear(ld, P("conv.pointwise_conv2"), d, d, 1, 1);
        L->norm_ff2 = layer_norm(ld, P("norm_feed_forward2"), d);
        L->ff2_in = linear(ld, P("feed_forward2.linear1"), m->ff_dim, d, 1, 0);
        L->ff2_out = linear(ld, P("feed_forward2.linear2"), d, m->ff_dim, 1, 0);
        L->norm_out = layer_norm(ld, P("norm_out"), d);
#undef P
    }
}

static void load_encoder(loader *ld)
{
    es_model *m = ld->m;
    const char *target = cfg_str(ld->config, "encoder._target_");
    if (!target || !ends_with(target, "ConformerEncoder")) {
        fail(ld, "unsupported config: encoder._target_ = '%s' (supported: ConformerEncoder)", target ? target : "(none)");
        return;
    }
    static const char *const att_models[] = {"rel_pos"};
    static const char *const subs[] = {"dw_striding", "striding"};
    static const char *const styles[] = {"chunked_limited", "regular"};
    static const char *const norms[] = {"layer_norm", "batch_norm"};
    cfg_choice(ld, "encoder.self_attention_model", "rel_pos", att_models, 1);
    int sub = cfg_choice(ld, "encoder.subsampling", "striding", subs, 2);
    int style = cfg_choice(ld, "encoder.att_context_style", "regular", styles, 2);
    int norm = cfg_choice(ld, "encoder.conv_norm_type", "batch_norm", norms, 2);
    if (ld->failed)
        return;
    m->sub_kind = sub == 0 ? ES_SUB_DW_STRIDING : ES_SUB_STRIDING;
    m->att_style = style == 0 ? ES_ATT_CHUNKED_LIMITED : ES_ATT_REGULAR;
    m->conv_norm = norm == 0 ? ES_NORM_LAYER : ES_NORM_BATCH;

    if (!cfg_bool(ld, "encoder.causal_downsampling", 0))
        fail(ld, "unsupported config: encoder.causal_downsampling = false (streaming needs true)");
    const cJSON *ctx = cfg_get(ld->config, "encoder.conv_context_size");
    if (ctx && !(cJSON_IsString(ctx) && strcmp(ctx->valuestring, "causal") == 0)) {
        int k = cfg_int(ld, "encoder.conv_kernel_size", 31, 0);
        int ok = cJSON_IsArray(ctx) && cJSON_GetArraySize(ctx) == 2 &&
                 cJSON_GetArrayItem(ctx, 0)->valueint == k - 1 && cJSON_GetArrayItem(ctx, 1)->valueint == 0;
        if (!ok)
            fail(ld, "unsupported config: encoder.conv_context_size is not causal (supported: causal or [kernel-1, 0])");
    }
    const cJSON *red = cfg_get(ld->config, "encoder.reduction");
    if (red && !cJSON_IsNull(red))
        fail(ld, "unsupported config: encoder.reduction is set (supported: none)");
    if (cfg_int(ld, "encoder.feat_out", -1, 0) != -1)
        fail(ld, "unsupported config: encoder.feat_out = %d (supported: -1)", cfg_int(ld, "encoder.feat_out", -1, 0));
    if (cfg_int(ld, "encoder.feat_in", m->n_mels, 0) != m->n_mels)
        fail(ld, "unsupported config: encoder.feat_in = %d differs from preprocessor.features = %d",
             cfg_int(ld, "encoder.feat_in", 0, 0), m->n_mels);

    m->d_model = cfg_int(ld, "encoder.d_model", 0, 1);
    m->n_heads = cfg_int(ld, "encoder.n_heads", 4, 0);
    m->n_layers = cfg_int(ld, "encoder.n_layers", 0, 1);
    m->ff_dim = m->d_model * cfg_int(ld, "encoder.ff_expansion_factor", 4, 0);
    m->conv_kernel = cfg_int(ld, "encoder.conv_kernel_size", 31, 0);
    m->subsampling_factor = cfg_int(ld, "encoder.subsampling_factor", 4, 0);
    m->sub_channels = cfg_int(ld, "encoder.subsampling_conv_channels", -1, 0);
    if (m->sub_channels == -1)
        m->sub_channels = m->d_model;
    m->xscaling = cfg_bool(ld, "encoder.xscaling", 1);
    if (ld->failed)
        return;
    int f = m->subsampling_factor;
    if (f < 2 || f > 64 || (f & (f - 1)) != 0)
        fail(ld, "unsupported config: encoder.subsampling_factor = %d (supported: a power of 2 from 2 to 64)", f);
    if (m->d_model < 1 || m->n_heads < 1 || m->d_model % m->n_heads != 0)
        fail(ld, "unsupported config: encoder.d_model = %d is not a multiple of encoder.n_heads = %d", m->d_model, m->n_heads);
    if (m->n_layers < 1 || m->n_layers > 256)
        fail(ld, "unsupported config: encoder.n_layers = %d", m->n_layers);
    if (m->conv_kernel < 1 || m->conv_kernel > 256)
        fail(ld, "unsupported config: encoder.conv_kernel_size = %d", m->conv_kernel);
    if (m->sub_channels < 1 || m->ff_dim < 1)
        fail(ld, "unsupported config: encoder.subsampling_conv_channels / ff_expansion_factor");
    if (ld->failed)
        return;
    m->d_head = m->d_model / m->n_heads;
    load_att_context(ld);
    if (ld->failed)
        return;
    derive_streaming(m);
    load_subsampling(ld);
    load_layers(ld);
}

static void load_decoders(loader *ld)
{
    es_model *m = ld->m;
    int V1 = m->n_vocab + 1, d = m->d_model;
    const char *dec = cfg_str(ld->config, "decoder._target_");
    if (!dec) {
        fail(ld, "model config lacks decoder._target_");
        return;
    }
    if (ends_with(dec, "ConvASRDecoder")) {
        m->has_ctc = 1;
        m->ctc = linear(ld, "decoder.decoder_layers.0", V1, d, 1, 1);
    } else if (ends_with(dec, "RNNTDecoder")) {
        const char *joint = cfg_str(ld->config, "joint._target_");
        if (!joint || !ends_with(joint, "RNNTJoint")) {
            fail(ld, "unsupported config: joint._target_ = '%s' (supported: RNNTJoint)", joint ? joint : "(none)");
            return;
        }
        if (cfg_int(ld, "decoder.prednet.pred_rnn_layers", 1, 0) != 1) {
            fail(ld, "unsupported config: decoder.prednet.pred_rnn_layers = %d (supported: 1)",
                 cfg_int(ld, "decoder.prednet.pred_rnn_layers", 1, 0));
            return;
        }
        m->has_rnnt = 1;
        int H = m->pred_hidden = cfg_int(ld, "decoder.prednet.pred_hidden", 0, 1);
        int J = m->joint_hidden = cfg_int(ld, "joint.jointnet.joint_hidden", 0, 1);
        if (ld->failed)
            return;
        m->max_symbols = cfg_int(ld, "decoding.greedy.max_symbols", 10, 0);
        if (m->max_symbols < 1)
            m->max_symbols = 10;
        m->embed = tensor2(ld, "decoder.prediction.embed.weight", V1, H);
        m->lstm_ih = (es_linear){.out = 4 * H, .in = H};
        m->lstm_ih.w = tensor2(ld, "decoder.prediction.dec_rnn.lstm.weight_ih_l0", 4 * H, H);
        m->lstm_ih.b = tensor1(ld, "decoder.prediction.dec_rnn.lstm.bias_ih_l0", 4 * H);
        m->lstm_hh = (es_linear){.out = 4 * H, .in = H};
        m->lstm_hh.w = tensor2(ld, "decoder.prediction.dec_rnn.lstm.weight_hh_l0", 4 * H, H);
        m->lstm_hh.b = tensor1(ld, "decoder.prediction.dec_rnn.lstm.bias_hh_l0", 4 * H);
        m->joint_enc = linear(ld, "joint.enc", J, d, 1, 0);
        m->joint_pred = linear(ld, "joint.pred", J, H, 1, 0);
        m->joint_out = linear(ld, "joint.joint_net.2", V1, J, 1, 0);
        const char *act = cfg_str(ld->config, "joint.jointnet.activation");
        if (act && strcmp(act, "relu") != 0)
            fail(ld, "unsupported config: joint.jointnet.activation = '%s' (supported: relu)", act);
        if (has_tensor(ld, "ctc_decoder.decoder_layers.0.weight")) {
            m->has_ctc = 1;
            m->ctc = linear(ld, "ctc_decoder.decoder_layers.0", V1, d, 1, 1);
        }
    } else {
        fail(ld, "unsupported config: decoder._target_ = '%s' (supported: ConvASRDecoder, RNNTDecoder)", dec);
    }
}

/* Every linear layer of the encoder, for packing and freeing. */
static int encoder_linears(es_model *m, es_linear **out)
{
    int n = 0;
    out[n++] = &m->sub_out;
    for (int i = 0; i < m->n_layers; i++) {
        es_layer *L = &m->layers[i];
        es_linear *ls[] = {&L->ff1_in, &L->ff1_out, &L->q, &L->k, &L->v, &L->att_out, &L->pos, &L->pw1, &L->pw2,
                           &L->ff2_in, &L->ff2_out};
        for (size_t k = 0; k < sizeof ls / sizeof ls[0]; k++)
            out[n++] = ls[k];
    }
    return n;
}

#define LINEARS_PER_LAYER 11

static void pack_encoder(loader *ld)
{
    es_model *m = ld->m;
    es_linear **ls = malloc(sizeof(es_linear *) * (size_t)(1 + LINEARS_PER_LAYER * m->n_layers));
    if (!ls) {
        fail(ld, "out of memory");
        return;
    }
    int n = encoder_linears(m, ls);
    for (int i = 0; i < n && !ld->failed; i++)
        if (es_linear_pack(ls[i]) != 0)
            fail(ld, "out of memory packing the encoder's weights");
    free(ls);
}

static void load_vocabulary(loader *ld, const cJSON *meta)
{
    es_model *m = ld->m;
    const char *text = meta_str(meta, "earshot.vocabulary");
    cJSON *arr = text ? cJSON_Parse(text) : NULL;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1) {
        cJSON_Delete(arr);
        fail(ld, "model file lacks a valid earshot.vocabulary");
        return;
    }
    m->n_vocab = cJSON_GetArraySize(arr);
    m->vocab = calloc((size_t)m->n_vocab, sizeof(char *));
    for (int i = 0; m->vocab && i < m->n_vocab; i++) {
        const cJSON *p = cJSON_GetArrayItem(arr, i);
        m->vocab[i] = strdup(cJSON_IsString(p) ? p->valuestring : "");
        if (!m->vocab[i])
            fail(ld, "out of memory");
    }
    if (!m->vocab)
        fail(ld, "out of memory");
    cJSON_Delete(arr);
}

static int map_file(loader *ld, const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        fail(ld, "cannot open model %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        fail(ld, "model %s is not a regular file", path);
        return -1;
    }
    if (st.st_size < 8) {
        close(fd);
        fail(ld, "model %s is too short to be a safetensors file (%lld bytes)", path, (long long)st.st_size);
        return -1;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        fail(ld, "cannot map model %s: %s", path, strerror(errno));
        return -1;
    }
    ld->m->map = map;
    ld->m->map_size = (size_t)st.st_size;
    return 0;
}

static void parse_header(loader *ld, const char *path)
{
    const uint8_t *bytes = ld->m->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | bytes[i];
    if (n < 2 || n > ld->m->map_size - 8) {
        fail(ld, "model %s is not a safetensors file (header length %llu, file %zu bytes)", path,
             (unsigned long long)n, ld->m->map_size);
        return;
    }
    ld->header = cJSON_ParseWithLength((const char *)bytes + 8, (size_t)n);
    if (!cJSON_IsObject(ld->header)) {
        fail(ld, "model %s has a corrupt safetensors header (not a JSON object)", path);
        return;
    }
    ld->data = bytes + 8 + n;
    ld->data_size = ld->m->map_size - 8 - (size_t)n;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(ld->header, "__metadata__");
    const char *format = meta_str(meta, "earshot.format");
    if (!format) {
        fail(ld, "model %s is a safetensors file but not an Earshot model (no earshot.format metadata; convert the .nemo with earshot-convert)", path);
        return;
    }
    if (strcmp(format, "1") != 0) {
        fail(ld, "model %s has earshot.format %s; this build reads format 1", path, format);
        return;
    }
    const char *config = meta_str(meta, "earshot.config");
    ld->config = config ? cJSON_Parse(config) : NULL;
    if (!cJSON_IsObject(ld->config)) {
        fail(ld, "model %s has no valid earshot.config metadata", path);
        return;
    }
    ld->m->config_json = strdup(config);
    const char *source = meta_str(meta, "earshot.source");
    ld->m->source = source ? strdup(source) : NULL;
    load_vocabulary(ld, meta);
}

es_model *es_model_load(const char *path, char *err, size_t errlen)
{
    static char dummy[8];
    loader ld = {.err = err ? err : dummy, .errlen = err ? errlen : sizeof dummy};
    if (ld.errlen)
        ld.err[0] = '\0';
    ld.m = calloc(1, sizeof(es_model));
    if (!ld.m) {
        fail(&ld, "out of memory");
        return NULL;
    }
    if (map_file(&ld, path) == 0)
        parse_header(&ld, path);
    if (!ld.failed)
        load_preprocessor(&ld);
    if (!ld.failed)
        load_encoder(&ld);
    if (!ld.failed)
        load_decoders(&ld);
    if (!ld.failed)
        pack_encoder(&ld);
    cJSON_Delete(ld.header);
    cJSON_Delete(ld.config);
    if (ld.failed) {
        es_model_free(ld.m);
        return NULL;
    }
    return ld.m;
}

void es_model_free(es_model *m)
{
    if (!m)
        return;
    if (m->layers) {
        es_linear **ls = malloc(sizeof(es_linear *) * (size_t)(1 + LINEARS_PER_LAYER * m->n_layers));
        int n = ls ? encoder_linears(m, ls) : 0;
        for (int i = 0; i < n; i++)
            free(ls[i]->packed);
        free(ls);
        for (int i = 0; i < m->n_layers; i++) {
            free(m->layers[i].bn_scale);
            free(m->layers[i].bn_shift);
        }
    }
    free(m->layers);
    if (m->vocab)
        for (int i = 0; i < m->n_vocab; i++)
            free(m->vocab[i]);
    free(m->vocab);
    free(m->feat_mean);
    free(m->feat_std);
    free(m->config_json);
    free(m->source);
    if (m->map)
        munmap(m->map, m->map_size);
    free(m);
}
