/*
 * kernels.cu - the encoder step's own CUDA kernels (see kernels.h for what each computes).
 *
 * Each kernel mirrors one loop of the CPU encoder (encoder.c), with the same order of
 * operations where it matters for rounding, so the two backends differ only by lowp GEMM
 * inputs and lowp key/value caches. Elementwise kernels use grid-stride loops over the stacked
 * rows; row-wise ones (layer norm, attention, argmax) use one block per row. The key/value
 * caches are rings (only the new rows are written; a per-slot head says where the oldest is).
 * The conv-tail push shifts in place: each thread owns one column and walks its rows in
 * ascending order, so a row is always read before the same thread overwrites it.
 */
#include "kernels.h"

#include <math.h>

#define THREADS 256

static unsigned blocks_for(size_t n)
{
    size_t b = (n + THREADS - 1) / THREADS;
    if (b > (size_t)1 << 20)
        b = (size_t)1 << 20; /* grid-stride loops cover the rest */
    return (unsigned)(b ? b : 1);
}

#define GRID_STRIDE(i, n)                                                                                              \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

__device__ static float swishf(float x)
{
    return x / (1.0f + expf(-x));
}

__device__ static float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum (or max) over the block; every thread gets the result. sh holds 32 floats. */
__device__ static float block_reduce(float v, float *sh, int is_max)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = is_max ? warp_max(v) : warp_sum(v);
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float init = is_max ? -INFINITY : 0.0f;
        v = lane < nw ? sh[lane] : init;
        v = is_max ? warp_max(v) : warp_sum(v);
        if (lane == 0)
            sh[0] = v;
    }
    __syncthreads();
    float r = sh[0];
    __syncthreads(); /* sh may be reused at once */
    return r;
}

/* ---- subsampling ---- */

__global__ static void sub_pad_kernel(const float *src, float *dst, const float *bias, int relu,
                                      const es_cuda_stream *streams, int stage, int B, int Cc, int Ts, int Fs, int Td,
                                      int Fd, int pad0)
{
    size_t total = (size_t)B * Cc * Td * Fd;
    GRID_STRIDE(i, total)
    {
        int f = (int)(i % Fd);
        size_t q = i / Fd;
        int t = (int)(q % Td);
        q /= Td;
        int c = (int)(q % Cc), b = (int)(q / Cc);
        int ts = t - pad0, fs = f - pad0;
        float v = 0.0f;
        /* MaskedConvSequential: rows at or past the valid length are zero, and so is padding */
        if (ts >= 0 && ts < Ts && fs >= 0 && fs < Fs && ts < streams[b].sub_len[stage]) {
            v = src[(((size_t)b * Cc + c) * Ts + ts) * Fs + fs];
            if (bias)
                v += bias[c];
            if (relu)
                v = v > 0.0f ? v : 0.0f;
        }
        dst[i] = v;
    }
}

void k_sub_pad(const float *src, float *dst, const float *bias, int relu, const es_cuda_stream *streams, int stage,
               int B, int Cc, int Ts, int Fs, int pad0, int pad1, cudaStream_t st)
{
    int Td = Ts + pad0 + pad1, Fd = Fs + pad0 + pad1;
    size_t total = (size_t)B * Cc * Td * Fd;
    if (total == 0)
        return;
    sub_pad_kernel<<<blocks_for(total), THREADS, 0, st>>>(src, dst, bias, relu, streams, stage, B, Cc, Ts, Fs, Td,
                                                          Fd, pad0);
}

__global__ static void sub_flatten_kernel(const float *src, lowp *out, const float *bias, int relu,
                                          const es_cuda_stream *streams, const int *row_stream, int stage, int N,
                                          int Cc, int Ts, int Fs)
{
    size_t width = (size_t)Cc * Fs, total = (size_t)N * width;
    GRID_STRIDE(i, total)
    {
        int r = (int)(i / width), k = (int)(i % width);
        int c = k / Fs, f = k % Fs;
        int b = row_stream[r];
        int t = r - streams[b].rows + streams[b].drop; /* the pre-encode frames are dropped here */
        float v = 0.0f;
        if (t < streams[b].sub_len[stage]) {
            v = src[(((size_t)b * Cc + c) * Ts + t) * Fs + f];
            if (bias)
                v += bias[c];
            if (relu)
                v = v > 0.0f ? v : 0.0f;
        }
        out[i] = to_lowp(v);
    }
}

