/*
 * session.c - one simulated client of a load-test run (see run.h): connect, "start", wait for
 * "ready", stream the audio set from file (id mod files) on, looping, one message every
 * --send-ms; after --duration-s of audio send "end" and wait for the server's close.
 *
 * Audio is one continuous signal per session: PCM messages take the next send_ms of samples
 * even across the end of a file, Opus messages are the next packet. Each file played is a
 * "pass" over [start, end) of the session's samples; the words of the finals are given to the
 * pass in which they start, and a pass is scored (WER against its file's reference) once a
 * word starts after it, or when the session closed normally after "end". Passes cut short by
 * the end of the run are not scored.
 */
#include "run.h"

#include "wer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READY_TIMEOUT_S 30.0 /* "start" sent, no "ready" */
#define CLOSE_TIMEOUT_S 60.0 /* "end" sent, no close */

static void set_error(lt_session *s, const char *code, const char *why)
{
    if (s->error[0])
        return;
    lt_copy(s->error, sizeof s->error, code);
    lt_copy(s->why, sizeof s->why, why);
    lt_count_add(s->run->errors, &s->run->n_errors, code);
}

static void score_pass(lt_session *s, lt_pass *p)
{
    const as_file *f = &s->run->audio->f[p->file];
    if (f->ref) {
        long e = wer_edits(f->ref, f->n_ref, p->hyp, p->n_hyp);
        if (e >= 0) {
            s->passes_scored++;
            s->passes_exact += e == 0;
            s->ref_words += f->n_ref;
            s->edits += e;
        }
    }
    wer_free_words(p->hyp, p->n_hyp);
    p->hyp = NULL;
    p->n_hyp = p->cap_hyp = 0;
}

/* A word starting at sample t of the session's audio. */
static void add_word(lt_session *s, long long t, const char *word)
{
    while (s->first_open < s->n_pass && t >= s->pass[s->first_open].end)
        score_pass(s, &s->pass[s->first_open++]);
    if (s->first_open >= 64 && s->first_open * 2 >= s->n_pass) { /* drop scored passes: long runs */
        memmove(s->pass, s->pass + s->first_open, sizeof *s->pass * (size_t)(s->n_pass - s->first_open));
        s->n_pass -= s->first_open;
        s->first_open = 0;
    }
    if (s->first_open >= s->n_pass)
        return; /* after every pass sent: cannot be */
    lt_pass *p = &s->pass[s->first_open];
    wer_add_words(word, &p->hyp, &p->n_hyp, &p->cap_hyp);
}

void lt_session_finish(lt_session *s)
{
    int clean = s->close_code == 1000 && s->state == LT_ENDING && !s->error[0];
    for (; s->first_open < s->n_pass; s->first_open++) {
        lt_pass *p = &s->pass[s->first_open];
        if (clean && p->end <= s->samples)
            score_pass(s, p);
        else {
            wer_free_words(p->hyp, p->n_hyp);
            p->hyp = NULL;
            p->n_hyp = 0;
        }
    }
    free(s->pass);
    s->pass = NULL;
    s->n_pass = s->cap_pass = 0;
}

/* Seconds of session audio as a sample count; -1 for what no server should send (negative,
   NaN, absurdly large), so bad input is skipped, never converted out of range. */
static long long to_samples(double t)
{
    return t >= 0 && t < 1e9 ? llround(t * AS_RATE) : -1;
}

/* The send time of the message holding the sample just before t seconds of session audio. */
static double sent_at(const lt_session *s, double t)
{
    long long c = to_samples(t);
    if (c <= 0 || s->msgs == 0)
        return -1;
    long long k = (c - 1) / s->run->audio->frame;
    if (k >= s->msgs)
        k = s->msgs - 1;
    if (s->msgs - k <= LT_RING)
        return s->stream_t0 + s->ring[k % LT_RING];
    /* older than the ring: its scheduled time, the earliest it can have been sent */
    return s->stream_t0 + (double)k * s->run->cfg->send_ms / 1000.0;
}

