/*
 * test_audio_in.c - a session's audio input (server/audio_in.c) with synthetic signals:
 *   - PCM s16le / f32le at 8, 22.05, 44.1 and 48 kHz, mono and stereo, fed in 20 ms messages:
 *     a 440 Hz sine comes out at 16 kHz with the right length (within one block), frequency
 *     (zero crossings) and amplitude, and the same whether fed in pieces or in one message;
 *   - 16 kHz mono s16 is a bit-exact passthrough (int16 / 32768), stereo 16 kHz is averaged;
 *   - PCM lengths that are not whole frames are refused and the session goes on;
 *   - f32 NaN and infinities are made silent or clamped;
 *   - Opus: a sine encoded with libopus (48 kHz stereo and 16 kHz mono, 20 ms packets) decodes
 *     to the right length and correlates with the original; corrupt and truncated packets are
 *     refused, and the packets after them still decode;
 *   - a 16 MB message works and its output is what it should be, no more;
 *   - unsupported combinations are refused at creation.
 *
 *   test_audio_in
 *
 * The last line printed is "N passed, N failed"; the exit status is non-zero on any failure.
 */
#include "audio_in.h"

#include <math.h>
#include <opus.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define PI 3.14159265358979323846
#define OUT_RATE 16000

/* A growable float array, to collect a stream's output. */
typedef struct {
    float *x;
    size_t n, cap;
} fvec;

static void fv_add(fvec *v, const float *x, long n)
{
    if (n <= 0)
        return;
    if (v->n + (size_t)n > v->cap) {
        v->cap = (v->n + (size_t)n) * 2;
        v->x = realloc(v->x, v->cap * sizeof *v->x);
    }
    memcpy(v->x + v->n, x, (size_t)n * sizeof *x);
    v->n += (size_t)n;
}

/* Interleaved test signal: channel 0 is amp * sin(440 Hz); channel 1 (stereo) is silent, so
   the downmix must give amp/2 -- an average, not a sum or channel 0 alone. */
static float *sine(int rate, int channels, size_t frames, double amp)
{
    float *x = calloc(frames * channels, sizeof *x);
    for (size_t i = 0; i < frames; i++)
        x[i * channels] = (float)(amp * sin(2 * PI * 440.0 * i / rate));
    return x;
}

