/*
 * test_audio_file.c - tests of clients/transcribe/audio_file.c, earshot-transcribe's reader.
 *
 * Usage: test_audio_file SRC.wav [WORKDIR]
 *
 * SRC.wav is a 16 kHz mono recording (a golden case's audio.wav). The test makes copies of it
 * with sox, an independent resampler, at 8, 16, 22.05, 44.1, 48 and 192 kHz, mono, stereo and
 * three channels, as WAV, FLAC, Ogg Vorbis and MP3 (and Ogg Opus with libsndfile's own writer),
 * in WORKDIR or a fresh temporary directory that it removes afterwards. It reads every copy back
 * at 16 kHz and checks that the sample count matches the original's within one 100 ms block and
 * that the waveform correlates with the original (normalised correlation at the best small
 * lag), exactly for 16 kHz lossless copies.
 *
 * Then it tries to break the reader with files it writes itself with libsndfile: pure tones
 * through the resampler (amplitude kept, a tone above 8 kHz removed), channel averaging over six
 * channels, out-of-range and NaN float samples, a zero-sample file, an empty file, a text file
 * named .wav, a directory, a missing file, reads of odd sizes (1, 7, 1601 samples: the same
 * output as 1600-sample blocks), and memory that does not grow with the file's length.
 *
 * Exit status 0 when every check passed, 1 otherwise, 77 (skipped) without sox.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "audio_file.h"

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define RATE 16000
#define BLOCK 1600 /* 100 ms, what earshot-transcribe pulls */

static int n_pass, n_fail;

static void check(int ok, const char *what, const char *detail)
{
    if (ok)
        n_pass++;
    else
        n_fail++;
    printf("%s  %s%s%s\n", ok ? "ok  " : "FAIL", what, detail && *detail ? ": " : "",
           detail ? detail : "");
}

/* ---- helpers ---- */

typedef struct {
    float *x;
    long n;
    int rate, channels;
    double total; /* seconds, from the file's header */
    char err[256];
} decoded;

/* Reads the whole file at 16 kHz through af_read in pulls of the given sizes (cycled). */
static int decode(const char *path, const size_t *pulls, int n_pulls, decoded *d)
{
    memset(d, 0, sizeof *d);
    af_reader *r = af_open(path, RATE, AF_QUALITY_BEST, d->err, sizeof d->err);
    if (!r)
        return -1;
    d->rate = af_source_rate(r);
    d->channels = af_source_channels(r);
    d->total = af_total_seconds(r);
    long cap = 1 << 16;
    d->x = malloc(sizeof(float) * (size_t)cap);
    for (int k = 0;; k++) {
        size_t want = pulls[k % n_pulls];
        if (d->n + (long)want > cap) {
            while (d->n + (long)want > cap)
                cap *= 2;
            d->x = realloc(d->x, sizeof(float) * (size_t)cap);
        }
        long got = af_read(r, d->x + d->n, want, d->err, sizeof d->err);
        if (got < 0) {
            af_close(r);
            return -1;
        }
        if (got == 0)
            break;
        d->n += got;
    }
    if (af_samples_out(r) != d->n)
        snprintf(d->err, sizeof d->err, "af_samples_out %lld != %ld", af_samples_out(r), d->n);
    af_close(r);
    return 0;
}

static int decode_blocks(const char *path, decoded *d)
{
    const size_t pulls[] = {BLOCK};
    return decode(path, pulls, 1, d);
}

