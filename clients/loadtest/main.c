/*
 * main.c - earshot-loadtest: many live sessions against an Earshot server from one process,
 * with the latencies, accuracy and failures they meet (docs/loadtest.md).
 *
 * This file holds the command line, the checks before a run (the audio loads, the server
 * answers), one run or the --find-capacity search over runs, and the reports. The sessions
 * themselves are in session.c and run.c, the WebSocket client in clients/common/.
 *
 * Exit status: 0 every session went well (--find-capacity: a capacity was found), 1 some
 * sessions failed, 2 wrong command line, 3 the audio cannot be read, 4 the server cannot be
 * reached.
 */
#include "audio_set.h"
#include "http_get.h"
#include "report.h"
#include "run.h"
#include "server_metrics.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define PROG "earshot-loadtest"
#ifndef EARSHOT_VERSION
#define EARSHOT_VERSION "0.1.0"
#endif

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_AUDIO = 3, EXIT_UNREACHABLE = 4 };

typedef struct {
    lt_config cfg;
    const char *url, *audio, *json;
    int find_capacity;
    double bound_ms; /* 0: 2 x chunk_ms */
    int max_sessions;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: " PROG " --url ws://HOST:PORT/v1/listen --audio FILE|DIR [options]\n"
            "Drive many live sessions against an Earshot server and measure them.\n"
            "\n"
            "  -u, --url URL            the server's WebSocket endpoint (ws:// or wss://)\n"
            "  -a, --audio FILE|DIR     speech to stream: one file, or every audio file of a folder;\n"
            "                           FILE.txt beside FILE.wav is its reference (for WER)\n"
            "  -n, --sessions N         concurrent sessions (default 10; with --find-capacity the\n"
            "                           first step)\n"
            "      --ramp-s S           start the sessions evenly over S seconds (default 1)\n"
            "      --duration-s S       seconds of audio each session streams, files looped\n"
            "                           (default 30)\n"
            "      --encoding E         pcm_s16le (default) or opus (one packet per message)\n"
            "      --chunk-ms N         latency mode asked in start (default: the server's)\n"
            "      --send-ms N          audio per message, sent every N ms (default 20; opus:\n"
            "                           10, 20, 40 or 60)\n"
            "      --decoder ctc|rnnt   decoder asked in start (default: the server's)\n"
            "      --endpointing-ms N   endpointing asked in start (default: the server's)\n"
            "      --token T            bearer token for a server run with --auth-token\n"
            "      --insecure           wss://: accept a self-signed or mismatched certificate\n"
            "      --json REPORT        write every figure, per session too, to REPORT\n"
            "      --report-s S         progress line every S seconds (default 5, 0: none)\n"
            "      --find-capacity      double the sessions, then bisect, with runs of\n"
            "                           --duration-s each, until p95 partial latency exceeds the\n"
            "                           bound or sessions fail; report the largest count that held\n"
            "      --latency-bound-ms N the bound (default 2 x the chunk the server chose)\n"
            "      --max-sessions N     --find-capacity goes no higher (default 20000)\n"
            "  -q, --quiet              no progress lines\n"
            "  -h, --help               show this help and exit\n"
            "  -V, --version            show the version and exit\n"
            "\n"
            "Exit status: 0 all sessions went well (--find-capacity: a count held), 1 some\n"
            "sessions failed, 2 wrong command line, 3 the audio cannot be read, 4 the server\n"
            "cannot be reached.\n");
}

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
    return EXIT_USAGE;
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, options *o)
{
    static const struct {
        const char *name;
        char shrt;
        int arg;
    } table[] = {
        {"url", 'u', 1},         {"audio", 'a', 1},        {"sessions", 'n', 1},       {"ramp-s", 'r', 1},
        {"duration-s", 'd', 1},  {"encoding", 'e', 1},     {"chunk-ms", 'c', 1},       {"send-ms", 's', 1},
        {"decoder", 'D', 1},     {"endpointing-ms", 'E', 1}, {"token", 't', 1},        {"json", 'j', 1},
        {"report-s", 'R', 1},    {"find-capacity", 'F', 0}, {"latency-bound-ms", 'B', 1}, {"max-sessions", 'M', 1},
        {"quiet", 'q', 0},       {"help", 'h', 0},         {"version", 'V', 0},      {"insecure", 'k', 0},
    };
    memset(o, 0, sizeof *o);
    o->cfg.sessions = 10;
    o->cfg.ramp_s = 1;
    o->cfg.duration_s = 30;
    o->cfg.send_ms = 20;
    o->cfg.endpointing_ms = -1;
    o->cfg.report_s = 5;
    o->max_sessions = 20000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        int k = -1, n = (int)(sizeof table / sizeof table[0]);
        if (a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            for (int j = 0; j < n; j++)
                if (strlen(table[j].name) == len && strncmp(table[j].name, a + 2, len) == 0)
                    k = j;
            val = eq ? eq + 1 : NULL;
        } else if (a[0] == '-' && a[1] && !a[2]) {
            for (int j = 0; j < n; j++)
                if (table[j].shrt == a[1] && strchr("unadqhV", a[1]))
                    k = j;
        }
        if (k < 0)
            return usage_error("unknown option or argument '%s'", a);
        if (table[k].arg && !val) {
            if (i + 1 >= argc)
                return usage_error("option '%s' needs an argument", a);
            val = argv[++i];
        } else if (!table[k].arg && val) {
            return usage_error("option '%s' takes no argument", a);
        }
        double v = 0;
        switch (table[k].shrt) {
        case 'u': o->url = val; break;
        case 'a': o->audio = val; break;
        case 'n':
            if (parse_num(val, 1, 1000000, &v) || v != (int)v)
                return usage_error("--sessions wants a whole number from 1 up, not '%s'", val);
            o->cfg.sessions = (int)v;
            break;
        case 'r':
            if (parse_num(val, 0, 86400, &o->cfg.ramp_s))
                return usage_error("--ramp-s wants seconds from 0 to 86400, not '%s'", val);
            break;
        case 'd':
            if (parse_num(val, 0.02, 864000, &o->cfg.duration_s))
                return usage_error("--duration-s wants seconds above 0, not '%s'", val);
            break;
        case 'e':
            if (strcmp(val, "opus") == 0)
                o->cfg.opus = 1;
            else if (strcmp(val, "pcm_s16le") != 0)
                return usage_error("--encoding is pcm_s16le or opus, not '%s'", val);
            break;
        case 'c':
            if (parse_num(val, 0, 10000, &v) || v != (int)v)
                return usage_error("--chunk-ms wants a whole number from 0 to 10000, not '%s'", val);
            o->cfg.chunk_ms = (int)v;
            break;
        case 's':
            if (parse_num(val, 1, 300, &v) || v != (int)v)
                return usage_error("--send-ms wants a whole number from 1 to 300, not '%s'", val);
            o->cfg.send_ms = (int)v;
            break;
        case 'D':
            if (strcmp(val, "ctc") != 0 && strcmp(val, "rnnt") != 0)
                return usage_error("--decoder is ctc or rnnt, not '%s'", val);
            o->cfg.decoder = val;
            break;
        case 'E':
            if (parse_num(val, 0, 60000, &v) || v != (int)v)
                return usage_error("--endpointing-ms wants a whole number from 0 to 60000, not '%s'", val);
            o->cfg.endpointing_ms = (int)v;
            break;
        case 't': o->cfg.token = val; break;
        case 'j': o->json = val; break;
        case 'R':
            if (parse_num(val, 0, 3600, &o->cfg.report_s))
                return usage_error("--report-s wants seconds from 0 to 3600, not '%s'", val);
            break;
        case 'F': o->find_capacity = 1; break;
        case 'B':
            if (parse_num(val, 0.001, 600000, &o->bound_ms))
                return usage_error("--latency-bound-ms wants milliseconds above 0, not '%s'", val);
            break;
        case 'M':
            if (parse_num(val, 1, 1000000, &v) || v != (int)v)
                return usage_error("--max-sessions wants a whole number from 1 up, not '%s'", val);
            o->max_sessions = (int)v;
            break;
        case 'q': o->cfg.quiet = 1; break;
        case 'k': o->cfg.insecure = 1; break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        case 'V':
            printf(PROG " " EARSHOT_VERSION "\n");
            return EXIT_OK;
        }
    }
    if (!o->url)
        return usage_error("%s", "no server given (--url ws://HOST:PORT/v1/listen)");
    if (!o->audio)
        return usage_error("%s", "no audio given (--audio FILE|DIR)");
    char err[512];
    if (ws_url_parse(o->url, "/v1/listen", &o->cfg.url, err, sizeof err) != 0)
        return usage_error("%s", err);
    if (o->cfg.opus && !(o->cfg.send_ms == 10 || o->cfg.send_ms == 20 || o->cfg.send_ms == 40 ||
                         o->cfg.send_ms == 60))
        return usage_error("%s", "with --encoding opus, --send-ms is 10, 20, 40 or 60 (one Opus packet)");
    if (AS_RATE * o->cfg.send_ms % 1000)
        return usage_error("%s", "--send-ms must hold a whole number of 16 kHz samples");
    return -1;
}

