/*
 * run.c - one load-test run (see run.h): the sessions' array, the pacing timer, the progress
 * line, and the loop that services libwebsockets until every session is closed.
 *
 * The pacing tick visits every session (a few thousand comparisons every few milliseconds is
 * far cheaper than one timer per session in lws's sorted timer list, which costs a linear
 * insertion per reschedule). A late tick sends all the messages that came due, each stamped
 * with the time it really left, so lateness of the client never shows as server latency; it
 * shows as "send lag" instead.
 */
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

volatile sig_atomic_t lt_interrupted;

double lt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void lt_copy(char *dst, size_t n, const char *src)
{
    size_t len = src ? strlen(src) : 0;
    if (len >= n)
        len = n - 1;
    memcpy(dst, src ? src : "", len);
    dst[len] = '\0';
}

void lt_count_add(lt_count *t, int *n, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(t[i].name, name) == 0) {
            t[i].count++;
            return;
        }
    if (*n < LT_MAX_CODES) {
        lt_copy(t[*n].name, sizeof t[*n].name, name);
        t[(*n)++].count = 1;
    } else {
        t[LT_MAX_CODES - 1].count++; /* the last slot takes the overflow */
    }
}

static lws_usec_t tick_us(const lt_run *r)
{
    int ms = r->cfg->send_ms / 4;
    return (lws_usec_t)(ms < 1 ? 1 : ms > 5 ? 5 : ms) * 1000;
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
    lt_run *r = lws_container_of(sul, lt_run, tick);
    double now = lt_now();
    if (lt_interrupted && !r->stopping) {
        r->stopping = 1;
        for (int i = 0; i < r->n; i++)
            lt_session_stop(&r->s[i], now);
    }
    for (int i = 0; i < r->n; i++)
        if (r->s[i].state != LT_DONE)
            lt_session_tick(&r->s[i], now);
    if (r->n_done < r->n)
        lws_sul_schedule(wsc_client_context(r->cl), 0, &r->tick, on_tick, tick_us(r));
}

static void on_report(lws_sorted_usec_list_t *sul)
{
    lt_run *r = lws_container_of(sul, lt_run, report);
    char lat[160];
    if (r->window.count)
        snprintf(lat, sizeof lat, "p50 %6.0f p90 %6.0f p99 %6.0f max %6.0f (%llu)", stats_quantile(&r->window, 0.5),
                 stats_quantile(&r->window, 0.9), stats_quantile(&r->window, 0.99), r->window.max, r->window.count);
    else
        snprintf(lat, sizeof lat, "%-44s", "none in this interval");
    printf("[%6.1f s] open %5d  streaming %5d  done %5d  failed %4d  behind %4d | partial latency ms %s | "
           "send lag p99 %.1f ms\n",
           lt_now() - r->t0, r->n_open, r->n_streaming, r->n_done, r->sessions_failed, r->sessions_warned, lat,
           stats_quantile(&r->lag, 0.99));
    fflush(stdout);
    stats_reset(&r->window);
    if (r->n_done < r->n)
        lws_sul_schedule(wsc_client_context(r->cl), 0, &r->report, on_report,
                         (lws_usec_t)(r->cfg->report_s * 1e6));
}

int lt_run_go(lt_run *r, const lt_config *cfg, const audio_set *audio, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->audio = audio;
    r->n = cfg->sessions;
    r->s = calloc((size_t)(r->n > 0 ? r->n : 1), sizeof *r->s);
    if (!r->s) {
        snprintf(err, errlen, "out of memory for %d sessions", r->n);
        return -1;
    }
    r->cl = wsc_client_create(r->n, cfg->url.tls, cfg->insecure, err, errlen);
    if (!r->cl)
        return -1;
    r->t0 = lt_now();
    for (int i = 0; i < r->n; i++) {
        lt_session *s = &r->s[i];
        s->run = r;
        s->id = i;
        s->file = i % audio->n; /* sessions start on different files */
        s->final_ms = -1;
        s->connect_at = r->t0 + (r->n > 1 ? cfg->ramp_s * i / (r->n - 1) : 0);
    }
    lws_sul_schedule(wsc_client_context(r->cl), 0, &r->tick, on_tick, 1);
    if (cfg->report_s > 0 && !cfg->quiet)
        lws_sul_schedule(wsc_client_context(r->cl), 0, &r->report, on_report, (lws_usec_t)(cfg->report_s * 1e6));
    while (r->n_done < r->n)
        if (wsc_client_service(r->cl) < 0) {
            snprintf(err, errlen, "the libwebsockets event loop failed");
            break;
        }
    r->t_end = lt_now();
    lws_sul_cancel(&r->tick);
    lws_sul_cancel(&r->report);
    for (int i = 0; i < r->n; i++) {
        lt_session *s = &r->s[i];
        r->passes_scored += s->passes_scored;
        r->passes_exact += s->passes_exact;
        r->ref_words += s->ref_words;
        r->edits += s->edits;
    }
    return r->n_done < r->n ? -1 : 0;
}

void lt_run_free(lt_run *r)
{
    if (r->cl)
        wsc_client_free(r->cl); /* closes what is still open: their on_close runs here */
    r->cl = NULL;
    for (int i = 0; r->s && i < r->n; i++)
        lt_session_finish(&r->s[i]);
    free(r->s);
    r->s = NULL;
}
