/*
 * test_features.c - the log-mel front end (asr/features.c) against NeMo's golden features, and
 * the incremental path against the one-shot path, plus the npy and WAV readers it relies on.
 *
 *   test_features GOLDEN_DIR [--fb FB.npy --window WINDOW.npy] [--fb-dir DIR]
 *
 * The filterbank and window are the model's own tensors (preprocessor.featurizer.fb / .window).
 * Until the engine can load them from a converted model, tests/extract_fb.py pulls them out of
 * each case's checkpoint:
 *   python3 tests/extract_fb.py --all GOLDEN_DIR /tmp/fb && test_features GOLDEN_DIR --fb-dir /tmp/fb
 * --fb-dir DIR uses DIR/<case>/{fb,window}.npy, or DIR/{fb,window}.npy; --fb/--window use one
 * pair for every case. Without any, the golden comparisons are skipped (and said so); the
 * self-contained checks still run.
 *
 * Every case folder under GOLDEN_DIR that has a manifest.json is used (found with opendir):
 *  (a) es_mel_compute on the whole file vs CASE/mel.npy: T_mel equal, max|err| <= 1e-4 max|ref|;
 *  (b) pushing the audio in irregular pieces (1, 37, 160, 1000, 7, ...) and in one piece, then
 *      finishing, gives the one-shot frames bit for bit; frames come out exactly when the
 *      documented rule says, and pending + emitted is always n/160 + 1;
 *  (c) a too-small max_frames (0, 1, 2) still yields the same frames, drained later;
 *  (d) an empty stream gives one zero frame.
 * Self-contained checks: a naive DFT reference for short signals and odd configurations, bad
 * configs and API misuse, malformed .npy and .wav inputs.
 *
 * The last line printed is "N passed, N failed"; the exit status is non-zero on any failure.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* opendir, stat, strdup */
#endif
#include "mel.h"
#include "npy.h"
#include "wav16.h"

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TEST_PI 3.14159265358979323846

#include "check.h"

static int g_skip;

#define PATH_LEN 4096