static void on_result(lt_session *s, const cJSON *m, int final, double now)
{
    const cJSON *end = cJSON_GetObjectItemCaseSensitive(m, "end");
    if (cJSON_IsNumber(end)) {
        double t = sent_at(s, end->valuedouble);
        if (t >= 0) {
            double ms = (now - t) * 1000.0;
            stats_add(&s->run->partial, ms);
            stats_add(&s->run->window, ms);
            s->lat_n++;
            s->lat_sum += ms;
            if (ms > s->lat_max)
                s->lat_max = ms;
        }
    }
    if (!final) {
        s->n_partials++;
        return;
    }
    s->n_finals++;
    if (s->state == LT_ENDING)
        s->t_last_final = now;
    const cJSON *words = cJSON_GetObjectItemCaseSensitive(m, "words");
    if (cJSON_IsArray(words)) {
        const cJSON *w;
        cJSON_ArrayForEach(w, words)
        {
            const cJSON *ww = cJSON_GetObjectItemCaseSensitive(w, "word");
            const cJSON *ws = cJSON_GetObjectItemCaseSensitive(w, "start");
            if (cJSON_IsString(ww) && cJSON_IsNumber(ws) && to_samples(ws->valuedouble) >= 0)
                add_word(s, to_samples(ws->valuedouble), ww->valuestring);
        }
    } else { /* no word times: the whole text goes where the segment starts */
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(m, "text");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(m, "start");
        long long at = cJSON_IsNumber(st) ? to_samples(st->valuedouble) : 0;
        if (cJSON_IsString(text) && at >= 0)
            add_word(s, at, text->valuestring);
    }
}

static void send_end(lt_session *s, double now);

static void on_text(wsc_conn *c, void *user, const char *msg, size_t len)
{
    (void)c;
    (void)len;
    lt_session *s = user;
    double now = lt_now();
    cJSON *m = cJSON_Parse(msg);
    const cJSON *type = m ? cJSON_GetObjectItemCaseSensitive(m, "type") : NULL;
    if (!cJSON_IsString(type)) {
        set_error(s, "client_bad_message", "the server sent a message that is not a JSON object with a type");
        cJSON_Delete(m);
        return;
    }
    const char *t = type->valuestring;
    if (strcmp(t, "ready") == 0 && s->state == LT_STARTING) {
        s->t_ready = now;
        stats_add(&s->run->ready, (now - s->t_connect) * 1000.0);
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(m, "chunk_ms");
        if (cJSON_IsNumber(cm) && s->run->chunk_ms == 0)
            s->run->chunk_ms = cm->valueint;
        s->state = LT_STREAMING;
        s->run->n_streaming++;
        s->stream_t0 = s->next_due = now;
        if (s->run->stopping) /* interrupted while it was starting */
            send_end(s, now);
    } else if (strcmp(t, "partial") == 0 || strcmp(t, "final") == 0) {
        on_result(s, m, t[0] == 'f', now);
    } else if (strcmp(t, "warning") == 0) {
        if (!s->warned)
            s->run->sessions_warned++;
        s->warned = 1;
    } else if (strcmp(t, "error") == 0) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(m, "code");
        const cJSON *why = cJSON_GetObjectItemCaseSensitive(m, "message");
        set_error(s, cJSON_IsString(code) ? code->valuestring : "unknown",
                  cJSON_IsString(why) ? why->valuestring : "");
    }
    cJSON_Delete(m);
}