/* Normalised correlation of a[i] and b[i + lag] over their overlap. */
static double correlation(const float *a, long na, const float *b, long nb, long lag)
{
    double ab = 0, aa = 0, bb = 0;
    for (long i = 0; i < na; i++) {
        long j = i + lag;
        if (j < 0 || j >= nb)
            continue;
        ab += (double)a[i] * b[j];
        aa += (double)a[i] * a[i];
        bb += (double)b[j] * b[j];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

static double best_correlation(const float *a, long na, const float *b, long nb, long max_lag,
                               long *best_lag)
{
    double best = -2;
    for (long lag = -max_lag; lag <= max_lag; lag++) {
        double c = correlation(a, na, b, nb, lag);
        if (c > best) {
            best = c;
            *best_lag = lag;
        }
    }
    return best;
}

static int write_sf(const char *path, int format, int rate, int channels, const float *x,
                    long frames)
{
    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.samplerate = rate;
    info.channels = channels;
    info.format = format;
    SNDFILE *f = sf_open(path, SFM_WRITE, &info);
    if (!f) {
        fprintf(stderr, "cannot write %s: %s\n", path, sf_strerror(NULL));
        return -1;
    }
    /* Write float data exactly as given (no clipping of out-of-range floats). */
    sf_command(f, SFC_SET_CLIPPING, NULL, SF_FALSE);
    sf_count_t w = frames > 0 ? sf_writef_float(f, x, frames) : 0;
    sf_close(f);
    return w == frames ? 0 : -1;
}

/* Wraps s in single quotes for sh. */
static void shell_quote(char *dst, size_t len, const char *s)
{
    size_t o = 0;
    if (o < len - 1)
        dst[o++] = '\'';
    for (; *s && o + 5 < len; s++) {
        if (*s == '\'') {
            memcpy(dst + o, "'\\''", 4);
            o += 4;
        } else
            dst[o++] = *s;
    }
    if (o < len - 1)
        dst[o++] = '\'';
    dst[o] = '\0';
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* ---- the copies made with sox ---- */

typedef struct {
    const char *name;    /* file in the work directory */
    const char *effects; /* sox output options and effects */
    double min_corr;
    long max_lag; /* samples at 16 kHz */
    int exact;    /* 1: identical to the source; 2: 0.75 x the source */
    int padded;   /* MP3: the encoder adds a delay and pads to whole frames */
} variant;

static const variant variants[] = {
    {"m16.wav", "", 1.0, 0, 1, 0},
    {"m16.flac", "", 1.0, 0, 1, 0},
    {"s16.wav", "remix 1 1v0.5", 1.0, 0, 2, 0},
    {"m8.wav", "-r 8000", 0.90, 2, 0, 0},
    {"s8.flac", "-r 8000 -c 2", 0.90, 2, 0, 0},
    {"c3_22050.flac", "-r 22050 remix 1 1v0.6 1v0.3", 0.95, 2, 0, 0},
    {"m44100.wav", "-r 44100", 0.95, 2, 0, 0},
    {"s44100.flac", "-r 44100 -c 2", 0.95, 2, 0, 0},
    {"s48000.wav", "-r 48000 -c 2", 0.95, 2, 0, 0},
    {"s48000_24.flac", "-r 48000 -b 24 remix 1v0.9 1v0.7", 0.95, 2, 0, 0},
    {"m48000.ogg", "-r 48000", 0.95, 2, 0, 0},
    {"s44100.ogg", "-r 44100 -c 2", 0.95, 2, 0, 0},
    {"s8000.ogg", "-r 8000 -c 2", 0.85, 2, 0, 0},
    {"m192000.wav", "-r 192000", 0.95, 2, 0, 0},
    {"m44100.mp3", "-r 44100 -C 192", 0.95, 1600, 0, 1},
    {"m16.mp3", "-C 64", 0.90, 1600, 0, 1},
};

static void test_copies(const char *src, const char *dir, const decoded *ref)
{
    char cmd[4096], qs[1024], qd[1024], path[1024], what[1200], detail[256];
    shell_quote(qs, sizeof qs, src);

    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const variant *V = &variants[v];
        snprintf(path, sizeof path, "%s/%s", dir, V->name);
        shell_quote(qd, sizeof qd, path);
        /* Output options go before the output name, effects after: split at the first
           word that is not an option. */
        const char *eff = V->effects;
        const char *fx = strstr(eff, "remix");
        char opts[256] = "";
        snprintf(opts, sizeof opts, "%.*s", fx ? (int)(fx - eff) : (int)strlen(eff), eff);
        snprintf(cmd, sizeof cmd, "sox -q -D %s %s %s %s", qs, opts, qd, fx ? fx : ""); /* -D: no dither */
        snprintf(what, sizeof what, "%s (%s)", V->name, V->effects[0] ? V->effects : "copy");
        if (run(cmd) != 0) {
            check(0, what, "sox could not make it");
            continue;
        }
        decoded d;
        if (decode_blocks(path, &d) != 0) {
            check(0, what, d.err);
            continue;
        }
        /* The count the file's header promises, at 16 kHz; and, unless the encoder padded
           the audio, the source's count. Both within one block. */
        long promised = (long)(d.total * RATE + 0.5);
        snprintf(detail, sizeof detail, "%ld samples at 16 kHz, header says %ld, source %ld%s",
                 d.n, promised, ref->n, V->padded ? " (padded by the encoder)" : "");
        check(labs(d.n - promised) <= BLOCK && (V->padded || labs(d.n - ref->n) <= BLOCK), what,
              detail);

        if (V->exact) {
            float k = V->exact == 1 ? 1.0f : 0.75f;
            double worst = d.n == ref->n ? 0 : 1;
            for (long i = 0; i < d.n && i < ref->n; i++) {
                double e = fabs((double)d.x[i] - (double)k * ref->x[i]);
                if (e > worst)
                    worst = e;
            }
            snprintf(detail, sizeof detail, "max |difference| %.3g", worst);
            /* sox rounds 0.5 x to 16 bits: half a step in that channel, a quarter in the mean */
            check(V->exact == 1 ? worst == 0 : worst <= 1.0 / 32768, "  samples as expected",
                  detail);
        } else {
            long lag = 0;
            double c = best_correlation(ref->x, ref->n, d.x, d.n, V->max_lag, &lag);
            snprintf(detail, sizeof detail, "correlation %.5f at lag %ld (need > %.2f)", c, lag,
                     V->min_corr);
            check(c > V->min_corr, "  correlates with the source", detail);
        }
        free(d.x);
    }

    /* Ogg Opus: sox cannot write it, libsndfile can (48 kHz). */
    decoded s48;
    snprintf(path, sizeof path, "%s/s48000.wav", dir);
    if (decode_blocks(path, &s48) == 0) {
        /* Re-read the 48 kHz stereo copy as it is, and write it as Opus. */
        SF_INFO info;
        memset(&info, 0, sizeof info);
        SNDFILE *f = sf_open(path, SFM_READ, &info);
        float *x = f ? malloc(sizeof(float) * (size_t)(info.frames * info.channels)) : NULL;
        if (f && x && sf_readf_float(f, x, info.frames) == info.frames) {
            snprintf(path, sizeof path, "%s/s48000.opus", dir);
            if (write_sf(path, SF_FORMAT_OGG | SF_FORMAT_OPUS, 48000, info.channels, x,
                         (long)info.frames) == 0) {
                decoded d;
                if (decode_blocks(path, &d) == 0) {
                    long lag = 0;
                    double c = best_correlation(ref->x, ref->n, d.x, d.n, 1600, &lag);
                    snprintf(detail, sizeof detail,
                             "%ld samples (source %ld), correlation %.4f at lag %ld", d.n, ref->n,
                             c, lag);
                    check(labs(d.n - ref->n) <= BLOCK && c > 0.9, "s48000.opus (libsndfile)",
                          detail);
                    free(d.x);
                } else
                    check(0, "s48000.opus (libsndfile)", d.err);
            } else
                printf("skip  s48000.opus: this libsndfile cannot write Opus\n");
        }
        free(x);
        if (f)
            sf_close(f);
        free(s48.x);
    }
}

/* ---- files this test writes itself ---- */

static void test_tones(const char *dir)
{
    char path[1024], detail[256];
    const double PI = 3.14159265358979323846;
    int rate = 48000;
    long frames = rate * 2;
    float *x = malloc(sizeof(float) * (size_t)frames * 2);

    /* 1 kHz and 7 kHz at 0.5 in both channels: come out as the same tones at 16 kHz. */
    const double freqs[] = {1000.0, 7000.0};
    for (int k = 0; k < 2; k++) {
        for (long i = 0; i < frames; i++)
            x[2 * i] = x[2 * i + 1] = (float)(0.5 * sin(2 * PI * freqs[k] * (double)i / rate));
        snprintf(path, sizeof path, "%s/tone%d.wav", dir, k);
        if (write_sf(path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, rate, 2, x, frames) != 0) {
            check(0, "write a tone", path);
            continue;
        }
        decoded d;
        if (decode_blocks(path, &d) != 0) {
            check(0, "tone", d.err);
            continue;
        }
        double worst = 0;
        for (long i = 800; i < d.n - 800; i++) { /* away from the edges */
            double want = 0.5 * sin(2 * PI * freqs[k] * (double)i / RATE);
            double e = fabs(d.x[i] - want);
            if (e > worst)
                worst = e;
        }
        snprintf(detail, sizeof detail, "%ld samples (want %ld), max error %.2e", d.n,
                 frames / 3, worst);
        char what[64];
        snprintf(what, sizeof what, "%.0f Hz tone 48 kHz stereo -> 16 kHz", freqs[k]);
        check(labs(d.n - frames / 3) <= 1 && worst < 2e-3, what, detail);
        free(d.x);
    }

    /* 10 kHz cannot exist at 16 kHz: the resampler must filter it out, not fold it to 6 kHz. */
    for (long i = 0; i < frames; i++)
        x[i] = (float)(0.5 * sin(2 * PI * 10000.0 * (double)i / rate));
    snprintf(path, sizeof path, "%s/tone10k.wav", dir);
    decoded d;
    if (write_sf(path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, rate, 1, x, frames) == 0 &&
        decode_blocks(path, &d) == 0) {
        double e = 0;
        for (long i = 800; i < d.n - 800; i++)
            e += (double)d.x[i] * d.x[i];
        e = sqrt(e / (double)(d.n - 1600));
        snprintf(detail, sizeof detail, "rms %.2e (the tone's was 0.35)", e);
        check(e < 1e-3, "10 kHz tone removed, not aliased", detail);
        free(d.x);
    } else
        check(0, "10 kHz tone", path);
    free(x);
}

static void test_channels_and_range(const char *dir)
{
    char path[1024], detail[256];

    /* Six channels holding 0.1 .. 0.6: the mean is 0.35. */
    enum { CH = 6, N = 4000 };
    static float x[CH * N];
    for (int i = 0; i < N; i++)
        for (int c = 0; c < CH; c++)
            x[i * CH + c] = 0.1f * (float)(c + 1) * (i % 2 ? 1.0f : -1.0f);
    snprintf(path, sizeof path, "%s/six.wav", dir);
    decoded d;
    if (write_sf(path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, RATE, CH, x, N) == 0 &&
        decode_blocks(path, &d) == 0) {
        double worst = d.n == N ? 0 : 1;
        for (long i = 0; i < d.n && i < N; i++) {
            double e = fabs(d.x[i] - 0.35 * (i % 2 ? 1 : -1));
            if (e > worst)
                worst = e;
        }
        snprintf(detail, sizeof detail, "%ld samples, %d channels, max error %.2e", d.n,
                 d.channels, worst);
        check(d.channels == CH && worst < 1e-6, "six channels averaged", detail);
        free(d.x);
    } else
        check(0, "six channels", d.err);

    /* Float samples out of range and NaN come out clamped and finite. */
    float bad[6] = {2.0f, -3.0f, NAN, 0.5f, INFINITY, -INFINITY};
    float want[6] = {1.0f, -1.0f, 0.0f, 0.5f, 1.0f, -1.0f};
    snprintf(path, sizeof path, "%s/range.wav", dir);
    if (write_sf(path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, RATE, 1, bad, 6) == 0 &&
        decode_blocks(path, &d) == 0) {
        int ok = d.n == 6;
        for (int i = 0; ok && i < 6; i++)
            ok = d.x[i] == want[i];
        snprintf(detail, sizeof detail, "%ld samples: %g %g %g %g %g %g", d.n,
                 d.n > 0 ? d.x[0] : 0, d.n > 1 ? d.x[1] : 0, d.n > 2 ? d.x[2] : 0,
                 d.n > 3 ? d.x[3] : 0, d.n > 4 ? d.x[4] : 0, d.n > 5 ? d.x[5] : 0);
        check(ok, "out-of-range and NaN samples clamped", detail);
        free(d.x);
    } else
        check(0, "out-of-range samples", d.err);

    /* The same through the resampler: every sample finite and within [-1, 1]. */
    static float loud[44100];
    for (int i = 0; i < 44100; i++)
        loud[i] = i % 100 == 50 ? NAN : (i % 2 ? 4.0f : -4.0f);
    snprintf(path, sizeof path, "%s/loud.wav", dir);
    if (write_sf(path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 44100, 1, loud, 44100) == 0 &&
        decode_blocks(path, &d) == 0) {
        int ok = labs(d.n - 16000) <= 1;
        for (long i = 0; ok && i < d.n; i++)
            ok = d.x[i] >= -1.0f && d.x[i] <= 1.0f;
        snprintf(detail, sizeof detail, "%ld samples", d.n);
        check(ok, "resampled garbage stays finite and in range", detail);
        free(d.x);
    } else
        check(0, "resampled garbage", d.err);
}

static void test_odd_pulls(const char *dir)
{
    char path[1024], detail[256];
    const char *names[] = {"s44100.flac", "m16.wav", "m48000.ogg"};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        const size_t odd[] = {1, 7, 1601, 3, 100000, 2};
        decoded a, b;
        if (decode_blocks(path, &a) != 0 || decode(path, odd, 6, &b) != 0) {
            check(0, "odd pull sizes", path);
            continue;
        }
        int same = a.n == b.n && memcmp(a.x, b.x, sizeof(float) * (size_t)a.n) == 0;
        snprintf(detail, sizeof detail, "%ld and %ld samples%s", a.n, b.n,
                 same ? ", identical" : ", different");
        char what[128];
        snprintf(what, sizeof what, "pulls of 1, 7, 1601, ... samples = 1600-sample blocks, %s",
                 names[k]);
        check(same, what, detail);
        free(a.x);
        free(b.x);
    }
}

static void test_bad_files(const char *dir)
{
    char path[1024], err[256], detail[512];
    af_reader *r;

    snprintf(path, sizeof path, "%s/no-such-file.wav", dir);
    r = af_open(path, RATE, AF_QUALITY_BEST, err, sizeof err);
    check(!r && strstr(err, "No such file") != NULL, "missing file refused", err);
    af_close(r);

    r = af_open(dir, RATE, AF_QUALITY_BEST, err, sizeof err);
    check(!r && err[0], "directory refused", err);
    af_close(r);

    snprintf(path, sizeof path, "%s/text.wav", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        for (int i = 0; i < 200; i++)
            fprintf(f, "this is not audio, line %d\n", i);
        fclose(f);
    }
    r = af_open(path, RATE, AF_QUALITY_BEST, err, sizeof err);
    check(!r && strstr(err, "audio") != NULL, "text file named .wav refused", err);
    af_close(r);

    snprintf(path, sizeof path, "%s/zero-bytes.wav", dir);
    f = fopen(path, "w");
    if (f)
        fclose(f);
    r = af_open(path, RATE, AF_QUALITY_BEST, err, sizeof err);
    check(!r && err[0], "zero-byte file refused", err);
    af_close(r);

    /* A WAV header with a truncated RIFF: a few header bytes only. */
    snprintf(path, sizeof path, "%s/header-only.wav", dir);
    f = fopen(path, "wb");
    if (f) {
        fwrite("RIFF\x24\x00\x00\x00WAVEfmt ", 1, 16, f);
        fclose(f);
    }
    r = af_open(path, RATE, AF_QUALITY_BEST, err, sizeof err);
    check(!r && err[0], "truncated header refused", err);
    af_close(r);

    /* A valid WAV without samples: opens, reads nothing, says 0 s. */
    const int rates[] = {16000, 44100};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/empty%d.wav", dir, rates[k]);
        if (write_sf(path, SF_FORMAT_WAV | SF_FORMAT_PCM_16, rates[k], 2, NULL, 0) != 0) {
            check(0, "write an empty WAV", path);
            continue;
        }
        float buf[BLOCK];
        r = af_open(path, RATE, AF_QUALITY_BEST, err, sizeof err);
        long got = r ? af_read(r, buf, BLOCK, err, sizeof err) : -2;
        long again = r ? af_read(r, buf, BLOCK, err, sizeof err) : -2;
        snprintf(detail, sizeof detail, "%d Hz: read %ld then %ld, total %.3f s%s%s", rates[k],
                 got, again, r ? af_total_seconds(r) : -9, r ? "" : ", ", r ? "" : err);
        check(r && got == 0 && again == 0 && af_total_seconds(r) == 0.0 &&
                  af_seconds_read(r) == 0.0,
              "zero-sample WAV reads as empty", detail);
        af_close(r);
    }

    /* A WAV cut off in the middle of its data: what is there is read, no error. */
    snprintf(path, sizeof path, "%s/m16.wav", dir);
    char cut[1024];
    snprintf(cut, sizeof cut, "%s/cut.wav", dir);
    FILE *in = fopen(path, "rb"), *out = fopen(cut, "wb");
    if (in && out) {
        char buf[4096];
        size_t n, total = 0;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0 && total < 20000) {
            fwrite(buf, 1, n, out);
            total += n;
        }
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    decoded d;
    if (decode_blocks(cut, &d) == 0) {
        snprintf(detail, sizeof detail, "%ld samples", d.n);
        check(d.n > 9000 && d.n < 11000, "truncated WAV reads what it has", detail);
        free(d.x);
    } else
        check(0, "truncated WAV reads what it has", d.err);
}