/* dst = a/b or a/b/c (c may be NULL); a path too long for PATH_LEN ends the test. */
static char *join_path(char *dst, const char *a, const char *b, const char *c)
{
    int r = c ? snprintf(dst, PATH_LEN, "%s/%s/%s", a, b, c) : snprintf(dst, PATH_LEN, "%s/%s", a, b);
    if (r < 0 || r >= PATH_LEN) {
        printf("FAIL path too long: %s/%s/%s\n", a, b, c ? c : "");
        exit(1);
    }
    return dst;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* ------------------------------------------------------------------------------------------ */
/* A naive reference: the NeMo recipe written out directly, with an O(N^2) DFT in double.      */

static float *naive_mel(const es_mel_config *c, const float *x, size_t n, int *T_out)
{
    int T = (int)(n / (size_t)c->hop_length) + 1, nb = c->n_fft / 2 + 1;
    float *out = calloc((size_t)T * c->n_mels, sizeof(float));
    double *y = malloc(sizeof(double) * (n ? n : 1));
    double *frame = malloc(sizeof(double) * c->n_fft);
    double *cs = malloc(sizeof(double) * c->n_fft), *sn = malloc(sizeof(double) * c->n_fft);
    double *pw = malloc(sizeof(double) * nb);
    for (size_t i = 0; i < n; i++) /* pre-emphasis in float, as the float tensor op does */
        y[i] = i == 0 ? x[0] : (double)(x[i] - c->preemph * x[i - 1]);
    for (int k = 0; k < c->n_fft; k++) {
        cs[k] = cos(2.0 * TEST_PI * k / c->n_fft);
        sn[k] = sin(2.0 * TEST_PI * k / c->n_fft);
    }
    int woff = (c->n_fft - c->win_length) / 2;
    for (int t = 0; t < (int)(n / (size_t)c->hop_length); t++) { /* the last frame stays zero */
        for (int k = 0; k < c->n_fft; k++) {
            long long s = (long long)t * c->hop_length - c->n_fft / 2 + k; /* centre padding */
            int j = k - woff;
            frame[k] = (s >= 0 && s < (long long)n && j >= 0 && j < c->win_length) ? y[s] * c->window[j] : 0.0;
        }
        for (int f = 0; f < nb; f++) {
            double re = 0, im = 0;
            for (int k = 0; k < c->n_fft; k++) {
                int a = (int)(((long long)f * k) % c->n_fft);
                re += frame[k] * cs[a];
                im -= frame[k] * sn[a];
            }
            double mag = sqrt(re * re + im * im);
            pw[f] = mag * mag;
        }
        for (int m = 0; m < c->n_mels; m++) {
            double acc = 0;
            for (int f = 0; f < nb; f++)
                acc += (double)c->filterbank[(size_t)m * nb + f] * pw[f];
            out[(size_t)t * c->n_mels + m] = (float)log(acc + 5.9604644775390625e-08);
        }
    }
    free(y);
    free(frame);
    free(cs);
    free(sn);
    free(pw);
    *T_out = T;
    return out;
}

/* Frames that must have come out after N samples, straight from the documented rule: frame t
 * needs its window complete (window end t*hop - n_fft/2 + (n_fft-win)/2 + win) and (t+1)*hop
 * samples (so that it is certainly not the masked last frame). */
static long long expected_emitted(const es_mel_config *c, long long N)
{
    long long t = 0;
    for (;;) {
        long long wend = t * c->hop_length - c->n_fft / 2 + (c->n_fft - c->win_length) / 2 + c->win_length;
        long long need = wend > (t + 1) * c->hop_length ? wend : (t + 1) * c->hop_length;
        if (need > N)
            return t;
        t++;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The incremental path vs the one-shot result.                                                */

/* Pushes x in pieces cycling through sizes[] with max_frames = cap (or unlimited when cap < 0),
 * draining with push(NULL, 0) every drain_every pushes (0: never) and finishing with the same
 * cap. Checks the emission rule and the pending count after every call; returns the frames
 * (malloc'd) and their count in *T_out, or NULL on an API failure. */
static float *run_stream(es_mel *m, const es_mel_config *c, const float *x, size_t n, const size_t *sizes, int n_sizes,
                         int cap, int drain_every, int *T_out, int *rule_violations)
{
    int T = (int)(n / (size_t)c->hop_length) + 1;
    float *out = malloc(sizeof(float) * (size_t)T * c->n_mels);
    int got = 0, calls = 0, bad = 0;
    size_t pos = 0;
    es_mel_reset(m);
    if (es_mel_pending(m) != 1)
        bad++;
    while (pos < n) {
        size_t s = sizes[calls % n_sizes];
        if (s > n - pos)
            s = n - pos;
        int room = cap < 0 ? T - got : cap;
        int r = es_mel_push(m, x + pos, s, out + (size_t)got * c->n_mels, room);
        if (r < 0 || r > room || got + r > T) {
            free(out);
            return NULL;
        }
        got += r;
        pos += s;
        calls++;
        if (drain_every > 0 && calls % drain_every == 0) {
            for (;;) {
                r = es_mel_push(m, NULL, 0, out + (size_t)got * c->n_mels, cap < 0 ? T - got : cap);
                if (r < 0 || got + r > T) {
                    free(out);
                    return NULL;
                }
                got += r;
                if (r == 0)
                    break;
            }
        }
        /* every frame the rule allows is out or pending, and none beyond it */
        if (cap < 0 && got != (int)expected_emitted(c, (long long)pos))
            bad++;
        if (cap >= 0 && got > (int)expected_emitted(c, (long long)pos))
            bad++;
        if (got + es_mel_pending(m) != (int)(pos / (size_t)c->hop_length) + 1)
            bad++;
    }
    for (;;) {
        int room = cap < 0 ? T - got : cap;
        int r = es_mel_finish(m, out + (size_t)got * c->n_mels, room);
        if (r < 0 || got + r > T) {
            free(out);
            return NULL;
        }
        got += r;
        if (got + es_mel_pending(m) != T)
            bad++;
        if (r == 0 || cap < 0)
            break;
    }
    if (es_mel_finish(m, out, 0) != 0 || es_mel_pending(m) != 0)
        bad++;
    *T_out = got;
    *rule_violations += bad;
    return out;
}

/* (b), (c): every way of feeding the stream reproduces ref [T][n_mels] bit for bit. */
static void check_incremental(const char *name, const es_mel_config *c, const float *x, size_t n, const float *ref,
                              int T)
{
    static const size_t irregular[] = {1, 37, 160, 1000, 7};
    static const size_t bursts[] = {1000, 37, 2000, 1, 160, 4000};
    size_t whole[1] = {n ? n : 1};
    struct {
        const char *what;
        const size_t *sizes;
        int n_sizes, cap, drain_every;
    } runs[] = {
        {"irregular pieces", irregular, 5, -1, 0},
        {"one push", whole, 1, -1, 0},
        {"irregular, max_frames 1, drained every 3rd push", irregular, 5, 1, 3},
        {"bursts, max_frames 1, drained every 2nd push", bursts, 6, 1, 2},
        {"bursts, max_frames 0 then drained with 2", bursts, 6, 0, 0},
        {"bursts, max_frames 2, never drained before finish", bursts, 6, 2, 0},
    };
    es_mel *m = es_mel_create(c);
    CHECK(m != NULL, "%s: es_mel_create failed", name);
    if (!m)
        return;
    for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
        int got = 0, bad = 0;
        float *out;
        if (runs[r].cap == 0) {
            /* push everything with no room at all, then take it out two at a time */
            es_mel_reset(m);
            size_t pos = 0;
            int calls = 0, ok = 1;
            while (pos < n && ok) {
                size_t s = runs[r].sizes[calls++ % runs[r].n_sizes];
                s = s > n - pos ? n - pos : s;
                ok = es_mel_push(m, x + pos, s, NULL, 0) == 0;
                pos += s;
            }
            bad += es_mel_pending(m) != T;
            out = malloc(sizeof(float) * (size_t)T * c->n_mels);
            for (int k; ok && (k = es_mel_push(m, NULL, 0, out + (size_t)got * c->n_mels, 2)) != 0;)
                ok = k > 0 && (got += k) <= T;
            for (int k; ok && (k = es_mel_finish(m, out + (size_t)got * c->n_mels, 2)) != 0;)
                ok = k > 0 && (got += k) <= T;
            if (!ok) {
                free(out);
                out = NULL;
            }
        } else {
            out = run_stream(m, c, x, n, runs[r].sizes, runs[r].n_sizes, runs[r].cap, runs[r].drain_every, &got, &bad);
        }
        CHECK(out != NULL, "%s, %s: an API call failed", name, runs[r].what);
        if (!out)
            continue;
        CHECK(got == T, "%s, %s: %d frames, expected %d", name, runs[r].what, got, T);
        CHECK(bad == 0, "%s, %s: %d violations of the emission rule / pending count", name, runs[r].what, bad);
        if (got == T)
            CHECK(memcmp(out, ref, sizeof(float) * (size_t)T * c->n_mels) == 0, "%s, %s: frames differ from one-shot",
                  name, runs[r].what);
        free(out);
    }
    /* a finished stream refuses more audio until reset */
    float dummy = 0.0f;
    CHECK(es_mel_push(m, &dummy, 1, NULL, 0) == -1, "%s: push after finish accepted", name);
    es_mel_free(m);
}

/* ------------------------------------------------------------------------------------------ */
/* Golden comparison (a), with the filterbank and window given by the caller.                  */

static long manifest_long(const char *path, const char *key)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(buf, pat);
    return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

/* Compares the features of case_dir against its mel.npy. fb is [n_mels][n_fft/2+1], window
 * [win_length]; the rest of the config is NeMo's 16 kHz default. */
static void check_case(const char *case_dir, const char *name, const float *fb, int n_mels, const float *window,
                       int win_length)
{
    char path[PATH_LEN], err[512];
    wav16 w;
    npy_array mel;
    join_path(path, case_dir, "audio.wav", NULL);
    int rc = wav16_load(path, &w, err, sizeof(err));
    CHECK(rc == 0, "%s", err);
    if (rc != 0)
        return;
    join_path(path, case_dir, "mel.npy", NULL);
    rc = npy_load_typed(path, NPY_F32, 2, &mel, err, sizeof(err));
    CHECK(rc == 0, "%s", err);
    if (rc != 0) {
        wav16_free(&w);
        return;
    }
    join_path(path, case_dir, "manifest.json", NULL);
    long m_samples = manifest_long(path, "n_samples"), m_frames = manifest_long(path, "mel_frames");
    CHECK(w.sample_rate == 16000, "%s: sample rate %d", name, w.sample_rate);
    CHECK((long)w.n_samples == m_samples, "%s: %zu samples, manifest says %ld", name, w.n_samples, m_samples);
    CHECK((int)mel.shape[0] == n_mels, "%s: mel.npy has %zu mels, filterbank %d", name, mel.shape[0], n_mels);

    es_mel_config c = {.sample_rate = 16000, .n_fft = 512, .hop_length = 160, .win_length = win_length,
                       .n_mels = n_mels, .preemph = 0.97f, .window = window, .filterbank = fb};
    float *ours = NULL;
    int T = es_mel_compute(&c, w.samples, w.n_samples, &ours);
    CHECK(T > 0 && ours, "%s: es_mel_compute failed", name);
    if (T > 0 && ours && (int)mel.shape[0] == n_mels) {
        int Tref = (int)mel.shape[1];
        CHECK(T == Tref, "%s: T_mel %d, reference %d", name, T, Tref);
        CHECK(T == (int)(w.n_samples / 160) + 1 && T == m_frames, "%s: T_mel %d, n/160+1 = %zu, manifest %ld", name,
              T, w.n_samples / 160 + 1, m_frames);
        const float *ref = npy_f32(&mel);
        double max_err = 0, max_ref = 0, sum_err = 0;
        int wt = 0, wm = 0, Tc = T < Tref ? T : Tref;
        for (int t = 0; t < Tc; t++)
            for (int m = 0; m < n_mels; m++) {
                double r = ref[(size_t)m * Tref + t], o = ours[(size_t)t * n_mels + m], e = fabs(o - r);
                sum_err += e;
                if (fabs(r) > max_ref)
                    max_ref = fabs(r);
                if (e > max_err) {
                    max_err = e;
                    wt = t;
                    wm = m;
                }
            }
        int last_zero = 1;
        for (int m = 0; m < n_mels; m++)
            last_zero &= ours[(size_t)(T - 1) * n_mels + m] == 0.0f;
        CHECK(last_zero, "%s: the last frame is not zero", name);
        CHECK(max_err <= 1e-4 * max_ref, "%s: max|err| %.3g > 1e-4 * max|ref| %.3g", name, max_err, max_ref);
        printf("case %-14s T_mel %d  max|err| %.3g at frame %d mel %d  (ref %.6g, ours %.6g)  mean|err| %.3g  "
               "max|ref| %.4g  err/max|ref| %.3g (limit 1e-4)\n",
               name, T, max_err, wt, wm, ref[(size_t)wm * Tref + wt], ours[(size_t)wt * n_mels + wm],
               sum_err / ((double)Tc * n_mels), max_ref, max_err / max_ref);

        /* the incremental path must give exactly these frames */
        check_incremental(name, &c, w.samples, w.n_samples, ours, T);
    }
    free(ours);
    npy_free(&mel);
    wav16_free(&w);
}

/* Loads fb ([1, n_mels, 257] or [n_mels, 257]) and window ([win]) and runs check_case. */
static void check_case_files(const char *case_dir, const char *name, const char *fb_path, const char *win_path)
{
    npy_array fb, win;
    char err[512];
    int rc = npy_load_typed(fb_path, NPY_F32, -1, &fb, err, sizeof(err));
    CHECK(rc == 0, "%s", err);
    if (rc != 0)
        return;
    rc = npy_load_typed(win_path, NPY_F32, 1, &win, err, sizeof(err));
    CHECK(rc == 0, "%s", err);
    if (rc != 0) {
        npy_free(&fb);
        return;
    }
    int lead = 0;
    while (fb.ndim - lead > 2 && fb.shape[lead] == 1)
        lead++;
    int ok = fb.ndim - lead == 2 && fb.shape[fb.ndim - 1] == 257 && win.shape[0] >= 1 && win.shape[0] <= 512;
    CHECK(ok, "%s: filterbank must be [(1,) n_mels, 257] and window [<=512]", name);
    if (ok)
        check_case(case_dir, name, npy_f32(&fb), (int)fb.shape[fb.ndim - 2], npy_f32(&win), (int)win.shape[0]);
    npy_free(&fb);
    npy_free(&win);
}

/* ------------------------------------------------------------------------------------------ */
/* Self-contained checks.                                                                      */

static uint32_t rng_state = 12345u;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) / 8388608.0 - 1.0);
}

