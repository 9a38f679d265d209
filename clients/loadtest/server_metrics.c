/*
 * server_metrics.c - see server_metrics.h. Lines are "name value" or "name{labels} value";
 * only the unlabelled sums and counts are needed.
 */
#include "server_metrics.h"

#include "http_get.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void take(const char *line, const char *name, double *out)
{
    size_t n = strlen(name);
    if (strncmp(line, name, n) == 0 && line[n] == ' ')
        *out = strtod(line + n + 1, NULL);
}

int server_metrics_scrape(const ws_url *u, const char *token, server_metrics *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (u->tls) {
        snprintf(err, errlen, "/metrics is not read over TLS");
        return -1;
    }
    char *body = NULL;
    int st = http_get(u->host, u->port, "/metrics", token, 5000, &body, err, errlen);
    if (st < 0)
        return -1;
    if (st != 200) {
        snprintf(err, errlen, "GET /metrics answered HTTP %d%s", st, st == 401 ? " (a token is needed)" : "");
        free(body);
        return -1;
    }
    for (char *line = body; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        take(line, "earshot_batch_size_sum", &m->batch_sum);
        take(line, "earshot_batch_size_count", &m->batch_count);
        take(line, "earshot_step_seconds_sum", &m->step_sum);
        take(line, "earshot_step_seconds_count", &m->step_count);
        take(line, "earshot_partial_latency_seconds_sum", &m->latency_sum);
        take(line, "earshot_partial_latency_seconds_count", &m->latency_count);
        take(line, "earshot_sessions_fell_behind_total", &m->fell_behind);
        take(line, "earshot_sessions_total", &m->sessions_total);
        take(line, "earshot_audio_seconds_in_total", &m->audio_in);
        take(line, "earshot_real_time_factor", &m->rtf);
        line = nl ? nl + 1 : NULL;
    }
    free(body);
    m->ok = 1;
    return 0;
}

static double mean(double s0, double c0, double s1, double c1)
{
    return c1 - c0 > 0 ? (s1 - s0) / (c1 - c0) : -1;
}

double server_metrics_batch_mean(const server_metrics *a, const server_metrics *b)
{
    return a->ok && b->ok ? mean(a->batch_sum, a->batch_count, b->batch_sum, b->batch_count) : -1;
}

double server_metrics_step_mean_ms(const server_metrics *a, const server_metrics *b)
{
    double v = a->ok && b->ok ? mean(a->step_sum, a->step_count, b->step_sum, b->step_count) : -1;
    return v < 0 ? -1 : v * 1000.0;
}

double server_metrics_latency_mean_ms(const server_metrics *a, const server_metrics *b)
{
    double v = a->ok && b->ok ? mean(a->latency_sum, a->latency_count, b->latency_sum, b->latency_count) : -1;
    return v < 0 ? -1 : v * 1000.0;
}
