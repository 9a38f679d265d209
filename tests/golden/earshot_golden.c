/*
 * earshot-golden - checks Earshot against one golden case computed by NeMo's own code.
 *
 *   earshot-golden CASE_DIR [--backend cpu|cuda] [--converter PATH] [--keep-model PATH]
 *
 * It converts CASE_DIR/model.nemo with the project's own converter, then follows
 * CASE_DIR/manifest.json (never the folder's name) and compares, for every look-ahead the
 * manifest lists: the mel features (one shot and incremental), the offline encoder outputs,
 * the streaming chunks the chunker cuts, the streaming encoder output chunk by chunk, the caches
 * after the steps the manifest saved, the CTC log-probs, frame ids and tokens, the RNNT tokens
 * per chunk, and the texts. Finally it runs the public API end to end: every look-ahead's stream
 * in one batched step per round, fed with the audio in uneven pieces, and expects the golden
 * streaming tokens. It prints the worst error of every array and exits 0 only if all pass.
 *
 * Tolerances are DESIGN.md section 4: max|err| <= 1e-4 x max|reference| for real arrays on the
 * CPU (relative L2 <= 1e-2 on a GPU), and identical integers.
 *
 * --backend cuda runs the encoder checks and the public API on the CUDA backend (the mel
 * features and the decoders on the encoder's frames stay on the CPU, as the engine runs them).
 * The GPU keeps only the keys and values of the attention cache, so NeMo's channel cache is not
 * compared there; the conv cache and the cache length are. Without a usable GPU it prints one
 * line, "skipped: no GPU (<reason>)", and exits 77 (ctest's SKIP_RETURN_CODE).
 */
#include "chunker.h"
#include "decoder.h"
#include "earshot.h"
#include "encoder.h"
#include "mel.h"
#include "model.h"
#include "npy.h"
#include "slurp.h"
#ifdef EARSHOT_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#include <cJSON.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <sndfile.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- bookkeeping of checks ---- */

static const float *F(const npy_array *a)
{
    return npy_f32(a);
}

static const int32_t *I(const npy_array *a)
{
    return npy_i32(a);
}

typedef struct {
    const char *case_dir;
    int gpu;
    int passed, failed, skipped;
    cJSON *manifest;
#ifdef EARSHOT_HAVE_CUDA
    es_cuda *cuda; /* the encoder under test when gpu, one slot (0) */
#endif
} golden;

static void report(golden *g, int ok, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    printf("  %-4s %s\n", ok ? "ok" : "FAIL", line);
    if (ok)
        g->passed++;
    else
        g->failed++;
}

static int has_array(golden *g, const char *name);

/* Loads CASE_DIR/<name>.npy. NULL when the manifest does not list the array (a case may leave
   some out: nothing to compare, noted, not failed) or when a listed one cannot be read (failed). */
static npy_array *load(golden *g, const char *name)
{
    if (!has_array(g, name)) {
        printf("  skip %s (not in this case's manifest)\n", name);
        g->skipped++;
        return NULL;
    }
    char path[PATH_MAX], err[256];
    snprintf(path, sizeof path, "%s/%s.npy", g->case_dir, name);
    npy_array *a = calloc(1, sizeof *a);
    if (!a || npy_load(path, a, err, sizeof err) != 0) {
        report(g, 0, "%s: cannot read: %s", name, a ? err : "out of memory");
        free(a);
        return NULL;
    }
    return a;
}

static void unload(npy_array *a)
{
    if (a) {
        npy_free(a);
        free(a);
    }
}

static int has_array(golden *g, const char *name)
{
    const cJSON *arrays = cJSON_GetObjectItemCaseSensitive(g->manifest, "arrays");
    return cJSON_GetObjectItemCaseSensitive(arrays, name) != NULL;
}

/* Compares n reals; ref element i is ref[i * ref_stride_fn]: callers pass already-aligned data. */
static int compare_real(golden *g, const char *name, const float *got, const float *ref, size_t n)
{
    double max_err = 0, max_ref = 0, err2 = 0, ref2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= max_err)) /* also catches NaN */
            max_err = isnan(d) ? INFINITY : d;
        if (fabs(ref[i]) > max_ref)
            max_ref = fabs(ref[i]);
        err2 += d * d;
        ref2 += (double)ref[i] * ref[i];
    }
    double rel_l2 = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
    int ok = g->gpu ? rel_l2 <= 1e-2 : max_err <= 1e-4 * max_ref;
    report(g, ok, "%-44s max|err| %.3g  (max|ref| %.3g, ratio %.2g)  rel L2 %.3g", name, max_err, max_ref,
           max_ref > 0 ? max_err / max_ref : max_err, rel_l2);
    return ok;
}

