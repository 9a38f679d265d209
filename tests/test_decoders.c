/*
 * test_decoders - the CTC and RNNT decoders and the detokeniser against NeMo's golden numbers.
 *
 *   test_decoders GOLDEN_DIR MODELS_DIR
 *
 * Every folder of GOLDEN_DIR with a manifest.json is a case; its model is
 * MODELS_DIR/<case>.safetensors (written by earshot-convert). The decoders are fed the golden
 * encoder outputs, so this tests the decoders alone, independent of the encoder:
 *
 *   CTC   offline: log-probs (max|err| <= 1e-4 x max|ref|), per-frame ids, tokens, text.
 *         streaming: the same chunk by chunk with the repeat-merging state carried over.
 *   RNNT  offline tokens and text; streaming chunk by chunk, the token count after each chunk;
 *         a batched run of all look-aheads' offline and streaming decodes at once (ragged
 *         lengths, streams dropping out) must equal the one-stream results, frames included;
 *         truncated output (max_out) must not disturb the decoder state.
 *
 * Plus unit tests of the detokeniser and word grouping on a hand-made vocabulary. The last line
 * printed is "N passed, N failed"; the exit status is non-zero on any failure.
 */
#include "decoder.h"
#include "model.h"
#include "npy.h"

#include <cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_passed, n_failed;

static void report(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("  %-4s ", ok ? "ok" : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok)
        n_passed++;
    else
        n_failed++;
}

/* ---- hand-made vocabulary: detokenisation and words ---- */

static void check_str(const char *what, const char *got, const char *want)
{
    int ok = got && !strcmp(got, want);
    report(ok, "%s: \"%s\"%s%s%s", what, got ? got : "(null)", ok ? "" : " want \"", ok ? "" : want,
           ok ? "" : "\"");
}

static void test_tokens_unit(void)
{
    printf("tokens (hand-made vocabulary)\n");
    char *vocab[] = {
        "<unk>",          /* 0 */
        "\xE2\x96\x81he", /* 1 ▁he */
        "llo",            /* 2 */
        "\xE2\x96\x81wor", /* 3 ▁wor */
        "ld",             /* 4 */
        "\xE2\x96\x81",   /* 5 ▁ */
        "x",              /* 6 */
        "<0x41>",         /* 7 byte 'A' */
        "<s>",            /* 8 control */
    };
    es_model m;
    memset(&m, 0, sizeof m);
    m.n_vocab = (int)(sizeof vocab / sizeof vocab[0]);
    m.vocab = vocab;
    m.sample_rate = 16000;
    m.hop_length = 160;
    m.subsampling_factor = 8; /* 80 ms per frame */
    int blank = m.n_vocab;
    const double fs = 0.08;

    es_token t[] = {{1, 2}, {2, 3}, {3, 5}, {4, 7}, {blank, 8}, {5, 9}, {6, 9}, {0, 10}, {7, 12}, {blank, 13}};
    int n = (int)(sizeof t / sizeof t[0]);
    char *s = es_tokens_to_text(&m, t, n);
    check_str("text", s, "hello world x \xE2\x81\x87 A");
    free(s);

    es_word *w = NULL;
    int nw = es_tokens_to_words(&m, t, n, &w);
    report(nw == 3, "word count %d (want 3)", nw);
    const char *want_w[] = {"hello", "world", "x \xE2\x81\x87 A"};
    const double want_s[] = {2 * fs, 5 * fs, 9 * fs}, want_e[] = {4 * fs, 8 * fs, 13 * fs};
    for (int i = 0; i < nw && i < 3; i++) {
        check_str("word", w[i].word, want_w[i]);
        int ok = fabs(w[i].start - want_s[i]) < 1e-9 && fabs(w[i].end - want_e[i]) < 1e-9;
        report(ok, "word %d times %.3f-%.3f (want %.3f-%.3f)", i, w[i].start, w[i].end, want_s[i], want_e[i]);
    }
    es_words_free(w, nw);

    /* text that does not start at a word boundary; a control piece */
    es_token t2[] = {{8, 0}, {2, 0}, {1, 1}};
    s = es_tokens_to_text(&m, t2, 3);
    check_str("text without leading boundary", s, "llo he");
    free(s);
    nw = es_tokens_to_words(&m, t2, 3, &w);
    report(nw == 2 && !strcmp(w[0].word, "llo") && !strcmp(w[1].word, "he") && fabs(w[0].start) < 1e-9 &&
               fabs(w[0].end - fs) < 1e-9 && fabs(w[1].start - fs) < 1e-9 && fabs(w[1].end - 2 * fs) < 1e-9,
           "words without leading boundary: %d", nw);
    es_words_free(w, nw);

    es_token t3[] = {{5, 0}, {1, 1}, {5, 2}, {5, 3}};
    s = es_tokens_to_text(&m, t3, 4);
    /* SentencePiece's decode drops every ▁ before the first character ("▁" "▁a" reads "a") and
       keeps the later ones */
    check_str("lone boundary pieces", s, "he  ");
    free(s);
    nw = es_tokens_to_words(&m, t3, 4, &w);
    report(nw == 1 && !strcmp(w[0].word, "he") && fabs(w[0].start - fs) < 1e-9 && fabs(w[0].end - 2 * fs) < 1e-9,
           "lone boundary pieces make no empty words: %d", nw);
    es_words_free(w, nw);

    s = es_tokens_to_text(&m, NULL, 0);
    check_str("empty text", s, "");
    free(s);
    nw = es_tokens_to_words(&m, NULL, 0, &w);
    report(nw == 0 && w == NULL, "no words of no tokens");
}

