/*
 * remote.c - see remote.h. One libwebsockets context; one session per file, run to its close
 * before the next begins.
 *
 * Without --realtime the audio goes out as the socket takes it: a block (0.5 s) is read from
 * the file whenever the connection's send queue is empty and the socket writable, so the
 * server's reading pace is the only limit and nothing piles up in memory. With --realtime a
 * timer sends each 100 ms block when its time has come.
 */
#include "remote.h"

#include "audio_file.h"
#include "http_get.h"
#include "ws_client.h"

#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROG "earshot-transcribe"
#define FAST_BLOCK_S 0.5
#define REALTIME_BLOCK_S 0.1
#define SILENCE_TIMEOUT_S 120.0 /* waiting for ready or for the close, and the server says nothing */

enum { RX_OK = 0, RX_FILE_FAILED = 1, RX_USAGE = 2, RX_UNREACHABLE = 3 };
enum { J_CONNECTING, J_STARTING, J_STREAMING, J_ENDED, J_DONE };

typedef struct {
    const remote_options *o;
    wsc_client *cl;
    ws_url url;
    int rate;
    /* the file in progress */
    const char *path;
    af_reader *r;
    wsc_conn *c;
    int state, eof, failed;
    size_t block;
    float *buf;
    double t0;
    long long sent;
    lws_sorted_usec_list_t pace, watchdog;
    double last_heard; /* when the server last sent something (or the session began) */
    char *text;
    size_t text_len;
    es_word *words;
    int n_words, cap_words;
    char model[256], decoder[16];
    int chunk_ms;
    char error[2048];
    int close_code, unreachable;
} job;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(job *j, const char *fmt, const char *a, const char *b)
{
    if (j->failed)
        return;
    j->failed = 1;
    snprintf(j->error, sizeof j->error, fmt, a, b);
}

/* Reads the next block and queues it; at the end of the file, "end". */
static void send_block(job *j)
{
    if (j->state != J_STREAMING || !j->c)
        return;
    char err[256] = "";
    long n = af_read(j->r, j->buf, j->block, err, sizeof err);
    if (n < 0) {
        fail(j, "cannot read audio: %s%s", err, "");
        wsc_close(j->c, 1000);
        return;
    }
    if (n == 0) {
        static const char end[] = "{\"type\":\"end\"}";
        j->state = J_ENDED;
        wsc_send(j->c, 0, end, sizeof end - 1);
        return;
    }
    /* pcm_f32le is little-endian: a big-endian host swaps the bytes of each float first */
    const uint16_t one = 1;
    if (*(const unsigned char *)&one == 0) {
        for (long i = 0; i < n; i++) {
            unsigned char *b = (unsigned char *)&j->buf[i], t0 = b[0], t1 = b[1];
            b[0] = b[3];
            b[1] = b[2];
            b[2] = t1;
            b[3] = t0;
        }
    }
    if (wsc_send(j->c, 1, j->buf, sizeof(float) * (size_t)n) != 0) {
        fail(j, "out of memory%s%s", "", "");
        wsc_close(j->c, 1011);
        return;
    }
    j->sent += n;
}

static void on_pace(lws_sorted_usec_list_t *sul)
{
    job *j = lws_container_of(sul, job, pace);
    if (j->state != J_STREAMING)
        return;
    /* a block leaves once all of it would have been captured by a live source */
    if (wsc_queued_bytes(j->c) == 0 && now_s() >= j->t0 + (double)(j->sent + (long long)j->block) / j->rate)
        send_block(j);
    if (j->state == J_STREAMING)
        lws_sul_schedule(wsc_client_context(j->cl), 0, &j->pace, on_pace, 10 * LWS_US_PER_MS);
}

/* A server that stops answering must not hang the tool: after SILENCE_TIMEOUT_S of silence
   while we wait on it, the session is given up. */
static void on_watchdog(lws_sorted_usec_list_t *sul)
{
    job *j = lws_container_of(sul, job, watchdog);
    if (j->state == J_DONE || !j->c)
        return;
    int waiting = j->state == J_STARTING || j->state == J_ENDED;
    if (waiting && now_s() - j->last_heard > SILENCE_TIMEOUT_S) {
        fail(j, "the server did not answer for %s s%s", "120", "");
        wsc_close(j->c, 1000);
        return;
    }
    lws_sul_schedule(wsc_client_context(j->cl), 0, &j->watchdog, on_watchdog, LWS_US_PER_SEC);
}

