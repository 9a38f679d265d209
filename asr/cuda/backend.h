/*
 * backend.h - the CUDA backend's state and shared helpers (CUDA C++, internal to asr/cuda).
 *
 * encoder_cuda.cu (the encoder step) and rnnt_cuda.cu (greedy RNNT) share one es_cuda: its
 * stream, library handles, weights, slot caches and workspace buffers.
 */
#ifndef EARSHOT_CUDA_BACKEND_INTERNAL_H
#define EARSHOT_CUDA_BACKEND_INTERNAL_H

#include "cuda_backend.h"
#include "kernels.h"
#include "weights.h"

#include <cublas_v2.h>
#include <cudnn.h>

/* Device workspace buffers. */
enum {
    D_PLAN,   /* es_cuda_stream[n] then int row_stream[N] */
    D_FEAT,   /* fp32 [n][max_width][n_mels] */
    D_SUB_IN, /* fp32 padded input of a subsampling stage */
    D_SUB_OUT,/* fp32 output of a subsampling stage */
    D_CONV_WS,/* cuDNN workspace */
    D_FLAT,   /* lowp [N][channels * freq]: the subsampling output flattened */
    D_X,      /* fp32 [N][d]: the residual stream */
    D_YH,     /* lowp [N][d]: layer-norm outputs that feed a GEMM */
    D_H,      /* fp32 [N][max(ff, 3d)]: GEMM outputs (hidden, qkv, pw1) */
    D_HH,     /* lowp [N][ff]: swish(hidden) */
    D_G,      /* fp32 [N][d]: GLU output, the depthwise conv's input */
    D_Z,      /* fp32 [N][d]: depthwise conv output (layer-norm models) */
    D_OH,     /* lowp [N][d]: attention output, then pw2's input */
    D_PE,     /* lowp [pos_rows][d]: the position table */
    D_POS,    /* fp32 [n_layers][pos_rows][d]: its linear_pos projections */
    D_LOGITS, /* fp32 [N][vocab+1] */
    D_IDS,    /* int [N] */
    /* the RNNT decoder (rnnt_cuda.cu) */
    D_R_ENC,   /* fp32 [N][J]: joint_enc of every frame */
    D_R_JOBS,  /* rnnt_job[B] */
    D_R_X,     /* fp32 [B][H]: the LSTM's input, then its output h1 */
    D_R_HP,    /* fp32 [B][H]: the LSTM's previous h */
    D_R_GATES, /* fp32 [B][4H] */
    D_R_P,     /* fp32 [B][J]: joint_pred(h1) */
    D_R_Z,     /* fp32 [B][J]: relu(enc + pred) */
    D_R_LOGITS,/* fp32 [B][V+1] */
    D_R_TOK,   /* int [B][cap][2]: (token, frame) */
    D_R_COUNT, /* int: streams still active */
    N_DBUFS
};
enum { H_PLAN, H_FEAT, H_FRAMES, H_IDS, H_R_JOBS, H_R_TOK, H_R_COUNT, N_HBUFS };

/* NVIDIA's recommended cuBLAS workspace on Hopper */
#define BLAS_WORKSPACE ((size_t)32 << 20)

typedef struct {
    void *p;
    size_t cap;
} buffer;

/* A captured step, for one shape (totals and whether it has the CTC head). 64: the 25 buckets
   up to 4096 streams for two latency modes, with room for exact shapes. */
#define MAX_GRAPHS 64
typedef struct {
    es_cuda_totals key;
    unsigned flags;
    cudaGraphExec_t exec;
    unsigned long last_used;
} graph_entry;

/* cuDNN's choice of algorithm for one subsampling stage, kept while the shapes stay. */
typedef struct {
    int B, T;
    cudnnConvolutionFwdAlgo_t algo;
    size_t ws;
} conv_choice;

struct es_cuda {
    const es_model *m;
    int n_slots;
    cudaStream_t stream;
    cublasHandle_t blas;
    cudnnHandle_t dnn;
    cudnnTensorDescriptor_t xdesc, ydesc;
    cudnnFilterDescriptor_t wdesc;
    cudnnConvolutionDescriptor_t cdesc;
    conv_choice conv[ES_MAX_SUB_STAGES];
    dweights w;
    dev_caches caches;
    es_cuda_layout layout;
    size_t cache_bytes;
    size_t max_smem;
    void *blas_ws; /* cuBLAS's workspace, ours so that a captured GEMM allocates nothing */
    buffer dev[N_DBUFS];
    buffer host[N_HBUFS]; /* pinned */
    int pos_top, pos_rows; /* the position table now in D_PE / D_POS */
    float *pos_host;
    size_t pos_host_cap;
    es_cuda_stream *plan; /* the last step's plan (in H_PLAN), real streams first */
    int last_n;           /* the last step's real streams (padding streams follow them in plan) */
    es_encoder_input *pad_in; /* a padded step's inputs */
    int pad_cap;
    int use_graphs;
    graph_entry graphs[MAX_GRAPHS];
    int n_graphs;
    unsigned long clock, graph_launches;
    /* RNNT on the GPU (rnnt_cuda.cu): per-slot decoder state, on when the model has RNNT and
       EARSHOT_CUDA_RNNT is not 0 */
    int gpu_rnnt;
    char *rnnt_state;     /* [slots][rnnt_stride] bytes, rnnt.c's state layout */
    size_t rnnt_stride;
    int rnnt_B, rnnt_cap; /* the last RNNT call's streams and token capacity per stream */
};

/* One sentence into err; returns -1. */
int failf(char *err, size_t errlen, const char *fmt, ...);
/* 0 on success, else -1 with a message naming `what`. */
int ck(cudaError_t e, const char *what, char *err, size_t errlen);
int ck_blas(cublasStatus_t s, const char *what, char *err, size_t errlen);
/* Grows device buffer `id` (or pinned host buffer) to at least `bytes`; contents are lost when
   it moves. Synchronises the stream first when a block is replaced. */
int grow_dev(es_cuda *c, int id, size_t bytes, char *err, size_t errlen);
int grow_host(es_cuda *c, int id, size_t bytes, char *err, size_t errlen);

#endif