/* ---- golden cases ---- */

typedef struct {
    const char *dir;
    const cJSON *arrays;
} gcase;

static int has_array(const gcase *c, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(c->arrays, name) != NULL;
}

/* Loads <case>/<prefix><name>.npy with the given dtype and rank; reports a failure if it cannot. */
static int load(const gcase *c, const char *prefix, const char *name, npy_dtype dt, int ndim, npy_array *a)
{
    char path[4096], err[512];
    if (snprintf(path, sizeof path, "%s/%s%s.npy", c->dir, prefix, name) >= (int)sizeof path) {
        report(0, "%s%s: path too long", prefix, name);
        return -1;
    }
    if (npy_load_typed(path, dt, ndim, a, err, sizeof err) != 0) {
        report(0, "%s%s: %s", prefix, name, err);
        return -1;
    }
    return 0;
}

/* [d][T] (the golden layout) to [T][d] (what the decoders take) */
static float *frame_major(const npy_array *a)
{
    size_t d = a->shape[0], T = a->shape[1];
    float *f = malloc((d * T > 0 ? d * T : 1) * sizeof(float));
    const float *src = npy_f32(a);
    for (size_t i = 0; i < d; i++)
        for (size_t t = 0; t < T; t++)
            f[t * d + i] = src[i * T + t];
    return f;
}

static void check_log_probs(const char *what, const float *got, const npy_array *ref, int T, int V1)
{
    if (ref->ndim != 2 || (int)ref->shape[0] != T || (int)ref->shape[1] != V1) {
        report(0, "%s: shape [%zu, %zu], computed [%d, %d]", what, ref->shape[0], ref->shape[1], T, V1);
        return;
    }
    const float *r = npy_f32(ref);
    double worst = 0, maxref = 0;
    for (size_t i = 0; i < (size_t)T * V1; i++) {
        double e = fabs((double)got[i] - r[i]);
        if (e > worst)
            worst = e;
        if (fabs(r[i]) > maxref)
            maxref = fabs(r[i]);
    }
    report(worst <= 1e-4 * maxref, "%s: max|err| %.3g, max|ref| %.3g, ratio %.3g (limit 1e-4)", what, worst, maxref,
           maxref > 0 ? worst / maxref : 0.0);
}

static void check_ints(const char *what, const int *got, int n, const npy_array *ref)
{
    const int32_t *r = npy_i32(ref);
    int first_diff = -1;
    if ((int)ref->count == n)
        for (int i = 0; i < n; i++)
            if (got[i] != r[i]) {
                first_diff = i;
                break;
            }
    int ok = (int)ref->count == n && first_diff < 0;
    if (ok)
        report(1, "%s: %d identical", what, n);
    else if ((int)ref->count != n)
        report(0, "%s: %d computed, %zu in the reference", what, n, ref->count);
    else
        report(0, "%s: first difference at %d: %d, reference %d", what, first_diff, got[first_diff], r[first_diff]);
}

