/*
 * report.c - see report.h. All times in milliseconds.
 */
#include "report.h"

#include <string.h>

static void row(FILE *f, const char *name, const stats *s)
{
    if (s->count == 0) {
        fprintf(f, "  %-20s %8s\n", name, "-");
        return;
    }
    fprintf(f, "  %-20s %8llu %8.1f %8.1f %8.1f %8.1f %8.1f\n", name, s->count, stats_mean(s),
            stats_quantile(s, 0.5), stats_quantile(s, 0.9), stats_quantile(s, 0.99), s->max);
}

void report_failures(FILE *f, const lt_run *r)
{
    if (r->connect_failures)
        fprintf(f, "  %d sessions could not connect: %s\n", r->connect_failures, r->first_why);
    if (r->unauthorized)
        fprintf(f, "  %d upgrades answered HTTP 401: give the server's token with --token\n", r->unauthorized);
    if (r->refused)
        fprintf(f, "  %d sessions refused with 1013 (over_capacity): the server is at --max-sessions or draining\n",
                r->refused);
    int shown = 0;
    for (int i = 0; i < r->n && shown < 3; i++) {
        const lt_session *s = &r->s[i];
        if (s->error[0] && strcmp(s->error, "over_capacity") != 0 && s->close_code != 0) {
            fprintf(f, "  session %d: %s%s%s (close %d)\n", s->id, s->error, s->why[0] ? ": " : "", s->why,
                    s->close_code);
            shown++;
        }
    }
}

void report_print(FILE *f, const lt_run *r, const server_metrics *before, const server_metrics *after)
{
    const lt_config *c = r->cfg;
    char url[1400];
    ws_url_format(&c->url, NULL, url, sizeof url);
    fprintf(f, "\n%s: %d sessions, %.1f s of audio each, %s in %d ms messages, chunk %d ms, ramp %.1f s, "
               "ran %.1f s\n",
            url, r->n, c->duration_s, c->opus ? "opus" : "pcm_s16le", c->send_ms, r->chunk_ms, c->ramp_s,
            r->t_end - r->t0);
    fprintf(f, "  %-20s %8s %8s %8s %8s %8s %8s  (ms)\n", "", "count", "mean", "p50", "p90", "p99", "max");
    row(f, "connect", &r->connect);
    row(f, "ready", &r->ready);
    row(f, "partial latency", &r->partial);
    row(f, "final latency (end)", &r->final);
    row(f, "close after end", &r->closed);
    row(f, "send lag (client)", &r->lag);
    int ok = r->n - r->sessions_failed;
    fprintf(f, "  sessions: %d ok, %d failed, %d got behind_realtime warnings\n", ok - r->n_cancelled,
            r->sessions_failed, r->sessions_warned);
    if (r->n_cancelled)
        fprintf(f, "  interrupted: %d sessions never started\n", r->n_cancelled);
    fprintf(f, "  closes:");
    for (int i = 0; i < r->n_closes; i++)
        fprintf(f, " %s x%ld", r->closes[i].name, r->closes[i].count);
    fprintf(f, "%s\n", r->n_closes ? "" : " none");
    if (r->n_errors) {
        fprintf(f, "  errors:");
        for (int i = 0; i < r->n_errors; i++)
            fprintf(f, " %s x%ld", r->errors[i].name, r->errors[i].count);
        fprintf(f, "\n");
    }
    if (r->passes_scored)
        fprintf(f, "  WER %.2f%% (%ld edits / %ld reference words) over %ld passes, %ld exact\n",
                r->ref_words ? 100.0 * (double)r->edits / (double)r->ref_words : 0.0, r->edits, r->ref_words,
                r->passes_scored, r->passes_exact);
    else
        fprintf(f, "  WER: no pass scored (no .txt reference, or no file played to its end)\n");
    if (before && after && before->ok && after->ok) {
        double b = server_metrics_batch_mean(before, after), st = server_metrics_step_mean_ms(before, after);
        double lat = server_metrics_latency_mean_ms(before, after);
        fprintf(f, "  server /metrics during the run: batch size mean %.2f, step time mean %.2f ms, "
                   "result latency mean %.1f ms, %.0f fell behind, real-time factor %.3f\n",
                b, st, lat, after->fell_behind - before->fell_behind, after->rtf);
    }
    report_failures(f, r);
    fflush(f);
}