void k_sub_flatten(const float *src, lowp *out, const float *bias, int relu, const es_cuda_stream *streams,
                   const int *row_stream, int stage, int N, int Cc, int Ts, int Fs, cudaStream_t st)
{
    size_t total = (size_t)N * Cc * Fs;
    if (total == 0)
        return;
    sub_flatten_kernel<<<blocks_for(total), THREADS, 0, st>>>(src, out, bias, relu, streams, row_stream, stage, N,
                                                              Cc, Ts, Fs);
}

/* ---- elementwise ---- */

__global__ static void bias_kernel(float *y, const float *bias, int rows, int cols, float alpha, int accumulate)
{
    size_t total = (size_t)rows * cols;
    GRID_STRIDE(i, total)
    {
        float b = bias ? alpha * bias[i % cols] : 0.0f;
        y[i] = accumulate ? y[i] + b : b;
    }
}

void k_bias(float *y, const float *bias, int rows, int cols, float alpha, int accumulate, cudaStream_t st)
{
    size_t total = (size_t)rows * cols;
    /* without a bias there is nothing to add, and a GEMM that does not accumulate runs with
       beta = 0, so y needs no zeroing either */
    if (total == 0 || !bias)
        return;
    bias_kernel<<<blocks_for(total), THREADS, 0, st>>>(y, bias, rows, cols, alpha, accumulate);
}

__global__ static void to_lowp_kernel(const float *x, lowp *out, size_t n, int swish)
{
    GRID_STRIDE(i, n)
    {
        out[i] = to_lowp(swish ? swishf(x[i]) : x[i]);
    }
}

void k_to_lowp(const float *x, lowp *out, size_t n, int swish, cudaStream_t st)
{
    if (n == 0)
        return;
    to_lowp_kernel<<<blocks_for(n), THREADS, 0, st>>>(x, out, n, swish);
}

__global__ static void layer_norm_kernel(const float *x, const float *gamma, const float *beta, int d, int swish,
                                         float *out_f, lowp *out_h)
{
    __shared__ float sh[32];
    size_t row = (size_t)blockIdx.x * d;
    const float *xr = x + row;
    /* two passes, as the CPU: the mean, then the mean squared deviation */
    float s = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x)
        s += xr[i];
    float mean = block_reduce(s, sh, 0) / d;
    float v = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float t = xr[i] - mean;
        v += t * t;
    }
    float var = block_reduce(v, sh, 0) / d;
    float inv = 1.0f / sqrtf(var + 1e-5f);
    /* every thread has read its elements above and reads only them below: out_f may be x */
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float y = (xr[i] - mean) * inv * gamma[i] + beta[i];
        if (swish)
            y = swishf(y);
        if (out_f)
            out_f[row + i] = y;
        if (out_h)
            out_h[row + i] = to_lowp(y);
    }
}

void k_layer_norm(const float *x, const float *gamma, const float *beta, int rows, int d, int swish, float *out_f,
                  lowp *out_h, cudaStream_t st)
{
    if (rows <= 0)
        return;
    layer_norm_kernel<<<rows, THREADS, 0, st>>>(x, gamma, beta, d, swish, out_f, out_h);
}

__global__ static void glu_kernel(const float *x, float *g, const es_cuda_stream *streams, const int *row_stream,
                                  int N, int d)
{
    size_t total = (size_t)N * d;
    GRID_STRIDE(i, total)
    {
        int r = (int)(i / d), c = (int)(i % d);
        const es_cuda_stream *S = &streams[row_stream[r]];
        const float *xr = x + (size_t)r * 2 * d;
        g[i] = r - S->rows < S->len ? xr[c] / (1.0f + expf(-xr[d + c])) : 0.0f;
    }
}

void k_glu(const float *x, float *g, const es_cuda_stream *streams, const int *row_stream, int N, int d,
           cudaStream_t st)
{
    size_t total = (size_t)N * d;
    if (total == 0)
        return;
    glu_kernel<<<blocks_for(total), THREADS, 0, st>>>(x, g, streams, row_stream, N, d);
}

