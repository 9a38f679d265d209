/*
 * output.h - earshot-transcribe's output formats: plain text, JSON (one object per file, one
 * per line), SubRip (.srt) and WebVTT (.vtt).
 *
 * The formatters only print; they know nothing of the engine beyond the es_word type, so they
 * can be tested on their own.
 */
#ifndef EARSHOT_OUTPUT_H
#define EARSHOT_OUTPUT_H

#include "earshot.h"

#include <stdio.h>

typedef enum { OUT_TEXT = 0, OUT_JSON, OUT_SRT, OUT_VTT } out_format;

/* Subtitle cues hold at most this many words and span at most this many seconds. */
#define OUT_CUE_MAX_WORDS 7
#define OUT_CUE_MAX_SECONDS 3.5

/* "text", "json", "srt", "vtt" -> 0 and *f set; anything else -> -1. */
int out_parse_format(const char *name, out_format *f);

/* What is known about one transcribed file. */
typedef struct {
    const char *file;
    const char *text;     /* never NULL */
    double duration;      /* seconds of audio in the file */
    const es_word *words; /* n_words of them, in time order */
    int n_words;
    const char *model;
    int chunk_ms;
    const char *decoder; /* "ctc" or "rnnt" */
} out_result;

/* Writes one file's result. multi: several files are being transcribed (text lines get a
   "FILE: " prefix; subtitle documents get a "==> FILE <==" line before them). */
void out_write(FILE *f, out_format fmt, const out_result *r, int multi);

/* A JSON string literal for s: quotes, backslashes and control characters escaped, UTF-8
   passed through, bytes that are not valid UTF-8 replaced by U+FFFD. */
void out_json_string(FILE *f, const char *s);

/* t seconds as HH:MM:SS<sep>mmm (sep ',' for SRT, '.' for WebVTT), rounded to the
   millisecond; negative times print as zero, hours grow past two digits when needed. */
void out_timestamp(char *buf, size_t len, double t, char sep);

#endif
