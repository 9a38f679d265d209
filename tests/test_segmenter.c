/*
 * test_segmenter.c - the segmenter (server/segmenter.c) on a real engine and stream: a golden
 * case's audio, alone and with silence inserted, streamed in blocks like a live session, with
 * segmenter_update after every step and segmenter_close("end") at the end. Checks:
 *   - the finals' texts joined with single spaces are the stream's whole text (es_stream_text),
 *     whatever the endpointing, the maximum segment length and the feeding block size;
 *   - with endpointing off there is one final (reason "end"); with a short endpointing time and
 *     silence inserted, "endpoint" finals appear before the end;
 *   - a maximum segment length cuts long segments, only between words;
 *   - partials come only when the open segment's text changed, are never empty and carry the
 *     open segment's index; finals are numbered 0, 1, 2, ...;
 *   - segment and word times are ordered and inside the audio;
 *   - close("end") flushes the last segment, and "finalize" closes one mid-stream;
 *   - the same audio fed in different block sizes gives the same segments.
 *
 *   test_segmenter MODEL.safetensors AUDIO.wav [LM.arpa]
 *
 * With an LM the engine decodes CTC with the beam search, which settles tokens late (at
 * pauses, after a bounded delay, at finalize); every check above must still hold.
 * The model is a converted golden model (its random weights emit tokens on speech and runs of
 * blanks elsewhere, which is what endpointing looks at). The last line printed is
 * "N passed, N failed"; the exit status is non-zero on any failure.
 */
#include "segmenter.h"
#include "wav16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* One event as the test keeps it. */
typedef struct {
    seg_event_kind kind;
    int segment;
    char *text;
    double start, end;
    const char *reason;
    int n_words;
    char *words;         /* the words joined by spaces */
    double w_first, w_last; /* first word's start, last word's end */
    int words_ordered;   /* every word inside [start, end], in order */
    double at;           /* seconds of audio fed when it was emitted */
    int token_start, token_end;
} rec;

typedef struct {
    rec *r;
    int n, cap;
    char *full; /* es_stream_text at the end */
    double audio_s;
    int n_tokens;
    es_token *tokens; /* the stream's tokens at the end */
    const es_engine *e;
    double fs;
} run_log;

static void keep(run_log *L, seg_event *ev, double at)
{
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 64;
        L->r = realloc(L->r, (size_t)L->cap * sizeof *L->r);
    }
    rec *r = &L->r[L->n++];
    memset(r, 0, sizeof *r);
    r->kind = ev->kind;
    r->segment = ev->segment;
    r->text = ev->text; /* taken over */
    ev->text = NULL;
    r->start = ev->start;
    r->end = ev->end;
    r->reason = ev->reason;
    r->token_start = ev->token_start;
    r->token_end = ev->token_end;
    r->n_words = ev->n_words;
    r->at = at;
    size_t len = 1;
    for (int i = 0; i < ev->n_words; i++)
        len += strlen(ev->words[i].word) + 1;
    r->words = calloc(len, 1);
    r->words_ordered = 1;
    double prev = ev->start - 1e-9;
    for (int i = 0; i < ev->n_words; i++) {
        if (i)
            strcat(r->words, " ");
        strcat(r->words, ev->words[i].word);
        const es_word *w = &ev->words[i];
        if (w->start < prev || w->end < w->start || w->start < ev->start - 1e-9 || w->end > ev->end + 1e-9)
            r->words_ordered = 0;
        prev = w->start;
    }
    if (ev->n_words) {
        r->w_first = ev->words[0].start;
        r->w_last = ev->words[ev->n_words - 1].end;
    }
    seg_event_clear(ev);
}

static void log_free(run_log *L)
{
    for (int i = 0; i < L->n; i++) {
        free(L->r[i].text);
        free(L->r[i].words);
    }
    free(L->r);
    free(L->full);
    free(L->tokens);
    memset(L, 0, sizeof *L);
}

/* Streams x through a fresh stream in blocks of `block` samples, updating the segmenter after
   every step; with finalize_at > 0, closes the open segment ("finalize") once that many
   seconds were fed. Returns 0, or -1 when the engine failed. */
