/*
 * rnnt_cuda.cu - greedy RNNT decoding on the GPU, batched over the RNNT streams of a step.
 *
 * The algorithm is rnnt.c's (NeMo's GreedyRNNTInfer), on the encoder frames the last
 * es_cuda_step left in device memory, with each stream's decoder state in a device region
 * indexed by slot, in rnnt.c's layout (so all-zero bytes are the start of a stream):
 *     int32 last, pred_ok, pad[2]; float h[H], c[H], h1[H], c1[H], p[J]
 * Every stream walks its own frames: one iteration of the loop below is, for every stream still
 * active, one joint evaluation at its current frame, after the prediction network has been run
 * for those whose (last token, state) changed. A blank, or max_symbols tokens, moves a stream to
 * its next frame. Each stream makes exactly the decisions it would make alone, as in rnnt.c.
 * The host drives the loop and learns after each iteration, through one 4-byte copy, whether any
 * stream is still active; a step has few iterations (frames per chunk x symbols per frame).
 *
 * The decoder runs in fp32 (cuBLAS GEMMs without tensor-core rounding): its argmax decisions
 * follow directly from its own outputs.
 */
#include "backend.h"

#include <math.h>
#include <string.h>

/* One RNNT stream of the call. */
typedef struct {
    int slot, rows, n_frames; /* where its state and frames are; how many frames */
    int t, sym, n_out;        /* current frame, tokens emitted on it, tokens in all */
    int active;               /* t < n_frames */
    int need;                 /* the prediction network must run for it this iteration */
} rnnt_job;

typedef struct {
    int last, pred_ok, pad[2];
} rnnt_header;

/* A stream's state in the slot region. */
typedef struct {
    rnnt_header *hdr;
    float *h, *c, *h1, *c1, *p;
} rnnt_view;

__device__ static rnnt_view view(char *states, size_t stride, int slot, int H)
{
    rnnt_view v;
    char *base = states + (size_t)slot * stride;
    v.hdr = (rnnt_header *)base;
    v.h = (float *)(base + sizeof(rnnt_header));
    v.c = v.h + H;
    v.h1 = v.c + H;
    v.c1 = v.h1 + H;
    v.p = v.c1 + H;
    return v;
}

#define THREADS 256
#define GRID_STRIDE(i, n)                                                                                              \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

static unsigned blocks_for(size_t n)
{
    size_t b = (n + THREADS - 1) / THREADS;
    if (b > (size_t)1 << 20)
        b = (size_t)1 << 20;
    return (unsigned)(b ? b : 1);
}

