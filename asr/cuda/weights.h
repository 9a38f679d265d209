/*
 * weights.h - the model's weights in device memory (CUDA C++, internal).
 *
 * Linear layers are lowp [out][in] (PyTorch's layout, fed to cuBLAS as the transposed
 * operand) with fp32 biases; norms, attention biases and the depthwise convolution stay fp32
 * (they are small and feed fp32 arithmetic). q, k and v are one [3d][d] matrix, so the
 * attention input is projected by one GEMM. Batch norm is folded into the depthwise conv at
 * upload. The subsampling convolutions stay fp32 for cuDNN, and so does the RNNT decoder,
 * whose argmax decisions are taken on its own outputs with no encoder in between to average
 * rounding out.
 */
#ifndef EARSHOT_CUDA_WEIGHTS_H
#define EARSHOT_CUDA_WEIGHTS_H

#include "kernels.h"

typedef struct {
    lowp *w;  /* [out][in] */
    float *b; /* [out], or NULL */
    int out, in;
} dlinear;

/* fp32 weights, for the RNNT decoder */
typedef struct {
    float *w; /* [out][in] */
    float *b; /* [out], or NULL */
    int out, in;
} dlinear32;

typedef struct {
    float *gamma, *beta;
} dnorm;

typedef struct {
    dnorm norm_ff1, norm_att, norm_conv, conv_ln, norm_ff2, norm_out;
    dlinear ff1_in, ff1_out, qkv, att_out, pos, pw1, pw2, ff2_in, ff2_out;
    float *pos_u, *pos_v; /* [heads][d_head] */
    float *dw_w, *dw_b;   /* [d][kernel], [d]; batch norm folded in */
} dlayer;

typedef struct {
    float *w, *b; /* as es_sub_stage, fp32 */
} dsub_stage;

typedef struct {
    dlayer *layers; /* host array of n_layers */
    dsub_stage sub[ES_MAX_SUB_STAGES];
    dlinear sub_out, ctc;
    /* RNNT (when the model has it) */
    float *embed; /* [V+1][H] */
    dlinear32 lstm_ih, lstm_hh, joint_enc, joint_pred, joint_out;
    void **allocs; /* every device block, for free */
    int n_allocs, cap_allocs;
    size_t bytes;
} dweights;

/* Uploads every weight the encoder, the CTC head and the RNNT decoder use. Returns 0, or -1 with a message
   (dweights_free cleans up either way). */
int dweights_upload(dweights *w, const es_model *m, char *err, size_t errlen);
void dweights_free(dweights *w);

#endif
