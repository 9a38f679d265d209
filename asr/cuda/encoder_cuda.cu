/*
 * encoder_cuda.cu - one batched cache-aware FastConformer step on the GPU (see cuda_backend.h).
 *
 * The step is encoder.c's, phase by phase, on one CUDA stream:
 *   1. plan (host, cuda_plan.c) -> one async copy of the plan and one of the stacked features,
 *      both from pinned host buffers;
 *   2. subsampling: every stream's chunk padded to the widest in a [B][C][T][F] volume, each
 *      stage a cuDNN convolution, with our kernel adding bias, ReLU, the per-stream length mask
 *      and the next stage's causal padding (cuDNN pads symmetrically, NeMo's causal convs do
 *      not); the last volume is flattened into the stacked rows, pre-encode frames dropped;
 *   3. the output projection (x sqrt(d) folded into the GEMM) and the layers: every linear
 *      layer one cuBLAS GEMM over all streams' rows (lowp in, fp32 out and accumulate), the
 *      residual adds folded into the GEMMs (beta = 1); attention, the depthwise conv and the
 *      cache pushes are our kernels and address each stream's caches by slot;
 *   4. lengths updated; the frames (for the RNNT decoder on the host) and/or the CTC argmax ids
 *      copied back to pinned buffers; one synchronisation.
 * The relative-position table depends only on the step's largest cache+chunk and chunk
 * lengths; it and its per-layer projections are recomputed only when those change.
 *
 * Workspace buffers grow on demand and are kept, so steady streaming allocates nothing.
 *
 * CUDA graphs: the launches of phases 2-4 depend only on the step's shapes (es_cuda_totals:
 * streams, rows, widest chunk, largest key length and chunk), on whether the CTC head runs,
 * and on buffer addresses; everything per stream (rows, slots, look-aheads, lengths, the
 * cache fill) is read from the plan and the caches in device memory. So the launches are
 * captured once per distinct shape into a graph and replayed whenever a step has that shape
 * again (the first step of a shape runs directly, the second is captured).
 *
 * Buckets: under continuous batching the number of streams changes almost every step. When
 * every stream of a step streams with one T (frames after the drop) and one C (cache size),
 * as in steady streaming of one latency mode, first chunks included when they give as many
 * frames, the shape depends on the number of streams and the widest chunk alone; such a step
 * is padded up to a bucket of batch sizes (es_cuda_bucket: powers of two up to 256, then four
 * per octave, less than 25 % padding) with copies of its widest stream. The padding streams
 * all address the scratch slot n_slots, which es_cuda_create allocates beyond the real ones
 * and never hands out, so they change no real state; they come after the real streams, whose
 * rows stay where they were, read zero features, and nothing of theirs is copied back or
 * decoded. Every operation keeps streams apart (GEMMs and norms by row, the subsampling convs
 * by sample, attention and the conv by stream), and their racing writes to the scratch slot
 * leave its length and ring head in range, so they cannot disturb a real stream. Other steps
 * (a stream's last chunk, mixed latency modes, offline passes) run with their exact shape.
 *
 * At most MAX_GRAPHS shapes are kept; shapes seen once are evicted before captured graphs.
 * All allocation and host-side choice happens before the launches (a captured step may
 * allocate nothing); a buffer that moves drops every graph. If a capture fails (a library
 * call that cannot be captured), the backend turns graphs off and launches directly, without
 * padding, from then on. EARSHOT_CUDA_GRAPHS=0 turns graphs and padding off from the start.
 */
#include "backend.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

int failf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int ck(cudaError_t e, const char *what, char *err, size_t errlen)
{
    return e == cudaSuccess ? 0 : failf(err, errlen, "CUDA error in %s: %s", what, cudaGetErrorString(e));
}

int ck_blas(cublasStatus_t s, const char *what, char *err, size_t errlen)
{
    return s == CUBLAS_STATUS_SUCCESS ? 0 : failf(err, errlen, "cuBLAS error %d in %s", (int)s, what);
}

static int ck_dnn(cudnnStatus_t s, const char *what, char *err, size_t errlen)
{
    return s == CUDNN_STATUS_SUCCESS ? 0 : failf(err, errlen, "cuDNN error in %s: %s", what, cudnnGetErrorString(s));
}

/* ---- availability ---- */

extern "C" int es_cuda_available(char *msg, size_t msglen)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        failf(msg, msglen, "no CUDA-capable GPU found: %s", cudaGetErrorString(e));
        return 0;
    }
    if (n < 1) {
        failf(msg, msglen, "no CUDA-capable GPU found: the driver reports no device");
        return 0;
    }
    int dev = 0, major = 0, minor = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (major < 9) {
        failf(msg, msglen, "the GPU has compute capability %d.%d; this build runs on 9.0 (H100/H200) and later",
              major, minor);
        return 0;
    }
    if (msg && msglen)
        msg[0] = '\0';
    return 1;
}

/* ---- graphs ---- */

static void graphs_clear(es_cuda *c)
{
    for (int i = 0; i < c->n_graphs; i++)
        if (c->graphs[i].exec)
            cudaGraphExecDestroy(c->graphs[i].exec);
    c->n_graphs = 0;
}

/* ---- buffers ---- */