static void check_token_ids(const char *what, const es_token *t, int n, const npy_array *ref)
{
    int *ids = malloc((size_t)(n ? n : 1) * sizeof(int));
    for (int i = 0; i < n; i++)
        ids[i] = t[i].id;
    check_ints(what, ids, n, ref);
    free(ids);
}

static void check_text(const es_model *m, const char *what, const es_token *t, int n, const cJSON *la,
                       const char *key)
{
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(la, key);
    if (!cJSON_IsString(want)) {
        report(0, "%s: manifest lacks %s", what, key);
        return;
    }
    char *s = es_tokens_to_text(m, t, n);
    int ok = s && !strcmp(s, want->valuestring);
    report(ok, "%s: \"%s\"%s%s%s", what, s ? s : "(null)", ok ? "" : " want \"", ok ? "" : want->valuestring,
           ok ? "" : "\"");
    free(s);
}

/* A CTC token must sit on the first frame of its run of equal frame ids. */
static void check_ctc_frames(const char *what, const es_token *t, int n, const int *ids, int T, int prev0)
{
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        int f = t[i].frame;
        ok = f >= 0 && f < T && ids[f] == t[i].id && (f == 0 ? prev0 != t[i].id : ids[f - 1] != t[i].id);
        if (i > 0 && t[i].frame <= t[i - 1].frame)
            ok = 0;
    }
    report(ok, "%s: token frames start their runs", what);
}

static void test_ctc(const es_model *m, const gcase *c, const char *p, const cJSON *la)
{
    int V1 = m->n_vocab + 1, d = m->d_model;
    char what[256];
    npy_array enc = {0}, lp_ref = {0}, ids_ref = {0}, tok_ref = {0}, off = {0};

    /* offline: one call, scratch allocated inside */
    if (load(c, p, "offline_encoded", NPY_F32, 2, &enc) == 0 && (int)enc.shape[0] == d &&
        load(c, p, "offline_ctc_log_probs", NPY_F32, 2, &lp_ref) == 0 &&
        load(c, p, "offline_ctc_frame_ids", NPY_I32, 1, &ids_ref) == 0 &&
        load(c, p, "offline_ctc_tokens", NPY_I32, 1, &tok_ref) == 0) {
        int T = (int)enc.shape[1];
        float *frames = frame_major(&enc);
        float *lp = malloc((size_t)T * V1 * sizeof(float));
        es_ctc_log_probs(m, frames, T, lp);
        snprintf(what, sizeof what, "%soffline_ctc_log_probs", p);
        check_log_probs(what, lp, &lp_ref, T, V1);

        int *ids = malloc((size_t)T * sizeof(int)), prev = -1;
        es_token *tok = malloc((size_t)T * sizeof(es_token));
        int n = es_ctc_greedy(m, frames, T, 0, &prev, ids, tok, T, NULL);
        snprintf(what, sizeof what, "%soffline_ctc_frame_ids", p);
        check_ints(what, ids, T, &ids_ref);
        snprintf(what, sizeof what, "%soffline_ctc_tokens", p);
        check_token_ids(what, tok, n, &tok_ref);
        check_ctc_frames(what, tok, n, ids, T, -1);
        report(prev == ids[T - 1], "%s: prev_id left at the last frame's id", what);
        snprintf(what, sizeof what, "%soffline_ctc_text", p);
        check_text(m, what, tok, n, la, "offline_ctc_text");

        /* max_out truncates the output, not the decoding */
        if (n >= 2) {
            int prev2 = -1;
            int n2 = es_ctc_greedy(m, frames, T, 0, &prev2, NULL, tok, 1, NULL);
            report(n2 == 1 && prev2 == prev, "%s: max_out 1 gives 1 token, same final state", what);
        }
        free(ids);
        free(tok);
        free(lp);
        free(frames);
    } else if (enc.data && (int)enc.shape[0] != d) {
        report(0, "%soffline_encoded: d_model %zu, model %d", p, enc.shape[0], d);
    }
    npy_free(&enc);
    npy_free(&lp_ref);
    npy_free(&ids_ref);
    npy_free(&tok_ref);

    /* streaming: chunk by chunk, with a caller scratch buffer and prev_id carried */
    if (load(c, p, "stream_encoded", NPY_F32, 2, &enc) == 0 && (int)enc.shape[0] == d &&
        load(c, p, "stream_encoded_offsets", NPY_I32, 1, &off) == 0 &&
        load(c, p, "stream_ctc_log_probs", NPY_F32, 2, &lp_ref) == 0 &&
        load(c, p, "stream_ctc_frame_ids", NPY_I32, 1, &ids_ref) == 0 &&
        load(c, p, "stream_ctc_tokens", NPY_I32, 1, &tok_ref) == 0) {
        int T = (int)enc.shape[1], n_chunks = (int)off.count - 1;
        const int32_t *o = npy_i32(&off);
        float *frames = frame_major(&enc);
        float *lp = malloc((size_t)(T ? T : 1) * V1 * sizeof(float));
        float *scratch = malloc((size_t)(T ? T : 1) * V1 * sizeof(float));
        int *ids = malloc((size_t)(T ? T : 1) * sizeof(int)), prev = -1, n = 0;
        es_token *tok = malloc((size_t)(T ? T : 1) * sizeof(es_token));
        for (int k = 0; k < n_chunks; k++) {
            int f0 = o[k], nf = o[k + 1] - o[k];
            int got = es_ctc_greedy(m, frames + (size_t)f0 * d, nf, f0, &prev, ids + f0, tok + n, T - n, scratch);
            if (got > 0)
                n += got;
            memcpy(lp + (size_t)f0 * V1, scratch, (size_t)nf * V1 * sizeof(float));
        }
        snprintf(what, sizeof what, "%sstream_ctc_log_probs (%d chunks)", p, n_chunks);
        check_log_probs(what, lp, &lp_ref, T, V1);
        snprintf(what, sizeof what, "%sstream_ctc_frame_ids", p);
        check_ints(what, ids, T, &ids_ref);
        snprintf(what, sizeof what, "%sstream_ctc_tokens", p);
        check_token_ids(what, tok, n, &tok_ref);
        check_ctc_frames(what, tok, n, ids, T, -1);
        snprintf(what, sizeof what, "%sstream_ctc_text", p);
        check_text(m, what, tok, n, la, "stream_ctc_text");
        free(ids);
        free(tok);
        free(lp);
        free(scratch);
        free(frames);
    }
    npy_free(&enc);
    npy_free(&off);
    npy_free(&lp_ref);
    npy_free(&ids_ref);
    npy_free(&tok_ref);
}

