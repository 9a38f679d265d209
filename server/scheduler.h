/*
 * scheduler.h - the engine worker: one thread that owns the es_engine and every es_stream and
 * batches the ready streams of all sessions into engine steps (DESIGN.md section 6).
 *
 * Sessions (on the event loop) post commands into the worker's inbox: open a stream, audio,
 * finalize, end, close. The worker posts results back into an outbox (ready, partial, final,
 * error, done, progress) and calls the wake function (lws_cancel_service) so the event loop
 * takes them. Sessions are named by a 64-bit id that is never reused, so a result for a session
 * that has gone away is simply dropped. No socket work happens on the worker and no engine work
 * on the event loop.
 */
#ifndef EARSHOT_SCHEDULER_H
#define EARSHOT_SCHEDULER_H

#include "earshot.h"

#include <stddef.h>
#include <stdint.h>

#define MODEL_MAX_LOOKAHEADS 16

/* What the event loop may know of the model: read once before the worker starts. */
typedef struct {
    char name[256];
    int n_lookaheads;
    es_lookahead_info lookahead[MODEL_MAX_LOOKAHEADS];
    int has_ctc, has_rnnt;
    int sample_rate;
    double frame_seconds;
    int max_streams;
} model_info;

void model_info_read(const es_engine *e, model_info *mi);
/* The look-ahead with the largest chunk not above chunk_ms (the smallest if all are above);
   chunk_ms <= 0 gives the model's first. */
int model_info_pick(const model_info *mi, int chunk_ms);

typedef enum { OUT_READY, OUT_PARTIAL, OUT_FINAL, OUT_ERROR, OUT_DONE, OUT_PROGRESS } out_kind;

typedef struct out_msg {
    struct out_msg *next;
    uint64_t session;
    out_kind kind;
    char *json;          /* the message to send; NULL for DONE and PROGRESS */
    const char *code;    /* ERROR: the stable error code */
    int close_code;      /* ERROR: the close code to close with after sending */
    double audio_done_s; /* PROGRESS: seconds of the session's audio encoded so far */
} out_msg;

void out_msg_free(out_msg *m);

typedef struct {
    char session_id[40];
    int client_rate;       /* echoed in ready */
    int lookahead;         /* model_info_pick */
    es_decoder_kind decoder;
    int endpointing_ms;
    int interim_results, word_timestamps;
    int priority;          /* 0 live session, 1 file job (served after live ones) */
    int defer_endpoints;   /* segmenter_create's: finals wait for the next word (file jobs) */
} sched_open_params;

typedef struct {
    int max_batch;         /* streams per step at most */
    double step_budget;    /* a step should take at most this fraction of its mode's chunk
                              (batch_limit.h); <= 0: 0.5 */
    int batch_window_ms;
    double max_segment_s;
    void (*wake)(void *arg); /* called (on the worker) after results were posted */
    void *wake_arg;
} sched_params;

typedef struct sched sched;

/* Starts the worker. The engine then belongs to it until sched_destroy. */
sched *sched_create(es_engine *e, const sched_params *p, char *err, size_t errlen);
/* Stops the worker and frees every stream it still holds, and the unread outbox. */
void sched_destroy(sched *s);

/* Commands (any thread, in practice the event loop). Return 0, or -1 when out of memory. */
int sched_open(sched *s, uint64_t id, const sched_open_params *p);
int sched_audio(sched *s, uint64_t id, const float *x, size_t n);
int sched_finalize(sched *s, uint64_t id);
int sched_end(sched *s, uint64_t id);   /* flush; finals with reason "end", then OUT_DONE */
int sched_close(sched *s, uint64_t id); /* the session is gone: free its stream */

/* Takes every posted result, oldest first (a list linked by next), or NULL. */
out_msg *sched_take_output(sched *s);

#endif