/* af_read_all gives what af_read gives block by block: for the test's files, for a file longer
   than its first buffer (it grows), for an empty file (0) and for a missing one (-1). */
static void test_read_all(const char *dir)
{
    char path[1024], err[256], detail[300];
    enum { LONG_N = RATE * 11 };
    float *tone = malloc(sizeof *tone * LONG_N);
    for (long i = 0; tone && i < LONG_N; i++)
        tone[i] = 0.25f * sinf(2.0f * 3.14159265f * 440.0f * (float)i / RATE);
    snprintf(path, sizeof path, "%s/long11s.wav", dir);
    if (!tone || write_sf(path, SF_FORMAT_WAV | SF_FORMAT_FLOAT, RATE, 1, tone, LONG_N) != 0)
        check(0, "write an 11 s WAV", path);
    free(tone);
    const char *names[] = {"s44100.flac", "m16.wav", "m48000.ogg", "long11s.wav"};
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        decoded blocks;
        float *all = NULL;
        int ok_blocks = decode_blocks(path, &blocks) == 0;
        long n = af_read_all(path, RATE, AF_QUALITY_BEST, &all, err, sizeof err);
        int same = ok_blocks && n == blocks.n && all &&
                   memcmp(all, blocks.x, sizeof(float) * (size_t)n) == 0;
        snprintf(detail, sizeof detail, "%s: %ld samples, by blocks %ld%s%s", names[k], n,
                 ok_blocks ? blocks.n : -1, n < 0 ? ", " : "", n < 0 ? err : "");
        check(same, "af_read_all = af_read's blocks", detail);
        free(all);
        if (ok_blocks)
            free(blocks.x);
    }
    float *none = (float *)1;
    snprintf(path, sizeof path, "%s/no-such-file.wav", dir);
    long n = af_read_all(path, RATE, AF_QUALITY_BEST, &none, err, sizeof err);
    check(n == -1 && none == NULL && strstr(err, "No such file") != NULL, "af_read_all: missing file refused", err);
    snprintf(path, sizeof path, "%s/empty16000.wav", dir);
    n = af_read_all(path, RATE, AF_QUALITY_BEST, &none, err, sizeof err);
    snprintf(detail, sizeof detail, "%ld samples", n);
    check(n == 0, "af_read_all: a WAV without samples gives 0", detail);
    free(none);
}