/* The wire bytes of interleaved floats in the given encoding. */
static unsigned char *to_bytes(const float *x, size_t n, audio_encoding enc, size_t *len)
{
    size_t w = enc == AUDIO_PCM_S16LE ? 2 : 4;
    unsigned char *b = malloc(n * w);
    for (size_t i = 0; i < n; i++) {
        if (enc == AUDIO_PCM_S16LE) {
            long v = lrintf(x[i] * 32767.0f);
            uint16_t u = (uint16_t)(int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
            b[2 * i] = (unsigned char)(u & 0xff);
            b[2 * i + 1] = (unsigned char)(u >> 8);
        } else {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            for (int k = 0; k < 4; k++)
                b[4 * i + k] = (unsigned char)(u >> (8 * k));
        }
    }
    *len = n * w;
    return b;
}

/* Sign changes of x in [from, to). */
static int zero_crossings(const float *x, size_t from, size_t to)
{
    int n = 0;
    for (size_t i = from + 1; i < to; i++)
        if ((x[i - 1] < 0) != (x[i] < 0))
            n++;
    return n;
}

static double rms(const float *x, size_t from, size_t to)
{
    double s = 0;
    for (size_t i = from; i < to; i++)
        s += (double)x[i] * x[i];
    return sqrt(s / (double)(to - from));
}

/* Feeds bytes in messages of msg_bytes (whole frames) and flushes; returns the output. */
static fvec run(audio_in *a, const unsigned char *b, size_t len, size_t msg_bytes, int *errors)
{
    fvec v = {0};
    const float *out;
    char why[256];
    for (size_t at = 0; at < len; at += msg_bytes) {
        size_t k = len - at < msg_bytes ? len - at : msg_bytes;
        long n = audio_in_feed(a, b + at, k, &out, why, sizeof why);
        if (n < 0) {
            (*errors)++;
            printf("  feed: %s\n", why);
        }
        fv_add(&v, out, n);
    }
    long n = audio_in_flush(a, &out);
    if (n < 0)
        (*errors)++;
    fv_add(&v, out, n);
    return v;
}

static void test_pcm_sine(audio_encoding enc, int rate, int channels)
{
    const double amp = 0.8, secs = 1.0;
    size_t frames = (size_t)(rate * secs);
    float *x = sine(rate, channels, frames, amp);
    size_t len;
    unsigned char *b = to_bytes(x, frames * channels, enc, &len);
    size_t frame_bytes = (enc == AUDIO_PCM_S16LE ? 2 : 4) * (size_t)channels;
    const char *name = enc == AUDIO_PCM_S16LE ? "s16" : "f32";
    char why[256];

    audio_in *a = audio_in_create(enc, rate, channels, OUT_RATE, why, sizeof why);
    CHECK(a != NULL, "%s %d Hz %d ch: create: %s", name, rate, channels, why);
    if (!a)
        return;
    int errors = 0;
    fvec v = run(a, b, len, (size_t)(rate / 50) * frame_bytes, &errors); /* 20 ms messages */
    audio_in_free(a);

    double want_len = frames * (double)OUT_RATE / rate;
    CHECK(errors == 0, "%s %d/%d: no errors", name, rate, channels);
    CHECK(fabs((double)v.n - want_len) <= 64, "%s %d Hz %d ch: %zu samples, want %.0f +- 64", name, rate, channels,
          v.n, want_len);
    /* The middle 0.8 s: away from the resampler's start-up and end. */
    size_t from = OUT_RATE / 10, to = v.n > (size_t)OUT_RATE / 10 * 9 ? (size_t)OUT_RATE / 10 * 9 : v.n;
    int zc = zero_crossings(v.x, from, to);
    double want_zc = 2 * 440.0 * (to - from) / OUT_RATE;
    CHECK(fabs(zc - want_zc) <= 2, "%s %d Hz %d ch: %d zero crossings, want %.0f", name, rate, channels, zc,
          want_zc);
    double want_amp = channels == 2 ? amp / 2 : amp;
    double r = rms(v.x, from, to) * sqrt(2.0);
    CHECK(fabs(r - want_amp) < 0.01 * want_amp, "%s %d Hz %d ch: amplitude %.4f, want %.4f", name, rate, channels,
          r, want_amp);

    printf("  %s %5d Hz %d ch: %zu samples (want %.0f), %d zero crossings (want %.0f), amplitude %.4f (want %.4f)\n",
           name, rate, channels, v.n, want_len, zc, want_zc, r, want_amp);

    /* The resampler's state carries across messages: one big message gives the same audio. */
    a = audio_in_create(enc, rate, channels, OUT_RATE, why, sizeof why);
    errors = 0;
    fvec w = run(a, b, len, len, &errors);
    audio_in_free(a);
    double maxd = 0;
    size_t m = v.n < w.n ? v.n : w.n;
    for (size_t i = 0; i < m; i++)
        maxd = fmax(maxd, fabs(v.x[i] - w.x[i]));
    CHECK(errors == 0 && v.n == w.n && maxd < 1e-4, "%s %d/%d: pieces vs one message: %zu vs %zu, max diff %g",
          name, rate, channels, v.n, w.n, maxd);
    free(v.x);
    free(w.x);
    free(x);
    free(b);
}

static void test_passthrough(void)
{
    char why[256];
    const float *out;
    audio_in *a = audio_in_create(AUDIO_PCM_S16LE, 16000, 1, OUT_RATE, why, sizeof why);
    enum { N = 16000 };
    unsigned char b[2 * N];
    int16_t want[N];
    uint32_t r = 12345;
    for (int i = 0; i < N; i++) {
        r = r * 1103515245u + 12345u;
        want[i] = (int16_t)(r >> 16);
        if (i == 0) want[i] = -32768;
        if (i == 1) want[i] = 32767;
        b[2 * i] = (unsigned char)((uint16_t)want[i] & 0xff);
        b[2 * i + 1] = (unsigned char)((uint16_t)want[i] >> 8);
    }
    long n = audio_in_feed(a, b, sizeof b, &out, why, sizeof why);
    int exact = n == N;
    for (int i = 0; exact && i < N; i++)
        exact = out[i] == want[i] / 32768.0f;
    CHECK(exact, "16 kHz mono s16 is bit-exact: %ld samples", n);
    /* an odd byte offset: no alignment assumptions */
    unsigned char *odd = malloc(2 * 100 + 1);
    memcpy(odd + 1, b, 200);
    n = audio_in_feed(a, odd + 1, 200, &out, why, sizeof why);
    exact = n == 100;
    for (int i = 0; exact && i < 100; i++)
        exact = out[i] == want[i] / 32768.0f;
    CHECK(exact, "unaligned payload");
    free(odd);
    n = audio_in_flush(a, &out);
    CHECK(n == 0, "flush without a resampler gives nothing: %ld", n);
    n = audio_in_feed(a, b, 2, &out, why, sizeof why);
    CHECK(n == -1, "audio after flush refused");
    audio_in_free(a);

    /* 16 kHz stereo: averaged, no resampler */
    a = audio_in_create(AUDIO_PCM_S16LE, 16000, 2, OUT_RATE, why, sizeof why);
    n = audio_in_feed(a, b, sizeof b, &out, why, sizeof why);
    exact = n == N / 2;
    for (int i = 0; exact && i < N / 2; i++)
        exact = out[i] == 0.5f * (want[2 * i] / 32768.0f + want[2 * i + 1] / 32768.0f);
    CHECK(exact, "16 kHz stereo averaged: %ld samples", n);
    audio_in_free(a);

    /* f32 at 16 kHz: passthrough with NaN silenced and everything clamped */
    a = audio_in_create(AUDIO_PCM_F32LE, 16000, 1, OUT_RATE, why, sizeof why);
    float in[] = {NAN, INFINITY, -INFINITY, 2.0f, -0.5f, 0.25f, -1.5f, 1.0f};
    float expect[] = {0, 1, -1, 1, -0.5f, 0.25f, -1, 1};
    size_t len;
    unsigned char *fb = to_bytes(in, 8, AUDIO_PCM_F32LE, &len);
    n = audio_in_feed(a, fb, len, &out, why, sizeof why);
    exact = n == 8;
    for (int i = 0; exact && i < 8; i++)
        exact = out[i] == expect[i];
    CHECK(exact, "f32 NaN/inf/out of range made sane");
    free(fb);
    audio_in_free(a);

    /* the same through the resampler: no NaN may reach it */
    a = audio_in_create(AUDIO_PCM_F32LE, 48000, 2, OUT_RATE, why, sizeof why);
    float junk[4800];
    for (int i = 0; i < 4800; i++)
        junk[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -1e30f;
    fb = to_bytes(junk, 4800, AUDIO_PCM_F32LE, &len);
    n = audio_in_feed(a, fb, len, &out, why, sizeof why);
    int finite = n >= 0;
    for (long i = 0; finite && i < n; i++)
        finite = isfinite(out[i]) && fabsf(out[i]) < 2;
    CHECK(finite, "junk floats at 48 kHz stereo stay finite: %ld samples", n);
    free(fb);
    audio_in_free(a);
}

static void test_bad_lengths(void)
{
    char why[256];
    const float *out;
    unsigned char b[64] = {0};
    struct {
        audio_encoding enc;
        int rate, ch;
        size_t bad, good;
    } c[] = {{AUDIO_PCM_S16LE, 16000, 1, 3, 4},   {AUDIO_PCM_S16LE, 48000, 2, 6, 8},
             {AUDIO_PCM_S16LE, 8000, 2, 2, 4},    {AUDIO_PCM_F32LE, 16000, 1, 6, 8},
             {AUDIO_PCM_F32LE, 44100, 2, 12, 16}, {AUDIO_PCM_F32LE, 48000, 1, 1, 4}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        audio_in *a = audio_in_create(c[i].enc, c[i].rate, c[i].ch, OUT_RATE, why, sizeof why);
        why[0] = '\0';
        long n = audio_in_feed(a, b, c[i].bad, &out, why, sizeof why);
        CHECK(n == -1 && why[0], "%zu bytes of %s %d ch refused: %ld (%s)", c[i].bad,
              c[i].enc == AUDIO_PCM_S16LE ? "s16" : "f32", c[i].ch, n, why);
        n = audio_in_feed(a, b, c[i].good, &out, why, sizeof why);
        CHECK(n >= 0, "%zu bytes accepted after the refusal: %ld", c[i].good, n);
        n = audio_in_feed(a, b, 0, &out, why, sizeof why);
        CHECK(n == 0, "an empty message gives nothing: %ld", n);
        audio_in_free(a);
    }
}

static void test_create(void)
{
    char why[256];
    struct {
        audio_encoding enc;
        int rate, ch;
        int ok;
    } c[] = {{AUDIO_PCM_S16LE, 7999, 1, 0},  {AUDIO_PCM_S16LE, 48001, 1, 0}, {AUDIO_PCM_S16LE, 16000, 0, 0},
             {AUDIO_PCM_S16LE, 16000, 3, 0}, {AUDIO_OPUS, 44100, 1, 0},      {AUDIO_OPUS, 22050, 2, 0},
             {AUDIO_OPUS, 12000, 2, 1},      {AUDIO_OPUS, 8000, 1, 1},       {AUDIO_PCM_F32LE, 8000, 2, 1},
             {(audio_encoding)7, 16000, 1, 0}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        why[0] = '\0';
        audio_in *a = audio_in_create(c[i].enc, c[i].rate, c[i].ch, OUT_RATE, why, sizeof why);
        CHECK((a != NULL) == c[i].ok && (c[i].ok || why[0]), "create enc %d %d Hz %d ch: %s", (int)c[i].enc,
              c[i].rate, c[i].ch, a ? "accepted" : why);
        audio_in_free(a);
    }
    audio_in_free(NULL);
}

/* Largest normalised correlation of y against x over lags 0..max_lag (y delayed). */
static double best_corr(const float *x, size_t nx, const float *y, size_t ny, int max_lag, int *lag_out)
{
    double best = -1;
    for (int lag = 0; lag <= max_lag; lag++) {
        double sxy = 0, sxx = 0, syy = 0;
        for (size_t i = 1600; i + lag < ny && i < nx - 1600; i++) {
            sxy += (double)x[i] * y[i + lag];
            sxx += (double)x[i] * x[i];
            syy += (double)y[i + lag] * y[i + lag];
        }
        double c = sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : 0;
        if (c > best) {
            best = c;
            *lag_out = lag;
        }
    }
    return best;
}

static void test_opus(int rate, int channels)
{
    char why[256];
    int err;
    OpusEncoder *enc = opus_encoder_create(rate, channels, OPUS_APPLICATION_AUDIO, &err);
    CHECK(enc != NULL, "opus encoder %d/%d: %s", rate, channels, opus_strerror(err));
    if (!enc)
        return;
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(64000));
    const int frame = rate / 50, packets = 50; /* 20 ms packets, 1 s */
    const double amp = 0.5;
    float *x = sine(rate, channels, (size_t)frame * packets, amp);
    if (channels == 2) /* both channels, so the mono is the same sine */
        for (int i = 0; i < frame * packets; i++)
            x[2 * i + 1] = x[2 * i];

    audio_in *a = audio_in_create(AUDIO_OPUS, rate, channels, OUT_RATE, why, sizeof why);
    CHECK(a != NULL, "opus audio_in %d/%d: %s", rate, channels, why);
    fvec v = {0};
    const float *out;
    unsigned char pkt[1500];
    int errors = 0, refused = 0, after_ok = 1;
    for (int p = 0; p < packets; p++) {
        int len = opus_encode_float(enc, x + (size_t)p * frame * channels, frame, pkt, sizeof pkt);
        if (len <= 0) {
            errors++;
            continue;
        }
        if (p == 20) {
            /* Corrupt packets the decoder must refuse, between two good ones. libopus cannot
               tell a code-0 packet cut short from a shorter frame, so "truncated" here is a
               packet whose framing says more bytes follow than do. */
            unsigned char bad[8][1500];
            int bad_len[8], nb = 0;
            bad[nb][0] = (unsigned char)((pkt[0] & 0xFC) | 3); /* code 3 without its count byte */
            bad_len[nb++] = 1;
            bad[nb][0] = (unsigned char)((pkt[0] & 0xFC) | 3); /* code 3, zero frames */
            bad[nb][1] = 0;
            bad_len[nb++] = 2;
            bad[nb][0] = (unsigned char)((pkt[0] & 0xFC) | 3); /* 48 frames of 20 ms: > 120 ms */
            bad[nb][1] = 48;
            memset(bad[nb] + 2, 0x55, 100);
            bad_len[nb++] = 102;
            bad[nb][0] = (unsigned char)((pkt[0] & 0xFC) | 2); /* code 2, first frame longer than the packet */
            bad[nb][1] = 250;
            memcpy(bad[nb] + 2, pkt + 1, 20);
            bad_len[nb++] = 22;
            bad[nb][0] = (unsigned char)((pkt[0] & 0xFC) | 1); /* code 1, odd payload: not two equal frames */
            memcpy(bad[nb] + 1, pkt + 1, 20);
            bad_len[nb++] = 22;
            for (int i = 0; i < nb; i++) {
                why[0] = '\0';
                long n = audio_in_feed(a, bad[i], (size_t)bad_len[i], &out, why, sizeof why);
                if (n == -1 && why[0])
                    refused++;
                else
                    printf("  bad packet %d not refused: %ld\n", i, n);
            }
            /* and random garbage, which may or may not parse: it must not crash */
            for (int i = 0; i < 50; i++) {
                unsigned char g[200];
                for (int k = 0; k < 200; k++)
                    g[k] = (unsigned char)(rand() & 0xff);
                (void)audio_in_feed(a, g, 1 + (size_t)(rand() % 200), &out, why, sizeof why);
            }
            /* garbage that happens to parse is decoded into the decoder's history; the good
               packets after it must still decode, and the tail must match a clean run */
        }
        long n = audio_in_feed(a, pkt, (size_t)len, &out, why, sizeof why);
        if (n < 0) {
            errors++;
            printf("  packet %d: %s\n", p, why);
            if (p >= 20)
                after_ok = 0;
        } else {
            fv_add(&v, out, n);
        }
    }
    long n = audio_in_flush(a, &out);
    fv_add(&v, out, n);
    CHECK(refused == 5, "opus %d/%d: %d of 5 corrupt packets refused", rate, channels, refused);
    CHECK(errors == 0 && after_ok, "opus %d/%d: every good packet decoded, also after the bad ones", rate, channels);

    /* 50 packets of 20 ms; garbage that happened to decode adds its own samples, so compare
       the length of a clean run below and here only check the good packets all arrived. */
    CHECK(v.n >= (size_t)OUT_RATE - 64, "opus %d/%d: %zu samples >= 1 s", rate, channels, v.n);
    audio_in_free(a);

    /* A clean run: length and correlation with the original at 16 kHz. */
    opus_encoder_ctl(enc, OPUS_RESET_STATE);
    a = audio_in_create(AUDIO_OPUS, rate, channels, OUT_RATE, why, sizeof why);
    fvec c = {0};
    for (int p = 0; p < packets; p++) {
        int len = opus_encode_float(enc, x + (size_t)p * frame * channels, frame, pkt, sizeof pkt);
        long k = len > 0 ? audio_in_feed(a, pkt, (size_t)len, &out, why, sizeof why) : -1;
        fv_add(&c, out, k);
    }
    fv_add(&c, out, audio_in_flush(a, &out));
    CHECK(fabs((double)c.n - OUT_RATE) <= 64, "opus %d/%d: %zu samples, want 16000 +- 64", rate, channels, c.n);
    float *ref = sine(OUT_RATE, 1, OUT_RATE, amp);
    int lag = 0;
    double corr = best_corr(ref, OUT_RATE, c.x, c.n, 400, &lag);
    CHECK(corr > 0.95, "opus %d/%d: correlation %.4f at lag %d", rate, channels, corr, lag);
    size_t to = c.n < (size_t)OUT_RATE - 1600 ? c.n : (size_t)OUT_RATE - 1600;
    double r = rms(c.x, 1600, to) * sqrt(2.0);
    CHECK(fabs(r - amp) < 0.1 * amp, "opus %d/%d: amplitude %.3f, want %.3f", rate, channels, r, amp);

    printf("  opus %5d Hz %d ch: %zu samples, correlation %.4f at lag %d, amplitude %.3f; %d/5 corrupt refused\n",
           rate, channels, c.n, corr, lag, r, refused);

    /* After the corrupt packets, the decoded good packets match the clean run (the decoder was
       not poisoned): compare the last 0.3 s, past any garbage's effect. */
    if (v.n >= 3200 && c.n >= 3200) {
        double sxy = 0, sxx = 0, syy = 0;
        for (size_t i = 0; i < 3200; i++) {
            double p = c.x[c.n - 3200 + i], q = v.x[v.n - 3200 + i];
            sxy += p * q;
            sxx += p * p;
            syy += q * q;
        }
        double cc = sxy / sqrt(sxx * syy + 1e-30);
        CHECK(cc > 0.95, "opus %d/%d: after corrupt packets the tail matches a clean run: %.4f", rate, channels, cc);
    }
    free(ref);
    free(c.x);
    free(v.x);
    free(x);
    audio_in_free(a);
    opus_encoder_destroy(enc);
}

/* A 16 MB message (8 kHz mono s16: 8 M frames, 16 M samples out) goes through in one call. */
static void test_big(void)
{
    char why[256];
    size_t len = 16u << 20;
    unsigned char *b = malloc(len);
    for (size_t i = 0; i < len / 2; i++) { /* a slow ramp, so the output is not trivially zero */
        int16_t v = (int16_t)((i % 800) * 40 - 16000);
        b[2 * i] = (unsigned char)((uint16_t)v & 0xff);
        b[2 * i + 1] = (unsigned char)((uint16_t)v >> 8);
    }
    audio_in *a = audio_in_create(AUDIO_PCM_S16LE, 8000, 1, OUT_RATE, why, sizeof why);
    const float *out;
    long n = audio_in_feed(a, b, len, &out, why, sizeof why);
    CHECK(labs(n - (long)len) <= 256, "16 MB at 8 kHz: %ld samples, want about %zu", n, len);
    /* and a small message after it gives the right small amount */
    n = audio_in_feed(a, b, 1600, &out, why, sizeof why);
    CHECK(labs(n - 1600) <= 256, "a small message after the big one: %ld samples", n);
    audio_in_free(a);
    free(b);
}

int main(void)
{
    int rates[] = {8000, 22050, 44100, 48000};
    for (int e = 0; e < 2; e++)
        for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++)
            for (int ch = 1; ch <= 2; ch++)
                test_pcm_sine(e ? AUDIO_PCM_F32LE : AUDIO_PCM_S16LE, rates[r], ch);
    test_passthrough();
    test_bad_lengths();
    test_create();
    test_opus(48000, 2);
    test_opus(16000, 1);
    test_opus(8000, 1);
    test_big();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