static int run_with(es_engine *e, const float *x, size_t n, size_t block, int endpointing_ms, double max_seg_s,
                    double finalize_at, int defer_endpoints, run_log *L)
{
    memset(L, 0, sizeof *L);
    char err[256];
    es_stream_params sp = es_stream_default_params(e);
    es_stream *st = es_stream_create(e, &sp, err, sizeof err);
    segmenter *sg = st ? segmenter_create(e, endpointing_ms, max_seg_s, defer_endpoints) : NULL;
    if (!st || !sg) {
        printf("  cannot create a stream or segmenter: %s\n", err);
        es_stream_free(st);
        return -1;
    }
    seg_event ev[2];
    int finalized = 0;
    for (size_t at = 0; at <= n; at += block) {
        if (at < n) {
            size_t k = n - at < block ? n - at : block;
            es_stream_accept_audio(st, x + at, k);
        } else {
            es_stream_end_audio(st);
        }
        while (es_stream_ready(st)) {
            if (es_engine_step(e, &st, 1, err, sizeof err) != 0) {
                printf("  step failed: %s\n", err);
                segmenter_free(sg);
                es_stream_free(st);
                return -1;
            }
            int k = segmenter_update(sg, st, ev);
            for (int i = 0; i < k; i++)
                keep(L, &ev[i], es_stream_audio_seconds(st));
        }
        if (finalize_at > 0 && !finalized && at / 16000.0 >= finalize_at) {
            finalized = 1;
            es_stream_settle(st); /* as the server does: the decoder's pending guess belongs here */
            if (segmenter_close(sg, st, "finalize", ev) > 0)
                keep(L, &ev[0], es_stream_audio_seconds(st));
        }
    }
    if (segmenter_close(sg, st, "end", ev) > 0)
        keep(L, &ev[0], es_stream_audio_seconds(st));
    L->full = es_stream_text(st);
    L->audio_s = es_stream_audio_seconds(st);
    const es_token *t = es_stream_tokens(st, &L->n_tokens);
    L->tokens = malloc(((size_t)L->n_tokens + 1) * sizeof *t);
    memcpy(L->tokens, t, (size_t)L->n_tokens * sizeof *t);
    L->e = e;
    L->fs = es_engine_frame_seconds(e);
    segmenter_free(sg);
    es_stream_free(st);
    return 0;
}

static int run(es_engine *e, const float *x, size_t n, size_t block, int endpointing_ms, double max_seg_s,
               double finalize_at, run_log *L)
{
    return run_with(e, x, n, block, endpointing_ms, max_seg_s, finalize_at, 0, L);
}

/* The finals' texts joined with single spaces; malloc'd. */
static char *joined_finals(const run_log *L, int *n_finals)
{
    size_t len = 1;
    for (int i = 0; i < L->n; i++)
        if (L->r[i].kind == SEG_FINAL)
            len += strlen(L->r[i].text) + 1;
    char *s = calloc(len, 1);
    int nf = 0;
    for (int i = 0; i < L->n; i++)
        if (L->r[i].kind == SEG_FINAL) {
            if (nf++)
                strcat(s, " ");
            strcat(s, L->r[i].text);
        }
    *n_finals = nf;
    return s;
}

static int count_reason(const run_log *L, const char *reason)
{
    int n = 0;
    for (int i = 0; i < L->n; i++)
        if (L->r[i].kind == SEG_FINAL && !strcmp(L->r[i].reason, reason))
            n++;
    return n;
}

static void print_log(const run_log *L)
{
    for (int i = 0; i < L->n; i++) {
        const rec *r = &L->r[i];
        if (r->kind == SEG_FINAL)
            printf("    @%.2fs final   %d [%.3f, %.3f] %-8s \"%s\" (%d words)\n", r->at, r->segment, r->start, r->end,
                   r->reason, r->text, r->n_words);
    }
}

static void strip_spaces(char *x)
{
    size_t o = 0;
    for (size_t i = 0; x[i]; i++)
        if (x[i] != ' ')
            x[o++] = x[i];
    x[o] = '\0';
}

/* Whether tokens [a, b) have no text (a segment of them is dropped, not sent empty). */
static int renders_empty(const run_log *L, int a, int b)
{
    char *t = es_engine_tokens_text(L->e, L->tokens + a, b - a);
    int empty = !t[0];
    free(t);
    return empty;
}

