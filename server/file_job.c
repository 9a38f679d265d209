/*
 * file_job.c - file transcription over HTTP (see file_job.h).
 *
 * A job's life: UPLOADING (multipart parsed by lws_spa, the file part written to a temporary
 * file) -> RUNNING (a decoder thread feeds the worker; finals are collected) -> ANSWERED (the
 * response is handed to http.c) -> freed once detached and its thread joined.
 *
 * Who may touch what: the event loop owns the job; the decoder thread reads the fields set
 * before it started and, under the job's mutex, reads done_s and cancelled and writes
 * thread_done, fail_status and fail_why. Only the event loop calls sched_close, and only after
 * the thread has been joined, so a stream is never reopened after it was closed.
 */
#include "file_job.h"

#include "audio_file.h"
#include "http.h"
#include "metrics.h"
#include "output.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { FJ_UPLOADING, FJ_RUNNING, FJ_ANSWERED } fj_state;

typedef enum { FMT_JSON, FMT_TEXT, FMT_SRT, FMT_VTT, FMT_VERBOSE_JSON } fj_format;

struct file_job {
    struct file_job *next;
    server *srv;
    struct lws *wsi; /* NULL once detached */
    uint64_t id;
    fj_state state;
    /* the upload */
    struct lws_spa *spa;
    char path[64];
    int fd;
    size_t bytes;
    int got_file, too_big, write_failed;
    /* the request */
    fj_format format;
    int want_words;
    sched_open_params op;
    /* the decoder thread */
    pthread_t thread;
    int thread_started, thread_joined;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    double done_s;    /* encoded so far, from the worker's progress */
    int cancelled;    /* the event loop wants the thread to stop */
    int engine_done;  /* the worker has sent every final (OUT_DONE) */
    int thread_done;  /* the thread has returned (or is about to) */
    unsigned fail_status;
    char fail_why[256];
    double duration;  /* seconds of audio decoded, written by the thread before thread_done */
    /* results */
    cJSON *segments;
};

static const char *const form_fields[] = {"model",       "response_format", "language",   "prompt",
                                          "temperature", "chunk_ms",        "decoder",
                                          "timestamp_granularities[]"};
enum { F_MODEL, F_FORMAT, F_LANGUAGE, F_PROMPT, F_TEMPERATURE, F_CHUNK_MS, F_DECODER, F_GRANULARITIES, F_COUNT };

/* ---- the list of jobs ---- */

static file_job **list_head(server *srv) { return (file_job **)&srv->file_jobs; }

int file_jobs_open(const server *srv)
{
    int n = 0;
    for (const file_job *j = srv->file_jobs; j; j = j->next)
        n++;
    return n;
}

