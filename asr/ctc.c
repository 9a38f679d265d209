/*
 * ctc.c - the CTC head and greedy CTC decoding (see decoder.h).
 *
 * NeMo's ConvASRDecoder is a kernel-1 Conv1d, i.e. one linear layer per frame, followed by
 * log_softmax; greedy decoding takes the per-frame argmax of those log-probs. We argmax the
 * log-probs rather than the logits because subtracting the normaliser rounds, and NeMo decides
 * on the rounded values.
 */
#include "decoder.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

void es_ctc_log_probs(const es_model *m, const float *frames, int n_frames, float *logprobs)
{
    int V1 = m->n_vocab + 1, d = m->d_model;
    if (n_frames <= 0)
        return;
    for (int t = 0; t < n_frames; t++)
        for (int v = 0; v < V1; v++)
            logprobs[(size_t)t * V1 + v] = m->ctc.b ? m->ctc.b[v] : 0.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_frames, V1, d, 1.0f, frames, d, m->ctc.w, d, 1.0f,
                logprobs, V1);
    for (int t = 0; t < n_frames; t++) {
        float *row = logprobs + (size_t)t * V1;
        float mx = row[0];
        for (int v = 1; v < V1; v++)
            if (row[v] > mx)
                mx = row[v];
        /* the sum in double: exact enough that only the final subtraction rounds */
        double s = 0.0;
        for (int v = 0; v < V1; v++)
            s += exp((double)row[v] - mx);
        float lse = (float)(mx + log(s));
        for (int v = 0; v < V1; v++)
            row[v] -= lse;
    }
}

int es_ctc_greedy(const es_model *m, const float *frames, int n_frames, int first_frame, int *prev_id,
                  int *frame_ids, es_token *out, int max_out, float *scratch)
{
    int V1 = m->n_vocab + 1, blank = m->n_vocab;
    if (n_frames <= 0)
        return 0;
    float *lp = scratch;
    if (!lp) {
        lp = malloc((size_t)n_frames * V1 * sizeof(float));
        if (!lp)
            return -1;
    }
    es_ctc_log_probs(m, frames, n_frames, lp);
    int n = 0, prev = *prev_id;
    for (int t = 0; t < n_frames; t++) {
        const float *row = lp + (size_t)t * V1;
        int k = 0;
        for (int v = 1; v < V1; v++)
            if (row[v] > row[k]) /* strict: the first maximum wins, as torch.argmax */
                k = v;
        if (frame_ids)
            frame_ids[t] = k;
        /* a token is emitted where its run starts; a run continuing from the previous chunk
           (prev carried in *prev_id) was emitted there already */
        if (k != blank && k != prev && n < max_out)
            out[n++] = (es_token){.id = k, .frame = first_frame + t};
        prev = k;
    }
    *prev_id = prev;
    if (!scratch)
        free(lp);
    return n;
}
