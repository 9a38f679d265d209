/*
 * run.h - one load-test run: N sessions on one libwebsockets context, started over the ramp,
 * each streaming the audio set at real time for the duration, then "end" and the wait for the
 * server's close. One timer (an lws_sul) paces every session: each tick sends the audio
 * messages that have come due; a second timer prints the progress line.
 *
 * What is measured (all wall-clock, CLOCK_MONOTONIC):
 *   connect          connect() begun -> WebSocket upgrade done
 *   ready            connect() begun -> "ready" received
 *   partial latency  for each partial and final: the last audio sample it covers (its "end",
 *                    in seconds of the session's audio) was sent at T; the message arrived at
 *                    T + latency
 *   final latency    "end" sent -> the last final received after it (sessions whose last
 *                    final came before "end" have none)
 *   close after end  "end" sent -> the server's close (every final delivered)
 *   send lag         how late the client itself sent audio against the real-time schedule
 *                    (high: the load generator, not the server, is the bottleneck)
 * and per session: WER per pass over each file that has a reference, warnings, errors, the
 * close code.
 */
#ifndef EARSHOT_LT_RUN_H
#define EARSHOT_LT_RUN_H

#include "audio_set.h"
#include "stats.h"
#include "url.h"
#include "ws_client.h"

#include <libwebsockets.h>

typedef struct {
    ws_url url;
    const char *token;
    int insecure; /* wss://: accept a self-signed or mismatched certificate */
    int sessions;
    double ramp_s, duration_s;
    int opus;
    int chunk_ms;      /* sent in start; 0: the server's default */
    int send_ms;       /* audio per message */
    int endpointing_ms; /* -1: the server's default */
    const char *decoder; /* NULL: the server's default */
    double report_s;   /* progress line every this many seconds; 0: none */
    int quiet;
} lt_config;

#define LT_RING 1024 /* send times kept per session: 20 s of 20 ms messages */

typedef struct {
    int file;
    long long start, end; /* samples of the session's audio */
    char **hyp;
    int n_hyp, cap_hyp;
} lt_pass;

enum { LT_WAITING, LT_CONNECTING, LT_STARTING, LT_STREAMING, LT_ENDING, LT_DONE };

typedef struct lt_run lt_run;

typedef struct {
    lt_run *run;
    int id;
    int state;
    wsc_conn *conn;
    double connect_at, t_connect, t_open, t_ready, t_end, t_last_final, t_closed;
    double next_due, stream_t0;
    long long msgs, samples; /* sent */
    int file;                /* next audio: file index and position (samples or packets) */
    long pos;
    float ring[LT_RING];     /* send time of message k (seconds after stream_t0) at k % LT_RING */
    lt_pass *pass;
    int n_pass, cap_pass, first_open;
    /* results */
    long lat_n;          /* this session's partial latencies: count, sum, max (ms) */
    double lat_sum, lat_max;
    double final_ms;     /* -1: none */
    int n_partials, n_finals;
    int passes_scored, passes_exact;
    long ref_words, edits;
    int warned;
    char error[32];      /* first error code (server's, or the client's own), "" if none */
    char why[200];
    int close_code, http_status;
} lt_session;

#define LT_MAX_CODES 32

typedef struct {
    char name[32];
    long count;
} lt_count;

struct lt_run {
    const lt_config *cfg;
    const audio_set *audio;
    wsc_client *cl;
    lt_session *s;
    int n, n_done, n_open, n_streaming;
    double t0, t_end;
    lws_sorted_usec_list_t tick, report;
    stats connect, ready, partial, final, closed, lag;
    stats window; /* partial latencies since the last progress line */
    lt_count errors[LT_MAX_CODES], closes[LT_MAX_CODES];
    int n_errors, n_closes;
    int sessions_warned, sessions_failed, connect_failures, unauthorized, refused;
    int chunk_ms; /* as the server's ready said */
    int stopping, n_cancelled; /* interrupted: sessions never started */
    char first_why[200];
    long passes_scored, passes_exact, ref_words, edits;
};

#include <signal.h>
/* Set by SIGINT: streaming sessions send "end" now, waiting ones are not started, the run
   ends with its report. */
extern volatile sig_atomic_t lt_interrupted;

/* Runs cfg->sessions sessions to the end. 0 when it ran (whatever the sessions met), -1 when
   it could not (err says why). The caller frees with lt_run_free. */
int lt_run_go(lt_run *r, const lt_config *cfg, const audio_set *audio, char *err, size_t errlen);
void lt_run_free(lt_run *r);
double lt_now(void);
/* Copies src (NULL: "") into dst of size n, cut if need be. */
void lt_copy(char *dst, size_t n, const char *src);
/* Counts name in a code table. */
void lt_count_add(lt_count *t, int *n, const char *name);

/* session.c: the per-session state machine, driven by run.c. */
void lt_session_tick(lt_session *s, double now);
void lt_session_finish(lt_session *s); /* scores what is left once the session is closed */
void lt_session_stop(lt_session *s, double now); /* interrupted: end now, or never start */

#endif
