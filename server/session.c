/*
 * session.c - one live session per WebSocket at /v1/listen (the protocol of docs/protocol.md).
 *
 * States: NEW (waiting for start) -> STARTED (audio flows) -> ENDING (end received or the
 * server drains: the stream is flushed and the worker sends the remaining finals, then DONE)
 * -> CLOSING (the queue is written, then the socket closes with close_code). An error puts a
 * session straight into CLOSING with the error message as its last message.
 *
 * Incoming messages are reassembled from fragments up to --max-message-bytes. Binary messages
 * are decoded by audio_in and posted to the worker; text messages are parsed by protocol.c.
 *
 * Outgoing messages wait in a per-session queue written one per SERVER_WRITEABLE callback. The
 * queue is bounded: when it backs up, older partials are dropped (a newer partial supersedes
 * them); finals are never dropped, but a client that lets too many of them pile up is closed.
 * A client that sends audio much faster than the engine encodes it is throttled with
 * lws_rx_flow_control until the worker catches up.
 */
#include "session.h"

#include "audio_in.h"
#include "file_job.h"
#include "http.h"
#include "metrics.h"
#include "protocol.h"

#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE_SOFT 8                  /* beyond this many queued messages, old partials go */
#define QUEUE_MAX_FINALS 256          /* beyond this many unsent finals the client is closed */
#define BACKLOG_HIGH_S 20.0           /* audio posted but not encoded: stop reading above this */
#define BACKLOG_LOW_S 5.0             /* ... and read again below this */
#define TIMER_US (250 * LWS_US_PER_MS)

typedef enum { S_NEW, S_STARTED, S_ENDING, S_CLOSING } session_state;

typedef struct qmsg {
    struct qmsg *next;
    int partial, final;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the JSON */
} qmsg;

typedef struct session {
    struct session *next, *prev;
    server *srv;
    struct lws *wsi;
    uint64_t id;
    char sid[17];
    session_state state;
    int counted; /* counted in srv->n_sessions */
    int opened;  /* the worker has (or will have) a stream for it */
    audio_in *ain;
    int out_rate;
    /* reassembly of the incoming message */
    unsigned char *rx;
    size_t rx_len, rx_cap;
    int rx_mid, rx_binary;
    /* outgoing queue */
    qmsg *q_head, *q_tail;
    int q_len, q_finals;
    size_t q_bytes;
    int close_code;
    double last_rx;
    double posted_s, done_s;
    int throttled;
} session;

size_t session_pss_size(void) { return sizeof(session); }

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

size_t session_queued_bytes(const server *srv)
{
    size_t n = 0;
    for (const session *s = srv->sessions; s; s = s->next)
        n += s->q_bytes;
    return n;
}

int server_full(const server *srv)
{
    return srv->draining || srv->n_sessions >= srv->opts->max_sessions;
}

/* ---- the outgoing queue ---- */

static void queue_unlink_partials(session *s)
{
    qmsg **pp = &s->q_head;
    s->q_tail = NULL;
    while (*pp) {
        qmsg *m = *pp;
        if (m->partial) {
            *pp = m->next;
            s->q_len--;
            s->q_bytes -= m->len;
            free(m);
        } else {
            s->q_tail = m;
            pp = &m->next;
        }
    }
}

static void queue_clear(session *s)
{
    while (s->q_head) {
        qmsg *m = s->q_head;
        s->q_head = m->next;
        free(m);
    }
    s->q_tail = NULL;
    s->q_len = s->q_finals = 0;
    s->q_bytes = 0;
}

/* Queues a JSON message (takes it, may be NULL when out of memory) and asks to write. */
static void enqueue(session *s, char *json, int partial, int final)
{
    if (!json)
        return;
    size_t len = strlen(json);
    qmsg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m) {
        free(json);
        return;
    }
    m->next = NULL;
    m->partial = partial;
    m->final = final;
    m->len = len;
    memcpy(m->buf + LWS_PRE, json, len);
    free(json);
    if (partial && s->q_len >= QUEUE_SOFT)
        queue_unlink_partials(s);
    if (s->q_tail)
        s->q_tail->next = m;
    else
        s->q_head = m;
    s->q_tail = m;
    s->q_len++;
    s->q_finals += final;
    s->q_bytes += len;
    lws_callback_on_writable(s->wsi);
}

/* Reads the client's socket again after post_audio throttled it. This mostly runs outside the
   session's own callbacks (results arrive on the service thread's wake-up callback), and lws's
   header asks for LWS_RXFLOW_REASON_FLAG_PROCESS_NOW there: otherwise the change may wait for
   the connection's next event, which a client that only sends and never reads does not give
   while its reading is off, and both sides would wait on each other. */