static cJSON *stats_json(const stats *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", (double)s->count);
    if (s->count) {
        cJSON_AddNumberToObject(o, "mean", stats_mean(s));
        cJSON_AddNumberToObject(o, "p50", stats_quantile(s, 0.5));
        cJSON_AddNumberToObject(o, "p90", stats_quantile(s, 0.9));
        cJSON_AddNumberToObject(o, "p95", stats_quantile(s, 0.95));
        cJSON_AddNumberToObject(o, "p99", stats_quantile(s, 0.99));
        cJSON_AddNumberToObject(o, "min", s->min);
        cJSON_AddNumberToObject(o, "max", s->max);
    }
    return o;
}

static cJSON *counts_json(const lt_count *t, int n)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < n; i++)
        cJSON_AddNumberToObject(o, t[i].name, (double)t[i].count);
    return o;
}

static cJSON *metrics_json(const server_metrics *a, const server_metrics *b)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "scraped", a && b && a->ok && b->ok);
    if (a && b && a->ok && b->ok) {
        cJSON_AddNumberToObject(o, "batch_size_mean", server_metrics_batch_mean(a, b));
        cJSON_AddNumberToObject(o, "step_ms_mean", server_metrics_step_mean_ms(a, b));
        cJSON_AddNumberToObject(o, "steps", b->step_count - a->step_count);
        cJSON_AddNumberToObject(o, "result_latency_ms_mean", server_metrics_latency_mean_ms(a, b));
        cJSON_AddNumberToObject(o, "fell_behind", b->fell_behind - a->fell_behind);
        cJSON_AddNumberToObject(o, "audio_seconds_in", b->audio_in - a->audio_in);
        cJSON_AddNumberToObject(o, "real_time_factor", b->rtf);
    }
    return o;
}

