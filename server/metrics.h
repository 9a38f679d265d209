/*
 * metrics.h - the server's counters, gauges and histograms, rendered as Prometheus text for
 * GET /metrics. One process-wide set behind a mutex: the event loop (sessions, audio in,
 * errors) and the engine worker (batches, step times, latency) both update it.
 */
#ifndef EARSHOT_METRICS_H
#define EARSHOT_METRICS_H

#include <stddef.h>

void metrics_init(void);

void metrics_session_opened(void);  /* a WebSocket session began (sessions_total) */
void metrics_file_job(void);        /* a file transcription began (file_jobs_total) */
void metrics_audio_in(double seconds);  /* 16 kHz audio received from clients */
void metrics_error(const char *code);   /* an error message sent, by its stable code */
void metrics_queue_depth(int n);        /* ready streams waiting for a step, plus queued commands */
/* One engine step: its batch size, wall time and the seconds of audio it encoded. */
void metrics_step(int batch, double seconds, double audio_seconds);
/* Time from a chunk being ready to its partial or final being posted. */
void metrics_result_latency(double seconds);
/* a live session started (+1) or stopped (-1) being behind real time */
void metrics_behind(int delta);
/* The scheduler's current batch limit for the latency mode of chunk_ms (batch_limit.h). */
void metrics_batch_limit(int chunk_ms, int limit);
/* The engine's device (GPU) memory: all of it, and one session's caches (0 and 0 on the CPU). */
void metrics_device_bytes(size_t total, size_t per_session);

/* The whole exposition as a malloc'd string (NULL when out of memory). */
char *metrics_render(int sessions_open, int max_sessions, int draining, size_t send_queue_bytes);

#endif