/* Random sparse non-negative filterbank rows (not Slaney; only the code paths matter here). */
static float *synthetic_fb(int n_mels, int nb, int identity)
{
    float *fb = calloc((size_t)n_mels * nb, sizeof(float));
    for (int m = 0; m < n_mels; m++) {
        if (identity) {
            fb[(size_t)m * nb + m] = 1.0f;
            continue;
        }
        int lo = (int)((m * (long)nb) / (n_mels + 1)), width = 1 + nb / n_mels + 2;
        for (int k = lo; k < lo + width && k < nb; k++)
            fb[(size_t)m * nb + k] = 0.5f + 0.5f * frand();
    }
    return fb;
}

static float *hann(int n)
{
    float *w = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++)
        w[i] = n == 1 ? 1.0f : (float)(0.5 - 0.5 * cos(2.0 * TEST_PI * i / (n - 1)));
    return w;
}

/* One configuration: naive reference agreement for several lengths, incremental == one-shot. */
static void check_config(const char *what, int n_fft, int hop, int win, int n_mels, int identity, const float *audio,
                         size_t audio_n)
{
    int nb = n_fft / 2 + 1;
    float *fb = synthetic_fb(n_mels, nb, identity), *w = hann(win);
    es_mel_config c = {.sample_rate = 16000, .n_fft = n_fft, .hop_length = hop, .win_length = win, .n_mels = n_mels,
                       .preemph = 0.97f, .window = w, .filterbank = fb};
    size_t lens[] = {0, 1, 2, (size_t)hop - 1, (size_t)hop, (size_t)hop + 1, (size_t)win / 2, (size_t)win,
                     (size_t)n_fft, (size_t)n_fft + 1, (size_t)(3 * hop + win), 5000};
    double worst = 0;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = lens[i] < audio_n ? lens[i] : audio_n;
        float *ours = NULL;
        int T = es_mel_compute(&c, n ? audio : NULL, n, &ours), Tn;
        float *ref = naive_mel(&c, audio, n, &Tn);
        char name[128];
        snprintf(name, sizeof(name), "%s, n=%zu", what, n);
        CHECK(T == Tn && ours, "%s: T %d, expected %d", name, T, Tn);
        if (T == Tn && ours) {
            double e = 0;
            for (size_t k = 0; k < (size_t)T * n_mels; k++) {
                double d = fabs((double)ours[k] - ref[k]) / (1.0 + fabs(ref[k]));
                e = d > e ? d : e;
            }
            worst = e > worst ? e : worst;
            CHECK(e < 2e-6, "%s: relative error vs naive DFT %.3g", name, e);
            check_incremental(name, &c, audio, n, ours, T);
        }
        free(ours);
        free(ref);
    }
    printf("config %-38s worst |err|/(1+|ref|) vs naive DFT over %zu lengths: %.3g\n", what,
           sizeof(lens) / sizeof(lens[0]), worst);
    free(fb);
    free(w);
}