/* Lets the process open a socket per session. */
static void raise_fd_limit(int sessions)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)sessions + 64 > rl.rlim_cur)
        fprintf(stderr, PROG ": warning: the open-file limit (%llu) is below %d sessions; raise it (ulimit -n)\n",
                (unsigned long long)rl.rlim_cur, sessions);
}

/* Before any session: is anything listening there? (plain HTTP only) */
static int preflight(const options *o)
{
    if (o->cfg.url.tls)
        return 0;
    char *body = NULL, err[512], url[1400];
    int st = http_get(o->cfg.url.host, o->cfg.url.port, "/healthz", NULL, 5000, &body, err, sizeof err);
    free(body);
    ws_url_format(&o->cfg.url, NULL, url, sizeof url);
    if (st < 0) {
        fprintf(stderr, PROG ": cannot reach the server at %s: %s\n", url, err);
        return EXIT_UNREACHABLE;
    }
    if (st == 503)
        fprintf(stderr, PROG ": warning: %s/healthz answers 503: the server is full or draining; sessions "
                        "will likely be refused (1013)\n", url);
    return 0;
}

static void scrape(const options *o, server_metrics *m, int warn)
{
    char err[512];
    if (server_metrics_scrape(&o->cfg.url, o->cfg.token, m, err, sizeof err) != 0 && warn && !o->cfg.quiet)
        fprintf(stderr, PROG ": note: no server figures: %s\n", err);
}