/* Whitespace runs made single spaces, and none at the ends, in place. Vocabularies with a lone
   "▁" piece put double and trailing spaces in a text, which words and segments cannot keep. */
static void squeeze(char *x)
{
    size_t o = 0;
    for (size_t i = 0; x[i]; i++)
        if (x[i] != ' ' || (o > 0 && x[o - 1] != ' '))
            x[o++] = x[i];
    while (o > 0 && x[o - 1] == ' ')
        o--;
    x[o] = '\0';
}

static int squeeze_eq(const char *a, const char *b)
{
    char *x = malloc(strlen(a) + 1), *y = malloc(strlen(b) + 1);
    strcpy(x, a);
    strcpy(y, b);
    squeeze(x);
    squeeze(y);
    int eq = !strcmp(x, y);
    free(x);
    free(y);
    return eq;
}

/* Whether a segment starting at token k continues the text after one space: token k begins a
   word (es_engine_tokens_text of the prefix, of token k alone and of both agree on it). */
static int word_start(const run_log *L, int k)
{
    char *a = es_engine_tokens_text(L->e, L->tokens, k);
    char *b = es_engine_tokens_text(L->e, L->tokens + k, 1);
    char *ab = es_engine_tokens_text(L->e, L->tokens, k + 1);
    size_t la = strlen(a);
    int ok = a[0] && b[0] && strlen(ab) == la + 1 + strlen(b) && !strncmp(ab, a, la) && ab[la] == ' ' &&
             !strcmp(ab + la + 1, b);
    free(a);
    free(b);
    free(ab);
    return ok;
}

/* The checks every run must pass. With allow_mid_word, cuts may fall inside a word (an endpoint
   after which the random model continues a word, or finalize); then the joined finals equal the
   stream text up to the spaces at those cuts, and exactly wherever each cut starts a word. */
static void check_run(const char *name, const run_log *L, int allow_mid_word)
{
    /* The finals partition the tokens: each covers the tokens of its frames [start, end), the
       next begins where it ended, and together they cover them all. */
    int next = 0, partition = 1, texts = 1, mid_word = 0;
    for (int i = 0; i < L->n; i++) {
        const rec *r = &L->r[i];
        if (r->kind != SEG_FINAL)
            continue;
        int a = r->token_start, b = r->token_end;
        if (a > next && a <= L->n_tokens && !renders_empty(L, next, a))
            partition = 0; /* only tokens without text may be skipped: a dropped segment */
        if (a > next)
            next = a;
        /* times: its first token's frame start and its last token's frame end, or the audio's
           end at the time, where the encoder's padded last frame reaches past it */
        if (a != next || b <= a || b > L->n_tokens || r->start > L->tokens[a].frame * L->fs + 1e-9 ||
            r->end > (L->tokens[b - 1].frame + 1) * L->fs + 1e-9 || r->end > r->at + 1e-9)
            partition = 0;
        else {
            char *t = es_engine_tokens_text(L->e, L->tokens + a, b - a);
            if (strcmp(t, r->text))
                texts = 0;
            free(t);
            if (a > 0 && !word_start(L, a))
                mid_word++;
        }
        next = b;
    }
    if (next < L->n_tokens && !renders_empty(L, next, L->n_tokens))
        partition = 0;
    CHECK(partition && texts, "%s: finals cover every token once, in order, with their own text", name);

    int nf;
    char *j = joined_finals(L, &nf);
    if (mid_word && allow_mid_word) {
        char *f = malloc(strlen(L->full) + 1);
        strcpy(f, L->full);
        strip_spaces(f);
        strip_spaces(j);
        CHECK(!strcmp(j, f), "%s: finals joined == stream text but for spaces", name);
        printf("  (%s: %d cut%s inside a word)\n", name, mid_word, mid_word > 1 ? "s" : "");
        free(f);
    } else {
        /* exact, unless the stream's text itself has double or outer spaces (see squeeze) */
        char *f = malloc(strlen(L->full) + 1);
        strcpy(f, L->full);
        squeeze(f);
        int extra = strcmp(f, L->full) != 0;
        if (extra)
            printf("  (%s: the stream text has extra spaces; compared squeezed)\n", name);
        free(f);
        CHECK(extra ? squeeze_eq(j, L->full) : !strcmp(j, L->full), "%s: finals joined == stream text\n      finals: \"%s\"\n      stream: \"%s\"",
              name, j, L->full);
    }
    free(j);

    int seg = 0, ordered = 1, partials_ok = 1, words_ok = 1, inside = 1;
    double prev_end = 0;
    const char *last_partial = "";
    int last_partial_seg = -1;
    for (int i = 0; i < L->n; i++) {
        const rec *r = &L->r[i];
        if (r->start < -1e-9 || r->end > L->audio_s + 1e-6 || r->end < r->start)
            inside = 0;
        if (r->kind == SEG_PARTIAL) {
            /* the open segment's index; non-empty; different from the last partial of it */
            if (r->segment != seg || !r->text[0] ||
                (last_partial_seg == r->segment && !strcmp(last_partial, r->text)))
                partials_ok = 0;
            if (r->start < prev_end - 1e-9)
                ordered = 0;
            last_partial = r->text;
            last_partial_seg = r->segment;
        } else {
            if (r->segment != seg || !r->text[0] || r->start < prev_end - 1e-9)
                ordered = 0;
            if (!r->words_ordered || r->n_words < 1)
                words_ok = 0;
            /* words joined with spaces give the text, up to its extra spaces */
            if (!squeeze_eq(r->words, r->text))
                words_ok = 0;
            prev_end = r->end;
            seg++;
        }
    }
    CHECK(ordered, "%s: finals numbered 0.., segments in order, not overlapping", name);
    CHECK(inside, "%s: every segment inside the audio [0, %.3f] with end >= start", name, L->audio_s);
    CHECK(partials_ok, "%s: partials non-empty, of the open segment, only when the text changed", name);
    CHECK(words_ok, "%s: finals' words inside their segment, in order, joined == text", name);
    if (L->full[0]) {
        const rec *last = NULL;
        for (int i = 0; i < L->n; i++)
            if (L->r[i].kind == SEG_FINAL)
                last = &L->r[i];
        CHECK(last && last->end <= L->audio_s + 1e-6, "%s: a last final exists", name);
    }
}

