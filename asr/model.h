/*
 * model.h - a loaded Earshot model: the mapped safetensors file, its validated configuration,
 * and typed pointers to every weight the engine uses.
 *
 * The file (docs/model-format.md) is mapped read-only and the weight pointers point straight
 * into the mapping, so loading a model costs no copies and many engines in one process could
 * share the pages. The few tensors that are derived at load time (batch norm folded into a
 * scale and shift, the CTC head reshaped) are owned by the model and freed with it.
 *
 * The configuration is checked here with the same rules as the converter, so that a file from
 * any other source is refused with a message naming the field and value.
 */
#ifndef EARSHOT_MODEL_H
#define EARSHOT_MODEL_H

#include <stddef.h>

#define ES_MAX_LOOKAHEADS 8
#define ES_MAX_SUB_STAGES 16

typedef enum { ES_SUB_DW_STRIDING, ES_SUB_STRIDING } es_subsampling_kind;
typedef enum { ES_ATT_CHUNKED_LIMITED, ES_ATT_REGULAR } es_att_style;
typedef enum { ES_NORM_LAYER, ES_NORM_BATCH } es_conv_norm_kind;

/* y = x W^T + b, with W [out][in] as PyTorch stores it; b may be NULL. `packed` is W laid out
   for the CPU kernel (see ops.h), made at load time and owned by the model; NULL if not made. */
typedef struct {
    const float *w;
    const float *b;
    int out, in;
    float *packed;
} es_linear;

typedef struct {
    const float *gamma, *beta;
} es_layer_norm;

/* One conv of the subsampling front end (NeMo's ConvSubsampling, causal variant). */
typedef enum { ES_CONV_FULL, ES_CONV_DEPTHWISE, ES_CONV_POINTWISE } es_conv_kind;
typedef struct {
    es_conv_kind kind;
    int in_ch, out_ch;
    int stride;        /* 2 for the 3x3 convs, 1 for pointwise */
    int relu_after;
    const float *w;    /* full: [out][in][3][3]; depthwise: [ch][1][3][3]; pointwise: [out][in] */
    const float *b;    /* [out] */
} es_sub_stage;

typedef struct {
    es_layer_norm norm_ff1;
    es_linear ff1_in, ff1_out;
    es_layer_norm norm_att;
    es_linear q, k, v, att_out, pos;   /* pos has no bias */
    const float *pos_bias_u, *pos_bias_v; /* [heads][d_head] */
    es_layer_norm norm_conv;
    es_linear pw1, pw2;                /* pointwise convs as linears */
    const float *dw_w, *dw_b;          /* depthwise causal conv: [d][kernel], [d] */
    es_layer_norm conv_ln;             /* when conv_norm == layer_norm */
    float *bn_scale, *bn_shift;        /* when batch_norm: folded, owned */
    es_layer_norm norm_ff2;
    es_linear ff2_in, ff2_out;
    es_layer_norm norm_out;
} es_layer;

/* NeMo's CacheAwareStreamingConfig for one look-ahead, in mel columns / encoder frames. */
typedef struct {
    int att_context[2];          /* [left, right] */
    int chunk_size[2];           /* mel columns: first chunk, later chunks */
    int shift_size[2];
    int pre_encode_cache_size;   /* mel columns kept before each later chunk */
    int drop_extra_pre_encoded;  /* encoder frames dropped from each later chunk */
    int cache_drop_size;         /* regular style: frames of look-ahead not cached */
    int valid_out_len;           /* encoder frames kept per chunk */
    int last_channel_cache_size; /* attention cache length (frames) */
    int chunk_ms;                /* nominal latency of one later chunk, for the API */
} es_streaming_cfg;

typedef struct es_model {
    /* mapping */
    void *map;
    size_t map_size;
    char *config_json;   /* owned copy of earshot.config */
    char *source;        /* owned copy of earshot.source, may be NULL */

    /* vocabulary (blank id = n_vocab) */
    int n_vocab;
    char **vocab;

    int has_ctc, has_rnnt;

    /* preprocessor */
    int sample_rate, n_fft, hop_length, win_length, n_mels;
    const float *window;       /* [win_length] */
    const float *filterbank;   /* [n_mels][n_fft/2+1] */
    float *feat_mean, *feat_std; /* [n_mels] (owned) or NULL: normalize {fixed_mean, fixed_std} */

    /* encoder */
    int d_model, n_heads, d_head, n_layers, ff_dim, conv_kernel;
    int subsampling_factor, sub_channels, sub_freq_out;
    es_subsampling_kind sub_kind;
    es_att_style att_style;
    es_conv_norm_kind conv_norm;
    int xscaling;
    es_sub_stage sub[ES_MAX_SUB_STAGES];
    int n_sub;
    es_linear sub_out;
    es_layer *layers;
    int n_lookaheads;
    es_streaming_cfg streaming[ES_MAX_LOOKAHEADS];
    int max_cache_size;          /* largest last_channel_cache_size over look-aheads */

    /* CTC head: log_softmax(W x + b), W [V+1][d] */
    es_linear ctc;

    /* RNNT: embedding, one LSTM layer, joint */
    int pred_hidden, joint_hidden, max_symbols;
    const float *embed;          /* [V+1][pred_hidden]; row V (blank) is the start symbol, zero */
    es_linear lstm_ih, lstm_hh;  /* [4H][H], gates i,f,g,o as PyTorch */
    es_linear joint_enc, joint_pred, joint_out;
} es_model;

/* Loads and validates; on failure returns NULL and writes a one-line reason to err. */
es_model *es_model_load(const char *path, char *err, size_t errlen);
void es_model_free(es_model *m);

#endif