/* normalize {fixed_mean, fixed_std}: every frame but the last is (plain - mean) / std in float,
 * bit for bit, in every way of feeding the stream; the last frame stays NeMo's zero frame. */
static void check_fixed_normalisation(const float *audio, size_t audio_n)
{
    enum { N_MELS = 80 };
    float *fb = synthetic_fb(N_MELS, 257, 0), *w = hann(400), mean[N_MELS], std[N_MELS];
    for (int r = 0; r < N_MELS; r++) {
        mean[r] = -11.0f + 0.1f * (float)r;
        std[r] = 2.0f + 0.05f * (float)r;
    }
    es_mel_config plain = {.sample_rate = 16000, .n_fft = 512, .hop_length = 160, .win_length = 400,
                           .n_mels = N_MELS, .preemph = 0.97f, .window = w, .filterbank = fb};
    es_mel_config fixed = plain;
    fixed.norm_mean = mean;
    fixed.norm_std = std;
    float *a = NULL, *b = NULL;
    int Ta = es_mel_compute(&plain, audio, audio_n, &a), Tb = es_mel_compute(&fixed, audio, audio_n, &b);
    CHECK(Ta > 1 && Ta == Tb && a && b, "fixed normalisation: T %d vs %d", Ta, Tb);
    if (Ta > 1 && Ta == Tb && a && b) {
        long wrong = 0, last_nonzero = 0;
        for (int t = 0; t < Ta - 1; t++)
            for (int r = 0; r < N_MELS; r++)
                wrong += b[(size_t)t * N_MELS + r] != (a[(size_t)t * N_MELS + r] - mean[r]) / std[r];
        for (int r = 0; r < N_MELS; r++)
            last_nonzero += b[(size_t)(Ta - 1) * N_MELS + r] != 0.0f;
        CHECK(wrong == 0, "fixed normalisation: %ld values differ from (plain - mean) / std", wrong);
        CHECK(last_nonzero == 0, "fixed normalisation: the last (masked) frame has %ld non-zero values", last_nonzero);
        check_incremental("fixed normalisation", &fixed, audio, audio_n, b, Tb);
        printf("fixed normalisation: %d frames x %d mels equal (plain - mean) / std, last frame zero\n", Ta, N_MELS);
    }
    free(a);
    free(b);
    es_mel_config half = fixed;
    half.norm_std = NULL;
    es_mel *m = es_mel_create(&half);
    CHECK(m == NULL, "a mean without a std was accepted");
    es_mel_free(m);
    free(fb);
    free(w);
}

