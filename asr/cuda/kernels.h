/*
 * kernels.h - the CUDA kernels of the encoder step and their launchers (CUDA C++, internal:
 * included by the .cu files only).
 *
 * Conventions: activations are row-major [rows][cols]; "rows" are the stacked frames of all
 * streams of a step, and row_stream[r] names the stream a row belongs to, whose es_cuda_stream
 * (cuda_backend.h) gives its offsets, lengths and slot. The residual stream and every GEMM
 * output are fp32; the kernels that feed a GEMM write `lowp`, the 16-bit type of the GEMM
 * inputs, weights and key/value caches. Every launcher takes the step's cudaStream_t and
 * launches nothing when there is no work.
 *
 * lowp is fp16 unless the build defines EARSHOT_CUDA_BF16. Both have fp32 accumulation; fp16
 * keeps 11 significant bits to lowp's 8, and everything stored in it is bounded (layer-norm
 * outputs, swish of them, attention outputs, keys and values), far from fp16's range limit of
 * 65504, while the golden cases' closest argmax decisions (top-2 gaps of 0.011) are within
 * reach of lowp's rounding.
 */
#ifndef EARSHOT_CUDA_KERNELS_H
#define EARSHOT_CUDA_KERNELS_H

#include <cuda_runtime.h>
#include <library_types.h>

#include "cuda_backend.h"

#ifdef EARSHOT_CUDA_BF16
#include <cuda_bf16.h>
typedef __nv_bfloat16 lowp;
#define LOWP_CUDA_TYPE CUDA_R_16BF
static __host__ __device__ inline lowp to_lowp(float x) { return __float2bfloat16(x); }
static __host__ __device__ inline float from_lowp(lowp x) { return __bfloat162float(x); }
#else
#include <cuda_fp16.h>
typedef __half lowp;
#define LOWP_CUDA_TYPE CUDA_R_16F
static __host__ __device__ inline lowp to_lowp(float x) { return __float2half(x); }
static __host__ __device__ inline float from_lowp(lowp x) { return __half2float(x); }
#endif

/* The device caches: one array per region, a slot's part at base + slot * stride (elements). */
typedef struct {
    lowp *key, *value;  /* [slots][n_layers][max_cache][d] */
    float *time;        /* [slots][n_layers][kernel-1][d] */
    int *length;        /* [slots][length stride]: cache length, ring head */
    size_t kv_stride, time_stride, len_stride;
    int max_cache, k1;
} dev_caches;

/* Subsampling: the volume src [B][Cc][Ts][Fs] (+ bias[c], ReLU, time rows >= sub_len[stage]
   of each stream zeroed) written into dst [B][Cc][Ts+pad_t0+pad_t1][Fs+pad_f0+pad_f1] with zero
   padding pad_*0 before and pad_*1 after. bias may be NULL. */
void k_sub_pad(const float *src, float *dst, const float *bias, int relu, const es_cuda_stream *streams, int stage,
               int B, int Cc, int Ts, int Fs, int pad0, int pad1, cudaStream_t st);

/* The last subsampling volume src [B][Cc][Ts][Fs] (+ bias, ReLU, length mask) flattened to the
   stacked rows: out[r][c*Fs + f] = src[b][c][t + drop_b][f], lowp. */
void k_sub_flatten(const float *src, lowp *out, const float *bias, int relu, const es_cuda_stream *streams,
                   const int *row_stream, int stage, int N, int Cc, int Ts, int Fs, cudaStream_t st);

/* y[r][c] = (accumulate ? y[r][c] : 0) + alpha * bias[c]; nothing at all when bias is NULL. */
void k_bias(float *y, const float *bias, int rows, int cols, float alpha, int accumulate, cudaStream_t st);

/* LayerNorm over d (eps 1e-5), optionally followed by swish; writes out_f (fp32) and/or out_h
   (lowp), either may be NULL; out_f may equal x. */
void k_layer_norm(const float *x, const float *gamma, const float *beta, int rows, int d, int swish, float *out_f,
                  lowp *out_h, cudaStream_t st);