/* ---- the causal depthwise convolution and its cache ---- */

/* Row u of a stream's window [time cache (k1 rows) | g (T rows)], channel c. */
__device__ static float window_at(const float *g, const float *tcache, const es_cuda_stream *S, int u, int k1, int d,
                                  int c)
{
    if (u < k1)
        return tcache ? tcache[(size_t)u * d + c] : 0.0f;
    return g[((size_t)S->rows + u - k1) * d + c];
}

__device__ static float *time_cache(dev_caches caches, int slot, int layer, int d)
{
    if (slot < 0)
        return NULL;
    return caches.time + (size_t)slot * caches.time_stride + (size_t)layer * caches.k1 * d;
}

__global__ static void dwconv_kernel(const float *g, const float *w, const float *bias, dev_caches caches, int layer,
                                     const es_cuda_stream *streams, const int *row_stream, int N, int d, int kernel,
                                     int folded_bn, float *z, lowp *zb)
{
    size_t total = (size_t)N * d;
    int k1 = kernel - 1;
    GRID_STRIDE(i, total)
    {
        int r = (int)(i / d), c = (int)(i % d);
        const es_cuda_stream *S = &streams[row_stream[r]];
        int t = r - S->rows;
        const float *tc = time_cache(caches, S->slot, layer, d);
        float acc = bias[c];
        for (int s = 0; s < kernel; s++)
            acc += w[(size_t)c * kernel + s] * window_at(g, tc, S, t + s, k1, d, c);
        if (folded_bn)
            zb[i] = to_lowp(swishf(acc)); /* batch norm is in w and bias */
        else
            z[i] = acc; /* layer norm and swish follow */
    }
}

void k_dwconv(const float *g, const float *w, const float *b, dev_caches caches, int layer,
              const es_cuda_stream *streams, const int *row_stream, int N, int d, int kernel, int folded_bn,
              float *z, lowp *zb, cudaStream_t st)
{
    size_t total = (size_t)N * d;
    if (total == 0)
        return;
    dwconv_kernel<<<blocks_for(total), THREADS, 0, st>>>(g, w, b, caches, layer, streams, row_stream, N, d, kernel,
                                                         folded_bn, z, zb);
}

__global__ static void time_cache_push_kernel(const float *g, dev_caches caches, int layer,
                                              const es_cuda_stream *streams, int n, int d)
{
    size_t total = (size_t)n * d;
    GRID_STRIDE(i, total)
    {
        int b = (int)(i / d), c = (int)(i % d);
        const es_cuda_stream *S = &streams[b];
        float *tc = time_cache(caches, S->slot, layer, d);
        if (!tc || caches.k1 <= 0)
            continue;
        /* new cache row r = window row keep + r (the window ends at the dropped frames);
           keep >= 0, so row keep + r is read before this thread overwrites it */
        for (int r = 0; r < caches.k1; r++)
            tc[(size_t)r * d + c] = window_at(g, tc, S, S->keep + r, caches.k1, d, c);
    }
}

void k_time_cache_push(const float *g, dev_caches caches, int layer, const es_cuda_stream *streams, int n, int d,
                       cudaStream_t st)
{
    size_t total = (size_t)n * d;
    if (total == 0 || !caches.time)
        return;
    time_cache_push_kernel<<<blocks_for(total), THREADS, 0, st>>>(g, caches, layer, streams, n, d);
}

/* ---- attention ---- */

/* NeMo's masks over [cache | chunk], as encoder.c's allowed(). */
__device__ static int allowed(const es_cuda_stream *S, int q_abs, int key)
{
    if (S->full)
        return 1;
    if (S->regular)
        return key >= q_abs - S->left && key <= q_abs + S->right;
    int chunk = S->right + 1;
    int left_chunks = S->left / chunk;
    int diff = q_abs / chunk - key / chunk;
    return diff >= 0 && diff <= left_chunks;
}

#define ATT_THREADS 128

size_t attention_smem(int max_klen, int dh)
{
    return sizeof(float) * ((size_t)2 * dh + (size_t)max_klen + 32);
}