static void check_bad_configs(void)
{
    float w[512], fb[257 * 2];
    for (int i = 0; i < 512; i++)
        w[i] = 1.0f;
    for (int i = 0; i < 257 * 2; i++)
        fb[i] = 1.0f;
    es_mel_config good = {16000, 512, 160, 400, 2, 0.97f, w, fb, NULL, NULL};
    es_mel *m = es_mel_create(&good);
    CHECK(m != NULL, "a good config was refused");
    es_mel_free(m);
    es_mel_config bad[10];
    for (int i = 0; i < 10; i++)
        bad[i] = good;
    bad[0].n_fft = 500;
    bad[1].win_length = 513;
    bad[2].hop_length = 0;
    bad[3].n_mels = 0;
    bad[4].window = NULL;
    bad[5].filterbank = NULL;
    bad[6].preemph = NAN;
    bad[7].n_fft = 0;
    bad[8].sample_rate = 0;
    bad[9].win_length = 0;
    for (int i = 0; i < 10; i++) {
        m = es_mel_create(&bad[i]);
        CHECK(m == NULL, "bad config %d accepted", i);
        es_mel_free(m);
    }
    CHECK(es_mel_create(NULL) == NULL, "NULL config accepted");
    float *out = (float *)1;
    CHECK(es_mel_compute(&bad[0], w, 10, &out) == -1 && out == NULL, "es_mel_compute with a bad config");
    es_mel_free(NULL);
    es_mel_reset(NULL);

    m = es_mel_create(&good);
    float buf[2 * 8];
    CHECK(es_mel_push(m, NULL, 5, buf, 8) == -1, "push of NULL samples accepted");
    CHECK(es_mel_push(m, w, 5, buf, -1) == -1, "negative max_frames accepted");
    CHECK(es_mel_push(m, w, 5, NULL, 3) == -1, "NULL out with room accepted");
    CHECK(es_mel_push(NULL, w, 5, buf, 8) == -1, "NULL stream accepted");
    CHECK(es_mel_finish(m, buf, -1) == -1, "finish with negative max_frames accepted");
    CHECK(es_mel_pending(m) == 1, "pending of a fresh stream is %d", es_mel_pending(m));
    es_mel_free(m);
}

