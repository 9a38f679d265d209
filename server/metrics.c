/*
 * metrics.c - Prometheus text exposition of the server's metrics (see metrics.h).
 *
 * Everything lives in one static struct under one mutex: updates are a few additions, so the
 * lock is never held for long. Histograms keep cumulative bucket counts as Prometheus wants
 * them; errors are counted per stable error code (the codes are few, a small table suffices).
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CODES 24
#define MAX_MODES 16

typedef struct {
    const double *le;
    int n;
    unsigned long long count[16];
    unsigned long long total;
    double sum;
} histogram;

static const double batch_le[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
static const double step_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
static const double latency_le[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

static struct {
    pthread_mutex_t mu;
    unsigned long long sessions_total;
    unsigned long long file_jobs_total;
    double audio_in_s;
    double step_s, step_audio_s;
    int queue_depth;
    int behind_now;    /* live sessions behind real time now */
    long behind_total; /* times a live session fell behind */
    histogram batch, step, latency;
    const char *codes[MAX_CODES];
    unsigned long long code_count[MAX_CODES];
    int n_modes, mode_chunk_ms[MAX_MODES], mode_limit[MAX_MODES];
    size_t device_bytes, device_bytes_per_session;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void hist_init(histogram *h, const double *le, int n)
{
    memset(h, 0, sizeof *h);
    h->le = le;
    h->n = n;
}

static void hist_add(histogram *h, double v)
{
    for (int i = 0; i < h->n; i++)
        if (v <= h->le[i])
            h->count[i]++;
    h->total++;
    h->sum += v;
}

void metrics_init(void)
{
    pthread_mutex_lock(&M.mu);
    hist_init(&M.batch, batch_le, (int)(sizeof batch_le / sizeof batch_le[0]));
    hist_init(&M.step, step_le, (int)(sizeof step_le / sizeof step_le[0]));
    hist_init(&M.latency, latency_le, (int)(sizeof latency_le / sizeof latency_le[0]));
    pthread_mutex_unlock(&M.mu);
}

void metrics_session_opened(void)
{
    pthread_mutex_lock(&M.mu);
    M.sessions_total++;
    pthread_mutex_unlock(&M.mu);
}

void metrics_file_job(void)
{
    pthread_mutex_lock(&M.mu);
    M.file_jobs_total++;
    pthread_mutex_unlock(&M.mu);
}

void metrics_audio_in(double seconds)
{
    pthread_mutex_lock(&M.mu);
    M.audio_in_s += seconds;
    pthread_mutex_unlock(&M.mu);
}

void metrics_error(const char *code)
{
    pthread_mutex_lock(&M.mu);
    for (int i = 0; i < MAX_CODES; i++) {
        if (!M.codes[i])
            M.codes[i] = code; /* codes are static strings from protocol.c */
        if (strcmp(M.codes[i], code) == 0) {
            M.code_count[i]++;
            break;
        }
    }
    pthread_mutex_unlock(&M.mu);
}

void metrics_queue_depth(int n)
{
    pthread_mutex_lock(&M.mu);
    M.queue_depth = n;
    pthread_mutex_unlock(&M.mu);
}

void metrics_step(int batch, double seconds, double audio_seconds)
{
    pthread_mutex_lock(&M.mu);
    hist_add(&M.batch, batch);
    hist_add(&M.step, seconds);
    M.step_s += seconds;
    M.step_audio_s += audio_seconds;
    pthread_mutex_unlock(&M.mu);
}

void metrics_behind(int delta)
{
    pthread_mutex_lock(&M.mu);
    M.behind_now += delta;
    if (delta > 0)
        M.behind_total++;
    pthread_mutex_unlock(&M.mu);
}

void metrics_batch_limit(int chunk_ms, int limit)
{
    pthread_mutex_lock(&M.mu);
    int i = 0;
    while (i < M.n_modes && M.mode_chunk_ms[i] != chunk_ms)
        i++;
    if (i < MAX_MODES) {
        if (i == M.n_modes)
            M.n_modes++;
        M.mode_chunk_ms[i] = chunk_ms;
        M.mode_limit[i] = limit;
    }
    pthread_mutex_unlock(&M.mu);
}

void metrics_device_bytes(size_t total, size_t per_session)
{
    pthread_mutex_lock(&M.mu);
    M.device_bytes = total;
    M.device_bytes_per_session = per_session;
    pthread_mutex_unlock(&M.mu);
}

void metrics_result_latency(double seconds)
{
    pthread_mutex_lock(&M.mu);
    hist_add(&M.latency, seconds);
    pthread_mutex_unlock(&M.mu);
}