static void resume_reading(session *s)
{
    if (!s->throttled)
        return;
    s->throttled = 0;
    lws_rx_flow_control(s->wsi, 1 | LWS_RXFLOW_REASON_FLAG_PROCESS_NOW);
}

/* Sends an error as the last message, then closes with its close code. */
static void fail(session *s, error_code code, const char *why)
{
    if (s->state == S_CLOSING)
        return;
    lwsl_user("session %s: error %s: %s\n", s->sid, error_code_name(code), why);
    metrics_error(error_code_name(code));
    enqueue(s, protocol_error(code, why), 0, 0);
    s->state = S_CLOSING;
    s->close_code = error_close_code(code);
    resume_reading(s);
}

static void close_normally(session *s)
{
    s->state = S_CLOSING;
    s->close_code = LWS_CLOSE_STATUS_NORMAL;
    lws_callback_on_writable(s->wsi);
}

/* ---- client messages ---- */

static void post_audio(session *s, const float *x, long n)
{
    if (n <= 0)
        return;
    if (sched_audio(s->srv->sched, s->id, x, (size_t)n) != 0) {
        fail(s, ERR_INTERNAL, "out of memory");
        return;
    }
    double sec = (double)n / s->out_rate;
    s->posted_s += sec;
    metrics_audio_in(sec);
    if (!s->throttled && s->posted_s - s->done_s > BACKLOG_HIGH_S) {
        s->throttled = 1;
        lws_rx_flow_control(s->wsi, 0);
    }
}

static void end_stream(session *s)
{
    const float *x;
    long n = audio_in_flush(s->ain, &x);
    post_audio(s, x, n);
    if (s->state == S_CLOSING)
        return;
    if (sched_end(s->srv->sched, s->id) != 0) {
        fail(s, ERR_INTERNAL, "out of memory");
        return;
    }
    s->state = S_ENDING;
}

static void start(session *s, const start_params *p)
{
    const model_info *mi = &s->srv->model;
    char why[256];
    es_decoder_kind dec = ES_DECODER_DEFAULT;
    if (strcmp(p->decoder, "rnnt") == 0)
        dec = ES_DECODER_RNNT;
    else if (strcmp(p->decoder, "ctc") == 0)
        dec = ES_DECODER_CTC;
    else if (p->decoder[0]) {
        snprintf(why, sizeof why, "decoder '%s' is not supported (rnnt, ctc)", p->decoder);
        fail(s, ERR_UNSUPPORTED, why);
        return;
    }
    if ((dec == ES_DECODER_RNNT && !mi->has_rnnt) || (dec == ES_DECODER_CTC && !mi->has_ctc)) {
        snprintf(why, sizeof why, "the model has no %s decoder", p->decoder);
        fail(s, ERR_UNSUPPORTED, why);
        return;
    }
    s->out_rate = mi->sample_rate;
    s->ain = audio_in_create(p->encoding, p->sample_rate, p->channels, mi->sample_rate, why, sizeof why);
    if (!s->ain) {
        fail(s, ERR_UNSUPPORTED, why);
        return;
    }
    sched_open_params op = {.client_rate = p->sample_rate,
                            .lookahead = model_info_pick(mi, p->chunk_ms),
                            .decoder = dec,
                            .endpointing_ms = p->endpointing_ms,
                            .interim_results = p->interim_results,
                            .word_timestamps = p->word_timestamps,
                            .priority = 0};
    snprintf(op.session_id, sizeof op.session_id, "%s", s->sid);
    if (sched_open(s->srv->sched, s->id, &op) != 0) {
        fail(s, ERR_INTERNAL, "out of memory");
        return;
    }
    s->opened = 1;
    s->state = S_STARTED;
}

static void on_text(session *s, const char *text, size_t len)
{
    client_message_type type;
    start_params p;
    char why[256] = "";
    error_code ec = protocol_parse(text, len, &type, &p, why, sizeof why);
    if (ec != ERR_NONE) {
        fail(s, ec, why[0] ? why : "bad message");
        return;
    }
    if (s->state == S_ENDING) /* the stream is flushing: nothing more to do */
        return;
    if (type == MSG_START) {
        if (s->state != S_NEW)
            fail(s, ERR_ALREADY_STARTED, "the session has already started");
        else
            start(s, &p);
        return;
    }
    if (s->state == S_NEW) {
        fail(s, ERR_NOT_STARTED, "send a start message first");
        return;
    }
    if (type == MSG_FINALIZE && sched_finalize(s->srv->sched, s->id) != 0)
        fail(s, ERR_INTERNAL, "out of memory");
    else if (type == MSG_END)
        end_stream(s);
}