cJSON *report_json(const lt_run *r, const server_metrics *before, const server_metrics *after, int per_session)
{
    const lt_config *c = r->cfg;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char url[1400];
    ws_url_format(&c->url, NULL, url, sizeof url);
    cJSON *cfg = cJSON_AddObjectToObject(o, "config");
    cJSON_AddStringToObject(cfg, "url", url);
    cJSON_AddNumberToObject(cfg, "sessions", r->n);
    cJSON_AddNumberToObject(cfg, "ramp_s", c->ramp_s);
    cJSON_AddNumberToObject(cfg, "duration_s", c->duration_s);
    cJSON_AddStringToObject(cfg, "encoding", c->opus ? "opus" : "pcm_s16le");
    cJSON_AddNumberToObject(cfg, "send_ms", c->send_ms);
    cJSON_AddNumberToObject(cfg, "chunk_ms_asked", c->chunk_ms);
    cJSON_AddNumberToObject(cfg, "chunk_ms", r->chunk_ms);
    cJSON_AddNumberToObject(cfg, "audio_files", r->audio->n);
    cJSON_AddNumberToObject(o, "wall_s", r->t_end - r->t0);
    cJSON *lat = cJSON_AddObjectToObject(o, "latency_ms");
    cJSON_AddItemToObject(lat, "connect", stats_json(&r->connect));
    cJSON_AddItemToObject(lat, "ready", stats_json(&r->ready));
    cJSON_AddItemToObject(lat, "partial", stats_json(&r->partial));
    cJSON_AddItemToObject(lat, "final", stats_json(&r->final));
    cJSON_AddItemToObject(lat, "close_after_end", stats_json(&r->closed));
    cJSON_AddItemToObject(lat, "send_lag", stats_json(&r->lag));
    cJSON *ss = cJSON_AddObjectToObject(o, "sessions");
    cJSON_AddNumberToObject(ss, "total", r->n);
    cJSON_AddNumberToObject(ss, "ok", r->n - r->sessions_failed - r->n_cancelled);
    cJSON_AddNumberToObject(ss, "not_started", r->n_cancelled);
    cJSON_AddNumberToObject(ss, "failed", r->sessions_failed);
    cJSON_AddNumberToObject(ss, "warned_behind_realtime", r->sessions_warned);
    cJSON_AddNumberToObject(ss, "connect_failures", r->connect_failures);
    cJSON_AddNumberToObject(ss, "unauthorized", r->unauthorized);
    cJSON_AddNumberToObject(ss, "over_capacity", r->refused);
    if (r->first_why[0])
        cJSON_AddStringToObject(ss, "connect_error", r->first_why);
    cJSON_AddItemToObject(o, "errors", counts_json(r->errors, r->n_errors));
    cJSON_AddItemToObject(o, "closes", counts_json(r->closes, r->n_closes));
    cJSON *w = cJSON_AddObjectToObject(o, "wer");
    cJSON_AddNumberToObject(w, "passes_scored", (double)r->passes_scored);
    cJSON_AddNumberToObject(w, "passes_exact", (double)r->passes_exact);
    cJSON_AddNumberToObject(w, "reference_words", (double)r->ref_words);
    cJSON_AddNumberToObject(w, "edits", (double)r->edits);
    if (r->ref_words)
        cJSON_AddNumberToObject(w, "wer", (double)r->edits / (double)r->ref_words);
    cJSON_AddItemToObject(o, "server_metrics", metrics_json(before, after));
    if (per_session) {
        cJSON *arr = cJSON_AddArrayToObject(o, "per_session");
        for (int i = 0; i < r->n; i++) {
            const lt_session *s = &r->s[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "id", s->id);
            if (s->t_open > 0)
                cJSON_AddNumberToObject(e, "connect_ms", (s->t_open - s->t_connect) * 1000.0);
            if (s->t_ready > 0)
                cJSON_AddNumberToObject(e, "ready_ms", (s->t_ready - s->t_connect) * 1000.0);
            cJSON_AddNumberToObject(e, "partials", s->n_partials);
            cJSON_AddNumberToObject(e, "finals", s->n_finals);
            cJSON_AddNumberToObject(e, "latencies", (double)s->lat_n);
            if (s->lat_n) {
                cJSON_AddNumberToObject(e, "partial_latency_ms_mean", s->lat_sum / (double)s->lat_n);
                cJSON_AddNumberToObject(e, "partial_latency_ms_max", s->lat_max);
            }
            if (s->final_ms >= 0)
                cJSON_AddNumberToObject(e, "final_latency_ms", s->final_ms);
            if (s->t_end > 0 && s->t_closed > 0)
                cJSON_AddNumberToObject(e, "close_after_end_ms", (s->t_closed - s->t_end) * 1000.0);
            cJSON_AddNumberToObject(e, "audio_s", (double)s->samples / AS_RATE);
            cJSON_AddNumberToObject(e, "passes_scored", s->passes_scored);
            cJSON_AddNumberToObject(e, "passes_exact", s->passes_exact);
            cJSON_AddNumberToObject(e, "reference_words", (double)s->ref_words);
            cJSON_AddNumberToObject(e, "edits", (double)s->edits);
            if (s->ref_words)
                cJSON_AddNumberToObject(e, "wer", (double)s->edits / (double)s->ref_words);
            cJSON_AddBoolToObject(e, "warned", s->warned);
            cJSON_AddNumberToObject(e, "close_code", s->close_code);
            if (s->error[0]) {
                cJSON_AddStringToObject(e, "error", s->error);
                cJSON_AddStringToObject(e, "error_message", s->why);
            }
            cJSON_AddItemToArray(arr, e);
        }
    }
    return o;
}
