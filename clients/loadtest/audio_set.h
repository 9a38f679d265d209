/*
 * audio_set.h - the speech the load test's sessions stream, decoded once and shared by all
 * of them: every file of --audio (one file, or each audio file of a folder, in name order),
 * read with libsndfile and resampled to 16 kHz mono (clients/transcribe/audio_file.h), held as
 * 16-bit PCM or, for --encoding opus, as Opus packets of one message each (encoded once here,
 * not per session: thousands of live encoders would load the client more than the server).
 *
 * A reference transcript for FILE.ext is FILE.txt beside it, when there is one.
 */
#ifndef EARSHOT_LT_AUDIO_SET_H
#define EARSHOT_LT_AUDIO_SET_H

#include <stddef.h>
#include <stdint.h>

#define AS_RATE 16000

typedef struct {
    char *path;
    int16_t *pcm;          /* PCM: n samples */
    long n;                /* samples the file takes in a session's audio (Opus: whole packets) */
    unsigned char **pkt;   /* Opus: n_pkt packets of frame samples each (the last padded) */
    int *pkt_len;
    long n_pkt;
    char **ref;            /* normalised reference words (wer.h), NULL when no .txt */
    int n_ref;
} as_file;

typedef struct {
    as_file *f;
    int n;
    int opus;
    int frame; /* samples per message */
    double seconds; /* all files together */
} audio_set;

/* Loads path (a file or a folder). frame: samples per message (Opus: a valid Opus frame size
   at 16 kHz). 0, or -1 with one sentence in err. */
int audio_set_load(audio_set *a, const char *path, int opus, int frame, char *err, size_t errlen);
void audio_set_free(audio_set *a);

#endif