static void test_bounded_memory(const char *dir)
{
    char path[1024], detail[256];
    /* Ten minutes at 8 kHz mono 16 bit (9.6 MB on disk; 38 MB as 16 kHz floats). */
    int rate = 8000;
    long frames = 600L * rate;
    snprintf(path, sizeof path, "%s/long.wav", dir);
    SF_INFO info;
    memset(&info, 0, sizeof info);
    info.samplerate = rate;
    info.channels = 1;
    info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    SNDFILE *f = sf_open(path, SFM_WRITE, &info);
    if (!f) {
        check(0, "write a long file", sf_strerror(NULL));
        return;
    }
    static float chunk[8000];
    for (long done = 0; done < frames; done += 8000) {
        for (int i = 0; i < 8000; i++)
            chunk[i] = (float)(0.3 * sin((double)(done + i) * 0.05));
        sf_writef_float(f, chunk, 8000);
    }
    sf_close(f);

    long before = max_rss_kb();
    char err[256];
    af_reader *r = af_open(path, RATE, AF_QUALITY_MEDIUM, err, sizeof err);
    float buf[BLOCK];
    long long total = 0;
    long got;
    while (r && (got = af_read(r, buf, BLOCK, err, sizeof err)) > 0)
        total += got;
    double secs = r ? af_seconds_read(r) : 0;
    af_close(r);
    long grew = max_rss_kb() - before;
    snprintf(detail, sizeof detail, "%lld samples, %.1f s, peak memory grew %ld KiB", total, secs,
             grew);
    check(r && llabs(total - 600LL * RATE) <= 2 && secs == 600.0 && grew < 8 * 1024,
          "ten minutes in bounded memory", detail);
    remove(path);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s SRC.wav [WORKDIR]\n", argv[0]);
        return 2;
    }
    const char *src = argv[1];
    if (system("sox --version >/dev/null 2>&1") != 0) {
        printf("SKIP: sox is not installed (apt-get install sox libsox-fmt-all)\n");
        return 77;
    }

    char tmpl[] = "/tmp/test_audio_file.XXXXXX";
    const char *dir;
    int own_dir = argc < 3;
    if (own_dir) {
        dir = mkdtemp(tmpl);
        if (!dir) {
            perror("mkdtemp");
            return 1;
        }
    } else {
        dir = argv[2];
        mkdir(dir, 0755);
    }

    /* The source itself, straight from libsndfile: the reference. */
    decoded ref;
    memset(&ref, 0, sizeof ref);
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *f = sf_open(src, SFM_READ, &info);
    if (!f || info.samplerate != RATE || info.channels != 1) {
        fprintf(stderr, "%s: need a 16 kHz mono file (%s)\n", src,
                f ? "wrong rate or channels" : sf_strerror(NULL));
        return 1;
    }
    ref.n = (long)info.frames;
    ref.x = malloc(sizeof(float) * (size_t)ref.n);
    if (sf_readf_float(f, ref.x, ref.n) != ref.n) {
        fprintf(stderr, "%s: short read\n", src);
        return 1;
    }
    sf_close(f);

    test_bounded_memory(dir); /* first, while the peak memory is still low */
    test_copies(src, dir, &ref);
    test_tones(dir);
    test_channels_and_range(dir);
    test_odd_pulls(dir);
    test_bad_files(dir);
    test_read_all(dir); /* after test_bad_files, which writes empty16000.wav */

    free(ref.x);
    if (own_dir) {
        char q[1200], cmd[1300];
        shell_quote(q, sizeof q, dir);
        snprintf(cmd, sizeof cmd, "rm -rf %s", q);
        run(cmd);
    }
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
