/*
 * wav16.h - a tiny reader for 16-bit PCM mono WAV files (the golden cases' audio.wav).
 *
 * Walks the RIFF chunks (any order, odd sizes padded, unknown chunks skipped), takes the format
 * from 'fmt ' (PCM, or WAVE_FORMAT_EXTENSIBLE with the PCM sub-format) and the samples from
 * 'data', and returns them as float = int16 / 32768, which is how NeMo (soundfile) reads them.
 * Anything else (stereo, 8/24/32-bit, float, compressed, truncated) is refused with a message.
 */
#ifndef EARSHOT_TESTS_WAV16_H
#define EARSHOT_TESTS_WAV16_H

#include <stddef.h>

typedef struct {
    int sample_rate;
    size_t n_samples;
    float *samples;   /* malloc'd [n_samples]; NULL when n_samples is 0 */
} wav16;

/* A whole WAV file held in memory. 0, or -1 with a message in err (may be NULL); *w zeroed then. */
int wav16_parse(const void *bytes, size_t len, wav16 *w, char *err, size_t errlen);
/* Read and parse a file; the message names the path. */
int wav16_load(const char *path, wav16 *w, char *err, size_t errlen);
void wav16_free(wav16 *w);

#endif
