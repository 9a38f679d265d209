/*
 * scheduler.c - the engine worker: continuous batching of ready streams (see scheduler.h).
 *
 * One round of the worker:
 *   1. take every command from the inbox and apply it (create or free streams, feed audio,
 *      mark finalize/end);
 *   2. collect the streams that have a chunk ready; pick the best one (live before file jobs,
 *      then the one that has waited longest) and take the ready streams of its look-ahead in
 *      the same order, up to that look-ahead's batch limit (batch_limit.h: the most streams
 *      whose step is expected to fit --step-budget of the chunk duration, at most max_batch);
 *   3. if that batch is not full and other streams of the same look-ahead are open, wait for
 *      stragglers, but never beyond batch_window_ms after the oldest became ready;
 *   4. run es_engine_step, then each stream's segmenter, and post partials and finals; the
 *      step's time updates the batch limit of its look-ahead;
 *   5. close segments that wait on finalize or end once their stream has nothing ready;
 *   6. wake the event loop when something was posted; sleep on the condition variable when
 *      there is nothing to do.
 * A stream that is still ready after a step goes to the back of the line (its ready time is
 * reset), so a client that sends faster than real time cannot starve the others. A finalize
 * holds back the job's later commands until the chunks before it are encoded, so the segment
 * closes where the client asked even when its audio arrives faster than real time.
 */
#include "scheduler.h"

#include "batch_limit.h"
#include "metrics.h"
#include "protocol.h"
#include "segmenter.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CMD_OPEN, CMD_AUDIO, CMD_FINALIZE, CMD_END, CMD_CLOSE };

typedef struct cmd {
    struct cmd *next;
    int type;
    uint64_t id;
    sched_open_params op;
    size_t n;
    float x[];
} cmd;

typedef struct {
    uint64_t id;
    es_stream *st;
    segmenter *seg;
    int lookahead, priority, interim, words;
    int finalize_pending, ending, done, failed;
    int behind;     /* reported as behind real time, not yet caught up */
    double ready_t; /* when it joined the ready line; 0 = not ready */
    struct cmd *held, *held_tail; /* commands after a pending finalize */
} job;