/* (d): an empty stream is one zero frame, like NeMo with n = 0. */
static void check_empty(void)
{
    float w[400], fb[3 * 257];
    for (int i = 0; i < 400; i++)
        w[i] = 1.0f;
    for (int i = 0; i < 3 * 257; i++)
        fb[i] = 1.0f;
    es_mel_config c = {16000, 512, 160, 400, 3, 0.97f, w, fb, NULL, NULL};
    float *out = NULL;
    int T = es_mel_compute(&c, NULL, 0, &out);
    CHECK(T == 1 && out && out[0] == 0.0f && out[1] == 0.0f && out[2] == 0.0f, "empty one-shot: T %d", T);
    free(out);
    es_mel *m = es_mel_create(&c);
    float buf[3 * 4] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(es_mel_push(m, NULL, 0, buf, 4) == 0, "empty push produced frames");
    CHECK(es_mel_pending(m) == 1, "empty stream pending %d", es_mel_pending(m));
    CHECK(es_mel_finish(m, buf, 0) == 0, "finish with no room wrote frames");
    CHECK(es_mel_pending(m) == 1, "pending after a finish with no room: %d", es_mel_pending(m));
    int r = es_mel_finish(m, buf, 4);
    CHECK(r == 1 && buf[0] == 0.0f && buf[1] == 0.0f && buf[2] == 0.0f && buf[3] == 1.0f, "empty stream finish: %d", r);
    CHECK(es_mel_finish(m, buf, 4) == 0 && es_mel_pending(m) == 0, "second finish");
    es_mel_reset(m);
    CHECK(es_mel_pending(m) == 1 && es_mel_finish(m, buf, 4) == 1, "reset after finish");
    es_mel_free(m);
}

/* --- npy reader ----------------------------------------------------------------------------- */

static size_t make_npy(unsigned char *buf, int version, const char *header, const void *data, size_t data_len)
{
    size_t hl = strlen(header), p = 0;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)version;
    buf[7] = 0;
    p = 8;
    if (version == 1) {
        buf[p++] = (unsigned char)(hl & 0xff);
        buf[p++] = (unsigned char)(hl >> 8);
    } else {
        for (int i = 0; i < 4; i++)
            buf[p++] = (unsigned char)(hl >> (8 * i));
    }
    memcpy(buf + p, header, hl);
    p += hl;
    memcpy(buf + p, data, data_len);
    return p + data_len;
}

static void check_npy(const char *golden)
{
    unsigned char buf[1024];
    unsigned char le[24] = {0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64, 0, 0, 192, 64};
    char err[256];
    npy_array a;
    size_t n = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }   \n", le, 24);
    int rc = npy_parse(buf, n, &a, err, sizeof(err));
    CHECK(rc == 0 && a.dtype == NPY_F32 && a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3 && a.count == 6 &&
              npy_f32(&a)[0] == 1.0f && npy_f32(&a)[5] == 6.0f,
          "npy v1 f4: %s", rc ? err : "wrong contents");
    npy_free(&a);
    n = make_npy(buf, 2, "{\"shape\": (6,), \"fortran_order\": False, \"descr\": \"<i4\"}\n", le, 24);
    rc = npy_parse(buf, n, &a, err, sizeof(err));
    CHECK(rc == 0 && a.dtype == NPY_I32 && a.ndim == 1 && a.shape[0] == 6 && npy_i32(&a)[1] == 0x40000000,
          "npy v2 i4, keys reordered: %s", rc ? err : "wrong contents");
    npy_free(&a);
    n = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", le, 4);
    rc = npy_parse(buf, n, &a, err, sizeof(err));
    CHECK(rc == 0 && a.ndim == 0 && a.count == 1 && npy_f32(&a)[0] == 1.0f, "npy scalar: %s", rc ? err : "contents");
    npy_free(&a);
    n = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }\n", le, 0);
    rc = npy_parse(buf, n, &a, err, sizeof(err));
    CHECK(rc == 0 && a.count == 0 && a.data == NULL, "npy empty array: %s", rc ? err : "contents");
    npy_free(&a);

    struct {
        const char *header;
        size_t data_len;
        int version;
    } bad[] = {
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }\n", 24, 1},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }\n", 24, 1},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n", 24, 1},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }\n", 24, 1},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }\n", 24, 1},
        {"{'descr': '<f4', 'shape': (6,), }\n", 24, 1},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }\n", 24, 1},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}\n", 24, 1},
        {"['descr', '<f4']\n", 24, 1},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,)\n", 24, 1},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }\n", 24, 1},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }\n", 24, 1},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }\n", 24, 7},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = make_npy(buf, bad[i].version, bad[i].header, le, bad[i].data_len);
        err[0] = '\0';
        rc = npy_parse(buf, n, &a, err, sizeof(err));
        CHECK(rc == -1 && err[0] && a.data == NULL, "malformed npy %zu accepted (%s)", i, bad[i].header);
    }
    n = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }\n", le, 24);
    int refused = 1;
    for (size_t cut = 0; cut < n; cut++) /* every truncation fails cleanly */
        refused &= npy_parse(buf, cut, &a, err, sizeof(err)) == -1;
    CHECK(refused, "a truncated npy was accepted");
    CHECK(npy_parse("\x93NUMPX\x01\x00\x00\x00", 10, &a, err, sizeof(err)) == -1, "bad magic accepted");
    CHECK(npy_load("/nonexistent/file.npy", &a, err, sizeof(err)) == -1 && strstr(err, "/nonexistent/file.npy"),
          "missing file: %s", err);

    /* real files of a golden case: a float matrix and an int vector, if present */
    DIR *d = opendir(golden);
    struct dirent *e;
    int done = 0;
    while (d && !done && (e = readdir(d))) {
        char p[PATH_LEN];
        join_path(p, golden, e->d_name, "la0_stream_chunk_lengths.npy");
        if (e->d_name[0] == '.' || !file_exists(p))
            continue;
        rc = npy_load_typed(p, NPY_I32, 1, &a, err, sizeof(err));
        CHECK(rc == 0 && a.count > 0 && npy_i32(&a)[0] > 0, "golden int32 array: %s", rc ? err : "contents");
        npy_free(&a);
        rc = npy_load_typed(p, NPY_F32, 1, &a, err, sizeof(err));
        CHECK(rc == -1 && strstr(err, "dtype"), "an int32 array passed as float32");
        done = 1;
    }
    if (d)
        closedir(d);
}