static void on_open(wsc_conn *c, void *user)
{
    lt_session *s = user;
    const lt_config *cfg = s->run->cfg;
    s->t_open = lt_now();
    stats_add(&s->run->connect, (s->t_open - s->t_connect) * 1000.0);
    s->run->n_open++;
    char start[512];
    int n = snprintf(start, sizeof start,
                     "{\"type\":\"start\",\"sample_rate\":%d,\"encoding\":\"%s\",\"channels\":1,"
                     "\"interim_results\":true,\"word_timestamps\":true",
                     AS_RATE, cfg->opus ? "opus" : "pcm_s16le");
    if (cfg->chunk_ms > 0)
        n += snprintf(start + n, sizeof start - (size_t)n, ",\"chunk_ms\":%d", cfg->chunk_ms);
    if (cfg->decoder)
        n += snprintf(start + n, sizeof start - (size_t)n, ",\"decoder\":\"%s\"", cfg->decoder);
    if (cfg->endpointing_ms >= 0)
        n += snprintf(start + n, sizeof start - (size_t)n, ",\"endpointing_ms\":%d", cfg->endpointing_ms);
    snprintf(start + n, sizeof start - (size_t)n, "}");
    s->state = LT_STARTING;
    if (wsc_send(c, 0, start, strlen(start)) != 0) {
        set_error(s, "client_oom", "cannot queue the start message");
        wsc_close(c, 1011);
    }
}

/* The close code docs/protocol.md gives with an error code; 0 for codes not the server's. */
static int protocol_close_code(const char *err)
{
    static const struct {
        const char *code;
        int close;
    } t[] = {{"bad_json", 1008},        {"bad_message", 1008}, {"not_started", 1008},   {"already_started", 1008},
             {"unsupported", 1008},     {"bad_audio", 1008},   {"idle_timeout", 1008},  {"slow_reader", 1008},
             {"message_too_big", 1009}, {"internal", 1011},    {"over_capacity", 1013}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(err, t[i].code) == 0)
            return t[i].close;
    return 0;
}

static void on_close(wsc_conn *c, void *user, int code, int http_status, const char *why)
{
    (void)c;
    lt_session *s = user;
    lt_run *r = s->run;
    /* libwebsockets 4.1 hands a received close code above 1011 (1013: over capacity) to its
       user as 1002; the error message before the close names the real one. */
    if (code == 1002 && s->error[0] && protocol_close_code(s->error) > 1011)
        code = protocol_close_code(s->error);
    s->conn = NULL;
    s->t_closed = lt_now();
    s->close_code = code;
    s->http_status = http_status;
    char name[32];
    snprintf(name, sizeof name, "%d", code);
    lt_count_add(r->closes, &r->n_closes, code ? name : "no_connection");
    if (s->state >= LT_STARTING && s->state != LT_DONE)
        r->n_open--;
    if (s->state == LT_STREAMING)
        r->n_streaming--;
    if (code == 0) {
        r->connect_failures++;
        if (http_status == 401)
            r->unauthorized++;
        if (!r->first_why[0])
            lt_copy(r->first_why, sizeof r->first_why, why);
        set_error(s, http_status == 401 ? "http_401" : http_status ? "http_error" : "connect_failed", why);
    } else if (code == 1013) {
        r->refused++;
        set_error(s, "over_capacity", "the server is full (close 1013)");
    } else if (!(code == 1000 && s->state == LT_ENDING)) {
        char e[32];
        snprintf(e, sizeof e, "closed_%d", code);
        set_error(s, e, why && *why ? why : "the session closed before its end");
    } else {
        stats_add(&r->closed, (s->t_closed - s->t_end) * 1000.0);
        if (s->t_last_final > 0) {
            s->final_ms = (s->t_last_final - s->t_end) * 1000.0;
            stats_add(&r->final, s->final_ms);
        }
    }
    lt_session_finish(s);
    if (s->error[0])
        r->sessions_failed++;
    s->state = LT_DONE;
    r->n_done++;
}

static const wsc_handlers handlers = {on_open, on_text, NULL, on_close};

/* Records that a pass over the current file begins at sample `start` of the session's audio.
   -1 when out of memory. */
static int begin_pass(lt_session *s, long long start)
{
    if (s->n_pass == s->cap_pass) {
        int nc = s->cap_pass ? s->cap_pass * 2 : 8;
        lt_pass *np = realloc(s->pass, sizeof *np * (size_t)nc);
        if (!np)
            return -1;
        s->pass = np;
        s->cap_pass = nc;
    }
    lt_pass *p = &s->pass[s->n_pass++];
    memset(p, 0, sizeof *p);
    p->file = s->file;
    p->start = start;
    p->end = start + s->run->audio->f[s->file].n;
    return 0;
}