__device__ static float sigmoidf_(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* need = active and the prediction output is stale (rnnt.c's !pred_ok). */
__global__ static void prep_kernel(rnnt_job *jobs, int B, char *states, size_t stride, int H)
{
    GRID_STRIDE(b, (size_t)B)
    {
        rnnt_job *j = &jobs[b];
        j->need = j->active && !view(states, stride, j->slot, H).hdr->pred_ok;
    }
}

/* The LSTM's inputs of the streams that need it: x = embed(last) (zeros for the start symbol),
   hp = h. Other rows are zeros (computed, never used). */
__global__ static void gather_kernel(const rnnt_job *jobs, int B, char *states, size_t stride, int H,
                                     const float *embed, float *x, float *hp)
{
    GRID_STRIDE(i, (size_t)B * H)
    {
        int b = (int)(i / H), k = (int)(i % H);
        float xv = 0.0f, hv = 0.0f;
        if (jobs[b].need) {
            rnnt_view v = view(states, stride, jobs[b].slot, H);
            int last = v.hdr->last;
            xv = last > 0 ? embed[(size_t)(last - 1) * H + k] : 0.0f;
            hv = v.h[k];
        }
        x[i] = xv;
        hp[i] = hv;
    }
}

/* gates (i, f, g, o, PyTorch's order) -> c1, h1 in the state; h1 also into g for joint_pred. */
__global__ static void cell_kernel(const rnnt_job *jobs, int B, char *states, size_t stride, int H,
                                   const float *gates, float *g)
{
    GRID_STRIDE(i, (size_t)B * H)
    {
        int b = (int)(i / H), k = (int)(i % H);
        if (!jobs[b].need)
            continue;
        rnnt_view v = view(states, stride, jobs[b].slot, H);
        const float *gi = gates + (size_t)b * 4 * H, *gf = gi + H, *gg = gi + 2 * H, *go = gi + 3 * H;
        float c1 = sigmoidf_(gf[k]) * v.c[k] + sigmoidf_(gi[k]) * tanhf(gg[k]);
        float h1 = sigmoidf_(go[k]) * tanhf(c1);
        v.c1[k] = c1;
        v.h1[k] = h1;
        g[i] = h1;
    }
}

/* p = joint_pred(h1) into the state; the prediction is fresh again. */
__global__ static void scatter_kernel(const rnnt_job *jobs, int B, char *states, size_t stride, int H, int J,
                                      const float *p)
{
    GRID_STRIDE(i, (size_t)B * J)
    {
        int b = (int)(i / J), k = (int)(i % J);
        if (!jobs[b].need)
            continue;
        rnnt_view v = view(states, stride, jobs[b].slot, H);
        v.p[k] = p[i];
        if (k == 0)
            v.hdr->pred_ok = 1; /* others read jobs[].need, not this flag */
    }
}

/* z = relu(joint_enc(frame t) + p) of every active stream. */
__global__ static void joint_in_kernel(const rnnt_job *jobs, int B, char *states, size_t stride, int H, int J,
                                       const float *enc, float *z)
{
    GRID_STRIDE(i, (size_t)B * J)
    {
        int b = (int)(i / J), k = (int)(i % J);
        const rnnt_job *j = &jobs[b];
        float v = 0.0f;
        if (j->active) {
            v = enc[((size_t)j->rows + j->t) * J + k] + view(states, stride, j->slot, H).p[k];
            v = v > 0.0f ? v : 0.0f;
        }
        z[i] = v;
    }
}

/* One block per stream: argmax of its logits (first maximum), then rnnt.c's decision: blank
   moves to the next frame; a token is emitted, the LSTM state advances, and after max_symbols
   tokens the frame is done too. Counts the streams still active. */
__global__ static void advance_kernel(rnnt_job *jobs, char *states, size_t stride, int H, const float *logits, int V1,
                                      int blank, int max_symbols, int *tokens, int cap, int *count)
{
    rnnt_job *j = &jobs[blockIdx.x];
    if (!j->active)
        return;
    int k = block_argmax(logits + (size_t)blockIdx.x * V1, V1);
    rnnt_view v = view(states, stride, j->slot, H);
    if (k != blank)
        for (int x = threadIdx.x; x < H; x += blockDim.x) {
            v.h[x] = v.h1[x];
            v.c[x] = v.c1[x];
        }
    if (threadIdx.x != 0)
        return;
    if (k == blank) {
        j->t++;
        j->sym = 0;
    } else {
        if (j->n_out < cap) {
            tokens[((size_t)blockIdx.x * cap + j->n_out) * 2] = k;
            tokens[((size_t)blockIdx.x * cap + j->n_out) * 2 + 1] = j->t;
            j->n_out++;
        }
        v.hdr->last = k + 1;
        v.hdr->pred_ok = 0;
        if (++j->sym >= max_symbols) {
            j->t++;
            j->sym = 0;
        }
    }
    j->active = j->t < j->n_frames;
    if (j->active)
        atomicAdd(count, 1);
}

/* y[rows][out] = (accumulate ? y : 0) + x W^T + b, all fp32 (CUBLAS_COMPUTE_32F without TF32). */
static int linear32(es_cuda *c, const dlinear32 *l, const float *x, int rows, float *y, int accumulate, char *err,
                    size_t errlen)
{
    if (rows <= 0)
        return 0;
    k_bias(y, l->b, rows, l->out, 1.0f, accumulate, c->stream);
    float one = 1.0f, beta = accumulate || l->b ? 1.0f : 0.0f;
    return ck_blas(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, l->out, rows, l->in, &one, l->w, CUDA_R_32F, l->in,
                                x, CUDA_R_32F, l->in, &beta, y, CUDA_R_32F, l->out, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT),
                   "an RNNT layer", err, errlen);
}

extern "C" int es_cuda_rnnt_on(const es_cuda *c)
{
    return c->gpu_rnnt;
}

extern "C" int es_cuda_rnnt(es_cuda *c, const int *which, int B, char *err, size_t errlen)
{
    const es_model *m = c->m;
    int H = m->pred_hidden, J = m->joint_hidden, V1 = m->n_vocab + 1;
    c->rnnt_B = 0;
    if (!c->gpu_rnnt)
        return failf(err, errlen, "RNNT decoding on the GPU is off");
    if (B <= 0)
        return 0;
    int N = 0, max_frames = 0;
    for (int i = 0; i < B; i++) {
        if (which[i] < 0 || which[i] >= c->last_n || c->plan[which[i]].slot < 0)
            return failf(err, errlen, "RNNT stream %d is not a streaming stream of the last step", which[i]);
        const es_cuda_stream *s = &c->plan[which[i]];
        max_frames = s->n_out > max_frames ? s->n_out : max_frames;
    }
    const es_cuda_stream *last = &c->plan[c->last_n - 1];
    N = last->rows + last->T;
    int cap = max_frames * m->max_symbols > 0 ? max_frames * m->max_symbols : 1;
    size_t fb = sizeof(float);
    if (grow_dev(c, D_R_ENC, fb * (size_t)N * J, err, errlen) ||
        grow_dev(c, D_R_JOBS, sizeof(rnnt_job) * (size_t)B, err, errlen) ||
        grow_dev(c, D_R_X, fb * (size_t)B * H, err, errlen) || grow_dev(c, D_R_HP, fb * (size_t)B * H, err, errlen) ||
        grow_dev(c, D_R_GATES, fb * (size_t)B * 4 * H, err, errlen) ||
        grow_dev(c, D_R_P, fb * (size_t)B * J, err, errlen) || grow_dev(c, D_R_Z, fb * (size_t)B * J, err, errlen) ||
        grow_dev(c, D_R_LOGITS, fb * (size_t)B * V1, err, errlen) ||
        grow_dev(c, D_R_TOK, sizeof(int) * 2 * (size_t)B * cap, err, errlen) ||
        grow_dev(c, D_R_COUNT, sizeof(int), err, errlen) ||
        grow_host(c, H_R_JOBS, sizeof(rnnt_job) * (size_t)B, err, errlen) ||
        grow_host(c, H_R_TOK, sizeof(int) * 2 * (size_t)B * cap, err, errlen) ||
        grow_host(c, H_R_COUNT, sizeof(int), err, errlen))
        return -1;

    rnnt_job *jobs_h = (rnnt_job *)c->host[H_R_JOBS].p;
    int any = 0;
    for (int i = 0; i < B; i++) {
        const es_cuda_stream *s = &c->plan[which[i]];
        rnnt_job j = {s->slot, s->rows, s->n_out, 0, 0, 0, s->n_out > 0, 0};
        jobs_h[i] = j;
        any |= j.active;
    }
    rnnt_job *jobs = (rnnt_job *)c->dev[D_R_JOBS].p;
    float *enc = (float *)c->dev[D_R_ENC].p, *x = (float *)c->dev[D_R_X].p, *hp = (float *)c->dev[D_R_HP].p;
    float *gates = (float *)c->dev[D_R_GATES].p, *p = (float *)c->dev[D_R_P].p, *z = (float *)c->dev[D_R_Z].p;
    float *logits = (float *)c->dev[D_R_LOGITS].p;
    int *tokens = (int *)c->dev[D_R_TOK].p, *count = (int *)c->dev[D_R_COUNT].p;
    int *count_h = (int *)c->host[H_R_COUNT].p;
    cudaStream_t st = c->stream;
    char *states = c->rnnt_state;
    size_t stride = c->rnnt_stride;

    if (ck(cudaMemcpyAsync(jobs, jobs_h, sizeof(rnnt_job) * (size_t)B, cudaMemcpyHostToDevice, st), "RNNT jobs", err,
           errlen) ||
        linear32(c, &c->w.joint_enc, (const float *)c->dev[D_X].p, N, enc, 0, err, errlen))
        return -1;
    /* every iteration moves each active stream one symbol or one frame on */
    long max_iter = (long)max_frames * (m->max_symbols + 1) + 1;
    for (long it = 0; any && it < max_iter; it++) {
        size_t BH = (size_t)B * H, BJ = (size_t)B * J;
        prep_kernel<<<blocks_for((size_t)B), THREADS, 0, st>>>(jobs, B, states, stride, H);
        gather_kernel<<<blocks_for(BH), THREADS, 0, st>>>(jobs, B, states, stride, H, c->w.embed, x, hp);
        if (linear32(c, &c->w.lstm_ih, x, B, gates, 0, err, errlen) ||
            linear32(c, &c->w.lstm_hh, hp, B, gates, 1, err, errlen))
            return -1;
        cell_kernel<<<blocks_for(BH), THREADS, 0, st>>>(jobs, B, states, stride, H, gates, x);
        if (linear32(c, &c->w.joint_pred, x, B, p, 0, err, errlen))
            return -1;
        scatter_kernel<<<blocks_for(BJ), THREADS, 0, st>>>(jobs, B, states, stride, H, J, p);
        joint_in_kernel<<<blocks_for(BJ), THREADS, 0, st>>>(jobs, B, states, stride, H, J, enc, z);
        if (linear32(c, &c->w.joint_out, z, B, logits, 0, err, errlen) ||
            ck(cudaMemsetAsync(count, 0, sizeof(int), st), "RNNT count", err, errlen))
            return -1;
        advance_kernel<<<B, THREADS, 0, st>>>(jobs, states, stride, H, logits, V1, m->n_vocab, m->max_symbols, tokens,
                                             cap, count);
        if (ck(cudaMemcpyAsync(count_h, count, sizeof(int), cudaMemcpyDeviceToHost, st), "RNNT count", err, errlen) ||
            ck(cudaStreamSynchronize(st), "an RNNT iteration", err, errlen))
            return -1;
        any = *count_h > 0;
    }
    if (ck(cudaMemcpyAsync(jobs_h, jobs, sizeof(rnnt_job) * (size_t)B, cudaMemcpyDeviceToHost, st), "RNNT jobs", err,
           errlen) ||
        ck(cudaMemcpyAsync(c->host[H_R_TOK].p, tokens, sizeof(int) * 2 * (size_t)B * cap, cudaMemcpyDeviceToHost, st),
           "RNNT tokens", err, errlen) ||
        ck(cudaGetLastError(), "launching RNNT", err, errlen) || ck(cudaStreamSynchronize(st), "RNNT", err, errlen))
        return -1;
    c->rnnt_B = B;
    c->rnnt_cap = cap;
    return 0;
}

extern "C" const int *es_cuda_rnnt_tokens(const es_cuda *c, int i, int *n)
{
    if (i < 0 || i >= c->rnnt_B) {
        *n = 0;
        return NULL;
    }
    *n = ((const rnnt_job *)c->host[H_R_JOBS].p)[i].n_out;
    return (const int *)c->host[H_R_TOK].p + (size_t)i * c->rnnt_cap * 2;
}
