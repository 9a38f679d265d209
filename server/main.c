/*
 * main.c - earshot-server: options, the engine, the engine worker, the libwebsockets context
 * and its one vhost, signals and the shutdown sequence.
 *
 * Two threads: the lws event loop (this one: sockets, protocol, HTTP, sessions) and the engine
 * worker (scheduler.c: every es_engine/es_stream call). SIGTERM or SIGINT starts a drain:
 * /healthz turns 503, new sessions are refused, open sessions are flushed and get their finals,
 * then close 1000; the process exits 0 once they are gone or after --drain-timeout-s. A second
 * signal exits at once.
 *
 * --backend cuda is checked before anything is loaded: when this build or this machine cannot
 * run it, the server says why and exits 2, like any other unusable option, rather than falling
 * back to the CPU behind the operator's back. With cuda the defaults for sessions and batch
 * size are those of a GPU, which only pays off with many streams per step.
 */
#include "earshot.h"
#include "file_job.h"
#include "http.h"
#include "metrics.h"
#include "scheduler.h"
#include "session.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef EARSHOT_WEB_DIR
#define EARSHOT_WEB_DIR "clients/web"
#endif

static volatile sig_atomic_t signals_seen;

static void on_signal(int sig)
{
    (void)sig;
    signals_seen++;
}

static void usage(FILE *f)
{
    /* the defaults live in the library; the help reads them there */
    es_engine_params d = es_engine_default_params();
    fprintf(f,
            "Usage: earshot-server [options]\n"
            "Serves live speech recognition over WebSocket at /v1/listen, and HTTP endpoints.\n\n"
            "  --model PATH             model file (default: $EARSHOT_MODEL, else the shipped English model\n"
            "                           " EARSHOT_DEFAULT_MODEL ")\n"
            "  --lm FILE                word n-gram LM (ARPA, may be .gz) for CTC: beam search instead of greedy\n"
            "                           (default: MODEL.arpa.gz beside the model, if there is one)\n"
            "  --no-lm                  greedy CTC even when the model has an LM beside it\n"
            "  --lm-weight A            the LM's weight (default %g)\n"
            "  --lm-bonus B             score added per word (default %g)\n"
            "  --beam N                 hypotheses the search keeps, 1..1024 (default %d)\n"
            "  --host ADDR              address to listen on (default 127.0.0.1)\n"
            "  --port N                 port (default 8080)\n"
            "  --backend cpu|cuda       compute backend (default cpu; cuda needs a build with -DEARSHOT_CUDA=ON)\n"
            "  --threads N              compute threads, 0 = one per core (default 0)\n"
            "  --max-sessions N         live sessions at most; beyond it 1013 and /healthz 503\n"
            "                           (default 64; with cuda 4096, whose caches are reserved in GPU memory)\n"
            "  --max-batch N            streams per engine step at most (default 32; with cuda 1024)\n"
            "  --step-budget F          fraction of a chunk's duration a step may take; batches are kept\n"
            "                           to the size whose measured step time fits it (default 0.5)\n"
            "  --batch-window-ms N      longest wait for stragglers before a step (default 5)\n"
            "  --auth-token TOKEN       require 'Authorization: Bearer TOKEN' or ?token=TOKEN\n"
            "  --tls-cert FILE          serve TLS (wss://, https://) with this certificate...\n"
            "  --tls-key FILE           ...and this private key\n"
            "  --log-level LEVEL        error, warn, info or debug (default info)\n"
            "  --max-message-bytes N    largest client message (default 1048576)\n"
            "  --idle-timeout-s N       close sessions silent this long, 0 = never (default 30)\n"
            "  --drain-timeout-s N      on SIGTERM, wait this long for sessions to finish (default 30)\n"
            "  --http-timeout-s N       drop a connection whose handshake or request stalls this long (default 30)\n"
            "  --max-send-queue-kb N    a session's unsent messages at most; beyond, slow_reader (default 8192)\n"
            "  --socket-sndbuf-kb N     kernel send buffer per session socket, 0 = autotuned (default 0)\n"
            "  --max-upload-mb N        largest file for POST /v1/audio/transcriptions (default 512)\n"
            "  --max-file-jobs N        file transcriptions at once; beyond it 503 (default 4)\n"
            "  --web-root DIR           folder served at / (default: the source tree's clients/web)\n"
            "  --help                   this text\n",
            (double)d.lm_weight, (double)d.lm_word_bonus, d.lm_beam);
}