static void on_open(wsc_conn *c, void *user)
{
    job *j = user;
    const remote_options *o = j->o;
    char start[400];
    int n = snprintf(start, sizeof start,
                     "{\"type\":\"start\",\"sample_rate\":%d,\"encoding\":\"pcm_f32le\",\"channels\":1,"
                     "\"interim_results\":false,\"word_timestamps\":true,\"endpointing_ms\":0",
                     j->rate);
    if (o->chunk_ms > 0)
        n += snprintf(start + n, sizeof start - (size_t)n, ",\"chunk_ms\":%d", o->chunk_ms);
    if (o->decoder)
        n += snprintf(start + n, sizeof start - (size_t)n, ",\"decoder\":\"%s\"", o->decoder);
    snprintf(start + n, sizeof start - (size_t)n, "}");
    j->state = J_STARTING;
    if (wsc_send(c, 0, start, strlen(start)) != 0) {
        fail(j, "out of memory%s%s", "", "");
        wsc_close(c, 1011);
    }
}

static void on_writable(wsc_conn *c, void *user)
{
    (void)c;
    job *j = user;
    if (!j->o->realtime)
        send_block(j);
}

static int add_text(job *j, const char *t)
{
    size_t n = strlen(t);
    if (n == 0)
        return 0;
    char *p = realloc(j->text, j->text_len + n + 2);
    if (!p)
        return -1;
    j->text = p;
    if (j->text_len)
        p[j->text_len++] = ' ';
    memcpy(p + j->text_len, t, n + 1);
    j->text_len += n;
    return 0;
}

static int add_words(job *j, const cJSON *words)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, words)
    {
        const cJSON *ww = cJSON_GetObjectItemCaseSensitive(w, "word");
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(w, "start");
        const cJSON *we = cJSON_GetObjectItemCaseSensitive(w, "end");
        if (!cJSON_IsString(ww) || !cJSON_IsNumber(ws) || !cJSON_IsNumber(we))
            continue;
        if (j->n_words == j->cap_words) {
            int nc = j->cap_words ? j->cap_words * 2 : 64;
            es_word *nw = realloc(j->words, sizeof *nw * (size_t)nc);
            if (!nw)
                return -1;
            j->words = nw;
            j->cap_words = nc;
        }
        es_word *e = &j->words[j->n_words];
        e->word = strdup(ww->valuestring);
        if (!e->word)
            return -1;
        e->start = ws->valuedouble;
        e->end = we->valuedouble;
        j->n_words++;
    }
    return 0;
}

static void on_text(wsc_conn *c, void *user, const char *msg, size_t len)
{
    (void)len;
    job *j = user;
    j->last_heard = now_s();
    cJSON *m = cJSON_Parse(msg);
    const cJSON *type = m ? cJSON_GetObjectItemCaseSensitive(m, "type") : NULL;
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (strcmp(t, "ready") == 0 && j->state == J_STARTING) {
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(m, "model");
        const cJSON *dec = cJSON_GetObjectItemCaseSensitive(m, "decoder");
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(m, "chunk_ms");
        snprintf(j->model, sizeof j->model, "%s", cJSON_IsString(model) ? model->valuestring : "");
        snprintf(j->decoder, sizeof j->decoder, "%s", cJSON_IsString(dec) ? dec->valuestring : "");
        j->chunk_ms = cJSON_IsNumber(cm) ? cm->valueint : 0;
        if (j->o->chunk_ms > 0 && j->chunk_ms != j->o->chunk_ms && !j->o->quiet)
            fprintf(stderr, PROG ": the model has no %d ms chunk; using %d ms\n", j->o->chunk_ms, j->chunk_ms);
        j->state = J_STREAMING;
        j->t0 = now_s();
        if (j->o->realtime)
            on_pace(&j->pace);
        else
            send_block(j);
    } else if (strcmp(t, "final") == 0) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(m, "text");
        const cJSON *words = cJSON_GetObjectItemCaseSensitive(m, "words");
        if ((cJSON_IsString(text) && add_text(j, text->valuestring) != 0) ||
            (cJSON_IsArray(words) && add_words(j, words) != 0)) {
            fail(j, "out of memory%s%s", "", "");
            wsc_close(c, 1011);
        }
    } else if (strcmp(t, "error") == 0) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(m, "code");
        const cJSON *why = cJSON_GetObjectItemCaseSensitive(m, "message");
        fail(j, "the server answered %s: %s", cJSON_IsString(code) ? code->valuestring : "error",
             cJSON_IsString(why) ? why->valuestring : "");
    } else if (!m) {
        fail(j, "the server sent a message that is not JSON%s%s", "", "");
    }
    cJSON_Delete(m);
}

static void on_close(wsc_conn *c, void *user, int code, int http_status, const char *why)
{
    (void)c;
    (void)http_status;
    job *j = user;
    j->c = NULL;
    j->close_code = code;
    lws_sul_cancel(&j->pace);
    lws_sul_cancel(&j->watchdog);
    if (code == 0) {
        char url[1400];
        ws_url_format(&j->url, NULL, url, sizeof url);
        fail(j, "cannot open a session at %s: %s", url, why);
        j->unreachable = 1;
    } else if (code != 1000 || j->state != J_ENDED) {
        char what[64];
        snprintf(what, sizeof what, "%d", code);
        fail(j, "the server closed the session (close %s)%s", what,
             code == 1013 ? ": it is full (over_capacity); try again later" : "");
    }
    j->state = J_DONE;
}

