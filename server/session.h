/*
 * session.h - live sessions at /v1/listen, and the server state they share with the HTTP side.
 *
 * One session per WebSocket: it parses the client's messages (protocol.h), decodes audio
 * (audio_in.h) and posts it to the engine worker (scheduler.h); the worker's results come back
 * through the event loop into each session's bounded outgoing queue, which is written when the
 * socket is writeable. Everything here runs on the libwebsockets event loop thread.
 */
#ifndef EARSHOT_SESSION_H
#define EARSHOT_SESSION_H

#include "earshot.h"
#include "scheduler.h"

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *model;
    const char *lm;         /* language model; NULL: the one beside the model, if any */
    int no_lm;              /* greedy CTC even when the model has an LM beside it */
    float lm_weight, lm_bonus;
    int lm_beam;
    const char *host;
    int port;
    es_backend backend;
    int threads;
    int max_sessions;
    int max_batch;
    double step_budget;      /* a step's share of its chunk duration (batch_limit.h) */
    int batch_window_ms;
    const char *auth_token; /* NULL: no auth */
    const char *tls_cert, *tls_key;
    const char *web_root;   /* folder served at /, or NULL */
    size_t max_message_bytes;
    int idle_timeout_s;
    int drain_timeout_s;
    int http_timeout_s;      /* an unfinished handshake or request is dropped after this */
    size_t max_upload_bytes; /* POST /v1/audio/transcriptions */
    int max_file_jobs;       /* file transcriptions at once */
    size_t max_send_queue_bytes; /* a session's unsent messages at most (slow_reader beyond) */
    int socket_sndbuf_bytes;     /* SO_SNDBUF of session sockets; 0: the kernel's autotuning */
} server_opts;

struct session;
struct file_job;

typedef struct {
    const server_opts *opts;
    model_info model;
    sched *sched;
    struct lws_context *ctx;
    struct session *sessions; /* every open WebSocket session */
    int n_sessions;           /* counted against --max-sessions */
    struct file_job *file_jobs; /* POST /v1/audio/transcriptions in progress (file_job.h) */
    int draining;             /* SIGTERM: no new sessions, open ones are ending */
    double drain_started;     /* when (monotonic seconds) */
    uint64_t next_id;
    lws_sorted_usec_list_t timer;
} server;

/* The protocol callback of /v1/listen; its per-session data is session_pss_size() bytes. */
int session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
size_t session_pss_size(void);

/* Starts the housekeeping timer (idle timeouts, throttled readers). */
void session_start_timer(server *srv);
/* Takes the worker's results and hands them to their sessions (on LWS_CALLBACK_EVENT_WAIT_CANCELLED). */
void session_take_results(server *srv);
/* SIGTERM: stop accepting; every started session is flushed, gets its finals and closes 1000. */
void session_drain(server *srv);

/* Bytes of messages waiting to be sent, over all sessions (a gauge in /metrics). */
size_t session_queued_bytes(const server *srv);

/* Whether a new session would be refused (at --max-sessions, or draining). */
int server_full(const server *srv);

#endif