/* Parses a decimal fraction in (lo, hi] into *out. */
static int parse_fraction(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!s[0] || *end || errno || !(v > lo && v <= hi)) {
        fprintf(stderr, "earshot-server: %s must be a number above %g and at most %g, not '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Parses a whole decimal number in [lo, hi] into *out. */
static int parse_int(const char *opt, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!s[0] || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "earshot-server: %s must be a whole number from %ld to %ld, not '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Parses a decimal number in [lo, hi] into *out. */
static int parse_float(const char *opt, const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!s[0] || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "earshot-server: %s must be a number from %g to %g, not '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static int parse_log_level(const char *s, int *level)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"error", LLL_ERR},
                  {"warn", LLL_ERR | LLL_WARN},
                  {"info", LLL_ERR | LLL_WARN | LLL_USER},
                  {"debug", LLL_ERR | LLL_WARN | LLL_USER | LLL_NOTICE | LLL_INFO}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp(s, levels[i].name) == 0) {
            *level = levels[i].level;
            return 0;
        }
    fprintf(stderr, "earshot-server: --log-level must be error, warn, info or debug\n");
    return -1;
}

static int parse_args(int argc, char **argv, server_opts *o, int *log_level)
{
    enum { O_MODEL = 256, O_HOST, O_PORT, O_BACKEND, O_THREADS, O_MAXS, O_MAXB, O_WIN, O_AUTH, O_CERT, O_KEY,
           O_LOG, O_MSG, O_IDLE, O_DRAIN, O_WEB, O_UPLOAD, O_FILEJOBS, O_SENDQ, O_SNDBUF, O_HTTPTO, O_BUDGET,
           O_LM, O_NOLM, O_LMW, O_LMB, O_BEAM, O_HELP };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL},          {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT},            {"backend", required_argument, 0, O_BACKEND},
        {"threads", required_argument, 0, O_THREADS},      {"max-sessions", required_argument, 0, O_MAXS},
        {"max-batch", required_argument, 0, O_MAXB},       {"batch-window-ms", required_argument, 0, O_WIN},
        {"auth-token", required_argument, 0, O_AUTH},      {"tls-cert", required_argument, 0, O_CERT},
        {"tls-key", required_argument, 0, O_KEY},          {"log-level", required_argument, 0, O_LOG},
        {"max-message-bytes", required_argument, 0, O_MSG}, {"idle-timeout-s", required_argument, 0, O_IDLE},
        {"drain-timeout-s", required_argument, 0, O_DRAIN}, {"web-root", required_argument, 0, O_WEB},
        {"max-upload-mb", required_argument, 0, O_UPLOAD}, {"max-file-jobs", required_argument, 0, O_FILEJOBS},
        {"http-timeout-s", required_argument, 0, O_HTTPTO}, {"step-budget", required_argument, 0, O_BUDGET},
        {"max-send-queue-kb", required_argument, 0, O_SENDQ}, {"socket-sndbuf-kb", required_argument, 0, O_SNDBUF},
        {"lm", required_argument, 0, O_LM},                {"no-lm", no_argument, 0, O_NOLM},
        {"lm-weight", required_argument, 0, O_LMW},        {"lm-bonus", required_argument, 0, O_LMB},
        {"beam", required_argument, 0, O_BEAM},            {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    int c, bytes, bad = 0;
    opterr = 0;
    while (!bad && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_LM: o->lm = optarg; break;
        case O_NOLM: o->no_lm = 1; break;
        case O_LMW: bad = parse_float("--lm-weight", optarg, 0, 100, &o->lm_weight); break;
        case O_LMB: bad = parse_float("--lm-bonus", optarg, -100, 100, &o->lm_bonus); break;
        case O_BEAM: bad = parse_int("--beam", optarg, 1, 1024, &o->lm_beam); break;
        case O_HOST: o->host = optarg; break;
        case O_PORT: bad = parse_int("--port", optarg, 0, 65535, &o->port); break;
        case O_THREADS: bad = parse_int("--threads", optarg, 0, 1024, &o->threads); break;
        case O_MAXS: bad = parse_int("--max-sessions", optarg, 1, 1000000, &o->max_sessions); break;
        case O_MAXB: bad = parse_int("--max-batch", optarg, 1, 65536, &o->max_batch); break;
        case O_BUDGET: bad = parse_fraction("--step-budget", optarg, 0, 1, &o->step_budget); break;
        case O_WIN: bad = parse_int("--batch-window-ms", optarg, 0, 10000, &o->batch_window_ms); break;
        case O_IDLE: bad = parse_int("--idle-timeout-s", optarg, 0, 86400, &o->idle_timeout_s); break;
        case O_DRAIN: bad = parse_int("--drain-timeout-s", optarg, 0, 86400, &o->drain_timeout_s); break;
        case O_UPLOAD:
            bad = parse_int("--max-upload-mb", optarg, 1, 1 << 20, &bytes);
            o->max_upload_bytes = (size_t)bytes << 20;
            break;
        case O_FILEJOBS: bad = parse_int("--max-file-jobs", optarg, 1, 1024, &o->max_file_jobs); break;
        case O_SENDQ:
            bad = parse_int("--max-send-queue-kb", optarg, 1, 1 << 22, &bytes);
            o->max_send_queue_bytes = (size_t)bytes << 10;
            break;
        case O_HTTPTO: bad = parse_int("--http-timeout-s", optarg, 1, 3600, &o->http_timeout_s); break;
        case O_SNDBUF:
            bad = parse_int("--socket-sndbuf-kb", optarg, 0, 1 << 20, &bytes);
            o->socket_sndbuf_bytes = bytes << 10;
            break;
        case O_MSG:
            bad = parse_int("--max-message-bytes", optarg, 1024, INT_MAX, &bytes);
            o->max_message_bytes = (size_t)bytes;
            break;
        case O_AUTH: o->auth_token = optarg; break;
        case O_CERT: o->tls_cert = optarg; break;
        case O_KEY: o->tls_key = optarg; break;
        case O_WEB: o->web_root = optarg; break;
        case O_LOG: bad = parse_log_level(optarg, log_level); break;
        case O_BACKEND:
            if (strcmp(optarg, "cpu") == 0 || strcmp(optarg, "cuda") == 0) {
                o->backend = optarg[1] == 'p' ? ES_BACKEND_CPU : ES_BACKEND_CUDA;
            } else {
                fprintf(stderr, "earshot-server: --backend must be cpu or cuda\n");
                bad = 1;
            }
            break;
        case O_HELP: usage(stdout); exit(0);
        default:
            fprintf(stderr, "earshot-server: unknown option or missing value: %s\n", argv[optind - 1]);
            bad = 1;
        }
    }
    if (bad)
        return -1;
    if (optind < argc) {
        fprintf(stderr, "earshot-server: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->model || !o->model[0])
        o->model = EARSHOT_DEFAULT_MODEL;
    if (o->lm && o->no_lm) {
        fprintf(stderr, "earshot-server: --lm and --no-lm contradict each other\n");
        return -1;
    }
    if (!o->tls_cert != !o->tls_key) {
        fprintf(stderr, "earshot-server: --tls-cert and --tls-key go together\n");
        return -1;
    }
    /* unset (0): the backend's defaults. A GPU step costs about the same for 1 stream as for
       hundreds, so it wants large batches, and its session caches live in GPU memory, which
       holds thousands (the 17 x 512 model: a few MB each). */
    int gpu = o->backend == ES_BACKEND_CUDA;
    if (o->max_sessions == 0)
        o->max_sessions = gpu ? 4096 : 64;
    if (o->max_batch == 0)
        o->max_batch = gpu ? 1024 : 32;
    return 0;
}

static void wake_loop(void *arg) { lws_cancel_service((struct lws_context *)arg); }

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    es_prefer_passive_threads(argv); /* before anything else: it may restart the program */
    server_opts o = {.model = getenv("EARSHOT_MODEL"), .host = "127.0.0.1", .port = 8080,
                     .backend = ES_BACKEND_CPU, .max_sessions = 0, .max_batch = 0, .step_budget = 0.5,
                     .batch_window_ms = 5,
                     .web_root = EARSHOT_WEB_DIR, .max_message_bytes = 1 << 20, .idle_timeout_s = 30,
                     .drain_timeout_s = 30, .max_upload_bytes = (size_t)512 << 20, .max_file_jobs = 4,
                     .max_send_queue_bytes = (size_t)8 << 20, .http_timeout_s = 30};
    es_engine_params ep = es_engine_default_params();
    o.lm_weight = ep.lm_weight;
    o.lm_bonus = ep.lm_word_bonus;
    o.lm_beam = ep.lm_beam;
    int log_level = LLL_ERR | LLL_WARN | LLL_USER;
    if (parse_args(argc, argv, &o, &log_level) != 0) {
        fprintf(stderr, "Try 'earshot-server --help'.\n");
        return 2;
    }
    lws_set_log_level(log_level, NULL);
    metrics_init();

    char err[512] = "";
    if (!es_backend_available(o.backend, err, sizeof err)) {
        fprintf(stderr, "earshot-server: --backend %s is not available: %s\n",
                o.backend == ES_BACKEND_CUDA ? "cuda" : "cpu", err[0] ? err : "no reason given");
        return 2;
    }
    static char lm_beside[4096];
    if (!o.lm && !o.no_lm && es_lm_beside_model(o.model, lm_beside, sizeof lm_beside))
        o.lm = lm_beside;
    ep.lm_path = o.lm;
    ep.lm_weight = o.lm_weight;
    ep.lm_word_bonus = o.lm_bonus;
    ep.lm_beam = o.lm_beam;
    ep.backend = o.backend;
    ep.n_threads = o.threads;
    ep.max_streams = o.max_sessions + 1; /* one spare: a stream is freed on the worker a little later */
    es_engine *e = es_engine_create(o.model, &ep, err, sizeof err);
    if (!e) {
        fprintf(stderr, "earshot-server: %s\n", err);
        if (o.backend == ES_BACKEND_CUDA)
            fprintf(stderr, "earshot-server: (the caches of all --max-sessions sessions are reserved in GPU "
                            "memory at start: if it ran out, fewer sessions need less)\n");
        return 3;
    }
    metrics_device_bytes(es_engine_device_bytes(e), es_engine_device_bytes_per_stream(e));

    static server srv;
    srv.opts = &o;
    model_info_read(e, &srv.model);

    struct lws_protocols protocols[] = {
        {"http", http_callback, http_pss_size(), 0, 0, NULL, 0},
        {"earshot-v1", session_callback, session_pss_size(), 65536, 0, NULL, 0},
        {NULL, NULL, 0, 0, 0, NULL, 0}};
    /* WebSocket clients of /v1/listen send no subprotocol: make ours the default. */
    static struct lws_protocol_vhost_options pvo_default = {NULL, NULL, "default", "1"};
    static struct lws_protocol_vhost_options pvo = {NULL, &pvo_default, "earshot-v1", ""};

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = o.port;
    info.iface = o.host;
    info.protocols = protocols;
    info.pvo = &pvo;
    info.user = &srv;
    info.options = LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE | LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.vhost_name = "earshot";
    info.timeout_secs = (unsigned)o.http_timeout_s; /* slowloris: unfinished handshakes are dropped */
    if (o.tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = o.tls_cert;
        info.ssl_private_key_filepath = o.tls_key;
    }
    srv.ctx = lws_create_context(&info);
    if (!srv.ctx) {
        fprintf(stderr, "earshot-server: cannot listen on %s:%d\n", o.host, o.port);
        es_engine_free(e);
        return 1;
    }

    sched_params sp = {.max_batch = o.max_batch, .step_budget = o.step_budget,
                       .batch_window_ms = o.batch_window_ms, .max_segment_s = 20.0,
                       .wake = wake_loop, .wake_arg = srv.ctx};
    srv.sched = sched_create(e, &sp, err, sizeof err);
    if (!srv.sched) {
        fprintf(stderr, "earshot-server: %s\n", err);
        lws_context_destroy(srv.ctx);
        es_engine_free(e);
        return 1;
    }
    session_start_timer(&srv);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    lwsl_user("earshot-server: %s on %s://%s:%d (model %s, %d look-ahead(s), backend %s, max %d sessions, "
              "batch %d, step budget %.2f of a chunk)\n",
              o.model, o.tls_cert ? "https" : "http", o.host, o.port, srv.model.name, srv.model.n_lookaheads,
              o.backend == ES_BACKEND_CUDA ? "cuda" : "cpu", o.max_sessions, o.max_batch, o.step_budget);
    if (o.lm)
        lwsl_user("earshot-server: CTC with the language model %s (%.1f MB; beam %d, weight %.2f, word bonus %.2f)\n",
                  o.lm, es_engine_lm_bytes(e) / 1048576.0, o.lm_beam, o.lm_weight, o.lm_bonus);
    if (o.backend == ES_BACKEND_CUDA)
        lwsl_user("earshot-server: GPU memory %.1f MB, %.2f MB per session\n", es_engine_device_bytes(e) / 1048576.0,
                  es_engine_device_bytes_per_stream(e) / 1048576.0);
    fflush(stderr);

    double drain_deadline = 0;
    int rc = 0;
    for (;;) {
        if (lws_service(srv.ctx, 0) < 0) {
            rc = 1;
            break;
        }
        if (signals_seen && !srv.draining) {
            lwsl_user("earshot-server: draining %d session(s)\n", srv.n_sessions);
            session_drain(&srv);
            drain_deadline = now_s() + o.drain_timeout_s;
        }
        if (srv.draining && ((srv.sessions == NULL && srv.file_jobs == NULL) || now_s() > drain_deadline ||
                             signals_seen > 1))
            break;
    }

    file_jobs_cancel_all(&srv); /* joins their decoder threads, which post to the worker */
    sched_destroy(srv.sched); /* frees the streams; no more results */
    srv.sched = NULL;
    lws_context_destroy(srv.ctx);
    es_engine_free(e);
    lwsl_user("earshot-server: stopped\n");
    return rc;
}