/* One block per (stacked row, head): scores over the stream's [cache | chunk] keys with NeMo's
   rel_shift (key j of query i sees the position row T-1-i+j), masked, softmax, weighted sum. */
__global__ static void attention_kernel(const float *qkv, const float *pos, const float *pos_u, const float *pos_v,
                                        dev_caches caches, int layer, const es_cuda_stream *streams,
                                        const int *row_stream, int d, int dh, lowp *o)
{
    extern __shared__ float smem[];
    float *qu = smem, *qv = smem + dh, *red = smem + 2 * dh, *scores = smem + 2 * dh + 32;
    int r = blockIdx.x, h = blockIdx.y;
    const es_cuda_stream *S = &streams[row_stream[r]];
    int i = r - S->rows, T = S->T, C = S->C, klen = C + T;
    size_t d3 = (size_t)3 * d;
    int cache_valid = S->slot >= 0 ? caches.length[(size_t)S->slot * caches.len_stride] : 0;
    int offset = C - cache_valid; /* cache rows before this are empty */
    int valid_end = C + S->len;   /* keys/queries at or after this are padding */
    int q_abs = C + i;
    int q_valid = q_abs >= offset && q_abs < valid_end;
    const lowp *kc = NULL, *vc = NULL;
    int head = 0; /* cached key j (oldest first) is at ring row ES_RING_ROW(head, j, C) */
    if (S->slot >= 0) {
        head = caches.length[(size_t)S->slot * caches.len_stride + 1];
        size_t base = (size_t)S->slot * caches.kv_stride + (size_t)layer * caches.max_cache * d + (size_t)h * dh;
        kc = caches.key + base;
        vc = caches.value + base;
    }
    for (int c = threadIdx.x; c < dh; c += blockDim.x) {
        float q = qkv[(size_t)r * d3 + (size_t)h * dh + c];
        qu[c] = q + pos_u[(size_t)h * dh + c];
        qv[c] = q + pos_v[(size_t)h * dh + c];
    }
    __syncthreads();
    float scale = 1.0f / sqrtf((float)dh);
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < klen; j += blockDim.x) {
        if (!(q_valid && j >= offset && j < valid_end && allowed(S, q_abs, j))) {
            scores[j] = -INFINITY; /* masked */
            continue;
        }
        const float *p = pos + ((size_t)S->pos_row0 + T - 1 - i + j) * d + (size_t)h * dh;
        float ac = 0.0f, bd = 0.0f;
        if (j < C) {
            const lowp *k = kc + (size_t)ES_RING_ROW(head, j, C) * d;
            for (int c = 0; c < dh; c++)
                ac += qu[c] * from_lowp(k[c]);
        } else {
            const float *k = qkv + ((size_t)S->rows + j - C) * d3 + d + (size_t)h * dh;
            for (int c = 0; c < dh; c++)
                ac += qu[c] * k[c];
        }
        for (int c = 0; c < dh; c++)
            bd += qv[c] * p[c];
        float s = (ac + bd) * scale;
        scores[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_reduce(mx, red, 1);
    lowp *out = o + (size_t)r * d + (size_t)h * dh;
    if (mx == -INFINITY) {
        /* every key masked: NeMo zeroes the attention weights of the row */
        for (int c = threadIdx.x; c < dh; c += blockDim.x)
            out[c] = to_lowp(0.0f);
        return;
    }
    float sum = 0.0f;
    for (int j = threadIdx.x; j < klen; j += blockDim.x) {
        float e = scores[j] == -INFINITY ? 0.0f : expf(scores[j] - mx);
        scores[j] = e;
        sum += e;
    }
    sum = block_reduce(sum, red, 0); /* its barriers also publish scores[] */
    float inv = 1.0f / sum;
    for (int c = threadIdx.x; c < dh; c += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < klen; j++) {
            float wgt = scores[j];
            if (wgt == 0.0f)
                continue;
            float v = j < C ? from_lowp(vc[(size_t)ES_RING_ROW(head, j, C) * d + c])
                            : qkv[((size_t)S->rows + j - C) * d3 + 2 * (size_t)d + (size_t)h * dh + c];
            acc += v * (wgt * inv);
        }
        out[c] = to_lowp(acc);
    }
}