/* Puts the next message of audio on the wire; records its send time and passes. */
static int send_audio(lt_session *s, double now)
{
    const audio_set *a = s->run->audio;
    const int frame = a->frame;
    if (s->pos == 0 && begin_pass(s, s->samples) != 0) /* a new pass begins */
        return -1;
    int rc;
    if (a->opus) {
        const as_file *f = &a->f[s->file];
        rc = wsc_send(s->conn, 1, f->pkt[s->pos], (size_t)f->pkt_len[s->pos]);
        if (++s->pos >= f->n_pkt) {
            s->pos = 0;
            s->file = (s->file + 1) % a->n;
        }
    } else {
        int16_t buf[4800]; /* 300 ms, the longest message allowed */
        int have = 0;
        while (have < frame) {
            const as_file *f = &a->f[s->file];
            long take = f->n - s->pos < frame - have ? f->n - s->pos : frame - have;
            memcpy(buf + have, f->pcm + s->pos, sizeof(int16_t) * (size_t)take);
            have += (int)take;
            s->pos += take;
            if (s->pos >= f->n) {
                s->pos = 0;
                s->file = (s->file + 1) % a->n;
                if (have < frame && begin_pass(s, s->samples + have) != 0)
                    return -1; /* the rest of this message starts a new pass */
            }
        }
        rc = wsc_send(s->conn, 1, buf, sizeof(int16_t) * (size_t)frame);
    }
    s->ring[s->msgs % LT_RING] = (float)(now - s->stream_t0);
    s->msgs++;
    s->samples += frame;
    return rc;
}

static void send_end(lt_session *s, double now)
{
    static const char end[] = "{\"type\":\"end\"}";
    s->t_end = now;
    s->state = LT_ENDING;
    s->run->n_streaming--;
    wsc_send(s->conn, 0, end, sizeof end - 1);
}

void lt_session_stop(lt_session *s, double now)
{
    if (s->state == LT_WAITING) {
        s->state = LT_DONE;
        s->run->n_done++;
        s->run->n_cancelled++;
    } else if (s->state == LT_STREAMING && s->conn) {
        send_end(s, now);
    }
}

void lt_session_tick(lt_session *s, double now)
{
    lt_run *r = s->run;
    const lt_config *cfg = r->cfg;
    switch (s->state) {
    case LT_WAITING:
        if (now >= s->connect_at) {
            char err[256];
            s->t_connect = now;
            s->state = LT_CONNECTING;
            s->conn = wsc_connect(r->cl, &cfg->url, cfg->token, &handlers, s, err, sizeof err);
            if (!s->conn) { /* no handler will run */
                s->close_code = 0;
                r->connect_failures++;
                if (!r->first_why[0])
                    lt_copy(r->first_why, sizeof r->first_why, err);
                set_error(s, "connect_failed", err);
                lt_count_add(r->closes, &r->n_closes, "no_connection");
                r->sessions_failed++;
                s->state = LT_DONE;
                r->n_done++;
            }
        }
        break;
    case LT_STARTING:
        if (now - s->t_open > READY_TIMEOUT_S && s->conn) {
            set_error(s, "client_no_ready", "no ready within 30 s of start");
            wsc_close(s->conn, 1000);
        }
        break;
    case LT_STREAMING: {
        double send_s = cfg->send_ms / 1000.0;
        long long total = (long long)(cfg->duration_s * AS_RATE);
        while (s->conn && now >= s->next_due && s->state == LT_STREAMING) {
            stats_add(&r->lag, (now - s->next_due) * 1000.0);
            if (send_audio(s, now) != 0) {
                set_error(s, "client_oom", "cannot queue audio");
                wsc_close(s->conn, 1011);
                break;
            }
            s->next_due += send_s;
            if (s->samples >= total)
                send_end(s, now);
        }
        break;
    }
    case LT_ENDING:
        if (now - s->t_end > CLOSE_TIMEOUT_S && s->conn) {
            set_error(s, "client_no_close", "no close within 60 s of end");
            wsc_close(s->conn, 1000);
        }
        break;
    default:
        break;
    }
}