/* out = lowp(swish(x)) or lowp(x). */
void k_to_lowp(const float *x, lowp *out, size_t n, int swish, cudaStream_t st);

/* GLU of x [N][2d] -> g [N][d] fp32; rows past a stream's valid length are zeroed (NeMo masks
   the conv input there). */
void k_glu(const float *x, float *g, const es_cuda_stream *streams, const int *row_stream, int N, int d,
           cudaStream_t st);

/* Causal depthwise conv over [time cache | g] of each stream (w, b with batch norm folded).
   folded_bn: apply swish and write lowp zb (the pw2 input); else write fp32 z (layer norm
   follows). Caches of slot -1 read as zeros. */
void k_dwconv(const float *g, const float *w, const float *b, dev_caches caches, int layer,
              const es_cuda_stream *streams, const int *row_stream, int N, int d, int kernel, int folded_bn,
              float *z, lowp *zb, cudaStream_t st);

/* Each slot's conv cache becomes the last kernel-1 rows of [cache | g] before the frames the
   cache drops (the look-ahead). Runs after k_dwconv. */
void k_time_cache_push(const float *g, dev_caches caches, int layer, const es_cuda_stream *streams, int n, int d,
                       cudaStream_t st);

/* Relative-position attention of every stacked row and head over [cache | chunk] of its
   stream: qkv [N][3d] (fp32: q | k | v), pos [pos_rows][d] (this layer's linear_pos of the
   position table), u, v biases [H][dh]; writes o [N][d] lowp. */
void k_attention(const float *qkv, const float *pos, const float *pos_u, const float *pos_v, dev_caches caches,
                 int layer, const es_cuda_stream *streams, const int *row_stream, int N, int d, int heads,
                 int max_klen, lowp *o, cudaStream_t st);
/* Dynamic shared memory k_attention needs for keys up to max_klen; and its upper limit. */
size_t attention_smem(int max_klen, int dh);
int attention_smem_setup(size_t max_bytes);

/* Key/value caches of each slot: this step's kept rows replace the oldest `keep` rows of the
   ring (the head moves in k_len_update, after every layer has used the old one). */
void k_kv_push(const float *qkv, dev_caches caches, int layer, const es_cuda_stream *streams, int n, int d,
               cudaStream_t st);

/* length[slot] = min(length + keep, C) and head[slot] = (head + keep) % C for every stream with
   a slot. */
void k_len_update(dev_caches caches, const es_cuda_stream *streams, int n, cudaStream_t st);

/* ids[r] = argmax over v of logits[r][v] (first maximum wins, as torch.argmax). */
void k_argmax(const float *logits, int rows, int cols, int *ids, cudaStream_t st);


/* The index of the first maximum of row[0..cols), found by one block (blockDim.x a power of two,
   at most 1024): each thread scans a stride, then a tree keeps the larger value and, on a tie,
   the smaller index, so the answer is a sequential scan's (greedy CTC and RNNT must pick what
   the CPU picks). Every thread of the block gets it; 0 for an empty or all-NaN row. */
static __device__ inline int block_argmax(const float *row, int cols)
{
    __shared__ float best_v[1024];
    __shared__ int best_i[1024];
    float bv = -INFINITY;
    int bi = cols; /* past the end: loses every tie */
    for (int v = threadIdx.x; v < cols; v += blockDim.x)
        if (row[v] > bv) { /* ascending and strict: this thread's first maximum */
            bv = row[v];
            bi = v;
        }
    best_v[threadIdx.x] = bv;
    best_i[threadIdx.x] = bi;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) {
            float ov = best_v[threadIdx.x + half];
            int oi = best_i[threadIdx.x + half];
            if (ov > best_v[threadIdx.x] || (ov == best_v[threadIdx.x] && oi < best_i[threadIdx.x])) {
                best_v[threadIdx.x] = ov;
                best_i[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    return best_i[0] < cols ? best_i[0] : 0;
}

#endif