/* One RNNT decode of a look-ahead, kept for the batched comparison. */
typedef struct {
    float *frames;   /* [T][d] */
    int T;
    int *offsets;    /* chunk boundaries, n_chunks + 1 (offline: {0, T}) */
    int n_chunks;
    es_token *tok;   /* the one-stream result */
    int n_tok;
    int *counts;     /* token count after each chunk */
} rnnt_run;

static void rnnt_run_free(rnnt_run *r)
{
    free(r->frames);
    free(r->offsets);
    free(r->tok);
    free(r->counts);
    memset(r, 0, sizeof *r);
}

static int rnnt_capacity(const es_model *m, int T)
{
    return T * m->max_symbols + 1;
}

/* Decodes r chunk by chunk with es_rnnt_greedy and a fresh state. */
static int rnnt_decode(const es_model *m, rnnt_run *r)
{
    void *state = calloc(1, es_rnnt_state_bytes(m));
    int cap = rnnt_capacity(m, r->T);
    r->tok = malloc((size_t)cap * sizeof(es_token));
    r->counts = malloc((size_t)r->n_chunks * sizeof(int));
    r->n_tok = 0;
    int rc = 0;
    for (int k = 0; k < r->n_chunks; k++) {
        int f0 = r->offsets[k], nf = r->offsets[k + 1] - f0;
        int got = es_rnnt_greedy(m, state, r->frames + (size_t)f0 * m->d_model, nf, f0, r->tok + r->n_tok,
                                 cap - r->n_tok);
        if (got < 0)
            rc = -1;
        else
            r->n_tok += got;
        r->counts[k] = r->n_tok;
    }
    free(state);
    return rc;
}

