/*
 * audio_in.h - one session's audio input: decodes PCM (s16le, f32le) or Opus packets, downmixes
 * stereo, and resamples to the engine's 16 kHz with per-session libsamplerate state, so each
 * binary message becomes 16 kHz mono float samples.
 */
#ifndef EARSHOT_AUDIO_IN_H
#define EARSHOT_AUDIO_IN_H

#include "protocol.h"

#include <stddef.h>

typedef struct audio_in audio_in;

/* NULL with a message in why for an unsupported combination (rate outside 8000..48000, channels
   not 1 or 2, Opus at a rate Opus does not have: 8, 12, 16, 24 or 48 kHz). */
audio_in *audio_in_create(audio_encoding enc, int sample_rate, int channels, int out_rate, char *why,
                          size_t why_len);
void audio_in_free(audio_in *a);

/* Decodes one binary message. Returns the number of output samples written to *out (a buffer
   owned by audio_in, valid until the next call), 0 for a message that yields none yet (an empty
   message included), or -1 with a message in why (PCM length not a whole number of frames,
   corrupt or truncated Opus, audio after the flush). After -1 the session can go on: the
   message is dropped and the next one decodes normally. f32 NaN becomes 0 and every sample is
   clamped to [-1, 1]. */
long audio_in_feed(audio_in *a, const void *data, size_t len, const float **out, char *why, size_t why_len);
/* Flushes the resampler at the end of the stream (same output convention). */
long audio_in_flush(audio_in *a, const float **out);

#endif