struct sched {
    es_engine *e;
    sched_params p;
    double frame_s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cmd *in_head, *in_tail;
    int in_len;
    out_msg *out_head, *out_tail;
    int stop;
    /* worker-only state */
    job **jobs;
    int n_jobs, cap_jobs;
    job **ready;
    int posted; /* results posted this round */
    batch_limit limit; /* per look-ahead */
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* ---- model info ---- */

void model_info_read(const es_engine *e, model_info *mi)
{
    memset(mi, 0, sizeof *mi);
    snprintf(mi->name, sizeof mi->name, "%s", es_engine_model_name(e));
    mi->n_lookaheads = es_engine_lookahead_count(e);
    if (mi->n_lookaheads > MODEL_MAX_LOOKAHEADS)
        mi->n_lookaheads = MODEL_MAX_LOOKAHEADS;
    for (int i = 0; i < mi->n_lookaheads; i++)
        mi->lookahead[i] = es_engine_lookahead(e, i);
    mi->has_ctc = es_engine_has_decoder(e, ES_DECODER_CTC);
    mi->has_rnnt = es_engine_has_decoder(e, ES_DECODER_RNNT);
    mi->sample_rate = es_engine_sample_rate(e);
    mi->frame_seconds = es_engine_frame_seconds(e);
    mi->max_streams = es_engine_max_streams(e);
}

int model_info_pick(const model_info *mi, int chunk_ms)
{
    if (chunk_ms <= 0 || mi->n_lookaheads <= 1)
        return 0;
    int best = -1, smallest = 0;
    for (int i = 0; i < mi->n_lookaheads; i++) {
        int c = mi->lookahead[i].chunk_ms;
        if (c < mi->lookahead[smallest].chunk_ms)
            smallest = i;
        if (c <= chunk_ms && (best < 0 || c > mi->lookahead[best].chunk_ms))
            best = i;
    }
    return best >= 0 ? best : smallest;
}

/* ---- the outbox ---- */

void out_msg_free(out_msg *m)
{
    if (m) {
        free(m->json);
        free(m);
    }
}

static void post(sched *s, uint64_t id, out_kind kind, char *json, const char *code, int close_code, double done)
{
    out_msg *m = calloc(1, sizeof *m);
    if (!m) {
        free(json);
        return;
    }
    *m = (out_msg){.session = id, .kind = kind, .json = json, .code = code, .close_code = close_code,
                   .audio_done_s = done};
    pthread_mutex_lock(&s->mu);
    if (s->out_tail)
        s->out_tail->next = m;
    else
        s->out_head = m;
    s->out_tail = m;
    pthread_mutex_unlock(&s->mu);
    s->posted = 1;
}

static void post_error(sched *s, uint64_t id, error_code code, const char *why)
{
    post(s, id, OUT_ERROR, protocol_error(code, why), error_code_name(code), error_close_code(code), 0);
}

out_msg *sched_take_output(sched *s)
{
    pthread_mutex_lock(&s->mu);
    out_msg *m = s->out_head;
    s->out_head = s->out_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    return m;
}

/* ---- the inbox ---- */

static int push(sched *s, int type, uint64_t id, const sched_open_params *op, const float *x, size_t n)
{
    cmd *c = malloc(sizeof *c + n * sizeof(float));
    if (!c)
        return -1;
    memset(c, 0, sizeof *c);
    c->type = type;
    c->id = id;
    if (op)
        c->op = *op;
    c->n = n;
    if (n)
        memcpy(c->x, x, n * sizeof(float));
    pthread_mutex_lock(&s->mu);
    if (s->in_tail)
        s->in_tail->next = c;
    else
        s->in_head = c;
    s->in_tail = c;
    s->in_len++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int sched_open(sched *s, uint64_t id, const sched_open_params *p) { return push(s, CMD_OPEN, id, p, NULL, 0); }
int sched_audio(sched *s, uint64_t id, const float *x, size_t n) { return push(s, CMD_AUDIO, id, NULL, x, n); }
int sched_finalize(sched *s, uint64_t id) { return push(s, CMD_FINALIZE, id, NULL, NULL, 0); }
int sched_end(sched *s, uint64_t id) { return push(s, CMD_END, id, NULL, NULL, 0); }
int sched_close(sched *s, uint64_t id) { return push(s, CMD_CLOSE, id, NULL, NULL, 0); }

/* ---- jobs ---- */

static job *find_job(sched *s, uint64_t id)
{
    for (int i = 0; i < s->n_jobs; i++)
        if (s->jobs[i]->id == id)
            return s->jobs[i];
    return NULL;
}

static void free_job(job *j)
{
    for (cmd *c = j->held, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    if (j->seg)
        segmenter_free(j->seg);
    if (j->st)
        es_stream_free(j->st);
    free(j);
}

static void mark_ready(job *j, double t)
{
    if (j->failed || !es_stream_ready(j->st))
        j->ready_t = 0;
    else if (j->ready_t == 0)
        j->ready_t = t;
}

static void open_job(sched *s, const cmd *c)
{
    char err[256] = "";
    const sched_open_params *op = &c->op;
    if (s->n_jobs == s->cap_jobs) {
        int cap = s->cap_jobs ? s->cap_jobs * 2 : 16;
        job **a = realloc(s->jobs, cap * sizeof *a), **r = realloc(s->ready, cap * sizeof *r);
        if (a)
            s->jobs = a;
        if (r)
            s->ready = r;
        if (!a || !r) {
            post_error(s, c->id, ERR_INTERNAL, "out of memory");
            return;
        }
        s->cap_jobs = cap;
    }
    job *j = calloc(1, sizeof *j);
    es_stream_params sp = es_stream_default_params(s->e);
    sp.lookahead = op->lookahead;
    if (op->decoder != ES_DECODER_DEFAULT)
        sp.decoder = op->decoder;
    if (j)
        j->st = es_stream_create(s->e, &sp, err, sizeof err);
    if (j && j->st)
        j->seg = segmenter_create(s->e, op->endpointing_ms, s->p.max_segment_s, op->defer_endpoints);
    if (!j || !j->st || !j->seg) {
        int full = es_engine_streams_in_use(s->e) >= es_engine_max_streams(s->e);
        post_error(s, c->id, full ? ERR_OVER_CAPACITY : ERR_INTERNAL,
                   full ? "the server is full; try again later" : (err[0] ? err : "out of memory"));
        if (j)
            free_job(j);
        return;
    }
    j->id = c->id;
    j->lookahead = op->lookahead;
    j->priority = op->priority;
    j->interim = op->interim_results;
    j->words = op->word_timestamps;
    s->jobs[s->n_jobs++] = j;
    es_lookahead_info la = es_engine_lookahead(s->e, op->lookahead);
    const char *dec = sp.decoder == ES_DECODER_CTC ? "ctc" : "rnnt";
    if (sp.decoder == ES_DECODER_DEFAULT)
        dec = es_engine_has_decoder(s->e, ES_DECODER_RNNT) ? "rnnt" : "ctc";
    post(s, c->id, OUT_READY,
         protocol_ready(op->session_id, es_engine_model_name(s->e), op->client_rate, la.chunk_ms, la.att_context[0],
                        la.att_context[1], dec),
         NULL, 0, 0);
}

static void close_job(sched *s, uint64_t id)
{
    for (int i = 0; i < s->n_jobs; i++)
        if (s->jobs[i]->id == id) {
            if (s->jobs[i]->behind)
                metrics_behind(-1);
            free_job(s->jobs[i]);
            s->jobs[i] = s->jobs[--s->n_jobs];
            return;
        }
}

/* Applies one command of an open job (audio, finalize or end). While a finalize waits for the
   chunks before it, the job's later commands are held back, so the segment closes at the point
   in the audio where the client sent finalize, however fast the audio came. */
static void apply_to_job(sched *s, job *j, cmd *c, double t)
{
    if (j->finalize_pending) {
        c->next = NULL;
        if (j->held_tail)
            j->held_tail->next = c;
        else
            j->held = c;
        j->held_tail = c;
        return;
    }
    if (c->type == CMD_AUDIO && !j->failed && !j->ending) {
        if (es_stream_accept_audio(j->st, c->x, c->n) != 0) {
            j->failed = 1;
            post_error(s, j->id, ERR_INTERNAL, "the stream could not take more audio");
        }
        mark_ready(j, t);
    } else if (c->type == CMD_FINALIZE) {
        j->finalize_pending = 1;
    } else if (c->type == CMD_END && !j->ending) {
        j->ending = 1;
        es_stream_end_audio(j->st);
        mark_ready(j, t);
    }
    free(c);
}

/* Commands held back by a finalize that has now been done. */
static void release_held(sched *s, job *j)
{
    cmd *c = j->held;
    j->held = j->held_tail = NULL;
    double t = now_s();
    while (c) {
        cmd *next = c->next;
        apply_to_job(s, j, c, t);
        c = next;
    }
}

static void apply(sched *s, cmd *c)
{
    double t = now_s();
    while (c) {
        cmd *next = c->next;
        if (c->type == CMD_OPEN) {
            open_job(s, c);
            free(c);
        } else if (c->type == CMD_CLOSE) {
            close_job(s, c->id);
            free(c);
        } else {
            job *j = find_job(s, c->id);
            if (j)
                apply_to_job(s, j, c, t);
            else
                free(c);
        }
        c = next;
    }
}

/* ---- results ---- */

static void post_event(sched *s, job *j, seg_event *ev)
{
    if (ev->kind == SEG_PARTIAL && j->interim) {
        post(s, j->id, OUT_PARTIAL, protocol_partial(ev->segment, ev->text, ev->start, ev->end), NULL, 0, 0);
    } else if (ev->kind == SEG_FINAL) {
        int n = j->words ? ev->n_words : 0;
        protocol_word *w = n ? malloc(n * sizeof *w) : NULL;
        if (!w)
            n = 0;
        for (int i = 0; i < n; i++)
            w[i] = (protocol_word){ev->words[i].word, ev->words[i].start, ev->words[i].end};
        post(s, j->id, OUT_FINAL, protocol_final(ev->segment, ev->text, ev->start, ev->end, w, n, ev->reason), NULL,
             0, 0);
        free(w);
    }
    seg_event_clear(ev);
}

/* Closes segments that wait for finalize or end, once the stream has nothing left to encode. */
static void finish_jobs(sched *s)
{
    for (int i = 0; i < s->n_jobs; i++) {
        job *j = s->jobs[i];
        if (j->failed || j->done || es_stream_ready(j->st))
            continue;
        seg_event ev[1];
        if (j->finalize_pending) {
            j->finalize_pending = 0;
            /* everything heard so far belongs to this segment, the decoder's guess included */
            if (es_stream_settle(j->st) != 0) {
                j->failed = 1;
                post_error(s, j->id, ERR_INTERNAL, "out of memory");
                continue;
            }
            if (segmenter_close(j->seg, j->st, "finalize", ev) > 0)
                post_event(s, j, &ev[0]);
            release_held(s, j);
            if (j->finalize_pending || es_stream_ready(j->st))
                continue; /* the rest waits for the next round */
        }
        if (j->ending && es_stream_done(j->st)) {
            if (segmenter_close(j->seg, j->st, "end", ev) > 0)
                post_event(s, j, &ev[0]);
            j->done = 1;
            post(s, j->id, OUT_DONE, NULL, NULL, 0, es_stream_frames(j->st) * s->frame_s);
        }
    }
}

/* Best first: live before file jobs, then the longest waiting. */
static int by_priority_then_age(const void *a, const void *b)
{
    const job *x = *(job *const *)a, *y = *(job *const *)b;
    if (x->priority != y->priority)
        return x->priority - y->priority;
    return (x->ready_t > y->ready_t) - (x->ready_t < y->ready_t);
}

/* Collects the batch to step into s->ready; returns its size, or -1 when it should wait until
   *deadline for stragglers. */
static int choose_batch(sched *s, double t, double *deadline, int *n_waiting)
{
    int n = 0;
    for (int i = 0; i < s->n_jobs; i++)
        if (s->jobs[i]->ready_t > 0)
            s->ready[n++] = s->jobs[i];
    *n_waiting = n;
    if (n == 0)
        return 0;
    qsort(s->ready, n, sizeof *s->ready, by_priority_then_age);
    int la = s->ready[0]->lookahead, m = 0;
    int limit = batch_limit_get(&s->limit, la);
    for (int i = 0; i < n; i++)
        if (s->ready[i]->lookahead == la && m < limit)
            s->ready[m++] = s->ready[i];
    /* Stragglers: open live streams of this look-ahead that may be ready in a moment. */
    int open = 0;
    for (int i = 0; i < s->n_jobs; i++) {
        job *j = s->jobs[i];
        if (j->lookahead == la && !j->failed && !j->done && !j->ending && j->priority == 0)
            open++;
    }
    *deadline = s->ready[0]->ready_t + s->p.batch_window_ms / 1000.0;
    if (m < limit && open > m && t < *deadline)
        return -1;
    return m;
}

/* A live session is behind when the audio it sent waits for transcription longer than its
   latency mode explains (two chunks and half a second). It is told once, with a warning, and
   counted in /metrics; it is re-armed when it is back under half that. */
static void watch_realtime(sched *s, job *j)
{
    if (j->priority != 0)
        return; /* file jobs run at their own pace */
    double chunk_s = es_engine_lookahead(s->e, j->lookahead).chunk_ms / 1000.0;
    double limit = 2 * chunk_s + 0.5;
    double backlog = es_stream_audio_seconds(j->st) - es_stream_frames(j->st) * s->frame_s;
    if (!j->behind && backlog > limit) {
        j->behind = 1;
        metrics_behind(+1);
        post(s, j->id, OUT_PARTIAL, protocol_behind(backlog), NULL, 0, 0);
    } else if (j->behind && backlog < limit / 2) {
        j->behind = 0;
        metrics_behind(-1);
    }
}

static void step(sched *s, int n)
{
    es_stream *batch[n];
    int frames0[n];
    double ready_t[n];
    for (int i = 0; i < n; i++) {
        batch[i] = s->ready[i]->st;
        frames0[i] = es_stream_frames(batch[i]);
        ready_t[i] = s->ready[i]->ready_t;
    }
    char err[256] = "";
    double t0 = now_s();
    int rc = es_engine_step(s->e, batch, n, err, sizeof err);
    double t1 = now_s();
    double audio = 0;
    for (int i = 0; i < n; i++) {
        job *j = s->ready[i];
        if (rc != 0) {
            j->failed = 1;
            j->ready_t = 0;
            post_error(s, j->id, ERR_INTERNAL, err[0] ? err : "the engine step failed");
            continue;
        }
        audio += (es_stream_frames(j->st) - frames0[i]) * s->frame_s;
        seg_event ev[2];
        int k = segmenter_update(j->seg, j->st, ev);
        for (int e = 0; e < k; e++) {
            metrics_result_latency(t1 - ready_t[i]);
            post_event(s, j, &ev[e]);
        }
        watch_realtime(s, j);
        j->ready_t = 0;
        mark_ready(j, t1);
        post(s, j->id, OUT_PROGRESS, NULL, NULL, 0, es_stream_frames(j->st) * s->frame_s);
    }
    if (rc != 0)
        fprintf(stderr, "earshot-server: engine step of %d failed: %s\n", n, err);
    metrics_step(n, t1 - t0, audio);
    if (rc == 0) {
        int la = s->ready[0]->lookahead; /* a batch is one look-ahead */
        batch_limit_observe(&s->limit, la, n, t1 - t0);
        metrics_batch_limit(es_engine_lookahead(s->e, la).chunk_ms, batch_limit_get(&s->limit, la));
    }
}

static void *worker(void *arg)
{
    sched *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        cmd *c = s->in_head;
        int queued = s->in_len;
        s->in_head = s->in_tail = NULL;
        s->in_len = 0;
        pthread_mutex_unlock(&s->mu);

        s->posted = 0;
        apply(s, c);
        double t = now_s(), deadline = 0;
        int waiting = 0;
        int n = choose_batch(s, t, &deadline, &waiting);
        metrics_queue_depth(waiting + queued);
        if (n > 0)
            step(s, n);
        finish_jobs(s);
        if (s->posted && s->p.wake)
            s->p.wake(s->p.wake_arg);

        int more = n > 0;
        for (int i = 0; i < s->n_jobs && n == 0 && !more; i++)
            more = s->jobs[i]->ready_t > 0; /* e.g. audio released by a finalize */
        pthread_mutex_lock(&s->mu);
        if (s->in_head || s->stop || more)
            continue;
        if (n < 0) { /* wait for stragglers, at most until the deadline */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            double left = deadline - now_s();
            if (left > 0) {
                long ns = ts.tv_nsec + (long)(left * 1e9);
                ts.tv_sec += ns / 1000000000L;
                ts.tv_nsec = ns % 1000000000L;
                pthread_cond_timedwait(&s->cv, &s->mu, &ts);
            }
            continue;
        }
        pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

sched *sched_create(es_engine *e, const sched_params *p, char *err, size_t errlen)
{
    sched *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->e = e;
    s->p = *p;
    if (s->p.max_batch < 1)
        s->p.max_batch = 1;
    if (s->p.batch_window_ms < 0)
        s->p.batch_window_ms = 0;
    if (!(s->p.step_budget > 0))
        s->p.step_budget = 0.5;
    s->frame_s = es_engine_frame_seconds(e);
    double chunk_s[BL_MAX_MODES];
    int n_modes = es_engine_lookahead_count(e);
    if (n_modes > BL_MAX_MODES)
        n_modes = BL_MAX_MODES;
    for (int i = 0; i < n_modes; i++)
        chunk_s[i] = es_engine_lookahead(e, i).chunk_ms / 1000.0;
    batch_limit_init(&s->limit, n_modes, chunk_s, s->p.step_budget, s->p.max_batch);
    for (int i = 0; i < n_modes; i++)
        metrics_batch_limit(es_engine_lookahead(e, i).chunk_ms, batch_limit_get(&s->limit, i));
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    int rc = pthread_create(&s->thread, NULL, worker, s);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the engine worker: %s", strerror(rc));
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    return s;
}

void sched_destroy(sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    for (cmd *c = s->in_head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    for (out_msg *m = s->out_head, *next; m; m = next) {
        next = m->next;
        out_msg_free(m);
    }
    for (int i = 0; i < s->n_jobs; i++)
        free_job(s->jobs[i]);
    free(s->jobs);
    free(s->ready);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