static void free_job(file_job *j)
{
    if (j->spa)
        lws_spa_destroy(j->spa);
    if (j->fd >= 0)
        close(j->fd);
    if (j->path[0])
        unlink(j->path);
    if (j->thread_started && j->srv->sched) /* only the thread opens a stream */
        sched_close(j->srv->sched, j->id);
    cJSON_Delete(j->segments);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* ---- the upload ---- */

static int on_upload(void *data, const char *name, const char *filename, char *buf, int len,
                     enum lws_spa_fileupload_states state)
{
    file_job *j = data;
    (void)filename;
    if (!name || strcmp(name, "file") != 0)
        return 0; /* another file-like part: ignored */
    if (state == LWS_UFS_OPEN) {
        if (j->got_file)
            return -1; /* two files in one request */
        j->got_file = 1;
        return 0;
    }
    if ((state == LWS_UFS_CONTENT || state == LWS_UFS_FINAL_CONTENT) && len > 0) {
        size_t max = j->srv->opts->max_upload_bytes;
        if (j->bytes + (size_t)len > max) {
            j->too_big = 1;
            return -1;
        }
        for (int off = 0; off < len;) {
            ssize_t w = write(j->fd, buf + off, (size_t)(len - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                j->write_failed = 1;
                return -1;
            }
            off += (int)w;
        }
        j->bytes += (size_t)len;
    }
    return 0;
}

static void refuse(unsigned *status, const char **code, char *why, size_t why_len, unsigned st, const char *c,
                   const char *msg)
{
    *status = st;
    *code = c;
    snprintf(why, why_len, "%s", msg);
}

file_job *file_job_begin(server *srv, struct lws *wsi, unsigned *status, const char **code, char *why,
                         size_t why_len)
{
    int max_jobs = srv->opts->max_file_jobs;
    if (srv->draining) {
        refuse(status, code, why, why_len, HTTP_STATUS_SERVICE_UNAVAILABLE, "over_capacity",
               "the server is shutting down; try another");
        return NULL;
    }
    if (file_jobs_open(srv) >= max_jobs) {
        refuse(status, code, why, why_len, HTTP_STATUS_SERVICE_UNAVAILABLE, "over_capacity",
               "too many file transcriptions are running; try again later");
        return NULL;
    }
    /* libwebsockets 4.1 does not end chunked request bodies: the size must be known. It is
       checked against the limit (plus room for the form's other parts) before any body. */
    char num[32];
    if (lws_hdr_copy(wsi, num, sizeof num, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0) {
        refuse(status, code, why, why_len, HTTP_STATUS_LENGTH_REQUIRED, "length_required",
               "send the upload with a Content-Length (chunked uploads are not taken)");
        return NULL;
    }
    if (strtoull(num, NULL, 10) > srv->opts->max_upload_bytes + 65536) {
        snprintf(why, why_len, "uploads may have at most %zu bytes", srv->opts->max_upload_bytes);
        *status = HTTP_STATUS_REQ_ENTITY_TOO_LARGE;
        *code = "too_large";
        return NULL;
    }
    char ctype[256] = "";
    lws_hdr_copy(wsi, ctype, sizeof ctype, WSI_TOKEN_HTTP_CONTENT_TYPE);
    if (strncmp(ctype, "multipart/form-data", 19) != 0) {
        refuse(status, code, why, why_len, HTTP_STATUS_BAD_REQUEST, "bad_request",
               "send the file as multipart/form-data with a 'file' part");
        return NULL;
    }

    file_job *j = calloc(1, sizeof *j);
    if (!j) {
        refuse(status, code, why, why_len, HTTP_STATUS_INTERNAL_SERVER_ERROR, "internal", "out of memory");
        return NULL;
    }
    j->srv = srv;
    j->wsi = wsi;
    j->id = ++srv->next_id;
    j->fd = -1;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    const char *tmp = getenv("TMPDIR");
    snprintf(j->path, sizeof j->path, "%s/earshot-upload-XXXXXX", tmp && tmp[0] && strlen(tmp) < 40 ? tmp : "/tmp");
    j->fd = mkstemp(j->path);
    if (j->fd < 0) {
        j->path[0] = 0;
        snprintf(why, why_len, "cannot store the upload: %s", strerror(errno));
        *status = HTTP_STATUS_INTERNAL_SERVER_ERROR;
        *code = "internal";
        free_job(j);
        return NULL;
    }
    lws_spa_create_info_t si;
    memset(&si, 0, sizeof si);
    si.param_names = form_fields;
    si.count_params = F_COUNT;
    si.max_storage = 4096;
    si.opt_cb = on_upload;
    si.opt_data = j;
    j->spa = lws_spa_create_via_info(wsi, &si);
    if (!j->spa) {
        refuse(status, code, why, why_len, HTTP_STATUS_BAD_REQUEST, "bad_request",
               "the multipart body cannot be parsed (no boundary?)");
        free_job(j);
        return NULL;
    }
    j->next = srv->file_jobs;
    srv->file_jobs = j;
    return j;
}

static void upload_failed(file_job *j, unsigned *status, const char **code, char *why, size_t why_len)
{
    if (j->too_big) {
        *status = HTTP_STATUS_REQ_ENTITY_TOO_LARGE;
        *code = "too_large";
        snprintf(why, why_len, "uploads may have at most %zu bytes", j->srv->opts->max_upload_bytes);
    } else if (j->write_failed) {
        refuse(status, code, why, why_len, HTTP_STATUS_INTERNAL_SERVER_ERROR, "internal",
               "cannot store the upload (disk full?)");
    } else {
        refuse(status, code, why, why_len, HTTP_STATUS_BAD_REQUEST, "bad_request",
               "the multipart body is malformed (or holds two files)");
    }
}

int file_job_body(file_job *j, const void *in, size_t len, unsigned *status, const char **code, char *why,
                  size_t why_len)
{
    if (j->state != FJ_UPLOADING || !j->spa)
        return 0;
    if (lws_spa_process(j->spa, in, (int)len) < 0) {
        upload_failed(j, status, code, why, why_len);
        return -1;
    }
    return 0;
}

/* ---- the decoder thread ---- */

static void thread_fail(file_job *j, unsigned status, const char *why)
{
    pthread_mutex_lock(&j->mu);
    if (!j->fail_status) {
        j->fail_status = status;
        snprintf(j->fail_why, sizeof j->fail_why, "%s", why);
    }
    pthread_mutex_unlock(&j->mu);
}

static void *decoder_thread(void *arg)
{
    file_job *j = arg;
    server *srv = j->srv;
    char err[256] = "";
    af_reader *r = af_open(j->path, srv->model.sample_rate, AF_QUALITY_MEDIUM, err, sizeof err);
    if (!r) {
        thread_fail(j, HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE, err);
    } else if (sched_open(srv->sched, j->id, &j->op) != 0) {
        thread_fail(j, HTTP_STATUS_INTERNAL_SERVER_ERROR, "out of memory");
    } else {
        enum { BLOCK = 16000 };
        float *buf = malloc(BLOCK * sizeof *buf);
        double fed = 0;
        long n = 0;
        int stop = !buf;
        while (!stop && (n = af_read(r, buf, BLOCK, err, sizeof err)) > 0) {
            if (sched_audio(srv->sched, j->id, buf, (size_t)n) != 0)
                break;
            fed += (double)n / srv->model.sample_rate;
            pthread_mutex_lock(&j->mu);
            while (!j->cancelled && fed - j->done_s > FILE_JOB_AHEAD_S)
                pthread_cond_wait(&j->cv, &j->mu);
            stop = j->cancelled;
            pthread_mutex_unlock(&j->mu);
        }
        free(buf);
        if (!buf || n > 0)
            thread_fail(j, HTTP_STATUS_INTERNAL_SERVER_ERROR, "out of memory");
        else if (n < 0)
            thread_fail(j, HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE, err);
        else if (!stop && sched_end(srv->sched, j->id) != 0)
            thread_fail(j, HTTP_STATUS_INTERNAL_SERVER_ERROR, "out of memory");
        j->duration = af_seconds_read(r);
    }
    af_close(r);
    pthread_mutex_lock(&j->mu);
    j->thread_done = 1;
    pthread_mutex_unlock(&j->mu);
    lws_cancel_service(srv->ctx); /* file_job_poll joins us */
    return NULL;
}

static int parse_format(const char *s, fj_format *f)
{
    static const struct {
        const char *name;
        fj_format f;
    } table[] = {{"json", FMT_JSON}, {"text", FMT_TEXT}, {"srt", FMT_SRT}, {"vtt", FMT_VTT},
                 {"verbose_json", FMT_VERBOSE_JSON}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(s, table[i].name) == 0) {
            *f = table[i].f;
            return 0;
        }
    return -1;
}

int file_job_body_done(file_job *j, unsigned *status, const char **code, char *why, size_t why_len)
{
    if (j->state != FJ_UPLOADING)
        return 0;
    if (lws_spa_finalize(j->spa) < 0) {
        upload_failed(j, status, code, why, why_len);
        return -1;
    }
    if (!j->got_file) {
        refuse(status, code, why, why_len, HTTP_STATUS_BAD_REQUEST, "bad_request",
               "the request has no 'file' part (send it with a filename, as curl -F file=@talk.wav does)");
        return -1;
    }
    const model_info *mi = &j->srv->model;
    const char *fmt = lws_spa_get_string(j->spa, F_FORMAT);
    j->format = FMT_JSON;
    if (fmt && fmt[0] && parse_format(fmt, &j->format) != 0) {
        snprintf(why, why_len, "response_format '%.64s' is not supported (json, text, srt, vtt, verbose_json)", fmt);
        *status = HTTP_STATUS_BAD_REQUEST;
        *code = "bad_request";
        return -1;
    }
    const char *gran = lws_spa_get_string(j->spa, F_GRANULARITIES);
    j->want_words = gran && strstr(gran, "word") != NULL;

    es_decoder_kind dec = ES_DECODER_DEFAULT;
    const char *d = lws_spa_get_string(j->spa, F_DECODER);
    if (d && d[0]) {
        if (strcmp(d, "rnnt") == 0 && mi->has_rnnt)
            dec = ES_DECODER_RNNT;
        else if (strcmp(d, "ctc") == 0 && mi->has_ctc)
            dec = ES_DECODER_CTC;
        else {
            snprintf(why, why_len, "decoder '%.32s' is not available (the model has%s%s)", d,
                     mi->has_rnnt ? " rnnt" : "", mi->has_ctc ? " ctc" : "");
            *status = HTTP_STATUS_BAD_REQUEST;
            *code = "bad_request";
            return -1;
        }
    }
    /* Without a chunk_ms, a file gets the largest chunk: the most context, the best accuracy. */
    int chunk_ms = 1 << 30;
    const char *c = lws_spa_get_string(j->spa, F_CHUNK_MS);
    if (c && c[0]) {
        char *end;
        long v = strtol(c, &end, 10);
        if (*end || v < 1 || v > 100000) {
            refuse(status, code, why, why_len, HTTP_STATUS_BAD_REQUEST, "bad_request",
                   "chunk_ms must be a whole number of milliseconds");
            return -1;
        }
        chunk_ms = (int)v;
    }
    j->op = (sched_open_params){.client_rate = mi->sample_rate,
                                .lookahead = model_info_pick(mi, chunk_ms),
                                .decoder = dec,
                                .endpointing_ms = 800,
                                .interim_results = 0,
                                .word_timestamps = 1,
                                .priority = 1,
                                .defer_endpoints = 1};
    snprintf(j->op.session_id, sizeof j->op.session_id, "file-%llu", (unsigned long long)j->id);
    lws_spa_destroy(j->spa);
    j->spa = NULL;
    close(j->fd);
    j->fd = -1;

    j->segments = cJSON_CreateArray();
    j->state = FJ_RUNNING;
    if (!j->segments || pthread_create(&j->thread, NULL, decoder_thread, j) != 0) {
        j->state = FJ_ANSWERED;
        refuse(status, code, why, why_len, HTTP_STATUS_INTERNAL_SERVER_ERROR, "internal",
               "cannot start the decoder thread");
        return -1;
    }
    j->thread_started = 1;
    metrics_file_job();
    return 0;
}

/* ---- results and the response ---- */

static file_job *find(server *srv, uint64_t id)
{
    for (file_job *j = srv->file_jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

static void stop_thread(file_job *j)
{
    pthread_mutex_lock(&j->mu);
    j->cancelled = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static char *error_body(const char *code, const char *why)
{
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", why);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static void answer(file_job *j, unsigned status, const char *ctype, char *body)
{
    j->state = FJ_ANSWERED;
    stop_thread(j);
    if (!j->wsi) {
        free(body);
        return;
    }
    if (!body) {
        status = HTTP_STATUS_INTERNAL_SERVER_ERROR;
        ctype = "application/json";
        body = error_body("internal", "out of memory");
    }
    http_respond_later(j->wsi, status, ctype, body, body ? strlen(body) : 0);
}

static void answer_error(file_job *j, unsigned status, const char *code, const char *why)
{
    metrics_error(code);
    answer(j, status, "application/json", error_body(code, why));
}

/* The words of every final, in order, as es_word for the subtitle writer. */
static es_word *all_words(const file_job *j, int *n)
{
    int cap = 0;
    const cJSON *seg, *w;
    cJSON_ArrayForEach(seg, j->segments) cap += cJSON_GetArraySize(cJSON_GetObjectItem(seg, "words"));
    es_word *words = calloc(cap ? cap : 1, sizeof *words);
    *n = 0;
    if (!words)
        return NULL;
    cJSON_ArrayForEach(seg, j->segments) cJSON_ArrayForEach(w, cJSON_GetObjectItem(seg, "words"))
    {
        words[*n].word = cJSON_GetStringValue(cJSON_GetObjectItem(w, "word"));
        words[*n].start = cJSON_GetNumberValue(cJSON_GetObjectItem(w, "start"));
        words[*n].end = cJSON_GetNumberValue(cJSON_GetObjectItem(w, "end"));
        if (words[*n].word)
            (*n)++;
    }
    return words;
}

/* The segments' texts joined by spaces (malloc'd). */
static char *full_text(const file_job *j)
{
    size_t len = 1;
    const cJSON *seg;
    cJSON_ArrayForEach(seg, j->segments) len += strlen(cJSON_GetStringValue(cJSON_GetObjectItem(seg, "text"))) + 1;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    *p = 0;
    cJSON_ArrayForEach(seg, j->segments)
    {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(seg, "text"));
        if (!t[0])
            continue;
        if (p != s)
            *p++ = ' ';
        size_t n = strlen(t);
        memcpy(p, t, n + 1);
        p += n;
    }
    return s;
}

static char *verbose_json(const file_job *j, const char *text)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "task", "transcribe");
    cJSON_AddStringToObject(root, "language", "english");
    cJSON_AddNumberToObject(root, "duration", j->duration);
    cJSON_AddStringToObject(root, "text", text);
    cJSON_AddStringToObject(root, "model", j->srv->model.name);
    cJSON *segs = cJSON_AddArrayToObject(root, "segments"), *words = NULL;
    if (j->want_words)
        words = cJSON_AddArrayToObject(root, "words");
    int id = 0;
    const cJSON *seg, *w;
    cJSON_ArrayForEach(seg, j->segments)
    {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddNumberToObject(s, "id", id++);
        cJSON_AddNumberToObject(s, "start", cJSON_GetNumberValue(cJSON_GetObjectItem(seg, "start")));
        cJSON_AddNumberToObject(s, "end", cJSON_GetNumberValue(cJSON_GetObjectItem(seg, "end")));
        cJSON_AddStringToObject(s, "text", cJSON_GetStringValue(cJSON_GetObjectItem(seg, "text")));
        cJSON_AddItemToArray(segs, s);
        if (words)
            cJSON_ArrayForEach(w, cJSON_GetObjectItem(seg, "words"))
                cJSON_AddItemToArray(words, cJSON_Duplicate(w, 1));
    }
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static void answer_success(file_job *j)
{
    char *text = full_text(j), *body = NULL;
    const char *ctype = "application/json";
    if (!text) {
        answer(j, HTTP_STATUS_INTERNAL_SERVER_ERROR, ctype, NULL);
        return;
    }
    if (j->format == FMT_JSON) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "text", text);
        body = cJSON_PrintUnformatted(root);
        cJSON_Delete(root);
    } else if (j->format == FMT_VERBOSE_JSON) {
        body = verbose_json(j, text);
    } else if (j->format == FMT_TEXT) {
        ctype = "text/plain; charset=utf-8";
        body = malloc(strlen(text) + 2);
        if (body)
            sprintf(body, "%s\n", text);
    } else { /* subtitles, cut from the words by the same writer as earshot-transcribe's */
        ctype = j->format == FMT_SRT ? "application/x-subrip; charset=utf-8" : "text/vtt; charset=utf-8";
        int n = 0;
        es_word *words = all_words(j, &n);
        size_t len = 0;
        FILE *f = words ? open_memstream(&body, &len) : NULL;
        if (f) {
            out_result r = {.file = "upload", .text = text, .duration = j->duration, .words = words, .n_words = n};
            out_write(f, j->format == FMT_SRT ? OUT_SRT : OUT_VTT, &r, 0);
            fclose(f);
        }
        free(words);
    }
    free(text);
    answer(j, HTTP_STATUS_OK, ctype, body);
}

int file_job_deliver(server *srv, out_msg *m)
{
    file_job *j = find(srv, m->session);
    if (!j)
        return 0;
    if (j->state != FJ_RUNNING)
        return 1;
    switch (m->kind) {
    case OUT_PROGRESS:
        pthread_mutex_lock(&j->mu);
        j->done_s = m->audio_done_s;
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
        break;
    case OUT_FINAL: {
        cJSON *f = cJSON_Parse(m->json);
        cJSON *seg = cJSON_CreateObject();
        if (f && seg) {
            static const char *const keep[] = {"start", "end", "text", "words"};
            for (size_t i = 0; i < 4; i++) {
                cJSON *v = cJSON_DetachItemFromObject(f, keep[i]);
                cJSON_AddItemToObject(seg, keep[i], v ? v : cJSON_CreateNull());
            }
            cJSON_AddItemToArray(j->segments, seg);
            seg = NULL;
        }
        cJSON_Delete(f);
        cJSON_Delete(seg);
        break;
    }
    case OUT_DONE:
        /* The thread called sched_end just before returning: the answer waits until it is
           joined (file_job_poll), when the file's duration is known. */
        j->engine_done = 1;
        if (j->thread_joined)
            answer_success(j);
        break;
    case OUT_ERROR: {
        cJSON *e = cJSON_Parse(m->json);
        const char *msg = e ? cJSON_GetStringValue(cJSON_GetObjectItem(e, "message")) : NULL;
        answer_error(j, m->close_code == 1013 ? HTTP_STATUS_SERVICE_UNAVAILABLE : HTTP_STATUS_INTERNAL_SERVER_ERROR,
                     m->code ? m->code : "internal", msg ? msg : "the engine failed");
        cJSON_Delete(e);
        break;
    }
    default:
        break;
    }
    return 1;
}

void file_job_detach(file_job *j)
{
    if (!j)
        return;
    j->wsi = NULL;
    stop_thread(j);
    file_job_poll(j->srv);
}

void file_job_poll(server *srv)
{
    file_job **pp = list_head(srv);
    while (*pp) {
        file_job *j = *pp;
        if (j->thread_started && !j->thread_joined) {
            pthread_mutex_lock(&j->mu);
            int done = j->thread_done;
            pthread_mutex_unlock(&j->mu);
            if (done) {
                pthread_join(j->thread, NULL);
                j->thread_joined = 1;
                if (j->state == FJ_RUNNING && j->fail_status) /* decoding failed */
                    answer_error(j, j->fail_status,
                                 j->fail_status == HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE ? "bad_audio" : "internal",
                                 j->fail_why);
                else if (j->state == FJ_RUNNING && j->engine_done)
                    answer_success(j);
            }
        }
        int idle = !j->thread_started || j->thread_joined;
        if (!j->wsi && idle) {
            *pp = j->next;
            free_job(j);
            continue;
        }
        pp = &j->next;
    }
}

void file_jobs_cancel_all(server *srv)
{
    for (file_job *j = srv->file_jobs; j; j = j->next) {
        j->wsi = NULL;
        stop_thread(j);
        if (j->thread_started && !j->thread_joined) {
            pthread_join(j->thread, NULL);
            j->thread_joined = 1;
        }
    }
    file_job_poll(srv);
}