int grow_dev(es_cuda *c, int id, size_t bytes, char *err, size_t errlen)
{
    buffer *b = &c->dev[id];
    if (bytes <= b->cap)
        return 0;
    size_t want = bytes + bytes / 4 + 256;
    if (b->p) {
        /* work queued earlier in this step may still use the old block, and the graphs hold
           its address */
        if (ck(cudaStreamSynchronize(c->stream), "growing workspace", err, errlen))
            return -1;
        graphs_clear(c);
        if (ck(cudaFree(b->p), "freeing workspace", err, errlen))
            return -1;
    }
    b->p = NULL;
    b->cap = 0;
    if (ck(cudaMalloc(&b->p, want), "allocating workspace", err, errlen))
        return -1;
    b->cap = want;
    return 0;
}

int grow_host(es_cuda *c, int id, size_t bytes, char *err, size_t errlen)
{
    buffer *b = &c->host[id];
    if (bytes <= b->cap)
        return 0;
    size_t want = bytes + bytes / 4 + 256;
    if (b->p) {
        cudaStreamSynchronize(c->stream); /* an async copy may still read or write it */
        cudaFreeHost(b->p);
    }
    b->p = NULL;
    b->cap = 0;
    if (ck(cudaHostAlloc(&b->p, want, cudaHostAllocDefault), "allocating pinned memory", err, errlen))
        return -1;
    b->cap = want;
    return 0;
}

/* ---- create / free ---- */

extern "C" void es_cuda_free(es_cuda *c)
{
    if (!c)
        return;
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    graphs_clear(c);
    for (int i = 0; i < N_DBUFS; i++)
        if (c->dev[i].p)
            cudaFree(c->dev[i].p);
    for (int i = 0; i < N_HBUFS; i++)
        if (c->host[i].p)
            cudaFreeHost(c->host[i].p);
    cudaFree(c->caches.key);
    cudaFree(c->caches.value);
    cudaFree(c->caches.time);
    cudaFree(c->caches.length);
    cudaFree(c->rnnt_state);
    dweights_free(&c->w);
    if (c->cdesc)
        cudnnDestroyConvolutionDescriptor(c->cdesc);
    if (c->wdesc)
        cudnnDestroyFilterDescriptor(c->wdesc);
    if (c->xdesc)
        cudnnDestroyTensorDescriptor(c->xdesc);
    if (c->ydesc)
        cudnnDestroyTensorDescriptor(c->ydesc);
    if (c->dnn)
        cudnnDestroy(c->dnn);
    if (c->blas)
        cublasDestroy(c->blas);
    cudaFree(c->blas_ws);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c->pos_host);
    free(c->pad_in);
    free(c);
}

/* One region of every slot: slots * stride bytes, zeroed (the scratch slot starts as a new
   stream's state, like the others). */
static int alloc_region(void **p, size_t stride, int slots, char *err, size_t errlen)
{
    size_t bytes = stride * (size_t)slots;
    if (ck(cudaMalloc(p, bytes), "reserving the stream caches", err, errlen))
        return -1;
    return ck(cudaMemset(*p, 0, bytes), "zeroing the stream caches", err, errlen);
}

extern "C" es_cuda *es_cuda_create(const es_model *m, int n_slots, char *err, size_t errlen)
{
    char why[256];
    if (!es_cuda_available(why, sizeof why)) {
        failf(err, errlen, "%s", why);
        return NULL;
    }
    es_cuda *c = (es_cuda *)calloc(1, sizeof *c);
    if (!c) {
        failf(err, errlen, "out of memory");
        return NULL;
    }
    c->m = m;
    c->n_slots = n_slots > 0 ? n_slots : 0;
    c->pos_top = c->pos_rows = -1;
    const char *g = getenv("EARSHOT_CUDA_GRAPHS");
    c->use_graphs = !(g && strcmp(g, "0") == 0);
    const char *r = getenv("EARSHOT_CUDA_RNNT");
    c->gpu_rnnt = m->has_rnnt && !(r && strcmp(r, "0") == 0);
    int dev = 0, smem = 0;
    if (ck(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "creating a stream", err, errlen) ||
        ck_blas(cublasCreate(&c->blas), "cublasCreate", err, errlen) ||
        ck_blas(cublasSetStream(c->blas, c->stream), "cublasSetStream", err, errlen) ||
        ck(cudaMalloc(&c->blas_ws, BLAS_WORKSPACE), "cuBLAS workspace", err, errlen) ||
        ck_blas(cublasSetWorkspace(c->blas, c->blas_ws, BLAS_WORKSPACE), "cublasSetWorkspace", err, errlen) ||
        ck_dnn(cudnnCreate(&c->dnn), "cudnnCreate", err, errlen) ||
        ck_dnn(cudnnSetStream(c->dnn, c->stream), "cudnnSetStream", err, errlen) ||
        ck_dnn(cudnnCreateTensorDescriptor(&c->xdesc), "descriptors", err, errlen) ||
        ck_dnn(cudnnCreateTensorDescriptor(&c->ydesc), "descriptors", err, errlen) ||
        ck_dnn(cudnnCreateFilterDescriptor(&c->wdesc), "descriptors", err, errlen) ||
        ck_dnn(cudnnCreateConvolutionDescriptor(&c->cdesc), "descriptors", err, errlen) ||
        dweights_upload(&c->w, m, err, errlen) != 0) {
        es_cuda_free(c);
        return NULL;
    }
    /* long offline passes attend over many keys: allow the kernel all the shared memory the
       device lets one block opt into */
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    c->max_smem = smem > 0 ? (size_t)smem : 48 * 1024;
    if (attention_smem_setup(c->max_smem) != 0)
        c->max_smem = 48 * 1024;

    c->layout = es_cuda_cache_layout(m);
    dev_caches *k = &c->caches;
    k->kv_stride = c->layout.key / sizeof(lowp);
    k->time_stride = c->layout.time / sizeof(float);
    k->len_stride = c->layout.length / sizeof(int);
    k->max_cache = m->max_cache_size;
    k->k1 = m->conv_kernel - 1;
    /* the slots handed out, plus the scratch slot (index n_slots) that every padding stream of
       a bucketed step reads and writes; es_cuda_step and es_cuda_clear_slot refuse it */
    int slots = (n_slots > 0 ? n_slots : 0) + 1;
    if (alloc_region((void **)&k->key, c->layout.key, slots, err, errlen) ||
        alloc_region((void **)&k->value, c->layout.value, slots, err, errlen) ||
        alloc_region((void **)&k->time, c->layout.time, slots, err, errlen) ||
        alloc_region((void **)&k->length, c->layout.length, slots, err, errlen) ||
        (m->has_rnnt && alloc_region((void **)&c->rnnt_state, c->layout.rnnt, slots, err, errlen))) {
        es_cuda_free(c);
        return NULL;
    }
    c->rnnt_stride = c->layout.rnnt;
    c->cache_bytes = es_cuda_layout_bytes(&c->layout) * (size_t)slots;
    return c;
}