/* --- wav reader ----------------------------------------------------------------------------- */

static size_t put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return 4;
}

static size_t put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)(v >> 8);
    return 2;
}

/* RIFF/WAVE with an odd-sized LIST chunk (padded) before fmt, then data with the given samples. */
static size_t make_wav(unsigned char *b, unsigned tag, unsigned ch, unsigned bits, const int16_t *s, size_t n,
                       int data_first)
{
    size_t p = 0;
    memcpy(b, "RIFF", 4);
    p = 8;
    memcpy(b + p, "WAVE", 4);
    p += 4;
    memcpy(b + p, "LIST", 4);
    p += 4;
    p += put32(b + p, 3);
    memcpy(b + p, "abc\0", 4);
    p += 4;
    unsigned char fmt[24];
    size_t q = 0;
    q += put16(fmt + q, tag);
    q += put16(fmt + q, ch);
    q += put32(fmt + q, 16000);
    q += put32(fmt + q, 16000 * ch * bits / 8);
    q += put16(fmt + q, ch * bits / 8);
    q += put16(fmt + q, bits);
    unsigned char data[256];
    for (size_t i = 0; i < n; i++)
        put16(data + 2 * i, (unsigned)(uint16_t)s[i]);
    for (int pass = 0; pass < 2; pass++) {
        if ((pass == 0) == (data_first != 0)) {
            memcpy(b + p, "data", 4);
            p += 4;
            p += put32(b + p, (uint32_t)(2 * n));
            memcpy(b + p, data, 2 * n);
            p += 2 * n;
        } else {
            memcpy(b + p, "fmt ", 4);
            p += 4;
            p += put32(b + p, 16);
            memcpy(b + p, fmt, 16);
            p += 16;
        }
    }
    put32(b + 4, (uint32_t)(p - 8));
    return p;
}

static void check_wav(void)
{
    unsigned char b[512];
    char err[256];
    int16_t s[5] = {0, 1, -1, 32767, -32768};
    wav16 w;
    for (int first = 0; first < 2; first++) {
        size_t n = make_wav(b, 1, 1, 16, s, 5, first);
        int rc = wav16_parse(b, n, &w, err, sizeof(err));
        CHECK(rc == 0 && w.sample_rate == 16000 && w.n_samples == 5 && w.samples[0] == 0.0f &&
                  w.samples[1] == 1.0f / 32768 && w.samples[2] == -1.0f / 32768 && w.samples[3] == 32767.0f / 32768 &&
                  w.samples[4] == -1.0f,
              "wav parse (data %s fmt): %s", first ? "before" : "after", rc ? err : "wrong samples");
        wav16_free(&w);
    }
    struct {
        unsigned tag, ch, bits;
    } bad[] = {{3, 1, 32}, {1, 2, 16}, {1, 1, 8}, {1, 1, 24}, {6, 1, 16}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = make_wav(b, bad[i].tag, bad[i].ch, bad[i].bits, s, 4, 0);
        err[0] = '\0';
        CHECK(wav16_parse(b, n, &w, err, sizeof(err)) == -1 && err[0] && !w.samples, "bad wav format %zu accepted",
              i);
    }
    size_t n = make_wav(b, 1, 1, 16, s, 5, 0);
    int refused = 1;
    for (size_t cut = 0; cut < n; cut++) /* every truncation fails cleanly (data comes last) */
        refused &= wav16_parse(b, cut, &w, err, sizeof(err)) == -1;
    CHECK(refused, "a truncated wav was accepted");
    memcpy(b, "RIFX", 4);
    CHECK(wav16_parse(b, n, &w, err, sizeof(err)) == -1, "RIFX accepted");
    n = make_wav(b, 1, 1, 16, s, 5, 0);
    put32(b + n - 10 - 4, 9); /* odd data size */
    CHECK(wav16_parse(b, n - 1, &w, err, sizeof(err)) == -1, "odd data size accepted");
    CHECK(wav16_load("/nonexistent/a.wav", &w, err, sizeof(err)) == -1 && strstr(err, "/nonexistent/a.wav"),
          "missing wav: %s", err);
}