static void on_binary(session *s, const unsigned char *data, size_t len)
{
    if (s->state == S_NEW) {
        fail(s, ERR_NOT_STARTED, "audio before the start message");
        return;
    }
    if (s->state != S_STARTED) /* audio after end is ignored */
        return;
    const float *x;
    char why[256] = "";
    long n = audio_in_feed(s->ain, data, len, &x, why, sizeof why);
    if (n < 0)
        fail(s, ERR_BAD_AUDIO, why[0] ? why : "undecodable audio");
    else
        post_audio(s, x, n);
}

/* Appends a received fragment; handles the message once it is whole. */
static void on_receive(session *s, const unsigned char *in, size_t len)
{
    if (s->state == S_CLOSING)
        return;
    s->last_rx = now_s();
    if (!s->rx_mid) {
        s->rx_mid = 1;
        s->rx_len = 0;
        s->rx_binary = lws_frame_is_binary(s->wsi);
    }
    size_t max = s->srv->opts->max_message_bytes;
    size_t need = s->rx_len + len + lws_remaining_packet_payload(s->wsi);
    if (need > max) {
        char why[128];
        snprintf(why, sizeof why, "messages may have at most %zu bytes", max);
        fail(s, ERR_TOO_BIG, why);
        return;
    }
    if (s->rx_len + len + 1 > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 4096;
        while (cap < s->rx_len + len + 1)
            cap *= 2;
        unsigned char *p = realloc(s->rx, cap);
        if (!p) {
            fail(s, ERR_INTERNAL, "out of memory");
            return;
        }
        s->rx = p;
        s->rx_cap = cap;
    }
    if (len)
        memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!lws_is_final_fragment(s->wsi) || lws_remaining_packet_payload(s->wsi))
        return;
    s->rx_mid = 0;
    s->rx[s->rx_len] = 0;
    if (s->rx_binary)
        on_binary(s, s->rx, s->rx_len);
    else
        on_text(s, (const char *)s->rx, s->rx_len);
}

/* ---- results from the worker ---- */