/* Endpoints exactly where the token gaps reach endpointing_ms: none inside a final, and every
   "endpoint" final followed by such a gap (to the next token, or to the end of the decoding). */
static void check_gaps(const char *name, const run_log *L, int endpointing_ms)
{
    int inside_ok = 1, after_ok = 1;
    for (int i = 0; i < L->n; i++) {
        const rec *r = &L->r[i];
        if (r->kind != SEG_FINAL)
            continue;
        /* a long gap may stay inside a final only before a token that continues a word */
        for (int k = r->token_start + 1; k < r->token_end; k++)
            if ((L->tokens[k].frame - L->tokens[k - 1].frame - 1) * L->fs * 1000 + 1e-6 >= endpointing_ms &&
                word_start(L, k) && !renders_empty(L, r->token_start, k))
                inside_ok = 0;
        if (!strcmp(r->reason, "endpoint") && r->token_end < L->n_tokens &&
            (L->tokens[r->token_end].frame - L->tokens[r->token_end - 1].frame - 1) * L->fs * 1000 + 1e-6 <
                endpointing_ms)
            after_ok = 0;
    }
    CHECK(inside_ok, "%s: no gap of %d ms before a word inside a final", name, endpointing_ms);
    CHECK(after_ok, "%s: every endpoint final is followed by a gap of %d ms", name, endpointing_ms);
}

