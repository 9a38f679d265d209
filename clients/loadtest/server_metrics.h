/*
 * server_metrics.h - what the load test reads from the server's /metrics (Prometheus text,
 * names from server/metrics.c) before and after a run, so the run's own share can be told:
 * the mean batch size and step time of the engine steps taken during the run, the server's
 * own result latency, sessions that fell behind, errors.
 */
#ifndef EARSHOT_LT_SERVER_METRICS_H
#define EARSHOT_LT_SERVER_METRICS_H

#include "url.h"

typedef struct {
    int ok; /* the scrape worked */
    double batch_sum, batch_count;
    double step_sum, step_count;       /* seconds */
    double latency_sum, latency_count; /* earshot_partial_latency_seconds */
    double fell_behind, sessions_total, audio_in, rtf;
} server_metrics;

/* GETs /metrics from the URL's host and port (plain HTTP only). 0, or -1 with err. */
int server_metrics_scrape(const ws_url *u, const char *token, server_metrics *m, char *err, size_t errlen);

/* Means over what happened between a and b (-1 when nothing did). */
double server_metrics_batch_mean(const server_metrics *a, const server_metrics *b);
double server_metrics_step_mean_ms(const server_metrics *a, const server_metrics *b);
double server_metrics_latency_mean_ms(const server_metrics *a, const server_metrics *b);

#endif