int attention_smem_setup(size_t max_bytes)
{
    return cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)max_bytes) ==
                   cudaSuccess
               ? 0
               : -1;
}

void k_attention(const float *qkv, const float *pos, const float *pos_u, const float *pos_v, dev_caches caches,
                 int layer, const es_cuda_stream *streams, const int *row_stream, int N, int d, int heads,
                 int max_klen, lowp *o, cudaStream_t st)
{
    if (N <= 0)
        return;
    int dh = d / heads;
    dim3 grid((unsigned)N, (unsigned)heads);
    attention_kernel<<<grid, ATT_THREADS, attention_smem(max_klen, dh), st>>>(qkv, pos, pos_u, pos_v, caches, layer,
                                                                             streams, row_stream, d, dh, o);
}

/* ---- cache bookkeeping ---- */

__global__ static void kv_push_kernel(const float *qkv, dev_caches caches, int layer, const es_cuda_stream *streams,
                                      int n, int d)
{
    size_t total = (size_t)n * 2 * d;
    GRID_STRIDE(i, total)
    {
        int b = (int)(i / (2 * d)), c2 = (int)(i % (2 * d)); /* c2 < d: key column, else value */
        const es_cuda_stream *S = &streams[b];
        int C = S->C, keep = S->keep;
        if (S->slot < 0 || C <= 0 || keep <= 0)
            continue;
        int c = c2 % d;
        lowp *cache = (c2 < d ? caches.key : caches.value) + (size_t)S->slot * caches.kv_stride +
                      (size_t)layer * caches.max_cache * d + c;
        /* this step's rows of linear_k | linear_v sit at columns d.. of qkv */
        const float *fresh = qkv + (size_t)S->rows * 3 * d + d + c2;
        /* NeMo's update_cache (drop the oldest keep rows, append the kept fresh ones, or only
           the last C of them) on a ring: fresh row r becomes logical row C - keep + r under
           the new head (head + keep) % C, i.e. physical row (head + r) % C, where the oldest
           rows were. Nothing else moves. */
        int head = caches.length[(size_t)S->slot * caches.len_stride + 1];
        for (int r = ES_RING_FIRST(keep, C); r < keep; r++)
            cache[(size_t)ES_RING_ROW(head, r, C) * d] = to_lowp(fresh[(size_t)r * 3 * d]);
    }
}

void k_kv_push(const float *qkv, dev_caches caches, int layer, const es_cuda_stream *streams, int n, int d,
               cudaStream_t st)
{
    size_t total = (size_t)n * 2 * d;
    if (total == 0 || !caches.key)
        return;
    kv_push_kernel<<<blocks_for(total), THREADS, 0, st>>>(qkv, caches, layer, streams, n, d);
}

__global__ static void len_update_kernel(dev_caches caches, const es_cuda_stream *streams, int n)
{
    GRID_STRIDE(b, (size_t)n)
    {
        const es_cuda_stream *S = &streams[b];
        if (S->slot < 0)
            continue;
        int *len = caches.length + (size_t)S->slot * caches.len_stride;
        len[0] = len[0] + S->keep < S->C ? len[0] + S->keep : S->C;
        if (S->C > 0)
            len[1] = ES_RING_ADVANCE(len[1], S->keep, S->C); /* past the rows replaced */
    }
}

void k_len_update(dev_caches caches, const es_cuda_stream *streams, int n, cudaStream_t st)
{
    if (n <= 0 || !caches.length)
        return;
    len_update_kernel<<<blocks_for((size_t)n), THREADS, 0, st>>>(caches, streams, n);
}

/* ---- CTC ---- */

__global__ static void argmax_kernel(const float *logits, int cols, int *ids)
{
    int k = block_argmax(logits + (size_t)blockIdx.x * cols, cols);
    if (threadIdx.x == 0)
        ids[blockIdx.x] = k;
}

void k_argmax(const float *logits, int rows, int cols, int *ids, cudaStream_t st)
{
    if (rows <= 0)
        return;
    argmax_kernel<<<rows, THREADS, 0, st>>>(logits, cols, ids);
}
