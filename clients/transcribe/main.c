/*
 * main.c - earshot-transcribe: transcribe audio files with libearshot in this process (local
 * mode, below), or through an Earshot server with --server URL (remote.c), which gives the
 * same output for the same model, latency mode and decoder.
 *
 * Each file goes through the same cache-aware streaming path a live session takes in the
 * server: audio_file.c decodes it, downmixes it and resamples it to the model's rate a block
 * (~100 ms) at a time; each block goes to es_stream_accept_audio, and whenever the stream has a
 * chunk ready es_engine_step encodes and decodes it. At the end of the file the stream is told
 * so and drained. Memory stays bounded however long the file is: nothing keeps the audio.
 *
 * Files are independent: one that cannot be read is reported on stderr as
 * "earshot-transcribe: FILE: reason", the others are still transcribed, and the exit status
 * says that something failed. Exit codes: 0 all went well, 1 some file failed, 2 the command
 * line is wrong, 3 the model cannot be loaded.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "audio_file.h"
#include "earshot.h"
#include "output.h"
#include "remote.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef EARSHOT_VERSION
#define EARSHOT_VERSION "0.1.0"
#endif

#define PROG "earshot-transcribe"

enum { EXIT_OK = 0, EXIT_FILE_FAILED = 1, EXIT_USAGE = 2, EXIT_MODEL = 3 };

/* libsamplerate's medium sinc converter: 97 dB SNR, flat to 90% of 8 kHz, about three times
   as fast as the best one (80x realtime for 48 kHz stereo on one core against 27x). */
#define RESAMPLE_QUALITY AF_QUALITY_MEDIUM

/* Files shorter than this get no progress bar. */
#define PROGRESS_MIN_SECONDS 10.0

typedef struct {
    const char *model;
    const char *lm; /* NULL: the LM beside the model, if any */
    int no_lm;
    float lm_weight, lm_bonus;
    int beam;       /* 0: the engine's default */
    int lm_tuned;   /* some LM option was given */
    int chunk_ms; /* 0: the model's first look-ahead */
    es_decoder_kind decoder;
    int threads; /* -1: the engine's default */
    out_format format;
    int quiet;
    const char *server; /* remote mode: the server's ws:// URL */
    const char *token;
    int realtime;
    int insecure;
    const char **files;
    int n_files;
} options;

/* What every file is transcribed with. */
typedef struct {
    es_engine *e;
    es_stream_params sp;
    const options *opt;
    int rate;       /* the model's sample rate */
    size_t block;   /* samples per es_stream_accept_audio (~100 ms) */
    float *buf;
    const char *decoder_name;
    int chunk_ms;
} context;

static void usage(FILE *f)
{
    /* the defaults live in the library; the help reads them there */
    es_engine_params d = es_engine_default_params();
    fprintf(f,
            "Usage: " PROG " --model MODEL [options] FILE...\n"
            "       " PROG " --server URL [options] FILE...\n"
            "Transcribe audio files with an Earshot model, locally or through a server.\n"
            "\n"
            "  -m, --model MODEL      model file (default: $EARSHOT_MODEL, else the shipped\n"
            "                         English model " EARSHOT_DEFAULT_MODEL ")\n"
            "      --server URL       transcribe through the server at URL\n"
            "                         (ws://HOST:PORT/v1/listen), not locally; same output\n"
            "      --token T          bearer token for a server run with --auth-token\n"
            "      --realtime         with --server: send audio at real time (default: as fast\n"
            "                         as the server takes it)\n"
            "      --insecure         with a wss:// server: accept a self-signed certificate\n"
            "  -c, --chunk-ms N       latency mode: the model's look-ahead with the largest\n"
            "                         chunk not above N ms (default: the model's first)\n"
            "  -d, --decoder ctc|rnnt decoder of a hybrid model (default: rnnt if present)\n"
            "      --lm FILE          word n-gram LM (ARPA, may be .gz) for CTC: beam search\n"
            "                         instead of greedy (default: MODEL.arpa.gz beside the\n"
            "                         model, if there is one)\n"
            "      --no-lm            greedy CTC even when the model has an LM beside it\n"
            "      --lm-weight A      the LM's weight (default %g)\n"
            "      --lm-bonus B       score added per word (default %g)\n"
            "      --beam N           hypotheses the search keeps, 1..1024 (default %d)\n"
            "  -t, --threads N        compute threads, 0 = one per core (default: engine's)\n"
            "  -f, --format FORMAT    text (default), json (one object per file and line),\n"
            "                         srt or vtt (subtitles)\n"
            "  -q, --quiet            no progress bar and no notices, only errors\n"
            "  -h, --help             show this help and exit\n"
            "  -V, --version          show the version and exit\n"
            "\n"
            "FILE may be anything libsndfile reads (WAV, FLAC, Ogg Vorbis/Opus, MP3, ...), at\n"
            "any sample rate, with any number of channels. With several files, text lines start\n"
            "with \"FILE: \" and each subtitle document with a \"==> FILE <==\" line.\n"
            "\n"
            "Exit status: 0 all files transcribed, 1 some file failed (the others are still\n"
            "transcribed), 2 wrong command line, 3 the model cannot be loaded (--server: the\n"
            "server cannot be reached or refuses the connection).\n",
            (double)d.lm_weight, (double)d.lm_word_bonus, d.lm_beam);
}

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
    return EXIT_USAGE;
}