static session *find(server *srv, uint64_t id)
{
    for (session *s = srv->sessions; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static void deliver(session *s, out_msg *m)
{
    if (m->kind == OUT_PROGRESS || m->kind == OUT_DONE) {
        s->done_s = m->audio_done_s;
        if (s->posted_s - s->done_s < BACKLOG_LOW_S)
            resume_reading(s);
    }
    if (s->state == S_CLOSING)
        return;
    switch (m->kind) {
    case OUT_READY:
    case OUT_PARTIAL:
    case OUT_FINAL:
        enqueue(s, m->json, m->kind == OUT_PARTIAL, m->kind == OUT_FINAL);
        m->json = NULL;
        if (s->q_finals > QUEUE_MAX_FINALS || s->q_bytes > s->srv->opts->max_send_queue_bytes) {
            /* The error goes out if the client ever reads again; if it does not, the
               connection is cut after 5 s instead of waiting for the close handshake. */
            queue_clear(s);
            fail(s, ERR_SLOW_READER, "the client does not read its messages");
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, 5);
        }
        break;
    case OUT_ERROR:
        lwsl_user("session %s: engine error %s\n", s->sid, m->code);
        metrics_error(m->code);
        enqueue(s, m->json, 0, 0);
        m->json = NULL;
        s->state = S_CLOSING;
        s->close_code = m->close_code;
        break;
    case OUT_DONE:
        close_normally(s);
        break;
    case OUT_PROGRESS:
        break;
    }
}

void session_take_results(server *srv)
{
    out_msg *m = sched_take_output(srv->sched);
    while (m) {
        out_msg *next = m->next;
        session *s = find(srv, m->session);
        if (s)
            deliver(s, m);
        else
            file_job_deliver(srv, m);
        out_msg_free(m);
        m = next;
    }
    file_job_poll(srv);
}

/* ---- draining and the housekeeping timer ---- */

/* Audio a client sent before SIGTERM may still be in the socket's buffer (or held there by
   throttling), so a started session's stream is not ended at once. It is ended when the kernel
   holds nothing unread for it and nothing has arrived for DRAIN_QUIET_S (or DRAIN_READ_S has
   passed since the drain began: a client streaming live would never be quiet), and never while
   throttled (the backlog is encoded first, then the rest is read). Asking the kernel matters on
   a busy machine: a session the event loop has not got round to looks quiet but is not. */
#define DRAIN_QUIET_S 0.3
#define DRAIN_READ_S 1.0

static int unread_input(struct lws *wsi)
{
    int n = 0;
    return ioctl(lws_get_socket_fd(wsi), FIONREAD, &n) == 0 && n > 0;
}

static void drain_sessions(server *srv, double t)
{
    for (session *s = srv->sessions; s; s = s->next) {
        if (s->state == S_NEW)
            close_normally(s);
        else if (s->state == S_STARTED && !s->throttled && !unread_input(s->wsi) &&
                 (t - s->last_rx >= DRAIN_QUIET_S || t - srv->drain_started >= DRAIN_READ_S))
            end_stream(s);
    }
}

void session_drain(server *srv)
{
    srv->draining = 1;
    srv->drain_started = now_s();
    drain_sessions(srv, srv->drain_started);
}

static void on_timer(lws_sorted_usec_list_t *sul)
{
    server *srv = lws_container_of(sul, server, timer);
    double t = now_s(), idle = srv->opts->idle_timeout_s;
    if (srv->draining)
        drain_sessions(srv, t);
    for (session *s = srv->sessions; s; s = s->next) {
        if ((s->state == S_NEW || s->state == S_STARTED) && !s->throttled && idle > 0 && t - s->last_rx > idle) {
            char why[96];
            snprintf(why, sizeof why, "no message for %d s", srv->opts->idle_timeout_s);
            fail(s, ERR_TIMEOUT, why);
        }
    }
    lws_sul_schedule(srv->ctx, 0, &srv->timer, on_timer, TIMER_US);
}

void session_start_timer(server *srv) { lws_sul_schedule(srv->ctx, 0, &srv->timer, on_timer, TIMER_US); }

/* ---- the protocol callback ---- */

static void established(server *srv, session *s, struct lws *wsi)
{
    memset(s, 0, sizeof *s);
    s->srv = srv;
    s->wsi = wsi;
    s->id = ++srv->next_id;
    unsigned char r[8] = {0};
    lws_get_random(srv->ctx, r, sizeof r);
    for (int i = 0; i < 8; i++)
        snprintf(s->sid + 2 * i, 3, "%02x", r[i]);
    s->last_rx = now_s();
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    metrics_session_opened();
    if (server_full(srv)) {
        fail(s, ERR_OVER_CAPACITY,
             srv->draining ? "the server is shutting down; try another" : "the server is full; try again later");
        return;
    }
    s->counted = 1;
    srv->n_sessions++;
    /* A fixed kernel buffer bounds what a client that stops reading holds in the kernel; past
       it, our own bounded queue (max_send_queue_bytes) decides. */
    int sndbuf = srv->opts->socket_sndbuf_bytes;
    if (sndbuf > 0 && setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) != 0)
        lwsl_warn("session %s: cannot set SO_SNDBUF\n", s->sid);
}

static void closed(server *srv, session *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else if (srv->sessions == s)
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->counted)
        srv->n_sessions--;
    if (s->opened && srv->sched)
        sched_close(srv->sched, s->id);
    audio_in_free(s->ain);
    free(s->rx);
    queue_clear(s);
    memset(s, 0, sizeof *s);
}

static int writeable(session *s)
{
    qmsg *m = s->q_head;
    if (m) {
        s->q_head = m->next;
        if (!s->q_head)
            s->q_tail = NULL;
        s->q_len--;
        s->q_finals -= m->final;
        s->q_bytes -= m->len;
        int n = lws_write(s->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
        int ok = n >= (int)m->len;
        free(m);
        if (!ok)
            return -1;
        if (s->q_head) {
            lws_callback_on_writable(s->wsi);
            return 0;
        }
    }
    if (s->state == S_CLOSING && !s->q_head) {
        lws_close_reason(s->wsi, (enum lws_close_status)s->close_code, NULL, 0);
        return -1;
    }
    return 0;
}

int session_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    server *srv = lws_context_user(lws_get_context(wsi));
    session *s = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return http_confirm_upgrade(srv, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        established(srv, s, wsi);
        break;
    case LWS_CALLBACK_RECEIVE:
        on_receive(s, in, len);
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return writeable(s);
    case LWS_CALLBACK_CLOSED:
        closed(srv, s);
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (srv && srv->sched)
            session_take_results(srv);
        break;
    default:
        break;
    }
    return 0;
}