static const wsc_handlers handlers = {on_open, on_text, on_writable, on_close};

static void reset_file(job *j)
{
    free(j->text);
    j->text = NULL;
    j->text_len = 0;
    for (int i = 0; i < j->n_words; i++)
        free(j->words[i].word);
    free(j->words);
    j->words = NULL;
    j->n_words = j->cap_words = 0;
    j->failed = j->eof = 0;
    j->error[0] = '\0';
    j->sent = 0;
    j->state = J_CONNECTING;
    j->close_code = 0;
}

/* One file: 0 printed, -1 failed (reported). */
static int transcribe_one(job *j, const char *path, int multi)
{
    char err[512] = "";
    reset_file(j);
    j->path = path;
    j->r = af_open(path, j->rate, AF_QUALITY_MEDIUM, err, sizeof err);
    if (!j->r) { /* as local mode says it */
        fprintf(stderr, PROG ": %s: %s\n", path, err);
        return -1;
    }
    j->c = wsc_connect(j->cl, &j->url, j->o->token, &handlers, j, err, sizeof err);
    j->last_heard = now_s();
    if (j->c)
        lws_sul_schedule(wsc_client_context(j->cl), 0, &j->watchdog, on_watchdog, LWS_US_PER_SEC);
    if (!j->c) {
        fail(j, "%s%s", err, "");
        j->unreachable = 1;
        j->state = J_DONE;
    }
    while (j->state != J_DONE)
        if (wsc_client_service(j->cl) < 0) {
            fail(j, "the event loop failed%s%s", "", "");
            break;
        }
    int rc = 0;
    if (j->failed) {
        fprintf(stderr, PROG ": %s: %s\n", path, j->error);
        rc = -1;
    } else {
        out_result res = {
            .file = path,
            .text = j->text ? j->text : "",
            .duration = af_seconds_read(j->r),
            .words = j->words,
            .n_words = j->n_words,
            .model = j->model,
            .chunk_ms = j->chunk_ms,
            .decoder = j->decoder,
        };
        out_write(stdout, j->o->format, &res, multi);
        fflush(stdout);
    }
    af_close(j->r);
    j->r = NULL;
    return rc;
}

/* The model's sample rate from /v1/models; 16000 when it cannot be read (TLS, old server).
   -1 when nothing answers at all. */
static int model_rate(const job *j, char *err, size_t errlen)
{
    if (j->url.tls)
        return 16000;
    char *body = NULL;
    int st = http_get(j->url.host, j->url.port, "/v1/models", j->o->token, 10000, &body, err, errlen);
    if (st < 0)
        return -1;
    int rate = 16000;
    cJSON *root = st == 200 ? cJSON_Parse(body) : NULL;
    const cJSON *data = root ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;
    const cJSON *m0 = cJSON_IsArray(data) ? cJSON_GetArrayItem(data, 0) : NULL;
    const cJSON *sr = m0 ? cJSON_GetObjectItemCaseSensitive(m0, "sample_rate") : NULL;
    if (cJSON_IsNumber(sr) && sr->valueint >= 8000 && sr->valueint <= 48000)
        rate = sr->valueint;
    cJSON_Delete(root);
    free(body);
    return rate;
}

int remote_transcribe(const remote_options *o, const char **files, int n_files)
{
    job j;
    memset(&j, 0, sizeof j);
    j.o = o;
    char err[512];
    if (ws_url_parse(o->url, "/v1/listen", &j.url, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\nTry '" PROG " --help' for more information.\n", err);
        return RX_USAGE;
    }
    char url[1400];
    ws_url_format(&j.url, NULL, url, sizeof url);
    j.rate = model_rate(&j, err, sizeof err);
    if (j.rate < 0) {
        fprintf(stderr, PROG ": cannot reach the server at %s: %s\n", url, err);
        return RX_UNREACHABLE;
    }
    j.block = (size_t)(j.rate * (o->realtime ? REALTIME_BLOCK_S : FAST_BLOCK_S));
    j.buf = malloc(sizeof(float) * j.block);
    j.cl = j.buf ? wsc_client_create(1, j.url.tls, o->insecure, err, sizeof err) : NULL;
    if (!j.cl) {
        fprintf(stderr, PROG ": %s\n", j.buf ? err : "out of memory");
        free(j.buf);
        return RX_FILE_FAILED;
    }
    int status = RX_OK;
    for (int i = 0; i < n_files; i++) {
        if (transcribe_one(&j, files[i], n_files > 1) != 0)
            status = RX_FILE_FAILED;
        if (j.unreachable) { /* the next files would meet the same */
            status = RX_UNREACHABLE;
            break;
        }
    }
    reset_file(&j);
    wsc_client_free(j.cl);
    free(j.buf);
    return status;
}