static float *concat(const float *a, size_t na, size_t sil_before, size_t sil_between, const float *b, size_t nb,
                     size_t sil_after, size_t *n)
{
    *n = sil_before + na + sil_between + nb + sil_after;
    float *x = calloc(*n, sizeof *x);
    memcpy(x + sil_before, a, na * sizeof *a);
    memcpy(x + sil_before + na + sil_between, b, nb * sizeof *b);
    return x;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: test_segmenter MODEL.safetensors AUDIO.wav [LM.arpa]\n");
        return 2;
    }
    char err[256];
    wav16 w;
    if (wav16_load(argv[2], &w, err, sizeof err) != 0 || w.sample_rate != 16000) {
        fprintf(stderr, "test_segmenter: %s\n", w.sample_rate != 16000 ? "audio is not 16 kHz" : err);
        return 2;
    }
    es_engine_params ep = es_engine_default_params();
    ep.max_streams = 2;
    ep.lm_path = argc == 4 ? argv[3] : NULL;
    es_engine *e = es_engine_create(argv[1], &ep, err, sizeof err);
    if (!e) {
        fprintf(stderr, "test_segmenter: %s\n", err);
        wav16_free(&w);
        return 2;
    }
    double fs = es_engine_frame_seconds(e);
    printf("model %s: %.3f s per frame; audio %.2f s\n", es_engine_model_name(e), fs, w.n_samples / 16000.0);

    /* The cases: the audio alone, and with 2 s of silence before, between two copies and after. */
    size_t n_sil;
    float *sil = concat(w.samples, w.n_samples, 32000, 32000, w.samples, w.n_samples, 32000, &n_sil);
    struct {
        const char *name;
        const float *x;
        size_t n;
    } audio[] = {{"speech", w.samples, w.n_samples}, {"speech+silence", sil, n_sil}};

    /* A short endpointing time: a few frames of blanks. */
    int short_ep = (int)ceil(3 * fs * 1000);
    run_log L, ref;
    char name[160];

    for (int a = 0; a < 2; a++) {
        /* endpointing off: one final, at the end */
        snprintf(name, sizeof name, "%s, endpointing off", audio[a].name);
        if (run(e, audio[a].x, audio[a].n, 1600, 0, 0, 0, &ref) != 0)
            return 1;
        printf("  %s: %d tokens, text \"%s\"\n", name, ref.n_tokens, ref.full);
        print_log(&ref);
        check_run(name, &ref, 0);
        int nf;
        free(joined_finals(&ref, &nf));
        CHECK(nf == (ref.full[0] ? 1 : 0) && count_reason(&ref, "end") == nf, "%s: one final, reason end (%d)", name,
              nf);

        /* short endpointing */
        snprintf(name, sizeof name, "%s, endpointing %d ms", audio[a].name, short_ep);
        if (run(e, audio[a].x, audio[a].n, 1600, short_ep, 0, 0, &L) != 0)
            return 1;
        print_log(&L);
        check_run(name, &L, 1);
        check_gaps(name, &L, short_ep);
        CHECK(!strcmp(L.full, ref.full), "%s: same transcript as endpointing off", name);
        if (a == 1) {
            /* finals at the inserted silences, before the audio ended */
            int early = 0;
            for (int i = 0; i < L.n; i++)
                if (L.r[i].kind == SEG_FINAL && !strcmp(L.r[i].reason, "endpoint") && L.r[i].at < L.audio_s - 1.0)
                    early++;
            CHECK(count_reason(&L, "endpoint") >= 2 && early >= 1,
                  "%s: endpoint finals at the silences (%d endpoints, %d before the end)", name,
                  count_reason(&L, "endpoint"), early);
            /* a final's end is followed by at least endpointing_ms of no token in the stream */
            CHECK(L.r[0].kind == SEG_PARTIAL || L.r[0].kind == SEG_FINAL, "%s: events", name);
        }
        /* the same segments whatever the feeding block */
        run_log L2;
        if (run(e, audio[a].x, audio[a].n, 16000, short_ep, 0, 0, &L2) != 0)
            return 1;
        int same = 1, i1 = 0, i2 = 0;
        for (;;) {
            while (i1 < L.n && L.r[i1].kind != SEG_FINAL)
                i1++;
            while (i2 < L2.n && L2.r[i2].kind != SEG_FINAL)
                i2++;
            if (i1 == L.n || i2 == L2.n) {
                same = same && i1 == L.n && i2 == L2.n;
                break;
            }
            if (strcmp(L.r[i1].text, L2.r[i2].text) || fabs(L.r[i1].start - L2.r[i2].start) > 1e-9 ||
                fabs(L.r[i1].end - L2.r[i2].end) > 1e-9)
                same = 0;
            i1++;
            i2++;
        }
        CHECK(same, "%s: 0.1 s and 1 s blocks give the same finals", name);
        log_free(&L2);
        log_free(&L);

        /* deferred endpoints (file jobs): cuts wait for the next token, so none splits a word */
        snprintf(name, sizeof name, "%s, endpointing %d ms, deferred", audio[a].name, short_ep);
        if (run_with(e, audio[a].x, audio[a].n, 1600, short_ep, 0, 0, 1, &L) != 0)
            return 1;
        print_log(&L);
        check_run(name, &L, 0); /* exact: finals joined == stream text */
        check_gaps(name, &L, short_ep);
        if (a == 1)
            CHECK(count_reason(&L, "endpoint") >= 1, "%s: endpoint finals at the silences (%d)", name,
                  count_reason(&L, "endpoint"));
        log_free(&L);

        /* the shortest endpointing: one frame */
        int one = (int)ceil(fs * 1000);
        snprintf(name, sizeof name, "%s, endpointing %d ms", audio[a].name, one);
        if (run(e, audio[a].x, audio[a].n, 1600, one, 0, 0, &L) != 0)
            return 1;
        check_run(name, &L, 1);
        check_gaps(name, &L, one);
        log_free(&L);

        /* default endpointing (800 ms): the 2 s silences are long enough */
        snprintf(name, sizeof name, "%s, endpointing 800 ms", audio[a].name);
        if (run(e, audio[a].x, audio[a].n, 1600, 800, 0, 0, &L) != 0)
            return 1;
        print_log(&L);
        check_run(name, &L, 1);
        check_gaps(name, &L, 800);
        if (a == 1)
            CHECK(count_reason(&L, "endpoint") >= 1, "%s: endpoint finals at the 2 s silences", name);
        log_free(&L);

        /* maximum segment length, endpointing off: cuts only between words */
        snprintf(name, sizeof name, "%s, max segment 1 s", audio[a].name);
        if (run(e, audio[a].x, audio[a].n, 1600, 0, 1.0, 0, &L) != 0)
            return 1;
        print_log(&L);
        check_run(name, &L, 0); /* max-length cuts are between words: exact */
        int long_ok = 1;
        const rec *prev = NULL;
        for (int i = 0; i < L.n; i++) {
            const rec *r = &L.r[i];
            if (r->kind != SEG_FINAL)
                continue;
            /* a cut comes at the first word start at least 1 s after the segment's start */
            if (prev && !strcmp(prev->reason, "endpoint") && r->start - prev->start < 1.0 - 1e-9)
                long_ok = 0;
            prev = r;
        }
        CHECK(long_ok, "%s: max-length cuts only after 1 s", name);
        /* a cut is due when some word starts 1 s or more after the first token */
        int due = 0;
        for (int k = 1; k < ref.n_tokens && !due; k++)
            due = (ref.tokens[k].frame - ref.tokens[0].frame) * fs >= 1.0 &&
                  ref.tokens[k].frame > ref.tokens[k - 1].frame && word_start(&ref, k);
        if (due)
            CHECK(count_reason(&L, "endpoint") >= 1, "%s: long segments cut (%d cuts)", name,
                  count_reason(&L, "endpoint"));
        log_free(&L);

        /* finalize mid-stream, then more audio */
        snprintf(name, sizeof name, "%s, finalize at 2 s", audio[a].name);
        if (run(e, audio[a].x, audio[a].n, 1600, 0, 0, 2.0, &L) != 0)
            return 1;
        print_log(&L);
        check_run(name, &L, 1);
        int nfin = count_reason(&L, "finalize"), nend = count_reason(&L, "end");
        /* the end final exists when tokens came after the finalize: the partition check above */
        CHECK(nfin == 1 && nend <= 1, "%s: one finalize final and at most one end final (%d, %d)", name, nfin, nend);
        log_free(&L);

        /* end with nothing open: close gives no event */
        log_free(&ref);
    }

    /* Closing with no tokens at all: silence only. */
    {
        float *z = calloc(48000, sizeof *z);
        if (run(e, z, 48000, 1600, short_ep, 1.0, 1.0, &L) == 0) {
            printf("  silence only: %d tokens, %d events\n", L.n_tokens, L.n);
            print_log(&L);
            check_run("silence", &L, 1);
            if (L.n_tokens == 0)
                CHECK(L.n == 0, "silence: no events without tokens");
        }
        log_free(&L);
        free(z);
    }

    free(sil);
    es_engine_free(e);
    wav16_free(&w);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