static void check_rnnt_frames(const es_model *m, const char *what, const rnnt_run *r)
{
    int ok = 1, run = 0, most = 0;
    for (int i = 0; i < r->n_tok && ok; i++) {
        ok = r->tok[i].frame >= 0 && r->tok[i].frame < r->T && (i == 0 || r->tok[i].frame >= r->tok[i - 1].frame);
        run = i > 0 && r->tok[i].frame == r->tok[i - 1].frame ? run + 1 : 1;
        if (run > most)
            most = run;
    }
    /* max_symbols bounds the tokens of one frame; the golden cases reach it (la1, rnnt_regular) */
    ok = ok && most <= m->max_symbols;
    report(ok, "%s: token frames in range and non-decreasing, at most %d on a frame (max_symbols %d)", what, most,
           m->max_symbols);
}

static int load_rnnt_run(const es_model *m, const gcase *c, const char *p, int stream, rnnt_run *r)
{
    npy_array enc = {0}, off = {0};
    memset(r, 0, sizeof *r);
    if (load(c, p, stream ? "stream_encoded" : "offline_encoded", NPY_F32, 2, &enc) != 0)
        return -1;
    if ((int)enc.shape[0] != m->d_model) {
        report(0, "%s encoded: d_model %zu, model %d", p, enc.shape[0], m->d_model);
        npy_free(&enc);
        return -1;
    }
    r->T = (int)enc.shape[1];
    r->frames = frame_major(&enc);
    npy_free(&enc);
    if (stream) {
        if (load(c, p, "stream_encoded_offsets", NPY_I32, 1, &off) != 0) {
            rnnt_run_free(r);
            return -1;
        }
        r->n_chunks = (int)off.count - 1;
        r->offsets = malloc(off.count * sizeof(int));
        for (size_t i = 0; i < off.count; i++)
            r->offsets[i] = npy_i32(&off)[i];
        npy_free(&off);
    } else {
        r->n_chunks = 1;
        r->offsets = malloc(2 * sizeof(int));
        r->offsets[0] = 0;
        r->offsets[1] = r->T;
    }
    return 0;
}

static void test_rnnt(const es_model *m, const gcase *c, const char *p, const cJSON *la, rnnt_run *off_run,
                      rnnt_run *str_run)
{
    char what[256];
    npy_array ref = {0}, counts = {0};

    if (load_rnnt_run(m, c, p, 0, off_run) == 0 && load(c, p, "offline_rnnt_tokens", NPY_I32, 1, &ref) == 0) {
        int rc = rnnt_decode(m, off_run);
        snprintf(what, sizeof what, "%soffline_rnnt_tokens (%d frames)", p, off_run->T);
        report(rc == 0, "%s: decoder returned %d", what, rc);
        check_token_ids(what, off_run->tok, off_run->n_tok, &ref);
        check_rnnt_frames(m, what, off_run);
        snprintf(what, sizeof what, "%soffline_rnnt_text", p);
        check_text(m, what, off_run->tok, off_run->n_tok, la, "offline_rnnt_text");

        /* a full output buffer drops tokens but must not derail the decoder: decode the first
           half with max_out 1, the rest with room, and expect the same tail */
        if (off_run->T >= 2) {
            void *state = calloc(1, es_rnnt_state_bytes(m));
            int half = off_run->T / 2, cap = rnnt_capacity(m, off_run->T);
            es_token *t = malloc((size_t)cap * sizeof(es_token));
            int n1 = es_rnnt_greedy(m, state, off_run->frames, half, 0, t, 1);
            int n2 = es_rnnt_greedy(m, state, off_run->frames + (size_t)half * m->d_model, off_run->T - half, half,
                                    t, cap);
            int full_first = 0;
            while (full_first < off_run->n_tok && off_run->tok[full_first].frame < half)
                full_first++;
            int ok = n1 == (full_first > 0 ? 1 : 0) && n2 == off_run->n_tok - full_first;
            for (int i = 0; ok && i < n2; i++)
                ok = t[i].id == off_run->tok[full_first + i].id && t[i].frame == off_run->tok[full_first + i].frame;
            report(ok, "%soffline_rnnt: max_out 1 on the first half keeps the state (%d + %d tokens)", p, n1, n2);
            free(t);
            free(state);
        }
    }
    npy_free(&ref);

    if (load_rnnt_run(m, c, p, 1, str_run) == 0 && load(c, p, "stream_rnnt_tokens", NPY_I32, 1, &ref) == 0 &&
        load(c, p, "stream_rnnt_token_counts", NPY_I32, 1, &counts) == 0) {
        int rc = rnnt_decode(m, str_run);
        snprintf(what, sizeof what, "%sstream_rnnt_tokens (%d chunks)", p, str_run->n_chunks);
        report(rc == 0, "%s: decoder returned %d", what, rc);
        check_token_ids(what, str_run->tok, str_run->n_tok, &ref);
        check_rnnt_frames(m, what, str_run);
        snprintf(what, sizeof what, "%sstream_rnnt_token_counts", p);
        check_ints(what, str_run->counts, str_run->n_chunks, &counts);
        snprintf(what, sizeof what, "%sstream_rnnt_text", p);
        check_text(m, what, str_run->tok, str_run->n_tok, la, "stream_rnnt_text");
    }
    npy_free(&ref);
    npy_free(&counts);
}

