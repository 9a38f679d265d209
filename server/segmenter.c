/*
 * segmenter.c - cuts a stream's token list into the protocol's segments (see segmenter.h).
 *
 * The segmenter never touches the decoder: it only chooses where in the ever-growing token
 * list one segment ends and the next begins. Segment k is the run of tokens [start_k, start_k+1),
 * so the segments' tokens, put back together, are exactly the stream's tokens.
 *
 * Cut points are found from the tokens themselves, not from when update happened to be called:
 *   - endpoint: a gap of at least endpointing_ms between two tokens (frames with no token in
 *     between, as the decoder saw them) when the token after it begins a word, or after the
 *     last token when the decoder has gone that far past it without a new one (unless
 *     defer_endpoints: then only the first kind);
 *   - maximum length: the first token at least max_segment_s after the segment's first token
 *     that begins a new word (so no word is split between two segments).
 * So the same audio gives the same segments whatever the chunk size or the batching, except
 * where finalize or the end close a segment early. When one step's tokens contain several cut
 * points, one final is returned per update (the header promises at most one); the others are
 * found again, from the tokens, at the next update, which is at most one chunk later.
 *
 * Texts: a segment's text is es_engine_tokens_text of its tokens. SentencePiece drops the
 * leading word mark of a text, so when a segment begins with a word-starting token, its text
 * is exactly the continuation of the previous one after a single space, and finals joined with
 * single spaces give es_stream_text. A maximum-length cut and an endpoint between two tokens
 * check that directly. An endpoint after the last token cannot wait to see whether the next
 * token starts a word (the final is due when the silence is long enough, before any next token
 * exists); a trained model starts a new word after a pause, but a model that continues a word
 * across a long silence (the random-weight test models do) gets a space there that
 * es_stream_text does not have. File jobs defer endpoints, so theirs never do. finalize cuts where the
 * client asks, inside a word if need be. Segments whose tokens render no text at all are
 * dropped silently (no final with empty text), without consuming a segment index.
 *
 * With a language model the decoder settles tokens late (at a pause, or after a bounded delay):
 * partials show the settled tokens plus its pending guess, and an endpoint after the last
 * token counts the silence only up to es_stream_settled_frames, where the decoding is final.
 * Finals only ever hold settled tokens.
 */
#include "segmenter.h"

#include <stdlib.h>
#include <string.h>

struct segmenter {
    const es_engine *e;
    int endpointing_ms;   /* 0: off */
    double max_segment_s; /* <= 0: off */
    int defer_endpoints;  /* cut at an endpoint only when the next token is there */
    double fs;            /* seconds per encoder frame */
    int start;            /* index of the open segment's first token */
    int segment;          /* index of the open segment */
    char *last_partial;   /* text of the last partial of the open segment ("" after a final) */
};

segmenter *segmenter_create(const es_engine *e, int endpointing_ms, double max_segment_s, int defer_endpoints)
{
    segmenter *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->e = e;
    s->endpointing_ms = endpointing_ms > 0 ? endpointing_ms : 0;
    s->max_segment_s = max_segment_s > 0 ? max_segment_s : 0;
    s->defer_endpoints = defer_endpoints;
    s->fs = es_engine_frame_seconds(e);
    s->last_partial = calloc(1, 1);
    if (!s->last_partial) {
        free(s);
        return NULL;
    }
    return s;
}

void segmenter_free(segmenter *s)
{
    if (!s)
        return;
    free(s->last_partial);
    free(s);
}

void seg_event_clear(seg_event *ev)
{
    if (!ev)
        return;
    free(ev->text);
    es_words_free(ev->words, ev->n_words);
    memset(ev, 0, sizeof *ev);
}

/* Whether `gap` frames without a token reach the endpointing time. The small slack keeps a
   gap of exactly endpointing_ms (e.g. 10 frames of 0.08 s against 800 ms) from missing by a
   rounding error. */
static int long_gap(const segmenter *s, int gap)
{
    return s->endpointing_ms > 0 && gap > 0 && gap * s->fs * 1000.0 + 1e-6 >= s->endpointing_ms;
}

/* Whether cutting the tokens [from, n) before index k keeps the text: the first part has text,
   and the whole renders as first part + " " + second part (token k begins a word). Checked on
   the rendered texts, so whatever the vocabulary's pieces look like, a cut that passes cannot
   change the transcript. */
static int clean_cut(const segmenter *s, const es_token *t, int from, int k)
{
    char *a = es_engine_tokens_text(s->e, t + from, k - from);
    char *b = es_engine_tokens_text(s->e, t + k, 1);
    char *ab = es_engine_tokens_text(s->e, t + from, k - from + 1);
    int ok = 0;
    if (a && b && ab && a[0] && b[0]) {
        size_t la = strlen(a), lb = strlen(b);
        ok = strlen(ab) == la + 1 + lb && !memcmp(ab, a, la) && ab[la] == ' ' && !memcmp(ab + la + 1, b, lb);
    }
    free(a);
    free(b);
    free(ab);
    return ok;
}

