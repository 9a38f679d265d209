/*
 * audio_in.c - one session's audio input (see audio_in.h): PCM s16le / f32le or one Opus
 * packet per message, stereo averaged to mono, resampled to the engine's rate by libsamplerate.
 *
 * Each message is worked through in pieces of at most PIECE frames: decode or convert a piece
 * into a small scratch buffer, downmix it, resample it onto the end of the output. So the only
 * buffer that grows with the message is the output itself, sized from the message length, and
 * a maximum-size message costs one output's worth of memory, not several copies of it.
 *
 * The resampler keeps its state across messages (a session's audio is one continuous signal; a
 * fresh converter per message would click at every boundary) and is told end_of_input only by
 * audio_in_flush. When the input already is at the output rate there is no resampler at all:
 * 16 kHz mono s16 reaches the engine bit-exact as int16 / 32768, the same samples a WAV file
 * read by the CLI gives, so a live session and a file transcription of the same audio agree.
 */
#include "audio_in.h"

#include <math.h>
#include <opus.h>
#include <samplerate.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIECE 4096          /* frames per conversion piece */
#define OPUS_MAX_MS 120     /* the longest packet Opus defines */
#define SHRINK_FLOATS (1 << 20) /* an output buffer above this is given back when mostly unused */

struct audio_in {
    audio_encoding enc;
    int rate, channels, out_rate;
    double ratio;           /* out_rate / rate */
    SRC_STATE *src;         /* NULL when rate == out_rate */
    OpusDecoder *opus;
    float *pcm;             /* Opus: one packet decoded, interleaved [opus_max * channels] */
    int opus_max;           /* frames in the longest packet at this rate */
    float mono[PIECE];      /* a piece after downmixing */
    float *out;
    size_t out_len, out_cap;
    int flushed;
};