/* Decimal integer in [lo, hi], the whole string, nothing else. */
static int parse_int(const char *s, long lo, long hi, int *out)
{
    if (!s || !*s || !(*s == '-' || (*s >= '0' && *s <= '9')))
        return -1; /* no empty string, no leading blanks or '+' */
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* Returns -1 when parsing succeeded and the program should go on, else an exit code. */
static int parse_args(int argc, char **argv, options *o)
{
    static const struct {
        const char *lng;
        char shrt;
        int has_arg;
    } table[] = {
        {"model", 'm', 1},  {"chunk-ms", 'c', 1}, {"decoder", 'd', 1}, {"threads", 't', 1},
        {"format", 'f', 1}, {"quiet", 'q', 0},    {"help", 'h', 0},    {"version", 'V', 0},
        {"server", 'S', 1}, {"token", 'T', 1},    {"realtime", 'r', 0}, {"insecure", 'k', 0},
        {"lm", 'L', 1},     {"no-lm", 'N', 0},    {"lm-weight", 'A', 1}, {"lm-bonus", 'B', 1},
        {"beam", 'W', 1},
    };
    int only_files = 0;

    memset(o, 0, sizeof *o);
    es_engine_params defaults = es_engine_default_params();
    o->lm_weight = defaults.lm_weight;
    o->lm_bonus = defaults.lm_word_bonus;
    o->threads = -1;
    o->decoder = ES_DECODER_DEFAULT;
    o->format = OUT_TEXT;
    o->files = malloc(sizeof(char *) * (size_t)(argc > 0 ? argc : 1));
    if (!o->files) {
        fprintf(stderr, PROG ": out of memory\n");
        return EXIT_FILE_FAILED;
    }

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (only_files || arg[0] != '-' || arg[1] == '\0') {
            o->files[o->n_files++] = arg; /* "-" is a file name like any other */
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_files = 1;
            continue;
        }

        /* Find the option: --name, --name=value or -x. */
        const char *inline_val = NULL;
        size_t name_len = 0;
        int k = -1, n_opts = (int)(sizeof table / sizeof table[0]);
        if (arg[1] == '-') {
            const char *name = arg + 2, *eq = strchr(name, '=');
            name_len = eq ? (size_t)(eq - name) : strlen(name);
            inline_val = eq ? eq + 1 : NULL;
            for (int j = 0; j < n_opts; j++)
                if (strlen(table[j].lng) == name_len && strncmp(table[j].lng, name, name_len) == 0)
                    k = j;
        } else if (arg[2] == '\0') {
            for (int j = 0; j < n_opts; j++)
                if (table[j].shrt == arg[1])
                    k = j;
        }
        if (k < 0)
            return usage_error("unknown option '%s'", arg);

        const char *val = ""; /* set below for options with an argument */
        if (table[k].has_arg) {
            if (inline_val)
                val = inline_val;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                return usage_error("option '%s' needs an argument", arg);
        } else if (inline_val) {
            return usage_error("option '--%s' takes no argument", table[k].lng);
        }

        switch (table[k].shrt) {
        case 'm':
            o->model = val;
            break;
        case 'L':
            o->lm = val;
            o->lm_tuned = 1;
            break;
        case 'N':
            o->no_lm = 1;
            o->lm_tuned = 1;
            break;
        case 'A':
        case 'B': {
            char *end;
            errno = 0;
            double v = strtod(val, &end);
            if (!*val || *end || errno || !isfinite(v) || (table[k].shrt == 'A' && v < 0))
                return usage_error(table[k].shrt == 'A' ? "--lm-weight wants a number from 0 up, not '%s'"
                                                        : "--lm-bonus wants a number, not '%s'", val);
            *(table[k].shrt == 'A' ? &o->lm_weight : &o->lm_bonus) = (float)v;
            o->lm_tuned = 1;
            break;
        }
        case 'W':
            if (parse_int(val, 1, 1024, &o->beam) != 0)
                return usage_error("--beam wants a whole number from 1 to 1024, not '%s'", val);
            o->lm_tuned = 1;
            break;
        case 'c':
            if (parse_int(val, 1, 600000, &o->chunk_ms) != 0)
                return usage_error("--chunk-ms wants a whole number of milliseconds above 0, "
                                   "not '%s'", val);
            break;
        case 'd':
            if (strcmp(val, "ctc") == 0)
                o->decoder = ES_DECODER_CTC;
            else if (strcmp(val, "rnnt") == 0)
                o->decoder = ES_DECODER_RNNT;
            else
                return usage_error("unknown decoder '%s' (ctc or rnnt)", val);
            break;
        case 't':
            if (parse_int(val, 0, 4096, &o->threads) != 0)
                return usage_error("--threads wants a whole number from 0 to 4096, not '%s'", val);
            break;
        case 'f':
            if (out_parse_format(val, &o->format) != 0)
                return usage_error("unknown format '%s' (text, json, srt or vtt)", val);
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'S':
            o->server = val;
            break;
        case 'T':
            o->token = val;
            break;
        case 'r':
            o->realtime = 1;
            break;
        case 'k':
            o->insecure = 1;
            break;
        case 'h':
            usage(stdout);
            return fflush(stdout) == 0 ? EXIT_OK : EXIT_FILE_FAILED;
        case 'V':
            printf(PROG " " EARSHOT_VERSION "\n");
            return fflush(stdout) == 0 ? EXIT_OK : EXIT_FILE_FAILED;
        }
    }

    if (o->server) {
        if (o->model)
            return usage_error("%s", "--model and --server exclude each other (the server has its model)");
        if (o->threads >= 0)
            return usage_error("%s", "--threads means nothing with --server");
        if (o->lm_tuned)
            return usage_error("%s", "the language-model options mean nothing with --server (the server has its own)");
        if (o->n_files == 0)
            return usage_error("%s", "no audio file given");
        return -1;
    }
    if (o->token || o->realtime || o->insecure)
        return usage_error("%s", "--token, --realtime and --insecure go with --server");
    if (!o->model || !*o->model) {
        const char *env = getenv("EARSHOT_MODEL");
        o->model = env && *env ? env : NULL;
    }
    if (!o->model)
        o->model = EARSHOT_DEFAULT_MODEL;
    if (o->lm && o->no_lm)
        return usage_error("%s", "--lm and --no-lm contradict each other");
    if (o->n_files == 0)
        return usage_error("%s", "no audio file given");
    return -1;
}