/* All runs of a case (offline and streaming of every look-ahead) as one batch: step s feeds
   chunk s of every run that has one, so lengths differ within a step and runs drop out. */
static void test_rnnt_batch(const es_model *m, const char *name, rnnt_run *runs, int R)
{
    int B = 0, steps = 0;
    for (int r = 0; r < R; r++)
        if (runs[r].tok) {
            B++;
            if (runs[r].n_chunks > steps)
                steps = runs[r].n_chunks;
        }
    if (B == 0)
        return;
    void **states = calloc((size_t)R, sizeof(void *));
    es_token **tok = calloc((size_t)R, sizeof(es_token *));
    int *n_tok = calloc((size_t)R, sizeof(int)), *counts_ok = calloc((size_t)R, sizeof(int));
    void **bst = malloc((size_t)R * sizeof(void *));
    const float **bfr = malloc((size_t)R * sizeof(float *));
    int *bnf = malloc((size_t)R * sizeof(int)), *bf0 = malloc((size_t)R * sizeof(int));
    es_token **bout = malloc((size_t)R * sizeof(es_token *));
    int *bmax = malloc((size_t)R * sizeof(int)), *bn = malloc((size_t)R * sizeof(int)), *who = malloc((size_t)R * sizeof(int));
    for (int r = 0; r < R; r++) {
        if (!runs[r].tok)
            continue;
        states[r] = calloc(1, es_rnnt_state_bytes(m));
        tok[r] = malloc((size_t)rnnt_capacity(m, runs[r].T) * sizeof(es_token));
        counts_ok[r] = 1;
    }
    int rc_all = 0, max_B = 0;
    for (int s = 0; s < steps; s++) {
        int b = 0;
        for (int r = 0; r < R; r++) {
            if (!runs[r].tok || s >= runs[r].n_chunks)
                continue;
            int f0 = runs[r].offsets[s];
            who[b] = r;
            bst[b] = states[r];
            bfr[b] = runs[r].frames + (size_t)f0 * m->d_model;
            bnf[b] = runs[r].offsets[s + 1] - f0;
            bf0[b] = f0;
            bout[b] = tok[r] + n_tok[r];
            bmax[b] = rnnt_capacity(m, runs[r].T) - n_tok[r];
            b++;
        }
        if (b > max_B)
            max_B = b;
        if (es_rnnt_greedy_batch(m, bst, bfr, bnf, bf0, b, bout, bmax, bn) != 0)
            rc_all = -1;
        for (int i = 0; i < b; i++) {
            int r = who[i];
            n_tok[r] += bn[i];
            if (n_tok[r] != runs[r].counts[s])
                counts_ok[r] = 0;
        }
    }
    report(rc_all == 0, "%s: batched RNNT over %d runs, %d steps, up to %d streams a step", name, B, steps, max_B);
    for (int r = 0; r < R; r++) {
        if (!runs[r].tok)
            continue;
        int ok = n_tok[r] == runs[r].n_tok && counts_ok[r];
        for (int i = 0; ok && i < n_tok[r]; i++)
            ok = tok[r][i].id == runs[r].tok[i].id && tok[r][i].frame == runs[r].tok[i].frame;
        report(ok, "%s: batched run %d (%s la%d): %d tokens, counts per chunk %s, same ids and frames as alone", name,
               r, r % 2 ? "stream" : "offline", r / 2, n_tok[r], counts_ok[r] ? "equal" : "DIFFER");
        free(states[r]);
        free(tok[r]);
    }
    free(states);
    free(tok);
    free(n_tok);
    free(counts_ok);
    free(bst);
    free(bfr);
    free(bnf);
    free(bf0);
    free(bout);
    free(bmax);
    free(bn);
    free(who);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *s = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 65536;
            char *ns = realloc(s, cap);
            if (!ns) {
                free(s);
                fclose(f);
                return NULL;
            }
            s = ns;
        }
        size_t got = fread(s + len, 1, 4096, f);
        len += got;
        if (got < 4096)
            break;
    }
    fclose(f);
    s[len] = '\0';
    return s;
}

