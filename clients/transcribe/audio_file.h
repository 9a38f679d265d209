/*
 * audio_file.h - read any audio file libsndfile reads as mono float samples at one rate.
 *
 * An af_reader decodes a file (WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF, ... whatever the
 * installed libsndfile knows) a block at a time, averages its channels to mono and resamples
 * to the rate the caller asks for with libsamplerate, keeping the converter's state between
 * blocks. Nothing holds the whole file: memory stays the same for a minute or for ten hours
 * (af_read_all is the exception, for short clips kept in memory).
 *
 *     char err[256];
 *     af_reader *r = af_open("talk.flac", 16000, AF_QUALITY_BEST, err, sizeof err);
 *     float buf[1600];
 *     long n;
 *     while ((n = af_read(r, buf, 1600, err, sizeof err)) > 0)
 *         consume(buf, n);
 *     if (n < 0) report(err);
 *     af_close(r);
 *
 * Samples come out in [-1, 1] (integer formats are scaled by libsndfile; anything outside the
 * range, or not finite, is clamped). When the file's rate equals the output rate the samples
 * pass through unchanged, so a 16 kHz WAV and its FLAC copy give identical samples.
 */
#ifndef EARSHOT_AUDIO_FILE_H
#define EARSHOT_AUDIO_FILE_H

#include <stddef.h>

typedef struct af_reader af_reader;

/* libsamplerate converters, best first. */
typedef enum {
    AF_QUALITY_BEST = 0,   /* SRC_SINC_BEST_QUALITY */
    AF_QUALITY_MEDIUM = 1, /* SRC_SINC_MEDIUM_QUALITY */
    AF_QUALITY_FAST = 2    /* SRC_SINC_FASTEST */
} af_quality;

/* Opens path for reading at out_rate Hz. NULL with one sentence in err when the file is
   missing, unreadable, not an audio file libsndfile knows, or has a rate or channel count
   that cannot be converted. */
af_reader *af_open(const char *path, int out_rate, af_quality quality, char *err, size_t errlen);

/* Writes up to max mono samples at out_rate into out. Returns how many (fewer than max only
   near the end), 0 at the end of the file, or -1 with a message when decoding fails. */
long af_read(af_reader *r, float *out, size_t max, char *err, size_t errlen);

/* The file as libsndfile describes it. */
int af_source_rate(const af_reader *r);
int af_source_channels(const af_reader *r);
/* Length of the file in seconds from its header, or -1 when the format does not say. */
double af_total_seconds(const af_reader *r);
/* Seconds of the file decoded so far (exact at the end: the file's true duration). */
double af_seconds_read(const af_reader *r);
/* Output samples delivered so far. */
long long af_samples_out(const af_reader *r);

void af_close(af_reader *r);

/* The whole file at out_rate in one new array (*out, to free()), for the short clips that
   benchmarks and the load test hold in memory. Returns the number of samples (0: the file has
   none), or -1 with one sentence in err and nothing to free. */
long af_read_all(const char *path, int out_rate, af_quality quality, float **out, char *err, size_t errlen);

#endif
