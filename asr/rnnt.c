/*
 * rnnt.c - greedy RNNT decoding, one stream or many in lock step (see decoder.h).
 *
 * The algorithm is NeMo's GreedyRNNTInfer. For each frame t:
 *     repeat up to max_symbols times:
 *         g, state' = LSTM(embed(last token) or zeros at the start, state)
 *         k = argmax joint_out(relu(joint_enc(f_t) + joint_pred(g)))
 *         if k is blank: go to the next frame
 *         emit k; last token = k; state = state'
 * so the prediction network only moves when a token is emitted. We therefore keep its output
 * for the current (last token, state) in the stream's state and compute it only when it is
 * stale; on a frame that emits nothing the decoder costs one joint evaluation. joint_enc of all
 * frames of a chunk is one GEMM up front.
 *
 * State layout (es_rnnt_state_bytes), chosen so that all-zero bytes are the start of a stream:
 *     int32 last      last emitted token + 1; 0 = none yet (the start symbol: zero embedding)
 *     int32 pred_ok   nonzero when h1, c1, p below belong to the current (last, h, c)
 *     int32 pad[2]    keeps the floats 16-byte aligned when the state is
 *     float h[H], c[H]      LSTM state before feeding `last`
 *     float h1[H], c1[H]    LSTM state after feeding it; g = h1
 *     float p[J]            joint_pred(g)
 *
 * The batched form walks frame index t over all streams together; the streams whose chunk
 * still has frame t and which have not yet answered blank (or hit max_symbols) form the
 * active set, and each LSTM / joint product is one GEMM over that set. Each stream sees exactly
 * the sequence of decisions it would see alone.
 */
#include "decoder.h"
#include "ops.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t last;
    int32_t pred_ok;
    int32_t pad[2];
} rnnt_header;

typedef struct {
    rnnt_header *hdr;
    float *h, *c, *h1, *c1, *p;
} rnnt_view;

static rnnt_view view_state(const es_model *m, void *state)
{
    int H = m->pred_hidden;
    rnnt_view s;
    s.hdr = state;
    s.h = (float *)((char *)state + sizeof(rnnt_header));
    s.c = s.h + H;
    s.h1 = s.c + H;
    s.c1 = s.h1 + H;
    s.p = s.c1 + H;
    return s;
}

size_t es_rnnt_state_bytes(const es_model *m)
{
    return sizeof(rnnt_header) + (size_t)(4 * m->pred_hidden + m->joint_hidden) * sizeof(float);
}

/* y[rows][out] = x[rows][in] W^T + b (b may be NULL) */
static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* Workspace of one batched call, sized for B streams and all their frames. */
typedef struct {
    float *enc;     /* joint_enc of every frame of every stream, stacked */
    size_t *enc_at; /* first row of stream b in enc */
    float *x, *hp, *gates, *g, *p, *z, *logits;
    int *sym, *idx, *need;
} work;

static void work_free(work *w)
{
    free(w->enc);
    free(w->enc_at);
    free(w->x);
    free(w->hp);
    free(w->gates);
    free(w->g);
    free(w->p);
    free(w->z);
    free(w->logits);
    free(w->sym);
    free(w->idx);
    free(w->need);
}

static int work_alloc(work *w, const es_model *m, int B, size_t total_frames)
{
    size_t H = (size_t)m->pred_hidden, J = (size_t)m->joint_hidden, V1 = (size_t)m->n_vocab + 1;
    memset(w, 0, sizeof *w);
    w->enc = malloc((total_frames ? total_frames : 1) * J * sizeof(float));
    w->enc_at = malloc((size_t)B * sizeof(size_t));
    w->x = malloc((size_t)B * H * sizeof(float));
    w->hp = malloc((size_t)B * H * sizeof(float));
    w->gates = malloc((size_t)B * 4 * H * sizeof(float));
    w->g = malloc((size_t)B * H * sizeof(float));
    w->p = malloc((size_t)B * J * sizeof(float));
    w->z = malloc((size_t)B * J * sizeof(float));
    w->logits = malloc((size_t)B * V1 * sizeof(float));
    w->sym = malloc((size_t)B * sizeof(int));
    w->idx = malloc((size_t)B * sizeof(int));
    w->need = malloc((size_t)B * sizeof(int));
    if (!w->enc || !w->enc_at || !w->x || !w->hp || !w->gates || !w->g || !w->p || !w->z || !w->logits ||
        !w->sym || !w->idx || !w->need) {
        work_free(w);
        return -1;
    }
    return 0;
}

/* Runs the prediction network for the n streams listed in sel (states st[]): fills h1, c1, p of
   each and marks them fresh. One GEMM for the input, one for the recurrence, one for joint_pred. */