static int compare_ints(golden *g, const char *name, const int *got, int n_got, const int32_t *ref, int n_ref)
{
    int first_diff = -1;
    for (int i = 0; i < n_got && i < n_ref; i++)
        if (got[i] != ref[i]) {
            first_diff = i;
            break;
        }
    int ok = n_got == n_ref && first_diff < 0;
    if (ok)
        report(g, 1, "%-44s %d values identical", name, n_ref);
    else
        report(g, 0, "%-44s got %d values, expected %d; first difference at %d", name, n_got, n_ref,
               first_diff < 0 ? (n_got < n_ref ? n_got : n_ref) : first_diff);
    return ok;
}

/* [rows][cols] -> [cols][rows] */
static float *transpose(const float *a, int rows, int cols)
{
    float *t = malloc(sizeof(float) * (size_t)rows * cols + 1);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            t[(size_t)c * rows + r] = a[(size_t)r * cols + c];
    return t;
}

/* ---- manifest helpers ---- */

static const cJSON *jget(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static int jint(const cJSON *o, const char *key, int fallback)
{
    const cJSON *v = jget(o, key);
    return cJSON_IsNumber(v) ? v->valueint : fallback;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = jget(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- conversion with the project's converter ---- */

static int convert(const char *converter, const char *nemo, const char *out)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execlp(converter, converter, nemo, out, (char *)NULL);
        fprintf(stderr, "earshot-golden: cannot run %s\n", converter);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static float *read_audio(const char *path, size_t *n)
{
    SF_INFO info = {0};
    SNDFILE *f = sf_open(path, SFM_READ, &info);
    if (!f)
        return NULL;
    float *x = malloc(sizeof(float) * (size_t)(info.frames + 1) * (size_t)info.channels);
    sf_count_t got = x ? sf_readf_float(f, x, info.frames) : 0;
    sf_close(f);
    if (info.channels != 1) {
        free(x);
        return NULL;
    }
    *n = (size_t)got;
    return x;
}

/* ---- the encoder under test ---- */

/* One encoder step of one stream on the backend under test: the CPU's es_encoder, or the CUDA
   backend (frames copied back). */
static int encode(golden *g, es_encoder *cpu, const es_encoder_input *in, es_encoder_output *out, char *err,
                  size_t errlen)
{
#ifdef EARSHOT_HAVE_CUDA
    if (g->cuda)
        return es_cuda_step(g->cuda, in, 1, ES_CUDA_FRAMES, out, err, errlen);
#endif
    (void)g;
    return es_encoder_step(cpu, in, 1, out, err, errlen);
}

/* ---- the checks ---- */

static float *check_mel(golden *g, const es_model *m, const float *audio, size_t n, int *T_mel)
{
    es_mel_config cfg = {.sample_rate = m->sample_rate, .n_fft = m->n_fft, .hop_length = m->hop_length,
                         .win_length = m->win_length, .n_mels = m->n_mels, .preemph = 0.97f,
                         .window = m->window, .filterbank = m->filterbank,
                         .norm_mean = m->feat_mean, .norm_std = m->feat_std};
    float *mel = NULL;
    int T = es_mel_compute(&cfg, audio, n, &mel);
    *T_mel = T;
    npy_array *ref = load(g, "mel");
    if (!ref || T < 0)
        return mel;
    if ((int)ref->shape[0] != m->n_mels || (int)ref->shape[1] != T) {
        report(g, 0, "mel: shape [%d, %d], expected [%d, %d]", m->n_mels, T, (int)ref->shape[0], (int)ref->shape[1]);
    } else {
        float *t = transpose(mel, T, m->n_mels);
        compare_real(g, "mel", t, F(ref), (size_t)T * m->n_mels);
        free(t);
    }
    unload(ref);
    return mel;
}

/* Offline pass (no caches) of the whole mel with `length` valid columns. */
static void check_offline(golden *g, const es_model *m, int la, const char *prefix, const float *mel, int T_mel,
                          int length, const char *array, float **frames_out, int *n_out)
{
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, array);
    es_encoder *enc = g->gpu ? NULL : es_encoder_create(m, NULL, 0);
    es_encoder_input in = {.features = mel, .width = T_mel, .length = length, .lookahead = la, .slot = -1};
    es_encoder_output out;
    char err[256];
    if (encode(g, enc, &in, &out, err, sizeof err) != 0) {
        report(g, 0, "%s: encoder failed: %s", name, err);
        es_encoder_free(enc);
        return;
    }
    npy_array *ref = load(g, name);
    if (ref) {
        if ((int)ref->shape[0] != m->d_model || (int)ref->shape[1] != out.n_frames) {
            report(g, 0, "%s: %d frames, expected %d", name, out.n_frames, (int)ref->shape[1]);
        } else {
            float *t = transpose(out.frames, out.n_frames, m->d_model);
            compare_real(g, name, t, F(ref), (size_t)out.n_frames * m->d_model);
            free(t);
        }
    }
    unload(ref);
    if (frames_out) {
        *n_out = out.n_frames;
        *frames_out = malloc(sizeof(float) * (size_t)out.n_frames * m->d_model + 1);
        memcpy(*frames_out, out.frames, sizeof(float) * (size_t)out.n_frames * m->d_model);
    }
    es_encoder_free(enc);
}

static void check_ctc(golden *g, const es_model *m, const char *prefix, const char *kind, const float *frames,
                      int n_frames, const char *want_text)
{
    char name[128];
    int V1 = m->n_vocab + 1;
    float *lp = malloc(sizeof(float) * (size_t)n_frames * V1 + 1);
    es_ctc_log_probs(m, frames, n_frames, lp);
    snprintf(name, sizeof name, "%s%s_ctc_log_probs", prefix, kind);
    npy_array *ref = load(g, name);
    if (ref) {
        if ((int)ref->shape[0] != n_frames)
            report(g, 0, "%s: %d frames, expected %d", name, n_frames, (int)ref->shape[0]);
        else
            compare_real(g, name, lp, F(ref), (size_t)n_frames * V1);
    }
    unload(ref);
    int prev = -1, *ids = malloc(sizeof(int) * (size_t)n_frames + 1);
    es_token *tok = malloc(sizeof(es_token) * (size_t)n_frames + 1);
    int n_tok = es_ctc_greedy(m, frames, n_frames, 0, &prev, ids, tok, n_frames, lp);
    snprintf(name, sizeof name, "%s%s_ctc_frame_ids", prefix, kind);
    ref = load(g, name);
    if (ref)
        compare_ints(g, name, ids, n_frames, I(ref), (int)ref->count);
    unload(ref);
    int *tid = malloc(sizeof(int) * (size_t)n_tok + 1);
    for (int i = 0; i < n_tok; i++)
        tid[i] = tok[i].id;
    snprintf(name, sizeof name, "%s%s_ctc_tokens", prefix, kind);
    ref = load(g, name);
    if (ref)
        compare_ints(g, name, tid, n_tok, I(ref), (int)ref->count);
    unload(ref);
    if (want_text) {
        char *text = es_tokens_to_text(m, tok, n_tok);
        report(g, text && strcmp(text, want_text) == 0, "%s%s_ctc_text \"%s\"", prefix, kind, text ? text : "");
        free(text);
    }
    free(tid);
    free(tok);
    free(ids);
    free(lp);
}

static void check_rnnt_offline(golden *g, const es_model *m, const char *prefix, const float *frames, int n_frames,
                               const char *want_text)
{
    char name[128];
    void *state = calloc(1, es_rnnt_state_bytes(m));
    int cap = n_frames * m->max_symbols + 1;
    es_token *tok = malloc(sizeof(es_token) * (size_t)cap);
    int n_tok = es_rnnt_greedy(m, state, frames, n_frames, 0, tok, cap);
    int *tid = malloc(sizeof(int) * (size_t)cap);
    for (int i = 0; i < n_tok; i++)
        tid[i] = tok[i].id;
    snprintf(name, sizeof name, "%soffline_rnnt_tokens", prefix);
    npy_array *ref = load(g, name);
    if (ref)
        compare_ints(g, name, tid, n_tok, I(ref), (int)ref->count);
    unload(ref);
    if (want_text) {
        char *text = es_tokens_to_text(m, tok, n_tok);
        report(g, text && strcmp(text, want_text) == 0, "%soffline_rnnt_text \"%s\"", prefix, text ? text : "");
        free(text);
    }
    free(tid);
    free(tok);
    free(state);
}

/* Compares a slot's caches with the golden ones saved after chunk `step`. */
static void check_caches(golden *g, const es_model *m, es_encoder *enc, int slot, int la, const char *prefix,
                         const char *when)
{
    char name[160];
    int C = m->streaming[la].last_channel_cache_size, d = m->d_model, k1 = m->conv_kernel - 1;
    snprintf(name, sizeof name, "%sstream_cache_after_%s_last_channel", prefix, when);
    if (g->gpu) {
        /* the GPU keeps linear_k / linear_v of these rows, not the rows themselves */
        printf("  skip %s (the GPU keeps no channel cache)\n", name);
        g->skipped++;
    }
    npy_array *ref = g->gpu ? NULL : load(g, name);
    if (ref) {
        float *got = malloc(sizeof(float) * (size_t)m->n_layers * C * d);
        for (int l = 0; l < m->n_layers; l++)
            memcpy(got + (size_t)l * C * d, es_encoder_channel_cache(enc, slot, l), sizeof(float) * (size_t)C * d);
        if (ref->count != (size_t)m->n_layers * C * d)
            report(g, 0, "%s: size %zu, expected %zu", name, (size_t)m->n_layers * C * d, ref->count);
        else
            compare_real(g, name, got, F(ref), ref->count);
        free(got);
    }
    unload(ref);
    snprintf(name, sizeof name, "%sstream_cache_after_%s_last_time", prefix, when);
    ref = load(g, name);
    if (ref) {
        /* golden: [layers][d][k-1]; ours: [layers][k-1][d] */
        float *got = malloc(sizeof(float) * (size_t)m->n_layers * d * k1 + 1);
        for (int l = 0; l < m->n_layers; l++) {
            float *t = NULL;
#ifdef EARSHOT_HAVE_CUDA
            if (g->cuda) {
                float *dev = malloc(sizeof(float) * (size_t)k1 * d + 1);
                if (es_cuda_read_time_cache(g->cuda, slot, l, dev) != 0)
                    memset(dev, 0, sizeof(float) * (size_t)k1 * d);
                t = transpose(dev, k1, d);
                free(dev);
            }
#endif
            if (!t)
                t = transpose(es_encoder_time_cache(enc, slot, l), k1, d);
            memcpy(got + (size_t)l * d * k1, t, sizeof(float) * (size_t)d * k1);
            free(t);
        }
        if (ref->count != (size_t)m->n_layers * d * k1)
            report(g, 0, "%s: size mismatch", name);
        else
            compare_real(g, name, got, F(ref), ref->count);
        free(got);
    }
    unload(ref);
    snprintf(name, sizeof name, "%sstream_cache_after_%s_last_channel_len", prefix, when);
    ref = load(g, name);
    if (ref) {
        int len = -1;
#ifdef EARSHOT_HAVE_CUDA
        if (g->cuda)
            es_cuda_read_channel_len(g->cuda, slot, &len);
        else
#endif
            len = *es_encoder_channel_len(enc, slot);
        compare_ints(g, name, &len, 1, I(ref), (int)ref->count);
    }
    unload(ref);
}

/* Streams the mel through the chunker and the encoder with caches, as NeMo's buffer does. */
static void check_streaming(golden *g, const es_model *m, int la, const cJSON *lam, const char *prefix,
                            const float *mel, int T_mel)
{
    char name[160];
    int d = m->d_model, nm = m->n_mels;
    const cJSON *stream = jget(lam, "stream");
    const cJSON *saved = jget(stream, "cache_steps_saved");
    int want_chunks = jint(stream, "n_chunks", -1);

    size_t regions[ES_ENCODER_REGIONS];
    es_encoder_cache_regions(m, regions);
    es_slot_pool *pool = es_slot_pool_create(1, regions, ES_ENCODER_REGIONS);
    es_encoder *enc = es_encoder_create(m, pool, 0);
    int slot = es_slot_acquire(pool);
#ifdef EARSHOT_HAVE_CUDA
    if (g->cuda)
        es_cuda_clear_slot(g->cuda, slot); /* the same slot number on the device */
#endif
    es_chunker *ch = es_chunker_create(m, la);
    /* the columns arrive in uneven pieces, as from a live stream */
    for (int c = 0, piece = 1; c < T_mel; c += piece, piece = piece % 7 + 3)
        es_chunker_push(ch, mel + (size_t)c * nm, c + piece <= T_mel ? piece : T_mel - c);
    es_chunker_end(ch);

    npy_array *feat = load(g, (snprintf(name, sizeof name, "%sstream_chunk_features", prefix), name));
    npy_array *foff = load(g, (snprintf(name, sizeof name, "%sstream_chunk_feature_offsets", prefix), name));
    npy_array *drop = load(g, (snprintf(name, sizeof name, "%sstream_drop_extra_pre_encoded", prefix), name));
    npy_array *keep = load(g, (snprintf(name, sizeof name, "%sstream_keep_all_outputs", prefix), name));
    npy_array *enc_ref = load(g, (snprintf(name, sizeof name, "%sstream_encoded", prefix), name));
    npy_array *eoff = load(g, (snprintf(name, sizeof name, "%sstream_encoded_offsets", prefix), name));
    if (!feat || !foff || !drop || !keep || !enc_ref || !eoff)
        goto done;

    int n_chunks = 0, total_frames = 0, bad_meta = 0;
    double feat_err = 0, feat_max = 0;
    float *streamed = malloc(sizeof(float) * (size_t)(int)enc_ref->shape[1] * d + 1);
    while (es_chunker_ready(ch)) {
        es_chunk c;
        es_chunker_peek(ch, &c);
        int k = n_chunks;
        if (k + 1 < (int)foff->count) {
            int w = I(foff)[k + 1] - I(foff)[k];
            if (w != c.width || I(drop)[k] != c.drop_extra || I(keep)[k] != c.keep_all) {
                if (!bad_meta)
                    report(g, 0, "%sstream chunk %d: width %d drop %d keep %d, expected %d %d %d", prefix, k, c.width,
                           c.drop_extra, c.keep_all, w, I(drop)[k], I(keep)[k]);
                bad_meta = 1;
            } else {
                /* golden features are [n_mels][sum widths] */
                for (int t = 0; t < w; t++)
                    for (int f = 0; f < nm; f++) {
                        double r = F(feat)[(size_t)f * (int)feat->shape[1] + I(foff)[k] + t];
                        double e = fabs(r - c.features[(size_t)t * nm + f]);
                        if (!(e <= feat_err))
                            feat_err = isnan(e) ? INFINITY : e;
                        if (fabs(r) > feat_max)
                            feat_max = fabs(r);
                    }
            }
        }
        es_encoder_input in = {.features = c.features, .width = c.width, .length = c.width, .lookahead = la,
                               .drop_extra = c.drop_extra, .keep_all = c.keep_all, .slot = slot};
        es_encoder_output out;
        char err[256];
        if (encode(g, enc, &in, &out, err, sizeof err) != 0) {
            report(g, 0, "%sstream chunk %d: encoder failed: %s", prefix, k, err);
            break;
        }
        if (k + 1 < (int)eoff->count && out.n_frames != I(eoff)[k + 1] - I(eoff)[k] && !bad_meta) {
            report(g, 0, "%sstream chunk %d: %d frames, expected %d", prefix, k, out.n_frames,
                   I(eoff)[k + 1] - I(eoff)[k]);
            bad_meta = 1;
        }
        if (total_frames + out.n_frames <= (int)enc_ref->shape[1])
            memcpy(streamed + (size_t)total_frames * d, out.frames, sizeof(float) * (size_t)out.n_frames * d);
        total_frames += out.n_frames;
        es_chunker_consume(ch);
        n_chunks++;
        const char *whens[] = {"step1", "step2", "last"};
        for (int w = 0; w < 3; w++) {
            int at = jint(saved, whens[w], -1);
            if (at == k && (w < 2 || n_chunks == want_chunks))
                check_caches(g, m, enc, slot, la, prefix, whens[w]);
        }
    }
    report(g, n_chunks == want_chunks && !bad_meta, "%sstream chunking: %d chunks (expected %d), widths/drops/keeps %s",
           prefix, n_chunks, want_chunks, bad_meta ? "differ" : "identical");
    int fok = g->gpu || feat_err <= 1e-4 * feat_max;
    report(g, fok, "%-44s max|err| %.3g  (max|ref| %.3g)", (snprintf(name, sizeof name, "%sstream_chunk_features", prefix), name),
           feat_err, feat_max);
    if (total_frames != (int)enc_ref->shape[1]) {
        report(g, 0, "%sstream_encoded: %d frames, expected %d", prefix, total_frames, (int)enc_ref->shape[1]);
    } else {
        float *t = transpose(streamed, total_frames, d);
        compare_real(g, (snprintf(name, sizeof name, "%sstream_encoded", prefix), name), t, F(enc_ref),
                     (size_t)total_frames * d);
        free(t);
        /* decoders on the streamed frames, chunk by chunk as they arrived */
        if (m->has_ctc && has_array(g, (snprintf(name, sizeof name, "%sstream_ctc_tokens", prefix), name)))
            check_ctc(g, m, prefix, "stream", streamed, total_frames, jstr(lam, "stream_ctc_text"));
        if (m->has_rnnt && has_array(g, (snprintf(name, sizeof name, "%sstream_rnnt_tokens", prefix), name))) {
            void *state = calloc(1, es_rnnt_state_bytes(m));
            int cap = total_frames * m->max_symbols + 1, n_tok = 0, counts_ok = 1;
            es_token *tok = malloc(sizeof(es_token) * (size_t)cap);
            npy_array *counts = load(g, (snprintf(name, sizeof name, "%sstream_rnnt_token_counts", prefix), name));
            for (int k = 0; k + 1 < (int)eoff->count; k++) {
                int f0 = I(eoff)[k], nf = I(eoff)[k + 1] - f0;
                n_tok += es_rnnt_greedy(m, state, streamed + (size_t)f0 * d, nf, f0, tok + n_tok, cap - n_tok);
                if (counts && k < (int)counts->count && I(counts)[k] != n_tok)
                    counts_ok = 0;
            }
            report(g, counts && counts_ok, "%sstream_rnnt_token_counts per chunk %s", prefix,
                   counts_ok ? "identical" : "differ");
            unload(counts);
            int *tid = malloc(sizeof(int) * (size_t)cap);
            for (int i = 0; i < n_tok; i++)
                tid[i] = tok[i].id;
            npy_array *ref = load(g, (snprintf(name, sizeof name, "%sstream_rnnt_tokens", prefix), name));
            if (ref)
                compare_ints(g, name, tid, n_tok, I(ref), (int)ref->count);
            unload(ref);
            const char *want = jstr(lam, "stream_rnnt_text");
            if (want) {
                char *text = es_tokens_to_text(m, tok, n_tok);
                report(g, text && strcmp(text, want) == 0, "%sstream_rnnt_text \"%s\"", prefix, text ? text : "");
                free(text);
            }
            free(tid);
            free(tok);
            free(state);
        }
    }
    free(streamed);
done:
    unload(feat);
    unload(foff);
    unload(drop);
    unload(keep);
    unload(enc_ref);
    unload(eoff);
    es_chunker_free(ch);
    es_encoder_free(enc);
    es_slot_pool_free(pool);
}

/* The public API end to end: one stream per (look-ahead, decoder), all stepped together. */
static void check_public_api(golden *g, const char *model_path, const float *audio, size_t n)
{
    const cJSON *las = jget(g->manifest, "lookaheads");
    int n_la = cJSON_GetArraySize(las);
    es_engine_params ep = es_engine_default_params();
    ep.max_streams = 2 * n_la;
    ep.backend = g->gpu ? ES_BACKEND_CUDA : ES_BACKEND_CPU;
    char err[256];
    es_engine *e = es_engine_create(model_path, &ep, err, sizeof err);
    if (!e) {
        report(g, 0, "engine: %s", err);
        return;
    }
    es_stream *streams[2 * ES_MAX_LOOKAHEADS];
    const char *want[2 * ES_MAX_LOOKAHEADS];
    char wname[2 * ES_MAX_LOOKAHEADS][96];
    int ns = 0;
    for (int i = 0; i < n_la && i < ES_MAX_LOOKAHEADS; i++) {
        const cJSON *lam = cJSON_GetArrayItem(las, i);
        const char *prefix = jstr(lam, "prefix");
        for (int dec = ES_DECODER_CTC; dec <= ES_DECODER_RNNT; dec++) {
            const char *kind = dec == ES_DECODER_CTC ? "ctc" : "rnnt";
            snprintf(wname[ns], sizeof wname[ns], "%sstream_%s_tokens", prefix ? prefix : "", kind);
            if (!es_engine_has_decoder(e, (es_decoder_kind)dec) || !has_array(g, wname[ns]))
                continue;
            es_stream_params sp = {.lookahead = jint(lam, "index", i), .decoder = (es_decoder_kind)dec};
            streams[ns] = es_stream_create(e, &sp, err, sizeof err);
            if (!streams[ns]) {
                report(g, 0, "stream: %s", err);
                continue;
            }
            want[ns] = wname[ns];
            ns++;
        }
    }
    /* feed uneven pieces; after each, step every ready stream together */
    size_t pos = 0, piece = 17;
    int ended = 0, steps = 0, max_batch = 0;
    es_stream *ready[2 * ES_MAX_LOOKAHEADS];
    for (;;) {
        if (pos < n) {
            size_t take = pos + piece <= n ? piece : n - pos;
            for (int s = 0; s < ns; s++)
                es_stream_accept_audio(streams[s], audio + pos, take);
            pos += take;
            piece = piece * 3 % 1999 + 1;
        } else if (!ended) {
            for (int s = 0; s < ns; s++)
                es_stream_end_audio(streams[s]);
            ended = 1;
        }
        int nr;
        do {
            nr = 0;
            for (int s = 0; s < ns; s++)
                if (es_stream_ready(streams[s]))
                    ready[nr++] = streams[s];
            if (nr > 0) {
                if (es_engine_step(e, ready, nr, err, sizeof err) != 0) {
                    report(g, 0, "step: %s", err);
                    goto out;
                }
                steps++;
                if (nr > max_batch)
                    max_batch = nr;
            }
        } while (nr > 0);
        if (ended)
            break;
    }
    for (int s = 0; s < ns; s++) {
        int nt;
        const es_token *tok = es_stream_tokens(streams[s], &nt);
        int *ids = malloc(sizeof(int) * (size_t)nt + 1);
        for (int i = 0; i < nt; i++)
            ids[i] = tok[i].id;
        npy_array *ref = load(g, want[s]);
        char label[160];
        snprintf(label, sizeof label, "api %s (batched, %d steps, batch<=%d)", want[s], steps, max_batch);
        if (ref)
            compare_ints(g, label, ids, nt, I(ref), (int)ref->count);
        report(g, es_stream_done(streams[s]), "api %s: stream done after end of audio", want[s]);
        unload(ref);
        free(ids);
    }
out:
    for (int s = 0; s < ns; s++)
        es_stream_free(streams[s]);
    es_engine_free(e);
}

/* Every check of the case, on the backend under test. */
static void check_case(golden *g, const es_model *m, const char *case_dir, const char *model_path)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/audio.wav", case_dir);
    size_t n = 0;
    float *audio = read_audio(path, &n);
    if (!audio) {
        report(g, 0, "cannot read %s as mono audio", path);
    } else {
        int T_mel = 0;
        float *mel = check_mel(g, m, audio, n, &T_mel);
        int mel_length = jint(g->manifest, "mel_length", T_mel - 1);
        const cJSON *las = jget(g->manifest, "lookaheads");
        int la_count = cJSON_GetArraySize(las);
        report(g, la_count == m->n_lookaheads, "look-aheads: model has %d, manifest %d", m->n_lookaheads, la_count);
        for (int i = 0; mel && i < la_count; i++) {
            const cJSON *lam = cJSON_GetArrayItem(las, i);
            const char *prefix = jstr(lam, "prefix");
            int la = jint(lam, "index", i);
            const cJSON *ctx = jget(lam, "att_context_size");
            if (!prefix || la < 0 || la >= m->n_lookaheads)
                continue;
            printf(" look-ahead %d [%d, %d]\n", la, cJSON_GetArrayItem(ctx, 0)->valueint,
                   cJSON_GetArrayItem(ctx, 1)->valueint);
            float *offline = NULL;
            int n_off = 0;
            check_offline(g, m, la, prefix, mel, T_mel, mel_length, "offline_encoded", &offline, &n_off);
            check_offline(g, m, la, prefix, mel, T_mel, T_mel, "offline_full_encoded", NULL, NULL);
            char name[128];
            if (offline && m->has_ctc && has_array(g, (snprintf(name, sizeof name, "%soffline_ctc_tokens", prefix), name)))
                check_ctc(g, m, prefix, "offline", offline, n_off, jstr(lam, "offline_ctc_text"));
            if (offline && m->has_rnnt && has_array(g, (snprintf(name, sizeof name, "%soffline_rnnt_tokens", prefix), name)))
                check_rnnt_offline(g, m, prefix, offline, n_off, jstr(lam, "offline_rnnt_text"));
            free(offline);
            check_streaming(g, m, la, lam, prefix, mel, T_mel);
        }
        free(mel);
        check_public_api(g, model_path, audio, n);
        free(audio);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: earshot-golden CASE_DIR [--backend cpu|cuda] [--converter PATH] [--keep-model PATH]\n"
               "Checks Earshot against a golden case computed by NeMo (see ../shared/golden/README.md).\n"
               "Exits 0 only if every array of every look-ahead matches within DESIGN.md's tolerance.\n");
}

int main(int argc, char **argv)
{
    const char *case_dir = NULL, *backend = "cpu", *converter = NULL, *keep = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            backend = argv[++i];
        } else if (!strcmp(argv[i], "--converter") && i + 1 < argc) {
            converter = argv[++i];
        } else if (!strcmp(argv[i], "--keep-model") && i + 1 < argc) {
            keep = argv[++i];
        } else if (argv[i][0] == '-' || case_dir) {
            usage(stderr);
            return 2;
        } else {
            case_dir = argv[i];
        }
    }
    if (!case_dir) {
        usage(stderr);
        return 2;
    }
    if (strcmp(backend, "cpu") != 0 && strcmp(backend, "cuda") != 0) {
        fprintf(stderr, "earshot-golden: unknown backend '%s' (cpu or cuda)\n", backend);
        return 2;
    }
    golden g = {.case_dir = case_dir, .gpu = strcmp(backend, "cuda") == 0};
    if (g.gpu) {
        char why[256];
        if (!es_backend_available(ES_BACKEND_CUDA, why, sizeof why)) {
            printf("skipped: no GPU (%s)\n", why);
            return 77;
        }
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/manifest.json", case_dir);
    char err[512];
    size_t text_len = 0;
    unsigned char *text = slurp(path, &text_len, err, sizeof err);
    g.manifest = text ? cJSON_Parse((const char *)text) : NULL;
    free(text);
    if (!cJSON_IsObject(g.manifest)) {
        fprintf(stderr, "earshot-golden: %s\n", text ? "manifest.json is not valid JSON" : err);
        cJSON_Delete(g.manifest);
        return 1;
    }

    /* the converter: --converter, $EARSHOT_CONVERT, next to this binary (installed), one folder
       up (the build tree), else on PATH */
    char conv_path[PATH_MAX], self[PATH_MAX];
    if (!converter)
        converter = getenv("EARSHOT_CONVERT");
    if (!converter) {
        ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
        self[k > 0 ? k : 0] = '\0';
        const char *dir = k > 0 ? dirname(self) : ".";
        converter = "earshot-convert";
        const char *places[] = {"%s/earshot-convert", "%s/../earshot-convert"};
        for (int i = 0; i < 2; i++) {
            snprintf(conv_path, sizeof conv_path, places[i], dir);
            if (access(conv_path, X_OK) == 0) {
                converter = conv_path;
                break;
            }
        }
    }
    char model_path[PATH_MAX], nemo[PATH_MAX];
    if (keep)
        snprintf(model_path, sizeof model_path, "%s", keep);
    else
        snprintf(model_path, sizeof model_path, "/tmp/earshot-golden-%d.safetensors", (int)getpid());
    snprintf(nemo, sizeof nemo, "%s/model.nemo", case_dir);
    printf("case %s (%s)\n", case_dir, jstr(g.manifest, "model_kind") ? jstr(g.manifest, "model_kind") : "?");
    if (convert(converter, nemo, model_path) != 0) {
        fprintf(stderr, "earshot-golden: converting %s with %s failed\n", nemo, converter);
        cJSON_Delete(g.manifest);
        return 1;
    }
    es_model *m = es_model_load(model_path, err, sizeof err);
    if (!m) {
        fprintf(stderr, "earshot-golden: %s\n", err);
        if (!keep)
            unlink(model_path);
        cJSON_Delete(g.manifest);
        return 1;
    }
    report(&g, m->n_vocab == jint(g.manifest, "vocab_size", -1), "vocabulary size %d", m->n_vocab);
#ifdef EARSHOT_HAVE_CUDA
    if (g.gpu) {
        g.cuda = es_cuda_create(m, 1, err, sizeof err);
        report(&g, g.cuda != NULL, "CUDA backend: %s", g.cuda ? "model uploaded" : err);
    }
    if (!g.gpu || g.cuda)
#endif
        check_case(&g, m, case_dir, model_path);
#ifdef EARSHOT_HAVE_CUDA
    es_cuda_free(g.cuda);
#endif
    es_model_free(m);
    if (!keep)
        unlink(model_path);
    cJSON_Delete(g.manifest);
    if (g.passed == 0)
        report(&g, 0, "nothing was compared: the manifest lists none of the arrays this tool checks");
    printf("%s: %d passed, %d failed, %d skipped\n", g.failed ? "FAIL" : "PASS", g.passed, g.failed, g.skipped);
    return g.failed ? 1 : 0;
}
