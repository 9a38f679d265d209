/*
 * fuzz_audio_in.c - libFuzzer target: a session's audio path (audio_in) fed hostile messages.
 *
 * The first bytes choose the encoding, rate and channel count (so PCM s16/f32 and Opus at every
 * supported rate are reached); the rest is cut into messages, each preceded by a one-byte
 * length, as a client would send them. Every output sample must be finite and in [-1, 1].
 */
#include "audio_in.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static void check_samples(const float *x, long n)
{
    for (long i = 0; i < n; i++)
        if (!isfinite(x[i]) || x[i] < -1.0f || x[i] > 1.0f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int rates[] = {8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 7999, 48001};
    if (size < 3)
        return 0;
    audio_encoding enc = (audio_encoding)(data[0] % 3);
    int rate = rates[data[1] % (sizeof rates / sizeof rates[0])];
    int channels = 1 + data[2] % 3; /* 3 must be refused */
    char why[256];
    audio_in *a = audio_in_create(enc, rate, channels, 16000, why, sizeof why);
    if (!a)
        return 0;
    const float *out;
    size_t at = 3;
    while (at < size) {
        size_t len = data[at++];
        if (len > size - at)
            len = size - at;
        long n = audio_in_feed(a, data + at, len, &out, why, sizeof why);
        if (n > 0)
            check_samples(out, n);
        at += len;
    }
    long n = audio_in_flush(a, &out);
    if (n > 0)
        check_samples(out, n);
    audio_in_free(a);
    return 0;
}