static void predict(const es_model *m, work *w, rnnt_view *st, const int *sel, int n)
{
    int H = m->pred_hidden, J = m->joint_hidden;
    for (int i = 0; i < n; i++) {
        const rnnt_view *s = &st[sel[i]];
        float *x = w->x + (size_t)i * H;
        if (s->hdr->last > 0)
            memcpy(x, m->embed + (size_t)(s->hdr->last - 1) * H, (size_t)H * sizeof(float));
        else
            memset(x, 0, (size_t)H * sizeof(float)); /* start symbol */
        memcpy(w->hp + (size_t)i * H, s->h, (size_t)H * sizeof(float));
    }
    /* gates = (x W_ih^T + b_ih) + (h W_hh^T + b_hh), in PyTorch's order i, f, g, o */
    es_linear_forward(&m->lstm_ih, w->x, n, w->gates);
    if (m->lstm_hh.b)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < 4 * H; j++)
                w->gates[(size_t)i * 4 * H + j] += m->lstm_hh.b[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, 4 * H, H, 1.0f, w->hp, H, m->lstm_hh.w, H, 1.0f,
                w->gates, 4 * H);
    for (int i = 0; i < n; i++) {
        const rnnt_view *s = &st[sel[i]];
        const float *gi = w->gates + (size_t)i * 4 * H, *gf = gi + H, *gg = gi + 2 * H, *go = gi + 3 * H;
        for (int j = 0; j < H; j++) {
            float c1 = sigmoid(gf[j]) * s->c[j] + sigmoid(gi[j]) * tanhf(gg[j]);
            s->c1[j] = c1;
            s->h1[j] = sigmoid(go[j]) * tanhf(c1);
        }
        memcpy(w->g + (size_t)i * H, s->h1, (size_t)H * sizeof(float));
    }
    es_linear_forward(&m->joint_pred, w->g, n, w->p);
    for (int i = 0; i < n; i++) {
        const rnnt_view *s = &st[sel[i]];
        memcpy(s->p, w->p + (size_t)i * J, (size_t)J * sizeof(float));
        s->hdr->pred_ok = 1;
    }
}

int es_rnnt_greedy_batch(const es_model *m, void **states, const float *const *frames, const int *n_frames,
                         const int *first_frame, int B, es_token **out, const int *max_out, int *n_out)
{
    int J = m->joint_hidden, V1 = m->n_vocab + 1, blank = m->n_vocab;
    if (B <= 0)
        return 0;
    size_t total = 0;
    int T = 0;
    for (int b = 0; b < B; b++) {
        int nf = n_frames[b] > 0 ? n_frames[b] : 0;
        total += (size_t)nf;
        if (nf > T)
            T = nf;
    }
    work w;
    if (work_alloc(&w, m, B, total) != 0)
        return -1;
    rnnt_view *st = malloc((size_t)B * sizeof *st);
    if (!st) {
        work_free(&w);
        return -1;
    }

    size_t row = 0;
    for (int b = 0; b < B; b++) {
        st[b] = view_state(m, states[b]);
        n_out[b] = 0;
        w.enc_at[b] = row;
        if (n_frames[b] > 0) {
            es_linear_forward(&m->joint_enc, frames[b], n_frames[b], w.enc + row * J);
            row += (size_t)n_frames[b];
        }
    }

    for (int t = 0; t < T; t++) {
        /* active set: streams that have frame t; each gets up to max_symbols joint calls */
        int n_act = 0;
        for (int b = 0; b < B; b++)
            if (t < n_frames[b]) {
                w.idx[n_act++] = b;
                w.sym[b] = 0;
            }
        while (n_act > 0) {
            int n_need = 0;
            for (int i = 0; i < n_act; i++)
                if (!st[w.idx[i]].hdr->pred_ok)
                    w.need[n_need++] = w.idx[i];
            if (n_need > 0)
                predict(m, &w, st, w.need, n_need);

            for (int i = 0; i < n_act; i++) {
                int b = w.idx[i];
                const float *e = w.enc + (w.enc_at[b] + (size_t)t) * J;
                float *z = w.z + (size_t)i * J;
                for (int j = 0; j < J; j++) {
                    float v = e[j] + st[b].p[j];
                    z[j] = v > 0.0f ? v : 0.0f;
                }
            }
            es_linear_forward(&m->joint_out, w.z, n_act, w.logits);

            int keep = 0;
            for (int i = 0; i < n_act; i++) {
                int b = w.idx[i];
                const float *lg = w.logits + (size_t)i * V1;
                /* argmax of the logits equals that of NeMo's log-softmax: the normaliser is one
                   constant per row, and the golden gaps (>= 1e-2) dwarf its rounding */
                int k = 0;
                for (int v = 1; v < V1; v++)
                    if (lg[v] > lg[k])
                        k = v;
                if (k == blank)
                    continue; /* next frame for this stream */
                if (n_out[b] < max_out[b])
                    out[b][n_out[b]++] = (es_token){.id = k, .frame = first_frame[b] + t};
                rnnt_view *s = &st[b];
                memcpy(s->h, s->h1, (size_t)m->pred_hidden * sizeof(float));
                memcpy(s->c, s->c1, (size_t)m->pred_hidden * sizeof(float));
                s->hdr->last = k + 1;
                s->hdr->pred_ok = 0;
                if (++w.sym[b] < m->max_symbols)
                    w.idx[keep++] = b;
            }
            n_act = keep;
        }
    }
    free(st);
    work_free(&w);
    return 0;
}

int es_rnnt_greedy(const es_model *m, void *state, const float *frames, int n_frames, int first_frame,
                   es_token *out, int max_out)
{
    /* one code path for one stream and many: the batch of one */
    int n = 0;
    if (es_rnnt_greedy_batch(m, &state, &frames, &n_frames, &first_frame, 1, &out, &max_out, &n) != 0)
        return -1;
    return n;
}