extern "C" int es_cuda_clear_slot(es_cuda *c, int slot)
{
    if (slot < 0 || slot >= c->n_slots)
        return -1;
    const dev_caches *k = &c->caches;
    cudaError_t e = cudaMemsetAsync(k->key + (size_t)slot * k->kv_stride, 0, c->layout.key, c->stream);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(k->value + (size_t)slot * k->kv_stride, 0, c->layout.value, c->stream);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(k->time + (size_t)slot * k->time_stride, 0, c->layout.time, c->stream);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(k->length + (size_t)slot * k->len_stride, 0, c->layout.length, c->stream);
    if (e == cudaSuccess && c->rnnt_state)
        e = cudaMemsetAsync(c->rnnt_state + (size_t)slot * c->rnnt_stride, 0, c->layout.rnnt, c->stream);
    return e == cudaSuccess ? 0 : -1;
}

/* ---- linear layers ---- */

/* y[rows][out] = (accumulate ? y : 0) + alpha * (x W^T + b): one bias kernel and one GEMM.
   Row-major y = x W^T is column-major y^T = W x^T: W is op(A) = A^T with A = W read as an
   [in][out] column-major matrix. */
static int linear(es_cuda *c, const dlinear *l, const lowp *x, int rows, float *y, float alpha, int accumulate,
                  char *err, size_t errlen)
{
    if (rows <= 0)
        return 0;
    k_bias(y, l->b, rows, l->out, alpha, accumulate, c->stream);
    float beta = accumulate || l->b ? 1.0f : 0.0f;
    return ck_blas(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, l->out, rows, l->in, &alpha, l->w, LOWP_CUDA_TYPE,
                                l->in, x, LOWP_CUDA_TYPE, l->in, &beta, y, CUDA_R_32F, l->out, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT),
                   "a linear layer", err, errlen);
}

/* ---- subsampling ---- */

/* Describes stage `stage` to cuDNN: x [B][Cin][Td][Fd] (padded as the stage needs) -> y
   [B][Cout][To][Fo]. */