/* ---- progress bar (stderr, terminals only) ---- */

typedef struct {
    int on;
    const char *name;
    double total; /* seconds of audio in the file */
    double t0, last;
    int width; /* characters of the last line drawn */
} progress;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void progress_begin(progress *p, const char *path, double total, int quiet)
{
    memset(p, 0, sizeof *p);
    p->on = !quiet && total > PROGRESS_MIN_SECONDS && isatty(STDERR_FILENO);
    const char *slash = strrchr(path, '/');
    p->name = slash && slash[1] ? slash + 1 : path;
    p->total = total;
    p->t0 = now_seconds();
    p->last = p->t0 - 1.0; /* draw at the first update */
}

static void progress_update(progress *p, double done)
{
    if (!p->on)
        return;
    double now = now_seconds();
    if (now - p->last < 0.1)
        return;
    p->last = now;
    double frac = done / p->total;
    if (frac > 1.0)
        frac = 1.0;
    char bar[31];
    int fill = (int)(frac * 30.0);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    int n = fprintf(stderr, "\r%-24.24s [%s] %3d%%  RTF %.3f", p->name, bar, (int)(frac * 100.0),
                    done > 0 ? (now - p->t0) / done : 0.0);
    if (n > 0) {
        if (n - 1 < p->width) /* erase what is left of a longer line */
            fprintf(stderr, "%*s", p->width - (n - 1), "");
        else
            p->width = n - 1;
    }
    fflush(stderr);
}

