/*
 * segmenter.h - turns a stream's growing token list into the protocol's segments: the open
 * segment's partial text, and finals at endpoints (a run of blank frames after the last token
 * longer than endpointing_ms, as the decoder sees it), at a maximum segment length, on finalize
 * and at the end. The decoder is never reset between segments, so cutting the transcript into
 * segments cannot change its words.
 */
#ifndef EARSHOT_SEGMENTER_H
#define EARSHOT_SEGMENTER_H

#include "earshot.h"

typedef enum { SEG_NONE, SEG_PARTIAL, SEG_FINAL } seg_event_kind;

typedef struct {
    seg_event_kind kind;
    int segment;           /* index from 0 */
    char *text;            /* malloc'd */
    double start, end;     /* seconds of the session's audio (clamped to the audio fed so far) */
    int token_start, token_end; /* the segment's tokens: [token_start, token_end) of es_stream_tokens;
                                   a partial's may run on into es_stream_pending_tokens */
    es_word *words;        /* finals only; free with es_words_free */
    int n_words;
    const char *reason;    /* finals: "endpoint", "finalize" or "end" */
} seg_event;

typedef struct segmenter segmenter;

/* defer_endpoints: an endpoint closes the segment only once the next token is decoded and
   begins a word (or at close), never on silence alone. For file jobs, where nobody waits for
   the final: the segments' words are then exactly the stream's words. */
segmenter *segmenter_create(const es_engine *e, int endpointing_ms, double max_segment_s, int defer_endpoints);
void segmenter_free(segmenter *s);
/* After a step: looks at the tokens and frames decoded so far and returns at most one final
   (when an endpoint was reached) followed by at most one partial (when the open segment's text
   changed). Writes up to 2 events to ev and returns how many. */
int segmenter_update(segmenter *s, const es_stream *st, seg_event ev[2]);
/* Closes the open segment now (finalize, or the end of the stream): one final if it has text. */
int segmenter_close(segmenter *s, const es_stream *st, const char *reason, seg_event ev[1]);
void seg_event_clear(seg_event *ev);

#endif