/* ------------------------------------------------------------------------------------------ */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR [--fb FB.npy --window WINDOW.npy] [--fb-dir DIR]\n", argv[0]);
        return 2;
    }
    const char *golden = argv[1], *fb_path = NULL, *win_path = NULL, *fb_dir = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--fb") == 0 && i + 1 < argc)
            fb_path = argv[++i];
        else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc)
            win_path = argv[++i];
        else if (strcmp(argv[i], "--fb-dir") == 0 && i + 1 < argc)
            fb_dir = argv[++i];
        else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if ((fb_path == NULL) != (win_path == NULL)) {
        fprintf(stderr, "--fb and --window go together\n");
        return 2;
    }

    check_bad_configs();
    check_empty();
    check_npy(golden);
    check_wav();

    /* the case folders, sorted for a stable report */
    char *names[256];
    int n_cases = 0;
    DIR *d = opendir(golden);
    CHECK(d != NULL, "cannot open %s", golden);
    struct dirent *e;
    while (d && (e = readdir(d)) && n_cases < 256) {
        char p[PATH_LEN];
        join_path(p, golden, e->d_name, "manifest.json");
        if (e->d_name[0] != '.' && file_exists(p))
            names[n_cases++] = strdup(e->d_name);
    }
    if (d)
        closedir(d);
    qsort(names, (size_t)n_cases, sizeof(names[0]), cmp_names);
    CHECK(n_cases > 0, "no case folders with a manifest.json under %s", golden);

    /* self-contained: naive DFT reference and odd configurations, on the first case's audio
     * (or noise when there is none) */
    float noise[6000];
    for (int i = 0; i < 6000; i++)
        noise[i] = 0.3f * frand();
    wav16 w0 = {0};
    const float *audio = noise;
    size_t audio_n = 6000;
    if (n_cases > 0) {
        char p[PATH_LEN], err[512];
        join_path(p, golden, names[0], "audio.wav");
        if (wav16_load(p, &w0, err, sizeof(err)) == 0 && w0.n_samples >= 16000) {
            audio = w0.samples + 8000; /* speech, not the leading silence */
            audio_n = 6000;
        }
    }
    check_config("512/160/400, 80 random mels", 512, 160, 400, 80, 0, audio, audio_n);
    check_fixed_normalisation(audio, audio_n);
    check_config("512/160/400, identity fb (raw power)", 512, 160, 400, 257, 1, audio, audio_n);
    check_config("64/7/50 (odd window offset)", 64, 7, 50, 10, 0, audio, audio_n);
    check_config("16/20/16 (hop > n_fft: gaps)", 16, 20, 16, 4, 0, audio, audio_n);
    check_config("8/1/3 (hop 1)", 8, 1, 3, 5, 1, audio, audio_n);
    check_config("1024/160/1024 (window = frame)", 1024, 160, 1024, 40, 0, audio, audio_n);
    wav16_free(&w0);

    for (int i = 0; i < n_cases; i++) {
        char case_dir[PATH_LEN], fbp[PATH_LEN], wp[PATH_LEN];
        join_path(case_dir, golden, names[i], NULL);
        const char *f = fb_path, *w = win_path;
        if (fb_dir) {
            join_path(fbp, fb_dir, names[i], "fb.npy");
            join_path(wp, fb_dir, names[i], "window.npy");
            if (!file_exists(fbp)) {
                join_path(fbp, fb_dir, "fb.npy", NULL);
                join_path(wp, fb_dir, "window.npy", NULL);
            }
            f = fbp;
            w = wp;
        }
        if (!f) {
            printf("SKIP case %s: no filterbank/window given (tests/extract_fb.py, then --fb-dir)\n", names[i]);
            g_skip++;
        } else {
            check_case_files(case_dir, names[i], f, w);
        }
        free(names[i]);
    }
    if (g_skip)
        printf("%d golden case(s) skipped\n", g_skip);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