static void test_case(const char *golden_dir, const char *models_dir, const char *name)
{
    char path[4096], err[512];
    printf("%s\n", name);
    snprintf(path, sizeof path, "%s/%s/manifest.json", golden_dir, name);
    char *text = read_text(path);
    cJSON *man = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!man) {
        report(0, "%s: cannot read or parse", path);
        return;
    }
    snprintf(path, sizeof path, "%s/%s.safetensors", models_dir, name);
    es_model *m = es_model_load(path, err, sizeof err);
    if (!m) {
        report(0, "%s: %s", path, err);
        cJSON_Delete(man);
        return;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", golden_dir, name);
    gcase c = {.dir = dir, .arrays = cJSON_GetObjectItemCaseSensitive(man, "arrays")};
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(man, "vocab_size");
    report(cJSON_IsNumber(vs) && vs->valueint == m->n_vocab, "vocabulary %d pieces (manifest %d)", m->n_vocab,
           cJSON_IsNumber(vs) ? vs->valueint : -1);

    const cJSON *las = cJSON_GetObjectItemCaseSensitive(man, "lookaheads");
    int n_la = cJSON_GetArraySize(las);
    rnnt_run *runs = calloc((size_t)(2 * (n_la ? n_la : 1)), sizeof(rnnt_run));
    int any_rnnt = 0;
    for (int i = 0; i < n_la; i++) {
        const cJSON *la = cJSON_GetArrayItem(las, i);
        const cJSON *pj = cJSON_GetObjectItemCaseSensitive(la, "prefix");
        char p[64];
        if (cJSON_IsString(pj))
            snprintf(p, sizeof p, "%s", pj->valuestring);
        else
            snprintf(p, sizeof p, "la%d_", i);
        char key[128];
        snprintf(key, sizeof key, "%soffline_ctc_log_probs", p);
        if (has_array(&c, key)) {
            if (m->has_ctc)
                test_ctc(m, &c, p, la);
            else
                report(0, "%s: golden has CTC arrays, model has no CTC head", p);
        }
        snprintf(key, sizeof key, "%soffline_rnnt_tokens", p);
        if (has_array(&c, key)) {
            if (m->has_rnnt) {
                test_rnnt(m, &c, p, la, &runs[2 * i], &runs[2 * i + 1]);
                any_rnnt = 1;
            } else {
                report(0, "%s: golden has RNNT arrays, model has no RNNT decoder", p);
            }
        }
    }
    if (any_rnnt)
        test_rnnt_batch(m, name, runs, 2 * n_la);
    for (int i = 0; i < 2 * n_la; i++)
        rnnt_run_free(&runs[i]);
    free(runs);
    es_model_free(m);
    cJSON_Delete(man);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s GOLDEN_DIR MODELS_DIR\n", argv[0]);
        return 2;
    }
    test_tokens_unit();

    DIR *d = opendir(argv[1]);
    if (!d) {
        report(0, "cannot open %s", argv[1]);
    } else {
        char **names = NULL;
        int n = 0;
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s/manifest.json", argv[1], e->d_name);
            FILE *f = fopen(path, "rb");
            if (!f)
                continue;
            fclose(f);
            names = realloc(names, (size_t)(n + 1) * sizeof *names);
            names[n++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        report(n > 0, "%d golden cases in %s", n, argv[1]);
        for (int i = 0; i < n; i++) {
            test_case(argv[1], argv[2], names[i]);
            free(names[i]);
        }
        free(names);
    }
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