/* A growing output buffer. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void out(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = b->p ? vsnprintf(b->p + b->len, room, fmt, ap) : -1;
        va_end(ap);
        if (b->p && n >= 0 && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

static void hist_out(sbuf *b, const char *name, const char *help, const histogram *h)
{
    out(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < h->n; i++)
        out(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i], h->count[i]);
    out(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, h->total, name, h->sum, name,
        h->total);
}

char *metrics_render(int sessions_open, int max_sessions, int draining, size_t send_queue_bytes)
{
    sbuf b = {0};
    pthread_mutex_lock(&M.mu);
    out(&b, "# HELP earshot_sessions_open Live WebSocket sessions open now.\n# TYPE earshot_sessions_open gauge\n"
            "earshot_sessions_open %d\n", sessions_open);
    out(&b, "# HELP earshot_sessions_max Configured maximum of live sessions.\n# TYPE earshot_sessions_max gauge\n"
            "earshot_sessions_max %d\n", max_sessions);
    out(&b, "# HELP earshot_draining 1 while the server shuts down.\n# TYPE earshot_draining gauge\n"
            "earshot_draining %d\n", draining);
    out(&b, "# HELP earshot_send_queue_bytes Messages waiting to be sent to clients, in bytes.\n"
            "# TYPE earshot_send_queue_bytes gauge\nearshot_send_queue_bytes %zu\n", send_queue_bytes);
    out(&b, "# HELP earshot_sessions_total Sessions opened since start.\n# TYPE earshot_sessions_total counter\n"
            "earshot_sessions_total %llu\n", M.sessions_total);
    out(&b, "# HELP earshot_file_jobs_total File transcriptions (POST /v1/audio/transcriptions) started.\n"
            "# TYPE earshot_file_jobs_total counter\nearshot_file_jobs_total %llu\n", M.file_jobs_total);
    out(&b, "# HELP earshot_audio_seconds_in_total Seconds of audio received.\n"
            "# TYPE earshot_audio_seconds_in_total counter\nearshot_audio_seconds_in_total %.3f\n", M.audio_in_s);
    out(&b, "# HELP earshot_audio_seconds_encoded_total Seconds of audio encoded by engine steps.\n"
            "# TYPE earshot_audio_seconds_encoded_total counter\nearshot_audio_seconds_encoded_total %.3f\n",
        M.step_audio_s);
    out(&b, "# HELP earshot_queue_depth Ready streams waiting for a step plus queued commands.\n"
            "# TYPE earshot_queue_depth gauge\nearshot_queue_depth %d\n", M.queue_depth);
    out(&b, "# HELP earshot_sessions_behind Live sessions whose received audio waits too long to be transcribed.\n"
            "# TYPE earshot_sessions_behind gauge\nearshot_sessions_behind %d\n", M.behind_now);
    out(&b, "# HELP earshot_sessions_fell_behind_total Times a live session fell behind real time.\n"
            "# TYPE earshot_sessions_fell_behind_total counter\nearshot_sessions_fell_behind_total %ld\n",
        M.behind_total);
    hist_out(&b, "earshot_batch_size", "Streams per engine step.", &M.batch);
    hist_out(&b, "earshot_step_seconds", "Wall time of one engine step.", &M.step);
    hist_out(&b, "earshot_partial_latency_seconds",
             "From a chunk being ready (its audio arrived) to its partial or final being posted.", &M.latency);
    out(&b, "# HELP earshot_real_time_factor Engine step time per second of audio encoded (lower is faster).\n"
            "# TYPE earshot_real_time_factor gauge\nearshot_real_time_factor %.6f\n",
        M.step_audio_s > 0 ? M.step_s / M.step_audio_s : 0.0);
    out(&b, "# HELP earshot_batch_limit Streams per engine step at most now, per latency mode: the most whose step "
            "is expected to fit --step-budget of the chunk duration, within --max-batch.\n"
            "# TYPE earshot_batch_limit gauge\n");
    for (int i = 0; i < M.n_modes; i++)
        out(&b, "earshot_batch_limit{chunk_ms=\"%d\"} %d\n", M.mode_chunk_ms[i], M.mode_limit[i]);
    out(&b, "# HELP earshot_device_bytes Device (GPU) memory the engine holds: weights, session caches, "
            "workspace (0 on the CPU).\n# TYPE earshot_device_bytes gauge\nearshot_device_bytes %zu\n",
        M.device_bytes);
    out(&b, "# HELP earshot_device_bytes_per_session Device (GPU) memory of one session's caches (0 on the CPU).\n"
            "# TYPE earshot_device_bytes_per_session gauge\nearshot_device_bytes_per_session %zu\n",
        M.device_bytes_per_session);
    out(&b, "# HELP earshot_errors_total Error messages sent, by code.\n# TYPE earshot_errors_total counter\n");
    for (int i = 0; i < MAX_CODES && M.codes[i]; i++)
        out(&b, "earshot_errors_total{code=\"%s\"} %llu\n", M.codes[i], M.code_count[i]);
    pthread_mutex_unlock(&M.mu);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