static int describe_conv(es_cuda *c, int stage, int B, int Td, int Fd, int To, int Fo, char *err, size_t errlen)
{
    const es_sub_stage *s = &c->m->sub[stage];
    int k = s->kind == ES_CONV_POINTWISE ? 1 : 3;
    int groups = s->kind == ES_CONV_DEPTHWISE ? s->in_ch : 1;
    if (ck_dnn(cudnnSetTensor4dDescriptor(c->xdesc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, s->in_ch, Td, Fd),
               "subsampling input", err, errlen) ||
        ck_dnn(cudnnSetTensor4dDescriptor(c->ydesc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, s->out_ch, To, Fo),
               "subsampling output", err, errlen) ||
        ck_dnn(cudnnSetFilter4dDescriptor(c->wdesc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s->out_ch,
                                          s->in_ch / groups, k, k),
               "subsampling filter", err, errlen) ||
        ck_dnn(cudnnSetConvolution2dDescriptor(c->cdesc, 0, 0, s->stride, s->stride, 1, 1,
                                               CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
               "subsampling conv", err, errlen) ||
        ck_dnn(cudnnSetConvolutionGroupCount(c->cdesc, groups), "subsampling groups", err, errlen) ||
        ck_dnn(cudnnSetConvolutionMathType(c->cdesc, CUDNN_DEFAULT_MATH), "subsampling math", err, errlen))
        return -1;
    /* the output shape we sized the buffers for must be the one cuDNN computes */
    int on = 0, oc = 0, oh = 0, ow = 0;
    if (ck_dnn(cudnnGetConvolution2dForwardOutputDim(c->cdesc, c->xdesc, c->wdesc, &on, &oc, &oh, &ow),
               "subsampling output shape", err, errlen))
        return -1;
    if (on != B || oc != s->out_ch || oh != To || ow != Fo)
        return failf(err, errlen, "subsampling stage %d: cuDNN makes [%d,%d,%d,%d], expected [%d,%d,%d,%d]", stage, on,
                     oc, oh, ow, B, s->out_ch, To, Fo);
    return 0;
}

/* Chooses stage `stage`'s algorithm for these shapes (kept while they stay) and returns its
   workspace size in *ws. Host work only: runs before the step's launches. */
static int choose_conv(es_cuda *c, int stage, int B, int Td, int Fd, int To, int Fo, size_t *ws, char *err,
                       size_t errlen)
{
    conv_choice *ch = &c->conv[stage];
    if (ch->B != B || ch->T != Td) {
        if (describe_conv(c, stage, B, Td, Fd, To, Fo, err, errlen))
            return -1;
        cudnnConvolutionFwdAlgoPerf_t perf[8];
        int got = 0;
        if (ck_dnn(cudnnGetConvolutionForwardAlgorithm_v7(c->dnn, c->xdesc, c->wdesc, c->cdesc, c->ydesc, 8, &got,
                                                          perf),
                   "choosing a subsampling algorithm", err, errlen))
            return -1;
        int pick = -1;
        for (int i = 0; i < got && pick < 0; i++)
            if (perf[i].status == CUDNN_STATUS_SUCCESS)
                pick = i;
        if (pick < 0)
            return failf(err, errlen, "cuDNN has no algorithm for subsampling stage %d", stage);
        size_t need = 0;
        if (ck_dnn(cudnnGetConvolutionForwardWorkspaceSize(c->dnn, c->xdesc, c->wdesc, c->cdesc, c->ydesc,
                                                           perf[pick].algo, &need),
                   "subsampling workspace", err, errlen))
            return -1;
        ch->B = B;
        ch->T = Td;
        ch->algo = perf[pick].algo;
        ch->ws = need;
    }
    *ws = ch->ws;
    return 0;
}

/* Runs stage `stage` (D_SUB_IN -> D_SUB_OUT, no bias) with the algorithm choose_conv picked. */
static int conv_stage(es_cuda *c, int stage, int B, int Td, int Fd, int To, int Fo, char *err, size_t errlen)
{
    const conv_choice *ch = &c->conv[stage];
    if (describe_conv(c, stage, B, Td, Fd, To, Fo, err, errlen))
        return -1;
    float one = 1.0f, zero = 0.0f;
    return ck_dnn(cudnnConvolutionForward(c->dnn, &one, c->xdesc, c->dev[D_SUB_IN].p, c->wdesc, c->w.sub[stage].w,
                                          c->cdesc, ch->algo, c->dev[D_CONV_WS].p, ch->ws, &zero, c->ydesc,
                                          c->dev[D_SUB_OUT].p),
                  "a subsampling convolution", err, errlen);
}

/* Padding a stage's input needs: NeMo's causal 3x3 convs pad 2 before and 1 after. */
static int pad_before(const es_sub_stage *s)
{
    return s->kind == ES_CONV_POINTWISE ? 0 : 2;
}

static int pad_after(const es_sub_stage *s)
{
    return s->kind == ES_CONV_POINTWISE ? 0 : 1;
}

/* Sizes the subsampling's buffers and picks its algorithms for this step (before any launch). */
static int prepare_subsampling(es_cuda *c, const es_cuda_totals *t, char *err, size_t errlen)
{
    const es_model *m = c->m;
    int B = t->n, L = m->n_sub;
    /* the largest volume over the stages, padded input or output, and the largest workspace */
    size_t in_max = 0, out_max = 0, ws_max = 0;
    for (int i = 0; i < L; i++) {
        const es_sub_stage *s = &m->sub[i];
        int pad = pad_before(s) + pad_after(s);
        size_t vin = (size_t)B * t->sub_C[i] * (t->sub_T[i] + pad) * (t->sub_F[i] + pad);
        size_t vout = (size_t)B * t->sub_C[i + 1] * t->sub_T[i + 1] * t->sub_F[i + 1];
        in_max = vin > in_max ? vin : in_max;
        out_max = vout > out_max ? vout : out_max;
        size_t ws = 0;
        if (choose_conv(c, i, B, t->sub_T[i] + pad, t->sub_F[i] + pad, t->sub_T[i + 1], t->sub_F[i + 1], &ws, err,
                        errlen))
            return -1;
        ws_max = ws > ws_max ? ws : ws_max;
    }
    return grow_dev(c, D_SUB_IN, sizeof(float) * in_max, err, errlen) ||
                   grow_dev(c, D_SUB_OUT, sizeof(float) * out_max, err, errlen) ||
                   grow_dev(c, D_CONV_WS, ws_max, err, errlen) ||
                   grow_dev(c, D_FLAT, sizeof(lowp) * (size_t)t->N * t->sub_C[L] * t->sub_F[L], err, errlen)
               ? -1
               : 0;
}

/* Features -> X [N][d] (xscaled). */
static int subsample(es_cuda *c, const es_cuda_totals *t, const es_cuda_stream *streams_d, const int *rows_d,
                     char *err, size_t errlen)
{
    const es_model *m = c->m;
    int B = t->n, L = m->n_sub, Cf = t->sub_C[L], Tf = t->sub_T[L], Ff = t->sub_F[L];
    float *in = (float *)c->dev[D_SUB_IN].p, *out = (float *)c->dev[D_SUB_OUT].p;
    for (int i = 0; i < L; i++) {
        const es_sub_stage *s = &m->sub[i];
        int p0 = pad_before(s), p1 = pad_after(s);
        /* stage 0 reads the features (one channel, masked by the chunk's valid length); later
           stages read the previous conv's output and finish it: bias, ReLU, length mask */
        const float *src = i == 0 ? (const float *)c->dev[D_FEAT].p : out;
        const float *bias = i == 0 ? NULL : c->w.sub[i - 1].b;
        int relu = i == 0 ? 0 : m->sub[i - 1].relu_after;
        k_sub_pad(src, in, bias, relu, streams_d, i, B, t->sub_C[i], t->sub_T[i], t->sub_F[i], p0, p1, c->stream);
        if (conv_stage(c, i, B, t->sub_T[i] + p0 + p1, t->sub_F[i] + p0 + p1, t->sub_T[i + 1], t->sub_F[i + 1], err,
                       errlen))
            return -1;
    }
    lowp *flat = (lowp *)c->dev[D_FLAT].p;
    k_sub_flatten(out, flat, c->w.sub[L - 1].b, m->sub[L - 1].relu_after, streams_d, rows_d, L, t->N, Cf, Tf, Ff,
                  c->stream);
    float xscale = m->xscaling ? sqrtf((float)m->d_model) : 1.0f;
    return linear(c, &c->w.sub_out, flat, t->N, (float *)c->dev[D_X].p, xscale, 0, err, errlen);
}

/* ---- positions ---- */

static int positions(es_cuda *c, const es_cuda_totals *t, char *err, size_t errlen)
{
    const es_model *m = c->m;
    int d = m->d_model, top = t->max_klen - 1, rows = t->pos_rows;
    if (top == c->pos_top && rows == c->pos_rows)
        return 0;
    size_t n = (size_t)rows * d;
    if (n > c->pos_host_cap) {
        float *p = (float *)realloc(c->pos_host, sizeof(float) * n);
        if (!p)
            return failf(err, errlen, "out of memory");
        c->pos_host = p;
        c->pos_host_cap = n;
    }
    if (grow_dev(c, D_PE, sizeof(lowp) * n, err, errlen) ||
        grow_dev(c, D_POS, sizeof(float) * n * (size_t)m->n_layers, err, errlen) ||
        grow_host(c, H_FRAMES, sizeof(lowp) * n, err, errlen))
        return -1;
    es_cuda_fill_positions(d, top, rows, c->pos_host);
    /* staged through the (idle) pinned frames buffer */
    lowp *h = (lowp *)c->host[H_FRAMES].p;
    for (size_t i = 0; i < n; i++)
        h[i] = to_lowp(c->pos_host[i]);
    if (ck(cudaMemcpyAsync(c->dev[D_PE].p, h, sizeof(lowp) * n, cudaMemcpyHostToDevice, c->stream),
           "uploading positions", err, errlen))
        return -1;
    for (int l = 0; l < m->n_layers; l++)
        if (linear(c, &c->w.layers[l].pos, (const lowp *)c->dev[D_PE].p, rows,
                   (float *)c->dev[D_POS].p + (size_t)l * n, 1.0f, 0, err, errlen))
            return -1;
    /* h is reused by this step's outputs: the upload must have finished first */
    if (ck(cudaStreamSynchronize(c->stream), "uploading positions", err, errlen))
        return -1;
    c->pos_top = top;
    c->pos_rows = rows;
    return 0;
}

/* ---- the step ---- */

static int layers(es_cuda *c, const es_cuda_totals *t, const es_cuda_stream *streams_d, const int *rows_d,
                  char *err, size_t errlen)
{
    const es_model *m = c->m;
    int N = t->N, n = t->n, d = m->d_model, ff = m->ff_dim;
    float *X = (float *)c->dev[D_X].p, *H = (float *)c->dev[D_H].p, *G = (float *)c->dev[D_G].p;
    float *Z = (float *)c->dev[D_Z].p;
    lowp *YH = (lowp *)c->dev[D_YH].p, *HH = (lowp *)c->dev[D_HH].p, *OH = (lowp *)c->dev[D_OH].p;
    int bn = m->conv_norm == ES_NORM_BATCH;
    cudaStream_t st = c->stream;
    for (int l = 0; l < m->n_layers; l++) {
        const dlayer *L = &c->w.layers[l];
        const float *P = (const float *)c->dev[D_POS].p + (size_t)l * t->pos_rows * d;

        /* feed-forward 1, half-step residual folded into the second GEMM */
        k_layer_norm(X, L->norm_ff1.gamma, L->norm_ff1.beta, N, d, 0, NULL, YH, st);
        if (linear(c, &L->ff1_in, YH, N, H, 1.0f, 0, err, errlen))
            return -1;
        k_to_lowp(H, HH, (size_t)N * ff, 1, st);
        if (linear(c, &L->ff1_out, HH, N, X, 0.5f, 1, err, errlen))
            return -1;

        /* self-attention over [cache | chunk]; the caches are pushed after every row of the
           layer has read them */
        k_layer_norm(X, L->norm_att.gamma, L->norm_att.beta, N, d, 0, NULL, YH, st);
        if (linear(c, &L->qkv, YH, N, H, 1.0f, 0, err, errlen))
            return -1;
        k_attention(H, P, L->pos_u, L->pos_v, c->caches, l, streams_d, rows_d, N, d, m->n_heads, t->max_klen, OH, st);
        k_kv_push(H, c->caches, l, streams_d, n, d, st);
        if (linear(c, &L->att_out, OH, N, X, 1.0f, 1, err, errlen))
            return -1;

        /* convolution module */
        k_layer_norm(X, L->norm_conv.gamma, L->norm_conv.beta, N, d, 0, NULL, YH, st);
        if (linear(c, &L->pw1, YH, N, H, 1.0f, 0, err, errlen))
            return -1;
        k_glu(H, G, streams_d, rows_d, N, d, st);
        k_dwconv(G, L->dw_w, L->dw_b, c->caches, l, streams_d, rows_d, N, d, m->conv_kernel, bn, Z, OH, st);
        k_time_cache_push(G, c->caches, l, streams_d, n, d, st);
        if (!bn)
            k_layer_norm(Z, L->conv_ln.gamma, L->conv_ln.beta, N, d, 1, NULL, OH, st);
        if (linear(c, &L->pw2, OH, N, X, 1.0f, 1, err, errlen))
            return -1;

        /* feed-forward 2, final norm */
        k_layer_norm(X, L->norm_ff2.gamma, L->norm_ff2.beta, N, d, 0, NULL, YH, st);
        if (linear(c, &L->ff2_in, YH, N, H, 1.0f, 0, err, errlen))
            return -1;
        k_to_lowp(H, HH, (size_t)N * ff, 1, st);
        if (linear(c, &L->ff2_out, HH, N, X, 0.5f, 1, err, errlen))
            return -1;
        k_layer_norm(X, L->norm_out.gamma, L->norm_out.beta, N, d, 0, X, NULL, st);
    }
    return 0;
}

/* Phases 2-4 without the copies back: everything a graph captures. Launches only. */
static int compute(es_cuda *c, const es_cuda_totals *t, unsigned flags, char *err, size_t errlen)
{
    const es_model *m = c->m;
    int N = t->N, d = m->d_model;
    const es_cuda_stream *streams_d = (const es_cuda_stream *)c->dev[D_PLAN].p;
    const int *rows_d = (const int *)(streams_d + t->n);
    if (subsample(c, t, streams_d, rows_d, err, errlen) || layers(c, t, streams_d, rows_d, err, errlen))
        return -1;
    k_len_update(c->caches, streams_d, t->n, c->stream);
    if (flags & ES_CUDA_CTC_IDS) {
        lowp *XH = (lowp *)c->dev[D_YH].p;
        k_to_lowp((const float *)c->dev[D_X].p, XH, (size_t)N * d, 0, c->stream);
        /* argmax of the logits: log_softmax subtracts one number per row, so the argmax is the
           same up to rounding, which the 16-bit GEMM inputs dwarf anyway */
        if (linear(c, &c->w.ctc, XH, N, (float *)c->dev[D_LOGITS].p, 1.0f, 0, err, errlen))
            return -1;
        k_argmax((const float *)c->dev[D_LOGITS].p, N, m->n_vocab + 1, (int *)c->dev[D_IDS].p, c->stream);
    }
    return 0;
}

/* The entry to evict from a full table: the least recently used shape seen only once (no
   graph yet), so that one-off shapes (mixed steps) do not push out the buckets' graphs; the
   least recently used of all when every entry has a graph. */
static int graph_victim(const es_cuda *c)
{
    int old = -1;
    for (int pass = 0; pass < 2 && old < 0; pass++)
        for (int i = 0; i < c->n_graphs; i++)
            if ((pass == 1 || !c->graphs[i].exec) && (old < 0 || c->graphs[i].last_used < c->graphs[old].last_used))
                old = i;
    return old;
}

/* The entry of this shape, or a new one (*fresh = 1; one is evicted when the table is full). */
static graph_entry *graph_slot(es_cuda *c, const es_cuda_totals *t, unsigned flags, int *fresh)
{
    *fresh = 0;
    for (int i = 0; i < c->n_graphs; i++)
        if (c->graphs[i].flags == flags && memcmp(&c->graphs[i].key, t, sizeof *t) == 0)
            return &c->graphs[i];
    *fresh = 1;
    if (c->n_graphs == MAX_GRAPHS) {
        int old = graph_victim(c);
        if (c->graphs[old].exec)
            cudaGraphExecDestroy(c->graphs[old].exec);
        c->graphs[old] = c->graphs[--c->n_graphs];
    }
    graph_entry *g = &c->graphs[c->n_graphs++];
    g->key = *t;
    g->flags = flags;
    g->exec = NULL;
    return g;
}

/* compute() through a graph of this shape. The first step of a shape runs directly (it also
   loads every kernel it needs, outside any capture); the second captures the graph and launches
   it; later ones replay it. */
static int compute_graph(es_cuda *c, const es_cuda_totals *t, unsigned flags, char *err, size_t errlen)
{
    flags &= ES_CUDA_CTC_IDS; /* the only flag compute() looks at: the copies back are not captured */
    int fresh;
    graph_entry *g = graph_slot(c, t, flags, &fresh);
    g->last_used = ++c->clock;
    if (fresh)
        return compute(c, t, flags, err, errlen);
    if (!g->exec) {
        cudaGraph_t graph = NULL;
        cudaGraphExec_t exec = NULL;
        int rc = -1;
        cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
        if (e == cudaSuccess) {
            rc = compute(c, t, flags, err, errlen);
            e = cudaStreamEndCapture(c->stream, &graph);
        }
        if (rc == 0 && e == cudaSuccess && graph)
            e = cudaGraphInstantiate(&exec, graph, 0);
        if (graph)
            cudaGraphDestroy(graph);
        if (rc != 0 || e != cudaSuccess || !exec) {
            /* something in the step cannot be captured; nothing ran, so launch it directly,
               now and from now on */
            cudaGetLastError();
            graphs_clear(c);
            c->use_graphs = 0;
            return compute(c, t, flags, err, errlen);
        }
        g->exec = exec;
    }
    c->graph_launches++;
    return ck(cudaGraphLaunch(g->exec, c->stream), "launching the step's graph", err, errlen);
}

/* The inputs the step runs with: with graphs on, a step that can be padded padded to its
   bucket (padding streams on the scratch slot, after the real ones), else the caller's.
   *run_n is their count. */
static int pad_step(es_cuda *c, const es_encoder_input *in, int n, const es_encoder_input **run, int *run_n,
                    char *err, size_t errlen)
{
    *run = in;
    *run_n = n;
    int tmpl = c->use_graphs ? es_cuda_pad_template(c->m, in, n) : -1;
    int n_pad = tmpl >= 0 ? es_cuda_bucket(n) : n;
    if (n_pad == n)
        return 0;
    if (n_pad > c->pad_cap) {
        es_encoder_input *p = (es_encoder_input *)realloc(c->pad_in, sizeof *p * (size_t)n_pad);
        if (!p)
            return failf(err, errlen, "out of memory");
        c->pad_in = p;
        c->pad_cap = n_pad;
    }
    es_cuda_pad_inputs(in, n, n_pad, tmpl, c->n_slots, c->pad_in);
    *run = c->pad_in;
    *run_n = n_pad;
    return 0;
}

extern "C" int es_cuda_step(es_cuda *c, const es_encoder_input *in, int n, unsigned flags, es_encoder_output *out,
                            char *err, size_t errlen)
{
    const es_model *m = c->m;
    int d = m->d_model, F = m->n_mels, V1 = m->n_vocab + 1;
    c->last_n = 0;
    if (n <= 0)
        return 0;
    for (int b = 0; b < n; b++)
        if (in[b].slot >= c->n_slots)
            return failf(err, errlen, "cache slot %d out of range", in[b].slot);
    if ((flags & ES_CUDA_CTC_IDS) && !m->has_ctc)
        return failf(err, errlen, "the model has no CTC head");

    /* 1. plan into the pinned buffer, for the padded step when it is padded: from here on the
       step has nr streams, the first n of them the caller's */
    const es_encoder_input *run;
    int nr;
    es_cuda_totals t;
    if (pad_step(c, in, n, &run, &nr, err, errlen) ||
        grow_host(c, H_PLAN, sizeof(es_cuda_stream) * (size_t)nr, err, errlen) ||
        es_cuda_plan(m, run, nr, (es_cuda_stream *)c->host[H_PLAN].p, NULL, &t, err, errlen))
        return -1;
    size_t plan_bytes = sizeof(es_cuda_stream) * (size_t)nr + sizeof(int) * (size_t)t.N;
    if (grow_host(c, H_PLAN, plan_bytes, err, errlen))
        return -1;
    es_cuda_stream *plan = (es_cuda_stream *)c->host[H_PLAN].p;
    es_cuda_plan(m, run, nr, plan, (int *)(plan + nr), &t, err, errlen);
    if (attention_smem(t.max_klen, m->d_head) > c->max_smem)
        return failf(err, errlen, "a chunk of %d frames with its cache is too long for the GPU attention kernel",
                     t.max_klen);

    /* every buffer the step uses, sized before the first launch */
    size_t feat = (size_t)nr * t.max_width * F;
    size_t hid = (size_t)(m->ff_dim > 3 * d ? m->ff_dim : 3 * d); /* ff hidden, qkv, pw1 */
    int N = t.N, ctc = (flags & ES_CUDA_CTC_IDS) != 0;
    if (grow_host(c, H_FEAT, sizeof(float) * feat, err, errlen) ||
        grow_host(c, H_FRAMES, sizeof(float) * (size_t)N * d, err, errlen) ||
        grow_host(c, H_IDS, sizeof(int) * (size_t)N, err, errlen) ||
        grow_dev(c, D_PLAN, plan_bytes, err, errlen) || grow_dev(c, D_FEAT, sizeof(float) * feat, err, errlen) ||
        grow_dev(c, D_X, sizeof(float) * (size_t)N * d, err, errlen) ||
        grow_dev(c, D_YH, sizeof(lowp) * (size_t)N * d, err, errlen) ||
        grow_dev(c, D_H, sizeof(float) * (size_t)N * hid, err, errlen) ||
        grow_dev(c, D_HH, sizeof(lowp) * (size_t)N * m->ff_dim, err, errlen) ||
        grow_dev(c, D_G, sizeof(float) * (size_t)N * d, err, errlen) ||
        grow_dev(c, D_Z, sizeof(float) * (size_t)N * d, err, errlen) ||
        grow_dev(c, D_OH, sizeof(lowp) * (size_t)N * d, err, errlen) ||
        (ctc && grow_dev(c, D_LOGITS, sizeof(float) * (size_t)N * V1, err, errlen)) ||
        (ctc && grow_dev(c, D_IDS, sizeof(int) * (size_t)N, err, errlen)) ||
        prepare_subsampling(c, &t, err, errlen) || positions(c, &t, err, errlen))
        return -1;

    /* the plan and the features over; padding streams get zeros (finite, like a real chunk's) */
    float *fh = (float *)c->host[H_FEAT].p;
    for (int b = 0; b < nr; b++) {
        float *dst = fh + (size_t)b * t.max_width * F;
        size_t bytes = sizeof(float) * (size_t)run[b].width * F;
        if (b < n)
            memcpy(dst, run[b].features, bytes);
        else
            memset(dst, 0, bytes);
    }
    if (ck(cudaMemcpyAsync(c->dev[D_PLAN].p, plan, plan_bytes, cudaMemcpyHostToDevice, c->stream),
           "uploading the plan", err, errlen) ||
        ck(cudaMemcpyAsync(c->dev[D_FEAT].p, fh, sizeof(float) * feat, cudaMemcpyHostToDevice, c->stream),
           "uploading features", err, errlen))
        return -1;

    /* 2-4. subsampling, layers, lengths, CTC head */
    if ((c->use_graphs ? compute_graph(c, &t, flags, err, errlen) : compute(c, &t, flags, err, errlen)) != 0)
        return -1;

    /* what the caller wants back, the real streams' rows only (they come first), then the one
       synchronisation */
    size_t real = (size_t)es_cuda_real_rows(plan, n);
    if ((flags & ES_CUDA_FRAMES) &&
        ck(cudaMemcpyAsync(c->host[H_FRAMES].p, c->dev[D_X].p, sizeof(float) * real * d, cudaMemcpyDeviceToHost,
                           c->stream),
           "copying frames back", err, errlen))
        return -1;
    if (ctc && ck(cudaMemcpyAsync(c->host[H_IDS].p, c->dev[D_IDS].p, sizeof(int) * real, cudaMemcpyDeviceToHost,
                                  c->stream),
                  "copying CTC ids back", err, errlen))
        return -1;
    if (ck(cudaGetLastError(), "launching the step", err, errlen) ||
        ck(cudaStreamSynchronize(c->stream), "the step", err, errlen))
        return -1;
    es_cuda_map_outputs(plan, n, (flags & ES_CUDA_FRAMES) ? (const float *)c->host[H_FRAMES].p : NULL, d, out);
    c->plan = plan;
    c->last_n = n; /* es_cuda_ctc_ids and es_cuda_rnnt see the real streams only */
    return 0;
}

extern "C" unsigned long es_cuda_graph_launches(const es_cuda *c)
{
    return c->graph_launches;
}

extern "C" const int *es_cuda_ctc_ids(const es_cuda *c, int b)
{
    if (b < 0 || b >= c->last_n)
        return NULL;
    return (const int *)c->host[H_IDS].p + c->plan[b].rows;
}

extern "C" int es_cuda_read_time_cache(es_cuda *c, int slot, int layer, float *dst)
{
    if (slot < 0 || slot >= c->n_slots || layer < 0 || layer >= c->m->n_layers)
        return -1;
    size_t n = (size_t)c->caches.k1 * c->m->d_model;
    const float *src = c->caches.time + (size_t)slot * c->caches.time_stride + (size_t)layer * n;
    if (cudaMemcpyAsync(dst, src, sizeof(float) * n, cudaMemcpyDeviceToHost, c->stream) != cudaSuccess)
        return -1;
    return cudaStreamSynchronize(c->stream) == cudaSuccess ? 0 : -1;
}

extern "C" int es_cuda_read_channel_len(es_cuda *c, int slot, int *len)
{
    if (slot < 0 || slot >= c->n_slots)
        return -1;
    const int *src = c->caches.length + (size_t)slot * c->caches.len_stride;
    if (cudaMemcpyAsync(len, src, sizeof(int), cudaMemcpyDeviceToHost, c->stream) != cudaSuccess)
        return -1;
    return cudaStreamSynchronize(c->stream) == cudaSuccess ? 0 : -1;
}

extern "C" size_t es_cuda_bytes_per_slot(const es_cuda *c)
{
    return es_cuda_layout_bytes(&c->layout);
}

extern "C" size_t es_cuda_device_bytes(const es_cuda *c)
{
    size_t b = c->w.bytes + c->cache_bytes + BLAS_WORKSPACE;
    for (int i = 0; i < N_DBUFS; i++)
        b += c->dev[i].cap;
    return b;
}