/* The index at which the open segment [s->start, n) should be cut, or -1; n itself for an
   endpoint after the last token (the decoding is final up to frame `frames`). */
static int find_cut(const segmenter *s, const es_token *t, int n, int frames)
{
    if (n <= s->start)
        return -1;
    double first = t[s->start].frame * s->fs;
    for (int k = s->start + 1; k < n; k++) {
        if (long_gap(s, t[k].frame - t[k - 1].frame - 1) && clean_cut(s, t, s->start, k))
            return k;
        /* not between two tokens of one frame (RNNT), so segment times never overlap */
        if (s->max_segment_s > 0 && t[k].frame > t[k - 1].frame && t[k].frame * s->fs - first >= s->max_segment_s &&
            clean_cut(s, t, s->start, k))
            return k;
    }
    if (!s->defer_endpoints && long_gap(s, frames - t[n - 1].frame - 1))
        return n;
    return -1;
}

static double clamp_time(double t, double limit)
{
    return t > limit ? limit : t;
}

/* Fills ev with the segment of tokens [from, end) of t and its kind; returns 0, or -1 when it
   has no text (or memory ran out), in which case ev holds nothing. */
static int describe(segmenter *s, const es_stream *st, const es_token *t, int from, int end, seg_event_kind kind,
                    const char *reason, seg_event *ev)
{
    memset(ev, 0, sizeof *ev);
    int n = end - from;
    if (n <= 0)
        return -1;
    char *text = es_engine_tokens_text(s->e, t + from, n);
    if (!text || !text[0]) {
        free(text);
        return -1;
    }
    ev->kind = kind;
    ev->segment = s->segment;
    ev->token_start = s->start;
    ev->token_end = s->start + n;
    ev->text = text;
    /* The encoder's last frame can reach past the audio (the features are padded to whole
       frames); times are seconds of the session's audio, so they stop where it stops. */
    double limit = es_stream_audio_seconds(st);
    ev->start = clamp_time(t[from].frame * s->fs, limit);
    ev->end = clamp_time((t[end - 1].frame + 1) * s->fs, limit);
    if (kind == SEG_FINAL) {
        ev->reason = reason;
        int nw = es_engine_tokens_words(s->e, t + from, n, &ev->words);
        ev->n_words = nw > 0 ? nw : 0;
        if (nw <= 0)
            ev->words = NULL;
        for (int i = 0; i < ev->n_words; i++) {
            ev->words[i].start = clamp_time(ev->words[i].start, limit);
            ev->words[i].end = clamp_time(ev->words[i].end, limit);
        }
    }
    return 0;
}

/* Closes the open segment at token index `end`: a final in ev when it has text. Returns the
   number of events written (0 or 1). */
static int cut(segmenter *s, const es_stream *st, const es_token *t, int end, const char *reason, seg_event *ev)
{
    int k = describe(s, st, t, s->start, end, SEG_FINAL, reason, ev) == 0;
    if (k)
        s->segment++;
    s->start = end;
    s->last_partial[0] = '\0';
    return k;
}

int segmenter_update(segmenter *s, const es_stream *st, seg_event ev[2])
{
    int n = 0, k = 0, n_pending = 0;
    const es_token *t = es_stream_tokens(st, &n);
    const es_token *pending = es_stream_pending_tokens(st, &n_pending);
    int at = find_cut(s, t, n, es_stream_settled_frames(st));
    if (at >= 0)
        k += cut(s, st, t, at, "endpoint", &ev[k]);

    /* the partial shows the decoder's pending guess too: settled tokens can lag by a pause */
    seg_event p;
    es_token *joined = NULL;
    int n_open = n - s->start;
    if (n_pending > 0 && (joined = malloc(sizeof *joined * (size_t)(n_open + n_pending)))) {
        if (n_open > 0)
            memcpy(joined, t + s->start, sizeof *joined * (size_t)n_open);
        memcpy(joined + n_open, pending, sizeof *joined * (size_t)n_pending);
    }
    int described = joined ? describe(s, st, joined, 0, n_open + n_pending, SEG_PARTIAL, NULL, &p)
                           : describe(s, st, t, s->start, n, SEG_PARTIAL, NULL, &p);
    free(joined);
    if (described == 0) {
        if (strcmp(p.text, s->last_partial) != 0) {
            size_t len = strlen(p.text) + 1;
            char *copy = malloc(len);
            if (copy) { /* without memory to remember it, send it anyway; it repeats at worst */
                memcpy(copy, p.text, len);
                free(s->last_partial);
                s->last_partial = copy;
            }
            ev[k++] = p;
        } else {
            seg_event_clear(&p);
        }
    }
    return k;
}

int segmenter_close(segmenter *s, const es_stream *st, const char *reason, seg_event ev[1])
{
    int n = 0;
    const es_token *t = es_stream_tokens(st, &n);
    if (n <= s->start) {
        memset(&ev[0], 0, sizeof ev[0]);
        return 0;
    }
    return cut(s, st, t, n, reason, &ev[0]);
}