static void progress_end(progress *p)
{
    if (p->on && p->width > 0) {
        fprintf(stderr, "\r%*s\r", p->width, "");
        fflush(stderr);
    }
    p->on = 0;
}

/* ---- transcription ---- */

static void file_error(const char *path, const char *what, const char *detail)
{
    fprintf(stderr, PROG ": %s: %s%s%s\n", path, what, detail ? ": " : "", detail ? detail : "");
}

/* Encodes every chunk the stream has ready. */
static int drain(es_engine *e, es_stream *s, char *err, size_t errlen)
{
    while (es_stream_ready(s))
        if (es_engine_step(e, &s, 1, err, errlen) != 0)
            return -1;
    return 0;
}

/* Transcribes one file and prints its result. 0, or -1 after reporting the failure. */
static int transcribe_file(const context *c, const char *path, int multi)
{
    char err[512] = "";
    af_reader *r = af_open(path, c->rate, RESAMPLE_QUALITY, err, sizeof err);
    if (!r) {
        file_error(path, err, NULL);
        return -1;
    }
    es_stream *s = es_stream_create(c->e, &c->sp, err, sizeof err);
    if (!s) {
        file_error(path, "cannot start a stream", err);
        af_close(r);
        return -1;
    }

    progress p;
    progress_begin(&p, path, af_total_seconds(r), c->opt->quiet);
    const char *failed = NULL; /* what went wrong; the detail is in err */
    long long fed = 0;
    long n;
    while ((n = af_read(r, c->buf, c->block, err, sizeof err)) > 0) {
        if (es_stream_accept_audio(s, c->buf, (size_t)n) != 0) {
            failed = "the recognizer refused audio (out of memory?)";
            err[0] = '\0';
            break;
        }
        fed += n;
        if (drain(c->e, s, err, sizeof err) != 0) {
            failed = "recognition failed";
            break;
        }
        progress_update(&p, af_seconds_read(r));
    }
    if (!failed && n < 0)
        failed = "cannot read audio";
    /* A file without samples has an empty transcript; the engine need not see it. */
    if (!failed && fed > 0) {
        if (es_stream_end_audio(s) != 0 || drain(c->e, s, err, sizeof err) != 0)
            failed = "recognition failed";
    }
    progress_end(&p);

    int nt = 0, nw = 0;
    es_word *words = NULL;
    char *text = NULL;
    if (!failed && fed > 0) {
        const es_token *toks = es_stream_tokens(s, &nt);
        if (toks && nt > 0) {
            nw = es_engine_tokens_words(c->e, toks, nt, &words);
            if (nw < 0) {
                failed = "cannot compute word times (out of memory?)";
                err[0] = '\0';
                nw = 0;
                words = NULL;
            }
            /* The encoder's last frame is padded past the audio; times stop where the file
               does (as the server's do). */
            double limit = af_seconds_read(r);
            for (int i = 0; i < nw; i++) {
                words[i].start = words[i].start > limit ? limit : words[i].start;
                words[i].end = words[i].end > limit ? limit : words[i].end;
            }
        }
        text = es_stream_text(s);
        if (!text && nt > 0 && !failed) {
            failed = "cannot get the transcript (out of memory?)";
            err[0] = '\0';
        }
    }

    if (failed) {
        file_error(path, failed, err[0] ? err : NULL);
    } else {
        out_result res = {
            .file = path,
            .text = text ? text : "",
            .duration = af_seconds_read(r),
            .words = words,
            .n_words = nw,
            .model = es_engine_model_name(c->e),
            .chunk_ms = c->chunk_ms,
            .decoder = c->decoder_name,
        };
        out_write(stdout, c->opt->format, &res, multi);
        fflush(stdout);
    }

    free(text);
    if (words)
        es_words_free(words, nw);
    es_stream_free(s);
    af_close(r);
    return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
    es_prefer_passive_threads(argv); /* before anything else: it may restart the program */
    options opt;
    int rc = parse_args(argc, argv, &opt);
    if (rc >= 0) {
        free(opt.files);
        return rc;
    }
    if (opt.server) {
        remote_options ro = {
            .url = opt.server,
            .token = opt.token,
            .realtime = opt.realtime,
            .insecure = opt.insecure,
            .chunk_ms = opt.chunk_ms,
            .decoder = opt.decoder == ES_DECODER_CTC ? "ctc" : opt.decoder == ES_DECODER_RNNT ? "rnnt" : NULL,
            .format = opt.format,
            .quiet = opt.quiet,
        };
        rc = remote_transcribe(&ro, opt.files, opt.n_files);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, PROG ": cannot write the output: %s\n", strerror(errno));
            rc = rc ? rc : EXIT_FILE_FAILED;
        }
        free(opt.files);
        return rc;
    }

    char err[512] = "";
    es_engine_params ep = es_engine_default_params();
    if (opt.threads >= 0)
        ep.n_threads = opt.threads;
    ep.max_streams = 1; /* one file at a time: reserve cache memory for one stream */
    static char lm_beside[4096];
    if (!opt.lm && !opt.no_lm && es_lm_beside_model(opt.model, lm_beside, sizeof lm_beside))
        opt.lm = lm_beside;
    ep.lm_path = opt.lm;
    ep.lm_weight = opt.lm_weight;
    ep.lm_word_bonus = opt.lm_bonus;
    if (opt.beam > 0)
        ep.lm_beam = opt.beam;
    es_engine *e = es_engine_create(opt.model, &ep, err, sizeof err);
    if (!e) {
        if (err[0] && strstr(err, opt.model)) /* the engine's sentence names the file */
            fprintf(stderr, PROG ": %s\n", err);
        else
            fprintf(stderr, PROG ": cannot load model %s: %s\n", opt.model,
                    err[0] ? err : "unknown error");
        free(opt.files);
        return EXIT_MODEL;
    }

    context c;
    memset(&c, 0, sizeof c);
    c.e = e;
    c.opt = &opt;
    c.sp = es_stream_default_params(e);
    if (opt.decoder != ES_DECODER_DEFAULT) {
        if (!es_engine_has_decoder(e, opt.decoder)) {
            fprintf(stderr, PROG ": the model %s has no %s decoder\n", opt.model,
                    opt.decoder == ES_DECODER_CTC ? "CTC" : "RNNT");
            es_engine_free(e);
            free(opt.files);
            return EXIT_USAGE;
        }
        c.sp.decoder = opt.decoder;
    }
    es_decoder_kind dk = c.sp.decoder;
    if (dk == ES_DECODER_DEFAULT)
        dk = es_engine_has_decoder(e, ES_DECODER_RNNT) ? ES_DECODER_RNNT : ES_DECODER_CTC;
    c.decoder_name = dk == ES_DECODER_RNNT ? "rnnt" : "ctc";
    if (opt.chunk_ms > 0)
        c.sp.lookahead = es_engine_pick_lookahead(e, opt.chunk_ms);
    c.chunk_ms = es_engine_lookahead(e, c.sp.lookahead).chunk_ms;
    if (opt.chunk_ms > 0 && c.chunk_ms != opt.chunk_ms && !opt.quiet)
        fprintf(stderr, PROG ": the model has no %d ms chunk; using %d ms\n", opt.chunk_ms,
                c.chunk_ms);

    c.rate = es_engine_sample_rate(e);
    if (c.rate <= 0)
        c.rate = 16000;
    c.block = (size_t)(c.rate / 10 > 0 ? c.rate / 10 : 1);
    c.buf = malloc(c.block * sizeof(float));
    if (!c.buf) {
        fprintf(stderr, PROG ": out of memory\n");
        es_engine_free(e);
        free(opt.files);
        return EXIT_FILE_FAILED;
    }

    int any_failed = 0;
    for (int i = 0; i < opt.n_files; i++)
        if (transcribe_file(&c, opt.files[i], opt.n_files > 1) != 0)
            any_failed = 1;

    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, PROG ": cannot write the output: %s\n", strerror(errno));
        any_failed = 1;
    }
    free(c.buf);
    es_engine_free(e);
    free(opt.files);
    return any_failed ? EXIT_FILE_FAILED : EXIT_OK;
}