static int write_json(const char *path, cJSON *root)
{
    char *text = root ? cJSON_Print(root) : NULL;
    FILE *f = text ? fopen(path, "w") : NULL;
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, PROG ": cannot write %s: %s\n", path, text ? strerror(errno) : "out of memory");
    free(text);
    return ok ? 0 : -1;
}

static int one_run(const options *o, const audio_set *audio)
{
    server_metrics before, after;
    scrape(o, &before, 1);
    lt_run r;
    char err[512];
    int rc = lt_run_go(&r, &o->cfg, audio, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, PROG ": %s\n", err);
    scrape(o, &after, 0);
    report_print(stdout, &r, &before, &after);
    int status = r.sessions_failed ? EXIT_FAILED : EXIT_OK;
    if (r.connect_failures == r.n && r.n > 0) {
        fprintf(stderr, PROG ": no session could connect: %s\n", r.first_why);
        status = r.unauthorized ? EXIT_FAILED : EXIT_UNREACHABLE;
    } else if (r.sessions_failed) {
        fprintf(stderr, PROG ": %d of %d sessions failed\n", r.sessions_failed, r.n);
    }
    if (o->json) {
        cJSON *root = report_json(&r, &before, &after, 1);
        if (write_json(o->json, root) != 0)
            status = EXIT_FAILED;
        cJSON_Delete(root);
    }
    lt_run_free(&r);
    return rc != 0 ? EXIT_FAILED : status;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Doubling, then bisection, over runs of --duration-s each. */
static int find_capacity(options *o, const audio_set *audio)
{
    int held = 0, failed = 0, n = o->cfg.sessions, status = EXIT_OK;
    double bound_used = o->bound_ms;
    cJSON *root = cJSON_CreateObject(), *steps = cJSON_AddArrayToObject(root, "steps");
    printf("finding capacity: runs of %.0f s, ramp %.0f s; a count holds when p95 partial latency stays under "
           "the bound and no session fails\n", o->cfg.duration_s, o->cfg.ramp_s);
    for (int step = 1; step <= 40 && n > 0; step++) {
        o->cfg.sessions = n;
        raise_fd_limit(n);
        server_metrics before, after;
        scrape(o, &before, step == 1);
        lt_run r;
        char err[512];
        if (lt_run_go(&r, &o->cfg, audio, err, sizeof err) != 0) {
            fprintf(stderr, PROG ": %s\n", err);
            lt_run_free(&r);
            status = EXIT_FAILED;
            break;
        }
        scrape(o, &after, 0);
        double bound = o->bound_ms > 0 ? o->bound_ms : 2.0 * (r.chunk_ms > 0 ? r.chunk_ms : 160);
        bound_used = bound;
        double p95 = stats_quantile(&r.partial, 0.95);
        int ok = r.sessions_failed == 0 && r.partial.count > 0 && p95 <= bound;
        printf("step %2d: %6d sessions: p95 partial latency %8.1f ms (bound %.0f), %d failed, %d behind, "
               "batch mean %.2f, step mean %.2f ms -> %s\n",
               step, n, p95, bound, r.sessions_failed, r.sessions_warned, server_metrics_batch_mean(&before, &after),
               server_metrics_step_mean_ms(&before, &after), ok ? "held" : "did not hold");
        fflush(stdout);
        if (r.connect_failures == r.n) {
            fprintf(stderr, PROG ": no session could connect: %s\n", r.first_why);
            status = EXIT_UNREACHABLE;
        }
        cJSON *j = report_json(&r, &before, &after, 0);
        if (j) {
            cJSON_AddBoolToObject(j, "held", ok);
            cJSON_AddNumberToObject(j, "p95_partial_ms", p95);
            cJSON_AddItemToArray(steps, j);
        }
        lt_run_free(&r);
        if (status != EXIT_OK || lt_interrupted)
            break;
        if (ok)
            held = n;
        else
            failed = n;
        if (failed && failed - held <= (held / 20 > 1 ? held / 20 : 1))
            break;
        int next = failed ? held + (failed - held) / 2 : n * 2;
        if (next > o->max_sessions)
            next = o->max_sessions;
        if (next == n || next <= held)
            break;
        n = next;
        sleep_s(2); /* let the server close the last step's sessions */
    }
    if (status == EXIT_OK) {
        if (held)
            printf("capacity: %d sessions held (p95 partial latency <= %.0f ms, no failures)%s\n", held, bound_used,
                   failed ? "" : " (the highest count tried)");
        else
            printf("capacity: not even %d session(s) held\n", n);
    }
    cJSON_AddNumberToObject(root, "capacity", held);
    cJSON_AddNumberToObject(root, "first_failed", failed);
    cJSON_AddNumberToObject(root, "latency_bound_ms", bound_used);
    if (o->json && write_json(o->json, root) != 0 && status == EXIT_OK)
        status = EXIT_FAILED;
    cJSON_Delete(root);
    if (status == EXIT_OK && !held)
        status = EXIT_FAILED;
    return status;
}

static void on_sigint(int sig)
{
    (void)sig;
    lt_interrupted = 1;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    char err[512];
    audio_set audio;
    if (audio_set_load(&audio, o.audio, o.cfg.opus, AS_RATE * o.cfg.send_ms / 1000, err, sizeof err) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return EXIT_AUDIO;
    }
    /* Ctrl-C: the sessions end now and the report still comes; a second one kills. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = preflight(&o);
    if (rc == 0) {
        raise_fd_limit(o.cfg.sessions);
        rc = o.find_capacity ? find_capacity(&o, &audio) : one_run(&o, &audio);
    }
    audio_set_free(&audio);
    return rc;
}