#if defined(__GNUC__)
static void say(char *why, size_t why_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif

static void say(char *why, size_t why_len, const char *fmt, ...)
{
    if (!why || !why_len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

static int is_opus_rate(int r)
{
    return r == 8000 || r == 12000 || r == 16000 || r == 24000 || r == 48000;
}

audio_in *audio_in_create(audio_encoding enc, int sample_rate, int channels, int out_rate, char *why,
                          size_t why_len)
{
    if (enc != AUDIO_PCM_S16LE && enc != AUDIO_PCM_F32LE && enc != AUDIO_OPUS) {
        say(why, why_len, "unknown audio encoding %d", (int)enc);
        return NULL;
    }
    if (sample_rate < 8000 || sample_rate > 48000) {
        say(why, why_len, "sample rate %d Hz is not supported: it must be between 8000 and 48000", sample_rate);
        return NULL;
    }
    if (channels != 1 && channels != 2) {
        say(why, why_len, "%d channels are not supported: use 1 or 2", channels);
        return NULL;
    }
    if (enc == AUDIO_OPUS && !is_opus_rate(sample_rate)) {
        say(why, why_len, "sample rate %d Hz is not supported with Opus: use 8000, 12000, 16000, 24000 or 48000",
            sample_rate);
        return NULL;
    }
    if (out_rate < 8000 || out_rate > 192000) {
        say(why, why_len, "output rate %d Hz is not supported", out_rate);
        return NULL;
    }
    audio_in *a = calloc(1, sizeof *a);
    if (!a) {
        say(why, why_len, "out of memory");
        return NULL;
    }
    a->enc = enc;
    a->rate = sample_rate;
    a->channels = channels;
    a->out_rate = out_rate;
    a->ratio = (double)out_rate / sample_rate;
    if (sample_rate != out_rate) {
        int err = 0;
        a->src = src_new(SRC_SINC_MEDIUM_QUALITY, 1, &err);
        if (!a->src) {
            say(why, why_len, "cannot create the resampler: %s", src_strerror(err));
            audio_in_free(a);
            return NULL;
        }
    }
    if (enc == AUDIO_OPUS) {
        int err = 0;
        a->opus = opus_decoder_create(sample_rate, channels, &err);
        a->opus_max = sample_rate / 1000 * OPUS_MAX_MS;
        a->pcm = malloc((size_t)a->opus_max * channels * sizeof *a->pcm);
        if (!a->opus || !a->pcm) {
            say(why, why_len, "cannot create the Opus decoder: %s", a->opus ? "out of memory" : opus_strerror(err));
            audio_in_free(a);
            return NULL;
        }
    }
    return a;
}

void audio_in_free(audio_in *a)
{
    if (!a)
        return;
    if (a->src)
        src_delete(a->src);
    if (a->opus)
        opus_decoder_destroy(a->opus);
    free(a->pcm);
    free(a->out);
    free(a);
}

/* Makes the output hold at least `need` more samples than out_len. */
static int reserve(audio_in *a, size_t need)
{
    if (a->out_len + need <= a->out_cap)
        return 0;
    size_t cap = a->out_cap ? a->out_cap : 4096;
    while (cap < a->out_len + need)
        cap *= 2;
    float *p = realloc(a->out, cap * sizeof *p);
    if (!p)
        return -1;
    a->out = p;
    a->out_cap = cap;
    return 0;
}

/* Starts a message's output: frees a large buffer left over from an earlier big message when
   this one needs far less, so one burst does not pin memory for the whole session, and
   reserves what this message will produce (the resampler may also release a few samples it
   held back, hence the margin). */
static int begin_output(audio_in *a, size_t in_frames)
{
    size_t need = (size_t)ceil(in_frames * a->ratio) + 256;
    a->out_len = 0;
    if (a->out_cap > SHRINK_FLOATS && need < a->out_cap / 4) {
        free(a->out);
        a->out = NULL;
        a->out_cap = 0;
    }
    return reserve(a, need);
}

/* Appends n mono samples at the input rate to the output, through the resampler if any. */
static int emit(audio_in *a, const float *x, long n, int end_of_input)
{
    if (!a->src) {
        if (reserve(a, (size_t)n))
            return -1;
        memcpy(a->out + a->out_len, x, (size_t)n * sizeof *x);
        a->out_len += (size_t)n;
        return 0;
    }
    for (;;) {
        size_t room = (size_t)ceil(n * a->ratio) + 256;
        if (reserve(a, room))
            return -1;
        SRC_DATA d = {.data_in = x,
                      .data_out = a->out + a->out_len,
                      .input_frames = n,
                      .output_frames = (long)(a->out_cap - a->out_len),
                      .src_ratio = a->ratio,
                      .end_of_input = end_of_input};
        int rc = src_process(a->src, &d);
        if (rc != 0)
            return -1;
        /* A sinc filter rings past full scale on clipped input (found by fuzz_audio_in);
           the engine is promised samples in [-1, 1]. */
        for (long i = 0; i < d.output_frames_gen; i++)
            d.data_out[i] = d.data_out[i] > 1.0f ? 1.0f : d.data_out[i] < -1.0f ? -1.0f : d.data_out[i];
        a->out_len += (size_t)d.output_frames_gen;
        x += d.input_frames_used;
        n -= d.input_frames_used;
        /* Done when the input is used up and, at the end of the input, the tail is drained;
           a call that neither consumed nor produced anything cannot make progress. */
        if (n == 0 && (!end_of_input || d.output_frames_gen == 0))
            return 0;
        if (d.input_frames_used == 0 && d.output_frames_gen == 0)
            return 0;
    }
}

/* Downmixes n interleaved frames (in native floats) to a->mono and emits them. */
static int emit_frames(audio_in *a, const float *x, long n)
{
    if (a->channels == 1)
        return emit(a, x, n, 0);
    for (long i = 0; i < n; i++)
        a->mono[i] = 0.5f * (x[2 * i] + x[2 * i + 1]);
    return emit(a, a->mono, n, 0);
}

/* A client's float made fit for the engine: NaN (no meaning) becomes silence, everything else
   is clamped to [-1, 1], infinities included. */
static float sane(float v)
{
    if (isnan(v))
        return 0.0f;
    return v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
}

static int feed_pcm(audio_in *a, const unsigned char *b, size_t len, char *why, size_t why_len)
{
    size_t bytes_per = (a->enc == AUDIO_PCM_S16LE ? 2 : 4) * (size_t)a->channels;
    if (len % bytes_per) {
        say(why, why_len, "%s audio of %d channel%s comes in frames of %zu bytes; this message has %zu bytes",
            a->enc == AUDIO_PCM_S16LE ? "pcm_s16le" : "pcm_f32le", a->channels, a->channels > 1 ? "s" : "",
            bytes_per, len);
        return -1;
    }
    size_t frames = len / bytes_per;
    if (begin_output(a, frames))
        goto oom;
    float piece[PIECE * 2];
    const long per_piece = PIECE; /* frames; piece holds them interleaved */
    for (size_t done = 0; done < frames;) {
        long n = (long)(frames - done < (size_t)per_piece ? frames - done : (size_t)per_piece);
        long ns = n * a->channels;
        const unsigned char *p = b + done * bytes_per;
        /* Byte by byte: little-endian on the wire whatever the host, and no alignment
           assumptions about where libwebsockets put the payload. */
        if (a->enc == AUDIO_PCM_S16LE) {
            for (long i = 0; i < ns; i++) {
                int16_t v = (int16_t)(uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
                piece[i] = v / 32768.0f;
            }
        } else {
            for (long i = 0; i < ns; i++) {
                uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                             (uint32_t)p[4 * i + 3] << 24;
                float f;
                memcpy(&f, &u, sizeof f);
                piece[i] = sane(f);
            }
        }
        if (emit_frames(a, piece, n))
            goto oom;
        done += (size_t)n;
    }
    return 0;
oom:
    say(why, why_len, "out of memory, or the resampler failed");
    return -1;
}

static int feed_opus(audio_in *a, const unsigned char *b, size_t len, char *why, size_t why_len)
{
    if (len > INT32_MAX) {
        say(why, why_len, "an Opus packet of %zu bytes is too large", len);
        return -1;
    }
    /* Check the packet's framing before decoding, so a bad table of contents is reported as
       such and never reaches the decoder. */
    int ns = opus_decoder_get_nb_samples(a->opus, b, (opus_int32)len);
    if (ns < 0 || ns > a->opus_max) {
        say(why, why_len, "the binary message is not a valid Opus packet (%s)",
            ns < 0 ? opus_strerror(ns) : "longer than 120 ms");
        return -1;
    }
    int n = opus_decode_float(a->opus, b, (opus_int32)len, a->pcm, a->opus_max, 0);
    if (n < 0) {
        /* A decode can fail midway through a frame; reset so the half-updated state cannot
           distort the packets that follow (the next one starts clean: at worst a few
           milliseconds of transition, instead of a session ruined). */
        opus_decoder_ctl(a->opus, OPUS_RESET_STATE);
        say(why, why_len, "the Opus packet could not be decoded (%s)", opus_strerror(n));
        return -1;
    }
    if (begin_output(a, (size_t)n))
        goto oom;
    for (int done = 0; done < n;) {
        int k = n - done < PIECE ? n - done : PIECE;
        for (int i = 0; i < k * a->channels; i++) /* Opus floats can overshoot [-1, 1] */
            a->pcm[done * a->channels + i] = sane(a->pcm[done * a->channels + i]);
        if (emit_frames(a, a->pcm + (size_t)done * a->channels, k))
            goto oom;
        done += k;
    }
    return 0;
oom:
    say(why, why_len, "out of memory, or the resampler failed");
    return -1;
}

long audio_in_feed(audio_in *a, const void *data, size_t len, const float **out, char *why, size_t why_len)
{
    *out = NULL;
    if (a->flushed) {
        say(why, why_len, "audio after the end of the stream");
        return -1;
    }
    /* An empty message carries nothing; for Opus it must not reach the decoder, which would
       take it for a lost packet and invent audio. */
    if (len == 0 || !data) {
        a->out_len = 0;
        *out = a->out;
        return 0;
    }
    int rc = a->enc == AUDIO_OPUS ? feed_opus(a, data, len, why, why_len) : feed_pcm(a, data, len, why, why_len);
    if (rc)
        return -1;
    *out = a->out;
    return (long)a->out_len;
}

long audio_in_flush(audio_in *a, const float **out)
{
    *out = NULL;
    if (begin_output(a, 0))
        return -1;
    if (a->src && !a->flushed) {
        float none = 0;
        if (emit(a, &none, 0, 1))
            return -1;
    }
    a->flushed = 1;
    *out = a->out;
    return (long)a->out_len;
}
